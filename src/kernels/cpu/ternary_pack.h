// Conversion between plain ternary matrices (int8 values in {-1, 0, 1}) and the CPU kernel
// layout described in kernels.h.
#pragma once

#include <cstdint>

#include "kernels/cpu/kernels.h"

namespace bitnet::cpu {

inline size_t ternary_packed_bytes(int rows, int cols) {
    return static_cast<size_t>(rows) * static_cast<size_t>(round_up(cols, kTernaryBlock)) / 4;
}

// Packs row r of `values` ([rows, cols], each -1, 0 or 1) into `out`, which holds
// ternary_packed_bytes(rows, cols) bytes. Row-at-a-time so loaders can pack from any source.
void pack_ternary_row(const int8_t* values, int cols, uint8_t* out_row);

// The value (-1, 0, 1) at (r, k) of a packed matrix.
int ternary_at(const TernaryMatrixView& w, int r, int k);

}  // namespace bitnet::cpu
