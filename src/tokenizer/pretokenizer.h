// Pre-tokenizers: split normalized text into the pieces that BPE encodes one by one.
// Split (regex or literal, with Hugging Face's split behaviours), ByteLevel (GPT-2 regex,
// prefix space, and the byte-to-unicode mapping that the BPE model applies) and Metaspace
// (legacy SentencePiece layout), alone or in a Sequence.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace bitnet::tok {

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct PreTokenizerStep {
    enum class Kind { Split, ByteLevel, Metaspace };
    enum class Prepend { Always, First, Never };
    Kind kind = Kind::Split;
    // Split (also ByteLevel with use_regex, which splits with the GPT-2 pattern)
    std::shared_ptr<const Regex> regex;
    SplitBehavior behavior = SplitBehavior::Isolated;
    bool invert = false;
    // ByteLevel
    bool add_prefix_space = false;
    // Metaspace
    std::string replacement = "\xE2\x96\x81";  // U+2581
    Prepend prepend = Prepend::Always;
    bool split = true;
};

// The pattern ByteLevel(use_regex: true) splits with (GPT-2's).
extern const char* const kGpt2SplitPattern;
// Llama-3's Split pattern (its tokenizer.json; GGUF's tokenizer.ggml.pre "llama-bpe").
extern const char* const kLlama3SplitPattern;

class PreTokenizer {
  public:
    std::vector<PreTokenizerStep> steps;

    // True when a ByteLevel step is present: the BPE model then sees raw bytes.
    bool byte_level() const;

    // Splits one segment of text (the text between two added tokens; `first` when it starts
    // the input). Pieces view `segment` or strings appended to `storage`.
    void split(std::string_view segment, bool first, std::vector<std::string_view>& pieces,
               std::deque<std::string>& storage) const;
};

}  // namespace bitnet::tok
