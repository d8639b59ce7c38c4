// AMX kernels (Intel Sapphire Rapids and later): the AVX-512 VNNI level with its 2-bit codes
// extracted by GFNI (avx512vnni_gfni_kernels), and ternary products of many activation rows on
// the tile unit. One TDPBUSD multiplies 16 matrix rows by 16 activation rows over 64 columns
// (16,384 multiply-adds), where a vpdpbusd does 64; the int32 sums are exact, so every result has
// the same bits as the other levels.
// As in kernels_avx512.cpp: only intrinsics, C library calls and always-inlined helpers here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC bug 105593, see kernels_avx512.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/ternary_panels_avx512.h"

namespace bitnet::cpu {
namespace {

// Fewer activation rows leave tiles empty while every panel of matrix rows still costs the
// unpacking of its codes: those products stay on the VNNI kernels. Measured on a Xeon (Emerald
// Rapids, 2 vCPUs, 2,560-column products), AMX against VNNI: 0.4-0.6x at 8 rows, 0.9-1.1x at
// 16, 1.3-2.9x at 32, 1.8-3.3x at 128.
constexpr int kAmxMinRows = 24;
// Rows of up to this many columns (a small model's) stay on the VNNI short panels, which need no
// transposed activations and no tile configuration a call: the 1m model's 128-token prompt ran
// at 79,000-83,000 tok/s on tiles against 78,000-91,000.
constexpr int kAmxMinCols = 513;

constexpr int kTileRows = 16;  // of A (matrix rows), B (four-column groups) and C
constexpr int kTileBytes = 64;

// The product runs as C[matrix rows][activation rows]: A tiles hold the codes of sixteen matrix
// rows, 64 columns a tile row, exactly as unpack_panel leaves them, and B tiles sixteen
// activation rows in groups of four columns. Transposing goes to the activations, once for a
// block of them, not to the codes of every panel of matrix rows, where it cost as long as the
// products at 32 activation rows.
// Tiles 0-3 accumulate C (matrix rows 0-15 and 16-31 by activation rows 0-15 and 16-31), 4-5
// hold A (the two panels' codes), 6-7 hold B (activations).
struct alignas(64) TileConfig {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t bytes_per_row[16] = {};
    uint8_t rows[16] = {};
};

TileConfig full_tiles() {
    TileConfig c;
    for (int t = 0; t < 8; ++t) {
        c.rows[t] = kTileRows;
        c.bytes_per_row[t] = kTileBytes;
    }
    return c;
}

// Scratch of one thread, grown as needed: the codes of 32 matrix rows, and a block of
// activations in B tiles.
struct AmxScratch {
    int8_t* codes = nullptr;
    int8_t* acts = nullptr;
    size_t codes_bytes = 0, acts_bytes = 0;
    ~AmxScratch() {
        free(codes);
        free(acts);
    }
    // Both sizes are multiples of 64, as aligned_alloc wants. False when memory ran out.
    static bool grow(int8_t*& p, size_t& have, size_t need) {
        if (need <= have) return true;
        free(p);
        p = static_cast<int8_t*>(aligned_alloc(64, need));
        have = p != nullptr ? need : 0;
        if (p != nullptr) memset(p, 0, need);  // tiles also load rows whose results are dropped
        return p != nullptr;
    }
};

// Activation rows [0, x.rows) as B tiles: group j of sixteen rows, step t (64 columns) is the
// tile at (j * ksteps + t) * 1024, whose row g holds columns 4g .. 4g + 3 of each of the sixteen
// activation rows (zero past x.rows).
void tile_activations(const QuantizedActivations& x, int ksteps, int8_t* out) {
    const size_t stride = static_cast<size_t>(x.stride);
    for (int j = 0; j * kTileRows < x.rows; ++j) {
        const int m0 = j * kTileRows;
        const int rows = x.rows - m0 < kTileRows ? x.rows - m0 : kTileRows;
        for (int t = 0; t < ksteps; ++t) {
            __m512i in[16], tr[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; ++i) {
                in[i] = i < rows ? _mm512_loadu_si512(x.q + (m0 + i) * stride + t * kTileBytes)
                                 : _mm512_setzero_si512();
            }
            transpose16_epi32(in, tr);
            int8_t* tile = out + (static_cast<size_t>(j) * ksteps + t) * kTileRows * kTileBytes;
#pragma GCC unroll 16
            for (int g = 0; g < 16; ++g) _mm512_store_si512(tile + g * kTileBytes, tr[g]);
        }
    }
}

// Writes C (up to sixteen matrix rows r.. by up to sixteen activation rows m..) as BitLinear
// outputs: the codes are w + 1, so the products exceed w . x by the activation row's sum.
inline void store_tile_outputs(const int32_t* c, const QuantizedActivations& x, int m, int m_rows,
                               int r, int r_rows, float* y, int ldy) {
    __m512i rows[16], cols[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) rows[i] = _mm512_load_si512(c + i * kTileRows);
    transpose16_epi32(rows, cols);  // cols[j]: activation row m + j over the matrix rows
    const __mmask16 keep = static_cast<__mmask16>((1u << r_rows) - 1);
    for (int j = 0; j < m_rows; ++j) {
        const __m512i dot = _mm512_sub_epi32(cols[j], _mm512_set1_epi32(x.row_sum[m + j]));
        _mm512_mask_storeu_ps(
            y + static_cast<size_t>(m + j) * ldy + r, keep,
            _mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(x.out_scale[m + j])));
    }
}

inline int min_int(int a, int b) {
    return a < b ? a : b;
}

// False, having done nothing, when its scratch could not be allocated.
bool ternary_gemm_tiles(const TernaryMatrixView& w, int r_begin, int r_end,
                        const QuantizedActivations& x, float* y, int ldy) {
    // Columns past cols hold zero activations up to the stride, so whole 64-column steps serve.
    const int ksteps = round_up(w.cols, 64) / 64;
    const size_t panel_row = static_cast<size_t>(ksteps) * kTileBytes;
    const size_t tile_bytes = kTileRows * kTileBytes;
    const int groups = (x.rows + kTileRows - 1) / kTileRows;  // of sixteen activation rows
    thread_local AmxScratch scratch;
    if (!AmxScratch::grow(scratch.codes, scratch.codes_bytes, 2 * kTileRows * panel_row) ||
        !AmxScratch::grow(scratch.acts, scratch.acts_bytes,
                          static_cast<size_t>(groups) * ksteps * tile_bytes)) {
        return false;
    }
    tile_activations(x, ksteps, scratch.acts);
    int8_t* const codes0 = scratch.codes;
    int8_t* const codes1 = scratch.codes + kTileRows * panel_row;
    static const TileConfig config = full_tiles();
    _tile_loadconfig(&config);
    alignas(64) int32_t c[4][kTileRows * kTileRows];
    // A prompt's weights come from memory: each panel fetches the next one's bytes (rows in
    // order, in row tiles as well) while its tiles run. Without it, the loads of the unpacking
    // waited for them, 14% of this kernel's samples in a 2B prompt (none with it).
    const size_t row_bytes = w.row_bytes();
    const size_t range_end = static_cast<size_t>(r_end) * row_bytes;
    for (int r = r_begin; r < r_end; r += 2 * kTileRows) {
        const int rows0 = min_int(r_end - r, kTileRows);
        const int rows1 = min_int(r_end - r - kTileRows, kTileRows);
        // Eight lines with each step of the first pass over the activations: a whole 2-bit
        // panel (a burst of all of them at once ran no faster).
        size_t next = static_cast<size_t>(r + 2 * kTileRows) * row_bytes;
        const size_t next_end = range_end < next + 2 * kTileRows * row_bytes
                                    ? range_end
                                    : next + 2 * kTileRows * row_bytes;
        // Rows past the range keep whatever codes they had: their outputs are not stored.
        unpack_panel(w, r, rows0, ksteps, codes0);
        if (rows1 > 0) unpack_panel(w, r + kTileRows, rows1, ksteps, codes1);
        for (int j = 0; j < groups; j += 2) {
            const int8_t* b0 = scratch.acts + static_cast<size_t>(j) * ksteps * tile_bytes;
            const int8_t* b1 = b0 + static_cast<size_t>(ksteps) * tile_bytes;  // if j + 1 < groups
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            auto fetch_next_panel = [&] {
                for (int line = 0; line < 8 && next < next_end; ++line, next += 64)
                    _mm_prefetch(reinterpret_cast<const char*>(w.data + next), _MM_HINT_T1);
            };
            if (j + 1 < groups) {
                for (int t = 0; t < ksteps; ++t) {
                    fetch_next_panel();
                    _tile_loadd(4, codes0 + t * kTileBytes, panel_row);
                    _tile_loadd(5, codes1 + t * kTileBytes, panel_row);
                    _tile_loadd(6, b0 + t * tile_bytes, kTileBytes);
                    _tile_loadd(7, b1 + t * tile_bytes, kTileBytes);
                    _tile_dpbusd(0, 4, 6);
                    _tile_dpbusd(1, 4, 7);
                    _tile_dpbusd(2, 5, 6);
                    _tile_dpbusd(3, 5, 7);
                }
            } else {
                // The last group of an odd count: half the products (C1 and C3 stay zero).
                for (int t = 0; t < ksteps; ++t) {
                    fetch_next_panel();
                    _tile_loadd(4, codes0 + t * kTileBytes, panel_row);
                    _tile_loadd(5, codes1 + t * kTileBytes, panel_row);
                    _tile_loadd(6, b0 + t * tile_bytes, kTileBytes);
                    _tile_dpbusd(0, 4, 6);
                    _tile_dpbusd(2, 5, 6);
                }
            }
            _tile_stored(0, c[0], kTileBytes);
            _tile_stored(1, c[1], kTileBytes);
            _tile_stored(2, c[2], kTileBytes);
            _tile_stored(3, c[3], kTileBytes);
            const int m = j * kTileRows;
            const int m_rows0 = min_int(x.rows - m, kTileRows);
            const int m_rows1 = min_int(x.rows - m - kTileRows, kTileRows);
            store_tile_outputs(c[0], x, m, m_rows0, r, rows0, y, ldy);
            if (m_rows1 > 0) store_tile_outputs(c[1], x, m + kTileRows, m_rows1, r, rows0, y, ldy);
            if (rows1 > 0) {
                store_tile_outputs(c[2], x, m, m_rows0, r + kTileRows, rows1, y, ldy);
                if (m_rows1 > 0) {
                    store_tile_outputs(c[3], x, m + kTileRows, m_rows1, r + kTileRows, rows1, y,
                                       ldy);
                }
            }
        }
    }
    // The tile state back to its initial one: the OS need not save 8 KB of tiles on every
    // switch away from this thread.
    _tile_release();
    return true;
}

void ternary_gemm(const TernaryMatrixView& w, int r_begin, int r_end, const QuantizedActivations& x,
                  float* y, int ldy) {
    if (x.rows < kAmxMinRows || w.cols < kAmxMinCols || r_begin >= r_end) {
        return avx512vnni_gfni_kernels()->ternary_gemm(w, r_begin, r_end, x, y, ldy);
    }
    for_activation_blocks(
        x, y, ldy, 2 * kTileRows, [&](const QuantizedActivations& block, float* yb) {
            if (!ternary_gemm_tiles(w, r_begin, r_end, block, yb, ldy)) {
                avx512vnni_gfni_kernels()->ternary_gemm(w, r_begin, r_end, block, yb, ldy);
            }
        });
}

}  // namespace

const KernelTable* amx_kernels() {
    static const KernelTable table = [] {
        KernelTable t = *avx512vnni_gfni_kernels();
        t.isa = Isa::AMX;
        t.name = "amx";
        t.ternary_gemm = ternary_gemm;
        return t;
    }();
    return &table;
}

}  // namespace bitnet::cpu
