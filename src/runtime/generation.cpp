// InferenceEngine's text generation: single requests, batches decoded in lockstep, and
// background streams.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "bitnet/engine.h"
#include "runtime/text_generation.h"

namespace bitnet {

namespace {

// Runs the generations until all are done, one batched forward pass per step.
void run_lockstep(InferenceEngine& engine, std::vector<TextGeneration*> active) {
    const size_t batch = static_cast<size_t>(std::max(1, engine.options().max_batch_size));
    std::vector<SequenceStep> steps;
    std::vector<TextGeneration*> stepping;
    for (;;) {
        std::erase_if(active, [](TextGeneration* g) { return g->done(); });
        if (active.empty()) return;
        for (size_t i = 0; i < active.size(); i += batch) {
            steps.clear();
            stepping.assign(
                active.begin() + static_cast<std::ptrdiff_t>(i),
                active.begin() + static_cast<std::ptrdiff_t>(std::min(active.size(), i + batch)));
            for (TextGeneration* g : stepping) steps.push_back(g->next_step());
            std::vector<Tensor> logits = engine.forward(steps);
            for (size_t j = 0; j < stepping.size(); ++j) stepping[j]->accept(logits[j]);
        }
    }
}

class BackgroundStream final : public TextStream {
  public:
    BackgroundStream(InferenceEngine& engine, std::shared_ptr<const Model> model,
                     std::shared_ptr<const Tokenizer> tokenizer, std::string prompt,
                     GenerationParams params)
        : tokenizer_(std::move(tokenizer)) {
        worker_ = std::thread(
            [this, &engine, model = std::move(model), prompt = std::move(prompt), params] {
                try {
                    result_ = engine.generate(model, *tokenizer_, prompt, params,
                                              [this](std::string_view piece) {
                                                  std::lock_guard<std::mutex> lock(mutex_);
                                                  pieces_.emplace_back(piece);
                                                  ready_.notify_all();
                                                  return !cancelled_;
                                              });
                } catch (...) {
                    std::lock_guard<std::mutex> lock(mutex_);
                    error_ = std::current_exception();
                }
                std::lock_guard<std::mutex> lock(mutex_);
                finished_ = true;
                ready_.notify_all();
            });
    }
    ~BackgroundStream() override {
        cancel();
        if (worker_.joinable()) worker_.join();
    }

    std::optional<std::string> next() override {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [&] { return !pieces_.empty() || finished_; });
        if (!pieces_.empty()) {
            std::string piece = std::move(pieces_.front());
            pieces_.pop_front();
            return piece;
        }
        if (error_) std::rethrow_exception(error_);
        return std::nullopt;
    }

    void cancel() override {
        std::lock_guard<std::mutex> lock(mutex_);
        cancelled_ = true;
    }

    GenerationResult wait() override {
        if (worker_.joinable()) worker_.join();
        if (error_) std::rethrow_exception(error_);
        return result_;
    }

  private:
    std::shared_ptr<const Tokenizer> tokenizer_;
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<std::string> pieces_;
    bool finished_ = false;
    bool cancelled_ = false;
    std::exception_ptr error_;
    GenerationResult result_;
    std::thread worker_;
};

}  // namespace

GenerationResult InferenceEngine::generate(std::shared_ptr<const Model> model,
                                           const Tokenizer& tokenizer, std::string_view prompt,
                                           const GenerationParams& params,
                                           const TextCallback& on_text) {
    if (!model) throw Error(ErrorCode::InvalidArgument, "generate: null model");
    TextGeneration g(*this, model, tokenizer, tokenizer.encode(prompt, params.add_special), params,
                     on_text);
    run_lockstep(*this, {&g});
    return g.take_result();
}

std::vector<GenerationResult> InferenceEngine::process_batch(
    std::shared_ptr<const Model> model, const Tokenizer& tokenizer,
    const std::vector<std::string>& prompts, const GenerationParams& params) {
    if (!model) throw Error(ErrorCode::InvalidArgument, "process_batch: null model");
    std::vector<std::unique_ptr<TextGeneration>> gens;
    std::vector<TextGeneration*> active;
    for (const std::string& p : prompts) {
        gens.push_back(std::make_unique<TextGeneration>(*this, model, tokenizer,
                                                        tokenizer.encode(p, params.add_special),
                                                        params, TextCallback{}));
        active.push_back(gens.back().get());
    }
    run_lockstep(*this, active);
    std::vector<GenerationResult> out;
    for (auto& g : gens) out.push_back(g->take_result());
    return out;
}

std::unique_ptr<TextStream> InferenceEngine::create_stream(
    std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer,
    std::string prompt, const GenerationParams& params) {
    if (!model || !tokenizer)
        throw Error(ErrorCode::InvalidArgument, "create_stream: null model or tokenizer");
    return std::make_unique<BackgroundStream>(*this, std::move(model), std::move(tokenizer),
                                              std::move(prompt), params);
}

}  // namespace bitnet
