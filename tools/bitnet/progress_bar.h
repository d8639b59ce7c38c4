// A one-line progress bar on stderr for long-running commands (convert, perplexity). Draws only
// when stderr is a terminal, so logs and tests see no control characters.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace bitnet::cli {

class ProgressBar {
  public:
    ProgressBar(std::string label, bool enabled = true);
    // Redraws at most ten times a second.
    void update(uint64_t done, uint64_t total);
    // Draws the final state and ends the line.
    void finish();

  private:
    void draw(uint64_t done, uint64_t total);
    std::string label_;
    bool enabled_;
    bool drawn_ = false;
    uint64_t last_done_ = 0, last_total_ = 0;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace bitnet::cli
