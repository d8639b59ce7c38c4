// AMX kernels (Intel Sapphire Rapids and later): the AVX-512 VNNI level with its 2-bit codes
// extracted by GFNI (avx512vnni_gfni_kernels), and ternary products of three activation rows or
// more on the tile unit. One TDPBUSD multiplies 16 matrix rows by 16 activation rows over 64
// columns (16,384 multiply-adds), where a vpdpbusd does 64; the int32 sums are exact, so every
// result has the same bits as the other levels. As in kernels_avx512.cpp: only intrinsics, C
// library calls and always-inlined helpers here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC bug 105593, see kernels_avx512.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/ternary_panels_avx512.h"

namespace bitnet::cpu {
namespace {

// Products of many activation rows (prompts) unpack whole panels of codes, each used by every
// group of sixteen activation rows (ternary_gemm_tiles). Fewer rows leave that unpacking too
// little to share: on a Xeon (Emerald Rapids, 2 vCPUs, 2,560-column products) those tiles ran
// at 0.4-0.6x the VNNI kernels at 8 rows, 0.9-1.1x at 16, 1.3-2.9x at 32, 1.8-3.3x at 128.
constexpr int kAmxMinRows = 33;
// From three to 32 activation rows (decoding batches, speculative drafts) the codes go through
// L1 a block at a time instead (ternary_gemm_streamed). Its loop against the VNNI tiles in a
// microbenchmark on the same VM (2,560 columns, 2026-11-29): 1.05x at 2 rows, 1.3x at 3, 1.6x at
// 4, 2.9x at 8, 3.5x at 16. At 32 rows against the panels, three pairs each: o 335-750 against
// 323-471 G multiply-adds/s, gate_up 316-594 against 309-497, down 795-860 against 383-480.
constexpr int kAmxStreamMinRows = 3;
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

// Scratch of one thread, grown as needed and shared by the kernels below: the codes of 32
// matrix rows (or a head of fewer than sixteen rows, zero-padded), and a block of activations
// in B tiles.
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

AmxScratch& thread_scratch() {
    thread_local AmxScratch scratch;
    return scratch;
}

// Columns 64t .. 64t + 63 of activation rows [m0, m0 + n) (n <= 16, row i at q + i * stride) as
// sixteen vectors: vector g holds columns 4g .. 4g + 3 of each row, one row a dword (zero past n).
inline void activation_quads(const int8_t* q, int m0, int n, size_t stride, int t, __m512i* out) {
    __m512i in[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
        in[i] = i < n ? _mm512_loadu_si512(q + (m0 + i) * stride + t * kTileBytes)
                      : _mm512_setzero_si512();
    }
    transpose16_epi32(in, out);
}

// Int8 activation rows [0, rows) as B tiles: group j of sixteen rows, step t (64 columns) is the
// tile at (j * ksteps + t) * 1024, whose row g is activation_quads' vector g.
void tile_activations(const int8_t* q, int rows, size_t stride, int ksteps, int8_t* out) {
    for (int j = 0; j * kTileRows < rows; ++j) {
        const int m0 = j * kTileRows;
        const int n = rows - m0 < kTileRows ? rows - m0 : kTileRows;
        for (int t = 0; t < ksteps; ++t) {
            __m512i tr[16];
            activation_quads(q, m0, n, stride, t, tr);
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

// Activation rows [m0, m0 + n) (n <= 16) as B tiles of n columns: step t is the tile at
// t * 64 n, whose row g holds columns 4g .. 4g + 3 of each row (4 n bytes). The tile unit's time
// for a product follows the width of B, so a batch of eight rows takes half a 16-column tile's.
void tile_activations_narrow(const int8_t* q, int m0, int n, size_t stride, int ksteps,
                             int8_t* out) {
    const __mmask16 lanes = static_cast<__mmask16>((1u << n) - 1);
    const size_t tile_bytes = static_cast<size_t>(kTileRows) * 4 * n;
    for (int t = 0; t < ksteps; ++t) {
        __m512i tr[16];
        activation_quads(q, m0, n, stride, t, tr);
        int8_t* tile = out + t * tile_bytes;
#pragma GCC unroll 16
        for (int g = 0; g < 16; ++g) _mm512_mask_storeu_epi32(tile + g * 4 * n, lanes, tr[g]);
    }
}

// Where a panel of sixteen matrix rows starts in a ternary matrix: each row's first block and the
// step to its next one, found once a panel (through block() at every block they took a third of
// the streamed kernel's time). Rows past the range read a zero block; their sums are not stored.
struct PanelRows {
    const uint8_t* at[kTileRows];
    size_t step[kTileRows];
    void find(const TernaryMatrixView& w, int r, int rows) {
        alignas(64) static const uint8_t zero_block[64] = {};
        for (int i = 0; i < kTileRows; ++i) {
            at[i] = i < rows ? w.block(r + i, 0) : zero_block;
            step[i] = i < rows ? w.block_step(r + i) : 0;
        }
    }
};

// One block's products (up to five 64-column steps) into C tiles c0 (activation rows 0-15) and
// c1 (16-31) from A tile a. Panels alternate between two sets of tile numbers, so that a panel's
// sums leave their tiles while the next one runs; the B tiles (2: rows 0-15, 4: rows 16-31) are
// the same for all. A macro: the tile intrinsics take their tile numbers as literal text.
#define BITNET_STREAMED_PRODUCTS(c0, c1, a, codes, b0, b1, n0, n1, first_step, steps) \
    for (int s_ = 0; s_ < (steps); ++s_) {                                            \
        const size_t t_ = static_cast<size_t>((first_step) + s_);                     \
        _tile_loadd(a, (codes) + s_ * kTileRows * kTileBytes, kTileBytes);            \
        _tile_loadd(2, (b0) + t_ * kTileRows * 4 * (n0), 4 * (n0));                   \
        _tile_dpbusd(c0, a, 2);                                                       \
        if ((n1) > 0) {                                                               \
            _tile_loadd(4, (b1) + t_ * kTileRows * 4 * (n1), 4 * (n1));               \
            _tile_dpbusd(c1, a, 4);                                                   \
        }                                                                             \
    }

// Products of kAmxStreamMinRows to 32 activation rows, as one stream of blocks: the 64-byte
// block of sixteen matrix rows' codes unpacked into four A tiles in L1 (five in Trits5; Bits2 by
// GFNI, one instruction a step of 64 codes) while the tile unit multiplies the block before,
// whose codes have left the store buffer by then (unpacking a block and loading it into tiles
// right after ran at half the speed: the tile loads waited on the stores). A panel's sums are
// written out one panel later, for the same reason. The activations are B tiles of up to
// sixteen rows (two groups past sixteen), read once for each panel. False, having done nothing,
// when the scratch could not be allocated.
bool ternary_gemm_streamed(const TernaryMatrixView& w, int r_begin, int r_end,
                           const QuantizedActivations& x, float* y, int ldy) {
    const bool trits5 = w.layout == TernaryLayout::Trits5;
    const int per_block = trits5 ? 5 : 4;  // 64-column steps a 64-byte block holds
    const int ksteps = round_up(w.cols, 64) / 64;
    const int n_blocks = (ksteps + per_block - 1) / per_block;
    const int n0 = min_int(x.rows, kTileRows), n1 = x.rows - n0;  // n1 <= 16
    // Multiples of 64 bytes, as AmxScratch::grow wants.
    const size_t b0_bytes = static_cast<size_t>(ksteps) * kTileRows * 4 * n0;
    const size_t b1_bytes = static_cast<size_t>(ksteps) * kTileRows * 4 * n1;
    const size_t block_codes = static_cast<size_t>(per_block) * kTileRows * kTileBytes;
    AmxScratch& scratch = thread_scratch();
    if (!AmxScratch::grow(scratch.codes, scratch.codes_bytes, 2 * block_codes) ||
        !AmxScratch::grow(scratch.acts, scratch.acts_bytes, b0_bytes + b1_bytes)) {
        return false;
    }
    const int8_t* const b0 = scratch.acts;
    const int8_t* const b1 = scratch.acts + b0_bytes;
    tile_activations_narrow(x.q, 0, n0, static_cast<size_t>(x.stride), ksteps, scratch.acts);
    if (n1 > 0) {
        tile_activations_narrow(x.q, kTileRows, n1, static_cast<size_t>(x.stride), ksteps,
                                scratch.acts + b0_bytes);
    }
    TileConfig config;
    auto tile_shape = [&](int t, int bytes) {
        config.rows[t] = kTileRows;
        config.bytes_per_row[t] = static_cast<uint16_t>(bytes);
    };
    for (int t : {0, 5, 2}) tile_shape(t, 4 * n0);
    for (int t : {1, 7}) tile_shape(t, kTileBytes);
    if (n1 > 0) {
        for (int t : {3, 6, 4}) tile_shape(t, 4 * n1);
    }
    _tile_loadconfig(&config);
    __m512i code_matrix[4];
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) code_matrix[s] = gfni_code_matrix(s);
    // Weights from memory: each block also fetches the same block of the panel after next.
    const bool fetch = static_cast<size_t>(w.rows) * w.row_bytes() >= (size_t{1} << 20);
    const int n_panels = (r_end - r_begin + kTileRows - 1) / kTileRows;
    auto panel_start = [&](int p) { return r_begin + p * kTileRows; };
    auto panel_rows = [&](int p) { return min_int(r_end - panel_start(p), kTileRows); };
    PanelRows rows[3];  // of panels p % 3: the one in the tiles, the next one, the one after
    for (int p = 0; p < 3 && p < n_panels; ++p) rows[p].find(w, panel_start(p), panel_rows(p));

    auto unpack = [&](int p, int b, int8_t* a) __attribute__((always_inline)) {
        const PanelRows& pr = rows[p % 3];
        const PanelRows& ahead = rows[(p + 2) % 3];
        const bool fetch_ahead = fetch && p + 2 < n_panels;
#pragma GCC unroll 16
        for (int i = 0; i < kTileRows; ++i) {
            __m512i v = _mm512_loadu_si512(pr.at[i] + b * pr.step[i]);
            if (fetch_ahead) {
                _mm_prefetch(reinterpret_cast<const char*>(ahead.at[i] + b * ahead.step[i]),
                             _MM_HINT_T0);
            }
            int8_t* row = a + i * kTileBytes;
            if (trits5) {
#pragma GCC unroll 5
                for (int s = 0; s < 5; ++s) {
                    _mm512_store_si512(row + s * kTileRows * kTileBytes, trits5_codes(v));
                    v = trits5_next(v);
                }
            } else {
#pragma GCC unroll 4
                for (int s = 0; s < 4; ++s) {
                    _mm512_store_si512(row + s * kTileRows * kTileBytes,
                                       _mm512_gf2p8affine_epi64_epi8(v, code_matrix[s], 0));
                }
            }
        }
    };
    auto products = [&](bool odd, int b, const int8_t* a) __attribute__((always_inline)) {
        const int steps = min_int(per_block, ksteps - per_block * b);
        if (odd) {
            BITNET_STREAMED_PRODUCTS(5, 6, 7, a, b0, b1, n0, n1, per_block * b, steps)
        } else {
            BITNET_STREAMED_PRODUCTS(0, 3, 1, a, b0, b1, n0, n1, per_block * b, steps)
        }
    };
    alignas(64) int32_t c[2][2][kTileRows * kTileRows] = {};  // [panel % 2][group]
    auto write_out = [&](int p) {
        const int r = panel_start(p), n = panel_rows(p);
        store_tile_outputs(c[p & 1][0], x, 0, n0, r, n, y, ldy);
        if (n1 > 0) store_tile_outputs(c[p & 1][1], x, kTileRows, n1, r, n, y, ldy);
    };
    // Panel by panel, each block's products after unpacking the next block (the next panel's
    // first one after a panel's last).
    unpack(0, 0, scratch.codes);
    for (int p = 0; p < n_panels; ++p) {
        const bool odd = p & 1;
        if (odd) {
            _tile_zero(5);
            if (n1 > 0) _tile_zero(6);
        } else {
            _tile_zero(0);
            if (n1 > 0) _tile_zero(3);
        }
        for (int b = 0; b < n_blocks; ++b) {
            const int k = p * n_blocks + b;  // blocks so far: the codes' buffer
            if (b + 1 < n_blocks) {
                unpack(p, b + 1, scratch.codes + ((k + 1) & 1) * block_codes);
            } else if (p + 1 < n_panels) {
                unpack(p + 1, 0, scratch.codes + ((k + 1) & 1) * block_codes);
            }
            products(odd, b, scratch.codes + (k & 1) * block_codes);
            if (b == 0 && p > 0) write_out(p - 1);
        }
        if (odd) {
            _tile_stored(5, c[1][0], kTileBytes);
            if (n1 > 0) _tile_stored(6, c[1][1], kTileBytes);
        } else {
            _tile_stored(0, c[0][0], kTileBytes);
            if (n1 > 0) _tile_stored(3, c[0][1], kTileBytes);
        }
        if (p + 3 < n_panels) rows[p % 3].find(w, panel_start(p + 3), panel_rows(p + 3));
    }
    write_out(n_panels - 1);
    _tile_release();
    return true;
}
#undef BITNET_STREAMED_PRODUCTS

// False, having done nothing, when its scratch could not be allocated.
bool ternary_gemm_tiles(const TernaryMatrixView& w, int r_begin, int r_end,
                        const QuantizedActivations& x, float* y, int ldy) {
    // Columns past cols hold zero activations up to the stride, so whole 64-column steps serve.
    const int ksteps = round_up(w.cols, 64) / 64;
    const size_t panel_row = static_cast<size_t>(ksteps) * kTileBytes;
    const size_t tile_bytes = kTileRows * kTileBytes;
    const int groups = (x.rows + kTileRows - 1) / kTileRows;  // of sixteen activation rows
    AmxScratch& scratch = thread_scratch();
    if (!AmxScratch::grow(scratch.codes, scratch.codes_bytes, 2 * kTileRows * panel_row) ||
        !AmxScratch::grow(scratch.acts, scratch.acts_bytes,
                          static_cast<size_t>(groups) * ksteps * tile_bytes)) {
        return false;
    }
    tile_activations(x.q, x.rows, static_cast<size_t>(x.stride), ksteps, scratch.acts);
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
    const KernelTable* vnni = avx512vnni_gfni_kernels();
    if (x.rows < kAmxStreamMinRows || w.cols < kAmxMinCols || r_begin >= r_end) {
        return vnni->ternary_gemm(w, r_begin, r_end, x, y, ldy);
    }
    if (x.rows < kAmxMinRows) {
        if (!ternary_gemm_streamed(w, r_begin, r_end, x, y, ldy)) {
            vnni->ternary_gemm(w, r_begin, r_end, x, y, ldy);
        }
        return;
    }
    for_activation_blocks(x, y, ldy, 2 * kTileRows,
                          [&](const QuantizedActivations& block, float* yb) {
                              if (!ternary_gemm_tiles(w, r_begin, r_end, block, yb, ldy)) {
                                  vnni->ternary_gemm(w, r_begin, r_end, block, yb, ldy);
                              }
                          });
}

// ---- heads on tiles: bf16, and int8 rows with int8 activations ----------------------------

// One tile product multiplies sixteen head rows (A, loaded straight from the row-major head: 64
// bytes of each of sixteen rows) by sixteen columns of B holding the activations, over 64 bytes
// of each row (32 bf16 or 64 int8 columns). A row's sum is then one chain over k in the tile
// unit, whatever the other rows and columns are, so its bits do not depend on m or on where a
// range starts. A tile product into the C tile of the product before it ran at 7 ns on the
// Emerald Rapids VM, into four C tiles in turn at 15-17 ns each; the loads of its A and B tiles
// (1 KB each from L1) took another 11-13 ns.
//
// bf16: the activations go in as three bf16 parts (kernels.h), in B columns j, 5 + j and 10 + j
// for activation row j; two parts (eight rows a tile) left a 41M-weight model's logits 1.2e-6
// (relative L2) from float's, three give float's precision, and the tile unit has time for
// them: it waits on the weights from memory. Int8 (I8R): sixteen activation rows a tile, exact
// int32 sums (TDPBSSD), so the same bits as every other level.

// u + 0x7fff + (bit 16 of u): the upper halves are the floats rounded to bf16, nearest even.
inline __m512i bf16_rounding_bits(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    return _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd);
}

constexpr int kBf16Parts = 3;  // of an activation

// The 32 floats at x as three bf16 parts, sixteen pairs each: dword p of parts[q] holds columns
// 2p (low half) and 2p + 1. Part 0 is x rounded to bf16, part 1 what that left rounded, part 2
// what both left (exact: a float has 24 significant bits, a bf16 8).
inline void split_bf16_pairs(const float* x, __m512i* parts) {
    // The upper 16-bit halves of 32 dwords of two vectors, in order.
    alignas(64) static constexpr uint16_t kUpperHalves[32] = {
        1,  3,  5,  7,  9,  11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31,
        33, 35, 37, 39, 41, 43, 45, 47, 49, 51, 53, 55, 57, 59, 61, 63};
    const __m512i upper = _mm512_load_si512(kUpperHalves);
    const __m512i top = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
    __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
#pragma GCC unroll 3
    for (int q = 0; q < kBf16Parts; ++q) {
        const __m512i ra = bf16_rounding_bits(a), rb = bf16_rounding_bits(b);
        parts[q] = _mm512_permutex2var_epi16(ra, upper, rb);
        a = _mm512_sub_ps(a, _mm512_castsi512_ps(_mm512_and_si512(ra, top)));
        b = _mm512_sub_ps(b, _mm512_castsi512_ps(_mm512_and_si512(rb, top)));
    }
}

// Sixteen head rows of a call: C rows [first, first + count) are head rows [row, row + count),
// read from a (sixteen rows of row_bytes bytes).
struct HeadBlock {
    const char* a = nullptr;
    int row = 0, first = 0, count = 0;
};

// Head rows [b, b + 16) ∩ [.., r_end), read from the head itself: a block that would pass r_end
// starts 16 rows before it instead (rows below r_begin exist; their sums are dropped). A head of
// fewer than sixteen rows comes from `small`, a zero-padded copy.
inline HeadBlock head_block(const char* w, size_t row_bytes, int b, int r_end, const char* small) {
    HeadBlock blk;
    blk.row = b;
    blk.count = min_int(r_end - b, kTileRows);
    if (small != nullptr) {
        blk.a = small;
        blk.first = b;
    } else {
        const int start = b + kTileRows <= r_end ? b : r_end - kTileRows;
        blk.a = w + static_cast<size_t>(start) * row_bytes;
        blk.first = b - start;
    }
    return blk;
}

inline __mmask16 block_lanes(const HeadBlock& blk) {
    return static_cast<__mmask16>(((1u << blk.count) - 1) << blk.first);
}

// C (sixteen rows of sixteen dwords) as its sixteen columns, each over the sixteen C rows.
inline void tile_columns(const void* c, __m512i* cols) {
    __m512i rows[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i)
        rows[i] = _mm512_load_si512(static_cast<const char*>(c) + i * kTileBytes);
    transpose16_epi32(rows, cols);
}

struct Bf16Head {
    using Weight = uint16_t;
    static constexpr int kStep = 32;  // columns of k a tile row holds
    static constexpr int kActsPerTile = kTileRows / kBf16Parts;
    const float* x;
    int ldx;

    // Activation rows [0, m) as B tiles: group g of five rows, step t (32 columns) is the tile at
    // (g * ksteps + t) * 1024, whose row p holds columns 2p, 2p + 1 of part q of activation row
    // j in dword 5q + j, zero past m (and dword 15).
    void tile_acts(int m, int ksteps, int8_t* out) const {
        for (int g = 0; g * kActsPerTile < m; ++g) {
            const int m0 = g * kActsPerTile;
            const int rows = min_int(m - m0, kActsPerTile);
            for (int t = 0; t < ksteps; ++t) {
                __m512i in[16], tr[16];
#pragma GCC unroll 16
                for (int i = 0; i < 16; ++i) in[i] = _mm512_setzero_si512();
                for (int j = 0; j < rows; ++j) {
                    __m512i parts[kBf16Parts];
                    split_bf16_pairs(x + static_cast<size_t>(m0 + j) * ldx + t * kStep, parts);
#pragma GCC unroll 3
                    for (int q = 0; q < kBf16Parts; ++q) in[q * kActsPerTile + j] = parts[q];
                }
                transpose16_epi32(in, tr);
                int8_t* tile = out + (static_cast<size_t>(g) * ksteps + t) * kTileRows * kTileBytes;
#pragma GCC unroll 16
                for (int p = 0; p < 16; ++p) _mm512_store_si512(tile + p * kTileBytes, tr[p]);
            }
        }
    }

    // y[m0 + j][row + i] = c[first + i][j] + (c[first + i][5 + j] + c[first + i][10 + j]).
    void store(const void* c, const HeadBlock& blk, int m0, int m_rows, float* y, int ldy) const {
        __m512i cols[16];
        tile_columns(c, cols);
        for (int j = 0; j < m_rows; ++j) {
            const __m512 sum =
                _mm512_add_ps(_mm512_castsi512_ps(cols[j]),
                              _mm512_add_ps(_mm512_castsi512_ps(cols[kActsPerTile + j]),
                                            _mm512_castsi512_ps(cols[2 * kActsPerTile + j])));
            // Lane first + i is head row row + i: the store starts first rows before row.
            _mm512_mask_storeu_ps(y + static_cast<size_t>(m0 + j) * ldy + blk.row - blk.first,
                                  block_lanes(blk), sum);
        }
    }
};

struct Int8Head {
    using Weight = int8_t;
    static constexpr int kStep = 64;
    static constexpr int kActsPerTile = kTileRows;
    const int8_t* xq;
    const float* x_scale;
    const float* row_scale;
    int ldx;

    void tile_acts(int m, int ksteps, int8_t* out) const {
        tile_activations(xq, m, static_cast<size_t>(ldx), ksteps, out);
    }

    // y[m0 + j][row + i] = (float(c[first + i][j]) * row_scale[row + i]) * x_scale[m0 + j].
    void store(const void* c, const HeadBlock& blk, int m0, int m_rows, float* y, int ldy) const {
        __m512i cols[16];
        tile_columns(c, cols);
        const __mmask16 keep = block_lanes(blk);
        const __m512 scale = _mm512_maskz_loadu_ps(keep, row_scale + blk.row - blk.first);
        for (int j = 0; j < m_rows; ++j) {
            const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(cols[j]), scale),
                                           _mm512_set1_ps(x_scale[m0 + j]));
            _mm512_mask_storeu_ps(y + static_cast<size_t>(m0 + j) * ldy + blk.row - blk.first, keep,
                                  v);
        }
    }
};

// Heads of short rows stay on the AVX-512 kernels (and their row groups); a tile row takes whole
// steps of 64 bytes.
template <class Head>
bool head_on_tiles(int k) {
    return k > kDenseGroupMaxCols && k % Head::kStep == 0;
}

// C0 += A4 x B6, and C1 += A5 x B6 with a second block of head rows (kTwo) (first); or C2 +=
// A4 x B7, and C3 += A5 x B7. The tile intrinsics take their tile numbers as literal text, not
// as template arguments.
template <class Head, bool kFirst, bool kTwo>
inline void head_tile_products() {
    if constexpr (std::is_same_v<Head, Bf16Head>) {
        if constexpr (kFirst) {
            _tile_dpbf16ps(0, 4, 6);
            if constexpr (kTwo) _tile_dpbf16ps(1, 5, 6);
        } else {
            _tile_dpbf16ps(2, 4, 7);
            if constexpr (kTwo) _tile_dpbf16ps(3, 5, 7);
        }
    } else if constexpr (kFirst) {
        _tile_dpbssd(0, 4, 6);
        if constexpr (kTwo) _tile_dpbssd(1, 5, 6);
    } else {
        _tile_dpbssd(2, 4, 7);
        if constexpr (kTwo) _tile_dpbssd(3, 5, 7);
    }
}

// The A tiles read sixteen rows side by side, more streams than the hardware prefetchers follow:
// each step fetches the lines of the step this many ahead into L1. A single activation row read
// a bf16 2B head (656 MB) from memory at 12.2-12.5 GB/s a core without it (as fast as the AVX-512
// rows), 13.6-14.2 with it; fetching the next 32 rows into L2 as the ternary tiles do read at 9.
constexpr int kHeadAhead = 2;

// Head rows [r_begin, r_end) (k columns of Head::Weight) by m activation rows into y. False,
// having done nothing, when its scratch could not be allocated.
template <class Head>
bool head_tiles(const Head& head, const typename Head::Weight* w, int k, int r_begin, int r_end,
                int m, float* y, int ldy) {
    const int ksteps = k / Head::kStep;
    const size_t tile_bytes = kTileRows * kTileBytes;
    const int groups = (m + Head::kActsPerTile - 1) / Head::kActsPerTile;
    const size_t row_bytes = static_cast<size_t>(k) * sizeof(typename Head::Weight);
    const bool small = r_end < kTileRows;
    AmxScratch& scratch = thread_scratch();
    if (!AmxScratch::grow(scratch.acts, scratch.acts_bytes,
                          static_cast<size_t>(groups) * ksteps * tile_bytes) ||
        (small && !AmxScratch::grow(scratch.codes, scratch.codes_bytes, kTileRows * row_bytes))) {
        return false;
    }
    head.tile_acts(m, ksteps, scratch.acts);
    const char* const base = reinterpret_cast<const char*>(w);
    const char* small_copy = nullptr;
    if (small) {
        memset(scratch.codes, 0, kTileRows * row_bytes);
        memcpy(scratch.codes, base, static_cast<size_t>(r_end) * row_bytes);
        small_copy = reinterpret_cast<const char*>(scratch.codes);
    }
    static const TileConfig config = full_tiles();
    _tile_loadconfig(&config);
    alignas(64) int32_t c[4][kTileRows * kTileRows];
    // Two blocks of sixteen head rows a pass when one group of activation rows takes all of a
    // step's B tile: two tile products a step either way. With two groups, four products a step
    // wait on the head's lines from memory in turn; one block a pass keeps it to two, and the
    // bf16 head at 8 rows read 1.16-1.43x faster (bench_kernels, Emerald Rapids VM), 8
    // sequences of the 2B model 1.03-1.08x.
    const int blocks_a_pass = groups > 1 ? 1 : 2;
    for (int r = r_begin; r < r_end; r += blocks_a_pass * kTileRows) {
        const HeadBlock blk0 = head_block(base, row_bytes, r, r_end, small_copy);
        // A lone last block runs alone too.
        const bool two = blocks_a_pass == 2 && r + kTileRows < r_end;
        const HeadBlock blk1 =
            two ? head_block(base, row_bytes, r + kTileRows, r_end, small_copy) : blk0;
        for (int g = 0; g < groups; g += 2) {
            const int8_t* b0 = scratch.acts + static_cast<size_t>(g) * ksteps * tile_bytes;
            const int8_t* b1 = b0 + static_cast<size_t>(ksteps) * tile_bytes;
            const bool pair = g + 1 < groups;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            // The steps with one block of head rows or two (kTwo), chosen once a pass.
            auto steps = [&](auto two_blocks) {
                constexpr bool kTwo = decltype(two_blocks)::value;
                for (int t = 0; t < ksteps; ++t) {
                    if (t + kHeadAhead < ksteps) {
                        const char* a0 = blk0.a + (t + kHeadAhead) * kTileBytes;
                        const char* a1 = blk1.a + (t + kHeadAhead) * kTileBytes;
#pragma GCC unroll 16
                        for (int i = 0; i < kTileRows; ++i) {
                            _mm_prefetch(a0 + i * row_bytes, _MM_HINT_T0);
                            if constexpr (kTwo) _mm_prefetch(a1 + i * row_bytes, _MM_HINT_T0);
                        }
                    }
                    _tile_loadd(4, blk0.a + t * kTileBytes, row_bytes);
                    if constexpr (kTwo) _tile_loadd(5, blk1.a + t * kTileBytes, row_bytes);
                    _tile_loadd(6, b0 + t * tile_bytes, kTileBytes);
                    head_tile_products<Head, true, kTwo>();
                    if (pair) {
                        _tile_loadd(7, b1 + t * tile_bytes, kTileBytes);
                        head_tile_products<Head, false, kTwo>();
                    }
                }
            };
            if (two) {
                steps(std::true_type{});
            } else {
                steps(std::false_type{});
            }
            _tile_stored(0, c[0], kTileBytes);
            if (two) _tile_stored(1, c[1], kTileBytes);
            const int m0 = g * Head::kActsPerTile;
            const int m_rows0 = min_int(m - m0, Head::kActsPerTile);
            head.store(c[0], blk0, m0, m_rows0, y, ldy);
            if (two) head.store(c[1], blk1, m0, m_rows0, y, ldy);
            if (pair) {
                _tile_stored(2, c[2], kTileBytes);
                if (two) _tile_stored(3, c[3], kTileBytes);
                const int m1 = m0 + Head::kActsPerTile;
                const int m_rows1 = min_int(m - m1, Head::kActsPerTile);
                head.store(c[2], blk0, m1, m_rows1, y, ldy);
                if (two) head.store(c[3], blk1, m1, m_rows1, y, ldy);
            }
        }
    }
    _tile_release();
    return true;
}

// The fallbacks depend on k alone (and on memory running out), so a row's bits stay the same
// for every m and range.
void dense_gemm_bf16(const uint16_t* w, int k, int r_begin, int r_end, const float* x, int m,
                     int ldx, float* y, int ldy) {
    if (r_begin >= r_end || m <= 0) return;
    if (!head_on_tiles<Bf16Head>(k) ||
        !head_tiles(Bf16Head{x, ldx}, w, k, r_begin, r_end, m, y, ldy))
        avx512vnni_gfni_kernels()->dense_gemm_bf16(w, k, r_begin, r_end, x, m, ldx, y, ldy);
}

void int8_gemm_i8r(const int8_t* w, const float* row_scale, int k, int r_begin, int r_end,
                   const int8_t* xq, const float* x_scale, int m, int ldx, float* y, int ldy) {
    if (r_begin >= r_end || m <= 0) return;
    if (!head_on_tiles<Int8Head>(k) ||
        !head_tiles(Int8Head{xq, x_scale, row_scale, ldx}, w, k, r_begin, r_end, m, y, ldy)) {
        avx512vnni_gfni_kernels()->int8_gemm_i8r(w, row_scale, k, r_begin, r_end, xq, x_scale, m,
                                                 ldx, y, ldy);
    }
}

}  // namespace

const KernelTable* amx_kernels() {
    static const KernelTable table = [] {
        KernelTable t = *avx512vnni_gfni_kernels();
        t.isa = Isa::AMX;
        t.name = "amx";
        t.ternary_gemm = ternary_gemm;
        t.dense_gemm_bf16 = dense_gemm_bf16;
        t.int8_gemm_i8r = int8_gemm_i8r;
        return t;
    }();
    return &table;
}

}  // namespace bitnet::cpu
