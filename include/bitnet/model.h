// A loaded model: immutable weights in kernel layout plus a description of what was loaded.
// One Model serves any number of engines, sessions and threads at once.
#pragma once

#include <compare>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bitnet/tensor.h"

namespace bitnet {

enum class Activation { Relu2, Silu };
// How a BitLinear's per-tensor scale alpha is read from the checkpoint (see docs/BITNET.md).
enum class ScaleConvention { Multiply, Divide };
enum class QuantizationMode { Offline, Online };

struct ModelConfig {
    std::string architecture;  // "BitNetForCausalLM", "BitnetForCausalLM", "LlamaForCausalLM"
    std::string model_type;    // "bitnet", "llama"
    int hidden_size = 0;
    int intermediate_size = 0;
    int num_layers = 0;
    int num_heads = 0;
    int num_kv_heads = 0;
    int head_dim = 0;
    int vocab_size = 0;
    int max_position_embeddings = 0;
    float rms_norm_eps = 1e-5f;
    float rope_theta = 10000.f;
    Activation activation = Activation::Relu2;
    bool tie_word_embeddings = false;
    bool sub_norms = true;  // attn/ffn sub-norms before o_proj / down_proj
    QuantizationMode quantization_mode = QuantizationMode::Offline;
    ScaleConvention scale_convention = ScaleConvention::Multiply;
    bool bitlinear_input_norm = false;  // quantization_config.use_rms_norm
    float bitlinear_input_norm_eps = 1e-6f;
    int bos_token_id = -1;
    std::vector<int> eos_token_ids;
};

// One tensor as the file stored it and as the engine holds it.
struct TensorInfo {
    std::string name;
    std::string file_dtype;  // as stored: "BF16", "U8", ...
    std::vector<int64_t> shape;
    size_t file_bytes = 0;
    std::string engine_format;  // "ternary2 (repacked)", "bf16 (mapped)", "f32 (converted)", ...
    size_t engine_bytes = 0;
};

struct ModelInfo {
    std::string path;
    std::string format;  // "safetensors (offline packed)", ...
    ModelConfig config;
    std::vector<TensorInfo> tensors;
    size_t file_bytes = 0;       // bytes of all weight files
    size_t ternary_weights = 0;  // number of ternary weights
    size_t engine_bytes = 0;     // bytes the engine holds for weights (owned + mapped)
    size_t mapped_bytes = 0;     // of which used straight from the file mapping
    size_t huge_page_bytes = 0;  // of which in 2 MiB pages (see WeightMemory)
    double load_seconds = 0;
};

// Where the weights the kernels read as the file stores them (an engine GGUF's matrices, a bf16
// or f16 embedding) live. Every decode step streams all weights from DRAM, and with 4 KiB pages
// that costs a TLB miss per page (measured on a 2-core VM: a two-thread read at 29 GB/s from
// 4 KiB pages, 43 GB/s from 2 MiB pages).
enum class WeightMemory {
    // HugePages for tensors of 1 MiB or more where the OS offers transparent huge pages,
    // else Mapped.
    Auto,
    // Read in place from the file mapping: loading is page-ins, and processes share the page
    // cache (4 KiB pages).
    Mapped,
    // Copied at load into memory backed by 2 MiB transparent huge pages (one read of the file;
    // memory of this process, not shared). Weights the loader repacks are always its own.
    HugePages,
};
const char* weight_memory_name(WeightMemory memory) noexcept;

struct LoadOptions {
    Device device = Device::Auto;
    WeightMemory weight_memory = WeightMemory::Auto;
    // Compares every field, so the model cache keys on all options (add new fields freely).
    friend auto operator<=>(const LoadOptions&, const LoadOptions&) = default;
};

class Model {
  public:
    // Loads a model directory (config.json + model.safetensors or a sharded index) or a path to
    // its .safetensors / .safetensors.index.json. Throws bitnet::Error naming what is wrong.
    static std::shared_ptr<const Model> load(const std::string& path,
                                             const LoadOptions& options = {});

    ~Model();
    const ModelConfig& config() const noexcept;
    const ModelInfo& info() const noexcept;

    struct Impl;
    const Impl& impl() const noexcept { return *impl_; }

  private:
    // Models built in memory rather than loaded (synthetic benchmark models) come from here.
    friend std::shared_ptr<const Model> make_model(std::unique_ptr<Impl> impl);
    explicit Model(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace bitnet
