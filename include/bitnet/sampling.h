// Choosing the next token from logits: greedy, temperature, top-k, top-p, min-p, penalties,
// logit bias, with a seed that makes runs repeatable. Names and defaults follow llama.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <span>
#include <vector>

namespace bitnet {

struct SamplingParams {
    float temperature = 0.8f;     // <= 0: greedy
    int top_k = 40;               // <= 0: off
    float top_p = 0.95f;          // >= 1: off
    float min_p = 0.05f;          // <= 0: off
    float repeat_penalty = 1.0f;  // 1: off (llama.cpp's --repeat-penalty)
    int repeat_last_n = 64;       // how many past tokens the penalties look at (-1: all)
    float frequency_penalty = 0.f;
    float presence_penalty = 0.f;
    std::map<int32_t, float> logit_bias;  // added to the logit; -INFINITY bans a token
    uint64_t seed = 0xB17AE7;             // same seed, same logits, same choices
};

class Sampler {
  public:
    explicit Sampler(const SamplingParams& params);
    // Picks a token from `logits` (modified in place: penalties, bias, temperature), given the
    // tokens of the sequence so far (prompt and generated) for the penalties.
    int32_t sample(std::span<float> logits, std::span<const int32_t> history);
    const SamplingParams& params() const noexcept { return params_; }

  private:
    size_t nucleus_of_sorted(size_t n, float top_p) const;
    size_t nucleus_of_unsorted(size_t n, float top_p);

    SamplingParams params_;
    std::mt19937_64 rng_;
    std::vector<std::pair<float, int32_t>> candidates_;  // reused, no allocation per token
    std::vector<int32_t> counts_;  // per-token counts for the penalties, all zero between calls
    std::vector<std::pair<float, int32_t>> scratch_;  // top-p: the tokens of the crossing bin
    std::vector<double> bin_mass_;                    // top-p: probability mass per logit bin
};

}  // namespace bitnet
