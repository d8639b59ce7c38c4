// The arithmetic of a perplexity run, shared by compute_perplexity and its tests.
#pragma once

#include <cstdint>

namespace bitnet {

// -log softmax(logits)[token], accumulated in double.
double token_nll(const float* logits, int vocab, int32_t token);

// Sums of per-token NLLs and the estimate llama.cpp reports from them.
class NllAccumulator {
  public:
    void add(double nll) {
        sum_ += nll;
        sum_squares_ += nll * nll;
        ++count_;
    }
    int64_t count() const noexcept { return count_; }
    double mean() const noexcept { return count_ ? sum_ / static_cast<double>(count_) : 0.0; }
    double ppl() const;
    // exp(mean) * sqrt(var / (n - 1)), var the population variance of the NLLs: the standard
    // error of the mean carried through exp to first order. 0 with fewer than two tokens.
    double ppl_stderr() const;

  private:
    double sum_ = 0;
    double sum_squares_ = 0;
    int64_t count_ = 0;
};

}  // namespace bitnet
