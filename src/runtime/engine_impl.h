// State behind InferenceEngine and Session.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "bitnet/engine.h"
#include "core/arena.h"
#include "core/thread_pool.h"
#include "kernels/cpu/kernels.h"
#include "runtime/kv_cache.h"

namespace bitnet {

struct InferenceEngine::Impl {
    EngineOptions options;
    const cpu::KernelTable* kernels = nullptr;
    std::unique_ptr<ThreadPool> pool;
    std::mutex forward_mutex;  // one forward pass at a time: it owns the pool and the arena
    Arena arena;
    // Per-thread arenas of batches that run a share of the sequences on each thread
    // (ForwardPass::run_by_sequence); made on first use.
    std::vector<std::unique_ptr<Arena>> sequence_arenas;
    // Shared with sessions so their destructors can update the counters even after the engine.
    struct Counters {
        std::atomic<size_t> kv_bytes{0};
        std::atomic<int> sessions{0};
    };
    std::shared_ptr<Counters> counters = std::make_shared<Counters>();

    explicit Impl(const EngineOptions& o);
};

struct Session::Impl {
    std::shared_ptr<const Model> model;
    KVCache cache;
    std::shared_ptr<InferenceEngine::Impl::Counters> counters;
    const void* engine = nullptr;  // the engine that created it

    Impl(std::shared_ptr<const Model> m, int capacity, cpu::KvType type,
         std::shared_ptr<InferenceEngine::Impl::Counters> c, const void* owner);
    ~Impl();
};

}  // namespace bitnet
