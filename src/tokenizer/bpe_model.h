// The BPE model of a Hugging Face tokenizer.json: vocabulary, merges by rank, the merge loop,
// byte fallback / unk handling and a cache of encoded pre-tokens. Both tokenizer kinds use it:
// byte-level BPE (GPT-2 / Llama-3) feeds raw bytes, SentencePiece-style BPE (Llama-2) feeds
// normalized text whose characters are the initial symbols.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bitnet::tok {

// std::hash over string_view so that maps keyed by std::string can be searched with a view
// (C++20 heterogeneous lookup) without building a temporary string per pre-token.
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// (left id, right id) -> (rank, merged id) in an open-addressing table: the merge loop does
// one lookup per adjacent pair, so this is the hot path of encoding.
class MergeTable {
  public:
    struct Entry {
        uint64_t key = kEmpty;
        int32_t rank = 0;
        int32_t merged = 0;
    };
    // {left, right, merged}; the rank of merges[i] is ranks[i], or i when `ranks` is empty
    // (equal ranks are merged leftmost first).
    void build(const std::vector<std::array<int32_t, 3>>& merges,
               const std::vector<int32_t>& ranks = {});
    const Entry* find(int32_t left, int32_t right) const {
        const uint64_t key = pack(left, right);
        for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
            const Entry& e = slots_[i];
            if (e.key == key) return &e;
            if (e.key == kEmpty) return nullptr;
        }
    }
    size_t size() const { return count_; }
    // Every {left, right, merged}, best rank first (ties in no particular order).
    std::vector<std::array<int32_t, 3>> by_rank() const;

  private:
    static constexpr uint64_t kEmpty = ~uint64_t{0};
    static uint64_t pack(int32_t a, int32_t b) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    }
    static size_t mix(uint64_t k) {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdULL;
        k ^= k >> 33;
        return static_cast<size_t>(k);
    }
    std::vector<Entry> slots_;
    size_t mask_ = 0;
    size_t count_ = 0;
};

struct BpeOptions {
    std::optional<int32_t> unk_id;
    bool byte_fallback = false;
    bool fuse_unk = false;
    bool ignore_merges = false;
};

class BpeModel {
  public:
    // `pieces[id]` is the token string of `id` (empty for ids the vocab does not use);
    // `merges` are {left, right, merged} in rank order, or ranked by `ranks` when given
    // (see MergeTable::build).
    BpeModel(std::vector<std::string> pieces, StringMap<int32_t> ids,
             const std::vector<std::array<int32_t, 3>>& merges, BpeOptions options,
             const std::vector<int32_t>& ranks = {});

    // Appends the ids of one pre-token. With `byte_level`, `word` holds raw bytes and each byte
    // starts as the vocab entry of its GPT-2 byte-to-unicode character.
    void tokenize(std::string_view word, bool byte_level, std::vector<int32_t>& out) const;

    const std::vector<std::string>& pieces() const { return pieces_; }
    const BpeOptions& options() const { return options_; }
    // The merges, best rank first (for writing the vocabulary to another format).
    std::vector<std::array<int32_t, 3>> merges() const { return merges_.by_rank(); }
    std::optional<int32_t> find(std::string_view piece) const {
        const auto it = ids_.find(piece);
        return it == ids_.end() ? std::nullopt : std::optional<int32_t>(it->second);
    }

  private:
    void initial_symbols(std::string_view word, bool byte_level, std::vector<int32_t>& syms) const;
    void add_unknown(std::string_view ch, std::vector<int32_t>& syms, bool& last_was_unk) const;
    void merge(std::vector<int32_t>& syms) const;
    void tokenize_uncached(std::string_view word, bool byte_level, std::vector<int32_t>& out) const;

    std::vector<std::string> pieces_;
    StringMap<int32_t> ids_;
    MergeTable merges_;
    BpeOptions options_;
    std::array<int32_t, 256> byte_level_ids_{};  // byte -> id of its byte-level char, -1 if none
    std::array<int32_t, 256> fallback_ids_{};    // byte -> id of "<0xXX>", -1 if none

    // Encoded pre-tokens. Text repeats its words, so most pre-tokens are found here; the mutex
    // keeps a shared Tokenizer usable from several threads.
    static constexpr size_t kCacheMaxWordBytes = 64;
    static constexpr size_t kCacheMaxEntries = 1 << 17;
    mutable std::mutex cache_mutex_;
    mutable StringMap<std::vector<int32_t>> cache_;
};

}  // namespace bitnet::tok
