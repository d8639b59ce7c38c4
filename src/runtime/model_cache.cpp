#include "bitnet/model_cache.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <optional>
#include <system_error>
#include <vector>

#include "bitnet/error.h"

namespace bitnet {

namespace {

namespace fs = std::filesystem;

// Size and modification time of one file a model is loaded from.
struct FileStamp {
    std::string name;
    uintmax_t size = 0;
    int64_t modified_ns = 0;
    auto operator<=>(const FileStamp&) const = default;
};
using FileSignature = std::vector<FileStamp>;

void add_stamp(const fs::path& file, FileSignature& out) {
    std::error_code ec;
    const fs::file_status status = fs::status(file, ec);
    if (ec || !fs::is_regular_file(status)) return;
    const uintmax_t size = fs::file_size(file, ec);
    if (ec) return;
    const fs::file_time_type modified = fs::last_write_time(file, ec);
    if (ec) return;
    out.push_back({file.filename().string(), size,
                   std::chrono::duration_cast<std::chrono::nanoseconds>(modified.time_since_epoch())
                       .count()});
}

// What a model at `path` was loaded from as it is now: every regular file of a model directory,
// or a model file and the config.json beside it. Cheap stat calls, so a model rewritten in place
// is noticed on the next get().
FileSignature signature_of(const fs::path& path) {
    FileSignature out;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
            add_stamp(it->path(), out);
    } else {
        add_stamp(path, out);
        add_stamp(path.parent_path() / "config.json", out);
    }
    std::sort(out.begin(), out.end());
    return out;
}

// One spelling per model: "./m", "m/" and "/abs/m" all name the same key.
std::string canonical_key_path(const std::string& path) {
    std::error_code ec;
    fs::path p = fs::weakly_canonical(path, ec);
    if (ec) p = fs::absolute(path, ec).lexically_normal();
    if (ec) p = fs::path(path).lexically_normal();
    if (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
    return p.string();
}

size_t default_global_budget() {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page_size = ::sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page_size <= 0) return size_t{1} << 30;
    return static_cast<size_t>(pages) * static_cast<size_t>(page_size) / 4;
}

// What a load ended with, as every caller waiting for it receives it. A bitnet::Error is kept as
// code and text so each waiter throws its own copy: one exception object rethrown on several
// threads at once would be shared between them.
struct LoadOutcome {
    std::shared_ptr<const Model> model;
    std::optional<ErrorCode> error_code;
    std::string error_message;
    std::exception_ptr other_error;

    std::shared_ptr<const Model> get() const {
        if (model) return model;
        if (error_code) throw Error(*error_code, error_message);
        std::rethrow_exception(other_error);
    }
};

}  // namespace

struct ModelCache::Slot {
    std::shared_ptr<const Model> cached;  // set while the cache holds it (counts against budget)
    std::weak_ptr<const Model> live;      // the instance loaded for this key, while alive
    size_t bytes = 0;
    uint64_t last_use = 0;
    FileSignature signature;                  // of the files the instance was loaded from
    std::shared_future<LoadOutcome> pending;  // valid while a load runs
};

ModelCache::ModelCache(size_t budget_bytes) : budget_bytes_(budget_bytes) {}
ModelCache::~ModelCache() = default;

std::shared_ptr<ModelCache> ModelCache::global() {
    static const std::shared_ptr<ModelCache> cache =
        std::make_shared<ModelCache>(default_global_budget());
    return cache;
}

std::shared_ptr<const Model> ModelCache::get(const std::string& path, const LoadOptions& options) {
    Key key{canonical_key_path(path), options};
    // Filesystem work stays outside the lock.
    FileSignature signature = signature_of(key.path);

    // Models dropped under the lock are released after it: unmapping a file can take a while.
    std::vector<std::shared_ptr<const Model>> dropped;
    std::unique_lock<std::mutex> lock(mutex_);
    std::shared_ptr<Slot>& entry = slots_[key];
    if (!entry) entry = std::make_shared<Slot>();
    const std::shared_ptr<Slot> slot = entry;

    if (slot->pending.valid()) {
        // Another thread is loading this key: wait for its result (or its error).
        const auto pending = slot->pending;
        ++counters_.waiting;
        lock.unlock();
        pending.wait();
        lock.lock();
        --counters_.waiting;
        std::shared_ptr<const Model> model = pending.get().get();  // throws the loader's error
        ++counters_.hits;
        return model;
    }

    std::shared_ptr<const Model> model = slot->cached ? slot->cached : slot->live.lock();
    if (model && slot->signature == signature) {
        ++counters_.hits;
        if (!slot->cached) {  // evicted but still in use: cache it again
            slot->cached = model;
            counters_.resident_bytes += slot->bytes;
        }
        slot->last_use = ++use_clock_;
        evict_over_budget_locked(dropped);
        lock.unlock();
        dropped.clear();
        return model;
    }
    if (slot->cached) {  // the files changed since it was loaded: load them again
        counters_.resident_bytes -= slot->bytes;
        dropped.push_back(std::move(slot->cached));
        slot->cached.reset();
    }
    slot->live.reset();

    std::promise<LoadOutcome> promise;
    slot->pending = promise.get_future().share();
    ++counters_.misses;
    lock.unlock();
    dropped.clear();

    const auto fail = [&](LoadOutcome outcome) {
        lock.lock();
        slot->pending = {};
        ++counters_.load_failures;
        forget_dead_slots_locked();
        lock.unlock();
        promise.set_value(std::move(outcome));
    };
    try {
        model = Model::load(path, options);
    } catch (const Error& e) {
        fail({nullptr, e.code(), e.what(), nullptr});
        throw;
    } catch (...) {
        fail({nullptr, std::nullopt, {}, std::current_exception()});
        throw;
    }

    lock.lock();
    slot->pending = {};
    slot->cached = model;
    slot->live = model;
    slot->bytes = model->info().engine_bytes;
    slot->signature = std::move(signature);
    slot->last_use = ++use_clock_;
    counters_.resident_bytes += slot->bytes;
    evict_over_budget_locked(dropped);
    forget_dead_slots_locked();
    lock.unlock();
    promise.set_value({model, std::nullopt, {}, nullptr});
    dropped.clear();
    return model;
}

void ModelCache::evict_over_budget_locked(std::vector<std::shared_ptr<const Model>>& dropped) {
    while (counters_.resident_bytes > budget_bytes_) {
        Slot* oldest = nullptr;
        for (const auto& [key, slot] : slots_) {
            if (slot->cached && (oldest == nullptr || slot->last_use < oldest->last_use))
                oldest = slot.get();
        }
        if (oldest == nullptr) return;
        counters_.resident_bytes -= oldest->bytes;
        // Users of the model keep it alive; `live` still finds it for them.
        dropped.push_back(std::move(oldest->cached));
        oldest->cached.reset();
        ++counters_.evictions;
    }
}

void ModelCache::forget_dead_slots_locked() {
    std::erase_if(slots_, [](const auto& item) {
        const Slot& s = *item.second;
        return !s.cached && !s.pending.valid() && s.live.expired();
    });
}

ModelCache::Stats ModelCache::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    Stats s = counters_;
    s.budget_bytes = budget_bytes_;
    for (const auto& [key, slot] : slots_) {
        if (slot->cached) ++s.entries;
        if (!slot->live.expired()) {
            ++s.live_models;
            s.live_bytes += slot->bytes;
        }
    }
    return s;
}

size_t ModelCache::budget() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return budget_bytes_;
}

void ModelCache::set_budget(size_t budget_bytes) {
    std::vector<std::shared_ptr<const Model>> dropped;
    std::lock_guard<std::mutex> lock(mutex_);
    budget_bytes_ = budget_bytes;
    evict_over_budget_locked(dropped);
    forget_dead_slots_locked();
}

void ModelCache::clear() {
    std::vector<std::shared_ptr<const Model>> dropped;
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [key, slot] : slots_) {
        if (slot->cached) dropped.push_back(std::move(slot->cached));
        slot->cached.reset();
    }
    counters_.resident_bytes = 0;
    forget_dead_slots_locked();
}

}  // namespace bitnet
