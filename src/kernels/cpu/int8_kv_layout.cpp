#include "kernels/cpu/int8_kv_layout.h"

#include <cstring>

namespace bitnet::cpu {

void store_int8_key(const int8_t* row, int head_dim, int p, int8_t* plane) {
    // A quad at a time: its four bytes lie side by side in the tile.
    int8_t* first = plane + int8_key_offset(p, 0, head_dim);
    const int whole = head_dim / 4;
    for (int j = 0; j < whole; ++j) std::memcpy(first + 64 * j, row + 4 * j, 4);
    if (whole * 4 < head_dim) {
        int8_t last[4] = {};
        std::memcpy(last, row + 4 * whole, static_cast<size_t>(head_dim - 4 * whole));
        std::memcpy(first + 64 * whole, last, 4);
    }
}

void store_int8_value(const int8_t* row, int head_dim, int p, int8_t* plane) {
    int8_t* first = plane + int8_value_offset(p, 0, head_dim);
    for (int d = 0; d < head_dim; ++d) first[4 * d] = row[d];
}

}  // namespace bitnet::cpu
