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
#include "runtime/prompt_lookup.h"

namespace bitnet {

class TextGeneration {
  public:
    TextGeneration(InferenceEngine& engine, std::shared_ptr<const Model> model,
                   const Tokenizer& tokenizer, std::vector<int32_t> prompt,
                   const GenerationParams& params, TextCallback on_text);

    bool done() const noexcept { return done_; }
    // The step to run next: the whole prompt first, then the last sampled token, followed by
    // drafted tokens when speculative decoding is on (all their logits wanted).
    SequenceStep next_step();
    // Consumes the logits of the step just run: samples, keeps the drafts the samples confirm
    // (dropping the rest from the cache), decodes, streams, checks stops.
    void accept(Tensor& logits);
    void cancel();
    GenerationResult take_result();

  private:
    void complete(FinishReason reason);
    void finish(FinishReason reason);
    void emit_safe_text();
    // Decodes, streams and checks the stops for one sampled token, sampled when the cache held
    // cache_length tokens; false once the generation is over.
    bool take(int32_t token, int cache_length);

    GenerationParams params_;
    TextCallback on_text_;
    std::unique_ptr<Session> session_;
    Sampler sampler_;
    StreamDecoder decoder_;
    std::vector<int32_t> prompt_;
    DraftSchedule schedule_;
    std::vector<int32_t> history_;  // prompt + generated, for the penalties
    std::vector<int32_t> stop_ids_;
    int32_t last_token_ = -1;
    std::vector<int32_t> step_;  // the last step's tokens: last_token_, then the draft
    int step_start_ = 0;         // the cache position of step_[0]
    std::string text_;           // everything decoded so far
    size_t emitted_ = 0;         // bytes of text_ handed to the callback
    bool done_ = false;
    GenerationResult result_;
    std::chrono::steady_clock::time_point start_, first_token_;
};

}  // namespace bitnet
