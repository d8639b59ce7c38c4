#include "model/gguf_export.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>

#include "bitnet/error.h"
#include "kernels/cpu/ternary_pack.h"
#include "model/format/ggml_ternary.h"
#include "model/format/gguf_writer.h"
#include "model/gguf_keys.h"
#include "model/model_impl.h"
#include "tokenizer/gguf_vocab_file.h"

namespace bitnet {

namespace {

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// The architecture name readers of each kind of model expect: bitnet.cpp's `bitnet-25` runs the
// 2B-4T design (relu2, sub-norms); `bitnet` is the SiLU design with sub-norms; a model without
// sub-norms is a ternary Llama.
std::string architecture_for(const ModelConfig& c) {
    if (!c.sub_norms) return "llama";
    return c.activation == Activation::Relu2 ? "bitnet-25" : "bitnet";
}

uint32_t gguf_type_of(DenseFormat f) {
    switch (f) {
        case DenseFormat::F32:
            return gguf::GGML_F32;
        case DenseFormat::F16:
            return gguf::GGML_F16;
        case DenseFormat::BF16:
            return gguf::GGML_BF16;
        case DenseFormat::Q8_0:
            return gguf::GGML_Q8_0;
        case DenseFormat::I8R:
            return gguf::BITNET_I8R;
    }
    return gguf::GGML_F32;
}

std::vector<uint8_t> encode_dense(const DenseMatrix& m, uint32_t type, const std::string& name) {
    const std::vector<int64_t> dims = {m.cols, m.rows};
    const auto bytes = gguf::tensor_bytes(type, dims);
    if (!bytes) {
        throw Error(ErrorCode::InvalidArgument, "tensor '" + name + "' cannot be stored as " +
                                                    gguf::tensor_type_name(type) + " with " +
                                                    std::to_string(m.cols) + " columns");
    }
    if (type == gguf_type_of(m.format) && m.format != DenseFormat::I8R && m.bytes() == *bytes) {
        // Same layout: copy the bytes, so a file converted to its own types is reproduced exactly.
        const uint8_t* src = static_cast<const uint8_t*>(m.data);
        return std::vector<uint8_t>(src, src + *bytes);
    }
    std::vector<float> all(static_cast<size_t>(m.rows) * m.cols);
    for (int r = 0; r < m.rows; ++r) m.row_to_f32(r, all.data() + static_cast<size_t>(r) * m.cols);
    if (type == gguf::BITNET_I8R) return gguf::encode_i8r(all.data(), m.rows, m.cols);
    std::vector<uint8_t> out(*bytes);
    const uint64_t row_bytes = *bytes / static_cast<uint64_t>(m.rows);
    for (int r = 0; r < m.rows; ++r) {
        gguf::encode_row_f32(type, all.data() + static_cast<size_t>(r) * m.cols, m.cols,
                             out.data() + row_bytes * static_cast<uint64_t>(r));
    }
    return out;
}

std::vector<int8_t> ternary_values(const BitLinearWeight& w) {
    const int rows = w.out_features(), cols = w.in_features();
    std::vector<int8_t> v(static_cast<size_t>(rows) * cols);
    for (int r = 0; r < rows; ++r) {
        int8_t* dst = v.data() + static_cast<size_t>(r) * cols;
        for (int k = 0; k < cols; ++k) dst[k] = static_cast<int8_t>(cpu::ternary_at(w.view, r, k));
    }
    return v;
}

// BITNET_T5: rows in the 1.6-bit kernel layout, then 64 bytes whose first 4 are alpha.
std::vector<uint8_t> encode_t5(const int8_t* values, int rows, int cols, float alpha) {
    const size_t body = cpu::ternary_packed_bytes(rows, cols, cpu::TernaryLayout::Trits5);
    const size_t row_bytes = body / static_cast<size_t>(rows);
    std::vector<uint8_t> out(body + 64, 0);
    for (int r = 0; r < rows; ++r) {
        cpu::pack_ternary5_row(values + static_cast<size_t>(r) * cols, cols,
                               out.data() + row_bytes * static_cast<size_t>(r));
    }
    std::memcpy(out.data() + body, &alpha, sizeof alpha);
    return out;
}

// llama.cpp's interleaved RoPE expects Q/K rows of each head in (pair, half) order; the
// inverse of the loader's unpermuted_row().
void permute_for_llama(std::vector<int8_t>& v, int rows, int cols, int head_dim) {
    std::vector<int8_t> out(v.size());
    for (int r = 0; r < rows; ++r) {
        const int head = r / head_dim, within = r % head_dim;
        const int half = within / (head_dim / 2), j = within % (head_dim / 2);
        const int dst = head * head_dim + 2 * j + half;
        std::memcpy(out.data() + static_cast<size_t>(dst) * cols,
                    v.data() + static_cast<size_t>(r) * cols, static_cast<size_t>(cols));
    }
    v.swap(out);
}

std::string default_name(const ModelInfo& info) {
    std::filesystem::path p(info.path);
    if (p.has_extension() && p.extension() != "") p = p.stem();
    std::string n = p.filename().string();
    if (n.empty() || n == ".") n = std::filesystem::path(info.path).parent_path().filename();
    return n.empty() ? "model" : n;
}

}  // namespace

uint32_t parse_ternary_type(const std::string& name) {
    const std::string n = lower(name);
    if (n == "tq1_0") return gguf::GGML_TQ1_0;
    if (n == "tq2_0") return gguf::GGML_TQ2_0;
    if (n == "i2_s") return gguf::GGML_I2_S;
    if (n == "t2" || n == "bitnet_t2") return gguf::BITNET_T2;
    if (n == "t5" || n == "bitnet_t5") return gguf::BITNET_T5;
    throw Error(ErrorCode::InvalidArgument,
                "unknown ternary type '" + name + "'; expected t2, t5, tq2_0, tq1_0 or i2_s");
}

uint32_t parse_dense_type(const std::string& name) {
    const std::string n = lower(name);
    if (n == "f32") return gguf::GGML_F32;
    if (n == "f16") return gguf::GGML_F16;
    if (n == "bf16") return gguf::GGML_BF16;
    if (n == "q8_0") return gguf::GGML_Q8_0;
    if (n == "i8" || n == "i8r" || n == "bitnet_i8r") return gguf::BITNET_I8R;
    throw Error(ErrorCode::InvalidArgument, "unknown embedding/output type '" + name +
                                                "'; expected f32, f16, bf16, q8_0 or i8");
}

void export_gguf(const Model& model, const GgufVocab* vocab, const std::string& path,
                 const GgufExportOptions& o) {
    const Model::Impl& m = model.impl();
    const ModelConfig& c = m.config;
    const ModelWeights& W = m.weights;
    const bool engine_layout =
        o.ternary_type == gguf::BITNET_T2 || o.ternary_type == gguf::BITNET_T5;
    if (!engine_layout && !gguf::is_ternary_encodable(o.ternary_type)) {
        throw Error(ErrorCode::InvalidArgument,
                    gguf::tensor_type_name(o.ternary_type) + " is not a ternary type to write");
    }
    if (c.bitlinear_input_norm) {
        throw Error(ErrorCode::UnsupportedFormat,
                    "models with per-BitLinear input norms (quantization_config.use_rms_norm) "
                    "have no GGUF representation");
    }
    const std::string arch = architecture_for(c);
    const std::string p = arch + ".";

    gguf::Writer w;
    w.set_string("general.architecture", arch);
    w.set_string("general.name", o.name.empty() ? default_name(m.info) : o.name);
    if (engine_layout) {
        // Engine tensors are read straight from the mapping with 64-byte vector loads.
        w.set_u32("general.alignment", 64);
        w.set_u32(kEngineFormatKey, kEngineFormatVersion);
    } else {
        w.set_u32("general.quantization_version", 2);
        const uint32_t ftype = o.ternary_type == gguf::GGML_TQ1_0   ? 36
                               : o.ternary_type == gguf::GGML_TQ2_0 ? 37
                                                                    : 40;  // the fork's I2_S
        w.set_u32("general.file_type", ftype);
    }
    w.set_string(kEngineActivationKey, c.activation == Activation::Relu2 ? "relu2" : "silu");
    w.set_u32(p + "vocab_size", static_cast<uint32_t>(c.vocab_size));
    w.set_u32(p + "context_length", static_cast<uint32_t>(c.max_position_embeddings));
    w.set_u32(p + "embedding_length", static_cast<uint32_t>(c.hidden_size));
    w.set_u32(p + "block_count", static_cast<uint32_t>(c.num_layers));
    w.set_u32(p + "feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
    w.set_u32(p + "rope.dimension_count", static_cast<uint32_t>(c.head_dim));
    w.set_u32(p + "attention.head_count", static_cast<uint32_t>(c.num_heads));
    w.set_u32(p + "attention.head_count_kv", static_cast<uint32_t>(c.num_kv_heads));
    if (c.head_dim * c.num_heads != c.hidden_size) {
        w.set_u32(p + "attention.key_length", static_cast<uint32_t>(c.head_dim));
        w.set_u32(p + "attention.value_length", static_cast<uint32_t>(c.head_dim));
    }
    w.set_f32(p + "attention.layer_norm_rms_epsilon", c.rms_norm_eps);
    w.set_f32(p + "rope.freq_base", c.rope_theta);
    if (vocab != nullptr) add_gguf_vocab_metadata(*vocab, w);

    const uint32_t embd_type = o.embedding_type.value_or(gguf_type_of(W.embedding.format));
    w.add_tensor("token_embd.weight", {c.hidden_size, c.vocab_size}, embd_type,
                 encode_dense(W.embedding, embd_type, "token_embd.weight"));
    auto norm = [&](const std::string& name, const std::vector<float>& v) {
        std::vector<uint8_t> bytes(v.size() * sizeof(float));
        std::memcpy(bytes.data(), v.data(), bytes.size());
        w.add_tensor(name, {static_cast<int64_t>(v.size())}, gguf::GGML_F32, std::move(bytes));
    };
    norm("output_norm.weight", W.final_norm);
    if (!W.tied) {
        const uint32_t out_type =
            o.output_type.value_or(o.embedding_type.value_or(gguf_type_of(W.lm_head_own.format)));
        w.add_tensor("output.weight", {c.hidden_size, c.vocab_size}, out_type,
                     encode_dense(W.lm_head_own, out_type, "output.weight"));
    }
    auto ternary = [&](const std::string& name, const BitLinearWeight& bl, int rope_heads) {
        const int rows = bl.out_features(), cols = bl.in_features();
        std::vector<int8_t> values = ternary_values(bl);
        if (arch == "llama" && !engine_layout && rope_heads > 0)
            permute_for_llama(values, rows, cols, rows / rope_heads);
        std::vector<uint8_t> bytes =
            o.ternary_type == gguf::BITNET_T5
                ? encode_t5(values.data(), rows, cols, bl.alpha)
                : gguf::encode_ternary(o.ternary_type, values.data(), rows, cols, bl.alpha, name);
        w.add_tensor(name, {cols, rows}, o.ternary_type, std::move(bytes));
    };
    for (int i = 0; i < c.num_layers; ++i) {
        const std::string b = "blk." + std::to_string(i) + ".";
        const LayerWeights& L = W.layers[static_cast<size_t>(i)];
        norm(b + "attn_norm.weight", L.attn_norm);
        ternary(b + "attn_q.weight", L.q, c.num_heads);
        ternary(b + "attn_k.weight", L.k, c.num_kv_heads);
        ternary(b + "attn_v.weight", L.v, 0);
        ternary(b + "attn_output.weight", L.o, 0);
        if (c.sub_norms) norm(b + "attn_sub_norm.weight", L.attn_sub_norm);
        norm(b + "ffn_norm.weight", L.ffn_norm);
        ternary(b + "ffn_gate.weight", L.gate, 0);
        ternary(b + "ffn_up.weight", L.up, 0);
        ternary(b + "ffn_down.weight", L.down, 0);
        if (c.sub_norms) norm(b + "ffn_sub_norm.weight", L.ffn_sub_norm);
    }
    w.write(path, o.progress);
}

}  // namespace bitnet
