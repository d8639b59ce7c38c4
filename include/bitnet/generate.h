// Text generation on top of the engine: prompt in, text out, token by token.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bitnet/sampling.h"

namespace bitnet {

struct GenerationParams {
    SamplingParams sampling;
    int max_tokens = 256;                   // new tokens at most
    std::vector<std::string> stop_strings;  // generation ends before the first match
    std::vector<int32_t> stop_ids;          // in addition to the tokenizer's (EOS, <|eot_id|>)
    bool ignore_eos = false;                // keep going past the tokenizer's stop ids
    bool add_special = true;                // let the tokenizer add BOS to the prompt
    bool show_special = false;              // include special tokens in the text
    int max_context = 0;                    // KV cache size; 0: prompt + max_tokens
    // Speculative decoding: up to this many tokens a step drafted by prompt lookup (what followed
    // the last earlier occurrence of the sequence's last 3-4 tokens) and verified in the same
    // forward pass. 0: off. The output is the same as without it, for every sampler: each
    // position is sampled from the same logits with the same random draws, and drafts count only
    // while they equal the sampled tokens. Pays off on repetitive text (code edits, quotes,
    // summaries); a rejected draft costs a little more than a plain step, so the length drafted
    // shrinks after rejections and grows back after full acceptances.
    int draft_tokens = 0;
};

enum class FinishReason { Stop, Length, Cancelled };
const char* finish_reason_name(FinishReason reason) noexcept;

struct GenerationStats {
    int prompt_tokens = 0;
    int generated_tokens = 0;
    double time_to_first_token_ms = 0;  // prompt processing + first sampled token
    double total_ms = 0;
    double tokens_per_second = 0;  // generated tokens after the first, per second of decoding
    int drafted_tokens = 0;        // speculative decoding: tokens drafted for verification
    int accepted_tokens = 0;       // of those, tokens the model generated as drafted
};

struct GenerationResult {
    std::string text;             // the generated text, without the prompt and the stop string
    std::vector<int32_t> tokens;  // generated token ids
    FinishReason finish = FinishReason::Length;
    GenerationStats stats;
};

// Called with each piece of text as soon as it is final (UTF-8 complete, not part of a possible
// stop string). Return false to stop generating (FinishReason::Cancelled).
using TextCallback = std::function<bool(std::string_view piece)>;

// A generation running in the background (InferenceEngine::create_stream): text pieces arrive
// in order as they are produced.
class TextStream {
  public:
    virtual ~TextStream() = default;
    // Blocks until the next piece; std::nullopt once the generation has ended.
    virtual std::optional<std::string> next() = 0;
    // Stops the generation; its KV cache is released as soon as the current step ends.
    virtual void cancel() = 0;
    // Waits for the end and returns the whole result (pieces not read with next() included).
    virtual GenerationResult wait() = 0;
};

}  // namespace bitnet
