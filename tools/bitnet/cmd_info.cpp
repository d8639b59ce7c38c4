// bitnet info MODEL: what a model is, how it was loaded, and what the engine will run it with.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"

namespace bitnet::cli {

namespace {

struct InfoArgs {
    std::string model;
    bool json = false;
    bool tensors = false;
    EngineFlags engine;
};

const char* activation_name(Activation a) {
    return a == Activation::Relu2 ? "relu2" : "silu";
}

std::string shape_string(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

std::string mib(size_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(bytes) / (1 << 20));
    return buf;
}

void run_info(const InfoArgs& a) {
    InferenceEngine engine(a.engine.to_options());
    const auto model = engine.load_model(a.model);
    const ModelInfo& info = model->info();
    const ModelConfig& c = info.config;
    if (a.json) {
        nlohmann::json j = {
            {"path", info.path},
            {"format", info.format},
            {"architecture", c.architecture},
            {"model_type", c.model_type},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"num_layers", c.num_layers},
            {"num_heads", c.num_heads},
            {"num_kv_heads", c.num_kv_heads},
            {"head_dim", c.head_dim},
            {"vocab_size", c.vocab_size},
            {"max_position_embeddings", c.max_position_embeddings},
            {"activation", activation_name(c.activation)},
            {"tie_word_embeddings", c.tie_word_embeddings},
            {"ternary_weights", info.ternary_weights},
            {"file_bytes", info.file_bytes},
            {"engine_bytes", info.engine_bytes},
            {"mapped_bytes", info.mapped_bytes},
            {"huge_page_bytes", info.huge_page_bytes},
            {"load_seconds", info.load_seconds},
            {"device", device_name(engine.device())},
            {"kernel_level", engine.kernel_level()},
            {"threads", engine.threads()},
        };
        if (a.tensors) {
            for (const TensorInfo& t : info.tensors) {
                j["tensors"].push_back({{"name", t.name},
                                        {"file_dtype", t.file_dtype},
                                        {"shape", t.shape},
                                        {"file_bytes", t.file_bytes},
                                        {"engine_format", t.engine_format},
                                        {"engine_bytes", t.engine_bytes}});
            }
        }
        std::printf("%s\n", j.dump(2).c_str());
        return;
    }
    std::printf("model:          %s\n", info.path.c_str());
    std::printf("format:         %s\n", info.format.c_str());
    std::printf("architecture:   %s (model_type %s)\n", c.architecture.c_str(),
                c.model_type.c_str());
    std::printf(
        "shape:          hidden %d, ffn %d, layers %d, heads %d (kv %d, head_dim %d), vocab %d\n",
        c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim,
        c.vocab_size);
    std::printf("context:        %d positions, rope theta %g, rms eps %g\n",
                c.max_position_embeddings, c.rope_theta, c.rms_norm_eps);
    std::printf("blocks:         %s, sub-norms %s, lm_head %s\n", activation_name(c.activation),
                c.sub_norms ? "yes" : "no",
                c.tie_word_embeddings ? "tied to the embedding" : "separate");
    std::printf(
        "bitlinear:      %s weights, alpha %s weight_scale%s\n",
        c.quantization_mode == QuantizationMode::Offline ? "packed" : "master (ternarised at load)",
        c.scale_convention == ScaleConvention::Multiply ? "=" : "= 1 /",
        c.bitlinear_input_norm ? ", input RMSNorm" : "");
    std::printf(
        "weights:        %zu ternary; file %s; engine holds %s (%s mapped from the file, %s in "
        "2 MiB pages)\n",
        info.ternary_weights, mib(info.file_bytes).c_str(), mib(info.engine_bytes).c_str(),
        mib(info.mapped_bytes).c_str(), mib(info.huge_page_bytes).c_str());
    std::printf("loaded in:      %.3f s\n", info.load_seconds);
    std::printf("runs on:        %s, kernels %s, %d threads\n", device_name(engine.device()),
                engine.kernel_level().c_str(), engine.threads());
    if (a.tensors) {
        std::printf("\n%-52s %-9s %-16s %-34s %s\n", "tensor", "file", "shape", "engine", "bytes");
        for (const TensorInfo& t : info.tensors) {
            std::printf("%-52s %-9s %-16s %-34s %zu\n", t.name.c_str(), t.file_dtype.c_str(),
                        shape_string(t.shape).c_str(), t.engine_format.c_str(), t.engine_bytes);
        }
    }
}

}  // namespace

void add_info_command(CLI::App& app) {
    auto args = std::make_shared<InfoArgs>();
    CLI::App* cmd = app.add_subcommand(
        "info", "Describe a model: architecture, shapes, formats, bytes, kernel level");
    cmd->add_option("model", args->model,
                    "model directory, .safetensors or .safetensors.index.json")
        ->required();
    cmd->add_flag("--json", args->json, "print one JSON object");
    cmd->add_flag("--tensors", args->tensors, "list every tensor");
    args->engine.add_to(*cmd);
    cmd->callback([args] { run_info(*args); });
}

}  // namespace bitnet::cli
