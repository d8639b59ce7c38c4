// bitnet chat MODEL: an interactive conversation; one user message per input line. Works with
// a terminal or a pipe on standard input.
#include <unistd.h>
#include <cstdio>
#include <iostream>
#include <memory>

#include "bitnet/chat_template.h"
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

void run_chat(const ChatArgs& a) {
    InferenceEngine engine(a.engine.to_options());
    const auto model = engine.load_model(a.model);
    const auto tokenizer = Tokenizer::load(a.model);
    install_interrupt_handler();
    std::vector<ChatMessage> messages;
    if (!a.system.empty()) messages.push_back({"system", a.system});
    const bool interactive = isatty(0);
    std::string line;
    for (;;) {
        if (interactive) {
            std::fputs("> ", stdout);
            std::fflush(stdout);
        }
        if (!std::getline(std::cin, line)) break;
        if (line.empty()) continue;
        messages.push_back({"user", line});
        clear_interrupt();
        // The model's own chat template (tokenizer_config.json), else the 2B-4T format.
        const ChatPrompt prompt = build_chat_prompt(*tokenizer, messages);
        GenerationParams params = a.generation.to_params();
        params.add_special = prompt.add_special;
        const GenerationResult r =
            engine.generate(model, *tokenizer, prompt.text, params, [](std::string_view piece) {
                std::fwrite(piece.data(), 1, piece.size(), stdout);
                std::fflush(stdout);
                return !interrupted();
            });
        std::fputc('\n', stdout);
        std::fflush(stdout);
        std::fprintf(stderr, "[%d tokens, %.2f tokens/s]\n", r.stats.generated_tokens,
                     r.stats.tokens_per_second);
        messages.push_back({"assistant", r.text});
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
