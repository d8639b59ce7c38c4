// bitnet logits MODEL --tokens 1,2,3 -o OUT.safetensors: the engine's logits (and hidden
// states) in the layout of the reference files, so anyone can compare implementations.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <numeric>

#include "commands.h"
#include "model/format/safetensors.h"

namespace bitnet::cli {

namespace {

struct LogitsArgs {
    std::string model;
    std::string tokens;
    std::string output;
    bool all = false;
    bool hidden = false;
    int top = 0;
    EngineFlags engine;
};

std::vector<int32_t> parse_tokens(const std::string& text) {
    std::vector<int32_t> ids;
    size_t i = 0;
    while (i < text.size()) {
        size_t end = text.find(',', i);
        if (end == std::string::npos) end = text.size();
        const std::string item = text.substr(i, end - i);
        size_t used = 0;
        long long v = 0;
        try {
            v = std::stoll(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != item.size() || v < 0 || v > INT32_MAX) {
            throw Error(ErrorCode::InvalidArgument, "--tokens: '" + item + "' is not a token id");
        }
        ids.push_back(static_cast<int32_t>(v));
        i = end + 1;
    }
    if (ids.empty()) throw Error(ErrorCode::InvalidArgument, "--tokens: no token ids given");
    return ids;
}

void run_logits(const LogitsArgs& a) {
    const std::vector<int32_t> ids = parse_tokens(a.tokens);
    InferenceEngine engine(a.engine.to_options());
    const auto model = engine.load_model(a.model);
    const InferResult r =
        engine.infer(*model, {ids}, {.all_logits = a.all, .hidden_states = a.hidden});
    const Tensor& logits = r.logits[0];

    std::vector<StWriteTensor> out;
    out.push_back({"logits", StDType::F32, logits.shape(), logits.data()});
    out.push_back({"ids", StDType::I32, {static_cast<int64_t>(ids.size())}, ids.data()});
    std::vector<std::string> names;
    if (a.hidden) {
        for (size_t l = 0; l < r.hidden[0].size(); ++l)
            names.push_back("hidden." + std::to_string(l));
        for (size_t l = 0; l < r.hidden[0].size(); ++l) {
            out.push_back({names[l], StDType::F32, r.hidden[0][l].shape(), r.hidden[0][l].data()});
        }
    }
    if (!a.output.empty()) {
        write_safetensors(a.output, out,
                          {{"model", a.model},
                           {"kernel_level", engine.kernel_level()},
                           {"kv_cache", a.engine.kv_cache}});
        std::fprintf(stderr, "wrote %s: logits %s%s\n", a.output.c_str(),
                     logits.shape_string().c_str(), a.hidden ? " and hidden states" : "");
    }
    if (a.top > 0) {
        const int V = model->config().vocab_size;
        const float* last = logits.data_as<float>() + (logits.dim(0) - 1) * static_cast<int64_t>(V);
        std::vector<int> order(static_cast<size_t>(V));
        std::iota(order.begin(), order.end(), 0);
        const int k = std::min(a.top, V);
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [&](int x, int y) { return last[x] > last[y]; });
        std::printf("top %d next tokens after %zu input tokens:\n", k, ids.size());
        for (int i = 0; i < k; ++i)
            std::printf("  %6d  %.6f\n", order[static_cast<size_t>(i)],
                        last[order[static_cast<size_t>(i)]]);
    }
}

}  // namespace

void add_logits_command(CLI::App& app) {
    auto args = std::make_shared<LogitsArgs>();
    CLI::App* cmd = app.add_subcommand(
        "logits", "Run a forward pass on token ids and write the logits as safetensors");
    cmd->add_option("model", args->model,
                    "model directory, .safetensors or .safetensors.index.json")
        ->required();
    cmd->add_option("--tokens", args->tokens, "comma-separated token ids, e.g. 1,2,3")->required();
    cmd->add_option("-o,--output", args->output,
                    "output .safetensors: float32 'logits' [T or 1, vocab], 'ids', 'hidden.I'");
    cmd->add_flag("--all", args->all, "logits for every position, not only the last");
    cmd->add_flag("--hidden", args->hidden,
                  "also write hidden.0..hidden.<layers> [T, hidden] like the reference files");
    cmd->add_option("--top", args->top, "print the K most likely next tokens")
        ->check(CLI::NonNegativeNumber);
    args->engine.add_to(*cmd);
    cmd->callback([args] {
        if (args->output.empty() && args->top == 0) {
            throw Error(ErrorCode::InvalidArgument,
                        "logits: give -o OUT.safetensors and/or --top K");
        }
        run_logits(*args);
    });
}

}  // namespace bitnet::cli
