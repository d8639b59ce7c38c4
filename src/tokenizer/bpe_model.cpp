#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <cstdio>
#include <queue>

#include "tokenizer/unicode.h"

namespace bitnet::tok {

void MergeTable::build(const std::vector<std::array<int32_t, 3>>& merges,
                       const std::vector<int32_t>& ranks) {
    size_t cap = 16;
    while (cap < merges.size() * 2) cap <<= 1;
    slots_.assign(cap, Entry{});
    mask_ = cap - 1;
    count_ = 0;
    for (size_t n = 0; n < merges.size(); ++n) {
        const int32_t rank = ranks.empty() ? static_cast<int32_t>(n) : ranks[n];
        const uint64_t key = pack(merges[n][0], merges[n][1]);
        size_t i = mix(key) & mask_;
        while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
        // A pair listed twice keeps its best rank, as a rank-ordered insert would.
        if (slots_[i].key == key) {
            if (rank < slots_[i].rank) slots_[i] = Entry{key, rank, merges[n][2]};
            continue;
        }
        slots_[i] = Entry{key, rank, merges[n][2]};
        ++count_;
    }
}

std::vector<std::array<int32_t, 3>> MergeTable::by_rank() const {
    std::vector<const Entry*> entries;
    entries.reserve(count_);
    for (const Entry& e : slots_) {
        if (e.key != kEmpty) entries.push_back(&e);
    }
    std::sort(entries.begin(), entries.end(),
              [](const Entry* a, const Entry* b) { return a->rank < b->rank; });
    std::vector<std::array<int32_t, 3>> out;
    out.reserve(entries.size());
    for (const Entry* e : entries) {
        out.push_back({static_cast<int32_t>(e->key >> 32),
                       static_cast<int32_t>(e->key & 0xFFFFFFFFu), e->merged});
    }
    return out;
}

BpeModel::BpeModel(std::vector<std::string> pieces, StringMap<int32_t> ids,
                   const std::vector<std::array<int32_t, 3>>& merges, BpeOptions options,
                   const std::vector<int32_t>& ranks)
    : pieces_(std::move(pieces)), ids_(std::move(ids)), options_(options) {
    merges_.build(merges, ranks);
    const ByteLevelTable& table = byte_level_table();
    for (int b = 0; b < 256; ++b) {
        byte_level_ids_[b] = find(table.byte_to_utf8[b]).value_or(-1);
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        fallback_ids_[b] = find(name).value_or(-1);
    }
}

void BpeModel::add_unknown(std::string_view ch, std::vector<int32_t>& syms,
                           bool& last_was_unk) const {
    if (options_.byte_fallback) {
        bool all = true;
        for (const char c : ch) all = all && fallback_ids_[static_cast<unsigned char>(c)] >= 0;
        if (all) {
            for (const char c : ch) syms.push_back(fallback_ids_[static_cast<unsigned char>(c)]);
            last_was_unk = false;
            return;
        }
    }
    // Without an unk token the character is dropped, as Hugging Face tokenizers does.
    if (!options_.unk_id) return;
    if (options_.fuse_unk && last_was_unk) return;  // consecutive unknowns become one unk
    syms.push_back(*options_.unk_id);
    last_was_unk = true;
}

void BpeModel::initial_symbols(std::string_view word, bool byte_level,
                               std::vector<int32_t>& syms) const {
    bool last_was_unk = false;
    if (byte_level) {
        const ByteLevelTable& table = byte_level_table();
        for (const char c : word) {
            const auto b = static_cast<unsigned char>(c);
            if (byte_level_ids_[b] >= 0) {
                syms.push_back(byte_level_ids_[b]);
                last_was_unk = false;
            } else {
                add_unknown(table.byte_to_utf8[b], syms, last_was_unk);
            }
        }
        return;
    }
    size_t pos = 0;
    while (pos < word.size()) {
        const size_t n =
            std::min(utf8_seq_len(static_cast<unsigned char>(word[pos])), word.size() - pos);
        const std::string_view ch = word.substr(pos, n);
        pos += n;
        if (const auto it = ids_.find(ch); it != ids_.end()) {
            syms.push_back(it->second);
            last_was_unk = false;
        } else {
            add_unknown(ch, syms, last_was_unk);
        }
    }
}

// Repeatedly merges the adjacent pair of lowest rank (leftmost among equals), the order of
// Hugging Face's BPE. Symbols form a linked list over their initial positions; a heap holds
// candidate pairs, and entries made stale by an earlier merge are skipped when popped.
void BpeModel::merge(std::vector<int32_t>& syms) const {
    const int n = static_cast<int>(syms.size());
    if (n < 2) return;
    struct Candidate {
        int32_t rank;
        int32_t pos;
        int32_t merged;
        bool operator>(const Candidate& o) const {
            return rank != o.rank ? rank > o.rank : pos > o.pos;
        }
    };
    std::vector<int32_t> next(n), prev(n);
    for (int i = 0; i < n; ++i) {
        next[i] = i + 1 < n ? i + 1 : -1;
        prev[i] = i - 1;
    }
    std::vector<Candidate> storage;
    storage.reserve(n);
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap(std::greater<>{},
                                                                                std::move(storage));
    const auto push_pair = [&](int left) {
        const int right = next[left];
        if (right < 0) return;
        if (const MergeTable::Entry* e = merges_.find(syms[left], syms[right])) {
            heap.push(Candidate{e->rank, left, e->merged});
        }
    };
    for (int i = 0; i + 1 < n; ++i) push_pair(i);
    std::vector<bool> alive(n, true);
    while (!heap.empty()) {
        const Candidate c = heap.top();
        heap.pop();
        if (!alive[c.pos] || next[c.pos] < 0) continue;
        const int right = next[c.pos];
        const MergeTable::Entry* e = merges_.find(syms[c.pos], syms[right]);
        if (e == nullptr || e->merged != c.merged || e->rank != c.rank) continue;
        syms[c.pos] = c.merged;
        alive[right] = false;
        next[c.pos] = next[right];
        if (next[right] >= 0) prev[next[right]] = c.pos;
        if (prev[c.pos] >= 0) push_pair(prev[c.pos]);
        push_pair(c.pos);
    }
    int w = 0;
    for (int i = 0; i >= 0; i = next[i]) syms[w++] = syms[i];
    syms.resize(w);
}

void BpeModel::tokenize_uncached(std::string_view word, bool byte_level,
                                 std::vector<int32_t>& out) const {
    if (options_.ignore_merges) {
        // Llama-3's ignore_merges: a pre-token that is itself a vocab entry is emitted whole,
        // even where the merges would split it differently.
        const std::optional<int32_t> whole =
            byte_level ? find(bytes_to_byte_level(word)) : find(word);
        if (whole) {
            out.push_back(*whole);
            return;
        }
    }
    std::vector<int32_t> syms;
    syms.reserve(word.size());
    initial_symbols(word, byte_level, syms);
    merge(syms);
    out.insert(out.end(), syms.begin(), syms.end());
}

void BpeModel::tokenize(std::string_view word, bool byte_level, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    if (word.size() > kCacheMaxWordBytes) {
        tokenize_uncached(word, byte_level, out);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(cache_mutex_);
        if (const auto it = cache_.find(word); it != cache_.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    const size_t start = out.size();
    tokenize_uncached(word, byte_level, out);
    std::vector<int32_t> ids(out.begin() + static_cast<std::ptrdiff_t>(start), out.end());
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheMaxEntries) cache_.clear();  // bounded memory: start over
    cache_.emplace(std::string(word), std::move(ids));
}

}  // namespace bitnet::tok
