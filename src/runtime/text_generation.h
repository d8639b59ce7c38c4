// One sequence being generated: its session, sampler, streaming decoder and stop-string
// matching. The engine drives several of these in lockstep to batch requests.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "bitnet/engine.h"
#include "bitnet/generate.h"
#include "bitnet/tokenizer.h"

namespace bitnet {

class TextGeneration {
  public:
    TextGeneration(InferenceEngine& engine, std::shared_ptr<const Model> model,
                   const Tokenizer& tokenizer, std::vector<int32_t> prompt,
                   const GenerationParams& params, TextCallback on_text);

    bool done() const noexcept { return done_; }
    // The step to run next: the whole prompt first, then the last sampled token.
    SequenceStep next_step();
    // Consumes the logits of the step just run: samples, decodes, streams, checks stops.
    void accept(Tensor& logits);
    void cancel();
    GenerationResult take_result();

  private:
    void complete(FinishReason reason);
    void finish(FinishReason reason);
    void emit_safe_text();

    GenerationParams params_;
    TextCallback on_text_;
    std::unique_ptr<Session> session_;
    Sampler sampler_;
    StreamDecoder decoder_;
    std::vector<int32_t> prompt_;
    std::vector<int32_t> history_;  // prompt + generated, for the penalties
    std::vector<int32_t> stop_ids_;
    int32_t last_token_ = -1;
    std::string text_;    // everything decoded so far
    size_t emitted_ = 0;  // bytes of text_ handed to the callback
    bool done_ = false;
    GenerationResult result_;
    std::chrono::steady_clock::time_point start_, first_token_;
};

}  // namespace bitnet
