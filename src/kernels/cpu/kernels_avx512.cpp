// AVX-512 kernels (F/BW/DQ/VL), compiled twice: BITNET_VNNI=0 forms u8 x s8 products with
// vpmaddubsw + vpmaddwd, BITNET_VNNI=1 with vpdpbusd. Everything but the table getter lives in
// an anonymous namespace, so the two object files share no symbol.
//
// Only intrinsics, C library calls and kernels.h's always-inlined helpers are used here, never
// std:: or other project inline functions: an out-of-line copy of such a function built with
// -mavx512f is a weak symbol the linker may pick for callers in objects meant to run on CPUs
// without AVX-512.
// GCC 12's _mm512_undefined_* self-initialise a variable, which -Wuninitialized reports at
// every inlined use (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "kernels/cpu/int8_kv_layout.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/ternary_panels_avx512.h"

#ifndef BITNET_VNNI
#error "BITNET_VNNI must be 0 or 1"
#endif

namespace bitnet::cpu {
namespace {

template <int N>
struct Int {
    static constexpr int value = N;
};

// Lanes [0, n) of a 16-lane mask; n may exceed 16 or be negative.
inline __mmask16 mask16(int n) {
    if (n <= 0) return 0;
    return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
}

// Lanes [0, n) of a 64-lane mask; n may exceed 64 or be negative.
inline __mmask64 mask64(int n) {
    if (n <= 0) return 0;
    return n >= 64 ? ~static_cast<__mmask64>(0) : (static_cast<__mmask64>(1) << n) - 1;
}

inline int min_int(int a, int b) {
    return a < b ? a : b;
}

// Per 128-bit block k, the block's four lanes of a, b, c and d summed: {a_k, b_k, c_k, d_k}.
inline __m512i block_sums4_epi32(__m512i a, __m512i b, __m512i c, __m512i d) {
    const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
}

// {B0 + B2, B1 + B3} of block sums.
inline __m256i fold_blocks_epi32(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

// Four horizontal sums at once: {sum(a), sum(b), sum(c), sum(d)}. Cheaper than four
// separate reductions, which would cost a fifth of a short GEMV's time.
inline __m128i reduce4_epi32(__m512i a, __m512i b, __m512i c, __m512i d) {
    const __m256i h = fold_blocks_epi32(block_sums4_epi32(a, b, c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// The first two steps of every float reduction below: per 128-bit block B_k, the block's four
// lanes of a, b, c and d summed, {a_k, b_k, c_k, d_k}. Each vector x is then summed in one order
// whatever is reduced beside it, ((x0 + x2) + (x1 + x3)) within a block and (B0 + B2) + (B1 + B3)
// across, so a key's attention score has the same bits in a tile of 4, 8 or 16 keys. (A lone
// key's _mm512_reduce_add_ps adds in another order: keys are split into groups of four and the
// n mod 4 last ones, the same for every tile size, so that never matters.)
inline __m512 block_sums4_ps(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    const __m512d abd = _mm512_castps_pd(ab);
    const __m512d cdd = _mm512_castps_pd(cd);
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(abd, cdd)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(abd, cdd)));
}

// {B0 + B2, B1 + B3} of block sums.
inline __m256 fold_blocks_ps(__m512 v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

inline __m128 reduce4_ps(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m256 h = fold_blocks_ps(block_sums4_ps(a, b, c, d));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// Horizontal sums of n vectors into out[0..n), four at a time.
template <int N>
inline void reduce_all(const __m512i* v, int32_t* out) {
    int i = 0;
#pragma GCC unroll 64
    for (; i + 4 <= N; i += 4) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                         reduce4_epi32(v[i], v[i + 1], v[i + 2], v[i + 3]));
    }
#pragma GCC unroll 64
    for (; i < N; ++i) out[i] = _mm512_reduce_add_epi32(v[i]);
}

template <int N>
inline void reduce_all(const __m512* v, float* out) {
    int i = 0;
#pragma GCC unroll 64
    for (; i + 4 <= N; i += 4)
        _mm_storeu_ps(out + i, reduce4_ps(v[i], v[i + 1], v[i + 2], v[i + 3]));
#pragma GCC unroll 64
    for (; i < N; ++i) out[i] = _mm512_reduce_add_ps(v[i]);
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

// quantize_row_i8 of the n values that values(i, m) gives 16 at a time (lanes past mask m 0).
template <typename Values>
__attribute__((always_inline)) inline float quantize_values(int n, int n_pad, int8_t* q,
                                                            int32_t* sum, Values values) {
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    __m512 vmax = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        vmax = _mm512_max_ps(vmax, _mm512_and_ps(values(i, mask16(n - i)), abs_mask));
    }
    const float amax = _mm512_reduce_max_ps(vmax);
    const float scale = 127.f / (amax < 1e-5f ? 1e-5f : amax);

    // vcvtps2dq rounds half to even under the default MXCSR, as nearbyint does.
    const __m512 vs = _mm512_set1_ps(scale);
    const __m512i lo = _mm512_set1_epi32(-128);
    const __m512i hi = _mm512_set1_epi32(127);
    __m512i vsum = _mm512_setzero_si512();
    auto quantize16 = [&](int i, __mmask16 m) {
        const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(values(i, m), vs));
        return _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
    };
    // 64 values go out in one store: the packs leave 128-bit block b holding values 4b..4b+3
    // of each of the four vectors, and the permute puts them in order. (A vpmovdb store per 16
    // values took a quarter of the kernel's time.)
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m512i a = quantize16(i, 0xffff), b = quantize16(i + 16, 0xffff);
        const __m512i c = quantize16(i + 32, 0xffff), d = quantize16(i + 48, 0xffff);
        vsum = _mm512_add_epi32(vsum,
                                _mm512_add_epi32(_mm512_add_epi32(a, b), _mm512_add_epi32(c, d)));
        const __m512i bytes =
            _mm512_packs_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d));
        _mm512_storeu_si512(q + i, _mm512_permutexvar_epi32(order, bytes));
    }
    if (i < n) {
        // The last n - i < 64 values the same way, lanes past n zero; they fill q up to n_pad
        // (or 64 past i) where memset and a store of each 16 took longer than the values.
        const __m512i a = quantize16(i, mask16(n - i)), b = quantize16(i + 16, mask16(n - i - 16));
        const __m512i c = quantize16(i + 32, mask16(n - i - 32));
        const __m512i d = quantize16(i + 48, mask16(n - i - 48));
        vsum = _mm512_add_epi32(vsum,  // masked-off lanes are zero
                                _mm512_add_epi32(_mm512_add_epi32(a, b), _mm512_add_epi32(c, d)));
        const __m512i bytes =
            _mm512_packs_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d));
        const __m512i ordered = _mm512_permutexvar_epi32(order, bytes);
        // Whole 64 bytes where q has room: loads of a few bytes right after (the attention's
        // query quads, a cache row's quads) are forwarded from a plain store, not a masked one.
        if (i + 64 <= n_pad) {
            _mm512_storeu_si512(q + i, ordered);
        } else {
            _mm512_mask_storeu_epi8(q + i, mask64(n_pad - i), ordered);
        }
        i += 64;
    }
    if (n_pad > i) memset(q + i, 0, static_cast<size_t>(n_pad - i));
    *sum = _mm512_reduce_add_epi32(vsum);
    return scale;
}

float quantize_row_i8(const float* x, int n, int n_pad, int8_t* q, int32_t* sum) {
    return quantize_values(n, n_pad, q, sum,
                           [x](int i, __mmask16 m) { return _mm512_maskz_loadu_ps(m, x + i); });
}

// ---- ternary GEMM -------------------------------------------------------------------------
//
// A 64-byte block holds 256 codes; (block >> 2s) & 3 are the codes of k = 64s .. 64s + 63, so
// each shift pairs with one contiguous 64-byte load of activations. Codes are 0..2 (unsigned),
// activations int8: sum(q * code) - sum(q) is the dot product with the weights code - 1.

#if BITNET_VNNI
constexpr int kTernaryRows = 4;  // 4 x 4 accumulators + 4 weight + 4 activation registers
constexpr int kTernaryCols = 4;
#else
constexpr int kTernaryRows = 4;  // the 16-bit partial sums double the accumulator count
constexpr int kTernaryCols = 2;
#endif

// A GEMV tile reads RT rows in interleaved 64-byte steps; so many short strided streams defeat
// the hardware prefetchers, so each block step prefetches (into L2) RT lines of the tile two
// ahead: over its n_blocks steps a tile fetches exactly one tile's bytes. Measured on Zen 4
// against DRAM-resident weights, this beats both the unprefetched tile and reading the rows
// one by one (which needs four L1 activation loads per weight line). Matrices that fit in L2
// are left to the caches: there the prefetches only cost.
constexpr size_t kPrefetchTiles = 2;
constexpr size_t kPrefetchMinBytes = size_t{1} << 20;

template <int RT>
inline void prefetch_tile_ahead(const uint8_t* tile, size_t row_bytes, int b) {
    const uint8_t* ahead =
        tile + kPrefetchTiles * RT * row_bytes + static_cast<size_t>(b) * RT * 64;
    for (int i = 0; i < RT; ++i)
        _mm_prefetch(reinterpret_cast<const char*>(ahead + i * 64), _MM_HINT_T1);
}

// y[(m + j) * ldy + i] = float(sum(acc[i * MT + j]) - row_sum[m + j]) * out_scale[m + j]: the
// reductions of an RT x MT tile, and for a GEMV tile (MT = 1) one vector epilogue for its rows.
// Eight horizontal sums in one vector, without a trip through memory (whose 128-bit stores a
// wider reload could not forward from).
inline __m256i reduce8_epi32(const __m512i* v) {
    // {0 1 2 3 | 0 1 2 3} partial sums, then {4 5 6 7 | 4 5 6 7}
    const __m256i lo = fold_blocks_epi32(block_sums4_epi32(v[0], v[1], v[2], v[3]));
    const __m256i hi = fold_blocks_epi32(block_sums4_epi32(v[4], v[5], v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20),
                            _mm256_permute2x128_si256(lo, hi, 0x31));
}

// Sixteen horizontal sums in one vector: block sums, then 128-bit blocks of two vectors added
// at a time.
inline __m512i reduce16_epi32(const __m512i* v) {
    __m512i s[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g)
        s[g] = block_sums4_epi32(v[4 * g], v[4 * g + 1], v[4 * g + 2], v[4 * g + 3]);
    const __m512i s01 = _mm512_add_epi32(_mm512_shuffle_i32x4(s[0], s[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                         _mm512_shuffle_i32x4(s[0], s[1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512i s23 = _mm512_add_epi32(_mm512_shuffle_i32x4(s[2], s[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                         _mm512_shuffle_i32x4(s[2], s[3], _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(s01, s23, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(s01, s23, _MM_SHUFFLE(3, 1, 3, 1)));
}

// Eight horizontal sums in one vector (see reduce8_epi32 and block_sums4_ps).
inline __m256 reduce8_ps(const __m512* v) {
    const __m256 lo = fold_blocks_ps(block_sums4_ps(v[0], v[1], v[2], v[3]));
    const __m256 hi = fold_blocks_ps(block_sums4_ps(v[4], v[5], v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x20),
                         _mm256_permute2f128_ps(lo, hi, 0x31));
}

// Sixteen horizontal sums in one vector, in block_sums4_ps's order: the last two steps add
// 128-bit blocks of two vectors at a time instead of halving one vector.
__attribute__((always_inline)) inline __m512 reduce16_ps(const __m512* v) {
    __m512 s[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g)
        s[g] = block_sums4_ps(v[4 * g], v[4 * g + 1], v[4 * g + 2], v[4 * g + 3]);
    // {x.B0 + x.B2, x.B1 + x.B3, y.B0 + y.B2, y.B1 + y.B3}
    auto fold = [](__m512 x, __m512 y) {
        return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 2, 3, 2)));
    };
    const __m512 s01 = fold(s[0], s[1]);
    const __m512 s23 = fold(s[2], s[3]);
    return _mm512_add_ps(_mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(3, 1, 3, 1)));
}

template <int RT, int MT>
inline void store_ternary_outputs(const __m512i* acc, const QuantizedActivations& x, int m,
                                  float* y, int ldy) {
    if constexpr (RT == 8 || RT == 4) {
        // Per activation row, the RT sums as one vector: reduce, subtract, convert, scale.
        // Loops that index acc are unrolled: an indexed array stays in memory, and GCC then
        // stores every accumulator in the main loop as well (twice the stores of the FMAs).
#pragma GCC unroll 16
        for (int j = 0; j < MT; ++j) {
            float* yr = y + static_cast<size_t>(m + j) * ldy;
            if constexpr (RT == 8) {
                const __m512i v[8] = {acc[j],          acc[MT + j],     acc[2 * MT + j],
                                      acc[3 * MT + j], acc[4 * MT + j], acc[5 * MT + j],
                                      acc[6 * MT + j], acc[7 * MT + j]};
                const __m256i d =
                    _mm256_sub_epi32(reduce8_epi32(v), _mm256_set1_epi32(x.row_sum[m + j]));
                _mm256_storeu_ps(
                    yr, _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(x.out_scale[m + j])));
            } else {
                const __m128i d = _mm_sub_epi32(
                    reduce4_epi32(acc[j], acc[MT + j], acc[2 * MT + j], acc[3 * MT + j]),
                    _mm_set1_epi32(x.row_sum[m + j]));
                _mm_storeu_ps(yr, _mm_mul_ps(_mm_cvtepi32_ps(d), _mm_set1_ps(x.out_scale[m + j])));
            }
        }
    } else {
        int32_t dots[RT * MT];
        reduce_all<RT * MT>(acc, dots);
        store_ternary_dots(dots, RT, MT, x, m, y, ldy);
    }
}

#if BITNET_VNNI
// VGF2P8AFFINEQB through the assembler: this level is compiled without -mgfni, since AVX-512
// VNNI CPUs before Ice Lake (Cascade Lake, Cooper Lake) lack GFNI; only the GFNI table's kernels
// (see avx512vnni_gfni_kernels) run it. Each output byte is the GF(2) matrix a (row i of the
// bit matrix is byte 7 - i of each quadword) times the input byte.
inline __m512i gf2p8affine(__m512i x, __m512i a) {
    __m512i r;
    __asm__("vgf2p8affineqb $0, %2, %1, %0" : "=v"(r) : "v"(x), "v"(a));
    return r;
}
#endif

// kGfni: step s's codes come from one GF(2) affine transform of the block's untouched bytes
// (bits 2s, 2s + 1 to bits 0, 1) instead of a mask and a shift of the running copy: one
// instruction for two on the ports the multiply-adds use. One Emerald Rapids core's 2-bit GEMV
// with its weights in L2 went from 16.6-18.1 to 21.3-22.4 GB/s.
template <int RT, int MT, bool kPrefetch = false, bool kGfni = false>
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
    const int ahead_extra = w.tiled && static_cast<int>(kPrefetchTiles) * RT < kTernaryTileRows
                                ? kTernaryTileRows - static_cast<int>(kPrefetchTiles) * RT
                                : 0;
    const uint8_t* linear = w.data + static_cast<size_t>(r + ahead_extra) * row_bytes;
    const int8_t* xp = x.q + static_cast<size_t>(m) * x.stride;
    const __m512i mask3 = _mm512_set1_epi8(3);
    __m512i code_matrix[4];
    if constexpr (kGfni) {
        for (int s = 0; s < 4; ++s) code_matrix[s] = gfni_code_matrix(s);
    }
#if !BITNET_VNNI
    const __m512i ones = _mm512_set1_epi16(1);
#endif
    __m512i acc[RT * MT];
    for (int i = 0; i < RT * MT; ++i) acc[i] = _mm512_setzero_si512();

    for (int b = 0; b < n_blocks; ++b) {
        __m512i wv[RT];
        for (int i = 0; i < RT; ++i) wv[i] = _mm512_loadu_si512(wp + i * row_step + b * block_step);
#if !BITNET_VNNI
        // Each vpmaddubsw lane is within +-512, so four of them cannot overflow 16 bits.
        __m512i acc16[RT * MT];
        for (int i = 0; i < RT * MT; ++i) acc16[i] = _mm512_setzero_si512();
#endif
        const int steps = b + 1 < n_blocks ? 4 : tail_steps;
        // A fixed trip count keeps wv and acc in registers; the test skips padding steps.
#pragma GCC unroll 4
        for (int s = 0; s < 4; ++s) {
            if (s >= steps) break;
            __m512i xv[MT];
            for (int j = 0; j < MT; ++j) {
                xv[j] = _mm512_loadu_si512(xp + static_cast<size_t>(j) * x.stride +
                                           b * kTernaryBlock + s * 64);
            }
            for (int i = 0; i < RT; ++i) {
                __m512i c;
#if BITNET_VNNI
                if constexpr (kGfni) {
                    c = gf2p8affine(wv[i], code_matrix[s]);
                } else
#endif
                {
                    c = _mm512_and_si512(wv[i], mask3);
                    wv[i] = _mm512_srli_epi16(wv[i], 2);
                }
                for (int j = 0; j < MT; ++j) {
#if BITNET_VNNI
                    acc[i * MT + j] = _mm512_dpbusd_epi32(acc[i * MT + j], c, xv[j]);
#else
                    acc16[i * MT + j] =
                        _mm512_add_epi16(acc16[i * MT + j], _mm512_maddubs_epi16(c, xv[j]));
#endif
                }
            }
        }
#if !BITNET_VNNI
        for (int i = 0; i < RT * MT; ++i) {
            acc[i] = _mm512_add_epi32(acc[i], _mm512_madd_epi16(acc16[i], ones));
        }
#endif
        // Here, after the block's steps: at the top of the loop the prefetch makes GCC 12 store
        // every accumulator to the stack after each multiply-add.
        if constexpr (kPrefetch) prefetch_tile_ahead<RT>(linear, row_bytes, b);
    }

    store_ternary_outputs<RT, MT>(acc, x, m, y + r, ldy);
}

// Trits5: a 64-byte block holds 320 codes; with m_0 = the block and m_{i+1} = 3 m_i (bytewise,
// mod 256), the codes of k = 64i .. 64i + 63 are c_i = floor(3 m_i / 256), to be paired with the
// i-th 64-byte load of activations.
//
// GEMM tiles extract c_i = (m_i >= 86) + (m_i >= 171) once per matrix row and step, and use them
// as the Bits2 tiles use theirs; five vpmaddubsw lanes (each within +-512) fit in 16 bits.
// The GEMV (ternary5_row) instead uses 3 m_i - m_{i+1} = 256 c_i: sum(x c_i) =
// (3 sum(x m_i) - sum(x m_{i+1})) / 256, two vpdpbusd of bytes the recurrence makes anyway and
// no extraction at all. Every lane's partial sums are whole multiples of 256 (each byte's term
// is), so the division is an exact shift per lane; lanes stay below 2^31 for rows up to about
// 350,000 weights.
#if BITNET_VNNI
constexpr int kTernary5Rows = 4;
constexpr int kTernary5Cols = 4;
#else
constexpr int kTernary5Rows = 4;
constexpr int kTernary5Cols = 2;
#endif

template <int RT, int MT>
inline void ternary5_tile(const TernaryMatrixView& w, int r, const QuantizedActivations& x, int m,
                          float* y, int ldy) {
    const size_t row_bytes = static_cast<size_t>(w.cols_padded) / 5;
    const int n_blocks = w.cols_padded / kTernary5Block;
    // Skipping the padding's steps: a 128-column matrix would otherwise cost a 256-column one.
    const int tail_steps = w.tail_steps();
    const uint8_t* wp = w.data + static_cast<size_t>(r) * row_bytes;
    const int8_t* xp = x.q + static_cast<size_t>(m) * x.stride;
    const __m512i one = _mm512_set1_epi8(1);
    const __m512i two = _mm512_set1_epi8(2);
    const __m512i t1 = _mm512_set1_epi8(86);
    const __m512i t2 = _mm512_set1_epi8(static_cast<char>(171));
#if !BITNET_VNNI
    const __m512i ones16 = _mm512_set1_epi16(1);
#endif
    __m512i acc[RT * MT];
    for (int i = 0; i < RT * MT; ++i) acc[i] = _mm512_setzero_si512();
    for (int b = 0; b < n_blocks; ++b) {
        __m512i mv[RT];
        for (int i = 0; i < RT; ++i) mv[i] = _mm512_loadu_si512(wp + i * row_bytes + b * 64);
#if !BITNET_VNNI
        __m512i acc16[RT * MT];
        for (int i = 0; i < RT * MT; ++i) acc16[i] = _mm512_setzero_si512();
#endif
        const int steps = b + 1 < n_blocks ? 5 : tail_steps;
#pragma GCC unroll 5
        for (int s = 0; s < 5; ++s) {
            if (s >= steps) break;
            __m512i xv[MT];
            for (int j = 0; j < MT; ++j) {
                xv[j] = _mm512_loadu_si512(xp + static_cast<size_t>(j) * x.stride +
                                           b * kTernary5Block + s * 64);
            }
            for (int i = 0; i < RT; ++i) {
                // The codes are extracted once and shared by the MT activation rows, so one
                // multiply-add per product (the GEMV's carry identity would need two).
                const __m512i c = _mm512_mask_mov_epi8(
                    _mm512_maskz_mov_epi8(_mm512_cmpge_epu8_mask(mv[i], t1), one),
                    _mm512_cmpge_epu8_mask(mv[i], t2), two);
                mv[i] = _mm512_add_epi8(mv[i], _mm512_add_epi8(mv[i], mv[i]));
                for (int j = 0; j < MT; ++j) {
#if BITNET_VNNI
                    acc[i * MT + j] = _mm512_dpbusd_epi32(acc[i * MT + j], c, xv[j]);
#else
                    acc16[i * MT + j] =
                        _mm512_add_epi16(acc16[i * MT + j], _mm512_maddubs_epi16(c, xv[j]));
#endif
                }
            }
        }
#if !BITNET_VNNI
        for (int i = 0; i < RT * MT; ++i)
            acc[i] = _mm512_add_epi32(acc[i], _mm512_madd_epi16(acc16[i], ones16));
#endif
    }
    store_ternary_outputs<RT, MT>(acc, x, m, y + r, ldy);
}

// ---- GEMV: one activation row (generation) --------------------------------------------------
//
// Generation reads every weight once per token, from DRAM. Trits5 rows, the dense heads and the
// int8 head are read one after another, so a call is one sequential stream that the hardware
// prefetchers follow; each row has its own accumulators and eight rows are reduced together.
// Intel's cores read eight of those rows side by side (weights_stream_wants_help).
// Bits2 rows go through the prefetching GEMV tile instead, which measured faster for them
// (scratch measurements in docs/PERFORMANCE.md).

// Lane sums of one Trits5 row's dot product with x (sum of codes * x, before the row sum);
// see ternary5_tile for both decodings.
inline __m512i ternary5_row(const uint8_t* wr, int n_blocks, int tail_steps, const int8_t* x) {
#if BITNET_VNNI
    __m512i acc_m[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    __m512i acc_next[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
#else
    const __m512i one = _mm512_set1_epi8(1), two = _mm512_set1_epi8(2);
    const __m512i t1 = _mm512_set1_epi8(86), t2 = _mm512_set1_epi8(static_cast<char>(171));
    const __m512i ones16 = _mm512_set1_epi16(1);
    __m512i acc[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
#endif
    for (int b = 0; b < n_blocks; ++b) {
        __m512i mv = _mm512_loadu_si512(wr + b * 64);
        const int8_t* xb = x + b * kTernary5Block;
        const int steps = b + 1 < n_blocks ? 5 : tail_steps;
#if !BITNET_VNNI
        __m512i acc16 = _mm512_setzero_si512();  // five vpmaddubsw lanes fit in 16 bits
#endif
#pragma GCC unroll 5
        for (int s = 0; s < 5; ++s) {
            if (s >= steps) break;
            const __m512i xv = _mm512_loadu_si512(xb + s * 64);
            const __m512i next = _mm512_add_epi8(mv, _mm512_add_epi8(mv, mv));
#if BITNET_VNNI
            acc_m[s % 2] = _mm512_dpbusd_epi32(acc_m[s % 2], mv, xv);
            acc_next[s % 2] = _mm512_dpbusd_epi32(acc_next[s % 2], next, xv);
#else
            const __m512i c =
                _mm512_mask_mov_epi8(_mm512_maskz_mov_epi8(_mm512_cmpge_epu8_mask(mv, t1), one),
                                     _mm512_cmpge_epu8_mask(mv, t2), two);
            acc16 = _mm512_add_epi16(acc16, _mm512_maddubs_epi16(c, xv));
#endif
            mv = next;
        }
#if !BITNET_VNNI
        acc[b % 2] = _mm512_add_epi32(acc[b % 2], _mm512_madd_epi16(acc16, ones16));
#endif
    }
#if BITNET_VNNI
    const __m512i a = _mm512_add_epi32(acc_m[0], acc_m[1]);
    const __m512i three_a = _mm512_add_epi32(a, _mm512_add_epi32(a, a));
    return _mm512_srai_epi32(_mm512_sub_epi32(three_a, _mm512_add_epi32(acc_next[0], acc_next[1])),
                             8);
#else
    return _mm512_add_epi32(acc[0], acc[1]);
#endif
}

#if BITNET_VNNI
// Lane sums of N Trits5 rows from r side by side (ternary5_row's sums, exact: the same dot
// products), each activation load serving the N rows: the rows' streams keep more loads in
// flight on cores that want it (weights_stream_wants_help).
template <int N>
inline void ternary5_rows(const uint8_t* w, size_t row_bytes, int r, int n_blocks, int tail_steps,
                          const int8_t* x, __m512i* lanes) {
    __m512i acc_m[N], acc_next[N];
#pragma GCC unroll 8
    for (int i = 0; i < N; ++i) acc_m[i] = acc_next[i] = _mm512_setzero_si512();
    const uint8_t* wr = w + static_cast<size_t>(r) * row_bytes;
    for (int b = 0; b < n_blocks; ++b) {
        __m512i mv[N];
#pragma GCC unroll 8
        for (int i = 0; i < N; ++i) mv[i] = _mm512_loadu_si512(wr + i * row_bytes + b * 64);
        const int8_t* xb = x + b * kTernary5Block;
        const int steps = b + 1 < n_blocks ? 5 : tail_steps;
        // N lines a block, two groups of rows ahead: a group's blocks fetch one group's bytes.
        prefetch_tile_ahead<N>(wr, row_bytes, b);
#pragma GCC unroll 5
        for (int s = 0; s < 5; ++s) {
            if (s >= steps) break;
            const __m512i xv = _mm512_loadu_si512(xb + s * 64);
#pragma GCC unroll 8
            for (int i = 0; i < N; ++i) {
                const __m512i next = _mm512_add_epi8(mv[i], _mm512_add_epi8(mv[i], mv[i]));
                acc_m[i] = _mm512_dpbusd_epi32(acc_m[i], mv[i], xv);
                acc_next[i] = _mm512_dpbusd_epi32(acc_next[i], next, xv);
                mv[i] = next;
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < N; ++i) {
        const __m512i three_a = _mm512_add_epi32(acc_m[i], _mm512_add_epi32(acc_m[i], acc_m[i]));
        lanes[i] = _mm512_srai_epi32(_mm512_sub_epi32(three_a, acc_next[i]), 8);
    }
}
#endif

// y[r, r + 8) = float(dot - row_sum) * scale, the dots from the lane sums of eight rows.
inline void store_gemv8(const __m512i* lanes, int32_t row_sum, float scale, float* y) {
    const __m256i d = _mm256_sub_epi32(reduce8_epi32(lanes), _mm256_set1_epi32(row_sum));
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(scale)));
}

// y[r] = float(dot_r - row_sum) * scale for rows [r_begin, r_end), dot from row_lanes(r);
// sixteen rows at a time when kSixteen (short rows, whose reductions weigh), else eight.
template <bool kSixteen = false, typename RowLanes>
inline void gemv_epilogue_rows(int r_begin, int r_end, RowLanes row_lanes, int32_t row_sum,
                               float scale, float* y) {
    int r = r_begin;
    if constexpr (kSixteen) {
        for (; r + 16 <= r_end; r += 16) {
            __m512i acc[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; ++i) acc[i] = row_lanes(r + i);
            const __m512i d = _mm512_sub_epi32(reduce16_epi32(acc), _mm512_set1_epi32(row_sum));
            _mm512_storeu_ps(y + r, _mm512_mul_ps(_mm512_cvtepi32_ps(d), _mm512_set1_ps(scale)));
        }
    }
    for (; r + 8 <= r_end; r += 8) {
        __m512i acc[8];
        for (int i = 0; i < 8; ++i) acc[i] = row_lanes(r + i);
        store_gemv8(acc, row_sum, scale, y + r);
    }
    for (; r < r_end; ++r)
        y[r] = static_cast<float>(_mm512_reduce_add_epi32(row_lanes(r)) - row_sum) * scale;
}

// fn(Int<S>{}) for the first S of the list that is at least `steps` (which must not exceed
// the last). Running a row past its last real step is harmless: padding codes and padded
// activations are zero (QuantizedActivations); fewer step counts to unroll halve the compile
// time these GEMVs add.
template <int... S, typename Fn>
inline void with_steps_at_least(int steps, Fn&& fn) {
    bool done = false;
    ((!done && steps <= S ? (fn(Int<S>{}), done = true) : false), ...);
}

// A GEMV over rows of TS 64-column steps (at most two blocks: a small model's products, which
// stay in cache). The activations stay in registers and sixteen rows reduce together; the
// 8-row tiles spent about half their time entering, reducing and leaving for the few
// multiply-adds of such rows. Trits5 rows decode as ternary5_row's VNNI form; the sums are exact,
// so one pair of accumulators for all steps gives the same result as its two pairs.
template <int TS, bool kTrits5>
void ternary_gemv_short(const TernaryMatrixView& w, int r_begin, int r_end,
                        const QuantizedActivations& x, float* y) {
    static_assert(!kTrits5 || BITNET_VNNI, "the Trits5 decoding here is the vpdpbusd one");
    constexpr int kPerBlock = kTrits5 ? 5 : 4;
    constexpr int kBlock = kTrits5 ? kTernary5Block : kTernaryBlock;
    const size_t row_bytes = static_cast<size_t>(w.cols_padded) / kPerBlock;
    const __m512i mask3 = _mm512_set1_epi8(3);
    __m512i xv[TS];
#pragma GCC unroll 10
    for (int t = 0; t < TS; ++t)
        xv[t] = _mm512_loadu_si512(x.q + (t / kPerBlock) * kBlock + (t % kPerBlock) * 64);
    auto row_lanes = [&](int r) {
        const uint8_t* wr = w.data + static_cast<size_t>(r) * row_bytes;
        __m512i acc = _mm512_setzero_si512(), acc_next = _mm512_setzero_si512();
        __m512i v = _mm512_setzero_si512();
#pragma GCC unroll 10
        for (int t = 0; t < TS; ++t) {
            if (t % kPerBlock == 0) v = _mm512_loadu_si512(wr + (t / kPerBlock) * 64);
            if constexpr (kTrits5) {
                const __m512i next = _mm512_add_epi8(v, _mm512_add_epi8(v, v));
                acc = _mm512_dpbusd_epi32(acc, v, xv[t]);
                acc_next = _mm512_dpbusd_epi32(acc_next, next, xv[t]);
                v = next;
            } else {
                const __m512i c = _mm512_and_si512(v, mask3);
                v = _mm512_srli_epi16(v, 2);
#if BITNET_VNNI
                acc = _mm512_dpbusd_epi32(acc, c, xv[t]);
#else
                acc = _mm512_add_epi32(
                    acc, _mm512_madd_epi16(_mm512_maddubs_epi16(c, xv[t]), _mm512_set1_epi16(1)));
#endif
            }
        }
        if constexpr (kTrits5) {
            const __m512i three_m = _mm512_add_epi32(acc, _mm512_add_epi32(acc, acc));
            return _mm512_srai_epi32(_mm512_sub_epi32(three_m, acc_next), 8);
        }
        return acc;
    };
    gemv_epilogue_rows<true>(r_begin, r_end, row_lanes, x.row_sum[0], x.out_scale[0], y);
}

#if BITNET_VNNI
// G row groups (see kernels.h) from group g0: y = (dot - row_sum) * scale, sixteen rows a vector.
// Bit pair i is masked in place rather than shifted down, one operation a step fewer: its
// products are 4^i times the code's, gathered in an accumulator of their own and divided back
// (exactly: every term is a multiple of 4^i) before the four are added.
template <int G>
inline void row_groups_gemv(const TernaryMatrixView& w, int g0, const QuantizedActivations& x,
                            float* y) {
    const int n_blocks = w.n_blocks(), tail_steps = w.tail_steps();
    const uint8_t* group = w.groups + static_cast<size_t>(g0) * w.group_bytes();
    const size_t group_bytes = w.group_bytes();
    __m512i mask[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) mask[i] = _mm512_set1_epi8(static_cast<char>(3 << (2 * i)));
    __m512i acc[G][4];
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) acc[g][i] = _mm512_setzero_si512();
    }
    // Vector d of a block with s steps: bit pair i pairs with activations 16 s i + 4 d.
    auto step = [&](const uint8_t* vec, const int8_t* xd, int s) __attribute__((always_inline)) {
        __m512i v[G];
#pragma GCC unroll 4
        for (int g = 0; g < G; ++g) v[g] = _mm512_load_si512(vec + g * group_bytes);
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
            int32_t xi;
            memcpy(&xi, xd + 16 * s * i, sizeof xi);
            const __m512i xv = _mm512_set1_epi32(xi);
#pragma GCC unroll 4
            for (int g = 0; g < G; ++g)
                acc[g][i] = _mm512_dpbusd_epi32(acc[g][i], _mm512_and_si512(v[g], mask[i]), xv);
        }
    };
    // Whole blocks with a constant step count (a runtime one made GCC copy and spill the
    // accumulators every step), then the last block's tail_steps.
    const uint8_t* vec = group;
    const int8_t* xb = x.q;
    for (int b = 0; b + 1 < n_blocks; ++b, xb += kTernaryBlock) {
        for (int d = 0; d < 16; ++d, vec += 64) step(vec, xb + 4 * d, 4);
    }
    for (int d = 0; d < 4 * tail_steps; ++d, vec += 64) step(vec, xb + 4 * d, tail_steps);
    const __m512i row_sum = _mm512_set1_epi32(x.row_sum[0]);
    const __m512 scale = _mm512_set1_ps(x.out_scale[0]);
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
        const __m512i dot = _mm512_add_epi32(
            _mm512_add_epi32(acc[g][0], _mm512_srai_epi32(acc[g][1], 2)),
            _mm512_add_epi32(_mm512_srai_epi32(acc[g][2], 4), _mm512_srai_epi32(acc[g][3], 6)));
        _mm512_storeu_ps(y + (g0 + g) * kTernaryGroupRows,
                         _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dot, row_sum)), scale));
    }
}

// Four groups at a time (their multiply-adds overlap), the rest one by one.
inline void row_groups_gemv_range(const TernaryMatrixView& w, int g_begin, int g_end,
                                  const QuantizedActivations& x, float* y) {
    int g = g_begin;
    for (; g + 4 <= g_end; g += 4) row_groups_gemv<4>(w, g, x, y);
    for (; g < g_end; ++g) row_groups_gemv<1>(w, g, x, y);
}
#endif

template <bool kGfni = false>
void ternary_gemv(const TernaryMatrixView& w, int r_begin, int r_end, const QuantizedActivations& x,
                  float* y) {
#if BITNET_VNNI
    if (w.groups != nullptr && w.layout == TernaryLayout::Bits2) {
        // Whole groups from the copy; rows of a range that starts or ends inside a group, and
        // those after the last group, from the matrix itself.
        constexpr int R = kTernaryGroupRows;
        const int g_begin = (r_begin + R - 1) / R, g_end = r_end / R;
        TernaryMatrixView rows = w;
        rows.groups = nullptr;
        if (g_begin >= g_end) return ternary_gemv<kGfni>(rows, r_begin, r_end, x, y);
        if (r_begin < g_begin * R) ternary_gemv<kGfni>(rows, r_begin, g_begin * R, x, y);
        row_groups_gemv_range(w, g_begin, g_end, x, y);
        if (g_end * R < r_end) ternary_gemv<kGfni>(rows, g_end * R, r_end, x, y);
        return;
    }
#endif
    const bool trits5 = w.layout == TernaryLayout::Trits5;
    const int block = trits5 ? kTernary5Block : kTernaryBlock;
    const size_t row_bytes = static_cast<size_t>(w.cols_padded) / (trits5 ? 5 : 4);
    const int n_blocks = w.cols_padded / block;
    const int tail_steps = w.tail_steps();
    if (trits5) {
#if BITNET_VNNI
        if (n_blocks >= 1 && n_blocks <= 2) {
            // Within a block's five steps: 2, 4, 5, then 5 + (2, 4, 5).
            return with_steps_at_least<2, 4, 5, 7, 9, 10>(
                (n_blocks - 1) * 5 + tail_steps, [&](auto steps) {
                    ternary_gemv_short<decltype(steps)::value, true>(w, r_begin, r_end, x, y);
                });
        }
        if (weights_stream_wants_help()) {
            for (; r_begin + 8 <= r_end; r_begin += 8) {
                __m512i lanes[8];
                ternary5_rows<8>(w.data, row_bytes, r_begin, n_blocks, tail_steps, x.q, lanes);
                store_gemv8(lanes, x.row_sum[0], x.out_scale[0], y + r_begin);
            }
        }
#endif
        gemv_epilogue_rows(
            r_begin, r_end,
            [&](int r) { return ternary5_row(w.data + r * row_bytes, n_blocks, tail_steps, x.q); },
            x.row_sum[0], x.out_scale[0], y);
    } else {
        const bool from_memory = static_cast<size_t>(w.rows) * row_bytes >= kPrefetchMinBytes;
        // A tiled matrix is one sequential stream, which Zen 4's hardware prefetchers follow
        // alone (1.05-1.10x over the row-major tiles' prefetching, 2026-11-27); Intel's cores
        // want the prefetches (see weights_stream_wants_help).
        const bool prefetch = from_memory && (!w.tiled || weights_stream_wants_help());
        if (!from_memory && !w.tiled && n_blocks >= 1 && n_blocks <= 2) {
            return with_steps_at_least<2, 4, 6, 8>(
                (n_blocks - 1) * 4 + tail_steps, [&](auto steps) {
                    ternary_gemv_short<decltype(steps)::value, false>(w, r_begin, r_end, x, y);
                });
        }
        auto tile = [&](auto rt, auto mt, int r, int m) {
            constexpr int R = decltype(rt)::value, C = decltype(mt)::value;
            if (prefetch) return ternary_tile<R, C, true, kGfni>(w, r, x, m, y, 0);
            return ternary_tile<R, C, false, kGfni>(w, r, x, m, y, 0);
        };
        for_tiles<8, 1>(r_begin, r_end, 1, tile, w.tiled);
    }
}

// ---- panel GEMM: many activation rows (prompts, batches) ------------------------------------
//
// With many activation rows the tiles above are bound by the multiply-add port, and a third of
// what they issue is code extraction (and + shift, or the Trits5 comparisons) repeated for
// every activation tile. Here the codes of a few matrix rows are unpacked once, into a panel of
// one byte a weight in k order (L1/L2-resident), and every activation tile then runs pure
// loads and vpdpbusd over it. Both layouts share the inner loop, so 1.6-bit prefill runs at
// 2-bit speed. Without VNNI (Skylake-SP): vpmaddubsw into 16-bit sums, widened once a group of
// steps, in tiles of two activation rows, since both sums need registers.
constexpr int kPanelRows = 4;
#if BITNET_VNNI
constexpr int kPanelCols = 4;
#else
constexpr int kPanelCols = 2;
#endif
constexpr int kPanelMaxSteps = 256;  // 64-column steps: rows of up to 16,384 columns

// kGroup steps (2 or 4) a loop pass, ksteps a multiple of it.
template <int RT, int MT, int kGroup>
inline void panel_tile(const int8_t* panel, int ksteps, const QuantizedActivations& x, int m,
                       float* y, int ldy) {
    const int8_t* xp = x.q + static_cast<size_t>(m) * x.stride;
    const size_t panel_row = static_cast<size_t>(ksteps) * 64;
    __m512i acc[RT * MT];
    for (int i = 0; i < RT * MT; ++i) acc[i] = _mm512_setzero_si512();
#if !BITNET_VNNI
    const __m512i ones = _mm512_set1_epi16(1);
#endif
    // A fixed group of steps a pass with no early exit (the panel and the activations are zero
    // past the columns, up to the group): GCC 12 then keeps acc in registers, which it does not
    // for a loop of one step at a time or with a break.
    for (int t0 = 0; t0 < ksteps; t0 += kGroup) {
#if !BITNET_VNNI
        // Each vpmaddubsw lane is within +-512, so four of them cannot overflow 16 bits.
        __m512i acc16[RT * MT];
        for (int i = 0; i < RT * MT; ++i) acc16[i] = _mm512_setzero_si512();
#endif
#pragma GCC unroll 4
        for (int u = 0; u < kGroup; ++u) {
            const int t = t0 + u;
            __m512i xv[MT];
            for (int j = 0; j < MT; ++j)
                xv[j] = _mm512_loadu_si512(xp + static_cast<size_t>(j) * x.stride + t * 64);
            for (int i = 0; i < RT; ++i) {
                const __m512i c = _mm512_load_si512(panel + i * panel_row + t * 64);
                for (int j = 0; j < MT; ++j) {
#if BITNET_VNNI
                    acc[i * MT + j] = _mm512_dpbusd_epi32(acc[i * MT + j], c, xv[j]);
#else
                    acc16[i * MT + j] =
                        _mm512_add_epi16(acc16[i * MT + j], _mm512_maddubs_epi16(c, xv[j]));
#endif
                }
            }
        }
#if !BITNET_VNNI
        for (int i = 0; i < RT * MT; ++i)
            acc[i] = _mm512_add_epi32(acc[i], _mm512_madd_epi16(acc16[i], ones));
#endif
    }
    store_ternary_outputs<RT, MT>(acc, x, m, y, ldy);
}

// Whether the panel GEMM serves this product (and can: rows of at most kPanelMaxSteps steps).
// Measured on Zen 4 with the matrix in cache: Trits5 panels beat its tiles from 5 activation
// rows on (the tiles' comparisons cost most); Bits2 tiles extract codes with two cheap
// instructions, stay ahead up to 8 rows, tie at 12 and fall behind from 16 (216 against 171 G
// multiply-adds/s at 128).
constexpr int kPanelMinRowsBits2 = 12;
constexpr int kPanelMinRowsTrits5 = 5;

inline bool panel_gemm_applies(const TernaryMatrixView& w, const QuantizedActivations& x) {
    const int min_rows =
        w.layout == TernaryLayout::Trits5 ? kPanelMinRowsTrits5 : kPanelMinRowsBits2;
    return x.rows >= min_rows && round_up(w.cols, 256) / 64 <= kPanelMaxSteps;
}

#if BITNET_VNNI
// ---- short rows: sixteen matrix rows a vector ----------------------------------------------
//
// Rows of a few 64-column steps (a small model's 128- and 512-column products) leave the panel
// tiles above with as many reduction operations as multiply-adds: a 4 x 4 tile over 128
// columns issues 32 vpdpbusd, then reduces 16 accumulators across their lanes. Here the panel
// holds sixteen matrix rows a vector, four codes of each (k = 4g .. 4g + 3 of group g), and each
// activation row's four bytes of group g are broadcast to all sixteen: one vector of sixteen
// row sums an activation row, and no reduction at all. The int32 sums are exact, so the
// results are the same bits as every other path.
constexpr int kShortPanelRows = 16;
constexpr int kShortPanelMaxSteps = 8;  // rows of up to 512 columns
constexpr int kShortPanelCols = 8;      // activation rows a pass: eight accumulator chains

template <int MT>
inline void short_panel_tile(const int8_t* panel, int ksteps, const QuantizedActivations& x, int m,
                             int rows, float* y, int ldy) {
    const int8_t* xp = x.q + static_cast<size_t>(m) * x.stride;
    const size_t stride = static_cast<size_t>(x.stride);
    __m512i acc[MT];
#pragma GCC unroll 8
    for (int j = 0; j < MT; ++j) acc[j] = _mm512_setzero_si512();
    const int groups = ksteps * 16;
    for (int g = 0; g < groups; g += 4) {
#pragma GCC unroll 4
        for (int u = 0; u < 4; ++u) {
            const __m512i c = _mm512_load_si512(panel + (g + u) * 64);
#pragma GCC unroll 8
            for (int j = 0; j < MT; ++j) {
                int32_t four;  // activations k = 4(g + u) .. + 3 of row m + j
                memcpy(&four, xp + j * stride + 4 * (g + u), 4);
                acc[j] = _mm512_dpbusd_epi32(acc[j], c, _mm512_set1_epi32(four));
            }
        }
    }
    const __mmask16 keep = mask16(rows);
#pragma GCC unroll 8
    for (int j = 0; j < MT; ++j) {
        const __m512i d = _mm512_sub_epi32(acc[j], _mm512_set1_epi32(x.row_sum[m + j]));
        _mm512_mask_storeu_ps(
            y + static_cast<size_t>(m + j) * ldy, keep,
            _mm512_mul_ps(_mm512_cvtepi32_ps(d), _mm512_set1_ps(x.out_scale[m + j])));
    }
}

// short_panel_tile<rem> for the rem < MT + 1 activation rows left after the full passes.
template <int MT>
inline void short_panel_rest(const int8_t* panel, int ksteps, const QuantizedActivations& x, int m,
                             int rem, int rows, float* y, int ldy) {
    if constexpr (MT > 0) {
        if (rem == MT) return short_panel_tile<MT>(panel, ksteps, x, m, rows, y, ldy);
        short_panel_rest<MT - 1>(panel, ksteps, x, m, rem, rows, y, ldy);
    }
}

// Building a panel costs a transpose per sixteen rows and step, which pays from a few activation
// rows on where rows are short. Measured in cache against the tiles and 4 x 4 panels (1.25-1.8x
// for 128 columns from 12 rows, 1.07-1.16x for 512 from 32), with the crossovers below.
inline bool short_panels_apply(const TernaryMatrixView& w, const QuantizedActivations& x) {
    const int ksteps = round_up(w.cols, 64) / 64;
    if (ksteps <= 2) return x.rows >= (w.layout == TernaryLayout::Trits5 ? 5 : 8);
    if (ksteps <= 4) return x.rows >= 12;
    return ksteps <= kShortPanelMaxSteps && x.rows >= 32;
}

void ternary_gemm_short_panels(const TernaryMatrixView& w, int r_begin, int r_end,
                               const QuantizedActivations& x, float* y, int ldy) {
    const int ksteps = round_up(w.cols, 64) / 64;
    alignas(64) int8_t scratch[kShortPanelRows * kShortPanelMaxSteps * 64];
    alignas(64) int8_t panel[kShortPanelRows * kShortPanelMaxSteps * 64];
    for (int r = r_begin; r < r_end; r += kShortPanelRows) {
        const int rows = min_int(kShortPanelRows, r_end - r);
        unpack_short_panel(w, r, rows, ksteps, scratch, panel);
        int m = 0;
        for (; m + kShortPanelCols <= x.rows; m += kShortPanelCols)
            short_panel_tile<kShortPanelCols>(panel, ksteps, x, m, rows, y + r, ldy);
        short_panel_rest<kShortPanelCols - 1>(panel, ksteps, x, m, x.rows - m, rows, y + r, ldy);
    }
}

#endif

void ternary_gemm_panels(const TernaryMatrixView& w, int r_begin, int r_end,
                         const QuantizedActivations& x, float* y, int ldy) {
    // Columns past cols meet zero activations (up to the activation stride, a multiple of 256
    // columns), so the panel covers the columns in whole groups of four 64-column steps, or of
    // two where that is all a row has left (128-column rows: half the work of four).
    const int ksteps = round_up(w.cols, 128) / 64;
    const bool by_four = ksteps % 4 == 0;
    alignas(64) int8_t panel[kPanelRows * kPanelMaxSteps * 64];
    // Weights from memory: each panel prefetches the next one's bytes, which arrive while
    // every activation tile passes over this one.
    const size_t row_bytes = w.row_bytes();
    const bool prefetch = static_cast<size_t>(w.rows) * row_bytes >= kPrefetchMinBytes;
    const int ahead = w.tiled ? kTernaryTileRows : kPanelRows;
    auto tile = [&](auto rt, auto mt, int r, int m) {
        constexpr int R = decltype(rt)::value;
        if (m == 0) {
            if (prefetch && r + 2 * R <= r_end) {
                // By byte position, as the tiles prefetch (see ternary_tile): in a tiled matrix
                // each panel fetches its half of the next row tile.
                const uint8_t* next = w.data + static_cast<size_t>(r + ahead) * row_bytes;
                for (size_t off = 0; off < R * row_bytes; off += 64)
                    _mm_prefetch(reinterpret_cast<const char*>(next + off), _MM_HINT_T1);
            }
            unpack_panel(w, r, R, ksteps, panel);
        }
        constexpr int C = decltype(mt)::value;
        if (by_four) return panel_tile<R, C, 4>(panel, ksteps, x, m, y + r, ldy);
        panel_tile<R, C, 2>(panel, ksteps, x, m, y + r, ldy);
    };
    for_tiles<kPanelRows, kPanelCols>(r_begin, r_end, x.rows, tile);
}

template <bool kGfni>
void ternary_gemm_block(const TernaryMatrixView& w, int r_begin, int r_end,
                        const QuantizedActivations& x, float* y, int ldy) {
#if BITNET_VNNI
    if (short_panels_apply(w, x)) return ternary_gemm_short_panels(w, r_begin, r_end, x, y, ldy);
#endif
    if (panel_gemm_applies(w, x)) return ternary_gemm_panels(w, r_begin, r_end, x, y, ldy);
    if (w.layout == TernaryLayout::Trits5) {
        auto tile = [&](auto rt, auto mt, int r, int m) {
            ternary5_tile<decltype(rt)::value, decltype(mt)::value>(w, r, x, m, y, ldy);
        };
        for_tiles<kTernary5Rows, kTernary5Cols>(r_begin, r_end, x.rows, tile);
        return;
    }
    // A few activation rows (small batches, speculative drafts) leave the tiles waiting on
    // memory like the GEMV, so the first activation tile of each row tile prefetches the same
    // way; the others find the weights in L1.
    const bool prefetch = static_cast<size_t>(w.rows) * w.row_bytes() >= kPrefetchMinBytes;
    auto tile = [&](auto rt, auto mt, int r, int m) {
        constexpr int R = decltype(rt)::value, C = decltype(mt)::value;
        if (prefetch && m == 0) return ternary_tile<R, C, true, kGfni>(w, r, x, m, y, ldy);
        return ternary_tile<R, C, false, kGfni>(w, r, x, m, y, ldy);
    };
    for_tiles<kTernaryRows, kTernaryCols>(r_begin, r_end, x.rows, tile, w.tiled);
}

template <bool kGfni = false>
void ternary_gemm(const TernaryMatrixView& w, int r_begin, int r_end, const QuantizedActivations& x,
                  float* y, int ldy) {
    if (x.rows == 1) return ternary_gemv<kGfni>(w, r_begin, r_end, x, y);
    for_activation_blocks(x, y, ldy, 16, [&](const QuantizedActivations& block, float* yb) {
        ternary_gemm_block<kGfni>(w, r_begin, r_end, block, yb, ldy);
    });
}

// ---- dense GEMM (lm_head) -------------------------------------------------------------------

inline __m512 bf16x16_to_ps(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Weight loaders: 16 weights of one format at element offset i as floats, lanes past the mask 0;
// at(i): the address of element i.
struct F32Weights {
    static constexpr size_t kElemBytes = 4;
    const float* w;
    const char* at(size_t i) const { return reinterpret_cast<const char*>(w + i); }
    __m512 load(size_t i, __mmask16 m) const { return _mm512_maskz_loadu_ps(m, w + i); }
};
struct Bf16Weights {
    static constexpr size_t kElemBytes = 2;
    const uint16_t* w;
    const char* at(size_t i) const { return reinterpret_cast<const char*>(w + i); }
    __m512 load(size_t i, __mmask16 m) const {
        return bf16x16_to_ps(_mm256_maskz_loadu_epi16(m, w + i));
    }
};
struct F16Weights {
    static constexpr size_t kElemBytes = 2;
    const uint16_t* w;
    const char* at(size_t i) const { return reinterpret_cast<const char*>(w + i); }
    __m512 load(size_t i, __mmask16 m) const {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + i));
    }
};
struct I8Weights {
    static constexpr size_t kElemBytes = 1;
    const int8_t* w;
    const char* at(size_t i) const { return reinterpret_cast<const char*>(w + i); }
    __m512 load(size_t i, __mmask16 m) const {
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, w + i)));
    }
};

// y = sum_k x * w for an RT x MT tile, times row_scale[r] when it is given. kPrefetch: fetch the
// weights of the following row tile (the hardware prefetcher leaves the tile waiting on them).
template <int RT, int MT, typename W, bool kPrefetch = false>
inline void dense_tile(const W& w, int k, int r, const float* x, int m, int ldx,
                       const float* row_scale, float* y, int ldy) {
    __m512 acc[RT * MT];
    for (int i = 0; i < RT * MT; ++i) acc[i] = _mm512_setzero_ps();
    const size_t row0 = static_cast<size_t>(r) * k;
    const float* xm = x + static_cast<size_t>(m) * ldx;
    for (int kk = 0; kk < k; kk += 16) {
        const __mmask16 mask = mask16(k - kk);
        __m512 xv[MT];
        for (int j = 0; j < MT; ++j)
            xv[j] = _mm512_maskz_loadu_ps(mask, xm + static_cast<size_t>(j) * ldx + kk);
        for (int i = 0; i < RT; ++i) {
            const __m512 wv = w.load(row0 + static_cast<size_t>(i) * k + kk, mask);
            for (int j = 0; j < MT; ++j)
                acc[i * MT + j] = _mm512_fmadd_ps(wv, xv[j], acc[i * MT + j]);
        }
        // Last in the loop body and unconditional: otherwise GCC 12 keeps acc in memory.
        if constexpr (kPrefetch) {
            for (int i = 0; i < RT; ++i)
                _mm_prefetch(w.at(row0 + static_cast<size_t>(RT + i) * k + kk), _MM_HINT_T1);
        }
    }
    if constexpr (RT == 8 && MT == 1) {
        // Each row summed as reduce4_ps sums it (see block_sums4_ps): the same bits.
        const __m256 scale =
            row_scale != nullptr ? _mm256_loadu_ps(row_scale + r) : _mm256_set1_ps(1.f);
        _mm256_storeu_ps(y + static_cast<size_t>(m) * ldy + r,
                         _mm256_mul_ps(reduce8_ps(acc), scale));
    } else if constexpr (RT == 4) {
        // Per activation row, the four row sums as one vector (no trip through memory, which
        // would also keep GCC from holding acc in registers in the loop above).
        const __m128 scale = row_scale != nullptr ? _mm_loadu_ps(row_scale + r) : _mm_set1_ps(1.f);
#pragma GCC unroll 16
        for (int j = 0; j < MT; ++j) {
            const __m128 sums = reduce4_ps(acc[j], acc[MT + j], acc[2 * MT + j], acc[3 * MT + j]);
            _mm_storeu_ps(y + static_cast<size_t>(m + j) * ldy + r, _mm_mul_ps(sums, scale));
        }
    } else {
        // One sum at a time whatever MT is (reduce_all would pair four of them, which adds the
        // lanes in another order): a product's value must not depend on how many activation
        // rows share the call (see dense_gemm).
        for (int j = 0; j < MT; ++j) {
            float* yr = y + static_cast<size_t>(m + j) * ldy + r;
            for (int i = 0; i < RT; ++i) {
                const float sum = _mm512_reduce_add_ps(acc[i * MT + j]);
                yr[i] = row_scale != nullptr ? sum * row_scale[r + i] : sum;
            }
        }
    }
}

constexpr int kShortDenseRow = 512;

// One long-rowed product over a range of rows too large for the caches (a head streamed from
// memory), each row one chain of multiply-adds over its columns, without software prefetches.
// Zen 4: a row at a time, one sequential stream that the hardware prefetchers follow alone (four
// rows side by side with prefetches read 7-14% slower, an f16 2B head, 2026-11-27). Intel
// (weights_stream_wants_help): eight rows side by side, since a lone chain leaves the loads
// waiting on its latency; one core of the Emerald Rapids VM read a bf16 2B head at 6.0-6.3 GB/s
// a row at a time, 7.3-7.6 two rows, 8.7-9.6 four and 11.3-12.2 eight, against 12.6 for a bare
// read (2026-11-29). In cache, smaller ranges keep the tiles. Each row's chain, grouping and
// reduction are the ones dense_tile gives it (groups of four from r_begin, then single rows):
// the same bits, whichever path a range takes.
constexpr size_t kSequentialRowsMinBytes = size_t{8} << 20;

// Eight rows side by side also fetch each row's line this far ahead into L1, since the hardware
// prefetchers alone leave eight streams short of a bare read: a 2B with an f16 head generated
// 18.28 against 17.66 tok/s (medians of eleven pairs on the Emerald Rapids VM, 2026-11-29; single
// pairs went either way by up to 20%).
constexpr int kRowChainsAheadBytes = 320;

// acc[i] = the 16 lane sums of row r + i times x, each row its own chain in column order.
template <int N, typename W>
inline void dense_row_chains(const W& w, int k, int r, const float* x, __m512* acc) {
    const size_t row0 = static_cast<size_t>(r) * k;
    constexpr int kLineElems = 64 / static_cast<int>(W::kElemBytes);
    constexpr int kAhead = kRowChainsAheadBytes / static_cast<int>(W::kElemBytes);
#pragma GCC unroll 8
    for (int i = 0; i < N; ++i) acc[i] = _mm512_setzero_ps();
    for (int kk = 0; kk < k; kk += 16) {
        if (N == 8 && kk % kLineElems == 0 && kk + kAhead < k) {
#pragma GCC unroll 8
            for (int i = 0; i < N; ++i)
                _mm_prefetch(w.at(row0 + static_cast<size_t>(i) * k + kk + kAhead), _MM_HINT_T0);
        }
        const __mmask16 mask = mask16(k - kk);
        const __m512 xv = _mm512_maskz_loadu_ps(mask, x + kk);
#pragma GCC unroll 8
        for (int i = 0; i < N; ++i) {
            acc[i] =
                _mm512_fmadd_ps(w.load(row0 + static_cast<size_t>(i) * k + kk, mask), xv, acc[i]);
        }
    }
}

template <typename W>
void dense_rows_in_sequence(const W& w, int k, int r_begin, int r_end, const float* x,
                            const float* row_scale, float* y) {
    auto store4 = [&](int r, const __m512* acc) {
        const __m128 scale = row_scale != nullptr ? _mm_loadu_ps(row_scale + r) : _mm_set1_ps(1.f);
        _mm_storeu_ps(y + r, _mm_mul_ps(reduce4_ps(acc[0], acc[1], acc[2], acc[3]), scale));
    };
    __m512 acc[8];
    int r = r_begin;
    if (weights_stream_wants_help()) {
        for (; r + 8 <= r_end; r += 8) {
            dense_row_chains<8>(w, k, r, x, acc);
            store4(r, acc);
            store4(r + 4, acc + 4);
        }
    }
    for (; r + 4 <= r_end; r += 4) {
        for (int i = 0; i < 4; ++i) dense_row_chains<1>(w, k, r + i, x, acc + i);
        store4(r, acc);
    }
    for (; r < r_end; ++r) {
        dense_row_chains<1>(w, k, r, x, acc);
        const float sum = _mm512_reduce_add_ps(acc[0]);
        y[r] = row_scale != nullptr ? sum * row_scale[r] : sum;
    }
}

// Every activation row count sums each row alike (the same groups of four rows, the same
// single rows), so each y[m][r] comes out bit for bit the same whether its row was computed
// alone (decoding) or with others (a batch, or the verified drafts of speculative decoding,
// whose greedy output must equal plain decoding's). A single row costs no more this way: the
// tiles prefetch, and from memory they stream as fast as a row-at-a-time GEMV.
template <typename W>
void dense_gemm(const W& w, int k, int r_begin, int r_end, const float* x, int m, int ldx,
                const float* row_scale, float* y, int ldy) {
    // Callers pass row ranges, not the matrix, so no size tells whether the weights come from
    // memory; prefetching lines already in cache costs one instruction per line.
    auto tile = [&](auto rt, auto mt, int r, int m0) {
        constexpr int R = decltype(rt)::value, C = decltype(mt)::value;
        if (m0 == 0 && r + 2 * R <= r_end)
            return dense_tile<R, C, W, true>(w, k, r, x, m0, ldx, row_scale, y, ldy);
        return dense_tile<R, C, W>(w, k, r, x, m0, ldx, row_scale, y, ldy);
    };
    // One short-rowed product (a small model's head, in cache): four rows are four chains of
    // few multiply-adds each, waiting on one another; eight rows overlap twice as many. Rows
    // fall into the same groups of four and single rows as below, so the sums are the same.
    if (m == 1 && k <= kShortDenseRow) {
        int r = r_begin;
        for (; r + 8 <= r_end; r += 8) tile(Int<8>{}, Int<1>{}, r, 0);
        return for_tiles<4, 1>(r, r_end, 1, tile);
    }
    if (m == 1 &&
        static_cast<size_t>(r_end - r_begin) * k * W::kElemBytes >= kSequentialRowsMinBytes)
        return dense_rows_in_sequence(w, k, r_begin, r_end, x, row_scale, y);
    for_tiles<4, 4>(r_begin, r_end, m, tile);
}

// ---- dense row groups (a small head) ------------------------------------------------------

// Partial sums [8 h, 8 h + 8) of G row groups (group j's lines at lines + j * group_dwords) for
// one activation row x: line l of each 16-column chunk holds columns l P .. l P + P - 1, whose
// sums are l P + e. Each broadcast activation serves the G groups; with 8 sums a group, two
// groups fit the registers.
template <bool kBf16, int G>
__attribute__((always_inline)) inline void dense_group_half(const uint32_t* lines,
                                                            size_t group_dwords, int k,
                                                            const float* x, int h,
                                                            __m512 (*acc)[8]) {
    constexpr int P = kBf16 ? 2 : 1, kLines = 16 / P, kHalf = kLines / 2;
#pragma GCC unroll 2
    for (int j = 0; j < G; ++j) {
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) acc[j][i] = _mm512_setzero_ps();
    }
    for (int c = 0; c < k / 16; ++c) {
#pragma GCC unroll 8
        for (int l = h * kHalf; l < (h + 1) * kHalf; ++l) {
            __m512 w[G][P];
#pragma GCC unroll 2
            for (int j = 0; j < G; ++j) {
                const uint32_t* line = lines + j * group_dwords + (c * kLines + l) * 16;
                if constexpr (kBf16) {
                    const __m512i pairs = _mm512_loadu_si512(line);
                    w[j][0] = _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16));
                    w[j][1] =
                        _mm512_castsi512_ps(_mm512_and_si512(pairs, _mm512_set1_epi32(-65536)));
                } else {
                    w[j][0] = _mm512_loadu_ps(line);
                }
            }
#pragma GCC unroll 2
            for (int e = 0; e < P; ++e) {
                const __m512 xv = _mm512_set1_ps(x[c * 16 + l * P + e]);
#pragma GCC unroll 2
                for (int j = 0; j < G; ++j) {
                    const int s = l * P + e - 8 * h;
                    acc[j][s] = _mm512_fmadd_ps(w[j][e], xv, acc[j][s]);
                }
            }
        }
    }
}

// Rows of G groups from group g for activation row x into y (row 16 g at y[0]).
template <bool kBf16, int G>
inline void dense_groups_row(const uint32_t* groups, size_t group_dwords, int k, int g,
                             const float* x, float* y) {
    const uint32_t* lines = groups + static_cast<size_t>(g) * group_dwords;
    __m512 sums[2][G][8];
    dense_group_half<kBf16, G>(lines, group_dwords, k, x, 0, sums[0]);
    dense_group_half<kBf16, G>(lines, group_dwords, k, x, 1, sums[1]);
#pragma GCC unroll 2
    for (int j = 0; j < G; ++j) {
        __m512 s[16];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {
            s[i] = sums[0][j][i];
            s[i + 8] = sums[1][j][i];
        }
        // block_sums4_ps's order, then fold_blocks_ps's and reduce4_ps's.
        __m512 b[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {
            b[q] = _mm512_add_ps(_mm512_add_ps(s[4 * q], s[4 * q + 2]),
                                 _mm512_add_ps(s[4 * q + 1], s[4 * q + 3]));
        }
        _mm512_storeu_ps(y + j * kDenseGroupRows,
                         _mm512_add_ps(_mm512_add_ps(b[0], b[2]), _mm512_add_ps(b[1], b[3])));
    }
}

template <bool kBf16>
void dense_groups_impl(const void* groups, int k, int g_begin, int g_end, const float* x, int m,
                       int ldx, float* y, int ldy) {
    const uint32_t* lines = static_cast<const uint32_t*>(groups);
    const size_t group_dwords = static_cast<size_t>(k) * kDenseGroupRows / (kBf16 ? 2 : 1);
    for (int i = 0; i < m; ++i) {
        const float* xi = x + static_cast<size_t>(i) * ldx;
        float* yi = y + static_cast<size_t>(i) * ldy;
        int g = g_begin;
        for (; g + 2 <= g_end; g += 2)
            dense_groups_row<kBf16, 2>(lines, group_dwords, k, g, xi, yi + g * kDenseGroupRows);
        if (g < g_end)
            dense_groups_row<kBf16, 1>(lines, group_dwords, k, g, xi, yi + g * kDenseGroupRows);
    }
}

void dense_groups_gemm(const void* groups, bool bf16, int k, int g_begin, int g_end, const float* x,
                       int m, int ldx, float* y, int ldy) {
    if (bf16) return dense_groups_impl<true>(groups, k, g_begin, g_end, x, m, ldx, y, ldy);
    dense_groups_impl<false>(groups, k, g_begin, g_end, x, m, ldx, y, ldy);
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

// kPrefetch: fetch the weights of the following row tile (see dense_tile).
template <int RT, int MT, bool kPrefetch = false>
inline void q8_0_tile(const uint8_t* w, int k, int r, const float* x, int m, int ldx, float* y,
                      int ldy) {
    const size_t row_bytes = static_cast<size_t>(k) / kQ8Block * kQ8BlockBytes;
    const uint8_t* wr = w + static_cast<size_t>(r) * row_bytes;
    const float* xm = x + static_cast<size_t>(m) * ldx;
    __m512 acc[RT * MT];
    for (int i = 0; i < RT * MT; ++i) acc[i] = _mm512_setzero_ps();
    for (int b = 0; b < k / kQ8Block; ++b) {
        __m512 xlo[MT], xhi[MT];
        for (int j = 0; j < MT; ++j) {
            xlo[j] = _mm512_loadu_ps(xm + static_cast<size_t>(j) * ldx + b * kQ8Block);
            xhi[j] = _mm512_loadu_ps(xm + static_cast<size_t>(j) * ldx + b * kQ8Block + 16);
        }
        for (int i = 0; i < RT; ++i) {
            const uint8_t* block = wr + static_cast<size_t>(i) * row_bytes + b * kQ8BlockBytes;
            const __m512 d = _mm512_cvtph_ps(_mm256_set1_epi16(
                static_cast<short>(static_cast<uint16_t>(block[0] | (block[1] << 8)))));
            const __m512 qlo = _mm512_cvtepi32_ps(
                _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2))));
            const __m512 qhi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 18))));
            for (int j = 0; j < MT; ++j) {
                const __m512 t = _mm512_fmadd_ps(qhi, xhi[j], _mm512_mul_ps(qlo, xlo[j]));
                acc[i * MT + j] = _mm512_fmadd_ps(t, d, acc[i * MT + j]);
            }
        }
        // Last in the loop body and unconditional: otherwise GCC 12 keeps acc in memory.
        if constexpr (kPrefetch) {
            for (int i = 0; i < RT; ++i) {
                _mm_prefetch(
                    reinterpret_cast<const char*>(wr + (RT + i) * row_bytes + b * kQ8BlockBytes),
                    _MM_HINT_T1);
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
    // The same tiles for every activation row count, as in dense_gemm (row tails reduce one sum
    // at a time there too: reduce_all pairs four sums only for whole row tiles).
    auto tile = [&](auto rt, auto mt, int r, int m0) {
        constexpr int R = decltype(rt)::value, C = decltype(mt)::value;
        if (m0 == 0 && r + 2 * R <= r_end)
            return q8_0_tile<R, C, true>(w, k, r, x, m0, ldx, y, ldy);
        return q8_0_tile<R, C>(w, k, r, x, m0, ldx, y, ldy);
    };
    for_tiles<4, 2>(r_begin, r_end, m, tile);
}

// I8R on int8 activations. VNNI: vpdpbusd multiplies unsigned by signed bytes, so one side is
// offset by 128 (v ^ 0x80) and 128 times the other side's sum is subtracted at the end: exact
// for every int8 weight. The tiles offset the weights and subtract 128 * sum(x) of each
// activation row (x_sum, counted once per call), which leaves the loop only the products; the
// GEMV offsets the activations and counts sum(w) alongside with a second vpdpbusd. Without
// VNNI, vpmaddubsw takes |w| (unsigned, 128 included) and x with w's sign, whose pair sums stay
// within 16 bits because |x| <= 127. kPrefetch: fetch the weights of the following row tile
// (see dense_tile).
template <int RT, int MT, bool kPrefetch = false>
inline void i8r_tile(const int8_t* w, const float* row_scale, int k, int r, const int8_t* xq,
                     const float* x_scale, [[maybe_unused]] const int32_t* x_sum, int m, int ldx,
                     float* y, int ldy) {
    const int8_t* wr = w + static_cast<size_t>(r) * k;
    const int8_t* xm = xq + static_cast<size_t>(m) * ldx;
    __m512i acc[RT * MT];
    for (int i = 0; i < RT * MT; ++i) acc[i] = _mm512_setzero_si512();
#if BITNET_VNNI
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
#else
    const __m512i ones16 = _mm512_set1_epi16(1);
#endif
    for (int kk = 0; kk < k; kk += 64) {
        const __mmask64 mask =
            k - kk >= 64 ? ~static_cast<__mmask64>(0) : (static_cast<__mmask64>(1) << (k - kk)) - 1;
        __m512i xv[MT];
        for (int j = 0; j < MT; ++j)
            xv[j] = _mm512_maskz_loadu_epi8(mask, xm + static_cast<size_t>(j) * ldx + kk);
        for (int i = 0; i < RT; ++i) {
            const __m512i wv = _mm512_maskz_loadu_epi8(mask, wr + static_cast<size_t>(i) * k + kk);
#if BITNET_VNNI
            // Lanes past k hold 128 here, against activations loaded as 0.
            const __m512i wu = _mm512_xor_si512(wv, bias);
            for (int j = 0; j < MT; ++j)
                acc[i * MT + j] = _mm512_dpbusd_epi32(acc[i * MT + j], wu, xv[j]);
#else
            const __m512i wabs = _mm512_abs_epi8(wv);
            const __mmask64 neg = _mm512_movepi8_mask(wv);
            for (int j = 0; j < MT; ++j) {
                const __m512i xs = _mm512_mask_sub_epi8(xv[j], neg, _mm512_setzero_si512(), xv[j]);
                acc[i * MT + j] = _mm512_add_epi32(
                    acc[i * MT + j], _mm512_madd_epi16(_mm512_maddubs_epi16(wabs, xs), ones16));
            }
#endif
        }
        // Last in the loop body and unconditional: otherwise GCC 12 keeps acc in memory.
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
        for (int i = 0; i < RT; ++i) {
#if BITNET_VNNI
            const int32_t dot = dots[i * MT + j] - x_sum[m + j] * 128;
#else
            const int32_t dot = dots[i * MT + j];
#endif
            yr[i] = (static_cast<float>(dot) * row_scale[r + i]) * x_scale[m + j];
        }
    }
}

// Lane sums of one row's exact int8 dot product with xq (see i8r_tile for both methods), in
// two chains of 64 columns each. The chains are named, not indexed by the parity of the step:
// GCC 12 kept an indexed pair on the stack, a store and a reload around every vpdpbusd, which
// halved the rate of a head in cache (a 2B head from memory is bound by the reads either way).
inline __m512i i8r_row(const int8_t* wr, int k, const int8_t* xq) {
    __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
    [[maybe_unused]] __m512i wsum0 = _mm512_setzero_si512(), wsum1 = _mm512_setzero_si512();
#if BITNET_VNNI
    const __m512i ones = _mm512_set1_epi8(1);
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
#else
    const __m512i ones16 = _mm512_set1_epi16(1);
#endif
    auto step = [&](int kk, __m512i& acc, [[maybe_unused]] __m512i& wsum)
        __attribute__((always_inline)) {
        const __mmask64 mask = mask64(k - kk);
        const __m512i wv = _mm512_maskz_loadu_epi8(mask, wr + kk);
        const __m512i xv = _mm512_maskz_loadu_epi8(mask, xq + kk);
#if BITNET_VNNI
        wsum = _mm512_dpbusd_epi32(wsum, ones, wv);
        acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(xv, bias), wv);
#else
        const __m512i xs =
            _mm512_mask_sub_epi8(xv, _mm512_movepi8_mask(wv), _mm512_setzero_si512(), xv);
        acc = _mm512_add_epi32(
            acc, _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(wv), xs), ones16));
#endif
    };
    int kk = 0;
    for (; kk + 128 <= k; kk += 128) {
        step(kk, acc0, wsum0);
        step(kk + 64, acc1, wsum1);
    }
    if (kk < k) step(kk, acc0, wsum0);
    if (kk + 64 < k) step(kk + 64, acc1, wsum1);
    const __m512i dot = _mm512_add_epi32(acc0, acc1);
#if BITNET_VNNI
    return _mm512_sub_epi32(dot, _mm512_slli_epi32(_mm512_add_epi32(wsum0, wsum1), 7));
#else
    return dot;
#endif
}

#if BITNET_VNNI
// Lane sums of N rows from r side by side, one chain each (i8r_row's exact dot products), each
// activation load serving the N rows: see ternary5_rows.
template <int N>
inline void i8r_rows(const int8_t* w, int k, int r, const int8_t* xq, __m512i* lanes) {
    const __m512i ones = _mm512_set1_epi8(1);
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    __m512i acc[N], wsum[N];
#pragma GCC unroll 8
    for (int i = 0; i < N; ++i) acc[i] = wsum[i] = _mm512_setzero_si512();
    const int8_t* wr = w + static_cast<size_t>(r) * k;
    for (int kk = 0; kk < k; kk += 64) {
        const __mmask64 mask = mask64(k - kk);
        const __m512i xb = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, xq + kk), bias);
        // As in ternary5_rows: N lines a 64-column step, two groups of rows ahead.
        prefetch_tile_ahead<N>(reinterpret_cast<const uint8_t*>(wr), static_cast<size_t>(k),
                               kk / 64);
#pragma GCC unroll 8
        for (int i = 0; i < N; ++i) {
            const __m512i wv = _mm512_maskz_loadu_epi8(mask, wr + static_cast<size_t>(i) * k + kk);
            wsum[i] = _mm512_dpbusd_epi32(wsum[i], ones, wv);
            acc[i] = _mm512_dpbusd_epi32(acc[i], xb, wv);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < N; ++i) lanes[i] = _mm512_sub_epi32(acc[i], _mm512_slli_epi32(wsum[i], 7));
}
#endif

void int8_gemv_i8r(const int8_t* w, const float* row_scale, int k, int r_begin, int r_end,
                   const int8_t* xq, float x_scale, float* y) {
    int r = r_begin;
#if BITNET_VNNI
    const bool side_by_side = weights_stream_wants_help();
#else
    constexpr bool side_by_side = false;
#endif
    for (; r + 8 <= r_end; r += 8) {
        __m512i acc[8];
        if (side_by_side) {
#if BITNET_VNNI
            i8r_rows<8>(w, k, r, xq, acc);
#endif
        } else {
            for (int i = 0; i < 8; ++i) acc[i] = i8r_row(w + static_cast<size_t>(r + i) * k, k, xq);
        }
        const __m256 v =
            _mm256_mul_ps(_mm256_cvtepi32_ps(reduce8_epi32(acc)), _mm256_loadu_ps(row_scale + r));
        _mm256_storeu_ps(y + r, _mm256_mul_ps(v, _mm256_set1_ps(x_scale)));
    }
    for (; r < r_end; ++r) {
        const int32_t dot = _mm512_reduce_add_epi32(i8r_row(w + static_cast<size_t>(r) * k, k, xq));
        y[r] = (static_cast<float>(dot) * row_scale[r]) * x_scale;
    }
}

void int8_gemm_i8r(const int8_t* w, const float* row_scale, int k, int r_begin, int r_end,
                   const int8_t* xq, const float* x_scale, int m, int ldx, float* y, int ldy) {
    if (m == 1) return int8_gemv_i8r(w, row_scale, k, r_begin, r_end, xq, x_scale[0], y);
    // Activation rows in groups whose sums fit on the stack (one group for any decode batch).
    constexpr int kGroup = 256;
    int32_t x_sum[kGroup];
    for (int m0 = 0; m0 < m; m0 += kGroup) {
        const int n = m - m0 < kGroup ? m - m0 : kGroup;
        const int8_t* xg = xq + static_cast<size_t>(m0) * ldx;
#if BITNET_VNNI
        for (int j = 0; j < n; ++j) {
            __m512i sum = _mm512_setzero_si512();
            for (int kk = 0; kk < k; kk += 64) {
                const __mmask64 mask = k - kk >= 64 ? ~static_cast<__mmask64>(0)
                                                    : (static_cast<__mmask64>(1) << (k - kk)) - 1;
                sum = _mm512_dpbusd_epi32(
                    sum, _mm512_set1_epi8(1),
                    _mm512_maskz_loadu_epi8(mask, xg + static_cast<size_t>(j) * ldx + kk));
            }
            x_sum[j] = _mm512_reduce_add_epi32(sum);
        }
#endif
        // As in dense_gemm: the first activation tile of a row tile fetches the next one's.
        auto tile = [&](auto rt, auto mt, int r, int mt0) {
            constexpr int R = decltype(rt)::value, C = decltype(mt)::value;
            if (mt0 == 0 && r + 2 * R <= r_end) {
                return i8r_tile<R, C, true>(w, row_scale, k, r, xg, x_scale + m0, x_sum, mt0, ldx,
                                            y + static_cast<size_t>(m0) * ldy, ldy);
            }
            i8r_tile<R, C>(w, row_scale, k, r, xg, x_scale + m0, x_sum, mt0, ldx,
                           y + static_cast<size_t>(m0) * ldy, ldy);
        };
        for_tiles<4, 4>(r_begin, r_end, n, tile);
    }
}

// ---- element-wise kernels -------------------------------------------------------------------

// exp(x) for x <= 0 (softmax after the max shift, sigmoid of -|g|), within about 1 ulp.
// x = n ln2 + r with |r| <= ln2 / 2; exp(r) by its degree-7 Taylor polynomial (truncation
// error below 1e-8 relative). 2^n is applied as 2^(n + 64) * 2^-64 so that results in the
// subnormal range are rounded once, like expf. Inputs below -110 (and -inf) give 0.
inline __m512 exp_nonpos(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-110.f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693147182464599609375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-1.904654299957768e-9f), r);
    __m512 p = _mm512_set1_ps(1.f / 5040.f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    const __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127 + 64)), 23);
    return _mm512_mul_ps(_mm512_mul_ps(p, _mm512_castsi512_ps(e)), _mm512_set1_ps(0x1p-64f));
}

// 1 / sqrt(mean(x^2) + eps), the factor of rms_norm.
inline float rms_inverse(const float* x, int n, float eps) {
    __m512 ss0 = _mm512_setzero_ps();
    __m512 ss1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 a = _mm512_loadu_ps(x + i);
        const __m512 b = _mm512_loadu_ps(x + i + 16);
        ss0 = _mm512_fmadd_ps(a, a, ss0);
        ss1 = _mm512_fmadd_ps(b, b, ss1);
    }
    for (; i < n; i += 16) {
        const __m512 a = _mm512_maskz_loadu_ps(mask16(n - i), x + i);
        ss0 = _mm512_fmadd_ps(a, a, ss0);
    }
    const float ss = _mm512_reduce_add_ps(_mm512_add_ps(ss0, ss1));
    return 1.f / sqrtf(ss / static_cast<float>(n) + eps);
}

// rms_norm's 16 outputs at i.
inline __m512 normed(const float* x, const float* w, __m512 inv, int i, __mmask16 m) {
    return _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + i),
                         _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
}

void rms_norm(const float* x, const float* w, int n, float eps, float* out) {
    const __m512 inv = _mm512_set1_ps(rms_inverse(x, n, eps));
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        _mm512_mask_storeu_ps(out + i, m, normed(x, w, inv, i, m));
    }
}

float rms_norm_quantize_i8(const float* x, const float* w, int n, float eps, int n_pad, int8_t* q,
                           int32_t* sum) {
    const __m512 inv = _mm512_set1_ps(rms_inverse(x, n, eps));
    return quantize_values(n, n_pad, q, sum,
                           [&](int i, __mmask16 m) { return normed(x, w, inv, i, m); });
}

void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; ++h) {
        float* v = x + static_cast<size_t>(h) * head_dim;
        for (int i = 0; i < half; i += 16) {
            const __mmask16 m = mask16(half - i);
            const __m512 x1 = _mm512_maskz_loadu_ps(m, v + i);
            const __m512 x2 = _mm512_maskz_loadu_ps(m, v + half + i);
            const __m512 c = _mm512_maskz_loadu_ps(m, cos + i);
            const __m512 s = _mm512_maskz_loadu_ps(m, sin + i);
            _mm512_mask_storeu_ps(v + i, m, _mm512_fmsub_ps(x1, c, _mm512_mul_ps(x2, s)));
            _mm512_mask_storeu_ps(v + half + i, m, _mm512_fmadd_ps(x2, c, _mm512_mul_ps(x1, s)));
        }
    }
}

// softmax, then each result times post[i] when kPost (one more rounding, as a separate pass
// would round it; I8 caches' value scales), and the largest result of each kInt8ValueChunk in
// chunk_max (the int8 value sums' c, see AttentionHeadArgs: one pass fewer over the weights).
template <bool kPost>
inline void softmax_impl(float* x, int n, [[maybe_unused]] const float* post,
                         [[maybe_unused]] float* chunk_max) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < n; i += 16) {
        vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(vmax, mask16(n - i), x + i));
    }
    const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 vsum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        const __m512 e = exp_nonpos(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mx));
        vsum = _mm512_add_ps(vsum, _mm512_maskz_mov_ps(m, e));
        _mm512_mask_storeu_ps(x + i, m, e);
    }
    const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(vsum));
    if constexpr (kPost) {
        static_assert(kInt8ValueChunk % 16 == 0);
        for (int c0 = 0; c0 < n; c0 += kInt8ValueChunk) {
            const int c1 = min_int(n, c0 + kInt8ValueChunk);
            __m512 largest = _mm512_setzero_ps();
            for (int i = c0; i < c1; i += 16) {
                const __mmask16 m = mask16(c1 - i);
                const __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv),
                                               _mm512_maskz_loadu_ps(m, post + i));
                largest = _mm512_max_ps(largest, _mm512_maskz_mov_ps(m, y));
                _mm512_mask_storeu_ps(x + i, m, y);
            }
            chunk_max[c0 / kInt8ValueChunk] = _mm512_reduce_max_ps(largest);
        }
    } else {
        for (int i = 0; i < n; i += 16) {
            const __mmask16 m = mask16(n - i);
            _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
        }
    }
}

void softmax(float* x, int n) {
    softmax_impl<false>(x, n, nullptr, nullptr);
}

void relu2_mul(const float* g, const float* u, float* out, int n) {
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        const __m512 r = _mm512_max_ps(_mm512_maskz_loadu_ps(m, g + i), _mm512_setzero_ps());
        const __m512 v = _mm512_mul_ps(_mm512_mul_ps(r, r), _mm512_maskz_loadu_ps(m, u + i));
        _mm512_mask_storeu_ps(out + i, m, v);
    }
}

// silu(g) = g * sigmoid(g), with sigmoid from e = exp(-|g|) <= 1 so nothing overflows:
// sigmoid(g) = 1 / (1 + e) for g >= 0 and e / (1 + e) otherwise.
void silu_mul(const float* g, const float* u, float* out, int n) {
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m512 one = _mm512_set1_ps(1.f);
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
        const __m512 e =
            exp_nonpos(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_and_ps(gv, abs_mask)));
        const __mmask16 neg = _mm512_cmp_ps_mask(gv, _mm512_setzero_ps(), _CMP_LT_OQ);
        const __m512 sig = _mm512_div_ps(_mm512_mask_mov_ps(one, neg, e), _mm512_add_ps(one, e));
        const __m512 v = _mm512_mul_ps(_mm512_mul_ps(gv, sig), _mm512_maskz_loadu_ps(m, u + i));
        _mm512_mask_storeu_ps(out + i, m, v);
    }
}

// ---- attention ------------------------------------------------------------------------------

template <KvType T>
inline __m512 load_kv(const void* base, size_t off, __mmask16 m) {
    if constexpr (T == KvType::F32) {
        return _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + off);
    } else if constexpr (T == KvType::F16) {
        return _mm512_cvtph_ps(
            _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + off));
    } else {
        static_assert(T == KvType::BF16, "I8 keys and values have passes of their own");
        return bf16x16_to_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + off));
    }
}

// bf16 keys and values are read a 64-byte line (32 dimensions) at a time and widened with a
// shift (the low halves: even dimensions) and an AND (the high halves: odd dimensions). That is
// two simple vector operations a line, where widening 16 dimensions at a time takes a
// zero-extending shuffle and a shift, and the shuffles bound a small model's attention over
// caches in L2. A score pass therefore meets the dimensions of each line in split order (the
// query is split alike, split_queries), and the value pass interleaves its sums when it stores
// them, so the outputs keep the bits of the plain widening.
constexpr bool split_pairs(KvType t) {
    return t == KvType::BF16;
}

// Lanes [0, n) of a 32-lane mask; n may exceed 32 or be negative.
inline __mmask32 mask32(int n) {
    if (n <= 0) return 0;
    return n >= 32 ? ~static_cast<__mmask32>(0) : (static_cast<__mmask32>(1) << n) - 1;
}

// The dimensions a score pass runs over: head_dim, or for split types whole lines.
template <KvType T>
inline int score_dims(int head_dim) {
    return split_pairs(T) ? (head_dim + 31) & ~31 : head_dim;
}

// A split type's line of 32 dimensions at element offset `at`, lanes past `mask` 0, and its
// even dimensions (the low halves) and odd ones (the high halves) as floats.
inline __m512i load_line(const void* base, size_t at, __mmask32 mask) {
    return _mm512_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(base) + at);
}
inline __m512 even_dims(__m512i line) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(line, 16));
}
inline __m512 odd_dims(__m512i line) {
    return _mm512_castsi512_ps(_mm512_and_si512(line, _mm512_set1_epi32(-65536)));
}

// n queries of head_dim values (stride head_dim) in the split order of load_line: per line of 32
// dimensions, the 16 even ones, then the 16 odd ones; `out` holds score_dims values a query,
// zero past head_dim.
inline void split_queries(const float* q, int n, int head_dim, float* out) {
    const __m512i even =
        _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const int dims = score_dims<KvType::BF16>(head_dim);
    for (int i = 0; i < n; ++i) {
        const float* qi = q + static_cast<size_t>(i) * head_dim;
        float* oi = out + static_cast<size_t>(i) * dims;
        for (int d = 0; d < dims; d += 32) {
            const __m512 lo = _mm512_maskz_loadu_ps(mask16(head_dim - d), qi + d);
            const __m512 hi = _mm512_maskz_loadu_ps(mask16(head_dim - d - 16), qi + d + 16);
            _mm512_storeu_ps(oi + d, _mm512_permutex2var_ps(lo, even, hi));
            _mm512_storeu_ps(oi + d + 16, _mm512_permutex2var_ps(lo, odd, hi));
        }
    }
}

// Keys ahead of the one in work whose rows are fetched into L2: the hardware prefetchers
// alone read a decoding batch's caches at about 40% of the rate a plain read reaches. Into L2
// (T1) and 32 keys ahead measured best (20-22 ms against 27 ms for T0 at 16 keys and 33 ms
// without, for 8 sequences' caches at 228 keys, one thread).
constexpr int kKvPrefetchKeys = 32;

// Prefetches the cache lines of rows [p, p + n) of a KV plane, clamped to the keys that exist.
template <KvType T>
inline void prefetch_kv_rows(const AttentionHeadArgs& a, const void* base, int p, int n) {
    const int end = min_int(p + n, a.n_keys);
    const size_t elem = kv_elem_bytes(T);
    const size_t row_bytes = static_cast<size_t>(a.head_dim) * elem;
    for (int r = p; r < end; ++r) {
        const char* row =
            static_cast<const char*>(base) + static_cast<size_t>(r) * a.row_stride * elem;
        for (size_t off = 0; off < row_bytes; off += 64) _mm_prefetch(row + off, _MM_HINT_T1);
    }
}

// Queries a kernel pass holds in registers; more take turns, each turn reading the keys and
// values again (from L2 by then).
constexpr int kQueriesPerPass = 4;

// The scores of Q queries (q, s: the first one's query and score row) for keys
// [p0, p0 + N): s_i[p] = scale * dot(q_i, k_p). Keys load once for all Q queries.
// N = 8 and N = 4 (and score_tile16_short's 16) reduce each key alike (see block_sums4_ps), so
// the canonical split of the keys (groups of four, then single keys) gives every query the same
// bits whatever Q is and whichever N covers a group.
template <KvType T, int Q, int N, bool kPrefetch>
__attribute__((always_inline)) inline void score_tile(const AttentionHeadArgs& a, const float* q,
                                                      float* s, int p0) {
    if constexpr (kPrefetch) prefetch_kv_rows<T>(a, a.k, p0 + kKvPrefetchKeys, N);
    const int dims = score_dims<T>(a.head_dim);
    const size_t qstride = static_cast<size_t>(dims), n = static_cast<size_t>(a.n_keys);
    __m512 acc[Q][N];
#pragma GCC unroll 16
    for (int i = 0; i < Q; ++i) {
#pragma GCC unroll 16
        for (int j = 0; j < N; ++j) acc[i][j] = _mm512_setzero_ps();
    }
    const size_t stride = a.row_stride;
    const void* const k = a.k;
    // Every query's sums add the 16-wide chunk at d of each key.
    auto add_chunk = [&](int d, const __m512* kv) __attribute__((always_inline)) {
        const __mmask16 m = mask16(dims - d);
#pragma GCC unroll 16
        for (int i = 0; i < Q; ++i) {
            const __m512 qv = _mm512_maskz_loadu_ps(m, q + i * qstride + d);
#pragma GCC unroll 16
            for (int j = 0; j < N; ++j) acc[i][j] = _mm512_fmadd_ps(qv, kv[j], acc[i][j]);
        }
    };
    if constexpr (split_pairs(T)) {
        for (int d = 0; d < dims; d += 32) {
            const __mmask32 lm = mask32(a.head_dim - d);
            __m512 even[N], odd[N];
#pragma GCC unroll 16
            for (int j = 0; j < N; ++j) {
                const __m512i line = load_line(k, static_cast<size_t>(p0 + j) * stride + d, lm);
                even[j] = even_dims(line);
                odd[j] = odd_dims(line);
            }
            add_chunk(d, even);
            add_chunk(d + 16, odd);
        }
    } else {
        for (int d = 0; d < dims; d += 16) {
            const __mmask16 m = mask16(a.head_dim - d);
            __m512 kv[N];
#pragma GCC unroll 16
            for (int j = 0; j < N; ++j)
                kv[j] = load_kv<T>(k, static_cast<size_t>(p0 + j) * stride + d, m);
            add_chunk(d, kv);
        }
    }
    const __m128 scale = _mm_set1_ps(a.scale);
#pragma GCC unroll 16
    for (int i = 0; i < Q; ++i) {
        float* out = s + i * n + p0;
        if constexpr (N == 8) {
            _mm256_storeu_ps(out, _mm256_mul_ps(reduce8_ps(acc[i]), _mm256_set1_ps(a.scale)));
        } else if constexpr (N == 4) {
            _mm_storeu_ps(
                out, _mm_mul_ps(reduce4_ps(acc[i][0], acc[i][1], acc[i][2], acc[i][3]), scale));
        } else {
            out[0] = _mm512_reduce_add_ps(acc[i][0]) * a.scale;
        }
    }
}

// Keys [p, n) after the larger tiles: the canonical split's groups of four, then the n mod 4
// last keys one by one (see score_tile).
template <KvType T, int Q>
inline void score_rest(const AttentionHeadArgs& a, const float* q, float* s, int p) {
    for (; p + 4 <= a.n_keys; p += 4) score_tile<T, Q, 4, false>(a, q, s, p);
    for (; p < a.n_keys; ++p) score_tile<T, Q, 1, false>(a, q, s, p);
}

// A lone query's scores for keys [p0, p0 + 16) when the head has at most 16 DC dimensions: the
// query stays in DC registers and the keys load one after another, so one row address is live
// (a chunk-major tile of 16 keys keeps 16, and GCC spills them). Each key adds its chunks in
// score_tile's order, so the bits are the same.
template <KvType T, int DC, bool kPrefetch>
__attribute__((always_inline)) inline void score_tile16_short(const AttentionHeadArgs& a,
                                                              const __m512* qv, const __mmask16* km,
                                                              const __mmask32* lm, float* s,
                                                              int p0) {
    if constexpr (kPrefetch) prefetch_kv_rows<T>(a, a.k, p0 + kKvPrefetchKeys, 16);
    const size_t stride = a.row_stride;
    const void* const k = a.k;
    __m512 acc[16];
    size_t row = static_cast<size_t>(p0) * stride;
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j, row += stride) {
        acc[j] = _mm512_setzero_ps();
        if constexpr (split_pairs(T)) {
#pragma GCC unroll 4
            for (int c = 0; c < DC; c += 2) {  // the even chunk and the odd one of a line
                const __m512i line = load_line(k, row + 16 * c, lm[c / 2]);
                acc[j] = _mm512_fmadd_ps(qv[c], even_dims(line), acc[j]);
                acc[j] = _mm512_fmadd_ps(qv[c + 1], odd_dims(line), acc[j]);
            }
        } else {
#pragma GCC unroll 4
            for (int c = 0; c < DC; ++c)
                acc[j] = _mm512_fmadd_ps(qv[c], load_kv<T>(k, row + 16 * c, km[c]), acc[j]);
        }
    }
    _mm512_storeu_ps(s + p0, _mm512_mul_ps(reduce16_ps(acc), _mm512_set1_ps(a.scale)));
}

template <KvType T, int DC>
inline void score_keys_short(const AttentionHeadArgs& a, const float* q, float* s, bool prefetch) {
    const int dims = score_dims<T>(a.head_dim);
    __m512 qv[DC];
    __mmask16 km[DC];          // each chunk's
    __mmask32 lm[DC / 2 + 1];  // split types: each line's
#pragma GCC unroll 4
    for (int c = 0; c < DC; ++c) {
        qv[c] = _mm512_maskz_loadu_ps(mask16(dims - 16 * c), q + 16 * c);
        km[c] = mask16(a.head_dim - 16 * c);
        lm[c / 2] = mask32(a.head_dim - 32 * (c / 2));
    }
    int p = 0;
    if (prefetch) {
        for (; p + 16 <= a.n_keys; p += 16) score_tile16_short<T, DC, true>(a, qv, km, lm, s, p);
    } else {
        for (; p + 16 <= a.n_keys; p += 16) score_tile16_short<T, DC, false>(a, qv, km, lm, s, p);
    }
    score_rest<T, 1>(a, q, s, p);
}

// Keys [0, n) in tiles of N, the rest in the canonical groups (see score_tile).
template <KvType T, int Q, int N>
inline void score_keys(const AttentionHeadArgs& a, const float* q, float* s, bool prefetch) {
    int p = 0;
    if (prefetch) {
        for (; p + N <= a.n_keys; p += N) score_tile<T, Q, N, true>(a, q, s, p);
    } else {
        for (; p + N <= a.n_keys; p += N) score_tile<T, Q, N, false>(a, q, s, p);
    }
    score_rest<T, Q>(a, q, s, p);
}

// Scores of Q queries over every key: groups of four keys, then the n mod 4 last keys one by
// one. A lone query takes 16 keys at a time for heads of 17-32 dimensions (1.4x at 32
// dimensions and 64 keys; only that size is built, since each size is a large unrolled function
// that more than doubled the sanitizer builds' compile time) and eight above 64 dimensions
// (faster there than four).
template <KvType T, int Q>
inline void score_pass(const AttentionHeadArgs& a, const float* q, float* s, bool prefetch) {
    if constexpr (Q == 1) {
        const int dims = score_dims<T>(a.head_dim);
        if (dims > 16 && dims <= 32) return score_keys_short<T, 2>(a, q, s, prefetch);
        if (a.head_dim <= 64) return score_keys<T, 1, 4>(a, q, s, prefetch);
        return score_keys<T, 1, 8>(a, q, s, prefetch);
    } else {
        return score_keys<T, Q, 4>(a, q, s, prefetch);
    }
}

// out_i[d0 .. d0 + 16 SB) = sum_p w_i[p] * v_p for Q queries (w: the first one's softmax row):
// SB 16-wide slices in registers, U keys in flight so that the FMA chains overlap, each value
// slice loaded once for all Q queries. Every query adds in the same order whatever Q and SB
// are (key p into chain p mod U, the n mod U last keys into chain 0, chains summed in order),
// so its result does not depend on how many queries share the pass.
template <KvType T, int Q, int U, int SB>
inline void value_pass(const AttentionHeadArgs& a, const float* w, float* out, int d0,
                       bool prefetch) {
    const size_t hd = static_cast<size_t>(a.head_dim), n = static_cast<size_t>(a.n_keys);
    __mmask16 m[SB];
#pragma GCC unroll 16
    for (int s = 0; s < SB; ++s) m[s] = mask16(a.head_dim - d0 - 16 * s);
    __mmask32 line_mask[SB / 2 + 1];  // split types: the line of slices 2j and 2j + 1
#pragma GCC unroll 8
    for (int j = 0; j < SB / 2; ++j) line_mask[j] = mask32(a.head_dim - d0 - 32 * j);
    __m512 acc[Q][U][SB];
#pragma GCC unroll 16
    for (int i = 0; i < Q; ++i) {
#pragma GCC unroll 16
        for (int u = 0; u < U; ++u) {
#pragma GCC unroll 16
            for (int s = 0; s < SB; ++s) acc[i][u][s] = _mm512_setzero_ps();
        }
    }
    // Locals: read through `a` inside the loop, they were loaded again for every key.
    const size_t stride = a.row_stride;
    const void* const v = a.v;
    // Inlined by force: the split pairs' code made GCC call it for every key.
    auto key = [&](int u, int p) __attribute__((always_inline)) {
        const size_t row = static_cast<size_t>(p) * stride + d0;
        __m512 vv[SB];
        if constexpr (split_pairs(T)) {
            // Slices 2j and 2j + 1 from one line: the even and the odd dimensions; an odd last
            // slice alone.
#pragma GCC unroll 8
            for (int j = 0; j < SB / 2; ++j) {
                const __m512i line = load_line(v, row + 32 * j, line_mask[j]);
                vv[2 * j] = even_dims(line);
                vv[2 * j + 1] = odd_dims(line);
            }
            if constexpr (SB % 2 != 0) vv[SB - 1] = load_kv<T>(v, row + 16 * (SB - 1), m[SB - 1]);
        } else {
#pragma GCC unroll 16
            for (int s = 0; s < SB; ++s) vv[s] = load_kv<T>(v, row + 16 * s, m[s]);
        }
#pragma GCC unroll 16
        for (int i = 0; i < Q; ++i) {
            const __m512 pw = _mm512_set1_ps(w[i * n + p]);
#pragma GCC unroll 16
            for (int s = 0; s < SB; ++s) acc[i][u][s] = _mm512_fmadd_ps(pw, vv[s], acc[i][u][s]);
        }
    };
    const int main_end = a.n_keys - a.n_keys % U;
    auto keys = [&](auto fetch) {
        for (int p = 0; p < main_end; p += U) {
#pragma GCC unroll 16
            for (int u = 0; u < U; ++u) key(u, p + u);
            if constexpr (decltype(fetch)::value != 0)
                prefetch_kv_rows<T>(a, a.v, p + kKvPrefetchKeys, U);
        }
    };
    if (prefetch) {
        keys(Int<1>{});
    } else {
        keys(Int<0>{});
    }
    for (int p = main_end; p < a.n_keys; ++p) {
        key(0, p);
    }
    // Unrolled: an indexed acc would stay in memory, stored after every FMA above.
#pragma GCC unroll 4
    for (int i = 0; i < Q; ++i) {
        __m512 sum[SB];
#pragma GCC unroll 8
        for (int s = 0; s < SB; ++s) {
            sum[s] = acc[i][0][s];
#pragma GCC unroll 4
            for (int u = 1; u < U; ++u) sum[s] = _mm512_add_ps(sum[s], acc[i][u][s]);
        }
        if constexpr (split_pairs(T)) {
            const __m512i first =
                _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
            const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(8));
#pragma GCC unroll 8
            for (int j = 0; j < SB / 2; ++j) {
                const __m512 even = sum[2 * j], odd = sum[2 * j + 1];
                sum[2 * j] = _mm512_permutex2var_ps(even, first, odd);
                sum[2 * j + 1] = _mm512_permutex2var_ps(even, second, odd);
            }
        }
#pragma GCC unroll 8
        for (int s = 0; s < SB; ++s)
            _mm512_mask_storeu_ps(out + i * hd + d0 + 16 * s, m[s], sum[s]);
    }
}

// A pass of at most SB slices, no wider than the slices left: masked-off slices still cost
// their loads and multiply-adds.
template <KvType T, int Q, int U, int SB>
inline void value_pass_fit(const AttentionHeadArgs& a, const float* w, float* out, int d0,
                           bool prefetch, int slices_left) {
    if constexpr (SB > 1) {
        if (slices_left < SB)
            return value_pass_fit<T, Q, U, SB - 1>(a, w, out, d0, prefetch, slices_left);
    }
    value_pass<T, Q, U, SB>(a, w, out, d0, prefetch);
}

// Four chains for heads of up to 64 dimensions (few slices, so more keys in flight), two above;
// as many slices a pass as leave 16 accumulators.
template <KvType T, int Q, int U>
inline void value_passes(const AttentionHeadArgs& a, const float* w, float* out, bool prefetch) {
    constexpr int kSlices = 16 / (Q * U) > 0 ? 16 / (Q * U) : 1;
    for (int d0 = 0; d0 < a.head_dim; d0 += 16 * kSlices) {
        value_pass_fit<T, Q, U, kSlices>(a, w, out, d0, prefetch && d0 == 0,
                                         (a.head_dim - d0 + 15) / 16);
    }
}

// Fetches [from, from + n) of a plane into L2, as far as `end` (its bytes in use).
inline void prefetch_plane_bytes(const void* plane, size_t from, size_t n, size_t end) {
    const char* base = static_cast<const char*>(plane);
    for (size_t off = from; off < from + n && off < end; off += 64)
        _mm_prefetch(base + off, _MM_HINT_T1);
}

// I8 scores (see AttentionHeadArgs), (float(dot(q8, k[p])) * scale / s_q) * k_scale[p], a tile
// of sixteen keys at a time (int8_kv_layout.h): a quad of q8 broadcast times a line of the tile
// adds four dimensions' products into each key's lane, with nothing to reduce across lanes.
// With VNNI a vpdpbusd takes the keys made unsigned (an XOR adds 128) and the quad, less
// 128 sum(q8) after; without it, |q8| times k8 with q8's sign goes into int16 pairs (at most
// 2 x 127 x 128) and int32 lanes. The sums are exact, so the bits are the scalar level's.
inline void int8_scores(const AttentionHeadArgs& a, const float* q, float* s, bool prefetch) {
    const int hd = a.head_dim, quads = int8_key_dims(hd) / 4;
    const int padded = (hd + 63) & ~63;  // whole stores (see quantize_values)
    alignas(64) int8_t on_stack[512];
    std::vector<int8_t> on_heap(hd > 512 ? padded : 0);
    int8_t* q8 = on_heap.empty() ? on_stack : on_heap.data();
    int32_t q_sum = 0;
    const float qd = a.scale / quantize_row_i8(q, hd, padded, q8, &q_sum);
    const size_t tile_bytes = int8_key_tile_bytes(hd);
    const size_t used = int8_plane_bytes(a.n_keys, hd);
    const int8_t* const k = static_cast<const int8_t*>(a.k);
#if BITNET_VNNI
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    const __m512i offset = _mm512_set1_epi32(128 * q_sum);  // what the keys' +128 added
#else
    const __m512i ones16 = _mm512_set1_epi16(1);
    const __m512i offset = _mm512_setzero_si512();
#endif
    auto quad = [&](int j) __attribute__((always_inline)) {
        int32_t four;
        memcpy(&four, q8 + 4 * j, sizeof four);
        return _mm512_set1_epi32(four);
    };
    // acc + the products of a line of keys with the quad of the query broadcast in qv.
    auto add_products = [&](__m512i acc, const int8_t* line, __m512i qv)
        __attribute__((always_inline)) {
        const __m512i kv = _mm512_loadu_si512(line);
#if BITNET_VNNI
        return _mm512_dpbusd_epi32(acc, _mm512_xor_si512(kv, bias), qv);
#else
        const __m512i signed_k =
            _mm512_mask_sub_epi8(kv, _mm512_movepi8_mask(qv), _mm512_setzero_si512(), kv);
        const __m512i pairs = _mm512_maddubs_epi16(_mm512_abs_epi8(qv), signed_k);
        return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, ones16));
#endif
    };
    const __m512 sq = _mm512_set1_ps(qd);
    // Tiles of kQuads quads (0: `quads`, known at run time only). Four chains, so that a long
    // head's multiply-adds overlap within a tile; the tail's chains are named, not indexed, which
    // kept all four on the stack.
    auto tiles = [&](auto known) __attribute__((always_inline)) {
        constexpr int kQuads = decltype(known)::value;
        const int n_quads = kQuads > 0 ? kQuads : quads;
        for (int p = 0; p < a.n_keys; p += kInt8KeyTile) {
            const int8_t* tile = k + static_cast<size_t>(p / kInt8KeyTile) * tile_bytes;
            if (prefetch) {
                prefetch_plane_bytes(k, tile - k + (kKvPrefetchKeys / kInt8KeyTile) * tile_bytes,
                                     tile_bytes, used);
            }
            __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
            __m512i acc2 = _mm512_setzero_si512(), acc3 = _mm512_setzero_si512();
            int j = 0;
#pragma GCC unroll 8
            for (; j + 4 <= n_quads; j += 4) {
                acc0 = add_products(acc0, tile + 64 * j, quad(j));
                acc1 = add_products(acc1, tile + 64 * (j + 1), quad(j + 1));
                acc2 = add_products(acc2, tile + 64 * (j + 2), quad(j + 2));
                acc3 = add_products(acc3, tile + 64 * (j + 3), quad(j + 3));
            }
            if (j < n_quads) acc0 = add_products(acc0, tile + 64 * j, quad(j));
            if (j + 1 < n_quads) acc1 = add_products(acc1, tile + 64 * (j + 1), quad(j + 1));
            if (j + 2 < n_quads) acc2 = add_products(acc2, tile + 64 * (j + 2), quad(j + 2));
            const __m512i dots = _mm512_sub_epi32(
                _mm512_add_epi32(_mm512_add_epi32(acc0, acc1), _mm512_add_epi32(acc2, acc3)),
                offset);
            const __mmask16 m = mask16(a.n_keys - p);
            const __m512 scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(dots), sq);
            _mm512_mask_storeu_ps(s + p, m,
                                  _mm512_mul_ps(scaled, _mm512_maskz_loadu_ps(m, a.k_scale + p)));
        }
    };
    if (quads == 8) {  // heads of 29-32 dimensions, the small models'
        tiles(Int<8>{});
    } else {
        tiles(Int<0>{});
    }
}

// ---- I8 values: integer sums (see AttentionHeadArgs) ----

// acc + for each 32-bit lane, the four unsigned weight bytes times the four signed value bytes.
// Without VNNI the int16 pairs cannot saturate: the weights' halves are 7-bit.
inline __m512i add_weighted(__m512i acc, __m512i weights, __m512i values) {
#if BITNET_VNNI
    return _mm512_dpbusd_epi32(acc, weights, values);
#else
    return _mm512_add_epi32(
        acc, _mm512_madd_epi16(_mm512_maddubs_epi16(weights, values), _mm512_set1_epi16(1)));
#endif
}

// One chunk's weights w[0, n) of a query, whose largest is c, as 14-bit integers split into
// 7-bit halves, zero up to the next multiple of 16; returns the value of one unit of W (see
// AttentionHeadArgs).
inline float int8_weights(const float* w, int n, float c, uint8_t* hi, uint8_t* lo) {
    const __m512 m = _mm512_set1_ps(kInt8WeightLevels / c);
    const __m512 top = _mm512_set1_ps(kInt8WeightLevels);
    for (int j = 0; j < n; j += 16) {
        const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask16(n - j), w + j), m);
        const __m512i q =
            _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(x, _mm512_setzero_ps()), top));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(hi + j),
                         _mm512_cvtepi32_epi8(_mm512_srli_epi32(q, 7)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(lo + j),
                         _mm512_cvtepi32_epi8(_mm512_and_si512(q, _mm512_set1_epi32(127))));
    }
    return c / kInt8WeightLevels;
}

// Four weights from p on, one in each byte of every lane.
inline __m512i four_weights(const uint8_t* w) {
    int32_t four;
    std::memcpy(&four, w, sizeof four);
    return _mm512_set1_epi32(four);
}

// Dimensions [d0, d0 + 16 SB) of Q queries' outputs over keys [c0, c0 + n) of one chunk, whose
// weights are ready (query i's at hi / lo + i * kInt8ValueChunk, its unit unit[i]): out_i +=
// the chunk's sums (out_i = out + i * head_dim; the first chunk starts it). A slice is one load
// of a group of values (int8_kv_layout.h): sixteen dimensions of four keys. With few
// accumulators, consecutive groups alternate between two sets of them, so that twice as many
// chains of multiply-adds overlap; integer sums, so the sets add up to the same bits.
template <int Q, int SB>
inline void int8_value_chunk(const AttentionHeadArgs& a, const uint8_t* hi, const uint8_t* lo,
                             const float* unit, int c0, int n, int d0, bool prefetch, float* out) {
    constexpr int kSets = 2 * Q * SB <= 8 ? 2 : 1;
    const size_t hd = static_cast<size_t>(a.head_dim);
    const size_t group_bytes = int8_value_group_bytes(a.head_dim);
    const int8_t* const plane = static_cast<const int8_t*>(a.v);
    const int8_t* const v =
        plane + static_cast<size_t>(c0 / kInt8ValueGroup) * group_bytes + 4 * d0;
    const size_t used = int8_plane_bytes(a.n_keys, a.head_dim);
    __m512i high[kSets][Q][SB], low[kSets][Q][SB];
#pragma GCC unroll 2
    for (int e = 0; e < kSets; ++e) {
#pragma GCC unroll 4
        for (int i = 0; i < Q; ++i) {
#pragma GCC unroll 8
            for (int s = 0; s < SB; ++s) high[e][i][s] = low[e][i][s] = _mm512_setzero_si512();
        }
    }
    __mmask16 dims[SB];
#pragma GCC unroll 8
    for (int s = 0; s < SB; ++s) dims[s] = mask16(a.head_dim - d0 - 16 * s);
    // Keys [p, p + 4) of the chunk into set e. Weights past n are zero (int8_weights), so a
    // group's keys past the last stored one add nothing.
    auto group = [&](int e, int p) __attribute__((always_inline)) {
        const int8_t* g = v + static_cast<size_t>(p / kInt8ValueGroup) * group_bytes;
        if (prefetch) {
            prefetch_plane_bytes(
                plane, g - plane - 4 * d0 + (kKvPrefetchKeys / kInt8ValueGroup) * group_bytes,
                group_bytes, used);
        }
        __m512i values[SB];
#pragma GCC unroll 8
        for (int s = 0; s < SB; ++s) values[s] = _mm512_maskz_loadu_epi32(dims[s], g + 64 * s);
#pragma GCC unroll 4
        for (int i = 0; i < Q; ++i) {
            const __m512i h = four_weights(hi + i * kInt8ValueChunk + p);
            const __m512i l = four_weights(lo + i * kInt8ValueChunk + p);
#pragma GCC unroll 8
            for (int s = 0; s < SB; ++s) {
                high[e][i][s] = add_weighted(high[e][i][s], h, values[s]);
                low[e][i][s] = add_weighted(low[e][i][s], l, values[s]);
            }
        }
    };
    int p = 0;
    if constexpr (kSets == 2) {
        for (; p + 2 * kInt8ValueGroup <= n; p += 2 * kInt8ValueGroup) {
            group(0, p);
            group(1, p + kInt8ValueGroup);
        }
    }
    for (; p < n; p += kInt8ValueGroup) group(0, p);
#pragma GCC unroll 4
    for (int i = 0; i < Q; ++i) {
        const __m512 u = _mm512_set1_ps(unit[i]);
#pragma GCC unroll 8
        for (int s = 0; s < SB; ++s) {
            __m512i h = high[0][i][s], l = low[0][i][s];
            if constexpr (kSets == 2) {
                h = _mm512_add_epi32(h, high[1][i][s]);
                l = _mm512_add_epi32(l, low[1][i][s]);
            }
            const __m512 sum = _mm512_fmadd_ps(_mm512_cvtepi32_ps(h), _mm512_set1_ps(128.f),
                                               _mm512_cvtepi32_ps(l));
            float* o = out + i * hd + d0 + 16 * s;
            const __m512 before = c0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(dims[s], o);
            _mm512_mask_storeu_ps(o, dims[s], _mm512_fmadd_ps(sum, u, before));
        }
    }
}

// Dimensions [d0, head_dim) of the chunk in one pass of `slices` <= S slices.
template <int Q, int S>
inline void int8_value_rest(const AttentionHeadArgs& a, const uint8_t* hi, const uint8_t* lo,
                            const float* unit, int c0, int n, int d0, int slices, bool prefetch,
                            float* out) {
    if constexpr (S > 1) {
        if (slices < S)
            return int8_value_rest<Q, S - 1>(a, hi, lo, unit, c0, n, d0, slices, prefetch, out);
    }
    int8_value_chunk<Q, S>(a, hi, lo, unit, c0, n, d0, prefetch, out);
}

// out_i = sum_p w_i[p] * v_p for Q queries (w: the first one's weights, a row of n_keys each;
// chunk_max: the largest of each of its chunks, a row of `chunks` each) in the integer sums of
// AttentionHeadArgs: each chunk's dimensions in passes of SB slices (2 Q SB accumulators) and
// one shorter pass; the first pass fetches the groups ahead (later ones find them in L1, L2).
template <int Q>
inline void int8_values(const AttentionHeadArgs& a, const float* w, const float* chunk_max,
                        int chunks, float* out, bool prefetch) {
    constexpr int SB = Q == 1 ? 8 : Q == 2 ? 4 : 2;
    alignas(64) uint8_t hi[Q * kInt8ValueChunk], lo[Q * kInt8ValueChunk];
    float unit[Q];
    const size_t n_keys = static_cast<size_t>(a.n_keys);
    for (int c0 = 0; c0 < a.n_keys; c0 += kInt8ValueChunk) {
        const int n = min_int(kInt8ValueChunk, a.n_keys - c0);
#pragma GCC unroll 4
        for (int i = 0; i < Q; ++i) {
            unit[i] =
                int8_weights(w + i * n_keys + c0, n, chunk_max[i * chunks + c0 / kInt8ValueChunk],
                             hi + i * kInt8ValueChunk, lo + i * kInt8ValueChunk);
        }
        int d0 = 0;
        for (; d0 + 16 * SB <= a.head_dim; d0 += 16 * SB)
            int8_value_chunk<Q, SB>(a, hi, lo, unit, c0, n, d0, prefetch && d0 == 0, out);
        if (d0 < a.head_dim) {
            int8_value_rest<Q, SB>(a, hi, lo, unit, c0, n, d0, (a.head_dim - d0 + 15) / 16,
                                   prefetch && d0 == 0, out);
        }
    }
}

// Split queries of up to this many dimensions stay on the stack.
constexpr int kSplitQueryFloats = kQueriesPerPass * 512;

template <KvType T, int Q>
inline void query_chunk(const AttentionHeadArgs& a, int i0, bool prefetch) {
    const size_t hd = static_cast<size_t>(a.head_dim), n = static_cast<size_t>(a.n_keys);
    const float* q = a.q + i0 * hd;
    float* s = a.scratch + i0 * n;
    if constexpr (T == KvType::I8) {
#pragma GCC unroll 4
        for (int i = 0; i < Q; ++i) int8_scores(a, q + i * hd, s + i * n, prefetch);
    } else if constexpr (split_pairs(T)) {
        const size_t floats = static_cast<size_t>(Q) * score_dims<T>(a.head_dim);
        alignas(64) float on_stack[kSplitQueryFloats];
        std::vector<float> on_heap(floats > kSplitQueryFloats ? floats : 0);
        float* split = on_heap.empty() ? on_stack : on_heap.data();
        split_queries(q, Q, a.head_dim, split);
        score_pass<T, Q>(a, split, s, prefetch);
    } else {
        score_pass<T, Q>(a, q, s, prefetch);
    }
    // I8: the scores carry the keys' scales already; the values' scales follow the softmax in
    // its last pass (see AttentionHeadArgs), which also finds each chunk's largest weight.
    if constexpr (T == KvType::I8) {
        const int chunks = (a.n_keys + kInt8ValueChunk - 1) / kInt8ValueChunk;
        float on_stack[Q * 64];
        std::vector<float> on_heap(chunks > 64 ? static_cast<size_t>(Q) * chunks : 0);
        float* chunk_max = on_heap.empty() ? on_stack : on_heap.data();
#pragma GCC unroll 4
        for (int i = 0; i < Q; ++i)
            softmax_impl<true>(s + i * n, a.n_keys, a.v_scale, chunk_max + i * chunks);
        int8_values<Q>(a, s, chunk_max, chunks, a.out + i0 * hd, prefetch);
    } else {
#pragma GCC unroll 16
        for (int i = 0; i < Q; ++i) softmax(s + i * n, a.n_keys);
        if (a.head_dim <= 64) {
            value_passes<T, Q, 4>(a, s, a.out + i0 * hd, prefetch);
        } else {
            value_passes<T, Q, 2>(a, s, a.out + i0 * hd, prefetch);
        }
    }
}

template <KvType T>
void attention_impl(const AttentionHeadArgs& a) {
    for (int i0 = 0; i0 < a.n_queries; i0 += kQueriesPerPass) {
        const bool first = a.prefetch && i0 == 0;  // later turns find them in L2
        switch (min_int(kQueriesPerPass, a.n_queries - i0)) {
            case 1:
                query_chunk<T, 1>(a, i0, first);
                break;
            case 2:
                query_chunk<T, 2>(a, i0, first);
                break;
            case 3:
                query_chunk<T, 3>(a, i0, first);
                break;
            default:
                query_chunk<T, 4>(a, i0, first);
                break;
        }
    }
}

void attention_head(const AttentionHeadArgs& a) {
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

// ---- KV cache rows ---------------------------------------------------------------------------

// f32_to_bf16 of 16 floats: round to nearest even by adding 0x7fff and the kept part's lowest
// bit; a NaN keeps its top bits, made quiet.
inline __m256i to_bf16x16(__m512 x) {
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i high = _mm512_srli_epi32(bits, 16);
    const __m512i bias =
        _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(high, _mm512_set1_epi32(1)));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(high, _mm512_set1_epi32(0x40)));
    return _mm512_cvtepi32_epi16(r);
}

// f32_to_f16 of 16 floats: vcvtps2ph rounds to nearest even as it does, subnormals and the
// overflow to infinity included; a NaN becomes the quiet NaN 0x7e00 of its sign.
inline __m256i to_f16x16(__m512 x) {
    const __m256i h = _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i nan_h =
        _mm256_or_si256(_mm256_and_si256(h, _mm256_set1_epi16(static_cast<short>(0x8000))),
                        _mm256_set1_epi16(0x7e00));
    return _mm256_mask_mov_epi16(h, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), nan_h);
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
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + i),
                            type == KvType::F16 ? to_f16x16(v) : to_bf16x16(v));
    }
    for (; i < n; ++i) o[i] = type == KvType::F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
}

// The values' bytes go to byte pos % 4 of each dimension's lane, sixteen dimensions a masked
// store: a byte at a time took 2% of a 64-sequence step.
void store_int8_kv(const float* x, int head_dim, int pos, bool key, int8_t* plane, float* scale) {
    alignas(64) int8_t on_stack[512];
    const int padded = (head_dim + 63) & ~63;  // whole stores (see quantize_values)
    std::vector<int8_t> on_heap(head_dim > 512 ? padded : 0);
    int8_t* row = on_heap.empty() ? on_stack : on_heap.data();
    int32_t sum = 0;
    *scale = 1.f / quantize_row_i8(x, head_dim, padded, row, &sum);
    if (key) return store_int8_key(row, head_dim, pos, plane);
    int8_t* group = plane + int8_value_offset(pos - pos % kInt8ValueGroup, 0, head_dim);
    const int shift = pos % kInt8ValueGroup;
    const __mmask64 lane_byte = 0x1111111111111111ull << shift;
    for (int d = 0; d < head_dim; d += 16) {
        const __m512i values =
            _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + d)));
        _mm512_mask_storeu_epi8(group + 4 * d, lane_byte & mask64(4 * (head_dim - d)),
                                _mm512_sllv_epi32(values, _mm512_set1_epi32(8 * shift)));
    }
}

}  // namespace

#define BITNET_KERNEL_ENTRIES                                                       \
    .quantize_row_i8 = quantize_row_i8, .ternary_gemm = ternary_gemm<false>,        \
    .dense_gemm_f32 = dense_gemm_f32, .dense_gemm_bf16 = dense_gemm_bf16,           \
    .dense_gemm_f16 = dense_gemm_f16, .dense_gemm_q8_0 = dense_gemm_q8_0,           \
    .dense_gemm_i8r = dense_gemm_i8r, .int8_gemm_i8r = int8_gemm_i8r,               \
    .dense_groups_gemm = dense_groups_gemm, .rms_norm = rms_norm,                   \
    .rms_norm_quantize_i8 = rms_norm_quantize_i8, .rope = rope, .softmax = softmax, \
    .relu2_mul = relu2_mul, .silu_mul = silu_mul, .attention_head = attention_head, \
    .store_kv_row = store_kv_row, .store_int8_kv = store_int8_kv

#if BITNET_VNNI
const KernelTable* avx512vnni_kernels() {
    static const KernelTable table{
        .isa = Isa::AVX512VNNI, .name = "avx512vnni", BITNET_KERNEL_ENTRIES};
    return &table;
}

const KernelTable* avx512vnni_gfni_kernels() {
    static const KernelTable table = [] {
        KernelTable t = *avx512vnni_kernels();
        t.ternary_gemm = ternary_gemm<true>;
        return t;
    }();
    return &table;
}
#else
const KernelTable* avx512_kernels() {
    static const KernelTable table{.isa = Isa::AVX512, .name = "avx512", BITNET_KERNEL_ENTRIES};
    return &table;
}
#endif
#undef BITNET_KERNEL_ENTRIES

}  // namespace bitnet::cpu
