// The CPU kernel interface. Every instruction-set level (scalar reference, AVX2, AVX-512,
// AVX-512 VNNI) fills one KernelTable; the model code calls kernels only through a table,
// so the level is chosen once at run time and every level runs the same tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bitnet::cpu {

// The kernel objects are built with -mavx2 or -mavx512f. An inline function of this header that
// one of them did not inline (every call, at -O0) became a weak symbol there, which the linker
// may take for callers built for CPUs without those instructions. Always inlined, none is emitted;
// the free functions are also static, as sanitizer builds emit a copy of them regardless.
#define BITNET_KERNEL_INLINE __attribute__((always_inline)) inline

// AMX is the AVX-512 VNNI level with ternary products of many activation rows on AMX tiles.
// AVXVNNI: the AVX2 kernels with the VEX vpdpbusd of Intel clients from Alder Lake on (which have
// no AVX-512).
enum class Isa : int { Scalar = 0, AVX2 = 1, AVXVNNI = 2, AVX512 = 3, AVX512VNNI = 4, AMX = 5 };
inline constexpr int kIsaCount = 6;

// Packed ternary layouts. A [rows, cols] ternary matrix is padded with zero weights to
// cols_padded = round_up(cols, block) and stored row-major, row_bytes() bytes a row; every
// block of a row takes 64 bytes, whose byte j holds the weights at k = j + 64 i of the block.
//
// Bits2 (block 256, 2 bits a weight): bit pair i of byte j (bits 2i, 2i+1) holds the code
// c = w + 1 (0 -> -1, 1 -> 0, 2 -> +1) of k = j + 64 i, i = 0..3. Shifting a 64-byte block right
// by 2i and masking with 3 yields 64 consecutive codes, which is what one 512-bit (or two
// 256-bit) multiply-add consumes without any shuffle.
//
// Trits5 (block 320, 1.6 bits a weight): byte j holds the codes c_i = w + 1 of k = j + 64 i,
// i = 0..4, as n = sum_i c_i 3^(4-i) scaled into a byte, b = ceil(n * 256 / 243). With
// m_0 = b and m_{i+1} = 3 m_i mod 256 (bytewise), c_i = floor(3 m_i / 256): the code is the
// carry of a bytewise multiplication by 3, so 64 codes decode with byte additions and need no
// table. Every byte decodes to codes in 0..2; the 243 values b(n) are the canonical ones.
//
// Row tiles (Bits2 only, TernaryMatrixView::tiled): the rows are grouped in tiles of
// kTernaryTileRows, and a tile stores its rows' 64-byte blocks side by side, block by block:
// row r's block b is at ((r / 8 * n_blocks + b) * 8 + r % 8) * 64. The rows % 8 rows after the
// last whole tile stay row-major, so a tiled matrix takes the same bytes as a row-major one
// (and is tiled in place). The GEMV reads a tile's eight rows together, so this makes its reads
// one sequential stream, which the hardware prefetchers follow at the machine's full read
// rate; over row-major rows (eight streams a row apart) it reached 63-92% of a plain read.
//
// Row groups (Bits2 only, TernaryMatrixView::groups): a second copy of a matrix that stays in
// cache, read by the AVX-512 VNNI GEMV. Its rows [0, rows / 16 * 16) go in groups of
// kTernaryGroupRows, and a 64-byte vector holds one dword of each of the sixteen rows, so a
// multiply-add with a broadcast dword of activations leaves each row's partial sum in its own
// lane: nothing to reduce across lanes (the row-major GEMV of a 128-column row spent as many
// operations reducing as multiplying). A row has group_steps() 64-column steps, four a block
// and fewer in the last block, which takes only its S = ceil(columns there / 64) steps: there a
// row has 16 S bytes, and byte j holds the code of column j + 16 S i at bit pair i (i = 0..3).
// Block b's dword d of the group's rows r .. r + 15 is the vector at (16 b + d) * 64 bytes from
// the group's start, row r + t at bytes 4 t .. 4 t + 3; a group takes 256 group_steps() bytes.
enum class TernaryLayout : uint8_t { Bits2 = 0, Trits5 = 1 };
inline constexpr int kTernaryTileRows = 8;
inline constexpr int kTernaryGroupRows = 16;

inline constexpr int kTernaryBlock = 256;  // Bits2
inline constexpr int kTernaryBlockBytes = kTernaryBlock / 4;
inline constexpr int kTernary5Block = 320;  // Trits5
inline constexpr int kTernary5BlockBytes = 64;

BITNET_KERNEL_INLINE static constexpr int round_up(int n, int multiple) {
    return (n + multiple - 1) / multiple * multiple;
}

BITNET_KERNEL_INLINE static constexpr int ternary_block(TernaryLayout layout) {
    return layout == TernaryLayout::Bits2 ? kTernaryBlock : kTernary5Block;
}

// Activation rows padded to this many values serve a matrix of `cols` columns in any layout.
BITNET_KERNEL_INLINE static constexpr int ternary_activation_stride(int cols) {
    return round_up(cols, kTernaryBlock) > round_up(cols, kTernary5Block)
               ? round_up(cols, kTernaryBlock)
               : round_up(cols, kTernary5Block);
}

struct TernaryMatrixView {
    const uint8_t* data = nullptr;  // rows * row_bytes() bytes, 64-byte aligned
    int rows = 0;
    int cols = 0;
    int cols_padded = 0;  // round_up(cols, ternary_block(layout))
    TernaryLayout layout = TernaryLayout::Bits2;
    bool tiled = false;  // rows in tiles of kTernaryTileRows (Bits2 only, see above)
    // The same matrix again in row groups (see above), or nullptr.
    const uint8_t* groups = nullptr;
    BITNET_KERNEL_INLINE size_t row_bytes() const {
        return static_cast<size_t>(cols_padded) / (layout == TernaryLayout::Bits2 ? 4 : 5);
    }
    BITNET_KERNEL_INLINE int n_blocks() const { return static_cast<int>(row_bytes() / 64); }
    // Rows [0, tiled_rows()) are in row tiles; the rest are row-major.
    BITNET_KERNEL_INLINE int tiled_rows() const {
        return tiled ? rows / kTernaryTileRows * kTernaryTileRows : 0;
    }
    // Row r's 64-byte block b. Rows r .. r + n of one tile (or of the row-major rows) are
    // row_step(r) apart, and a row's blocks block_step(r) apart.
    BITNET_KERNEL_INLINE const uint8_t* block(int r, int b) const {
        if (r >= tiled_rows())
            return data + static_cast<size_t>(r) * row_bytes() + static_cast<size_t>(b) * 64;
        const size_t tile = static_cast<size_t>(r / kTernaryTileRows);
        return data + ((tile * n_blocks() + b) * kTernaryTileRows + r % kTernaryTileRows) * 64;
    }
    // 64-column steps of the last block that hold real columns; the rest are padding (zero
    // weights, zero activations), which the kernels skip.
    BITNET_KERNEL_INLINE int tail_steps() const {
        return (cols - (n_blocks() - 1) * ternary_block(layout) + 63) / 64;
    }
    // Row groups: 64-column steps a row has there, and bytes a group takes.
    BITNET_KERNEL_INLINE int group_steps() const { return (n_blocks() - 1) * 4 + tail_steps(); }
    BITNET_KERNEL_INLINE size_t group_bytes() const {
        return static_cast<size_t>(group_steps()) * 256;
    }
    BITNET_KERNEL_INLINE size_t row_step(int r) const {
        return r < tiled_rows() ? 64 : row_bytes();
    }
    BITNET_KERNEL_INLINE size_t block_step(int r) const {
        return r < tiled_rows() ? 64 * kTernaryTileRows : 64;
    }
};

// Per-token int8 activations: row m holds cols_padded int8 values (zero padded past cols).
struct QuantizedActivations {
    const int8_t* q = nullptr;
    const int32_t* row_sum = nullptr;  // sum of row m's int8 values (for the code - 1 trick)
    const float* out_scale = nullptr;  // per row: alpha / s_x, applied to the int32 dot product
    int rows = 0;
    int stride = 0;  // elements between rows; >= cols_padded of the matrix, zero past cols

    // Rows [m, m + n) as activations of their own.
    BITNET_KERNEL_INLINE QuantizedActivations rows_from(int m, int n) const {
        return {q + static_cast<size_t>(m) * stride, row_sum + m, out_scale + m, n, stride};
    }
};

// y[m + j][i] = float(dots[i * mt + j] - row_sum[m + j]) * out_scale[m + j] for an rt x mt tile
// of ternary dot products (the codes are w + 1, so each dot exceeds w . x by the activation row's
// sum): the last step of the SIMD levels' ternary tiles, after their lanes are reduced.
BITNET_KERNEL_INLINE static void store_ternary_dots(const int32_t* dots, int rt, int mt,
                                                    const QuantizedActivations& x, int m, float* y,
                                                    int ldy) {
    for (int j = 0; j < mt; ++j) {
        const int32_t row_sum = x.row_sum[m + j];
        const float scale = x.out_scale[m + j];
        float* yr = y + static_cast<size_t>(m + j) * ldy;
        for (int i = 0; i < rt; ++i) yr[i] = static_cast<float>(dots[i * mt + j] - row_sum) * scale;
    }
}

// Activation bytes a GEMM keeps in L2 while every tile of matrix rows passes over them: half of
// this CPU's L2 (512 KB where the OS does not say). The GEMMs take matrix rows in the outer loop
// (each weight byte read from memory once), so past L2 (a long prompt: 1,024 rows of 2,560
// columns are 2.6 MB) every tile would read all the activations from L3 again; on Zen 4 that
// halved the rate (76-83 against 150-160 G multiply-adds/s a core at 1,024 rows against 128).
size_t activation_block_bytes();

// Whether GEMVs over weights from memory should keep more loads in flight than a lone sequential
// stream gives (software prefetches for tiled ternary matrices, eight head rows side by side
// instead of one). On the Emerald Rapids VM a core read a tiled 2B-sized matrix at 7.4 GB/s
// without prefetches and 9.8-10.4 with them, and a bf16 head at 6.0-6.3 against 11.8-12.2 (a
// bare read: 12.6); on the Zen 4 the lone streams had measured 5-14% faster. True on Intel CPUs.
// The results have the same bits either way.
bool weights_stream_wants_help();
// Makes weights_stream_wants_help() answer `value` (0 or 1), or the CPU's answer again (-1), so
// that tests run both paths on any CPU. Not for use while kernels run on other threads.
void force_weights_stream_help(int value);

// Whether attention should fetch the next unit's keys and values (short streams of a few KB that
// a batch reads from L3) while it computes the current one. On the Zen 4 that made 64 sequences
// of the 1m model 1.02-1.13x faster. Not on Intel CPUs: the burst of up to 256 prefetches fills
// the core's line fill buffers and stalls it (on the Emerald Rapids VM, 82% of the unit loop's
// samples sat on them), and without it the 1m model decoded faster, one thread and 64 sequences
// alike (docs/PERFORMANCE.md, 2026-11-29).
bool short_kv_streams_want_fetching();

// Calls gemm(block, y_block) on consecutive blocks of x's rows of about equal size, each within
// activation_block_bytes() where rows allow (at least `align` rows a block, and a multiple of
// it but the last). Every product's sums are exact integers, so the blocks change no bits.
template <typename Gemm>
BITNET_KERNEL_INLINE static void for_activation_blocks(const QuantizedActivations& x, float* y,
                                                       int ldy, int align, Gemm&& gemm) {
    const size_t row_bytes = static_cast<size_t>(x.stride > 0 ? x.stride : 1);
    const size_t fit_rows = activation_block_bytes() / row_bytes;
    const int fit = fit_rows < 1 ? 1 : static_cast<int>(fit_rows);
    const int blocks = (x.rows + fit - 1) / fit;
    int per = (x.rows + blocks - 1) / blocks;
    per = (per + align - 1) / align * align;
    for (int m = 0; m < x.rows; m += per) {
        const int n = x.rows - m < per ? x.rows - m : per;
        gemm(x.rows_from(m, n), y + static_cast<size_t>(m) * ldy);
    }
}

// Dense row groups: a second copy of a small f32 or bf16 head (columns a multiple of 16, at most
// kDenseGroupMaxCols of them), read by the AVX-512 head kernel. Rows [0, rows / 16 * 16) go in
// groups of kDenseGroupRows, and a 64-byte line holds one dword of each of the group's sixteen
// rows: with f32, line c is column c; with bf16, line c holds columns 2c (low half) and 2c + 1
// (high half). Group g starts g * 16 * cols elements in. A broadcast activation times a line then
// adds into sixteen rows' sums at once, with nothing to reduce across lanes; a small model's head
// spent about half its time in those reductions and in widening bf16 halves.
inline constexpr int kDenseGroupRows = 16;
// Longer rows spend little in those reductions, and at the AMX level a bf16 head of longer rows
// runs on tiles, whose sums would not have the groups' bits.
inline constexpr int kDenseGroupMaxCols = 512;

// KV cache element types. I8 rows hold int8 values and one float scale each (a row: the
// head_dim values of one position of one head), quantised as quantize_row_i8 quantises
// activations: q = round(x * s_x), stored with the scale 1 / s_x.
enum class KvType : int { F32 = 0, F16 = 1, BF16 = 2, I8 = 3 };

BITNET_KERNEL_INLINE static constexpr size_t kv_elem_bytes(KvType t) {
    return t == KvType::F32 ? 4 : t == KvType::I8 ? 1 : 2;
}

// The integer sums of I8 values (see AttentionHeadArgs): keys a chunk, and the largest weight.
inline constexpr int kInt8ValueChunk = 256;
inline constexpr float kInt8WeightLevels = 16383.f;

// n_queries query heads that share one KV head (grouped-query attention) attending over
// n_keys cached positions (causal masking is the caller's choice of n_keys). Element (pos, d)
// of the keys is at k[pos * row_stride + d], likewise v, except in I8 planes, which have the
// layout of int8_kv_layout.h (row_stride unused). Query i is q[i * head_dim ...], its
// output out[i * head_dim ...]. Every query's result is the same bits whatever n_queries is;
// a call with several reads the keys and values from memory once for all of them.
// With I8 keys and values, key p is k[p] * k_scale[p] and value p is v[p] * v_scale[p]. The
// query is quantised too (quantize_row_i8: q8, s_q), so a score is an exact int32 dot product,
// as in llama.cpp's q8_0 caches: (float(dot(q8, k[p])) * (scale / s_q)) * k_scale[p]. After the
// softmax each weight w[p] becomes w[p] * v_scale[p], and the values are summed in integers too,
// kInt8ValueChunk keys at a time: with c = the chunk's largest w[p] and m = kInt8WeightLevels / c
// (both floats), W[p] = round_half_even(min(max(w[p] * m, 0), kInt8WeightLevels)) as an integer,
// split as W = 128 hi + lo (7 bits each, so that an int16 pair of products cannot saturate);
// H[d] = sum hi[p] * v[p][d] and L[d] = sum lo[p] * v[p][d] are exact int32 sums, and
// out[d] = fma(fma(float(H[d]), 128, float(L[d])), c / kInt8WeightLevels, out[d]), chunk after
// chunk from out[d] = 0. The weights keep 14 bits of their chunk's largest, where the int8 values
// keep 8 of their row's. Every level computes these roundings; only the softmax's sum may differ
// in its last bit between levels, whose lanes add in different orders.
struct AttentionHeadArgs {
    const float* q = nullptr;  // [n_queries][head_dim]
    const void* k = nullptr;
    const void* v = nullptr;
    KvType kv_type = KvType::F32;
    size_t row_stride = 0;  // elements (not I8)
    int n_keys = 0;
    int head_dim = 0;
    int n_queries = 1;
    // The caller expects the keys and values to come from memory rather than a cache (many or
    // long sequences): fetching ahead then doubles the read rate, where it costs 20-30% on data
    // already in L2.
    bool prefetch = false;
    float scale = 0.f;               // 1 / sqrt(head_dim)
    float* scratch = nullptr;        // [n_queries][n_keys] floats
    float* out = nullptr;            // [n_queries][head_dim]
    const float* k_scale = nullptr;  // I8: one scale a key position
    const float* v_scale = nullptr;  // I8: one scale a value position
};

struct KernelTable {
    Isa isa;
    const char* name;

    // s_x = 127 / max(max|x|, 1e-5); q = clamp(round_half_even(x * s_x), -128, 127);
    // q[n..n_pad) = 0. Returns s_x and writes the sum of q to *sum.
    float (*quantize_row_i8)(const float* x, int n, int n_pad, int8_t* q, int32_t* sum);

    // For every activation row m and matrix row r in [r_begin, r_end):
    //   y[m * ldy + r] = float(sum_k q[m][k] * w[r][k]) * x.out_scale[m]
    // The int32 dot product is exact, so every level gives bit-identical y.
    void (*ternary_gemm)(const TernaryMatrixView& w, int r_begin, int r_end,
                         const QuantizedActivations& x, float* y, int ldy);

    // Dense float32 accumulation over weights stored as f32 or bf16 ([rows, k] row-major), for
    // the lm_head: y[m * ldy + r] = sum_k x[m * ldx + k] * w[r][k]. At every level a row's bits
    // do not depend on m (speculative decoding's verified drafts must pick the tokens plain
    // decoding picks). The AMX level sums bf16 rows of more than kDenseGroupMaxCols columns, a
    // multiple of 32, on tiles (whose bits depend on neither m nor the range): each activation
    // goes in as three bf16 values (x rounded to bf16, what that left rounded, and what
    // remains), whose sum is x and whose products with a bf16 weight are exact in float; finite
    // activations only (an infinite one gives NaN).
    void (*dense_gemm_f32)(const float* w, int k, int r_begin, int r_end, const float* x, int m,
                           int ldx, float* y, int ldy);
    void (*dense_gemm_bf16)(const uint16_t* w, int k, int r_begin, int r_end, const float* x, int m,
                            int ldx, float* y, int ldy);
    // The same over the other head formats (DenseFormat in model/weights.h): IEEE f16 weights;
    // ggml Q8_0 (k % 32 == 0, row r at w + r * (k / 32) * 34: blocks of f16 d, int8 q[32],
    // weight d * q); I8R int8 rows [rows, k] scaled once per row after the sum:
    //   y[m * ldy + r] = row_scale[r] * sum_k x[m * ldx + k] * q[r][k].
    void (*dense_gemm_f16)(const uint16_t* w, int k, int r_begin, int r_end, const float* x, int m,
                           int ldx, float* y, int ldy);
    void (*dense_gemm_q8_0)(const uint8_t* w, int k, int r_begin, int r_end, const float* x, int m,
                            int ldx, float* y, int ldy);
    void (*dense_gemm_i8r)(const int8_t* w, const float* row_scale, int k, int r_begin, int r_end,
                           const float* x, int m, int ldx, float* y, int ldy);
    // The I8R head on int8 activations, which quantises the head's input (one scale per row,
    // as the BitLinears do) in exchange for integer dot products. Row m of xq (at xq + m * ldx)
    // holds k values from quantize_row_i8, so within [-127, 127]; x_scale[m] = 1 / s_x. Then
    //   y[m * ldy + r] = (float(sum_k xq[m][k] * q[r][k]) * row_scale[r]) * x_scale[m],
    // with the int32 sum exact (k < 65536), so every level gives bit-identical y.
    void (*int8_gemm_i8r)(const int8_t* w, const float* row_scale, int k, int r_begin, int r_end,
                          const int8_t* xq, const float* x_scale, int m, int ldx, float* y,
                          int ldy);

    // Rows [16 g_begin, 16 g_end) of a dense f32 (bf16 false) or bf16 matrix of k columns
    // (k % 16 == 0) from its row groups (above): y[m * ldy + r] = sum_k x[m * ldx + k] * w[r][k].
    // Each row is summed as dense_gemm_f32 / _bf16 sum a row of a tile of four or eight rows:
    // sixteen partial sums (columns mod 16, fused multiply-adds in column order), added within
    // blocks of four as (s0 + s2) + (s1 + s3) and the four blocks as (b0 + b2) + (b1 + b3). So
    // a row's bits do not depend on m, nor on whether f32 or bf16 holds the same values. Null
    // at levels without it.
    void (*dense_groups_gemm)(const void* groups, bool bf16, int k, int g_begin, int g_end,
                              const float* x, int m, int ldx, float* y, int ldy);

    // out = w * x / sqrt(mean(x^2) + eps); out may alias x.
    void (*rms_norm)(const float* x, const float* w, int n, float eps, float* out);
    // quantize_row_i8 of rms_norm's output, with the same bits as the two calls, for the
    // BitLinears' inputs: the normed row is never stored, so one pass over the row and its
    // stores go (a small model's norms and quantisation were about 1 us of its 20 us step).
    float (*rms_norm_quantize_i8)(const float* x, const float* w, int n, float eps, int n_pad,
                                  int8_t* q, int32_t* sum);

    // Half-split ("NeoX") rotary embedding of n_heads heads of head_dim values in place;
    // cos/sin hold head_dim / 2 values for this token's position.
    void (*rope)(float* x, int n_heads, int head_dim, const float* cos, const float* sin);

    // In-place softmax: x = exp(x - max) / sum.
    void (*softmax)(float* x, int n);

    // out = relu(g)^2 * u  and  out = silu(g) * u; out may alias g or u.
    void (*relu2_mul)(const float* g, const float* u, float* out, int n);
    void (*silu_mul)(const float* g, const float* u, float* out, int n);

    // Scaled dot-product attention of the query heads of one KV head over a KV cache.
    void (*attention_head)(const AttentionHeadArgs& args);

    // n floats into a KV cache row of `type`: copied (F32), or rounded to nearest even as
    // core/half.h rounds (F16, BF16), NaN included, so every level stores the same bits. A small
    // model's step stored 1,024 values this way, one at a time (about 2% of it with bf16).
    // I8 quantises the row with quantize_row_i8 and writes 1 / s_x to *scale (unused otherwise).
    void (*store_kv_row)(const float* x, int n, KvType type, void* out, float* scale);
    // I8: the row of store_kv_row (head_dim values, 1 / s_x to *scale), written to position pos
    // of a plane of keys (key) or of values in int8_kv_layout.h's tiles.
    void (*store_int8_kv)(const float* x, int head_dim, int pos, bool key, int8_t* plane,
                          float* scale);
};

// BitLinear as PyTorch computes it in float32: activations dequantized one by one
// (x_k = q_k / s_x), then y = sum_k x_k * w_k accumulated with fused multiply-adds in k order,
// as a float GEMM micro-kernel does, and scaled by alpha after the sum (alpha_inside = false,
// transformers' offline layers) or folded into the weights (alpha_inside = true, online layers:
// w_k = +-alpha). Slower than ternary_gemm; it exists so that an engine in reference-numerics
// mode rounds like transformers and crosses the int8 rounding boundaries where it does.
void ternary_gemm_float_order(const TernaryMatrixView& w, int r_begin, int r_end, const int8_t* q,
                              int stride, const float* s_x, int m, float alpha, bool alpha_inside,
                              float* y, int ldy);

// A call for several queries run one query at a time through `one`, for levels whose kernel
// takes one query (the later queries find the keys and values in L2).
void attention_each_query(const AttentionHeadArgs& a, void (*one)(const AttentionHeadArgs&));

// The table of one level. Levels the binary was not built with fall back to Scalar; call
// isa_supported() first to know whether the CPU can run a level.
const KernelTable& kernels(Isa isa);

const char* isa_name(Isa isa);
// Parses "scalar", "avx2", "avxvnni", "avx512", "avx512vnni", "amx" (case-insensitive); throws
// bitnet::Error.
Isa parse_isa(const std::string& name);

// Whether this CPU (and OS, for AVX state) supports the level.
bool isa_supported(Isa isa);
// The best supported level, unless BITNET_CPU_ISA forces one (an unsupported forced level is an
// error, so a test never silently runs a different level than it names).
Isa select_isa();
// Every level this CPU supports, lowest first (for tests and benchmarks).
std::vector<Isa> supported_isas();

// Per-level tables, defined in kernels_<level>.cpp.
const KernelTable& scalar_kernels();
const KernelTable* avx2_kernels();        // nullptr when not built
const KernelTable* avxvnni_kernels();     // nullptr when not built
const KernelTable* avx512_kernels();      // nullptr when not built
const KernelTable* avx512vnni_kernels();  // nullptr when not built
const KernelTable* amx_kernels();         // nullptr when not built
// The AVX-512 VNNI level with its 2-bit code extraction on GFNI, for CPUs that have both (the
// AMX level builds on it); built with avx512vnni_kernels.
const KernelTable* avx512vnni_gfni_kernels();

}  // namespace bitnet::cpu
