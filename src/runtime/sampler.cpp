// The sampler: logit bias, penalties, then greedy or top-k / top-p / min-p / temperature and a
// seeded draw, in llama.cpp's order. After the first call it allocates nothing: the candidate list
// and the per-token counts keep their capacity from one token to the next.
#include "bitnet/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>

#include "bitnet/error.h"
#include "runtime/argmax.h"

namespace bitnet {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

[[noreturn]] void invalid(const std::string& message) {
    throw Error(ErrorCode::InvalidArgument, "sampling: " + message);
}

// A strict total order on candidates: higher logit first, equal logits by lower token id.
bool better(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) noexcept {
    if (a.first != b.first) return a.first > b.first;
    return a.second < b.second;
}

// A uniform double in [0, 1) from the top 53 bits of one 64-bit draw: the same on every standard
// library, unlike std::uniform_real_distribution.
double uniform01(std::mt19937_64& rng) {
    return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

}  // namespace

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
    const SamplingParams& p = params_;
    if (std::isnan(p.temperature) || std::isinf(p.temperature)) {
        invalid("temperature must be a finite number (<= 0 means greedy), got " +
                std::to_string(p.temperature));
    }
    if (!(p.top_p > 0.f)) {
        invalid("top_p must be > 0 (>= 1 turns it off), got " + std::to_string(p.top_p));
    }
    if (std::isnan(p.min_p)) invalid("min_p must be a number (<= 0 turns it off), got NaN");
    if (!(p.repeat_penalty > 0.f) || std::isinf(p.repeat_penalty)) {
        invalid("repeat_penalty must be a finite number > 0 (1 turns it off), got " +
                std::to_string(p.repeat_penalty));
    }
    if (p.repeat_last_n < -1) {
        invalid("repeat_last_n must be -1 (all), 0 (none) or a positive count, got " +
                std::to_string(p.repeat_last_n));
    }
    if (!std::isfinite(p.frequency_penalty)) {
        invalid("frequency_penalty must be finite, got " + std::to_string(p.frequency_penalty));
    }
    if (!std::isfinite(p.presence_penalty)) {
        invalid("presence_penalty must be finite, got " + std::to_string(p.presence_penalty));
    }
    for (const auto& [token, bias] : p.logit_bias) {
        if (token < 0) invalid("logit_bias names a negative token id " + std::to_string(token));
        if (std::isnan(bias)) {
            invalid("logit_bias for token " + std::to_string(token) + " is NaN");
        }
    }
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
    const SamplingParams& p = params_;
    if (logits.empty()) invalid("no logits to sample from (vocabulary of size 0)");
    if (logits.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
        invalid("vocabulary of " + std::to_string(logits.size()) + " tokens is too large");
    }
    const size_t vocab = logits.size();

    // NaN logits (a broken model or kernel) take no part: they count as -inf.
    for (float& l : logits) {
        if (std::isnan(l)) l = kNegInf;
    }

    // 1) Logit bias.
    for (const auto& [token, bias] : p.logit_bias) {
        if (static_cast<size_t>(token) >= vocab) {
            invalid("logit_bias names token " + std::to_string(token) +
                    ", outside the vocabulary of " + std::to_string(vocab));
        }
        float& l = logits[static_cast<size_t>(token)];
        l += bias;
        if (std::isnan(l)) l = kNegInf;  // +inf logit with a -inf bias: banned
    }

    // 2) Repetition, frequency and presence penalties over the last repeat_last_n tokens.
    const bool penalize =
        p.repeat_last_n != 0 &&
        (p.repeat_penalty != 1.f || p.frequency_penalty != 0.f || p.presence_penalty != 0.f);
    if (penalize && !history.empty()) {
        size_t window = history.size();
        if (p.repeat_last_n > 0) window = std::min(window, static_cast<size_t>(p.repeat_last_n));
        const std::span<const int32_t> recent = history.last(window);
        if (counts_.size() != vocab) counts_.assign(vocab, 0);
        for (size_t i = 0; i < recent.size(); ++i) {
            const int32_t t = recent[i];
            if (t < 0 || static_cast<size_t>(t) >= vocab) {
                // Leave counts_ all zero for the next call before reporting.
                for (size_t j = 0; j < i; ++j) counts_[static_cast<size_t>(recent[j])] = 0;
                invalid("history token " + std::to_string(t) + " at position " +
                        std::to_string(history.size() - window + i) +
                        " is outside the vocabulary of " + std::to_string(vocab));
            }
            ++counts_[static_cast<size_t>(t)];
        }
        for (const int32_t t : recent) {
            const int32_t count = counts_[static_cast<size_t>(t)];
            if (count == 0) continue;  // already applied: each distinct token once
            counts_[static_cast<size_t>(t)] = 0;
            float& l = logits[static_cast<size_t>(t)];
            if (l > 0.f) {
                l /= p.repeat_penalty;
            } else {
                l *= p.repeat_penalty;
            }
            l -= static_cast<float>(count) * p.frequency_penalty + p.presence_penalty;
            if (std::isnan(l)) l = kNegInf;
        }
    }

    // 3) Greedy: argmax, ties to the lowest id, no random draw.
    if (p.temperature <= 0.f) {
        const size_t best = first_argmax(logits.data(), vocab);
        if (logits[best] == kNegInf) invalid("every token is banned (all logits are -inf)");
        return static_cast<int32_t>(best);
    }

    // The candidates: every token not banned, in id order.
    if (candidates_.capacity() < vocab) candidates_.reserve(vocab);
    candidates_.clear();
    float max_logit = kNegInf;
    for (size_t i = 0; i < vocab; ++i) {
        const float l = logits[i];
        if (l == kNegInf) continue;
        candidates_.emplace_back(l, static_cast<int32_t>(i));
        max_logit = std::max(max_logit, l);
    }
    if (candidates_.empty()) invalid("every token is banned (all logits are -inf)");
    if (std::isinf(max_logit)) {
        // A +inf logit (a +inf bias) forces that token; several: the lowest id.
        for (const auto& c : candidates_) {
            if (c.first == max_logit) return c.second;
        }
    }
    const auto first = candidates_.begin();
    size_t n = candidates_.size();
    // Whether candidates_[0, n) is sorted best first (else it is in id order). Both orders are the
    // same on every standard library, so a seed gives the same choices everywhere.
    bool sorted = false;

    // 4) Top-k.
    if (p.top_k > 0 && static_cast<size_t>(p.top_k) < n) {
        const size_t k = static_cast<size_t>(p.top_k);
        std::partial_sort(first, first + static_cast<std::ptrdiff_t>(k),
                          first + static_cast<std::ptrdiff_t>(n), better);
        n = k;
        sorted = true;
    }

    // 5) Top-p: the smallest set of best tokens whose probabilities sum to >= top_p.
    if (p.top_p < 1.f && n > 1) {
        if (sorted) {
            n = nucleus_of_sorted(n, p.top_p);
        } else {
            n = nucleus_of_unsorted(n, p.top_p);
        }
    }

    // 6) Min-p: drop tokens with p < min_p * p_max, i.e. logit < max_logit + log(min_p).
    if (p.min_p > 0.f && n > 1) {
        double m = kNegInf;
        for (size_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(candidates_[i].first));
        // At least the best token stays, even with min_p > 1.
        const double threshold = m + std::min(0.0, std::log(static_cast<double>(p.min_p)));
        const auto end = std::remove_if(  // stable: keeps the order (sorted or by id)
            first, first + static_cast<std::ptrdiff_t>(n),
            [threshold](const std::pair<float, int32_t>& c) {
                return static_cast<double>(c.first) < threshold;
            });
        n = static_cast<size_t>(end - first);
    }

    // 7) Temperature, softmax over the survivors and the seeded draw. Weights are computed as
    // exp((l - max) / T), which stays finite however small T is; they replace the logits in
    // candidates_, which are not needed any more.
    const double temp = static_cast<double>(p.temperature);
    double m = kNegInf;
    for (size_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(candidates_[i].first));
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) {
        const double w = std::exp((static_cast<double>(candidates_[i].first) - m) / temp);
        candidates_[i].first = static_cast<float>(w);
        total += static_cast<double>(candidates_[i].first);
    }
    for (float& l : logits) l = static_cast<float>(static_cast<double>(l) / temp);

    const double target = uniform01(rng_) * total;
    double cum = 0.0;
    for (size_t i = 0; i < n; ++i) {
        cum += static_cast<double>(candidates_[i].first);
        if (cum > target) return candidates_[i].second;
    }
    // Rounding left the target at the very top: the last survivor with any weight.
    for (size_t i = n; i-- > 0;) {
        if (candidates_[i].first > 0.f) return candidates_[i].second;
    }
    return candidates_[0].second;
}

size_t Sampler::nucleus_of_sorted(size_t n, float top_p) const {
    const double m = static_cast<double>(candidates_[0].first);
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) total += std::exp(static_cast<double>(candidates_[i].first) - m);
    const double target = static_cast<double>(top_p) * total;
    double cum = 0.0;
    for (size_t i = 0; i < n; ++i) {
        cum += std::exp(static_cast<double>(candidates_[i].first) - m);
        if (cum >= target) return i + 1;
    }
    return n;
}

// Without sorting the vocabulary: the probability mass is binned by logit (bins of equal width
// below the best logit, so a lower bin holds only better tokens), the bin where the running sum
// crosses top_p is found, and only that bin's tokens are sorted to find the last token kept. The
// survivors stay in id order.
size_t Sampler::nucleus_of_unsorted(size_t n, float top_p) {
    constexpr size_t kBins = 1024;
    constexpr double kSpan = 48.0;  // logits further below the best than this share the last bin
    double m = kNegInf, lo = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < n; ++i) {
        const double l = static_cast<double>(candidates_[i].first);
        m = std::max(m, l);
        lo = std::min(lo, l);
    }
    const double span = std::min(m - lo, kSpan);
    const double scale = span > 0.0 ? static_cast<double>(kBins) / span : 0.0;
    auto bin_of = [&](float l) {
        const double b = (m - static_cast<double>(l)) * scale;
        return b >= static_cast<double>(kBins - 1) ? kBins - 1 : static_cast<size_t>(b);
    };
    bin_mass_.assign(kBins, 0.0);
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) {
        const double w = std::exp(static_cast<double>(candidates_[i].first) - m);
        bin_mass_[bin_of(candidates_[i].first)] += w;
        total += w;
    }
    const double target = static_cast<double>(top_p) * total;
    double above = 0.0;  // the mass of the bins before the crossing bin
    size_t cross = 0;
    for (; cross + 1 < kBins; ++cross) {
        if (bin_mass_[cross] > 0.0 && above + bin_mass_[cross] >= target) break;
        above += bin_mass_[cross];
    }
    if (cross + 1 == kBins && !(bin_mass_[cross] > 0.0 && above + bin_mass_[cross] >= target)) {
        return n;  // rounding kept the running sum under the target: keep everything
    }
    if (scratch_.capacity() < candidates_.capacity()) scratch_.reserve(candidates_.capacity());
    scratch_.clear();
    for (size_t i = 0; i < n; ++i) {
        if (bin_of(candidates_[i].first) == cross) scratch_.push_back(candidates_[i]);
    }
    std::sort(scratch_.begin(), scratch_.end(), better);
    std::pair<float, int32_t> last = scratch_.back();
    double cum = above;
    for (const auto& c : scratch_) {
        cum += std::exp(static_cast<double>(c.first) - m);
        if (cum >= target) {
            last = c;
            break;
        }
    }
    // Keep every token not worse than `last`, in place and in id order.
    size_t kept = 0;
    for (size_t i = 0; i < n; ++i) {
        if (!better(last, candidates_[i])) candidates_[kept++] = candidates_[i];
    }
    return kept;
}

}  // namespace bitnet
