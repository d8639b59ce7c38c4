// bitnet perplexity MODEL FILE [--ctx N] [--batch B] [--chunks C]: perplexity over a text file,
// computed and printed as llama.cpp's llama-perplexity does (running PPL per chunk on stdout,
// "Final estimate: PPL = X +/- Y"), with a progress bar on stderr when it is a terminal.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "bitnet/perplexity.h"
#include "commands.h"
#include "progress_bar.h"

namespace bitnet::cli {

namespace {

struct PerplexityArgs {
    std::string model;
    std::string file;
    int context = 512;
    int batch = 1;
    int chunks = 0;
    EngineFlags engine;
};

std::string read_text_file(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        throw Error(ErrorCode::NotFound, path + ": no such file");
    if (std::filesystem::is_directory(path, ec))
        throw Error(ErrorCode::InvalidArgument, path + ": is a directory, not a text file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCode::IoError, path + ": cannot open");
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw Error(ErrorCode::IoError, path + ": read failed");
    return text.str();
}

void run_perplexity(const PerplexityArgs& a) {
    const std::string text = read_text_file(a.file);
    EngineOptions engine_options = a.engine.to_options();
    engine_options.max_batch_size = std::max(engine_options.max_batch_size, a.batch);
    InferenceEngine engine(engine_options);
    const auto model = engine.load_model(a.model);
    const auto tokenizer = Tokenizer::load(a.model);

    std::vector<int32_t> tokens;
    try {
        tokens = perplexity_tokens(*tokenizer, text);
    } catch (const Error& e) {
        throw Error(e.code(), a.file + ": " + e.what());
    }
    const int32_t bos = tokenizer_adds_bos(*tokenizer) ? *tokenizer->bos_id() : -1;
    const PerplexityOptions options{a.context, a.batch, a.chunks};

    ProgressBar bar("perplexity");
    const bool bar_on_terminal = isatty(STDERR_FILENO) != 0;
    // The bar owns the terminal's last line: when stdout is that terminal too, each chunk's
    // value goes on a line of its own above the bar rather than after it on the same line.
    const bool one_per_line = bar_on_terminal && isatty(STDOUT_FILENO) != 0;
    const PerplexityResult r =
        compute_perplexity(engine, model, tokens, bos, options, [&](const PerplexityProgress& p) {
            if (p.chunk == 0) {  // the options are valid: say what will be computed
                std::fprintf(stderr,
                             "perplexity: %s: %zu tokens, %d chunks of %d (second half scored), "
                             "batch %d, %d threads, %s kernels\n",
                             a.file.c_str(), tokens.size(), p.chunks, a.context, a.batch,
                             engine.threads(), engine.kernel_level().c_str());
                bar.update(0, static_cast<uint64_t>(p.chunks));
                return;
            }
            if (one_per_line) std::fputs("\r\033[K", stderr);
            std::printf("[%d]%.4f,%s", p.chunk, p.running_ppl, one_per_line ? "\n" : "");
            std::fflush(stdout);
            bar.update(static_cast<uint64_t>(p.chunk), static_cast<uint64_t>(p.chunks));
        });
    bar.finish();
    std::printf("\n");
    std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_stderr);
    std::printf("scored %lld tokens in %d chunks of %d in %.2f s (%.1f tokens/s evaluated)\n",
                static_cast<long long>(r.tokens_scored), r.chunks, r.context, r.seconds,
                r.seconds > 0 ? static_cast<double>(r.chunks) * r.context / r.seconds : 0.0);
}

}  // namespace

void add_perplexity_command(CLI::App& app) {
    auto args = std::make_shared<PerplexityArgs>();
    CLI::App* cmd = app.add_subcommand(
        "perplexity", "Perplexity of the model over a text file, computed as llama.cpp does");
    cmd->add_option("model", args->model, "model directory (weights, config.json, tokenizer.json)")
        ->required();
    cmd->add_option("file", args->file, "UTF-8 text file")->required();
    cmd->add_option("-c,--ctx", args->context, "tokens per chunk; the second half is scored")
        ->capture_default_str();
    cmd->add_option("-b,--batch", args->batch, "chunks evaluated together in one forward pass")
        ->capture_default_str();
    cmd->add_option("--chunks", args->chunks, "evaluate at most this many chunks (0: all)")
        ->check(CLI::NonNegativeNumber);
    args->engine.add_to(*cmd);
    cmd->callback([args] { run_perplexity(*args); });
}

}  // namespace bitnet::cli
