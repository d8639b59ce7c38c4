#include "kernels/cpu/ternary_pack.h"

#include <array>
#include <cstring>
#include <vector>

namespace bitnet::cpu {

namespace {

// The byte of five codes c_0..c_4 (c_0 most significant), see kernels.h.
constexpr uint8_t trits5_byte(int n) {
    return static_cast<uint8_t>((n * 256 + 242) / 243);
}

constexpr std::array<bool, 256> canonical_trits5_bytes() {
    std::array<bool, 256> valid{};
    for (int n = 0; n < 243; ++n) valid[trits5_byte(n)] = true;
    return valid;
}

// c_i of byte b: the carry out of the i-th bytewise multiplication by 3.
int trits5_code(uint8_t b, int i) {
    unsigned m = b;
    for (int j = 0; j < i; ++j) m = (m * 3) & 0xffu;
    return static_cast<int>((m * 3) >> 8);
}

}  // namespace

const char* layout_name(TernaryLayout layout) {
    return layout == TernaryLayout::Bits2 ? "ternary2" : "ternary5";
}

TernaryMatrixView make_ternary_view(const uint8_t* data, int rows, int cols, TernaryLayout layout) {
    return {data, rows, cols, round_up(cols, ternary_block(layout)), layout};
}

void pack_ternary_row(const int8_t* values, int cols, uint8_t* out_row) {
    const int padded = round_up(cols, kTernaryBlock);
    // Code 1 is weight 0, so padding bytes of 0b01010101 contribute nothing.
    std::memset(out_row, 0x55, static_cast<size_t>(padded) / 4);
    // Whole blocks byte by byte (vectorised: loading a 2B model packs ~2e9 values), the tail
    // value by value.
    const int full = cols / kTernaryBlock * kTernaryBlock;
    for (int k0 = 0; k0 < full; k0 += kTernaryBlock) {
        const int8_t* v = values + k0;
        uint8_t* out = out_row + k0 / 4;
        for (int j = 0; j < kTernaryBlockBytes; ++j) {
            out[j] = static_cast<uint8_t>((v[j] + 1) | (v[j + 64] + 1) << 2 |
                                          (v[j + 128] + 1) << 4 | (v[j + 192] + 1) << 6);
        }
    }
    for (int k = full; k < cols; ++k) {
        const int block = k / kTernaryBlock;
        const int within = k % kTernaryBlock;
        const int shift = 2 * (within / kTernaryBlockBytes);
        uint8_t& byte = out_row[block * kTernaryBlockBytes + within % kTernaryBlockBytes];
        const uint8_t code = static_cast<uint8_t>(values[k] + 1);
        byte = static_cast<uint8_t>((byte & ~(3u << shift)) | (code << shift));
    }
}

void pack_ternary5_row(const int8_t* values, int cols, uint8_t* out_row) {
    const int padded = round_up(cols, kTernary5Block);
    for (int k0 = 0; k0 < padded; k0 += kTernary5Block) {
        uint8_t* block = out_row + k0 / 5;
        for (int j = 0; j < kTernary5BlockBytes; ++j) {
            int n = 0;
            for (int i = 0; i < 5; ++i) {
                const int k = k0 + j + kTernary5BlockBytes * i;
                n = n * 3 + (k < cols ? values[k] + 1 : 1);
            }
            block[j] = trits5_byte(n);
        }
    }
}

TernaryMatrixView tile_ternary_rows(const TernaryMatrixView& w, uint8_t* out) {
    const size_t row_bytes = w.row_bytes(), tile_bytes = kTernaryTileRows * row_bytes;
    if (out != w.data) std::memcpy(out, w.data, static_cast<size_t>(w.rows) * row_bytes);
    // A tile takes the bytes its rows took, so each one is rearranged in place from a copy.
    std::vector<uint8_t> rows(tile_bytes);
    for (int r0 = 0; r0 + kTernaryTileRows <= w.rows; r0 += kTernaryTileRows) {
        uint8_t* tile = out + static_cast<size_t>(r0) * row_bytes;
        std::memcpy(rows.data(), tile, tile_bytes);
        for (int b = 0; b < w.n_blocks(); ++b) {
            for (int i = 0; i < kTernaryTileRows; ++i) {
                std::memcpy(tile + (static_cast<size_t>(b) * kTernaryTileRows + i) * 64,
                            rows.data() + static_cast<size_t>(i) * row_bytes + b * 64, 64);
            }
        }
    }
    TernaryMatrixView t = w;
    t.data = out;
    t.tiled = true;
    return t;
}

TernaryMatrixView group_ternary_rows(const TernaryMatrixView& w, uint8_t* out) {
    const int n_blocks = w.n_blocks();
    for (int g = 0; g < w.rows / kTernaryGroupRows; ++g) {
        uint8_t* group = out + static_cast<size_t>(g) * w.group_bytes();
        for (int b = 0; b < n_blocks; ++b) {
            const int s = b + 1 < n_blocks ? 4 : w.tail_steps();  // the block's steps
            for (int t = 0; t < kTernaryGroupRows; ++t) {
                const int r = g * kTernaryGroupRows + t;
                for (int j = 0; j < 16 * s; ++j) {
                    unsigned byte = 0;
                    for (int i = 0; i < 4; ++i) {
                        const int code = ternary_at(w, r, b * kTernaryBlock + j + 16 * s * i) + 1;
                        byte |= static_cast<unsigned>(code) << (2 * i);
                    }
                    group[(16 * b + j / 4) * 64 + 4 * t + j % 4] = static_cast<uint8_t>(byte);
                }
            }
        }
    }
    TernaryMatrixView v = w;
    v.groups = out;
    return v;
}

int ternary_at(const TernaryMatrixView& w, int r, int k) {
    if (w.layout == TernaryLayout::Trits5) {
        const int within = k % kTernary5Block;
        const uint8_t byte = w.block(r, k / kTernary5Block)[within % kTernary5BlockBytes];
        return trits5_code(byte, within / kTernary5BlockBytes) - 1;
    }
    const int within = k % kTernaryBlock;
    const uint8_t byte = w.block(r, k / kTernaryBlock)[within % kTernaryBlockBytes];
    return ((byte >> (2 * (within / kTernaryBlockBytes))) & 3) - 1;
}

std::optional<std::pair<int, int>> find_invalid_ternary_code(const TernaryMatrixView& w) {
    static constexpr std::array<bool, 256> kCanonical = canonical_trits5_bytes();
    for (int r = 0; r < w.rows; ++r) {
        for (int blk = 0; blk < w.n_blocks(); ++blk) {
            const uint8_t* block = w.block(r, blk);
            for (int i = 0; i < 64; ++i) {
                const uint8_t b = block[i];
                const bool bad = w.layout == TernaryLayout::Bits2
                                     ? ((b & (b >> 1) & 0x55) != 0)  // some bit pair is 0b11
                                     : !kCanonical[b];
                if (bad) return std::pair<int, int>(r, blk);
            }
        }
    }
    return std::nullopt;
}

}  // namespace bitnet::cpu
