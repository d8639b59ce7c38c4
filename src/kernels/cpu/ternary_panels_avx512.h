// Matrix rows unpacked into int8 codes for the products that read many activation rows
// (AVX-512; the panel GEMMs of kernels_avx512.cpp and the AMX tiles of kernels_amx.cpp).
// Internal linkage: every kernel object compiles its own copy with its own instruction set.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/kernels.h"

namespace bitnet::cpu {
namespace {

// Trits5: the codes of a block's step from its running bytes m, (m >= 86) + (m >= 171); the
// next step's bytes are 3m (bytewise, mod 256). See ternary5_tile in kernels_avx512.cpp.
inline __m512i trits5_codes(__m512i m) {
    return _mm512_mask_mov_epi8(
        _mm512_maskz_mov_epi8(_mm512_cmpge_epu8_mask(m, _mm512_set1_epi8(86)), _mm512_set1_epi8(1)),
        _mm512_cmpge_epu8_mask(m, _mm512_set1_epi8(static_cast<char>(171))), _mm512_set1_epi8(2));
}
inline __m512i trits5_next(__m512i m) {
    return _mm512_add_epi8(m, _mm512_add_epi8(m, m));
}

// Bits2 with GFNI: the bit matrix of vgf2p8affineqb that takes step s's codes (bits 2s, 2s + 1
// of each byte) to bits 0, 1 (row i of the matrix is byte 7 - i of each quadword).
inline __m512i gfni_code_matrix(int s) {
    return _mm512_set1_epi64(static_cast<long long>((uint64_t{1} << (2 * s)) << 56 |
                                                    (uint64_t{1} << (2 * s + 1)) << 48));
}

// Codes (0..2) of matrix rows [r, r + rows) into panel rows of ksteps * 64 bytes.
inline void unpack_panel(const TernaryMatrixView& w, int r, int rows, int ksteps, int8_t* panel) {
    const bool trits5 = w.layout == TernaryLayout::Trits5;
    const int per_block = trits5 ? 5 : 4;
    const int n_blocks = w.cols_padded / (trits5 ? kTernary5Block : kTernaryBlock);
    const __m512i mask3 = _mm512_set1_epi8(3);
    for (int i = 0; i < rows; ++i) {
        const uint8_t* wr = w.block(r + i, 0);
        const size_t block_step = w.block_step(r + i);
        int8_t* out = panel + static_cast<size_t>(i) * ksteps * 64;
        int t = 0;
        for (int b = 0; t < ksteps && b < n_blocks; ++b) {
            __m512i v = _mm512_loadu_si512(wr + b * block_step);
            for (int s = 0; s < per_block && t < ksteps; ++s, ++t) {
                __m512i c;
                if (trits5) {
                    c = trits5_codes(v);
                    v = trits5_next(v);
                } else {
                    c = _mm512_and_si512(v, mask3);
                    v = _mm512_srli_epi16(v, 2);
                }
                _mm512_store_si512(out + t * 64, c);
            }
        }
        for (; t < ksteps; ++t) _mm512_store_si512(out + t * 64, _mm512_setzero_si512());
    }
}

// rows[i] (16 dwords each) -> out[d], whose dword i is dword d of rows[i].
inline void transpose16_epi32(const __m512i* rows, __m512i* out) {
    __m512i t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(rows[i], rows[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(rows[i], rows[i + 1]);
    }
    // u[4q + j], 128-bit lane l: dword 4l + j of rows 4q .. 4q + 3.
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
        const __m512i* tq = t + 4 * q;
        u[4 * q] = _mm512_unpacklo_epi64(tq[0], tq[2]);
        u[4 * q + 1] = _mm512_unpackhi_epi64(tq[0], tq[2]);
        u[4 * q + 2] = _mm512_unpacklo_epi64(tq[1], tq[3]);
        u[4 * q + 3] = _mm512_unpackhi_epi64(tq[1], tq[3]);
    }
    // out[4l + j]: lane l of u[j], u[4 + j], u[8 + j], u[12 + j].
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
        const __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i v1 = _mm512_shuffle_i32x4(u[j], u[4 + j], _MM_SHUFFLE(3, 2, 3, 2));
        const __m512i v2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i v3 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], _MM_SHUFFLE(3, 2, 3, 2));
        out[j] = _mm512_shuffle_i32x4(v0, v2, _MM_SHUFFLE(2, 0, 2, 0));
        out[4 + j] = _mm512_shuffle_i32x4(v0, v2, _MM_SHUFFLE(3, 1, 3, 1));
        out[8 + j] = _mm512_shuffle_i32x4(v1, v3, _MM_SHUFFLE(2, 0, 2, 0));
        out[12 + j] = _mm512_shuffle_i32x4(v1, v3, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

// Codes of matrix rows [r, r + rows) (rows <= 16; the rest zero) as ksteps * 16 group vectors:
// vector g holds codes k = 4g .. 4g + 3 of each of the sixteen rows, one row a dword. It is
// also the layout of an AMX B tile (sixteen of those vectors).
inline void unpack_short_panel(const TernaryMatrixView& w, int r, int rows, int ksteps,
                               int8_t* scratch, int8_t* panel) {
    unpack_panel(w, r, rows, ksteps, scratch);
    const size_t row_stride = static_cast<size_t>(ksteps) * 64;
    for (int t = 0; t < ksteps; ++t) {
        __m512i in[16], out[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) {
            in[i] = i < rows ? _mm512_load_si512(scratch + i * row_stride + t * 64)
                             : _mm512_setzero_si512();
        }
        transpose16_epi32(in, out);
#pragma GCC unroll 16
        for (int d = 0; d < 16; ++d) _mm512_store_si512(panel + (t * 16 + d) * 64, out[d]);
    }
}

}  // namespace
}  // namespace bitnet::cpu
