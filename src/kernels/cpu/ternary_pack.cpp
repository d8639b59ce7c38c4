#include "kernels/cpu/ternary_pack.h"

#include <cstring>

namespace bitnet::cpu {

void pack_ternary_row(const int8_t* values, int cols, uint8_t* out_row) {
    const int padded = round_up(cols, kTernaryBlock);
    // Code 1 is weight 0, so padding bytes of 0b01010101 contribute nothing.
    std::memset(out_row, 0x55, static_cast<size_t>(padded) / 4);
    for (int k = 0; k < cols; ++k) {
        const int block = k / kTernaryBlock;
        const int within = k % kTernaryBlock;
        const int shift = 2 * (within / kTernaryBlockBytes);
        uint8_t& byte = out_row[block * kTernaryBlockBytes + within % kTernaryBlockBytes];
        const uint8_t code = static_cast<uint8_t>(values[k] + 1);
        byte = static_cast<uint8_t>((byte & ~(3u << shift)) | (code << shift));
    }
}

int ternary_at(const TernaryMatrixView& w, int r, int k) {
    const uint8_t* row = w.data + static_cast<size_t>(r) * w.row_bytes();
    const int within = k % kTernaryBlock;
    const uint8_t byte =
        row[(k / kTernaryBlock) * kTernaryBlockBytes + within % kTernaryBlockBytes];
    return ((byte >> (2 * (within / kTernaryBlockBytes))) & 3) - 1;
}

}  // namespace bitnet::cpu
