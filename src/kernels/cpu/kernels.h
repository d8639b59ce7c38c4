// The CPU kernel interface. Every instruction-set level (scalar reference, AVX2, AVX-512,
// AVX-512 VNNI) fills one KernelTable; the model code calls kernels only through a table,
// so the level is chosen once at run time and every level runs the same tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bitnet::cpu {

enum class Isa : int { Scalar = 0, AVX2 = 1, AVX512 = 2, AVX512VNNI = 3 };
inline constexpr int kIsaCount = 4;

// Packed ternary layout used by every CPU kernel.
// A [rows, cols] ternary matrix is padded to cols_padded = round_up(cols, kTernaryBlock) with
// zero weights and stored row-major as rows x (cols_padded / 4) bytes. Within a row, each block
// of kTernaryBlock = 256 weights takes 64 bytes: byte j of the block holds the weights at
// k = j, j + 64, j + 128, j + 192 in bit pairs 0-1, 2-3, 4-5, 6-7. A 2-bit code c means the
// weight c - 1 (0 -> -1, 1 -> 0, 2 -> +1). Shifting a 64-byte block right by 2s and masking
// with 3 yields 64 consecutive codes, which is what one 512-bit (or two 256-bit) multiply-add
// consumes without any shuffle.
inline constexpr int kTernaryBlock = 256;
inline constexpr int kTernaryBlockBytes = kTernaryBlock / 4;

inline constexpr int round_up(int n, int multiple) {
    return (n + multiple - 1) / multiple * multiple;
}

struct TernaryMatrixView {
    const uint8_t* data = nullptr;  // rows * cols_padded / 4 bytes, 64-byte aligned
    int rows = 0;
    int cols = 0;
    int cols_padded = 0;
    size_t row_bytes() const { return static_cast<size_t>(cols_padded) / 4; }
};

// Per-token int8 activations: row m holds cols_padded int8 values (zero padded past cols).
struct QuantizedActivations {
    const int8_t* q = nullptr;
    const int32_t* row_sum = nullptr;  // sum of row m's int8 values (for the code - 1 trick)
    const float* out_scale = nullptr;  // per row: alpha / s_x, applied to the int32 dot product
    int rows = 0;
    int stride = 0;  // elements between rows; >= cols_padded of the matrix
};

enum class KvType : int { F32 = 0, F16 = 1, BF16 = 2 };

// One query head attending over n_keys cached positions (causal masking is the caller's choice
// of n_keys). Element (pos, d) of this head's keys is at k[pos * row_stride + d], likewise v.
struct AttentionHeadArgs {
    const float* q = nullptr;  // [head_dim]
    const void* k = nullptr;
    const void* v = nullptr;
    KvType kv_type = KvType::F32;
    size_t row_stride = 0;  // elements
    int n_keys = 0;
    int head_dim = 0;
    float scale = 0.f;         // 1 / sqrt(head_dim)
    float* scratch = nullptr;  // n_keys floats
    float* out = nullptr;      // [head_dim]
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
    // the lm_head: y[m * ldy + r] = sum_k x[m * ldx + k] * w[r][k].
    void (*dense_gemm_f32)(const float* w, int k, int r_begin, int r_end, const float* x, int m,
                           int ldx, float* y, int ldy);
    void (*dense_gemm_bf16)(const uint16_t* w, int k, int r_begin, int r_end, const float* x, int m,
                            int ldx, float* y, int ldy);

    // out = w * x / sqrt(mean(x^2) + eps); out may alias x.
    void (*rms_norm)(const float* x, const float* w, int n, float eps, float* out);

    // Half-split ("NeoX") rotary embedding of n_heads heads of head_dim values in place;
    // cos/sin hold head_dim / 2 values for this token's position.
    void (*rope)(float* x, int n_heads, int head_dim, const float* cos, const float* sin);

    // In-place softmax: x = exp(x - max) / sum.
    void (*softmax)(float* x, int n);

    // out = relu(g)^2 * u  and  out = silu(g) * u; out may alias g or u.
    void (*relu2_mul)(const float* g, const float* u, float* out, int n);
    void (*silu_mul)(const float* g, const float* u, float* out, int n);

    // Scaled dot-product attention of one head over a KV cache.
    void (*attention_head)(const AttentionHeadArgs& args);
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

// The table of one level. Levels the binary was not built with fall back to Scalar; call
// isa_supported() first to know whether the CPU can run a level.
const KernelTable& kernels(Isa isa);

const char* isa_name(Isa isa);
// Parses "scalar", "avx2", "avx512", "avx512vnni" (case-insensitive); throws bitnet::Error.
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
const KernelTable* avx512_kernels();      // nullptr when not built
const KernelTable* avx512vnni_kernels();  // nullptr when not built

}  // namespace bitnet::cpu
