// Memory for what every decode step streams from DRAM (the weights): 2 MiB transparent huge
// pages. With 4 KiB pages a token's gigabyte of weights is a quarter of a million TLB misses,
// each a page walk (two-dimensional, and far dearer, under a hypervisor); on the development VM a
// two-thread read streamed 29 GB/s from 4 KiB pages and 43 GB/s from 2 MiB pages.
#pragma once

#include <cstddef>

namespace bitnet {

// Requests of at least this many bytes go to huge pages under WeightMemory::Auto; smaller ones
// (a small model's matrices) would spend a whole 2 MiB page on a few kilobytes.
inline constexpr size_t kHugePageMinBytes = size_t{1} << 20;
inline constexpr size_t kHugePageBytes = size_t{2} << 20;

// Whether the kernel offers transparent huge pages to madvise(MADV_HUGEPAGE) regions
// (/sys/kernel/mm/transparent_hugepage/enabled is "always" or "madvise"). Read once.
bool transparent_huge_pages_available();

// 64-byte aligned memory carved from 2 MiB-aligned chunks advised MADV_HUGEPAGE. Allocations
// are packed one after another (a model's matrices share pages rather than each rounding up to
// 2 MiB); a chunk is returned to the system when everything carved from it is freed. Where the
// kernel offers no huge pages this is ordinary anonymous memory. Throws OutOfMemory.
void* huge_page_alloc(size_t bytes);
void huge_page_free(void* p) noexcept;

// Chunks currently held (for tests: freeing everything must return them all).
size_t huge_page_chunks() noexcept;

}  // namespace bitnet
