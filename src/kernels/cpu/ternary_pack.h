// Conversion between plain ternary matrices (int8 values in {-1, 0, 1}) and the CPU kernel
// layouts described in kernels.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include "kernels/cpu/kernels.h"

namespace bitnet::cpu {

// "ternary2" or "ternary5".
const char* layout_name(TernaryLayout layout);

inline size_t ternary_packed_bytes(int rows, int cols,
                                   TernaryLayout layout = TernaryLayout::Bits2) {
    const size_t padded = static_cast<size_t>(round_up(cols, ternary_block(layout)));
    return static_cast<size_t>(rows) * (layout == TernaryLayout::Bits2 ? padded / 4 : padded / 5);
}

// The view of rows x cols weights packed in `layout` at `data`.
TernaryMatrixView make_ternary_view(const uint8_t* data, int rows, int cols,
                                    TernaryLayout layout = TernaryLayout::Bits2);

// Packs one row of `values` (cols values, each -1, 0 or 1) into out_row, which holds
// round_up(cols, block) / 4 (Bits2) or / 5 (Trits5) bytes; padding gets zero weights.
// Row-at-a-time so loaders can pack from any source.
void pack_ternary_row(const int8_t* values, int cols, uint8_t* out_row);
void pack_ternary5_row(const int8_t* values, int cols, uint8_t* out_row);

// The Bits2 matrix `w` (row-major) in row tiles (see kernels.h) at `out`, which holds
// ternary_packed_bytes(w.rows, w.cols) bytes and may be w.data (tiled in place); returns the
// view of `out`.
TernaryMatrixView tile_ternary_rows(const TernaryMatrixView& w, uint8_t* out);

// Bytes of the row groups (see kernels.h) of the Bits2 matrix `w`: 0 below 16 rows.
inline size_t ternary_groups_bytes(const TernaryMatrixView& w) {
    return static_cast<size_t>(w.rows / kTernaryGroupRows) * w.group_bytes();
}
// Writes the row groups of the Bits2 matrix `w` (either storage) to `out`, which holds
// ternary_groups_bytes(w) bytes, 64-byte aligned; returns `w` with groups = out.
TernaryMatrixView group_ternary_rows(const TernaryMatrixView& w, uint8_t* out);

// The value (-1, 0, 1) at (r, k) of a packed matrix of either layout.
int ternary_at(const TernaryMatrixView& w, int r, int k);

// The first (row, block) holding a byte the packers never write: a 2-bit code 3 (which the
// kernels would read as weight +2) in Bits2, a byte outside the 243 canonical values in Trits5
// (which still decodes to valid weights, but no packer wrote it). nullopt when all are valid.
std::optional<std::pair<int, int>> find_invalid_ternary_code(const TernaryMatrixView& w);

}  // namespace bitnet::cpu
