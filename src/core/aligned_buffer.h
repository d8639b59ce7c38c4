// 64-byte aligned heap memory: one cache line, and the width of an AVX-512 register.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "bitnet/error.h"
#include "core/huge_pages.h"

namespace bitnet {

inline constexpr size_t kAlignment = 64;

inline void* aligned_malloc(size_t bytes) {
    const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
    if (p == nullptr) {
        throw Error(ErrorCode::OutOfMemory, "cannot allocate " + std::to_string(bytes) + " bytes");
    }
    return p;
}

// Where an AlignedBuffer's memory comes from: the heap, or huge pages (see huge_pages.h) for
// data streamed from DRAM on every step.
enum class Pages { Small, Huge };

struct AlignedDeleter {
    Pages pages = Pages::Small;
    void operator()(void* p) const noexcept {
        if (pages == Pages::Huge) {
            huge_page_free(p);
        } else {
            std::free(p);
        }
    }
};

// An owning, aligned array of trivially-constructible T. Not value-initialised unless asked.
template <typename T>
class AlignedBuffer {
  public:
    AlignedBuffer() = default;
    explicit AlignedBuffer(size_t count, bool zero = true, Pages pages = Pages::Small)
        : data_(static_cast<T*>(pages == Pages::Huge ? huge_page_alloc(count * sizeof(T))
                                                     : aligned_malloc(count * sizeof(T))),
                AlignedDeleter{pages}),
          size_(count) {
        if (zero && count > 0) std::memset(static_cast<void*>(data_.get()), 0, count * sizeof(T));
    }
    T* data() noexcept { return data_.get(); }
    const T* data() const noexcept { return data_.get(); }
    size_t size() const noexcept { return size_; }
    size_t bytes() const noexcept { return size_ * sizeof(T); }
    Pages pages() const noexcept { return data_.get_deleter().pages; }
    T& operator[](size_t i) noexcept { return data_.get()[i]; }
    const T& operator[](size_t i) const noexcept { return data_.get()[i]; }

  private:
    std::unique_ptr<T, AlignedDeleter> data_;
    size_t size_ = 0;
};

}  // namespace bitnet
