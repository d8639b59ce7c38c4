#include "kernels/cpu/int8_kv_layout.h"

#include <cstring>
#include <vector>

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

void store_int8_row(float (*quantize)(const float*, int, int, int8_t*, int32_t*), const float* x,
                    int head_dim, int pos, bool key, int8_t* plane, float* scale) {
    int8_t on_stack[512];
    std::vector<int8_t> on_heap(head_dim > 512 ? head_dim : 0);
    int8_t* row = on_heap.empty() ? on_stack : on_heap.data();
    int32_t sum = 0;
    *scale = 1.f / quantize(x, head_dim, head_dim, row, &sum);
    if (key) {
        store_int8_key(row, head_dim, pos, plane);
    } else {
        store_int8_value(row, head_dim, pos, plane);
    }
}

}  // namespace bitnet::cpu
