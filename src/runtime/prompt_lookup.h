// Prompt-lookup drafting for speculative decoding: text that repeats itself (code being edited,
// a document being summarised or quoted, a model stuck in a loop) is predicted by what followed
// the previous occurrence of its last few tokens. No draft model, no extra memory.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

namespace bitnet {

// Longest n-gram tried first. Shorter matches are weak hints: on text without repeats, 2-token
// matches drafted three times as often as 3-token ones, mostly in vain, and a rejected draft
// costs a pass over several rows; on repetitive text they added little.
inline constexpr int kDraftMaxNgram = 4;
inline constexpr int kDraftMinNgram = 3;

// The up to max_tokens tokens that followed the most recent earlier occurrence of the last n
// tokens of history, for the largest n in [kDraftMinNgram, kDraftMaxNgram] that occurs;
// empty when none does (or max_tokens <= 0).
std::vector<int32_t> prompt_lookup_draft(std::span<const int32_t> history, int max_tokens);

// How many tokens to draft next (Hugging Face's heuristic schedule for assisted generation):
// two more after a draft accepted whole, one fewer (down to 1) after a rejection, never more
// than the caller's limit. Text that stops repeating wastes fewer rows on verification; text
// that repeats grows back to the limit within a few steps.
class DraftSchedule {
  public:
    explicit DraftSchedule(int max_tokens) : max_(max_tokens), next_(max_tokens) {}
    int next() const noexcept { return next_; }
    void update(int drafted, int accepted) noexcept {
        if (drafted == 0) return;
        next_ = accepted == drafted ? std::min(max_, next_ + 2) : std::max(1, next_ - 1);
    }

  private:
    int max_;
    int next_;
};

}  // namespace bitnet
