// A bump allocator for activations. A forward pass allocates its scratch from the arena and
// the arena is reset before the next one, so after the first step of a given batch shape the
// hot path performs no heap allocation. Blocks are kept across resets; when a step needs more
// than the arena holds, the arena grows once and then coalesces into one block at the next reset.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "core/aligned_buffer.h"

namespace bitnet {

struct ArenaStats {
    size_t capacity_bytes = 0;     // bytes held in blocks
    size_t used_bytes = 0;         // bytes handed out since the last reset
    size_t peak_bytes = 0;         // most bytes handed out between two resets
    size_t block_allocations = 0;  // heap allocations the arena itself made, ever
    size_t limit_bytes = 0;        // 0: unlimited
};

class Arena {
  public:
    // limit_bytes: the most the arena may hold (0 for no limit); exceeding it is an OutOfMemory
    // bitnet::Error naming the request, not a crash.
    explicit Arena(size_t limit_bytes = 0) : limit_(limit_bytes) {}
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;

    void* allocate(size_t bytes);
    template <typename T>
    T* allocate_array(size_t count) {
        return static_cast<T*>(allocate(count * sizeof(T)));
    }
    // Makes every allocation since the last reset invalid.
    void reset();
    // Ensures a single block of at least `bytes`, so the next steps allocate nothing.
    void reserve(size_t bytes);
    ArenaStats stats() const;

  private:
    struct Block {
        std::unique_ptr<std::byte, AlignedDeleter> data;
        size_t size = 0;
    };
    void add_block(size_t bytes);

    std::vector<Block> blocks_;
    size_t current_ = 0;  // index of the block being filled
    size_t offset_ = 0;   // offset in that block
    size_t used_ = 0;
    size_t peak_ = 0;
    size_t block_allocations_ = 0;
    size_t limit_;
};

}  // namespace bitnet
