// Copies of small dense heads in the kernels' row groups (kernels.h, kDenseGroupRows).
#pragma once

#include <cstddef>
#include <cstdint>

namespace bitnet::cpu {

// Bytes of the row groups of a rows x cols matrix of 4-byte (f32) or 2-byte (bf16) elements:
// 0 below 16 rows, when cols is not a multiple of 16, which the layout does not take, or past
// kDenseGroupMaxCols (kernels.h).
size_t dense_groups_bytes(int rows, int cols, size_t elem_bytes);

// Writes the row groups of the row-major matrix `w` (f32 when elem_bytes is 4, bf16 when 2) to
// `out`, which holds dense_groups_bytes(rows, cols, elem_bytes) bytes.
void group_dense_rows(const void* w, int rows, int cols, size_t elem_bytes, uint8_t* out);

}  // namespace bitnet::cpu
