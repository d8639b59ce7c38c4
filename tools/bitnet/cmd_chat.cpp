// bitnet chat MODEL: an interactive conversation; one user message per input line. Works with
// a terminal or a pipe on standard input.
#include <unistd.h>
#include <cstdio>
#include <iostream>
#include <memory>

#include "commands.h"
#include "sampling_flags.h"

namespace bitnet::cli {

namespace {

struct ChatArgs {
    std::string model;
    std::string system;
    EngineFlags engine;
    GenerationFlags generation;
};

// The conversation in microsoft/bitnet-b1.58-2B-4T's chat format. The model's Jinja
// chat_template is not interpreted yet (issue #3); this is the format that template produces.
std::string render(const std::string& system,
                   const std::vector<std::pair<std::string, std::string>>& turns) {
    std::string out;
    if (!system.empty()) out += "System: " + system + "<|eot_id|>";
    for (const auto& [user, assistant] : turns) {
        out += "User: " + user + "<|eot_id|>Assistant: ";
        if (!assistant.empty()) out += assistant + "<|eot_id|>";
    }
    return out;
}

void run_chat(const ChatArgs& a) {
    InferenceEngine engine(a.engine.to_options());
    const auto model = engine.load_model(a.model);
    const auto tokenizer = Tokenizer::load(a.model);
    install_interrupt_handler();
    std::vector<std::pair<std::string, std::string>> turns;
    const bool interactive = isatty(0);
    std::string line;
    for (;;) {
        if (interactive) {
            std::fputs("> ", stdout);
            std::fflush(stdout);
        }
        if (!std::getline(std::cin, line)) break;
        if (line.empty()) continue;
        turns.emplace_back(line, "");
        clear_interrupt();
        GenerationParams params = a.generation.to_params();
        const GenerationResult r = engine.generate(
            model, *tokenizer, render(a.system, turns), params, [](std::string_view piece) {
                std::fwrite(piece.data(), 1, piece.size(), stdout);
                std::fflush(stdout);
                return !interrupted();
            });
        std::fputc('\n', stdout);
        std::fflush(stdout);
        std::fprintf(stderr, "[%d tokens, %.2f tokens/s]\n", r.stats.generated_tokens,
                     r.stats.tokens_per_second);
        turns.back().second = r.text;
    }
}

}  // namespace

void add_chat_command(CLI::App& app) {
    auto args = std::make_shared<ChatArgs>();
    CLI::App* cmd =
        app.add_subcommand("chat", "Chat with a model (one message per line of standard input)");
    cmd->add_option("model", args->model, "model directory (weights, config.json, tokenizer.json)")
        ->required();
    cmd->add_option("--system", args->system, "system message");
    args->engine.add_to(*cmd);
    args->generation.add_to(*cmd);
    cmd->callback([args] { run_chat(*args); });
}

}  // namespace bitnet::cli
