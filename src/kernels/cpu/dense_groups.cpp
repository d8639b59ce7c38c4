#include "kernels/cpu/dense_groups.h"

#include <cstring>

#include "kernels/cpu/kernels.h"

namespace bitnet::cpu {

size_t dense_groups_bytes(int rows, int cols, size_t elem_bytes) {
    if (rows < kDenseGroupRows || cols % 16 != 0 || cols > kDenseGroupMaxCols) return 0;
    return static_cast<size_t>(rows / kDenseGroupRows) * kDenseGroupRows * cols * elem_bytes;
}

void group_dense_rows(const void* w, int rows, int cols, size_t elem_bytes, uint8_t* out) {
    // A dword of a line holds 4 / elem_bytes consecutive columns of one row.
    const size_t per_dword = 4 / elem_bytes;
    const size_t lines = static_cast<size_t>(cols) / per_dword;
    const uint8_t* src = static_cast<const uint8_t*>(w);
    const int grouped = rows / kDenseGroupRows * kDenseGroupRows;
    for (int r = 0; r < grouped; ++r) {
        const uint8_t* row = src + static_cast<size_t>(r) * cols * elem_bytes;
        uint8_t* group =
            out + static_cast<size_t>(r / kDenseGroupRows) * kDenseGroupRows * cols * elem_bytes;
        for (size_t c = 0; c < lines; ++c)
            std::memcpy(group + (c * kDenseGroupRows + r % kDenseGroupRows) * 4, row + c * 4, 4);
    }
}

}  // namespace bitnet::cpu
