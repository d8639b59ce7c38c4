// AVX2 + FMA + F16C kernels. Everything but the table getter lives in an anonymous namespace.
// Built twice: as the AVX2 level, and with BITNET_AVXVNNI=1 as the AVX-VNNI level, whose ternary
// tiles and panels add code-times-activation bytes with one vpdpbusd (VEX, 256 bits) where AVX2
// needs a vpmaddubsw, a 16-bit add and a widening every few steps.
//
// Only intrinsics, C library calls and kernels.h's always-inlined helpers are used here, never
// std:: or other project inline functions: an out-of-line copy of such a function built with
// -mavx2 is a weak symbol the linker may pick for callers in objects meant to run on CPUs
// without AVX2.
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "kernels/cpu/int8_kv_layout.h"
#include "kernels/cpu/kernels.h"

#ifndef BITNET_AVXVNNI
#define BITNET_AVXVNNI 0
#endif

namespace bitnet::cpu {
namespace {

template <int N>
struct Int {
    static constexpr int value = N;
};

// Eight -1 then eight 0: loading 8 ints from kMaskTable + 8 - n gives a mask of n lanes.
alignas(64) constexpr int32_t kMaskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};

inline __m256i mask8(int n) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 8 - n));
}

// n < 8 floats, zero-filled; maskload never touches the lanes past n.
inline __m256 load_tail_ps(const float* p, int n) {
    return _mm256_maskload_ps(p, mask8(n));
}
inline void store_tail_ps(float* p, int n, __m256 v) {
    _mm256_maskstore_ps(p, mask8(n), v);
}

// n < 8 16-bit values, zero-filled (AVX2 has no 16-bit masked load).
inline __m128i load_tail_u16(const uint16_t* p, int n) {
    alignas(16) uint16_t buf[8] = {};
    memcpy(buf, p, static_cast<size_t>(n) * sizeof(uint16_t));
    return _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
}

inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline float hmax_ps(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// Four horizontal sums at once: {sum(a), sum(b), sum(c), sum(d)}.
inline __m128i reduce4_epi32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
    const __m256i cd = _mm256_add_epi32(_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
    const __m256i v =
        _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
    return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

inline __m128 reduce4_ps(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 ab = _mm256_add_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
    const __m256 cd = _mm256_add_ps(_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
    const __m256d abd = _mm256_castps_pd(ab);
    const __m256d cdd = _mm256_castps_pd(cd);
    const __m256 v = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(abd, cdd)),
                                   _mm256_castpd_ps(_mm256_unpackhi_pd(abd, cdd)));
    return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}

template <int N>
inline void reduce_all(const __m256i* v, int32_t* out) {
    int i = 0;
    for (; i + 4 <= N; i += 4) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                         reduce4_epi32(v[i], v[i + 1], v[i + 2], v[i + 3]));
    }
    for (; i < N; ++i) out[i] = hsum_epi32(v[i]);
}

template <int N>
inline void reduce_all(const __m256* v, float* out) {
    int i = 0;
    for (; i + 4 <= N; i += 4)
        _mm_storeu_ps(out + i, reduce4_ps(v[i], v[i + 1], v[i + 2], v[i + 3]));
    for (; i < N; ++i) out[i] = hsum_ps(v[i]);
}

// Runs tile(Int<RT'>, Int<MT'>, r, m) over matrix rows [r_begin, r_end) x activation rows
// [0, n_m). Matrix rows are the outer loop, so a tile's weights stay in L1 while every
// activation row passes over them and each weight byte is read from memory once.
template <int RT, int MT, typename Tile>
inline void m_tail(int r, int m, int rem, Tile& tile) {
    if constexpr (MT == 1) {
        tile(Int<RT>{}, Int<1>{}, r, m);
    } else if (rem == MT) {
        tile(Int<RT>{}, Int<MT>{}, r, m);
    } else {
        m_tail<RT, MT - 1>(r, m, rem, tile);
    }
}

// With align_rows (a tiled matrix, whose row tiles must each lie within one storage tile), rows
// before the first multiple of RT go one at a time.
template <int RT, int MT, typename Tile>
void for_tiles(int r_begin, int r_end, int n_m, Tile& tile, bool align_rows = false) {
    auto all_m = [&](auto rt, int r) {
        constexpr int R = decltype(rt)::value;
        int m = 0;
        for (; m + MT <= n_m; m += MT) tile(rt, Int<MT>{}, r, m);
        if constexpr (MT > 1) {
            if (m < n_m) m_tail<R, MT - 1>(r, m, n_m - m, tile);
        }
    };
    int r = r_begin;
    if (align_rows) {
        for (; r % RT != 0 && r < r_end; ++r) all_m(Int<1>{}, r);
    }
    for (; r + RT <= r_end; r += RT) all_m(Int<RT>{}, r);
    for (; r < r_end; ++r) all_m(Int<1>{}, r);
}

// ---- activation quantisation -------------------------------------------------------------

inline __m256i quantize8(__m256 x, __m256 scale) {
    // vcvtps2dq rounds half to even under the default MXCSR, as nearbyint does.
    const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(x, scale));
    return _mm256_min_epi32(_mm256_max_epi32(v, _mm256_set1_epi32(-128)), _mm256_set1_epi32(127));
}

// quantize_row_i8 of the n values that values(i, len) gives 8 at a time (len <= 8 of them,
// lanes past len 0).
template <typename Values>
__attribute__((always_inline)) inline float quantize_values(int n, int n_pad, int8_t* q,
                                                            int32_t* sum, Values values) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 vmax = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(values(i, 8), abs_mask));
    if (i < n) vmax = _mm256_max_ps(vmax, _mm256_and_ps(values(i, n - i), abs_mask));
    const float amax = hmax_ps(vmax);
    const float scale = 127.f / (amax < 1e-5f ? 1e-5f : amax);

    const __m256 vs = _mm256_set1_ps(scale);
    __m256i vsum = _mm256_setzero_si256();
    // packs interleave 128-bit lanes: after both packs the bytes are in 4-byte groups
    // a0 b0 c0 d0 | a1 b1 c1 d1; the permute restores a0 a1 b0 b1 c0 c1 d0 d1.
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (i = 0; i + 32 <= n; i += 32) {
        const __m256i a = quantize8(values(i, 8), vs);
        const __m256i b = quantize8(values(i + 8, 8), vs);
        const __m256i c = quantize8(values(i + 16, 8), vs);
        const __m256i d = quantize8(values(i + 24, 8), vs);
        vsum = _mm256_add_epi32(vsum,
                                _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d)));
        const __m256i bytes =
            _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                            _mm256_permutevar8x32_epi32(bytes, order));
    }
    for (; i < n; i += 8) {
        const int len = n - i < 8 ? n - i : 8;
        const __m256i v = quantize8(values(i, len), vs);
        vsum = _mm256_add_epi32(vsum, v);  // lanes past n quantise 0
        alignas(32) int32_t tmp[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), v);
        for (int j = 0; j < len; ++j) q[i + j] = static_cast<int8_t>(tmp[j]);
    }
    if (n_pad > n) memset(q + n, 0, static_cast<size_t>(n_pad - n));
    *sum = hsum_epi32(vsum);
    return scale;
}

inline __m256 load8(const float* p, int len) {
    return len == 8 ? _mm256_loadu_ps(p) : load_tail_ps(p, len);
}

float quantize_row_i8(const float* x, int n, int n_pad, int8_t* q, int32_t* sum) {
    return quantize_values(n, n_pad, q, sum, [x](int i, int len) { return load8(x + i, len); });
}

// ---- ternary GEMM -------------------------------------------------------------------------
//
// A 64-byte block holds 256 codes; for its 32-byte half h, (half >> 2s) & 3 are the codes of
// k = 64s + 32h .. 64s + 32h + 31, so each shift pairs with one contiguous 32-byte activation
// load. Codes are 0..2 (unsigned), activations int8, so vpmaddubsw forms the products and
// sum(q * code) - sum(q) is the dot product with the weights code - 1. Each vpmaddubsw lane is
// within +-512, so the eight of one block are summed in 16 bits before one vpmaddwd widens them.

// Tiles over matrices from memory read RT interleaved row streams, which the hardware
// prefetchers follow poorly: after each 64-byte block step the tile prefetches (into L2) RT
// lines of the tile two ahead, so over a tile it fetches exactly one tile's bytes (as the
// AVX-512 kernels do; measured there: 2x from DRAM). Matrices under 1 MiB stay in the caches.
constexpr size_t kPrefetchMinBytes = size_t{1} << 20;

template <int RT>
inline void prefetch_tile_ahead(const uint8_t* tile, size_t row_bytes, int b) {
    const uint8_t* ahead = tile + 2 * RT * row_bytes + static_cast<size_t>(b) * RT * 64;
    for (int i = 0; i < RT; ++i)
        _mm_prefetch(reinterpret_cast<const char*>(ahead + i * 64), _MM_HINT_T1);
}

// The outputs of an RT x MT tile of lane sums (store_ternary_dots).
template <int RT, int MT>
inline void store_ternary_outputs(const __m256i* acc, const QuantizedActivations& x, int m,
                                  float* y, int ldy) {
    int32_t dots[RT * MT];
    reduce_all<RT * MT>(acc, dots);
    store_ternary_dots(dots, RT, MT, x, m, y, ldy);
}

constexpr int kTernaryRows = 2;  // 16 registers: 2 x 2 32-bit + 2 x 2 16-bit accumulators
constexpr int kTernaryCols = 2;
constexpr int kTernaryGemvRows = 4;

template <int RT, int MT, bool kPrefetch = false>
inline void ternary_tile(const TernaryMatrixView& w, int r, const QuantizedActivations& x, int m,
                         float* y, int ldy) {
    const size_t row_bytes = static_cast<size_t>(w.cols_padded) / 4;
    const int n_blocks = w.cols_padded / kTernaryBlock;
    // Skipping the padding's steps: a 128-column matrix would otherwise cost a 256-column one.
    const int tail_steps = w.tail_steps();
    // The tile's rows lie in one row tile, or all past the tiles (for_tiles' align_rows).
    const uint8_t* wp = w.block(r, 0);
    const size_t row_step = w.row_step(r), block_step = w.block_step(r);
    // Prefetches follow the rows' byte positions (a tiled matrix's row tiles are contiguous
    // too, so consecutive tiles still fetch each byte once), at least a whole row tile ahead.
    const int ahead_extra = w.tiled && 2 * RT < kTernaryTileRows ? kTernaryTileRows - 2 * RT : 0;
    const uint8_t* linear = w.data + static_cast<size_t>(r + ahead_extra) * row_bytes;
    const int8_t* xp = x.q + static_cast<size_t>(m) * x.stride;
    const __m256i mask3 = _mm256_set1_epi8(3);
#if !BITNET_AVXVNNI
    const __m256i ones = _mm256_set1_epi16(1);
#endif
    __m256i acc[RT * MT];
    for (int i = 0; i < RT * MT; ++i) acc[i] = _mm256_setzero_si256();

    for (int b = 0; b < n_blocks; ++b) {
#if !BITNET_AVXVNNI
        __m256i acc16[RT * MT];
        for (int i = 0; i < RT * MT; ++i) acc16[i] = _mm256_setzero_si256();
#endif
        for (int h = 0; h < 2; ++h) {
            __m256i wv[RT];
            for (int i = 0; i < RT; ++i) {
                wv[i] = _mm256_loadu_si256(
                    reinterpret_cast<const __m256i*>(wp + i * row_step + b * block_step + h * 32));
            }
            for (int s = 0; s < (b + 1 < n_blocks ? 4 : tail_steps); ++s) {
                __m256i xv[MT];
                for (int j = 0; j < MT; ++j) {
                    xv[j] = _mm256_loadu_si256(
                        reinterpret_cast<const __m256i*>(xp + static_cast<size_t>(j) * x.stride +
                                                         b * kTernaryBlock + s * 64 + h * 32));
                }
                for (int i = 0; i < RT; ++i) {
                    const __m256i c = _mm256_and_si256(wv[i], mask3);
                    wv[i] = _mm256_srli_epi16(wv[i], 2);
                    for (int j = 0; j < MT; ++j) {
#if BITNET_AVXVNNI
                        acc[i * MT + j] = _mm256_dpbusd_avx_epi32(acc[i * MT + j], c, xv[j]);
#else
                        acc16[i * MT + j] =
                            _mm256_add_epi16(acc16[i * MT + j], _mm256_maddubs_epi16(c, xv[j]));
#endif
                    }
                }
            }
        }
#if !BITNET_AVXVNNI
        for (int i = 0; i < RT * MT; ++i) {
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(acc16[i], ones));
        }
#endif
        if constexpr (kPrefetch) prefetch_tile_ahead<RT>(linear, row_bytes, b);
    }

    store_ternary_outputs<RT, MT>(acc, x, m, y + r, ldy);
}

// Trits5: for the 32-byte half h of a 64-byte block, with m_0 = the half and m_{i+1} = 3 m_i
// (bytewise, mod 256), the codes of k = 64i + 32h .. 64i + 32h + 31 are
// c_i = floor(3 m_i / 256) = (m_i >= 86) + (m_i >= 171). AVX2 compares only signed bytes, so
// the recurrence runs on m ^ 0x80 (which obeys the same recurrence: 3 * 128 = 128 mod 256),
// where the tests are > -43 and > 42; their sum of -1 masks is -c_i. Five vpmaddubsw lanes
// (each within +-512) fit in 16 bits.
template <int RT, int MT, bool kPrefetch = false>
inline void ternary5_tile(const TernaryMatrixView& w, int r, const QuantizedActivations& x, int m,
                          float* y, int ldy) {
    const size_t row_bytes = static_cast<size_t>(w.cols_padded) / 5;
    const int n_blocks = w.cols_padded / kTernary5Block;
    // Skipping the padding's steps: a 128-column matrix would otherwise cost a 256-column one.
    const int tail_steps = w.tail_steps();
    const uint8_t* wp = w.data + static_cast<size_t>(r) * row_bytes;
    const int8_t* xp = x.q + static_cast<size_t>(m) * x.stride;
    const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
    const __m256i t1 = _mm256_set1_epi8(-43);
    const __m256i t2 = _mm256_set1_epi8(42);
#if !BITNET_AVXVNNI
    const __m256i ones = _mm256_set1_epi16(1);
#endif
    __m256i acc[RT * MT];
    for (int i = 0; i < RT * MT; ++i) acc[i] = _mm256_setzero_si256();

    for (int b = 0; b < n_blocks; ++b) {
#if !BITNET_AVXVNNI
        __m256i acc16[RT * MT];
        for (int i = 0; i < RT * MT; ++i) acc16[i] = _mm256_setzero_si256();
#endif
        for (int h = 0; h < 2; ++h) {
            __m256i mv[RT];
            for (int i = 0; i < RT; ++i) {
                mv[i] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(
                                             wp + i * row_bytes + b * 64 + h * 32)),
                                         bias);
            }
            for (int s = 0; s < (b + 1 < n_blocks ? 5 : tail_steps); ++s) {
                __m256i xv[MT];
                for (int j = 0; j < MT; ++j) {
                    xv[j] = _mm256_loadu_si256(
                        reinterpret_cast<const __m256i*>(xp + static_cast<size_t>(j) * x.stride +
                                                         b * kTernary5Block + s * 64 + h * 32));
                }
                for (int i = 0; i < RT; ++i) {
                    const __m256i c = _mm256_abs_epi8(_mm256_add_epi8(
                        _mm256_cmpgt_epi8(mv[i], t1), _mm256_cmpgt_epi8(mv[i], t2)));
                    mv[i] = _mm256_add_epi8(mv[i], _mm256_add_epi8(mv[i], mv[i]));
                    for (int j = 0; j < MT; ++j) {
#if BITNET_AVXVNNI
                        acc[i * MT + j] = _mm256_dpbusd_avx_epi32(acc[i * MT + j], c, xv[j]);
#else
                        acc16[i * MT + j] =
                            _mm256_add_epi16(acc16[i * MT + j], _mm256_maddubs_epi16(c, xv[j]));
#endif
                    }
                }
            }
        }
#if !BITNET_AVXVNNI
        for (int i = 0; i < RT * MT; ++i) {
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(acc16[i], ones));
        }
#endif
        if constexpr (kPrefetch) prefetch_tile_ahead<RT>(wp, row_bytes, b);
    }

    store_ternary_outputs<RT, MT>(acc, x, m, y + r, ldy);
}

// ---- panel GEMM: many activation rows (prompts) -----------------------------------------------
//
// The tiles above extract every code again for each pair of activation rows (and + shift, or the
// Trits5 comparisons), which with a prompt's many rows costs as much as the multiply-adds. Here
// two matrix rows are unpacked once into a panel of one byte a weight in k order (in L1), and
// every tile of activation rows then runs loads, vpmaddubsw and 16-bit adds over it.
constexpr int kPanelRows = 2;
constexpr int kPanelCols = 4;  // 2 x 4 tiles: 8 32-bit sums, and 8 16-bit ones at AVX2
constexpr int kPanelMinRows = 8;
constexpr int kPanelMaxSteps = 256;  // 64-column steps: rows of up to 16,384 columns
// 16-bit sums flushed to 32 bits every this many steps: a lane gains at most 2 * 2 * 128 = 512
// a half step, two half steps a step, so 32 steps stay within 16 bits.
constexpr int kPanelFlushSteps = 16;

// Codes (0..2) of matrix rows [r, r + rows) into panel rows of ksteps * 64 bytes.
inline void unpack_panel(const TernaryMatrixView& w, int r, int rows, int ksteps, int8_t* panel) {
    const bool trits5 = w.layout == TernaryLayout::Trits5;
    const int per_block = trits5 ? 5 : 4;
    const __m256i mask3 = _mm256_set1_epi8(3);
    const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
    const __m256i t1 = _mm256_set1_epi8(-43), t2 = _mm256_set1_epi8(42);
    for (int i = 0; i < rows; ++i) {
        int8_t* out = panel + static_cast<size_t>(i) * ksteps * 64;
        const size_t block_step = w.block_step(r + i);
        const uint8_t* wr = w.block(r + i, 0);
        for (int b = 0, t0 = 0; t0 < ksteps; ++b, t0 += per_block) {
            const int steps = ksteps - t0 < per_block ? ksteps - t0 : per_block;
            for (int h = 0; h < 2; ++h) {
                __m256i v = _mm256_loadu_si256(
                    reinterpret_cast<const __m256i*>(wr + b * block_step + h * 32));
                // Trits5 as in ternary5_tile: the recurrence on m ^ 0x80, signed compares.
                if (trits5) v = _mm256_xor_si256(v, bias);
                for (int s = 0; s < steps; ++s) {
                    __m256i c;
                    if (trits5) {
                        c = _mm256_abs_epi8(
                            _mm256_add_epi8(_mm256_cmpgt_epi8(v, t1), _mm256_cmpgt_epi8(v, t2)));
                        v = _mm256_add_epi8(v, _mm256_add_epi8(v, v));
                    } else {
                        c = _mm256_and_si256(v, mask3);
                        v = _mm256_srli_epi16(v, 2);
                    }
                    _mm256_store_si256(reinterpret_cast<__m256i*>(out + (t0 + s) * 64 + h * 32), c);
                }
            }
        }
    }
}

template <int RT, int MT>
inline void panel_tile(const int8_t* panel, int ksteps, const QuantizedActivations& x, int m,
                       float* y, int ldy) {
    const int8_t* xp = x.q + static_cast<size_t>(m) * x.stride;
    const size_t panel_row = static_cast<size_t>(ksteps) * 64;
#if !BITNET_AVXVNNI
    const __m256i ones = _mm256_set1_epi16(1);
#endif
    __m256i acc[RT * MT];
    for (int i = 0; i < RT * MT; ++i) acc[i] = _mm256_setzero_si256();
    for (int t0 = 0; t0 < ksteps; t0 += kPanelFlushSteps) {
        const int t1 = ksteps - t0 < kPanelFlushSteps ? ksteps : t0 + kPanelFlushSteps;
#if !BITNET_AVXVNNI
        __m256i acc16[RT * MT];
        for (int i = 0; i < RT * MT; ++i) acc16[i] = _mm256_setzero_si256();
#endif
        for (int t = t0; t < t1; ++t) {
#pragma GCC unroll 2
            for (int h = 0; h < 2; ++h) {
                __m256i c[RT];
                for (int i = 0; i < RT; ++i) {
                    c[i] = _mm256_load_si256(
                        reinterpret_cast<const __m256i*>(panel + i * panel_row + t * 64 + h * 32));
                }
                for (int j = 0; j < MT; ++j) {
                    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
                        xp + static_cast<size_t>(j) * x.stride + t * 64 + h * 32));
                    for (int i = 0; i < RT; ++i) {
#if BITNET_AVXVNNI
                        acc[i * MT + j] = _mm256_dpbusd_avx_epi32(acc[i * MT + j], c[i], xv);
#else
                        acc16[i * MT + j] =
                            _mm256_add_epi16(acc16[i * MT + j], _mm256_maddubs_epi16(c[i], xv));
#endif
                    }
                }
            }
        }
#if !BITNET_AVXVNNI
        for (int i = 0; i < RT * MT; ++i)
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(acc16[i], ones));
#endif
    }
    store_ternary_outputs<RT, MT>(acc, x, m, y, ldy);
}

void ternary_gemm_panels(const TernaryMatrixView& w, int r_begin, int r_end,
                         const QuantizedActivations& x, float* y, int ldy) {
    const int per_block = w.layout == TernaryLayout::Trits5 ? 5 : 4;
    // Steps past the last block's real columns hold padding only (zero activations).
    const int ksteps = (w.n_blocks() - 1) * per_block + w.tail_steps();
    alignas(32) static thread_local int8_t panel[kPanelRows * kPanelMaxSteps * 64];
    // Weights from memory: each panel fetches the bytes of a panel a row tile ahead (by byte
    // position, as the tiles prefetch), which arrive while the activation tiles run.
    const size_t row_bytes = w.row_bytes();
    const bool prefetch = static_cast<size_t>(w.rows) * row_bytes >= kPrefetchMinBytes;
    const size_t range_end = static_cast<size_t>(r_end) * row_bytes;
    for (int r = r_begin; r < r_end; r += kPanelRows) {
        const int rows = r_end - r < kPanelRows ? r_end - r : kPanelRows;
        if (prefetch) {
            const size_t next = static_cast<size_t>(r + kTernaryTileRows) * row_bytes;
            for (size_t off = next; off < next + kPanelRows * row_bytes && off < range_end;
                 off += 64)
                _mm_prefetch(reinterpret_cast<const char*>(w.data + off), _MM_HINT_T1);
        }
        unpack_panel(w, r, rows, ksteps, panel);
        auto tile = [&](auto rt, auto mt, int, int m) {
            panel_tile<decltype(rt)::value, decltype(mt)::value>(panel, ksteps, x, m, y + r, ldy);
        };
        if (rows == kPanelRows) {
            for_tiles<kPanelRows, kPanelCols>(0, kPanelRows, x.rows, tile);
        } else {
            for_tiles<1, kPanelCols>(0, 1, x.rows, tile);
        }
    }
}

inline bool panel_gemm_applies(const TernaryMatrixView& w, const QuantizedActivations& x) {
    return x.rows >= kPanelMinRows && w.cols_padded / 64 <= kPanelMaxSteps;
}

void ternary_gemm(const TernaryMatrixView& w, int r_begin, int r_end, const QuantizedActivations& x,
                  float* y, int ldy) {
    if (panel_gemm_applies(w, x)) {
        for_activation_blocks(x, y, ldy, kPanelCols, [&](const QuantizedActivations& b, float* yb) {
            ternary_gemm_panels(w, r_begin, r_end, b, yb, ldy);
        });
        return;
    }
    const bool trits5 = w.layout == TernaryLayout::Trits5;
    // The first activation tile of each row tile prefetches a matrix from memory; the others
    // find its weights in L1.
    const bool prefetch = static_cast<size_t>(w.rows) * w.row_bytes() >= kPrefetchMinBytes;
    // Activation rows xa into outputs ya, the matrix rows outermost.
    auto product = [&](auto rows_a_pass, const QuantizedActivations& xa, float* ya) {
        auto tile = [&](auto rt, auto mt, int r, int m) {
            constexpr int R = decltype(rt)::value, C = decltype(mt)::value;
            const bool first = prefetch && m == 0;
            if (trits5) {
                if (first) return ternary5_tile<R, C, true>(w, r, xa, m, ya, ldy);
                return ternary5_tile<R, C>(w, r, xa, m, ya, ldy);
            }
            if (first) return ternary_tile<R, C, true>(w, r, xa, m, ya, ldy);
            return ternary_tile<R, C>(w, r, xa, m, ya, ldy);
        };
        constexpr int kRows = decltype(rows_a_pass)::value == 1 ? kTernaryGemvRows : kTernaryRows;
        for_tiles<kRows, decltype(rows_a_pass)::value>(r_begin, r_end, xa.rows, tile, w.tiled);
    };
    if (x.rows == 1) return product(Int<1>{}, x, y);
    for_activation_blocks(x, y, ldy, kTernaryCols, [&](const QuantizedActivations& b, float* yb) {
        product(Int<kTernaryCols>{}, b, yb);
    });
}

// ---- dense GEMM (lm_head) -------------------------------------------------------------------

inline __m256 bf16x8_to_ps(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// n < 8 int8 values, zero-filled.
inline __m128i load_tail_i8(const int8_t* p, int n) {
    alignas(16) int8_t buf[16] = {};
    memcpy(buf, p, static_cast<size_t>(n));
    return _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
}

// Weight loaders: 8 weights of one format at element offset i as floats (load) or the first
// n < 8 of them, the rest zero (load_tail); at(i): the address of element i.
struct F32Weights {
    const float* w;
    const char* at(size_t i) const { return reinterpret_cast<const char*>(w + i); }
    __m256 load(size_t i) const { return _mm256_loadu_ps(w + i); }
    __m256 load_tail(size_t i, int n) const { return load_tail_ps(w + i, n); }
};
struct Bf16Weights {
    const uint16_t* w;
    const char* at(size_t i) const { return reinterpret_cast<const char*>(w + i); }
    __m256 load(size_t i) const {
        return bf16x8_to_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
    }
    __m256 load_tail(size_t i, int n) const { return bf16x8_to_ps(load_tail_u16(w + i, n)); }
};
struct F16Weights {
    const uint16_t* w;
    const char* at(size_t i) const { return reinterpret_cast<const char*>(w + i); }
    __m256 load(size_t i) const {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
    }
    __m256 load_tail(size_t i, int n) const { return _mm256_cvtph_ps(load_tail_u16(w + i, n)); }
};
struct I8Weights {
    const int8_t* w;
    const char* at(size_t i) const { return reinterpret_cast<const char*>(w + i); }
    __m256 load(size_t i) const {
        return _mm256_cvtepi32_ps(
            _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + i))));
    }
    __m256 load_tail(size_t i, int n) const {
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load_tail_i8(w + i, n)));
    }
};

// y = sum_k x * w for an RT x MT tile, times row_scale[r] when it is given. kPrefetch: fetch the
// weights of the following row tile (the hardware prefetcher leaves the tile waiting on them).
template <int RT, int MT, typename W, bool kPrefetch = false>
inline void dense_tile(const W& w, int k, int r, const float* x, int m, int ldx,
                       const float* row_scale, float* y, int ldy) {
    __m256 acc[RT * MT];
    for (int i = 0; i < RT * MT; ++i) acc[i] = _mm256_setzero_ps();
    const size_t row0 = static_cast<size_t>(r) * k;
    const float* xm = x + static_cast<size_t>(m) * ldx;
    auto step = [&](int kk, auto load_x, auto load_wv) {
        __m256 xv[MT];
        for (int j = 0; j < MT; ++j) xv[j] = load_x(xm + static_cast<size_t>(j) * ldx + kk);
        for (int i = 0; i < RT; ++i) {
            const __m256 wv = load_wv(row0 + static_cast<size_t>(i) * k + kk);
            for (int j = 0; j < MT; ++j)
                acc[i * MT + j] = _mm256_fmadd_ps(wv, xv[j], acc[i * MT + j]);
        }
        if constexpr (kPrefetch) {
            for (int i = 0; i < RT; ++i)
                _mm_prefetch(w.at(row0 + static_cast<size_t>(RT + i) * k + kk), _MM_HINT_T1);
        }
    };
    int kk = 0;
    for (; kk + 8 <= k; kk += 8) {
        step(
            kk, [](const float* p) { return _mm256_loadu_ps(p); },
            [&w](size_t i) { return w.load(i); });
    }
    if (kk < k) {
        const int n = k - kk;
        step(
            kk, [n](const float* p) { return load_tail_ps(p, n); },
            [&w, n](size_t i) { return w.load_tail(i, n); });
    }
    float sums[RT * MT];
    reduce_all<RT * MT>(acc, sums);
    for (int j = 0; j < MT; ++j) {
        float* yr = y + static_cast<size_t>(m + j) * ldy + r;
        for (int i = 0; i < RT; ++i)
            yr[i] = row_scale != nullptr ? sums[i * MT + j] * row_scale[r + i] : sums[i * MT + j];
    }
}

template <typename W>
void dense_gemm(const W& w, int k, int r_begin, int r_end, const float* x, int m, int ldx,
                const float* row_scale, float* y, int ldy) {
    // As in the AVX-512 file: the first activation tile of a row tile fetches the next one's.
    auto tile = [&](auto rt, auto mt, int r, int m0) {
        constexpr int R = decltype(rt)::value, C = decltype(mt)::value;
        if (m0 == 0 && r + 2 * R <= r_end)
            return dense_tile<R, C, W, true>(w, k, r, x, m0, ldx, row_scale, y, ldy);
        return dense_tile<R, C, W>(w, k, r, x, m0, ldx, row_scale, y, ldy);
    };
    for_tiles<4, 2>(r_begin, r_end, m, tile);
}

void dense_gemm_f32(const float* w, int k, int r_begin, int r_end, const float* x, int m, int ldx,
                    float* y, int ldy) {
    dense_gemm(F32Weights{w}, k, r_begin, r_end, x, m, ldx, nullptr, y, ldy);
}

void dense_gemm_bf16(const uint16_t* w, int k, int r_begin, int r_end, const float* x, int m,
                     int ldx, float* y, int ldy) {
    dense_gemm(Bf16Weights{w}, k, r_begin, r_end, x, m, ldx, nullptr, y, ldy);
}

void dense_gemm_f16(const uint16_t* w, int k, int r_begin, int r_end, const float* x, int m,
                    int ldx, float* y, int ldy) {
    dense_gemm(F16Weights{w}, k, r_begin, r_end, x, m, ldx, nullptr, y, ldy);
}

void dense_gemm_i8r(const int8_t* w, const float* row_scale, int k, int r_begin, int r_end,
                    const float* x, int m, int ldx, float* y, int ldy) {
    dense_gemm(I8Weights{w}, k, r_begin, r_end, x, m, ldx, row_scale, y, ldy);
}

// Q8_0: per 32-weight block, the dot product of x with the int8 values, then times the block's
// scale d into the accumulator (one multiply per block instead of one per weight).
constexpr int kQ8Block = 32;
constexpr size_t kQ8BlockBytes = 34;

template <int RT, int MT>
inline void q8_0_tile(const uint8_t* w, int k, int r, const float* x, int m, int ldx, float* y,
                      int ldy) {
    const size_t row_bytes = static_cast<size_t>(k) / kQ8Block * kQ8BlockBytes;
    const uint8_t* wr = w + static_cast<size_t>(r) * row_bytes;
    const float* xm = x + static_cast<size_t>(m) * ldx;
    __m256 acc[RT * MT];
    for (int i = 0; i < RT * MT; ++i) acc[i] = _mm256_setzero_ps();
    for (int b = 0; b < k / kQ8Block; ++b) {
        for (int i = 0; i < RT; ++i) {
            const uint8_t* block = wr + static_cast<size_t>(i) * row_bytes + b * kQ8BlockBytes;
            const __m256 d = _mm256_set1_ps(_cvtsh_ss(
                static_cast<unsigned short>(static_cast<uint16_t>(block[0] | (block[1] << 8)))));
            __m256 q[4];
            for (int part = 0; part < 4; ++part) {
                q[part] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                    _mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 + 8 * part))));
            }
            for (int j = 0; j < MT; ++j) {
                const float* xb = xm + static_cast<size_t>(j) * ldx + b * kQ8Block;
                __m256 t = _mm256_mul_ps(q[0], _mm256_loadu_ps(xb));
                t = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(xb + 8), t);
                t = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(xb + 16), t);
                t = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(xb + 24), t);
                acc[i * MT + j] = _mm256_fmadd_ps(t, d, acc[i * MT + j]);
            }
        }
    }
    float sums[RT * MT];
    reduce_all<RT * MT>(acc, sums);
    for (int j = 0; j < MT; ++j) {
        float* yr = y + static_cast<size_t>(m + j) * ldy + r;
        for (int i = 0; i < RT; ++i) yr[i] = sums[i * MT + j];
    }
}

void dense_gemm_q8_0(const uint8_t* w, int k, int r_begin, int r_end, const float* x, int m,
                     int ldx, float* y, int ldy) {
    auto tile = [&](auto rt, auto mt, int r, int m0) {
        q8_0_tile<decltype(rt)::value, decltype(mt)::value>(w, k, r, x, m0, ldx, y, ldy);
    };
    for_tiles<4, 2>(r_begin, r_end, m, tile);
}

// acc + per 32-bit lane the four products of unsigned bytes a and signed bytes b. Every caller's
// pairs of products stay within 16 bits, so AVX2's vpmaddubsw never saturates and AVX-VNNI's
// vpdpbusd, one instruction for three, gives the same sums.
inline __m256i add_u8s8_products(__m256i acc, __m256i a, __m256i b) {
#if BITNET_AVXVNNI
    return _mm256_dpbusd_avx_epi32(acc, a, b);
#else
    return _mm256_add_epi32(acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)));
#endif
}

// I8R on int8 activations: vpmaddubsw takes |w| (unsigned, 128 included) and x with w's sign
// (vpsignb), whose pair sums stay within 16 bits because |x| <= 127.
inline __m256i load32_i8(const int8_t* p, int n) {
    if (n >= 32) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    alignas(32) int8_t buf[32] = {};
    memcpy(buf, p, static_cast<size_t>(n));
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(buf));
}

// kPrefetch: fetch the weights of the following row tile (see dense_tile).
template <int RT, int MT, bool kPrefetch = false>
inline void i8r_tile(const int8_t* w, const float* row_scale, int k, int r, const int8_t* xq,
                     const float* x_scale, int m, int ldx, float* y, int ldy) {
    const int8_t* wr = w + static_cast<size_t>(r) * k;
    const int8_t* xm = xq + static_cast<size_t>(m) * ldx;
    __m256i acc[RT * MT];
    for (int i = 0; i < RT * MT; ++i) acc[i] = _mm256_setzero_si256();
    for (int kk = 0; kk < k; kk += 32) {
        const int n = k - kk;
        __m256i xv[MT];
        for (int j = 0; j < MT; ++j) xv[j] = load32_i8(xm + static_cast<size_t>(j) * ldx + kk, n);
        for (int i = 0; i < RT; ++i) {
            const __m256i wv = load32_i8(wr + static_cast<size_t>(i) * k + kk, n);
            const __m256i wabs = _mm256_abs_epi8(wv);
            for (int j = 0; j < MT; ++j) {
                acc[i * MT + j] =
                    add_u8s8_products(acc[i * MT + j], wabs, _mm256_sign_epi8(xv[j], wv));
            }
        }
        if constexpr (kPrefetch) {
            for (int i = 0; i < RT; ++i) {
                _mm_prefetch(
                    reinterpret_cast<const char*>(wr + static_cast<size_t>(RT + i) * k + kk),
                    _MM_HINT_T1);
            }
        }
    }
    int32_t dots[RT * MT];
    reduce_all<RT * MT>(acc, dots);
    for (int j = 0; j < MT; ++j) {
        float* yr = y + static_cast<size_t>(m + j) * ldy + r;
        for (int i = 0; i < RT; ++i)
            yr[i] = (static_cast<float>(dots[i * MT + j]) * row_scale[r + i]) * x_scale[m + j];
    }
}

void int8_gemm_i8r(const int8_t* w, const float* row_scale, int k, int r_begin, int r_end,
                   const int8_t* xq, const float* x_scale, int m, int ldx, float* y, int ldy) {
    auto tile = [&](auto rt, auto mt, int r, int m0) {
        constexpr int R = decltype(rt)::value, C = decltype(mt)::value;
        if (m0 == 0 && r + 2 * R <= r_end)
            return i8r_tile<R, C, true>(w, row_scale, k, r, xq, x_scale, m0, ldx, y, ldy);
        return i8r_tile<R, C>(w, row_scale, k, r, xq, x_scale, m0, ldx, y, ldy);
    };
    if (m == 1) {
        for_tiles<4, 1>(r_begin, r_end, 1, tile);
    } else {
        for_tiles<2, 4>(r_begin, r_end, m, tile);
    }
}

// ---- element-wise kernels -------------------------------------------------------------------

// exp(x) for x <= 0 (softmax after the max shift, sigmoid of -|g|), within about 1 ulp.
// x = n ln2 + r with |r| <= ln2 / 2; exp(r) by its degree-7 Taylor polynomial (truncation
// error below 1e-8 relative). 2^n is applied as 2^(n + 64) * 2^-64 so that results in the
// subnormal range are rounded once, like expf. Inputs below -110 (and -inf) give 0.
inline __m256 exp_nonpos(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-110.f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693147182464599609375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-1.904654299957768e-9f), r);
    __m256 p = _mm256_set1_ps(1.f / 5040.f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 720.f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120.f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24.f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6.f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127 + 64)), 23);
    return _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), _mm256_set1_ps(0x1p-64f));
}

inline int min_int(int a, int b) {
    return a < b ? a : b;
}

// Applies f to 8-float chunks of [0, n): full loads and stores, then one masked tail chunk.
template <typename F>
inline void for_chunks(int n, F f) {
    int i = 0;
    for (; i + 8 <= n; i += 8) f(i, 8);
    if (i < n) f(i, n - i);
}

inline void store8(float* p, int len, __m256 v) {
    if (len == 8) {
        _mm256_storeu_ps(p, v);
    } else {
        store_tail_ps(p, len, v);
    }
}

// 1 / sqrt(mean(x^2) + eps), the factor of rms_norm.
float rms_inverse(const float* x, int n, float eps) {
    __m256 ss0 = _mm256_setzero_ps();
    __m256 ss1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 a = _mm256_loadu_ps(x + i);
        const __m256 b = _mm256_loadu_ps(x + i + 8);
        ss0 = _mm256_fmadd_ps(a, a, ss0);
        ss1 = _mm256_fmadd_ps(b, b, ss1);
    }
    for (; i < n; i += 8) {
        const __m256 a = load8(x + i, n - i < 8 ? n - i : 8);
        ss0 = _mm256_fmadd_ps(a, a, ss0);
    }
    const float ss = hsum_ps(_mm256_add_ps(ss0, ss1));
    return 1.f / sqrtf(ss / static_cast<float>(n) + eps);
}

// rms_norm's len <= 8 outputs at j.
inline __m256 normed(const float* x, const float* w, __m256 inv, int j, int len) {
    return _mm256_mul_ps(load8(w + j, len), _mm256_mul_ps(load8(x + j, len), inv));
}

void rms_norm(const float* x, const float* w, int n, float eps, float* out) {
    const __m256 inv = _mm256_set1_ps(rms_inverse(x, n, eps));
    for_chunks(n, [&](int j, int len) { store8(out + j, len, normed(x, w, inv, j, len)); });
}

float rms_norm_quantize_i8(const float* x, const float* w, int n, float eps, int n_pad, int8_t* q,
                           int32_t* sum) {
    const __m256 inv = _mm256_set1_ps(rms_inverse(x, n, eps));
    return quantize_values(n, n_pad, q, sum,
                           [&](int j, int len) { return normed(x, w, inv, j, len); });
}

void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; ++h) {
        float* v = x + static_cast<size_t>(h) * head_dim;
        for_chunks(half, [&](int i, int len) {
            const __m256 x1 = load8(v + i, len);
            const __m256 x2 = load8(v + half + i, len);
            const __m256 c = load8(cos + i, len);
            const __m256 s = load8(sin + i, len);
            store8(v + i, len, _mm256_fmsub_ps(x1, c, _mm256_mul_ps(x2, s)));
            store8(v + half + i, len, _mm256_fmadd_ps(x2, c, _mm256_mul_ps(x1, s)));
        });
    }
}

void softmax(float* x, int n) {
    const __m256 neg_inf = _mm256_set1_ps(-INFINITY);
    __m256 vmax = neg_inf;
    for_chunks(n, [&](int i, int len) {
        const __m256 v = len == 8 ? _mm256_loadu_ps(x + i)
                                  : _mm256_blendv_ps(neg_inf, load_tail_ps(x + i, len),
                                                     _mm256_castsi256_ps(mask8(len)));
        vmax = _mm256_max_ps(vmax, v);
    });
    const __m256 mx = _mm256_set1_ps(hmax_ps(vmax));
    __m256 vsum = _mm256_setzero_ps();
    for_chunks(n, [&](int i, int len) {
        __m256 e = exp_nonpos(_mm256_sub_ps(load8(x + i, len), mx));
        if (len < 8) e = _mm256_and_ps(e, _mm256_castsi256_ps(mask8(len)));
        vsum = _mm256_add_ps(vsum, e);
        store8(x + i, len, e);
    });
    const __m256 inv = _mm256_set1_ps(1.f / hsum_ps(vsum));
    for_chunks(n,
               [&](int i, int len) { store8(x + i, len, _mm256_mul_ps(load8(x + i, len), inv)); });
}

void relu2_mul(const float* g, const float* u, float* out, int n) {
    for_chunks(n, [&](int i, int len) {
        const __m256 r = _mm256_max_ps(load8(g + i, len), _mm256_setzero_ps());
        store8(out + i, len, _mm256_mul_ps(_mm256_mul_ps(r, r), load8(u + i, len)));
    });
}

// silu(g) = g * sigmoid(g), with sigmoid from e = exp(-|g|) <= 1 so nothing overflows:
// sigmoid(g) = 1 / (1 + e) for g >= 0 and e / (1 + e) otherwise.
void silu_mul(const float* g, const float* u, float* out, int n) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 one = _mm256_set1_ps(1.f);
    for_chunks(n, [&](int i, int len) {
        const __m256 gv = load8(g + i, len);
        const __m256 e =
            exp_nonpos(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_and_ps(gv, abs_mask)));
        const __m256 neg = _mm256_cmp_ps(gv, _mm256_setzero_ps(), _CMP_LT_OQ);
        const __m256 sig = _mm256_div_ps(_mm256_blendv_ps(one, e, neg), _mm256_add_ps(one, e));
        store8(out + i, len, _mm256_mul_ps(_mm256_mul_ps(gv, sig), load8(u + i, len)));
    });
}

// ---- attention ------------------------------------------------------------------------------

template <KvType T>
inline __m256 load_kv(const void* base, size_t off, int len) {
    if constexpr (T == KvType::F32) {
        return load8(static_cast<const float*>(base) + off, len);
    } else {
        static_assert(T != KvType::I8, "I8 keys and values have passes of their own");
        const uint16_t* p = static_cast<const uint16_t*>(base) + off;
        const __m128i h =
            len == 8 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)) : load_tail_u16(p, len);
        if constexpr (T == KvType::F16) {
            return _mm256_cvtph_ps(h);
        } else {
            return bf16x8_to_ps(h);
        }
    }
}

// bf16 keys and values load 16 dimensions (32 bytes) at a time, widened as the even dimensions
// (a shift) and the odd ones (an AND), as the AVX-512 level does (see there): two simple
// operations where widening each 8 takes a zero-extending shuffle and a shift.
inline __m256i load_bf16x16(const void* base, size_t off, int len) {
    const uint16_t* p = static_cast<const uint16_t*>(base) + off;
    if (len >= 16) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    alignas(32) uint16_t buf[16] = {};
    memcpy(buf, p, static_cast<size_t>(len) * sizeof(uint16_t));
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(buf));
}
inline __m256 even_dims(__m256i line) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(line, 16));
}
inline __m256 odd_dims(__m256i line) {
    return _mm256_castsi256_ps(_mm256_and_si256(line, _mm256_set1_epi32(-65536)));
}
// {e0, o0, e1, o1, ...}: the first 8 (lo) and last 8 (hi) dimensions of a line from its halves.
inline void interleave_dims(__m256 even, __m256 odd, __m256* lo, __m256* hi) {
    const __m256 a = _mm256_unpacklo_ps(even, odd), b = _mm256_unpackhi_ps(even, odd);
    *lo = _mm256_permute2f128_ps(a, b, 0x20);
    *hi = _mm256_permute2f128_ps(a, b, 0x31);
}

// out[d0 .. d0 + 8 S) = sum_p scratch[p] * v_p, S slices of 8 (the last may be shorter). Each
// slice keeps two accumulators (even and odd keys, the odd last key into the even one), which
// halve its FMA dependency chain; its sum is the same whatever S is.
template <KvType T, int S>
inline void value_slices(const AttentionHeadArgs& a, int d0) {
    int len[S];
    for (int s = 0; s < S; ++s) len[s] = min_int(a.head_dim - d0 - 8 * s, 8);
    __m256 acc0[S], acc1[S];
    for (int s = 0; s < S; ++s) {
        acc0[s] = _mm256_setzero_ps();
        acc1[s] = _mm256_setzero_ps();
    }
    const size_t stride = a.row_stride;
    // Adds weight w times the S slices of the row at r into acc: bf16 slices 2j and 2j + 1 come
    // from one line as even and odd dimensions (an odd last slice alone).
    auto add_row = [&](__m256 w, size_t r, __m256* acc) {
        if constexpr (T == KvType::BF16) {
            for (int j = 0; j < S / 2; ++j) {
                const __m256i line = load_bf16x16(a.v, r + 16 * j, len[2 * j] + len[2 * j + 1]);
                acc[2 * j] = _mm256_fmadd_ps(w, even_dims(line), acc[2 * j]);
                acc[2 * j + 1] = _mm256_fmadd_ps(w, odd_dims(line), acc[2 * j + 1]);
            }
            if constexpr (S % 2 != 0)
                acc[S - 1] =
                    _mm256_fmadd_ps(w, load_kv<T>(a.v, r + 8 * (S - 1), len[S - 1]), acc[S - 1]);
        } else {
            for (int s = 0; s < S; ++s)
                acc[s] = _mm256_fmadd_ps(w, load_kv<T>(a.v, r + 8 * s, len[s]), acc[s]);
        }
    };
    int k = 0;
    for (; k + 2 <= a.n_keys; k += 2) {
        const size_t r0 = static_cast<size_t>(k) * stride + d0;
        add_row(_mm256_set1_ps(a.scratch[k]), r0, acc0);
        add_row(_mm256_set1_ps(a.scratch[k + 1]), r0 + stride, acc1);
    }
    if (k < a.n_keys)
        add_row(_mm256_set1_ps(a.scratch[k]), static_cast<size_t>(k) * stride + d0, acc0);
    __m256 sum[S];
    for (int s = 0; s < S; ++s) sum[s] = _mm256_add_ps(acc0[s], acc1[s]);
    if constexpr (T == KvType::BF16) {
        for (int j = 0; j < S / 2; ++j)
            interleave_dims(sum[2 * j], sum[2 * j + 1], &sum[2 * j], &sum[2 * j + 1]);
    }
    for (int s = 0; s < S; ++s) store8(a.out + d0 + 8 * s, len[s], sum[s]);
}

// The query in bf16_scores' order: per line of 16 dimensions its 8 even ones, then its 8 odd
// ones; zero past head_dim, to a multiple of 16.
inline void split_query(const float* q, int head_dim, float* out) {
    for (int d = 0; d < head_dim; d += 16) {
        for (int i = 0; i < 8; ++i) {
            out[d + i] = d + 2 * i < head_dim ? q[d + 2 * i] : 0.f;
            out[d + 8 + i] = d + 2 * i + 1 < head_dim ? q[d + 2 * i + 1] : 0.f;
        }
    }
}

// Scores of bf16 keys: each line of 16 dimensions against the query's even and odd
// dimensions (split once, by split_query), four keys at a time.
inline void bf16_scores(const AttentionHeadArgs& a) {
    const int hd = a.head_dim;
    const size_t dims = static_cast<size_t>(hd + 15) / 16 * 16;
    alignas(32) float on_stack[512];
    std::vector<float> on_heap(dims > 512 ? dims : 0);
    float* qs = on_heap.empty() ? on_stack : on_heap.data();
    split_query(a.q, hd, qs);
    auto key_line = [&](int p, int d, __m256 qe, __m256 qo, __m256 acc) {
        const __m256i line =
            load_bf16x16(a.k, static_cast<size_t>(p) * a.row_stride + d, min_int(hd - d, 16));
        acc = _mm256_fmadd_ps(qe, even_dims(line), acc);
        return _mm256_fmadd_ps(qo, odd_dims(line), acc);
    };
    int p = 0;
    for (; p + 4 <= a.n_keys; p += 4) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                         _mm256_setzero_ps()};
        for (int d = 0; d < hd; d += 16) {
            const __m256 qe = _mm256_loadu_ps(qs + d), qo = _mm256_loadu_ps(qs + d + 8);
            for (int i = 0; i < 4; ++i) acc[i] = key_line(p + i, d, qe, qo, acc[i]);
        }
        _mm_storeu_ps(a.scratch + p,
                      _mm_mul_ps(reduce4_ps(acc[0], acc[1], acc[2], acc[3]), _mm_set1_ps(a.scale)));
    }
    for (; p < a.n_keys; ++p) {
        __m256 acc = _mm256_setzero_ps();
        for (int d = 0; d < hd; d += 16)
            acc = key_line(p, d, _mm256_loadu_ps(qs + d), _mm256_loadu_ps(qs + d + 8), acc);
        a.scratch[p] = hsum_ps(acc) * a.scale;
    }
}

// Scores of f32 or f16 keys, four keys at a time so one reduction serves four dot products.
template <KvType T>
void scores(const AttentionHeadArgs& a) {
    const int hd = a.head_dim;
    int p = 0;
    for (; p + 4 <= a.n_keys; p += 4) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                         _mm256_setzero_ps()};
        for_chunks(hd, [&](int d, int len) {
            const __m256 qv = load8(a.q + d, len);
            for (int i = 0; i < 4; ++i) {
                const __m256 kv =
                    load_kv<T>(a.k, static_cast<size_t>(p + i) * a.row_stride + d, len);
                acc[i] = _mm256_fmadd_ps(qv, kv, acc[i]);
            }
        });
        _mm_storeu_ps(a.scratch + p,
                      _mm_mul_ps(reduce4_ps(acc[0], acc[1], acc[2], acc[3]), _mm_set1_ps(a.scale)));
    }
    for (; p < a.n_keys; ++p) {
        __m256 acc = _mm256_setzero_ps();
        for_chunks(hd, [&](int d, int len) {
            const __m256 kv = load_kv<T>(a.k, static_cast<size_t>(p) * a.row_stride + d, len);
            acc = _mm256_fmadd_ps(load8(a.q + d, len), kv, acc);
        });
        a.scratch[p] = hsum_ps(acc) * a.scale;
    }
}

// I8 scores (see AttentionHeadArgs) without the keys' scales: float(dot(q8, k[p])) * scale / s_q,
// a tile of sixteen keys at a time (int8_kv_layout.h): a quad of q8 broadcast times half a line
// adds four dimensions' products into each of eight keys' lanes. Each product is |q8| times k8
// with q8's sign, summed in int16 pairs (at most 2 x 127 x 128) and then int32 lanes: exact, so
// the bits are the scalar level's.
inline void int8_scores(const AttentionHeadArgs& a) {
    const int hd = a.head_dim, quads = int8_key_dims(hd) / 4;
    alignas(32) int8_t on_stack[512];
    std::vector<int8_t> on_heap(hd > 512 ? 4 * quads : 0);
    int8_t* q8 = on_heap.empty() ? on_stack : on_heap.data();
    int32_t sum = 0;
    const float qd = a.scale / quantize_row_i8(a.q, hd, 4 * quads, q8, &sum);
    const size_t tile_bytes = int8_key_tile_bytes(hd);
    auto add_products = [&](__m256i acc, const int8_t* keys, __m256i qv) {
        const __m256i kv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys));
        return add_u8s8_products(acc, _mm256_abs_epi8(qv), _mm256_sign_epi8(kv, qv));
    };
    for (int p = 0; p < a.n_keys; p += kInt8KeyTile) {
        const int8_t* tile =
            static_cast<const int8_t*>(a.k) + static_cast<size_t>(p / kInt8KeyTile) * tile_bytes;
        // Keys 0-7 and 8-15 of the tile, even and odd quads in chains of their own.
        __m256i acc[2][2] = {{_mm256_setzero_si256(), _mm256_setzero_si256()},
                             {_mm256_setzero_si256(), _mm256_setzero_si256()}};
        for (int j = 0; j < quads; ++j) {
            int32_t four;
            memcpy(&four, q8 + 4 * j, sizeof four);
            const __m256i qv = _mm256_set1_epi32(four);
            acc[j % 2][0] = add_products(acc[j % 2][0], tile + 64 * j, qv);
            acc[j % 2][1] = add_products(acc[j % 2][1], tile + 64 * j + 32, qv);
        }
        for (int h = 0; h < 2; ++h) {
            const int len = min_int(a.n_keys - p - 8 * h, 8);
            if (len <= 0) break;
            const __m256i dots = _mm256_add_epi32(acc[0][h], acc[1][h]);
            store8(a.scratch + p + 8 * h, len,
                   _mm256_mul_ps(_mm256_cvtepi32_ps(dots), _mm256_set1_ps(qd)));
        }
    }
}

// s[p] *= f[p] for p < n (I8 caches' scales; one rounding each, as every level does it).
inline void scale_each(float* s, const float* f, int n) {
    for_chunks(n, [&](int i, int len) {
        store8(s + i, len, _mm256_mul_ps(load8(s + i, len), load8(f + i, len)));
    });
}

// ---- I8 values: integer sums (see AttentionHeadArgs) ----

// acc + for each 32-bit lane, four unsigned 7-bit weights times four signed values (int16 pairs
// of at most 2 x 127 x 128, so no saturation).
inline __m256i add_weighted(__m256i acc, __m256i weights, __m256i values) {
    return add_u8s8_products(acc, weights, values);
}

// One chunk's weights w[0, n) as 14-bit integers split into 7-bit halves, zero up to the next
// multiple of 8; returns the value of one unit of W.
inline float int8_weights(const float* w, int n, uint8_t* hi, uint8_t* lo) {
    __m256 largest = _mm256_setzero_ps();
    for_chunks(n, [&](int j, int len) { largest = _mm256_max_ps(largest, load8(w + j, len)); });
    const float c = hmax_ps(largest);
    const __m256 m = _mm256_set1_ps(kInt8WeightLevels / c);
    const __m256 top = _mm256_set1_ps(kInt8WeightLevels);
    for_chunks(n, [&](int j, int len) {
        const __m256 x = _mm256_mul_ps(load8(w + j, len), m);
        const __m256i q =
            _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(x, _mm256_setzero_ps()), top));
        // Per 128-bit lane: four high halves, then four low ones, as bytes.
        const __m256i halves = _mm256_packs_epi32(_mm256_srli_epi32(q, 7),
                                                  _mm256_and_si256(q, _mm256_set1_epi32(127)));
        const __m256i bytes = _mm256_packus_epi16(halves, halves);
        const int32_t words[4] = {_mm256_extract_epi32(bytes, 0), _mm256_extract_epi32(bytes, 4),
                                  _mm256_extract_epi32(bytes, 1), _mm256_extract_epi32(bytes, 5)};
        std::memcpy(hi + j, words, 8);
        std::memcpy(lo + j, words + 2, 8);
    });
    return c / kInt8WeightLevels;
}

// Four weights from w on, one in each byte of every lane.
inline __m256i four_weights(const uint8_t* w) {
    int32_t four;
    std::memcpy(&four, w, sizeof four);
    return _mm256_set1_epi32(four);
}

// out[d0, d0 + 32) (as far as head_dim) += the sums of keys [c0, c0 + n) of one chunk, whose
// weights are ready (the first chunk starts it). A group of values (int8_kv_layout.h) holds one
// dimension of four keys in each 32-bit lane: eight dimensions a 32-byte slice. Weights past n
// are zero (int8_weights), so a group's keys past the last stored one add nothing.
inline void int8_value_block(const AttentionHeadArgs& a, const uint8_t* hi, const uint8_t* lo,
                             float unit, int c0, int n, int d0) {
    const size_t group_bytes = int8_value_group_bytes(a.head_dim);
    const int8_t* const v = static_cast<const int8_t*>(a.v) +
                            static_cast<size_t>(c0 / kInt8ValueGroup) * group_bytes + 4 * d0;
    const int len = min_int(a.head_dim - d0, 32);
    const int slices = (len + 7) / 8;
    // The last slice's lanes within the head (vpmaskmovd reads none of the others).
    const __m256i last_lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(len - 8 * (slices - 1)),
                                                  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256i high[4], low[4];
    for (int s = 0; s < 4; ++s) high[s] = low[s] = _mm256_setzero_si256();
    for (int p = 0; p < n; p += kInt8ValueGroup) {
        const int8_t* g = v + static_cast<size_t>(p / kInt8ValueGroup) * group_bytes;
        const __m256i h = four_weights(hi + p), l = four_weights(lo + p);
        for (int s = 0; s < 4; ++s) {
            if (s >= slices) break;
            const int* slice = reinterpret_cast<const int*>(g + 32 * s);
            const __m256i values = s + 1 < slices
                                       ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(slice))
                                       : _mm256_maskload_epi32(slice, last_lanes);
            high[s] = add_weighted(high[s], h, values);
            low[s] = add_weighted(low[s], l, values);
        }
    }
    const __m256 u = _mm256_set1_ps(unit);
    for (int s = 0; s < slices; ++s) {
        const __m256 sum = _mm256_fmadd_ps(_mm256_cvtepi32_ps(high[s]), _mm256_set1_ps(128.f),
                                           _mm256_cvtepi32_ps(low[s]));
        float* o = a.out + d0 + 8 * s;
        const int dims = min_int(len - 8 * s, 8);
        const __m256 before = c0 == 0 ? _mm256_setzero_ps() : load8(o, dims);
        store8(o, dims, _mm256_fmadd_ps(sum, u, before));
    }
}

// a.out = sum_p w[p] * v_p in the integer sums of AttentionHeadArgs.
inline void int8_values(const AttentionHeadArgs& a, const float* w) {
    alignas(32) uint8_t hi[kInt8ValueChunk], lo[kInt8ValueChunk];
    for (int c0 = 0; c0 < a.n_keys; c0 += kInt8ValueChunk) {
        const int n = min_int(kInt8ValueChunk, a.n_keys - c0);
        const float unit = int8_weights(w + c0, n, hi, lo);
        for (int d0 = 0; d0 < a.head_dim; d0 += 32) int8_value_block(a, hi, lo, unit, c0, n, d0);
    }
}

template <KvType T>
void attention_impl(const AttentionHeadArgs& a) {
    const int hd = a.head_dim;
    if constexpr (T == KvType::BF16) {
        bf16_scores(a);
    } else if constexpr (T == KvType::I8) {
        int8_scores(a);
    } else {
        scores<T>(a);
    }
    if constexpr (T == KvType::I8) scale_each(a.scratch, a.k_scale, a.n_keys);
    softmax(a.scratch, a.n_keys);
    if constexpr (T == KvType::I8) {
        scale_each(a.scratch, a.v_scale, a.n_keys);
        int8_values(a, a.scratch);
    } else {
        // Weighted sum of v, up to four 8-wide slices of head_dim at a time held in registers
        // across all keys, so each value row is read once per 32 dimensions rather than per 8.
        for (int d0 = 0; d0 < hd; d0 += 32) {
            switch ((min_int(hd - d0, 32) + 7) / 8) {
                case 1:
                    value_slices<T, 1>(a, d0);
                    break;
                case 2:
                    value_slices<T, 2>(a, d0);
                    break;
                case 3:
                    value_slices<T, 3>(a, d0);
                    break;
                default:
                    value_slices<T, 4>(a, d0);
                    break;
            }
        }
    }
}

void attention_query(const AttentionHeadArgs& a) {
    switch (a.kv_type) {
        case KvType::F32:
            return attention_impl<KvType::F32>(a);
        case KvType::F16:
            return attention_impl<KvType::F16>(a);
        case KvType::BF16:
            return attention_impl<KvType::BF16>(a);
        case KvType::I8:
            return attention_impl<KvType::I8>(a);
    }
}

void attention_head(const AttentionHeadArgs& a) {
    attention_each_query(a, attention_query);
}

// ---- KV cache rows ---------------------------------------------------------------------------

// f32_to_bf16 of 8 floats (see the AVX-512 level), as 32-bit lanes.
inline __m256i to_bf16x8(__m256 x) {
    const __m256i bits = _mm256_castps_si256(x);
    const __m256i high = _mm256_srli_epi32(bits, 16);
    const __m256i bias =
        _mm256_add_epi32(_mm256_set1_epi32(0x7fff), _mm256_and_si256(high, _mm256_set1_epi32(1)));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(bits, bias), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(r, _mm256_or_si256(high, _mm256_set1_epi32(0x40)), nan);
}

// f32_to_f16 of 8 floats: vcvtps2ph rounds to nearest even as it does; a NaN becomes the quiet
// NaN 0x7e00 of its sign.
inline __m128i to_f16x8(__m256 x) {
    const __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i nan32 = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    const __m128i nan16 =
        _mm_packs_epi32(_mm256_castsi256_si128(nan32), _mm256_extracti128_si256(nan32, 1));
    const __m128i nan_h = _mm_or_si128(_mm_and_si128(h, _mm_set1_epi16(static_cast<short>(0x8000))),
                                       _mm_set1_epi16(0x7e00));
    return _mm_blendv_epi8(h, nan_h, nan16);
}

void store_kv_row(const float* x, int n, KvType type, void* out, float* scale) {
    if (type == KvType::F32) {
        memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
        return;
    }
    if (type == KvType::I8) {
        int32_t sum = 0;
        *scale = 1.f / quantize_row_i8(x, n, n, static_cast<int8_t*>(out), &sum);
        return;
    }
    uint16_t* o = static_cast<uint16_t*>(out);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        __m128i h;
        if (type == KvType::F16) {
            h = to_f16x8(v);
        } else {
            // Lanes hold values below 2^16, so the unsigned saturating pack is exact; it packs
            // within 128-bit halves, and the permute joins the halves' low quadwords.
            const __m256i r = to_bf16x8(v);
            h = _mm256_castsi256_si128(
                _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), _MM_SHUFFLE(3, 1, 2, 0)));
        }
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o + i), h);
    }
    for (; i < n; ++i) o[i] = type == KvType::F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
}

void store_int8_kv(const float* x, int head_dim, int pos, bool key, int8_t* plane, float* scale) {
    store_int8_row(quantize_row_i8, x, head_dim, pos, key, plane, scale);
}

KernelTable level_table(Isa isa, const char* name) {
    return KernelTable{
        .isa = isa,
        .name = name,
        .quantize_row_i8 = quantize_row_i8,
        .ternary_gemm = ternary_gemm,
        .dense_gemm_f32 = dense_gemm_f32,
        .dense_gemm_bf16 = dense_gemm_bf16,
        .dense_gemm_f16 = dense_gemm_f16,
        .dense_gemm_q8_0 = dense_gemm_q8_0,
        .dense_gemm_i8r = dense_gemm_i8r,
        .int8_gemm_i8r = int8_gemm_i8r,
        .dense_groups_gemm = nullptr,
        .rms_norm = rms_norm,
        .rms_norm_quantize_i8 = rms_norm_quantize_i8,
        .rope = rope,
        .softmax = softmax,
        .relu2_mul = relu2_mul,
        .silu_mul = silu_mul,
        .attention_head = attention_head,
        .store_kv_row = store_kv_row,
        .store_int8_kv = store_int8_kv,
    };
}

}  // namespace

#if BITNET_AVXVNNI
const KernelTable* avxvnni_kernels() {
    static const KernelTable table = level_table(Isa::AVXVNNI, "avxvnni");
    return &table;
}
#else
const KernelTable* avx2_kernels() {
    static const KernelTable table = level_table(Isa::AVX2, "avx2");
    return &table;
}
#endif

}  // namespace bitnet::cpu
