// bitnet generate MODEL -p TEXT: text in, text out, printed as it is produced.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>

#include "commands.h"
#include "sampling_flags.h"

namespace bitnet::cli {

namespace {

struct GenerateArgs {
    std::string model;
    std::string prompt;
    bool stream = false;
    bool echo_prompt = false;
    EngineFlags engine;
    GenerationFlags generation;
};

void print_stats(const GenerationResult& r) {
    const GenerationStats& s = r.stats;
    std::fprintf(
        stderr,
        "\n[%d prompt tokens, %d generated (%s); first token after %.1f ms; %.2f tokens/s]\n",
        s.prompt_tokens, s.generated_tokens, finish_reason_name(r.finish), s.time_to_first_token_ms,
        s.tokens_per_second);
    if (s.drafted_tokens > 0) {
        std::fprintf(stderr, "[speculative: %d of %d drafted tokens accepted (%.0f%%)]\n",
                     s.accepted_tokens, s.drafted_tokens,
                     100.0 * s.accepted_tokens / s.drafted_tokens);
    }
}

void run_generate(const GenerateArgs& a) {
    std::string prompt = a.prompt;
    if (prompt.empty())
        prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    InferenceEngine engine(a.engine.to_options());
    const auto model = engine.load_model(a.model);
    const auto tokenizer = Tokenizer::load(a.model);
    install_interrupt_handler();
    if (a.echo_prompt) std::fputs(prompt.c_str(), stdout);
    TextCallback on_text;
    if (a.stream) {
        on_text = [](std::string_view piece) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
            return !interrupted();
        };
    } else {
        on_text = [](std::string_view) { return !interrupted(); };
    }
    const GenerationResult r =
        engine.generate(model, *tokenizer, prompt, a.generation.to_params(), on_text);
    if (!a.stream) std::fputs(r.text.c_str(), stdout);
    std::fputc('\n', stdout);
    print_stats(r);
}

}  // namespace

void add_generate_command(CLI::App& app) {
    auto args = std::make_shared<GenerateArgs>();
    CLI::App* cmd = app.add_subcommand("generate", "Generate text from a prompt");
    cmd->add_option("model", args->model, "model directory (weights, config.json, tokenizer.json)")
        ->required();
    cmd->add_option("-p,--prompt", args->prompt, "prompt text (default: read standard input)");
    cmd->add_flag("--stream", args->stream, "print tokens as they are generated");
    cmd->add_flag("--echo", args->echo_prompt, "print the prompt before the generated text");
    args->engine.add_to(*cmd);
    args->generation.add_to(*cmd);
    cmd->callback([args] { run_generate(*args); });
}

}  // namespace bitnet::cli
