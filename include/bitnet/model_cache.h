// A process-wide (or per-application) cache of loaded models, shared by engines and threads.
//
//   auto model = bitnet::ModelCache::global()->get("path/to/model");  // loads or reuses
//
// Models are keyed by their canonical path and their LoadOptions. The cache holds recently used
// models up to a budget of weight bytes (ModelInfo::engine_bytes) and evicts the least recently
// used beyond it. Eviction only drops the cache's own reference: a model still used by a session
// or a caller stays alive, and a later get() of the same key returns that same instance, so a
// model is never mapped twice while any copy of it is alive. A model whose files changed on disk
// since it was loaded is loaded again. All members are thread-safe.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bitnet/model.h"

namespace bitnet {

class ModelCache {
  public:
    struct Stats {
        uint64_t hits = 0;           // gets answered without loading (cached, alive, or in flight)
        uint64_t misses = 0;         // gets that loaded the model
        uint64_t evictions = 0;      // models dropped to honour the budget (not clear())
        uint64_t load_failures = 0;  // loads that threw; nothing is cached for them
        size_t entries = 0;          // models the cache holds
        size_t resident_bytes = 0;   // their engine_bytes, at most the budget after every call
        size_t budget_bytes = 0;
        size_t live_models = 0;  // models loaded through the cache that are still alive anywhere
        size_t live_bytes = 0;   // their engine_bytes (includes evicted models still in use)
        size_t waiting = 0;      // gets waiting for another thread's load of the same key
    };

    explicit ModelCache(size_t budget_bytes);
    ~ModelCache();
    ModelCache(const ModelCache&) = delete;
    ModelCache& operator=(const ModelCache&) = delete;

    // The model at `path` (a directory or model file, as Model::load takes) loaded with `options`.
    // Concurrent gets of one key load it once; a load error reaches every waiting caller and is
    // not cached, so the next get tries again.
    std::shared_ptr<const Model> get(const std::string& path, const LoadOptions& options = {});

    Stats stats() const;
    size_t budget() const;
    // Evicts at once down to the new budget.
    void set_budget(size_t budget_bytes);
    // Drops every cached model (those in use stay alive and are still found by get()).
    void clear();

    // The process-wide cache that InferenceEngine::load_model uses unless given another one.
    // Its budget starts at a quarter of the machine's physical memory.
    static std::shared_ptr<ModelCache> global();

  private:
    struct Key {
        std::string path;  // weakly canonical
        LoadOptions options;
        auto operator<=>(const Key&) const = default;
    };
    struct Slot;  // one key's state: cached model, live weak reference, load in flight

    void evict_over_budget_locked(std::vector<std::shared_ptr<const Model>>& dropped);
    void forget_dead_slots_locked();

    mutable std::mutex mutex_;
    size_t budget_bytes_;
    uint64_t use_clock_ = 0;  // orders cached models by last use
    std::map<Key, std::shared_ptr<Slot>> slots_;
    Stats counters_;  // hits, misses, evictions, load_failures
};

}  // namespace bitnet
