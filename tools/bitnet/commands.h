// The `bitnet` command: one file per subcommand, one shared table of engine flags.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "bitnet/engine.h"

namespace bitnet::cli {

// Flags every subcommand that runs the engine understands (-t, --kernel, --kv-cache, ...).
struct EngineFlags {
    int threads = 0;
    std::string kernel = "auto";
    std::string kv_cache = "f32";
    std::string device = "auto";
    std::string weight_memory = "auto";
    bool reference_numerics = false;
    void add_to(CLI::App& app);
    EngineOptions to_options() const;
};

void add_info_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_chat_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_perplexity_command(CLI::App& app);
void add_convert_command(CLI::App& app);

}  // namespace bitnet::cli
