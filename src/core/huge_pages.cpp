#include "core/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <string>

#include "bitnet/error.h"

namespace bitnet {
namespace {

// Chunks are large so that the partly used huge page a chunk ends on (resident, not used) is
// rare: at most one a chunk. Larger requests get a chunk of their own, rounded to 2 MiB.
constexpr size_t kChunkBytes = size_t{128} << 20;
constexpr size_t kAlign = 64;

size_t round_up(size_t n, size_t to) {
    return (n + to - 1) / to * to;
}

struct Chunk {
    size_t bytes = 0;  // mapped length from the chunk's start
    size_t used = 0;   // bump offset
    size_t live = 0;   // allocations not yet freed
};

class ChunkPool {
  public:
    void* allocate(size_t bytes) {
        const size_t need = round_up(bytes == 0 ? 1 : bytes, kAlign);
        const std::lock_guard<std::mutex> lock(mutex_);
        if (current_ == nullptr || chunks_[current_].bytes - chunks_[current_].used < need) {
            current_ = map_chunk(need > kChunkBytes ? round_up(need, kHugePageBytes) : kChunkBytes);
        }
        Chunk& c = chunks_[current_];
        void* p = current_ + c.used;
        c.used += need;
        ++c.live;
        return p;
    }

    void release(void* p) noexcept {
        const std::lock_guard<std::mutex> lock(mutex_);
        // The chunk holding p is the last one starting at or before it.
        auto it = chunks_.upper_bound(static_cast<std::byte*>(p));
        if (it == chunks_.begin()) return;  // not ours; cannot happen through huge_page_free
        --it;
        if (--it->second.live > 0) return;
        if (it->first == current_) current_ = nullptr;
        ::munmap(it->first, it->second.bytes);
        chunks_.erase(it);
    }

    size_t chunks() noexcept {
        const std::lock_guard<std::mutex> lock(mutex_);
        return chunks_.size();
    }

  private:
    // Maps bytes (a multiple of 2 MiB) at a 2 MiB boundary: over-map by 2 MiB, trim both ends.
    std::byte* map_chunk(size_t bytes) {
        const size_t span = bytes + kHugePageBytes;
        void* raw =
            ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED) {
            throw Error(ErrorCode::OutOfMemory,
                        "cannot allocate " + std::to_string(bytes) + " bytes for weights");
        }
        const auto base = reinterpret_cast<uintptr_t>(raw);
        const uintptr_t start = round_up(base, kHugePageBytes);
        if (start > base) ::munmap(raw, start - base);
        const uintptr_t end = start + bytes;
        if (base + span > end) ::munmap(reinterpret_cast<void*>(end), base + span - end);
        auto* p = reinterpret_cast<std::byte*>(start);
        // Advice, not a requirement: without huge pages the memory is still good.
        if (transparent_huge_pages_available()) ::madvise(p, bytes, MADV_HUGEPAGE);
        chunks_[p] = Chunk{bytes, 0, 0};
        return p;
    }

    std::mutex mutex_;
    std::map<std::byte*, Chunk> chunks_;
    std::byte* current_ = nullptr;
};

ChunkPool& pool() {
    static ChunkPool* p = new ChunkPool;  // never destroyed: models may outlive static teardown
    return *p;
}

}  // namespace

bool transparent_huge_pages_available() {
    static const bool available = [] {
        std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
        const std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        return s.find("[always]") != std::string::npos || s.find("[madvise]") != std::string::npos;
    }();
    return available;
}

void* huge_page_alloc(size_t bytes) {
    return pool().allocate(bytes);
}

void huge_page_free(void* p) noexcept {
    if (p != nullptr) pool().release(p);
}

size_t huge_page_chunks() noexcept {
    return pool().chunks();
}

}  // namespace bitnet
