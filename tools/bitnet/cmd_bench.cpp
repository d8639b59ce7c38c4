// bitnet bench MODEL | --synthetic NAME: prompt and generation speed, latency, memory and read
// bandwidth of the engine on a model, printed as a table or (--json) one JSON line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "commands.h"
#include "model/synthetic_model.h"
#include "runtime/benchmark.h"

namespace bitnet::cli {

namespace {

struct BenchArgs {
    std::string model;
    std::string synthetic;
    std::string weights;
    std::string head;
    int prompt = 128;
    int gen = 128;
    int batch = 1;
    int draft = 0;
    int repeat = 3;
    int warmup = 1;
    int bandwidth_mib = 1024;
    bool no_api_overhead = false;
    bool json = false;
    uint64_t seed = 1234;
    EngineFlags engine;
};

std::shared_ptr<const Model> build_model(const BenchArgs& a, InferenceEngine& engine) {
    if (a.model.empty() == a.synthetic.empty()) {
        throw Error(ErrorCode::InvalidArgument,
                    "bench: give either a model path or --synthetic 2b|1m (not both)");
    }
    if (a.synthetic.empty()) {
        if (!a.weights.empty() || !a.head.empty()) {
            throw Error(ErrorCode::InvalidArgument,
                        "bench: --weights and --head choose the format of a --synthetic model; a "
                        "model file keeps its own format");
        }
        std::fprintf(stderr, "loading %s ...\n", a.model.c_str());
        return engine.load_model(a.model);
    }
    SyntheticSpec spec;
    spec.shape = a.synthetic;
    if (!a.weights.empty()) spec.weights = a.weights;
    if (!a.head.empty()) spec.head = a.head;
    spec.threads = engine.threads();
    std::fprintf(stderr, "building synthetic %s (%s weights, %s head) ...\n", spec.shape.c_str(),
                 spec.weights.c_str(), spec.head.c_str());
    return make_synthetic_model(spec);
}

void run_bench(const BenchArgs& a) {
    EngineOptions options = a.engine.to_options();
    options.max_batch_size = std::max(options.max_batch_size, a.batch);
    InferenceEngine engine(options);
    const auto model = build_model(a, engine);
    std::fprintf(stderr, "model ready in %.2f s; measuring (%d threads, %s) ...\n",
                 model->info().load_seconds, engine.threads(), engine.kernel_level().c_str());

    BenchOptions o;
    o.prompt_tokens = a.prompt;
    o.gen_tokens = a.gen;
    o.batch = a.batch;
    o.draft = a.draft;
    o.repeat = a.repeat;
    o.warmup = a.warmup;
    o.bandwidth_bytes = static_cast<size_t>(a.bandwidth_mib) << 20;
    o.api_overhead = !a.no_api_overhead;
    o.seed = a.seed;
    const BenchResult r = run_benchmark(engine, model, o);
    if (a.json) {
        std::printf("%s\n", bench_json(r).c_str());
    } else {
        std::printf("%s", bench_table(r).c_str());
    }
    std::fflush(stdout);
}

}  // namespace

void add_bench_command(CLI::App& app) {
    auto args = std::make_shared<BenchArgs>();
    CLI::App* cmd = app.add_subcommand(
        "bench", "Measure prompt/generation speed, latency, memory and read bandwidth");
    cmd->add_option("model", args->model, "model directory or file (or use --synthetic instead)");
    cmd->add_option("--synthetic", args->synthetic,
                    "a random-weight model built in memory: 2b (2B-4T shape) or 1m (1 M weights)");
    cmd->add_option("--weights", args->weights,
                    "ternary layout of a --synthetic model: t2 (2-bit, default) or t5 (1.6-bit)");
    cmd->add_option("--head", args->head,
                    "head format of a --synthetic model: bf16 (default), f32, f16, q8_0, i8");
    cmd->add_option("-p,--prompt-tokens", args->prompt, "prompt length to prefill (default 128)");
    cmd->add_option("-n,--gen-tokens", args->gen, "decode steps after the prompt (default 128)");
    cmd->add_option("--batch", args->batch,
                    "also decode N sequences together and report the aggregate (default 1)");
    cmd->add_option("--draft", args->draft,
                    "also decode with prompt-lookup drafts of up to N tokens (speculative "
                    "decoding): speed-up, acceptance, same tokens (default 0: off)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--repeat", args->repeat, "timed runs; median and min-max (default 3)");
    cmd->add_option("--warmup", args->warmup, "untimed runs first (default 1)");
    cmd->add_option("--bandwidth-mib", args->bandwidth_mib,
                    "buffer for the read-bandwidth ceiling, MiB; 0 skips it (default 1024)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_flag("--no-api-overhead", args->no_api_overhead,
                  "skip timing the public API against the bare forward loop");
    cmd->add_option("--seed", args->seed, "seed of the prompt token ids");
    cmd->add_flag("--json", args->json, "print one JSON object on the last line");
    args->engine.add_to(*cmd);
    cmd->callback([args] { run_bench(*args); });
}

}  // namespace bitnet::cli
