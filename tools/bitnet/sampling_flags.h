// Sampling and generation flags shared by `generate` and `chat`, named as llama.cpp's
// llama-cli names them.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "bitnet/generate.h"

namespace bitnet::cli {

struct GenerationFlags {
    GenerationParams params;
    int n_predict = 128;
    std::vector<std::string> stop;
    std::vector<std::string> logit_bias;  // "TOKEN_ID+BIAS" / "TOKEN_ID-BIAS", as llama.cpp
    void add_to(CLI::App& app);
    GenerationParams to_params() const;
};

// Ctrl-C sets a flag that generation callbacks read, so a run stops cleanly between tokens.
void install_interrupt_handler();
bool interrupted();
void clear_interrupt();

}  // namespace bitnet::cli
