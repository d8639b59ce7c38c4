#include "runtime/text_generation.h"

#include <algorithm>

#include "bitnet/error.h"
#include "runtime/prompt_lookup.h"

namespace bitnet {

const char* finish_reason_name(FinishReason reason) noexcept {
    switch (reason) {
        case FinishReason::Stop:
            return "stop";
        case FinishReason::Length:
            return "length";
        case FinishReason::Cancelled:
            return "cancelled";
    }
    return "?";
}

namespace {
double ms_between(std::chrono::steady_clock::time_point a,
                  std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}
}  // namespace

TextGeneration::TextGeneration(InferenceEngine& engine, std::shared_ptr<const Model> model,
                               const Tokenizer& tokenizer, std::vector<int32_t> prompt,
                               const GenerationParams& params, TextCallback on_text)
    : params_(params),
      on_text_(std::move(on_text)),
      sampler_(params.sampling),
      decoder_(tokenizer, !params.show_special),
      prompt_(std::move(prompt)),
      schedule_(params.draft_tokens),
      start_(std::chrono::steady_clock::now()) {
    if (prompt_.empty())
        throw Error(ErrorCode::InvalidArgument, "generate: the prompt encodes to no tokens");
    if (params.max_tokens < 0)
        throw Error(ErrorCode::InvalidArgument, "generate: max_tokens must be >= 0");
    if (params.draft_tokens < 0)
        throw Error(ErrorCode::InvalidArgument, "generate: draft_tokens must be >= 0");
    for (const std::string& s : params.stop_strings) {
        if (s.empty()) throw Error(ErrorCode::InvalidArgument, "generate: empty stop string");
    }
    const int limit = model->config().max_position_embeddings;
    int context = params.max_context > 0 ? params.max_context
                                         : static_cast<int>(prompt_.size()) + params.max_tokens;
    context = std::min(context, limit);
    if (static_cast<int>(prompt_.size()) >= context) {
        throw Error(ErrorCode::CapacityExceeded,
                    "generate: the prompt has " + std::to_string(prompt_.size()) +
                        " tokens; the context holds " + std::to_string(context));
    }
    session_ = engine.create_session(std::move(model), context);
    history_ = prompt_;
    if (!params.ignore_eos) stop_ids_ = tokenizer.stop_ids();
    stop_ids_.insert(stop_ids_.end(), params.stop_ids.begin(), params.stop_ids.end());
    result_.stats.prompt_tokens = static_cast<int>(prompt_.size());
    if (params.max_tokens == 0) finish(FinishReason::Length);
}

SequenceStep TextGeneration::next_step() {
    if (last_token_ < 0) return {session_.get(), std::span<const int32_t>(prompt_), false};
    step_start_ = session_->position();
    step_.assign(1, last_token_);
    // Drafts beyond the last token the request may produce, or beyond the cache, are wasted.
    const int room = std::min(params_.max_tokens - static_cast<int>(result_.tokens.size()),
                              session_->capacity() - step_start_) -
                     1;
    const std::vector<int32_t> draft =
        prompt_lookup_draft(history_, std::min(schedule_.next(), room));
    step_.insert(step_.end(), draft.begin(), draft.end());
    result_.stats.drafted_tokens += static_cast<int>(draft.size());
    return {session_.get(), std::span<const int32_t>(step_), step_.size() > 1};
}

void TextGeneration::emit_safe_text() {
    // Hold back the longest tail of the text that could still grow into a stop string.
    size_t hold = 0;
    for (const std::string& stop : params_.stop_strings) {
        for (size_t len = std::min(stop.size() - 1, text_.size() - emitted_); len > hold; --len) {
            if (text_.compare(text_.size() - len, len, stop, 0, len) == 0) {
                hold = len;
                break;
            }
        }
    }
    const size_t safe = text_.size() - hold;
    if (safe > emitted_) {
        const std::string_view piece(text_.data() + emitted_, safe - emitted_);
        emitted_ = safe;
        if (on_text_ && !on_text_(piece)) finish(FinishReason::Cancelled);
    }
}

void TextGeneration::complete(FinishReason reason) {
    // The generation is over, so text held back for a possible stop string is final.
    if (text_.size() > emitted_ && on_text_) on_text_(std::string_view(text_).substr(emitted_));
    emitted_ = text_.size();
    finish(reason);
}

void TextGeneration::accept(Tensor& logits) {
    if (done_) return;
    // Row i holds the logits after step_[i]; past row 0 they are valid only while each drafted
    // token step_[i] is the one sampled from row i - 1, exactly as decoding one token at a time
    // would have fed it.
    const int64_t rows = logits.dim(0);
    const size_t vocab = static_cast<size_t>(logits.dim(1));
    std::vector<int32_t> sampled;
    for (int64_t i = 0; i < rows; ++i) {
        const int32_t token = sampler_.sample(
            std::span<float>(logits.data_as<float>() + static_cast<size_t>(i) * vocab, vocab),
            history_);
        sampled.push_back(token);
        if (std::find(stop_ids_.begin(), stop_ids_.end(), token) != stop_ids_.end()) break;
        history_.push_back(token);
        if (i + 1 >= rows || step_[static_cast<size_t>(i) + 1] != token) break;
    }
    if (rows > 1) {
        // The cache keeps step_[0] and the confirmed drafts; the last sampled token is fed next.
        const int confirmed = static_cast<int>(sampled.size()) - 1;
        result_.stats.accepted_tokens += confirmed;
        schedule_.update(static_cast<int>(rows) - 1, confirmed);
        session_->truncate(step_start_ + 1 + confirmed);
    }
    // Each token is checked against the cache length decoding it alone would have had.
    const int fed = session_->position() - static_cast<int>(sampled.size()) + 1;
    for (size_t i = 0; i < sampled.size(); ++i) {
        if (!take(sampled[i], fed + static_cast<int>(i))) return;
    }
}

bool TextGeneration::take(int32_t token, int cache_length) {
    if (result_.tokens.empty()) first_token_ = std::chrono::steady_clock::now();
    if (std::find(stop_ids_.begin(), stop_ids_.end(), token) != stop_ids_.end()) {
        text_ += decoder_.flush();
        complete(FinishReason::Stop);
        return false;
    }
    result_.tokens.push_back(token);
    last_token_ = token;
    const size_t before = text_.size();
    text_ += decoder_.push(token);
    // A stop string may end anywhere in the new text and may have begun in earlier text.
    size_t longest = 0;
    for (const std::string& stop : params_.stop_strings) longest = std::max(longest, stop.size());
    const size_t from = before > longest ? before - longest : 0;
    size_t cut = std::string::npos;
    for (const std::string& stop : params_.stop_strings)
        cut = std::min(cut, text_.find(stop, from));
    if (cut != std::string::npos) {
        text_.resize(std::max(cut, emitted_));
        complete(FinishReason::Stop);
        return false;
    }
    if (static_cast<int>(result_.tokens.size()) >= params_.max_tokens ||
        cache_length >= session_->capacity()) {
        text_ += decoder_.flush();
        complete(FinishReason::Length);
        return false;
    }
    emit_safe_text();
    return !done_;
}

void TextGeneration::cancel() {
    finish(FinishReason::Cancelled);
}

void TextGeneration::finish(FinishReason reason) {
    if (done_) return;
    done_ = true;
    result_.finish = reason;
    const auto end = std::chrono::steady_clock::now();
    GenerationStats& s = result_.stats;
    s.generated_tokens = static_cast<int>(result_.tokens.size());
    s.total_ms = ms_between(start_, end);
    if (s.generated_tokens > 0) {
        s.time_to_first_token_ms = ms_between(start_, first_token_);
        const double decode_ms = ms_between(first_token_, end);
        s.tokens_per_second = s.generated_tokens > 1 && decode_ms > 0
                                  ? (s.generated_tokens - 1) / (decode_ms / 1000.0)
                                  : 0;
    }
    session_.reset();  // the KV cache goes back as soon as the request ends
}

GenerationResult TextGeneration::take_result() {
    result_.text = text_;
    return std::move(result_);
}

}  // namespace bitnet
