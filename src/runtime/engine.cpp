#include "bitnet/engine.h"

#include <cstring>

#include "core/aligned_buffer.h"
#include "core/cpu_features.h"
#include "model/forward.h"
#include "model/model_impl.h"
#include "runtime/engine_impl.h"
#include "runtime/kernel_level.h"

namespace bitnet {

const char* kv_cache_type_name(KVCacheType type) noexcept {
    switch (type) {
        case KVCacheType::F32:
            return "f32";
        case KVCacheType::F16:
            return "f16";
        case KVCacheType::BF16:
            return "bf16";
        case KVCacheType::I8:
            return "i8";
    }
    return "?";
}

namespace {

cpu::KvType kv_type_for(KVCacheType t) {
    switch (t) {
        case KVCacheType::F32:
            return cpu::KvType::F32;
        case KVCacheType::F16:
            return cpu::KvType::F16;
        case KVCacheType::BF16:
            return cpu::KvType::BF16;
        case KVCacheType::I8:
            return cpu::KvType::I8;
    }
    return cpu::KvType::F32;
}

}  // namespace

InferenceEngine::Impl::Impl(const EngineOptions& o) : options(o), arena(o.memory_pool_bytes) {
    if (o.device == Device::CUDA) {
        throw Error(ErrorCode::UnsupportedFormat,
                    "Device::CUDA requested but this build has no CUDA backend");
    }
    // Device::Auto falls back to the CPU when no GPU backend is available.
    options.device = Device::CPU;
    if (o.threads < 0)
        throw Error(ErrorCode::InvalidArgument,
                    "threads must be >= 0 (0 means every available core)");
    if (o.max_batch_size <= 0)
        throw Error(ErrorCode::InvalidArgument, "batch size must be positive");
    const cpu::Isa isa = isa_for(o.kernel_level);
    if (!cpu::isa_supported(isa)) {
        throw Error(ErrorCode::UnsupportedFormat, std::string("kernel level ") +
                                                      cpu::isa_name(isa) +
                                                      " is not supported by this CPU or build");
    }
    kernels = &cpu::kernels(isa);
    options.threads = o.threads == 0 ? available_cores() : o.threads;
    pool = std::make_unique<ThreadPool>(options.threads);
    if (!options.model_cache) options.model_cache = ModelCache::global();
    if (options.model_cache_budget_bytes) {
        options.model_cache->set_budget(*options.model_cache_budget_bytes);
    }
}

Session::Impl::Impl(std::shared_ptr<const Model> m, int capacity, cpu::KvType type,
                    std::shared_ptr<InferenceEngine::Impl::Counters> c, const void* owner)
    : model(std::move(m)),
      cache(model->config(), capacity, type),
      counters(std::move(c)),
      engine(owner) {
    counters->kv_bytes += cache.bytes();
    ++counters->sessions;
}

Session::Impl::~Impl() {
    counters->kv_bytes -= cache.bytes();
    --counters->sessions;
}

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;
int Session::position() const noexcept {
    return impl_->cache.length();
}
int Session::capacity() const noexcept {
    return impl_->cache.capacity();
}
void Session::reset() noexcept {
    impl_->cache.set_length(0);
}
void Session::truncate(int n) {
    if (n < 0 || n > position()) {
        throw Error(ErrorCode::InvalidArgument, "Session::truncate: position " + std::to_string(n) +
                                                    " is outside [0, " +
                                                    std::to_string(position()) + "]");
    }
    impl_->cache.set_length(n);
}
const Model& Session::model() const noexcept {
    return *impl_->model;
}

std::unique_ptr<InferenceEngine> EngineBuilder::build() const {
    return std::make_unique<InferenceEngine>(options_);
}

InferenceEngine::InferenceEngine() : InferenceEngine(EngineOptions{}) {}
InferenceEngine::InferenceEngine(const EngineOptions& options)
    : impl_(std::make_unique<Impl>(options)) {}
InferenceEngine::~InferenceEngine() = default;

const EngineOptions& InferenceEngine::options() const noexcept {
    return impl_->options;
}
Device InferenceEngine::device() const noexcept {
    return impl_->options.device;
}
std::string InferenceEngine::kernel_level() const {
    return impl_->kernels->name;
}
int InferenceEngine::threads() const noexcept {
    return impl_->pool->size();
}

MemoryStats InferenceEngine::memory_stats() const {
    std::lock_guard<std::mutex> lock(impl_->forward_mutex);
    MemoryStats s;
    auto add = [&s](const Arena& arena) {
        const ArenaStats a = arena.stats();
        s.pool_capacity_bytes += a.capacity_bytes;
        s.pool_peak_bytes += a.peak_bytes;
        s.pool_block_allocations += a.block_allocations;
    };
    add(impl_->arena);
    for (const auto& arena : impl_->sequence_arenas) add(*arena);
    s.kv_cache_bytes = impl_->counters->kv_bytes.load();
    s.live_sessions = impl_->counters->sessions.load();
    return s;
}

std::shared_ptr<const Model> InferenceEngine::load_model(const std::string& path) const {
    return impl_->options.model_cache->get(
        path, LoadOptions{impl_->options.device, impl_->options.weight_memory});
}

ModelCache& InferenceEngine::model_cache() const noexcept {
    return *impl_->options.model_cache;
}

std::unique_ptr<Session> InferenceEngine::create_session(std::shared_ptr<const Model> model,
                                                         int max_tokens) {
    if (!model) throw Error(ErrorCode::InvalidArgument, "create_session: null model");
    const int limit = model->config().max_position_embeddings;
    if (max_tokens < 0)
        throw Error(ErrorCode::InvalidArgument, "create_session: max_tokens must be >= 0");
    const int capacity = max_tokens == 0 ? limit : max_tokens;
    return std::unique_ptr<Session>(new Session(std::make_unique<Session::Impl>(
        std::move(model), capacity, kv_type_for(impl_->options.kv_cache_type), impl_->counters,
        impl_.get())));
}

namespace {

// The pass's item for one step, all but its logits buffer; checks that the session is this
// engine's and runs the same model as the steps before it (`model`, set by the first).
ForwardItem item_for(const SequenceStep& s, const void* engine, const Model*& model) {
    if (s.session == nullptr) throw Error(ErrorCode::InvalidArgument, "forward: null session");
    Session::Impl& si = s.session->impl();
    if (si.engine != engine)
        throw Error(ErrorCode::InvalidArgument, "forward: session belongs to another engine");
    if (model == nullptr) model = si.model.get();
    if (si.model.get() != model)
        throw Error(ErrorCode::InvalidArgument,
                    "forward: all sessions of one pass must use the same model");
    ForwardItem it;
    it.cache = &si.cache;
    it.tokens = s.tokens.data();
    it.n_tokens = static_cast<int>(s.tokens.size());
    it.all_logits = s.all_logits;
    return it;
}

// Logits of one step, filled by the pass in full (validate() rejects a step without tokens
// before anything is written).
Tensor logits_for(const SequenceStep& s, const Model& model) {
    const int64_t rows = s.all_logits ? static_cast<int64_t>(s.tokens.size()) : 1;
    return Tensor::uninitialized(DType::F32, {rows, model.config().vocab_size});
}

// One forward pass over `items`; the caller holds e.forward_mutex. A small model's batch runs a
// share of the sequences on each thread, each with an arena of its own, unless the activation
// pool has a limit (which the arenas together would not keep).
void run_items(InferenceEngine::Impl& e, const Model& model, std::span<ForwardItem> items) {
    e.arena.reset();
    ForwardPass pass(model.impl(), *e.kernels, *e.pool, e.arena, e.options.reference_numerics);
    const int threads = e.pool->size();
    if (e.options.memory_pool_bytes != 0 ||
        !ForwardPass::by_sequence_pays(model.impl(), items, threads))
        return pass.run(items);
    while (e.sequence_arenas.size() < static_cast<size_t>(threads))
        e.sequence_arenas.push_back(std::make_unique<Arena>());
    pass.run_by_sequence(items, e.sequence_arenas);
}

void run_pass(InferenceEngine::Impl& e, const Model& model, std::span<ForwardItem> items) {
    std::lock_guard<std::mutex> lock(e.forward_mutex);
    run_items(e, model, items);
}

}  // namespace

std::vector<Tensor> InferenceEngine::forward(std::span<const SequenceStep> steps) {
    if (steps.empty()) throw Error(ErrorCode::InvalidArgument, "forward: no sequences");
    if (static_cast<int>(steps.size()) > impl_->options.max_batch_size) {
        throw Error(ErrorCode::InvalidArgument,
                    "forward: " + std::to_string(steps.size()) +
                        " sequences exceed the engine's batch size of " +
                        std::to_string(impl_->options.max_batch_size));
    }
    const Model* model = nullptr;
    std::vector<Tensor> outputs;
    std::vector<ForwardItem> items;
    outputs.reserve(steps.size());
    items.reserve(steps.size());
    for (const SequenceStep& s : steps) {
        items.push_back(item_for(s, impl_.get(), model));
        outputs.push_back(logits_for(s, *model));
        items.back().logits = outputs.back().data_as<float>();
    }
    run_pass(*impl_, *model, items);
    return outputs;
}

// One session's step without the batch's vectors: a decode step of a small model is tens of
// microseconds, and the public API's share of it is measured (`bitnet bench`).
Tensor InferenceEngine::forward(Session& session, std::span<const int32_t> tokens,
                                bool all_logits) {
    const SequenceStep step{&session, tokens, all_logits};
    const Model* model = nullptr;
    ForwardItem item = item_for(step, impl_.get(), model);
    Tensor logits = logits_for(step, *model);
    item.logits = logits.data_as<float>();
    run_pass(*impl_, *model, std::span<ForwardItem>(&item, 1));
    return logits;
}

InferResult InferenceEngine::infer(const Model& model,
                                   const std::vector<std::vector<int32_t>>& sequences,
                                   const InferOptions& options) {
    if (sequences.empty()) throw Error(ErrorCode::InvalidArgument, "infer: no sequences");
    // The caller's Model may not be owned by a shared_ptr; sessions here only live for this call.
    std::shared_ptr<const Model> borrowed(&model, [](const Model*) {});
    InferResult result;
    const ModelConfig& c = model.config();
    std::vector<std::unique_ptr<Session>> sessions;
    std::vector<ForwardItem> items;
    std::vector<AlignedBuffer<float>> hidden_buffers;  // [(layers + 1)][T][hidden] per sequence
    hidden_buffers.reserve(sequences.size());
    for (size_t i = 0; i < sequences.size(); ++i) {
        const auto& seq = sequences[i];
        if (seq.empty())
            throw Error(ErrorCode::InvalidArgument,
                        "infer: sequence " + std::to_string(i) + " is empty");
        const int T = static_cast<int>(seq.size());
        sessions.push_back(create_session(borrowed, T));
        result.logits.emplace_back(DType::F32,
                                   std::vector<int64_t>{options.all_logits ? T : 1, c.vocab_size});
        ForwardItem it;
        it.cache = &sessions.back()->impl().cache;
        it.tokens = seq.data();
        it.n_tokens = T;
        it.all_logits = options.all_logits;
        it.logits = result.logits.back().data_as<float>();
        if (options.hidden_states) {
            hidden_buffers.emplace_back(static_cast<size_t>(c.num_layers + 1) * T * c.hidden_size);
            it.hidden = hidden_buffers.back().data();
        }
        items.push_back(it);
    }
    {
        std::lock_guard<std::mutex> lock(impl_->forward_mutex);
        // Batches larger than the engine's batch size run in chunks.
        const size_t chunk = static_cast<size_t>(impl_->options.max_batch_size);
        for (size_t i = 0; i < items.size(); i += chunk) {
            run_items(*impl_, model,
                      std::span<ForwardItem>(items.data() + i, std::min(chunk, items.size() - i)));
        }
    }
    for (size_t i = 0; i < hidden_buffers.size(); ++i) {
        const int64_t T = static_cast<int64_t>(sequences[i].size());
        const size_t plane = static_cast<size_t>(T) * c.hidden_size;
        std::vector<Tensor> per_layer;
        for (int l = 0; l <= c.num_layers; ++l) {
            per_layer.emplace_back(DType::F32, std::vector<int64_t>{T, c.hidden_size});
            std::memcpy(per_layer.back().data(), hidden_buffers[i].data() + l * plane,
                        plane * sizeof(float));
        }
        result.hidden.push_back(std::move(per_layer));
    }
    return result;
}

Tensor InferenceEngine::infer(const Model& model, const Tensor& token_ids) {
    if (token_ids.dtype() != DType::I32) {
        throw Error(ErrorCode::InvalidArgument, std::string("infer: token ids must be i32, got ") +
                                                    dtype_name(token_ids.dtype()));
    }
    if (token_ids.rank() != 1 && token_ids.rank() != 2) {
        throw Error(
            ErrorCode::InvalidArgument,
            "infer: token ids must have shape [T] or [B, T], got " + token_ids.shape_string());
    }
    const bool batched = token_ids.rank() == 2;
    const int64_t B = batched ? token_ids.dim(0) : 1;
    const int64_t T = batched ? token_ids.dim(1) : token_ids.dim(0);
    if (B <= 0 || T <= 0)
        throw Error(ErrorCode::InvalidArgument,
                    "infer: empty token ids " + token_ids.shape_string());
    std::vector<std::vector<int32_t>> seqs(static_cast<size_t>(B));
    const int32_t* ids = token_ids.data_as<int32_t>();
    for (int64_t b = 0; b < B; ++b)
        seqs[static_cast<size_t>(b)].assign(ids + b * T, ids + (b + 1) * T);
    InferResult r = infer(model, seqs);
    const int V = model.config().vocab_size;
    Tensor out = batched ? Tensor(DType::F32, {B, V}) : Tensor(DType::F32, {V});
    for (int64_t b = 0; b < B; ++b) {
        std::memcpy(out.data_as<float>() + b * V, r.logits[static_cast<size_t>(b)].data(),
                    sizeof(float) * V);
    }
    return out;
}

}  // namespace bitnet
