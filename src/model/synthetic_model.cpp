#include "model/synthetic_model.h"

#include <chrono>
#include <cmath>
#include <cstring>

#include "bitnet/error.h"
#include "core/cpu_features.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/cpu/ternary_pack.h"
#include "model/model_impl.h"

namespace bitnet {

namespace {

// splitmix64: tiny, fast and good enough for weights whose values do not matter. Every row is
// seeded from (spec seed, matrix, row), so the model does not depend on how rows are split
// over threads.
struct Rng {
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // Uniform in [-1, 1).
    float symmetric() { return static_cast<float>(next() >> 40) * (2.f / 16777216.f) - 1.f; }
};

Rng row_rng(uint64_t seed, uint64_t matrix, uint64_t row) {
    Rng r{seed * 0x100000001B3ull ^ (matrix << 40) ^ row};
    r.next();
    return r;
}

// Uniform over {-1, 0, +1}: 16 random bits per weight, mapped by multiply-high.
void random_ternary_row(Rng& rng, int8_t* out, int n) {
    for (int i = 0; i < n; i += 4) {
        const uint64_t bits = rng.next();
        for (int j = 0; j < 4 && i + j < n; ++j) {
            const uint64_t chunk = (bits >> (16 * j)) & 0xFFFF;
            out[i + j] = static_cast<int8_t>(static_cast<int>((chunk * 3) >> 16) - 1);
        }
    }
}

cpu::TernaryLayout parse_weights(const std::string& name) {
    if (name == "t2") return cpu::TernaryLayout::Bits2;
    if (name == "t5") return cpu::TernaryLayout::Trits5;
    throw Error(ErrorCode::InvalidArgument,
                "synthetic model: unknown ternary layout '" + name + "' (expected t2 or t5)");
}

DenseFormat parse_head(const std::string& name) {
    if (name == "f32") return DenseFormat::F32;
    if (name == "bf16") return DenseFormat::BF16;
    if (name == "f16") return DenseFormat::F16;
    if (name == "q8_0") return DenseFormat::Q8_0;
    if (name == "i8") return DenseFormat::I8R;
    throw Error(ErrorCode::InvalidArgument, "synthetic model: unknown head format '" + name +
                                                "' (expected f32, bf16, f16, q8_0 or i8)");
}

class SyntheticBuilder {
  public:
    SyntheticBuilder(const SyntheticSpec& spec, ModelInfo& info, ThreadPool& pool)
        : spec_(spec), layout_(parse_weights(spec.weights)), info_(info), pool_(pool) {}

    ModelWeights build(const ModelConfig& c);

  private:
    std::vector<float> norm(const std::string& name, int size, uint64_t matrix);
    BitLinearWeight bitlinear(const std::string& name, int out, int in, uint64_t matrix);
    DenseMatrix embedding(const std::string& name, int rows, int cols, uint64_t matrix);
    void record(const std::string& name, std::vector<int64_t> shape, const std::string& format,
                size_t bytes) {
        info_.tensors.push_back({name, "none", std::move(shape), 0, format + " (random)", bytes});
        info_.engine_bytes += bytes;
    }

    const SyntheticSpec& spec_;
    cpu::TernaryLayout layout_;
    ModelInfo& info_;
    ThreadPool& pool_;
};

std::vector<float> SyntheticBuilder::norm(const std::string& name, int size, uint64_t matrix) {
    std::vector<float> w(static_cast<size_t>(size));
    Rng rng = row_rng(spec_.seed, matrix, 0);
    for (float& v : w) v = 1.f + 0.1f * rng.symmetric();
    record(name, {size}, "f32", w.size() * sizeof(float));
    return w;
}

BitLinearWeight SyntheticBuilder::bitlinear(const std::string& name, int out, int in,
                                            uint64_t matrix) {
    BitLinearWeight w;
    w.name = name;
    w.packed = weight_buffer(cpu::ternary_packed_bytes(out, in, layout_));
    w.view = cpu::make_ternary_view(w.packed.data(), out, in, layout_);
    // A third of the weights are zero, so a dot product of n unit-scale inputs has a standard
    // deviation of sqrt(2n/3); dividing by it keeps activations near unit scale layer after layer.
    w.alpha = 1.f / std::sqrt(2.f * static_cast<float>(in) / 3.f);
    pool_.parallel_for(out, 64, [&](int64_t r0, int64_t r1) {
        std::vector<int8_t> row(static_cast<size_t>(in));
        for (int64_t r = r0; r < r1; ++r) {
            Rng rng = row_rng(spec_.seed, matrix, static_cast<uint64_t>(r));
            random_ternary_row(rng, row.data(), in);
            uint8_t* dst = w.packed.data() + r * w.view.row_bytes();
            if (layout_ == cpu::TernaryLayout::Bits2) {
                cpu::pack_ternary_row(row.data(), in, dst);
            } else {
                cpu::pack_ternary5_row(row.data(), in, dst);
            }
        }
    });
    record(name, {out, in}, cpu::layout_name(layout_), w.packed.bytes());
    info_.ternary_weights += static_cast<size_t>(out) * in;
    return w;
}

DenseMatrix SyntheticBuilder::embedding(const std::string& name, int rows, int cols,
                                        uint64_t matrix) {
    const DenseFormat format = parse_head(spec_.head);
    // Quantised formats are made from a bf16 matrix by the engine's own converter, so they hold
    // exactly what converting a real checkpoint would give.
    const bool direct =
        format == DenseFormat::F32 || format == DenseFormat::BF16 || format == DenseFormat::F16;
    DenseMatrix m;
    m.name = name;
    m.format = direct ? format : DenseFormat::BF16;
    m.rows = rows;
    m.cols = cols;
    const size_t bytes = dense_format_bytes(m.format, rows, cols);
    m.owned = weight_buffer(bytes);
    uint8_t* base = m.owned.data();
    const DenseFormat stored = m.format;
    pool_.parallel_for(rows, 256, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            Rng rng = row_rng(spec_.seed, matrix, static_cast<uint64_t>(r));
            for (int64_t k = 0; k < cols; ++k) {
                const float v = 0.05f * rng.symmetric();
                const size_t i = static_cast<size_t>(r * cols + k);
                if (stored == DenseFormat::F32) {
                    std::memcpy(base + 4 * i, &v, 4);
                } else {
                    const uint16_t h = stored == DenseFormat::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
                    std::memcpy(base + 2 * i, &h, 2);
                }
            }
        }
    });
    m.bind(base, bytes);
    if (!direct) m = convert_dense(m, format);
    record(name, {rows, cols}, dense_format_name(format), m.bytes());
    return m;
}

ModelWeights SyntheticBuilder::build(const ModelConfig& c) {
    const int H = c.hidden_size, F = c.intermediate_size;
    const int QD = c.num_heads * c.head_dim, KD = c.num_kv_heads * c.head_dim;
    ModelWeights w;
    uint64_t matrix = 0;
    w.embedding = embedding("model.embed_tokens.weight", c.vocab_size, H, matrix++);
    w.tied = true;
    w.final_norm = norm("model.norm.weight", H, matrix++);
    w.layers.resize(static_cast<size_t>(c.num_layers));
    for (int i = 0; i < c.num_layers; ++i) {
        const std::string p = "model.layers." + std::to_string(i) + ".";
        LayerWeights& L = w.layers[static_cast<size_t>(i)];
        L.attn_norm = norm(p + "input_layernorm.weight", H, matrix++);
        L.ffn_norm = norm(p + "post_attention_layernorm.weight", H, matrix++);
        L.attn_sub_norm = norm(p + "self_attn.attn_sub_norm.weight", QD, matrix++);
        L.ffn_sub_norm = norm(p + "mlp.ffn_sub_norm.weight", F, matrix++);
        L.q = bitlinear(p + "self_attn.q_proj.weight", QD, H, matrix++);
        L.k = bitlinear(p + "self_attn.k_proj.weight", KD, H, matrix++);
        L.v = bitlinear(p + "self_attn.v_proj.weight", KD, H, matrix++);
        L.o = bitlinear(p + "self_attn.o_proj.weight", H, QD, matrix++);
        L.gate = bitlinear(p + "mlp.gate_proj.weight", F, H, matrix++);
        L.up = bitlinear(p + "mlp.up_proj.weight", F, H, matrix++);
        L.down = bitlinear(p + "mlp.down_proj.weight", H, F, matrix++);
    }
    return w;
}

ModelConfig base_config() {
    ModelConfig c;
    c.architecture = "BitNetForCausalLM";
    c.model_type = "bitnet";
    c.max_position_embeddings = 4096;
    c.rms_norm_eps = 1e-5f;
    c.rope_theta = 500000.f;
    c.activation = Activation::Relu2;
    c.tie_word_embeddings = true;
    c.sub_norms = true;
    c.quantization_mode = QuantizationMode::Offline;
    c.scale_convention = ScaleConvention::Multiply;
    return c;
}

}  // namespace

std::vector<std::string> synthetic_shapes() {
    return {"2b", "1m"};
}

ModelConfig synthetic_config(const std::string& shape) {
    ModelConfig c = base_config();
    if (shape == "2b") {
        c.hidden_size = 2560;
        c.intermediate_size = 6912;
        c.num_layers = 30;
        c.num_heads = 20;
        c.num_kv_heads = 5;
        c.head_dim = 128;
        c.vocab_size = 128256;
        c.bos_token_id = 128000;
        c.eos_token_ids = {128001, 128009};
    } else if (shape == "1m") {
        c.hidden_size = 128;
        c.intermediate_size = 512;
        c.num_layers = 4;
        c.num_heads = 4;
        c.num_kv_heads = 4;
        c.head_dim = 32;
        c.vocab_size = 512;
        c.bos_token_id = 1;
        c.eos_token_ids = {2};
    } else {
        throw Error(ErrorCode::InvalidArgument,
                    "unknown synthetic model '" + shape + "' (expected 2b or 1m)");
    }
    return c;
}

std::shared_ptr<const Model> make_synthetic_model(const SyntheticSpec& spec) {
    const auto start = std::chrono::steady_clock::now();
    const ModelConfig config = synthetic_config(spec.shape);
    const cpu::TernaryLayout layout = parse_weights(spec.weights);
    parse_head(spec.head);
    if (spec.threads < 0)
        throw Error(ErrorCode::InvalidArgument, "synthetic model: threads must be >= 0");

    auto impl = std::make_unique<Model::Impl>();
    impl->config = config;
    impl->info.path = "synthetic:" + spec.shape;
    impl->info.config = config;
    impl->info.format = "synthetic " + spec.shape + " (random " + cpu::layout_name(layout) +
                        " weights, " + spec.head + " tied head, seed " + std::to_string(spec.seed) +
                        ")";
    ThreadPool pool(spec.threads == 0 ? available_cores() : spec.threads);
    SyntheticBuilder builder(spec, impl->info, pool);
    impl->weights = builder.build(config);
    impl->rope.build(config.head_dim, config.rope_theta);
    impl->info.load_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return make_model(std::move(impl));
}

}  // namespace bitnet
