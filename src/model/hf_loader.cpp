// Hugging Face checkpoints -> ModelWeights. Handles the three BitNet families of
// docs/BITNET.md: packed uint8 weights with weight_scale (offline), master weights ternarised
// here (online), and the 1bitLLM names for the sub-norms.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "bitnet/error.h"
#include "core/half.h"
#include "kernels/cpu/ternary_pack.h"
#include "model/checkpoint.h"
#include "model/model_impl.h"

namespace bitnet {

namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

class HfLoader {
  public:
    HfLoader(const HfCheckpoint& ckpt, ModelInfo& info, WeightMemory memory)
        : ckpt_(ckpt), cfg_(ckpt.config()), info_(info), memory_(memory) {}

    ModelWeights load();

  private:
    const StTensor& expect(const std::string& name, const std::vector<int64_t>& shape) const;
    float scalar_value(const StTensor& t) const;
    std::vector<float> norm(const std::string& name, int size);
    DenseMatrix dense(const std::string& name, int rows, int cols);
    BitLinearWeight bitlinear(const std::string& prefix, int out, int in);
    void record(const StTensor& t, const std::string& engine_format, size_t engine_bytes,
                size_t mapped = 0);

    const HfCheckpoint& ckpt_;
    const ModelConfig& cfg_;
    ModelInfo& info_;
    WeightMemory memory_;
};

[[noreturn]] void wrong(const HfCheckpoint& ckpt, const StTensor& t, const std::string& why) {
    throw Error(ErrorCode::ShapeMismatch,
                ckpt.file_of(t.name) + ": tensor '" + t.name + "' " + why);
}

const StTensor& HfLoader::expect(const std::string& name, const std::vector<int64_t>& shape) const {
    const StTensor& t = ckpt_.get(name);
    if (t.shape != shape)
        wrong(ckpt_, t, "has shape " + shape_str(t.shape) + ", expected " + shape_str(shape));
    return t;
}

float to_f32(const StTensor& t, size_t i) {
    switch (t.dtype) {
        case StDType::F32: {
            float v;
            std::memcpy(&v, t.data + 4 * i, 4);
            return v;
        }
        case StDType::BF16:
        case StDType::F16: {
            uint16_t h;
            std::memcpy(&h, t.data + 2 * i, 2);
            return t.dtype == StDType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
        }
        default:
            return NAN;
    }
}

bool is_float(StDType d) {
    return d == StDType::F32 || d == StDType::BF16 || d == StDType::F16;
}

void HfLoader::record(const StTensor& t, const std::string& engine_format, size_t engine_bytes,
                      size_t mapped) {
    info_.tensors.push_back(
        {t.name, st_dtype_name(t.dtype), t.shape, t.nbytes, engine_format, engine_bytes});
    info_.engine_bytes += engine_bytes;
    info_.mapped_bytes += mapped;
}

float HfLoader::scalar_value(const StTensor& t) const {
    if (t.numel() != 1 || !is_float(t.dtype)) {
        wrong(ckpt_, t,
              "must hold one float (has " + std::string(st_dtype_name(t.dtype)) + " " +
                  shape_str(t.shape) + ")");
    }
    return to_f32(t, 0);
}

std::vector<float> HfLoader::norm(const std::string& name, int size) {
    const StTensor& t = expect(name, {size});
    if (!is_float(t.dtype))
        wrong(ckpt_, t,
              "has dtype " + std::string(st_dtype_name(t.dtype)) + ", expected a float type");
    std::vector<float> out(static_cast<size_t>(size));
    for (int i = 0; i < size; ++i) out[i] = to_f32(t, i);
    record(t, "f32 (converted)", out.size() * sizeof(float));
    return out;
}

DenseMatrix HfLoader::dense(const std::string& name, int rows, int cols) {
    const StTensor& t = expect(name, {rows, cols});
    DenseMatrix m;
    m.name = name;
    m.rows = rows;
    m.cols = cols;
    if (!is_float(t.dtype)) {
        wrong(ckpt_, t,
              "has dtype " + std::string(st_dtype_name(t.dtype)) + ", expected BF16, F16 or F32");
    }
    m.format = t.dtype == StDType::BF16  ? DenseFormat::BF16
               : t.dtype == StDType::F16 ? DenseFormat::F16
                                         : DenseFormat::F32;
    const std::string kind = dense_format_name(m.format);
    if (reinterpret_cast<uintptr_t>(t.data) % st_dtype_size(t.dtype) == 0) {
        const PlacedWeights placed = place_file_weights(t.data, t.nbytes, memory_, m.owned);
        m.data = placed.data;
        record(t, kind + placed.how, t.nbytes, placed.mapped_bytes);
    } else {
        // safetensors does not promise alignment; kernels read whole elements.
        m.owned = weight_buffer(t.nbytes);
        std::memcpy(m.owned.data(), t.data, t.nbytes);
        m.data = m.owned.data();
        record(t, kind + " (copied to align)", t.nbytes);
    }
    return m;
}

BitLinearWeight HfLoader::bitlinear(const std::string& prefix, int out, int in) {
    BitLinearWeight w;
    w.name = prefix + ".weight";
    // Allocated once the tensor's shape is known to match, so a lying config cannot make us
    // reserve memory the file does not back.
    auto allocate = [&] {
        w.packed = weight_buffer(cpu::ternary_packed_bytes(out, in));
        w.view = {w.packed.data(), out, in, cpu::round_up(in, cpu::kTernaryBlock)};
    };
    std::vector<int8_t> row;

    if (cfg_.quantization_mode == QuantizationMode::Offline) {
        // transformers' pack_weights: uint8 [ceil(out/4), in]; row k*R + r of W is bits 2k..2k+1
        // of P[r], holding value + 1.
        const int packed_rows = (out + 3) / 4;
        const StTensor& p = expect(w.name, {packed_rows, in});
        if (p.dtype != StDType::U8)
            wrong(ckpt_, p,
                  "has dtype " + std::string(st_dtype_name(p.dtype)) +
                      ", expected U8 (packed ternary) for quantization_mode offline");
        const StTensor& s = ckpt_.get(prefix + ".weight_scale");
        const float scale = scalar_value(s);
        if (!(std::isfinite(scale) && scale > 0.f))
            wrong(ckpt_, s, "is " + std::to_string(scale) + ", expected a positive finite scale");
        w.alpha = cfg_.scale_convention == ScaleConvention::Divide ? 1.f / scale : scale;
        allocate();
        row.resize(static_cast<size_t>(in));
        for (int r = 0; r < out; ++r) {
            const uint8_t* prow = p.data + static_cast<size_t>(r % packed_rows) * in;
            const int shift = 2 * (r / packed_rows);
            for (int c = 0; c < in; ++c) {
                const int code = (prow[c] >> shift) & 3;
                if (code == 3)
                    wrong(ckpt_, p,
                          "holds the invalid 2-bit code 3 at row " + std::to_string(r) +
                              ", column " + std::to_string(c));
                row[c] = static_cast<int8_t>(code - 1);
            }
            cpu::pack_ternary_row(row.data(), in,
                                  w.packed.data() + static_cast<size_t>(r) * w.view.row_bytes());
        }
        release_file_pages(p.data, p.nbytes);  // repacked: the engine reads its own copy
        record(p, "ternary2 (repacked)", w.packed.bytes());
        record(s, "f32 scalar", 0);
    } else {
        // Online: absmean ternarisation, as transformers' WeightQuant and 1bitLLM's weight_quant:
        // scale = 1 / max(mean|W|, 1e-5); w = clamp(round(W * scale), -1, 1); alpha = 1 / scale.
        const StTensor& m = expect(w.name, {out, in});
        if (!is_float(m.dtype))
            wrong(ckpt_, m,
                  "has dtype " + std::string(st_dtype_name(m.dtype)) +
                      ", expected BF16/F16/F32 master weights for quantization_mode online");
        allocate();
        row.resize(static_cast<size_t>(in));
        const size_t n = static_cast<size_t>(out) * in;
        double sum = 0;
        for (size_t i = 0; i < n; ++i) sum += std::fabs(to_f32(m, i));
        const float mean = static_cast<float>(sum / static_cast<double>(n));
        if (!std::isfinite(mean)) wrong(ckpt_, m, "holds non-finite values");
        const float scale = 1.f / std::max(mean, 1e-5f);
        w.alpha = 1.f / scale;
        w.alpha_inside = true;
        for (int r = 0; r < out; ++r) {
            for (int c = 0; c < in; ++c) {
                const float q = std::nearbyint(to_f32(m, static_cast<size_t>(r) * in + c) * scale);
                row[c] = static_cast<int8_t>(std::clamp(q, -1.f, 1.f));
            }
            cpu::pack_ternary_row(row.data(), in,
                                  w.packed.data() + static_cast<size_t>(r) * w.view.row_bytes());
        }
        release_file_pages(m.data, m.nbytes);
        record(m, "ternary2 (ternarised)", w.packed.bytes());
    }
    info_.ternary_weights += static_cast<size_t>(out) * in;
    if (cfg_.bitlinear_input_norm) w.input_norm = norm(prefix + ".rms_norm.weight", in);
    return w;
}

ModelWeights HfLoader::load() {
    const int H = cfg_.hidden_size, F = cfg_.intermediate_size, V = cfg_.vocab_size;
    const int QD = cfg_.num_heads * cfg_.head_dim, KD = cfg_.num_kv_heads * cfg_.head_dim;
    const bool one_bit_llm = cfg_.architecture == "BitnetForCausalLM";
    ModelWeights w;
    w.embedding = dense("model.embed_tokens.weight", V, H);
    w.tied = cfg_.tie_word_embeddings;
    if (!w.tied) w.lm_head_own = dense("lm_head.weight", V, H);
    w.final_norm = norm("model.norm.weight", H);
    w.layers.resize(static_cast<size_t>(cfg_.num_layers));
    for (int i = 0; i < cfg_.num_layers; ++i) {
        const std::string p = "model.layers." + std::to_string(i) + ".";
        LayerWeights& L = w.layers[static_cast<size_t>(i)];
        L.attn_norm = norm(p + "input_layernorm.weight", H);
        L.ffn_norm = norm(p + "post_attention_layernorm.weight", H);
        if (cfg_.sub_norms) {
            L.attn_sub_norm = norm(p + (one_bit_llm ? "self_attn.inner_attn_ln.weight"
                                                    : "self_attn.attn_sub_norm.weight"),
                                   QD);
            L.ffn_sub_norm =
                norm(p + (one_bit_llm ? "mlp.ffn_layernorm.weight" : "mlp.ffn_sub_norm.weight"), F);
        }
        L.q = bitlinear(p + "self_attn.q_proj", QD, H);
        L.k = bitlinear(p + "self_attn.k_proj", KD, H);
        L.v = bitlinear(p + "self_attn.v_proj", KD, H);
        L.o = bitlinear(p + "self_attn.o_proj", H, QD);
        L.gate = bitlinear(p + "mlp.gate_proj", F, H);
        L.up = bitlinear(p + "mlp.up_proj", F, H);
        L.down = bitlinear(p + "mlp.down_proj", H, F);
    }
    return w;
}

}  // namespace

std::unique_ptr<Model::Impl> load_hf_checkpoint(const std::string& path, WeightMemory memory) {
    const auto start = std::chrono::steady_clock::now();
    auto ckpt = std::make_shared<HfCheckpoint>(path);
    auto impl = std::make_unique<Model::Impl>();
    impl->config = ckpt->config();
    impl->info.path = path;
    impl->info.config = impl->config;
    impl->info.file_bytes = ckpt->file_bytes();
    impl->info.format = std::string("safetensors (") +
                        (impl->config.quantization_mode == QuantizationMode::Offline
                             ? "packed ternary"
                             : "master weights, ternarised at load") +
                        ")";
    HfLoader loader(*ckpt, impl->info, memory);
    impl->weights = loader.load();
    impl->rope.build(impl->config.head_dim, impl->config.rope_theta);
    impl->file_owner = ckpt;
    impl->info.load_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return impl;
}

}  // namespace bitnet
