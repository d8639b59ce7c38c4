// The tokenizer of a GGUF file (its tokenizer.* metadata) and the inverse. make_gguf_tokenizer
// builds the engine's Hugging Face pipeline (tok::HfTokenizer) configured the way llama.cpp
// reads such a file: `gpt2` is byte-level BPE whose split regex is named by tokenizer.ggml.pre,
// `llama` is SentencePiece BPE whose merge priorities are the token scores. Control, unknown and
// user-defined tokens are matched whole in the text (llama.cpp's parse_special); control and
// unknown tokens are the special ones that decode drops with skip_special.
// gguf_vocab_from_tokenizer gives what llama.cpp's convert_hf_to_gguf.py writes for a
// tokenizer.json, for `bitnet convert`.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bitnet/tokenizer.h"

namespace bitnet {

// The GGUF metadata keys of the tokenizer.
namespace gguf_key {
inline constexpr const char* kModel = "tokenizer.ggml.model";
inline constexpr const char* kPre = "tokenizer.ggml.pre";
inline constexpr const char* kTokens = "tokenizer.ggml.tokens";
inline constexpr const char* kScores = "tokenizer.ggml.scores";
inline constexpr const char* kTokenType = "tokenizer.ggml.token_type";
inline constexpr const char* kMerges = "tokenizer.ggml.merges";
inline constexpr const char* kBos = "tokenizer.ggml.bos_token_id";
inline constexpr const char* kEos = "tokenizer.ggml.eos_token_id";
inline constexpr const char* kEot = "tokenizer.ggml.eot_token_id";
inline constexpr const char* kEom = "tokenizer.ggml.eom_token_id";
inline constexpr const char* kUnk = "tokenizer.ggml.unknown_token_id";
inline constexpr const char* kPad = "tokenizer.ggml.padding_token_id";
inline constexpr const char* kAddBos = "tokenizer.ggml.add_bos_token";
inline constexpr const char* kAddEos = "tokenizer.ggml.add_eos_token";
inline constexpr const char* kAddSpacePrefix = "tokenizer.ggml.add_space_prefix";
inline constexpr const char* kChatTemplate = "tokenizer.chat_template";
}  // namespace gguf_key

// Texts llama.cpp takes for the end-of-turn token when a file names none, best first.
inline constexpr std::array<const char*, 8> kGgufEotTexts = {
    "<|eot_id|>",    "<|im_end|>",      "<|end|>", "<end_of_turn>",
    "<|endoftext|>", "<|end_of_text|>", "<EOT>",   "_<EOT>"};

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class GgufTokenType : int32_t {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
};

struct GgufVocab {
    std::string source;  // file path, for error messages
    std::string model;   // tokenizer.ggml.model: "gpt2" or "llama"
    std::string pre;     // tokenizer.ggml.pre (may be empty)
    std::vector<std::string> tokens;
    std::vector<float> scores;         // may be empty
    std::vector<int32_t> token_types;  // may be empty (all normal); GgufTokenType values
    std::vector<std::string> merges;   // "a b"
    std::optional<int32_t> bos, eos, eot, eom, unk, pad;
    std::optional<bool> add_bos, add_eos, add_space_prefix;
    std::string chat_template;  // tokenizer.chat_template
};

// Throws bitnet::Error naming `source` and the key at fault: an unknown model or pre name
// (UnsupportedFormat), and (ParseError) an empty token list, duplicate tokens, scores or types
// whose length differs from the tokens', types outside 1..6, merges that name unknown tokens,
// special token ids outside the vocabulary, add_bos/add_eos without the token.
// Differences from llama.cpp: a gpt2 file without bos/eos ids has none (llama.cpp assumes 11);
// decode follows the Hugging Face decoders (no clean-up of spaces before punctuation).
std::shared_ptr<const Tokenizer> make_gguf_tokenizer(const GgufVocab& vocab);

// The GGUF vocabulary of a tokenizer loaded by Tokenizer::load, as convert_hf_to_gguf.py writes
// it: byte-level BPE -> "gpt2" with pre "llama-bpe" (Llama-3's split regex) or "gpt-2"
// (GPT-2's); SentencePiece-style BPE -> "llama" with scores that rank the merges as
// tokenizer.json does. `model_vocab_size` (the model's embedding rows, when larger than the
// tokenizer) pads the list with unused "[PAD<id>]" tokens. Throws bitnet::Error
// (UnsupportedFormat) for a pipeline GGUF cannot express (another split regex, a normalizer
// other than SentencePiece's, a post-processor adding more than BOS / EOS).
GgufVocab gguf_vocab_from_tokenizer(const Tokenizer& tokenizer, size_t model_vocab_size = 0);

}  // namespace bitnet
