// A compiled PCRE2 pattern (UTF + UCP, JIT when available) for the pre-tokenizer splits and the
// Replace normalizer. Matching is const and allocates its match data per call, so one Regex
// serves any number of threads.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bitnet::tok {

class Regex {
  public:
    // `where` names the file and field for error messages. With `literal` the pattern is
    // matched as plain text (Split / Replace with a "String" pattern).
    Regex(std::string_view pattern, bool literal, const std::string& where);
    ~Regex();
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;

    // Non-empty, non-overlapping matches in `text` (valid UTF-8), left to right, as
    // [begin, end) byte offsets appended to `out`.
    void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

    // The pattern as given (before the whitespace-class rewrite), and whether it is literal.
    const std::string& pattern() const { return pattern_; }
    bool literal() const { return literal_; }

  private:
    std::string pattern_;
    bool literal_ = false;
    void* code_ = nullptr;  // pcre2_code_8*, kept opaque so that pcre2.h stays in regex.cpp
};

// Hugging Face tokenizers runs split patterns with Oniguruma, whose \s is Unicode White_Space.
// PCRE2's \s (with UCP) also matches U+180E, so \s and \S are rewritten to explicit classes.
std::string translate_whitespace_classes(std::string_view pattern);

}  // namespace bitnet::tok
