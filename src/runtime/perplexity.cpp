#include "runtime/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "bitnet/perplexity.h"
#include "runtime/engine_impl.h"

namespace bitnet {

double token_nll(const float* logits, int vocab, int32_t token) {
    float max_logit = logits[0];
    for (int i = 1; i < vocab; ++i) max_logit = std::max(max_logit, logits[i]);
    double sum = 0;
    for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max_logit));
    return static_cast<double>(max_logit) + std::log(sum) - static_cast<double>(logits[token]);
}

double NllAccumulator::ppl() const {
    return std::exp(mean());
}

double NllAccumulator::ppl_stderr() const {
    if (count_ < 2) return 0;
    const double n = static_cast<double>(count_);
    const double m = sum_ / n;
    const double variance = sum_squares_ / n - m * m;
    if (variance <= 0) return 0;
    return std::exp(m) * std::sqrt(variance / (n - 1));
}

namespace {

constexpr int kMinContext = 4;

void check_options(const InferenceEngine& engine, const Model& model,
                   const PerplexityOptions& options) {
    if (options.context < kMinContext) {
        throw Error(ErrorCode::InvalidArgument,
                    "perplexity: context " + std::to_string(options.context) +
                        " is too small; it must be at least " + std::to_string(kMinContext) +
                        " (the second half of each chunk is scored)");
    }
    const int positions = model.config().max_position_embeddings;
    if (positions > 0 && options.context > positions) {
        throw Error(ErrorCode::InvalidArgument,
                    "perplexity: context " + std::to_string(options.context) +
                        " exceeds the model's " + std::to_string(positions) + " positions");
    }
    if (options.batch < 1) {
        throw Error(
            ErrorCode::InvalidArgument,
            "perplexity: batch " + std::to_string(options.batch) + " must be at least 1 chunk");
    }
    if (options.batch > engine.options().max_batch_size) {
        throw Error(ErrorCode::InvalidArgument,
                    "perplexity: batch " + std::to_string(options.batch) +
                        " exceeds the engine's batch size of " +
                        std::to_string(engine.options().max_batch_size));
    }
    if (options.max_chunks < 0) {
        throw Error(ErrorCode::InvalidArgument, "perplexity: max_chunks must be >= 0");
    }
}

}  // namespace

bool tokenizer_adds_bos(const Tokenizer& tokenizer) {
    const std::optional<int32_t> bos = tokenizer.bos_id();
    if (!bos) return false;
    const std::vector<int32_t> with = tokenizer.encode("a", true);
    const std::vector<int32_t> without = tokenizer.encode("a", false);
    return with.size() > without.size() && with.front() == *bos;
}

std::vector<int32_t> perplexity_tokens(const Tokenizer& tokenizer, std::string_view text) {
    std::vector<int32_t> tokens;
    if (tokenizer_adds_bos(tokenizer)) tokens.push_back(*tokenizer.bos_id());
    const std::vector<int32_t> body = tokenizer.encode(text, false);
    tokens.insert(tokens.end(), body.begin(), body.end());
    return tokens;
}

PerplexityResult compute_perplexity(InferenceEngine& engine, std::shared_ptr<const Model> model,
                                    std::span<const int32_t> tokens, int32_t bos,
                                    const PerplexityOptions& options,
                                    const PerplexityCallback& on_chunk) {
    if (!model) throw Error(ErrorCode::InvalidArgument, "perplexity: null model");
    check_options(engine, *model, options);
    const int ctx = options.context;
    const int64_t whole_chunks = static_cast<int64_t>(tokens.size()) / ctx;
    if (whole_chunks == 0) {
        throw Error(ErrorCode::InvalidArgument,
                    "perplexity: the text has " + std::to_string(tokens.size()) +
                        " tokens, but a context of " + std::to_string(ctx) + " needs at least " +
                        std::to_string(ctx) + " (use a longer text or a smaller context)");
    }
    const int chunks = static_cast<int>(options.max_chunks > 0
                                            ? std::min<int64_t>(whole_chunks, options.max_chunks)
                                            : whole_chunks);
    const int vocab = model->config().vocab_size;
    // As llama.cpp: the first half of a chunk is context; logits at first .. ctx-2 are scored.
    const int first = ctx / 2;
    const int scored_per_chunk = ctx - 1 - first;

    const auto start = std::chrono::steady_clock::now();
    PerplexityResult result;
    result.tokens_in_text = static_cast<int64_t>(tokens.size());
    result.chunks = chunks;
    result.context = ctx;

    std::vector<std::unique_ptr<Session>> sessions;
    for (int i = 0; i < std::min(options.batch, chunks); ++i)
        sessions.push_back(engine.create_session(model, ctx));
    std::vector<std::vector<int32_t>> inputs(sessions.size());
    std::vector<SequenceStep> steps;
    std::vector<double> nll(static_cast<size_t>(scored_per_chunk));
    NllAccumulator total;
    ThreadPool& pool = *engine.impl().pool;
    const auto report = [&](int chunk) {
        if (!on_chunk) return;
        PerplexityProgress p;
        p.chunk = chunk;
        p.chunks = chunks;
        p.running_ppl = chunk > 0 ? total.ppl() : 0.0;
        p.tokens_scored = total.count();
        p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        on_chunk(p);
    };
    report(0);

    for (int group = 0; group < chunks; group += options.batch) {
        const int in_group = std::min(options.batch, chunks - group);
        for (int s = 0; s < in_group; ++s) {
            const int32_t* chunk = tokens.data() + static_cast<size_t>(group + s) * ctx;
            inputs[s].assign(chunk, chunk + ctx);
            if (bos >= 0) inputs[s][0] = bos;
            sessions[s]->reset();
        }
        // The context half needs no logits; only the scored half asks for all of them, which
        // halves the logits held at once and skips the lm_head for the context half.
        steps.clear();
        for (int s = 0; s < in_group; ++s)
            steps.push_back({sessions[s].get(), std::span(inputs[s].data(), first), false});
        engine.forward(steps);
        steps.clear();
        for (int s = 0; s < in_group; ++s) {
            steps.push_back(
                {sessions[s].get(), std::span(inputs[s].data() + first, ctx - first), true});
        }
        const std::vector<Tensor> logits = engine.forward(steps);

        for (int s = 0; s < in_group; ++s) {
            const float* rows = logits[s].data_as<float>();
            const int32_t* targets = inputs[s].data() + first + 1;
            pool.parallel_for(scored_per_chunk, 1, [&](int64_t begin, int64_t end) {
                for (int64_t j = begin; j < end; ++j)
                    nll[j] = token_nll(rows + j * vocab, vocab, targets[j]);
            });
            for (const double v : nll) total.add(v);
            result.running_ppl.push_back(total.ppl());
            report(group + s + 1);
        }
    }
    result.ppl = total.ppl();
    result.ppl_stderr = total.ppl_stderr();
    result.mean_nll = total.mean();
    result.tokens_scored = total.count();
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
}

PerplexityResult compute_perplexity(InferenceEngine& engine, std::shared_ptr<const Model> model,
                                    const Tokenizer& tokenizer, std::string_view text,
                                    const PerplexityOptions& options,
                                    const PerplexityCallback& on_chunk) {
    const std::vector<int32_t> tokens = perplexity_tokens(tokenizer, text);
    const int32_t bos = tokenizer_adds_bos(tokenizer) ? *tokenizer.bos_id() : -1;
    return compute_perplexity(engine, std::move(model), tokens, bos, options, on_chunk);
}

}  // namespace bitnet
