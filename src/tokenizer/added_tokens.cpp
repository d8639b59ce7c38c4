#include "tokenizer/added_tokens.h"

#include <algorithm>

namespace bitnet::tok {

namespace {

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// ASCII word characters, plus every non-ASCII byte (letters of other scripts).
bool is_word_byte(char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || c == '_';
}

}  // namespace

void AddedTokenMatcher::build(const std::vector<AddedToken>& tokens) {
    tokens_.clear();
    for (const AddedToken& t : tokens) {
        if (!t.content.empty()) tokens_.push_back(t);
    }
    std::stable_sort(tokens_.begin(), tokens_.end(), [](const AddedToken& a, const AddedToken& b) {
        return a.content.size() > b.content.size();
    });
    for (auto& v : by_first_) v.clear();
    for (uint32_t i = 0; i < tokens_.size(); ++i) {
        by_first_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
    }
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
    size_t text_start = 0;  // start of the pending plain-text segment
    size_t i = 0;
    while (i < text.size()) {
        const auto& candidates = by_first_[static_cast<unsigned char>(text[i])];
        const AddedToken* hit = nullptr;
        for (const uint32_t k : candidates) {
            const AddedToken& t = tokens_[k];
            if (text.compare(i, t.content.size(), t.content) != 0) continue;
            if (t.single_word) {
                const size_t e = i + t.content.size();
                if ((i > 0 && is_word_byte(text[i - 1])) ||
                    (e < text.size() && is_word_byte(text[e]))) {
                    continue;
                }
            }
            hit = &t;
            break;
        }
        if (hit == nullptr) {
            ++i;
            continue;
        }
        size_t begin = i, end = i + hit->content.size();
        if (hit->lstrip) {
            while (begin > text_start && is_space(text[begin - 1])) --begin;
        }
        if (hit->rstrip) {
            while (end < text.size() && is_space(text[end])) ++end;
        }
        if (begin > text_start) out.push_back(Segment{text_start, begin, -1});
        out.push_back(Segment{begin, end, hit->id});
        text_start = i = end;
    }
    if (text_start < text.size()) out.push_back(Segment{text_start, text.size(), -1});
}

}  // namespace bitnet::tok
