// Added tokens (tokenizer.json `added_tokens`): found in the raw text before normalization and
// pre-tokenization, leftmost first and longest among those starting at the same place (the
// order of Hugging Face's Aho-Corasick matcher), so "<|eot_id|>" in a prompt is one token.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bitnet::tok {

struct AddedToken {
    int32_t id = 0;
    std::string content;
    bool special = false;
    bool lstrip = false;       // also swallows whitespace before the match
    bool rstrip = false;       // also swallows whitespace after the match
    bool single_word = false;  // matches only where not inside a word
};

// A part of the input: plain text [begin, end), or an added token (id >= 0).
struct Segment {
    size_t begin = 0;
    size_t end = 0;
    int32_t id = -1;
};

class AddedTokenMatcher {
  public:
    void build(const std::vector<AddedToken>& tokens);
    // Splits `text` into text and added-token segments, in order; text segments are non-empty.
    void split(std::string_view text, std::vector<Segment>& out) const;

  private:
    std::vector<AddedToken> tokens_;                   // longest content first
    std::array<std::vector<uint32_t>, 256> by_first_;  // first byte -> indices into tokens_
};

}  // namespace bitnet::tok
