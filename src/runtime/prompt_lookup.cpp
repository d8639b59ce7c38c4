#include "runtime/prompt_lookup.h"

#include <algorithm>

namespace bitnet {

std::vector<int32_t> prompt_lookup_draft(std::span<const int32_t> history, int max_tokens) {
    const int64_t len = static_cast<int64_t>(history.size());
    if (max_tokens <= 0) return {};
    for (int n = kDraftMaxNgram; n >= kDraftMinNgram; --n) {
        if (len <= n) continue;
        const auto suffix = history.subspan(static_cast<size_t>(len - n));
        // Most recent first: a loop or a quoted passage continues like its latest copy. A match
        // must end before the suffix does, so that at least one token follows it.
        for (int64_t start = len - n - 1; start >= 0; --start) {
            if (!std::equal(suffix.begin(), suffix.end(), history.begin() + start)) continue;
            const int64_t from = start + n;
            const int64_t to = std::min(len, from + max_tokens);
            return {history.begin() + from, history.begin() + to};
        }
    }
    return {};
}

}  // namespace bitnet
