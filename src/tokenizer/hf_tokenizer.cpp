#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "bitnet/error.h"
#include "tokenizer/unicode.h"

namespace bitnet::tok {

HfTokenizer::HfTokenizer(TokenizerParts parts) : p_(std::move(parts)) {
    matcher_.build(p_.added);
    byte_level_ = p_.pre_tokenizer.byte_level();
    size_t n = p_.model->pieces().size();
    for (const AddedToken& t : p_.added) n = std::max(n, static_cast<size_t>(t.id) + 1);
    vocab_size_ = static_cast<int>(n);
    added_by_id_.assign(n, nullptr);
    for (const AddedToken& t : p_.added) {
        added_by_id_[t.id] = &t;
        added_ids_.emplace(t.content, t.id);
    }
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool add_special) const {
    const size_t valid = utf8_valid_prefix(text);
    if (valid != text.size()) {
        throw Error(ErrorCode::InvalidArgument,
                    "tokenizer: the text to encode is not valid UTF-8 (byte offset " +
                        std::to_string(valid) + ")");
    }
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 8);
    if (add_special) ids = p_.prefix;

    std::vector<Segment> segments;
    matcher_.split(text, segments);
    std::vector<std::string_view> pieces;
    std::deque<std::string> storage;
    for (const Segment& seg : segments) {
        if (seg.id >= 0) {
            ids.push_back(seg.id);
            continue;
        }
        std::string_view s = text.substr(seg.begin, seg.end - seg.begin);
        std::string normalized;
        if (!p_.normalizer.empty()) {
            normalized = p_.normalizer.apply(s);
            s = normalized;
        }
        pieces.clear();
        storage.clear();
        if (p_.pre_tokenizer.steps.empty()) {
            pieces.push_back(s);  // no pre-tokenizer: the whole segment is one word (Llama-2)
        } else {
            p_.pre_tokenizer.split(s, seg.begin == 0, pieces, storage);
        }
        for (const std::string_view piece : pieces) p_.model->tokenize(piece, byte_level_, ids);
    }
    if (add_special) ids.insert(ids.end(), p_.suffix.begin(), p_.suffix.end());
    return ids;
}

std::string HfTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (const int32_t id : ids) {
        if (id < 0 || id >= vocab_size_) {
            throw Error(ErrorCode::InvalidArgument, "tokenizer: token id " + std::to_string(id) +
                                                        " is outside the vocabulary (size " +
                                                        std::to_string(vocab_size_) + ")");
        }
        if (skip_special && is_special(id)) continue;
        std::string s = piece(id);
        if (!s.empty()) tokens.push_back(std::move(s));
    }
    return p_.decoder.decode(std::move(tokens));
}

std::string HfTokenizer::piece(int32_t id) const {
    if (id < 0 || id >= vocab_size_) return {};
    if (const AddedToken* t = added_by_id_[id]) return t->content;
    const auto& pieces = p_.model->pieces();
    return static_cast<size_t>(id) < pieces.size() ? pieces[id] : std::string();
}

std::optional<int32_t> HfTokenizer::token_id(std::string_view piece) const {
    if (const auto it = added_ids_.find(piece); it != added_ids_.end()) return it->second;
    return p_.model->find(piece);
}

bool HfTokenizer::is_special(int32_t id) const {
    if (id < 0 || id >= vocab_size_) return false;
    const AddedToken* t = added_by_id_[id];
    return t != nullptr && t->special;
}

}  // namespace bitnet::tok
