// The tokenizer.json decoders: token strings -> text. Each step maps the list of token strings
// to a new list, as Hugging Face's decode_chain does, and the result is concatenated.
// ByteLevel (GPT-2 / Llama-3); Replace, ByteFallback, Fuse, Strip (Llama-2); Metaspace.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace bitnet::tok {

struct DecoderStep {
    enum class Kind { ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace };
    Kind kind = Kind::ByteLevel;
    std::string pattern;  // Replace: literal pattern; Metaspace: the replacement character
    std::string content;  // Replace: replacement; Strip: the character to strip
    size_t start = 0;     // Strip: at most this many leading `content` characters per token
    size_t stop = 0;      // Strip: trailing
    bool strip_first_space = true;  // Metaspace: drop the space the encoder prepended
};

class Decoder {
  public:
    // `present` is false when tokenizer.json's decoder is null: tokens are then joined with
    // spaces, as Hugging Face does.
    bool present = false;
    std::vector<DecoderStep> steps;
    // The decoded text; invalid UTF-8 becomes U+FFFD.
    std::string decode(std::vector<std::string> tokens) const;
};

}  // namespace bitnet::tok
