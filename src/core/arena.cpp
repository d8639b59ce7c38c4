#include "core/arena.h"

#include <algorithm>
#include <string>

namespace bitnet {

namespace {
size_t align_up(size_t n) {
    return (n + kAlignment - 1) / kAlignment * kAlignment;
}
}  // namespace

void Arena::add_block(size_t bytes) {
    size_t capacity = 0;
    for (const Block& b : blocks_) capacity += b.size;
    if (limit_ != 0 && capacity + bytes > limit_) {
        throw Error(ErrorCode::OutOfMemory,
                    "memory pool limit of " + std::to_string(limit_) +
                        " bytes reached (asked for " + std::to_string(bytes) +
                        " more); raise memory_pool_size or lower batch size");
    }
    Block b;
    b.data.reset(static_cast<std::byte*>(aligned_malloc(bytes)));
    b.size = bytes;
    blocks_.push_back(std::move(b));
    ++block_allocations_;
}

void* Arena::allocate(size_t bytes) {
    bytes = align_up(std::max<size_t>(bytes, 1));
    size_t block = current_;
    size_t offset = offset_;
    while (block < blocks_.size() && offset + bytes > blocks_[block].size) {
        ++block;
        offset = 0;
    }
    if (block == blocks_.size()) {
        // Grow geometrically so a growing workload settles after a few steps, but never past
        // the limit when a smaller block would still serve the request.
        size_t capacity = 0;
        for (const Block& b : blocks_) capacity += b.size;
        size_t want = std::max(bytes, std::max<size_t>(capacity, 1 << 20));
        if (limit_ != 0 && capacity + want > limit_ && capacity + bytes <= limit_)
            want = limit_ - capacity;
        add_block(want);  // throws before any state changes
        offset = 0;
    }
    current_ = block;
    void* p = blocks_[current_].data.get() + offset;
    offset_ = offset + bytes;
    used_ += bytes;
    peak_ = std::max(peak_, used_);
    return p;
}

void Arena::reset() {
    if (blocks_.size() > 1) {
        // Several blocks mean the last step overflowed: replace them with one that fits it.
        size_t capacity = 0;
        for (const Block& b : blocks_) capacity += b.size;
        blocks_.clear();
        add_block(std::max(capacity, peak_));
    }
    current_ = 0;
    offset_ = 0;
    used_ = 0;
}

void Arena::reserve(size_t bytes) {
    bytes = align_up(bytes);
    if (blocks_.size() == 1 && blocks_[0].size >= bytes) return;
    if (used_ != 0) {
        throw Error(ErrorCode::Internal, "Arena::reserve called while allocations are live");
    }
    blocks_.clear();
    add_block(bytes);
    current_ = 0;
    offset_ = 0;
}

ArenaStats Arena::stats() const {
    ArenaStats s;
    for (const Block& b : blocks_) s.capacity_bytes += b.size;
    s.used_bytes = used_;
    s.peak_bytes = peak_;
    s.block_allocations = block_allocations_;
    s.limit_bytes = limit_;
    return s;
}

}  // namespace bitnet
