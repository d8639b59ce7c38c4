// The three levels of the API.
//
//   Simple:    bitnet::InferenceEngine engine;                     // Device::Auto, all cores
//              auto model = engine.load_model("path/to/model");
//              bitnet::Tensor logits = engine.infer(*model, ids);  // ids [T] or [B, T] int32
//
//   Advanced:  auto engine = bitnet::InferenceEngine::builder()
//                  .threads(2).batch_size(16).memory_pool_size(256 << 20)
//                  .use_gpu(false).kv_cache_type(bitnet::KVCacheType::F16).build();
//
//   Incremental: sessions keep a KV cache per sequence; forward() runs prefill and decode steps
//              of many sessions of different lengths in one batched pass.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bitnet/error.h"
#include "bitnet/generate.h"
#include "bitnet/model.h"
#include "bitnet/model_cache.h"
#include "bitnet/tensor.h"
#include "bitnet/tokenizer.h"

namespace bitnet {

// F32 is exact; F16 and BF16 round each value to 16 bits; I8 stores each head's row of a
// position as int8 with one float scale (absmax / 127), a quarter of F32's bytes.
enum class KVCacheType { F32, F16, BF16, I8 };
const char* kv_cache_type_name(KVCacheType type) noexcept;

// CPU kernel level; Auto picks the best the CPU supports (or the BITNET_CPU_ISA variable).
// AMX: AVX-512 VNNI, with prompts' and batches' ternary products and the bf16 and int8 heads on
// AMX tiles. AVXVNNI: AVX2 with the 256-bit vpdpbusd of Intel clients from Alder Lake on.
enum class CpuKernelLevel { Auto, Scalar, AVX2, AVX512, AVX512VNNI, AMX, AVXVNNI };

struct EngineOptions {
    Device device = Device::Auto;
    int threads = 0;               // 0: every core this process may use
    int max_batch_size = 16;       // sequences in one forward pass
    size_t memory_pool_bytes = 0;  // activation pool limit; 0: grows as needed
    CpuKernelLevel kernel_level = CpuKernelLevel::Auto;
    KVCacheType kv_cache_type = KVCacheType::F32;     // F32 is the exact mode
    WeightMemory weight_memory = WeightMemory::Auto;  // for the models load_model() loads
    // BitLinear by default computes the BitNet definition with exact int32 dot products. With
    // reference_numerics it accumulates dequantized activations in float32 the way PyTorch does,
    // so rounding-boundary cases of the int8 activation quantisation fall as in transformers
    // (several times slower; for verifying against transformers, not for serving).
    bool reference_numerics = false;
    // Where load_model() finds and keeps models; null: ModelCache::global().
    std::shared_ptr<ModelCache> model_cache;
    // When set, the engine sets its model cache's budget (process-wide for the global cache).
    std::optional<size_t> model_cache_budget_bytes;
};

struct MemoryStats {
    size_t pool_capacity_bytes = 0;
    size_t pool_peak_bytes = 0;
    size_t pool_block_allocations = 0;
    size_t kv_cache_bytes = 0;  // held by live sessions of this engine
    int live_sessions = 0;
};

class InferenceEngine;

// One sequence's state: its KV cache and position. Created by an engine, used with that engine.
class Session {
  public:
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    int position() const noexcept;  // tokens already in the cache
    int capacity() const noexcept;  // tokens the cache can hold
    void reset() noexcept;          // forget the tokens, keep the memory
    // Forget the tokens from position n on (0 <= n <= position()), e.g. drafted tokens that
    // verification rejected; the next forward pass continues at n.
    void truncate(int n);
    const Model& model() const noexcept;

    struct Impl;
    Impl& impl() noexcept { return *impl_; }

  private:
    friend class InferenceEngine;
    explicit Session(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// One sequence's part in a batched forward pass.
struct SequenceStep {
    Session* session = nullptr;
    std::span<const int32_t> tokens;  // new tokens, appended to the session's cache
    bool all_logits = false;          // logits for every new token, else the last only
};

struct InferOptions {
    bool all_logits = false;     // logits for every position, else the last
    bool hidden_states = false;  // also return the residual stream after every layer
};

struct InferResult {
    // Per input sequence: [T, vocab] with all_logits, else [1, vocab].
    std::vector<Tensor> logits;
    // Per input sequence, with hidden_states: layers + 1 tensors [T, hidden]: the embedding
    // output, the residual stream after each layer, and (last) after the final norm.
    std::vector<std::vector<Tensor>> hidden;
};

class EngineBuilder {
  public:
    EngineBuilder& device(Device d) {
        options_.device = d;
        return *this;
    }
    EngineBuilder& use_gpu(bool on) {
        options_.device = on ? Device::Auto : Device::CPU;
        return *this;
    }
    EngineBuilder& threads(int n) {
        options_.threads = n;
        return *this;
    }
    EngineBuilder& batch_size(int n) {
        options_.max_batch_size = n;
        return *this;
    }
    EngineBuilder& memory_pool_size(size_t bytes) {
        options_.memory_pool_bytes = bytes;
        return *this;
    }
    EngineBuilder& kernel_level(CpuKernelLevel level) {
        options_.kernel_level = level;
        return *this;
    }
    EngineBuilder& kv_cache_type(KVCacheType type) {
        options_.kv_cache_type = type;
        return *this;
    }
    EngineBuilder& reference_numerics(bool on) {
        options_.reference_numerics = on;
        return *this;
    }
    // Engines given the same cache share the models they load; by default all share the global one.
    EngineBuilder& model_cache(std::shared_ptr<ModelCache> cache) {
        options_.model_cache = std::move(cache);
        return *this;
    }
    EngineBuilder& model_cache_budget(size_t bytes) {
        options_.model_cache_budget_bytes = bytes;
        return *this;
    }
    std::unique_ptr<InferenceEngine> build() const;

  private:
    EngineOptions options_;
};

class InferenceEngine {
  public:
    InferenceEngine();  // the defaults of EngineOptions
    explicit InferenceEngine(const EngineOptions& options);
    ~InferenceEngine();
    InferenceEngine(const InferenceEngine&) = delete;
    InferenceEngine& operator=(const InferenceEngine&) = delete;

    static EngineBuilder builder() { return {}; }

    // Through the engine's model cache: a model already loaded (and still cached or in use) is
    // returned again, not loaded twice.
    std::shared_ptr<const Model> load_model(const std::string& path) const;
    ModelCache& model_cache() const noexcept;

    // Token ids in ([T] or [B, T] int32), logits of the last position out ([vocab] or [B, vocab]).
    Tensor infer(const Model& model, const Tensor& token_ids);
    // Sequences of any lengths, with all-position logits and hidden states on request.
    InferResult infer(const Model& model, const std::vector<std::vector<int32_t>>& sequences,
                      const InferOptions& options = {});

    // A session whose cache holds up to max_tokens (0: the model's max_position_embeddings).
    std::unique_ptr<Session> create_session(std::shared_ptr<const Model> model, int max_tokens = 0);
    // Appends each step's tokens to its session and returns its logits ([n, vocab] per step:
    // n = tokens with all_logits, else 1). All sessions must belong to this engine's device.
    std::vector<Tensor> forward(std::span<const SequenceStep> steps);
    Tensor forward(Session& session, std::span<const int32_t> tokens, bool all_logits = false);

    // ---- text generation (needs a tokenizer) ----
    // Encodes the prompt, then samples up to params.max_tokens tokens; on_text receives each
    // piece of text as soon as it is final.
    GenerationResult generate(std::shared_ptr<const Model> model, const Tokenizer& tokenizer,
                              std::string_view prompt, const GenerationParams& params = {},
                              const TextCallback& on_text = {});
    // Several prompts decoded together: every step runs one batched forward pass.
    std::vector<GenerationResult> process_batch(std::shared_ptr<const Model> model,
                                                const Tokenizer& tokenizer,
                                                const std::vector<std::string>& prompts,
                                                const GenerationParams& params = {});
    // generate() on a background thread, read piece by piece.
    std::unique_ptr<TextStream> create_stream(std::shared_ptr<const Model> model,
                                              std::shared_ptr<const Tokenizer> tokenizer,
                                              std::string prompt,
                                              const GenerationParams& params = {});

    const EngineOptions& options() const noexcept;
    Device device() const noexcept;    // the device actually used
    std::string kernel_level() const;  // e.g. "avx512vnni"
    int threads() const noexcept;
    MemoryStats memory_stats() const;

    // Internals, for the library's own tests and tools.
    struct Impl;
    Impl& impl() noexcept { return *impl_; }

  private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace bitnet
