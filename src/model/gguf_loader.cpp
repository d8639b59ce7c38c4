// GGUF files -> ModelWeights. Reads the architectures bitnet.cpp and llama.cpp write
// (bitnet-25, bitnet-b1.58, bitnet, llama) and this engine's own layout. Whatever the storage
// type, the model computed is the BitNet b1.58 definition: ternary values times one scale per
// tensor, per-token int8 activations. Engine-layout tensors are used straight from the mapping;
// every other ternary type is decoded once and repacked into the kernel layout.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "bitnet/error.h"
#include "kernels/cpu/ternary_pack.h"
#include "model/config.h"
#include "model/format/ggml_ternary.h"
#include "model/format/gguf.h"
#include "model/gguf_keys.h"
#include "model/gguf_loader.h"
#include "model/model_impl.h"

namespace bitnet {

namespace {

using gguf::TensorEntry;

std::string dims_str(const std::vector<int64_t>& dims) {
    std::string s = "{";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "}";
}

bool is_engine_file(const gguf::File& f) {
    return f.find(kEngineFormatKey) != nullptr;
}

class GgufLoader {
  public:
    GgufLoader(const gguf::File& file, ModelInfo& info, WeightMemory memory)
        : f_(file), info_(info), memory_(memory) {}

    ModelConfig read_config();
    ModelWeights load(const ModelConfig& cfg);

  private:
    [[noreturn]] void fail(ErrorCode code, const TensorEntry& t, const std::string& why) const {
        throw Error(code, f_.path() + ": tensor '" + t.name + "' " + why);
    }
    const TensorEntry& expect(const std::string& name, std::vector<int64_t> dims) const;
    void record(const TensorEntry& t, const std::string& engine_format, size_t engine_bytes,
                size_t mapped);
    std::vector<float> norm(const std::string& name, int size);
    DenseMatrix dense(const std::string& name, int rows, int cols);
    BitLinearWeight bitlinear(const std::string& name, int out, int in, int rope_heads);

    const gguf::File& f_;
    ModelInfo& info_;
    WeightMemory memory_;
    bool engine_file_ = false;
    std::mutex record_mutex_;  // bitlinear() runs on several threads
    bool llama_permuted_ = false;
};

ModelConfig GgufLoader::read_config() {
    ModelConfig c;
    const std::string arch = f_.get_string("general.architecture");
    const bool fork_arch = arch == "bitnet-25" || arch == "bitnet-b1.58";
    if (!fork_arch && arch != "bitnet" && arch != "llama") {
        throw Error(ErrorCode::UnsupportedFormat,
                    f_.path() + ": metadata 'general.architecture' is '" + arch +
                        "'; supported: bitnet-25, bitnet-b1.58, bitnet, llama");
    }
    engine_file_ = is_engine_file(f_);
    const std::string p = arch + ".";
    auto int_key = [&](const std::string& key) {
        const int64_t v = f_.get_int(p + key);
        if (v <= 0 || v > (int64_t{1} << 30)) {
            throw Error(ErrorCode::InvalidConfig, f_.path() + ": metadata '" + p + key + "' is " +
                                                      std::to_string(v) +
                                                      ", expected a positive size");
        }
        return static_cast<int>(v);
    };
    c.architecture = arch;
    c.model_type = arch;
    c.hidden_size = int_key("embedding_length");
    c.intermediate_size = int_key("feed_forward_length");
    c.num_layers = int_key("block_count");
    c.num_heads = int_key("attention.head_count");
    c.num_kv_heads =
        f_.find(p + "attention.head_count_kv") ? int_key("attention.head_count_kv") : c.num_heads;
    c.head_dim = f_.find(p + "attention.key_length") ? int_key("attention.key_length")
                                                     : c.hidden_size / c.num_heads;
    if (const auto rot = f_.get_int_opt(p + "rope.dimension_count"); rot && *rot != c.head_dim) {
        throw Error(ErrorCode::UnsupportedFormat,
                    f_.path() + ": metadata '" + p + "rope.dimension_count' is " +
                        std::to_string(*rot) + " but the head size is " +
                        std::to_string(c.head_dim) +
                        "; partial rotary embeddings are not supported");
    }
    c.max_position_embeddings = f_.find(p + "context_length") ? int_key("context_length") : 4096;
    c.rms_norm_eps =
        static_cast<float>(f_.get_float_opt(p + "attention.layer_norm_rms_epsilon").value_or(1e-5));
    c.rope_theta = static_cast<float>(f_.get_float_opt(p + "rope.freq_base").value_or(10000.0));

    const TensorEntry* embd = f_.find_tensor("token_embd.weight");
    if (embd == nullptr) {
        throw Error(ErrorCode::NotFound, f_.path() + ": tensor 'token_embd.weight' is missing");
    }
    if (embd->dims.size() != 2) {
        fail(ErrorCode::ShapeMismatch, *embd,
             "has dims " + dims_str(embd->dims) + ", expected {hidden, vocab}");
    }
    c.vocab_size = static_cast<int>(std::min<int64_t>(embd->dims[1], int64_t{1} << 30));
    if (const auto v = f_.get_int_opt(p + "vocab_size"); v && *v != c.vocab_size) {
        throw Error(ErrorCode::ShapeMismatch,
                    f_.path() + ": metadata '" + p + "vocab_size' is " + std::to_string(*v) +
                        " but token_embd.weight has " + std::to_string(c.vocab_size) + " rows");
    }

    // The fork's bitnet-25 / bitnet-b1.58 graphs use relu2 (2B-4T); upstream's `bitnet` and a
    // ternary `llama` use SiLU unless this engine wrote the file and said otherwise.
    c.activation = fork_arch ? Activation::Relu2 : Activation::Silu;
    if (const auto act = f_.get_string_opt(kEngineActivationKey)) {
        if (*act == "relu2") {
            c.activation = Activation::Relu2;
        } else if (*act == "silu") {
            c.activation = Activation::Silu;
        } else {
            throw Error(ErrorCode::UnsupportedFormat,
                        f_.path() + ": metadata '" + std::string(kEngineActivationKey) + "' is '" +
                            *act + "'; expected relu2 or silu");
        }
    }
    c.sub_norms = f_.find_tensor("blk.0.attn_sub_norm.weight") != nullptr;
    c.tie_word_embeddings = f_.find_tensor("output.weight") == nullptr;
    c.quantization_mode = QuantizationMode::Offline;
    c.scale_convention = ScaleConvention::Multiply;
    llama_permuted_ = arch == "llama" && !engine_file_;

    if (const auto bos = f_.get_int_opt("tokenizer.ggml.bos_token_id")) {
        c.bos_token_id = static_cast<int>(*bos);
    }
    for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                            "tokenizer.ggml.eom_token_id"}) {
        if (const auto id = f_.get_int_opt(key);
            id && *id >= 0 && *id < c.vocab_size &&
            std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), *id) ==
                c.eos_token_ids.end()) {
            c.eos_token_ids.push_back(static_cast<int>(*id));
        }
    }
    validate_model_config(c, f_.path());
    return c;
}

const TensorEntry& GgufLoader::expect(const std::string& name, std::vector<int64_t> dims) const {
    const TensorEntry* t = f_.find_tensor(name);
    if (t == nullptr) {
        throw Error(ErrorCode::NotFound, f_.path() + ": tensor '" + name + "' is missing");
    }
    // A norm may be stored as {n} or {n, 1}; trailing ones carry no shape.
    std::vector<int64_t> got = t->dims;
    while (got.size() > dims.size() && got.back() == 1) got.pop_back();
    if (got != dims) {
        fail(ErrorCode::ShapeMismatch, *t,
             "has dims " + dims_str(t->dims) + ", expected " + dims_str(dims) +
                 " (GGUF dims are innermost first)");
    }
    return *t;
}

void GgufLoader::record(const TensorEntry& t, const std::string& engine_format, size_t engine_bytes,
                        size_t mapped) {
    const std::lock_guard<std::mutex> lock(record_mutex_);
    info_.tensors.push_back({t.name, gguf::tensor_type_name(t.type),
                             std::vector<int64_t>(t.dims.rbegin(), t.dims.rend()), t.bytes,
                             engine_format, engine_bytes});
    info_.engine_bytes += engine_bytes;
    info_.mapped_bytes += mapped;
}

std::vector<float> GgufLoader::norm(const std::string& name, int size) {
    const TensorEntry& t = expect(name, {size});
    std::vector<float> out(static_cast<size_t>(size));
    if (t.type != gguf::GGML_F32 && t.type != gguf::GGML_F16 && t.type != gguf::GGML_BF16) {
        fail(ErrorCode::UnsupportedFormat, t,
             "has type " + gguf::tensor_type_name(t.type) + ", expected F32, F16 or BF16");
    }
    gguf::decode_row_f32(t.type, t.data, size, out.data());
    for (float v : out) {
        if (!std::isfinite(v)) fail(ErrorCode::ParseError, t, "holds non-finite values");
    }
    record(t, "f32 (converted)", out.size() * sizeof(float), 0);
    return out;
}

DenseMatrix GgufLoader::dense(const std::string& name, int rows, int cols) {
    const TensorEntry& t = expect(name, {cols, rows});
    DenseMatrix m;
    m.name = name;
    m.rows = rows;
    m.cols = cols;
    switch (t.type) {
        case gguf::GGML_F32:
            m.format = DenseFormat::F32;
            break;
        case gguf::GGML_F16:
            m.format = DenseFormat::F16;
            break;
        case gguf::GGML_BF16:
            m.format = DenseFormat::BF16;
            break;
        case gguf::GGML_Q8_0:
            m.format = DenseFormat::Q8_0;
            break;
        case gguf::BITNET_I8R:
            m.format = DenseFormat::I8R;
            break;
        default:
            fail(ErrorCode::UnsupportedFormat, t,
                 "has type " + gguf::tensor_type_name(t.type) +
                     "; the embedding and output support F32, F16, BF16, Q8_0 and BITNET_I8R");
    }
    const PlacedWeights placed = place_file_weights(t.data, t.bytes, memory_, m.owned);
    m.bind(placed.data, t.bytes);
    record(t, dense_format_name(m.format) + std::string(placed.how), t.bytes, placed.mapped_bytes);
    return m;
}

// llama.cpp's converter reorders the rows of each Q/K head so that its interleaved RoPE equals
// the half-split RoPE of the checkpoint; the engine uses the half-split form, so undo it.
int unpermuted_row(int gguf_row, int head_dim) {
    const int head = gguf_row / head_dim, within = gguf_row % head_dim;
    return head * head_dim + (within % 2) * (head_dim / 2) + within / 2;
}

BitLinearWeight GgufLoader::bitlinear(const std::string& name, int out, int in, int rope_heads) {
    const TensorEntry& t = expect(name, {in, out});
    BitLinearWeight w;
    w.name = name;
    {
        const std::lock_guard<std::mutex> lock(record_mutex_);
        info_.ternary_weights += static_cast<size_t>(out) * in;
    }

    if (t.type == gguf::BITNET_T2 || t.type == gguf::BITNET_T5) {
        const auto layout =
            t.type == gguf::BITNET_T2 ? cpu::TernaryLayout::Bits2 : cpu::TernaryLayout::Trits5;
        const char* layout_name = cpu::layout_name(layout);
        w.view = cpu::make_ternary_view(t.data, out, in, layout);
        const size_t bytes = w.view.row_bytes() * static_cast<size_t>(out);
        std::memcpy(&w.alpha, t.data + bytes, sizeof(float));
        if (!(std::isfinite(w.alpha) && w.alpha > 0.f)) {
            fail(ErrorCode::ParseError, t, "has scale " + std::to_string(w.alpha));
        }
        // Codes without a meaning are refused; the scan reads the bytes once, which the first
        // token would do anyway, and costs far less than the page-ins themselves.
        if (const auto bad = cpu::find_invalid_ternary_code(w.view)) {
            fail(ErrorCode::ParseError, t,
                 std::string("holds an invalid ") +
                     (layout == cpu::TernaryLayout::Bits2 ? "2-bit code 3" : "5-trit byte") +
                     " in row " + std::to_string(bad->first) + ", block " +
                     std::to_string(bad->second));
        }
        if (reinterpret_cast<uintptr_t>(t.data) % 64 != 0) {
            // The kernels load whole 64-byte blocks; a file written with a smaller alignment
            // is copied once rather than read misaligned.
            w.packed = weight_buffer(bytes);
            std::memcpy(w.packed.data(), t.data, bytes);
            w.view.data = w.packed.data();
            record(t, std::string(layout_name) + " (copied to align)", bytes, 0);
        } else {
            const PlacedWeights placed = place_file_weights(t.data, bytes, memory_, w.packed);
            w.view.data = placed.data;
            record(t, layout_name + std::string(placed.how), bytes, placed.mapped_bytes);
        }
        return w;
    }

    if (!gguf::is_ternary_decodable(t.type)) {
        fail(ErrorCode::UnsupportedFormat, t,
             "has type " + gguf::tensor_type_name(t.type) +
                 "; BitLinear weights must be TQ1_0, TQ2_0, I2_S, BITNET_T2/T5 or ternary "
                 "F32/F16/BF16");
    }
    const gguf::TernaryWeights tw = gguf::decode_ternary(t, f_.path());
    release_file_pages(t.data, t.bytes);  // decoded: the engine reads its own repacked copy
    const std::vector<int8_t>& values = tw.values;
    // An all-zero matrix has no scale of its own; any positive one gives the same zeros.
    w.alpha = tw.alpha > 0.f ? tw.alpha : 1.f;
    w.packed = weight_buffer(cpu::ternary_packed_bytes(out, in));
    w.view = {w.packed.data(), out, in, cpu::round_up(in, cpu::kTernaryBlock)};
    const int head_dim = rope_heads > 0 ? out / rope_heads : 0;
    for (int r = 0; r < out; ++r) {
        const int dst = (llama_permuted_ && rope_heads > 0) ? unpermuted_row(r, head_dim) : r;
        cpu::pack_ternary_row(values.data() + static_cast<size_t>(r) * in, in,
                              w.packed.data() + static_cast<size_t>(dst) * w.view.row_bytes());
    }
    record(t, "ternary2 (repacked from " + gguf::tensor_type_name(t.type) + ")", w.packed.bytes(),
           0);
    return w;
}

ModelWeights GgufLoader::load(const ModelConfig& cfg) {
    const int H = cfg.hidden_size, F = cfg.intermediate_size, V = cfg.vocab_size;
    const int QD = cfg.num_heads * cfg.head_dim, KD = cfg.num_kv_heads * cfg.head_dim;
    ModelWeights w;
    w.embedding = dense("token_embd.weight", V, H);
    w.tied = cfg.tie_word_embeddings;
    if (!w.tied) w.lm_head_own = dense("output.weight", V, H);
    w.final_norm = norm("output_norm.weight", H);
    w.layers.resize(static_cast<size_t>(cfg.num_layers));
    struct Job {
        BitLinearWeight* dst;
        std::string name;
        int out, in, rope_heads;
    };
    std::vector<Job> jobs;
    for (int i = 0; i < cfg.num_layers; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        LayerWeights& L = w.layers[static_cast<size_t>(i)];
        L.attn_norm = norm(p + "attn_norm.weight", H);
        L.ffn_norm = norm(p + "ffn_norm.weight", H);
        if (cfg.sub_norms) {
            L.attn_sub_norm = norm(p + "attn_sub_norm.weight", QD);
            L.ffn_sub_norm = norm(p + "ffn_sub_norm.weight", F);
        }
        jobs.push_back({&L.q, p + "attn_q.weight", QD, H, cfg.num_heads});
        jobs.push_back({&L.k, p + "attn_k.weight", KD, H, cfg.num_kv_heads});
        jobs.push_back({&L.v, p + "attn_v.weight", KD, H, 0});
        jobs.push_back({&L.o, p + "attn_output.weight", H, QD, 0});
        jobs.push_back({&L.gate, p + "ffn_gate.weight", F, H, 0});
        jobs.push_back({&L.up, p + "ffn_up.weight", F, H, 0});
        jobs.push_back({&L.down, p + "ffn_down.weight", H, F, 0});
    }
    // Decoding and repacking a 2B model's ~2e9 values is the bulk of loading a foreign file:
    // spread the matrices over the cores. Errors are reported for the first failing matrix in
    // file order, whichever thread met it.
    std::vector<std::exception_ptr> errors(jobs.size());
    std::atomic<size_t> next{0};
    auto work = [&] {
        for (size_t j; (j = next.fetch_add(1)) < jobs.size();) {
            try {
                *jobs[j].dst = bitlinear(jobs[j].name, jobs[j].out, jobs[j].in, jobs[j].rope_heads);
            } catch (...) {
                errors[j] = std::current_exception();
            }
        }
    };
    const size_t n_threads =
        std::min<size_t>(jobs.size(), std::max(1u, std::thread::hardware_concurrency()));
    std::vector<std::thread> threads;
    for (size_t t = 1; t < n_threads; ++t) threads.emplace_back(work);
    work();
    for (std::thread& t : threads) t.join();
    for (const std::exception_ptr& e : errors) {
        if (e) std::rethrow_exception(e);
    }
    // Tensors in file order, as `bitnet info --tensors` lists them.
    std::map<std::string, size_t> order;
    for (size_t i = 0; i < f_.tensors().size(); ++i) order[f_.tensors()[i].name] = i;
    std::stable_sort(
        info_.tensors.begin(), info_.tensors.end(),
        [&](const TensorInfo& a, const TensorInfo& b) { return order[a.name] < order[b.name]; });
    return w;
}

std::string describe_format(const gguf::File& f) {
    std::string types;
    std::vector<std::string> seen;
    for (const TensorEntry& t : f.tensors()) {
        if (t.name.rfind("blk.", 0) != 0 || t.dims.size() != 2) continue;
        const std::string n = gguf::tensor_type_name(t.type);
        if (std::find(seen.begin(), seen.end(), n) == seen.end()) seen.push_back(n);
    }
    for (size_t i = 0; i < seen.size(); ++i) types += (i ? ", " : "") + seen[i];
    return "GGUF v" + std::to_string(f.version()) + " " +
           (is_engine_file(f) ? "engine layout" : f.get_string("general.architecture")) + " (" +
           types + ")";
}

}  // namespace

std::unique_ptr<Model::Impl> load_gguf_model(const std::string& path, WeightMemory memory) {
    const auto start = std::chrono::steady_clock::now();
    auto file = std::make_shared<gguf::File>(path);
    auto impl = std::make_unique<Model::Impl>();
    GgufLoader loader(*file, impl->info, memory);
    impl->config = loader.read_config();
    impl->info.path = path;
    impl->info.config = impl->config;
    impl->info.file_bytes = file->file_size();
    impl->info.format = describe_format(*file);
    impl->weights = loader.load(impl->config);
    impl->rope.build(impl->config.head_dim, impl->config.rope_theta);
    impl->file_owner = file;
    impl->info.load_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return impl;
}

}  // namespace bitnet
