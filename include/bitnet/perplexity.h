// Perplexity of a model over a text, computed as llama.cpp's llama-perplexity does, so numbers
// can be compared across engines:
//   - the whole text is tokenized once (with the BOS token when the tokenizer adds one) and cut
//     into consecutive chunks of `context` tokens; a remainder shorter than a chunk is dropped
//     (one whole chunk is enough, where llama.cpp asks for two);
//   - each chunk is evaluated from an empty KV cache, its first token replaced by BOS when the
//     tokenizer adds one;
//   - only the second half of each chunk is scored (the first half is context): the logits at
//     positions context/2 .. context-2 predict the tokens after them;
//   - PPL = exp(mean NLL), and its standard error exp(mean) * sqrt(var(NLL) / (n - 1)).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "bitnet/engine.h"
#include "bitnet/tokenizer.h"

namespace bitnet {

struct PerplexityOptions {
    int context = 512;   // tokens per chunk (at least 4, at most the model's positions)
    int batch = 1;       // chunks evaluated together in one forward pass
    int max_chunks = 0;  // 0: every whole chunk of the text
};

// The state after each evaluated chunk, for progress reports; reported once with chunk 0 before
// the first chunk, once the options and text have been checked.
struct PerplexityProgress {
    int chunk = 0;   // 1-based index of the chunk just scored (0: starting)
    int chunks = 0;  // chunks in the run
    double running_ppl = 0;
    int64_t tokens_scored = 0;
    double seconds = 0;  // since the run started
};
using PerplexityCallback = std::function<void(const PerplexityProgress&)>;

struct PerplexityResult {
    double ppl = 0;
    double ppl_stderr = 0;  // 0 when fewer than two tokens were scored
    double mean_nll = 0;    // natural log
    int64_t tokens_scored = 0;
    int64_t tokens_in_text = 0;  // after tokenization
    int chunks = 0;
    int context = 0;
    std::vector<double> running_ppl;  // after each chunk, as llama.cpp prints them
    double seconds = 0;               // evaluation time, tokenization excluded
};

// The tokens a perplexity run reads from a text: encoded without special tokens, with the
// tokenizer's BOS in front when its post-processor adds one.
std::vector<int32_t> perplexity_tokens(const Tokenizer& tokenizer, std::string_view text);
// Whether chunks start with BOS: the tokenizer adds one to encoded text.
bool tokenizer_adds_bos(const Tokenizer& tokenizer);

// Perplexity over already tokenized text. `bos`: the id each chunk starts with, or -1 to keep
// the chunk's own first token. Throws bitnet::Error (InvalidArgument) for bad options or a text
// shorter than one chunk, saying how many tokens are needed.
PerplexityResult compute_perplexity(InferenceEngine& engine, std::shared_ptr<const Model> model,
                                    std::span<const int32_t> tokens, int32_t bos,
                                    const PerplexityOptions& options = {},
                                    const PerplexityCallback& on_chunk = {});

// Tokenizes `text` (perplexity_tokens) and runs compute_perplexity with the tokenizer's BOS.
PerplexityResult compute_perplexity(InferenceEngine& engine, std::shared_ptr<const Model> model,
                                    const Tokenizer& tokenizer, std::string_view text,
                                    const PerplexityOptions& options = {},
                                    const PerplexityCallback& on_chunk = {});

}  // namespace bitnet
