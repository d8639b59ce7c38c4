// The scalar reference: the plainest correct code for every kernel. The SIMD levels are
// tested against these functions, so clarity beats speed here.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "kernels/cpu/int8_kv_layout.h"
#include "kernels/cpu/kernels.h"

namespace bitnet::cpu {
namespace {

// Sums in the order a 16-lane vector unit does: lane j accumulates elements j, j + 16, ...,
// then the lanes are added pairwise (8, 4, 2, 1). Vectorised libraries, PyTorch among them,
// reduce this way, so the reference rounds like them rather than like a sequential loop.
template <typename Term>
float lane_sum(int n, Term term) {
    float lanes[16] = {};
    for (int i = 0; i < n; ++i) lanes[i % 16] += term(i);
    for (int width = 8; width >= 1; width /= 2) {
        for (int j = 0; j < width; ++j) lanes[j] += lanes[j + width];
    }
    return lanes[0];
}

// quantize_row_i8 of the n values value(i) gives.
template <typename Value>
float quantize_values(int n, int n_pad, int8_t* q, int32_t* sum, Value value) {
    float amax = 0.f;
    for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(value(i)));
    const float scale = 127.f / std::max(amax, 1e-5f);
    int32_t s = 0;
    for (int i = 0; i < n; ++i) {
        const float r = std::nearbyint(value(i) * scale);
        const int v = static_cast<int>(std::clamp(r, -128.f, 127.f));
        q[i] = static_cast<int8_t>(v);
        s += v;
    }
    for (int i = n; i < n_pad; ++i) q[i] = 0;
    *sum = s;
    return scale;
}

float quantize_row_i8(const float* x, int n, int n_pad, int8_t* q, int32_t* sum) {
    return quantize_values(n, n_pad, q, sum, [x](int i) { return x[i]; });
}

// The code (weight + 1) at (r, k) of a packed matrix, either layout (see kernels.h).
inline int ternary_code(const TernaryMatrixView& w, int r, int k) {
    if (w.layout == TernaryLayout::Trits5) {
        const int within = k % kTernary5Block;
        unsigned m = w.block(r, k / kTernary5Block)[within % kTernary5BlockBytes];
        for (int i = 0; i < within / kTernary5BlockBytes; ++i) m = (m * 3) & 0xffu;
        return static_cast<int>((m * 3) >> 8);
    }
    const int within = k % kTernaryBlock;
    const uint8_t byte = w.block(r, k / kTernaryBlock)[within % kTernaryBlockBytes];
    return (byte >> (2 * (within / kTernaryBlockBytes))) & 3;
}

void ternary_gemm(const TernaryMatrixView& w, int r_begin, int r_end, const QuantizedActivations& x,
                  float* y, int ldy) {
    // Each row's weights are unpacked once for all the tokens: unpacking them again for every
    // token made the tiny reference models' prompt tests at this level 9-13x slower. The sums are
    // of integers, so the order is free.
    std::vector<int8_t> row(static_cast<size_t>(w.cols));
    for (int r = r_begin; r < r_end; ++r) {
        for (int k = 0; k < w.cols; ++k)
            row[static_cast<size_t>(k)] = static_cast<int8_t>(ternary_code(w, r, k) - 1);
        for (int m = 0; m < x.rows; ++m) {
            const int8_t* xq = x.q + static_cast<size_t>(m) * x.stride;
            int32_t acc = 0;
            for (int k = 0; k < w.cols; ++k) acc += xq[k] * row[static_cast<size_t>(k)];
            y[static_cast<size_t>(m) * ldy + r] = static_cast<float>(acc) * x.out_scale[m];
        }
    }
}

template <typename LoadW>
void dense_gemm(LoadW load, int k, int r_begin, int r_end, const float* x, int m, int ldx, float* y,
                int ldy) {
    for (int i = 0; i < m; ++i) {
        const float* xi = x + static_cast<size_t>(i) * ldx;
        for (int r = r_begin; r < r_end; ++r) {
            float acc = 0.f;
            for (int j = 0; j < k; ++j) acc += xi[j] * load(static_cast<size_t>(r) * k + j);
            y[static_cast<size_t>(i) * ldy + r] = acc;
        }
    }
}

void dense_gemm_f32(const float* w, int k, int r_begin, int r_end, const float* x, int m, int ldx,
                    float* y, int ldy) {
    dense_gemm([w](size_t i) { return w[i]; }, k, r_begin, r_end, x, m, ldx, y, ldy);
}

void dense_gemm_bf16(const uint16_t* w, int k, int r_begin, int r_end, const float* x, int m,
                     int ldx, float* y, int ldy) {
    dense_gemm([w](size_t i) { return bf16_to_f32(w[i]); }, k, r_begin, r_end, x, m, ldx, y, ldy);
}

void dense_gemm_f16(const uint16_t* w, int k, int r_begin, int r_end, const float* x, int m,
                    int ldx, float* y, int ldy) {
    dense_gemm([w](size_t i) { return f16_to_f32(w[i]); }, k, r_begin, r_end, x, m, ldx, y, ldy);
}

constexpr int kQ8Block = 32;
constexpr size_t kQ8BlockBytes = 34;

void dense_gemm_q8_0(const uint8_t* w, int k, int r_begin, int r_end, const float* x, int m,
                     int ldx, float* y, int ldy) {
    // Element i of the matrix is in block i / 32, which starts at (i / 32) * 34 bytes, because
    // k is a multiple of 32 and rows therefore hold whole blocks.
    auto load = [w](size_t i) {
        const uint8_t* block = w + i / kQ8Block * kQ8BlockBytes;
        const float d = f16_to_f32(static_cast<uint16_t>(block[0] | (block[1] << 8)));
        return d * static_cast<float>(static_cast<int8_t>(block[2 + i % kQ8Block]));
    };
    dense_gemm(load, k, r_begin, r_end, x, m, ldx, y, ldy);
}

void dense_gemm_i8r(const int8_t* w, const float* row_scale, int k, int r_begin, int r_end,
                    const float* x, int m, int ldx, float* y, int ldy) {
    dense_gemm([w](size_t i) { return static_cast<float>(w[i]); }, k, r_begin, r_end, x, m, ldx, y,
               ldy);
    for (int i = 0; i < m; ++i) {
        for (int r = r_begin; r < r_end; ++r) y[static_cast<size_t>(i) * ldy + r] *= row_scale[r];
    }
}

void int8_gemm_i8r(const int8_t* w, const float* row_scale, int k, int r_begin, int r_end,
                   const int8_t* xq, const float* x_scale, int m, int ldx, float* y, int ldy) {
    for (int i = 0; i < m; ++i) {
        const int8_t* xi = xq + static_cast<size_t>(i) * ldx;
        for (int r = r_begin; r < r_end; ++r) {
            const int8_t* wr = w + static_cast<size_t>(r) * k;
            int32_t acc = 0;
            for (int j = 0; j < k; ++j) acc += xi[j] * wr[j];
            y[static_cast<size_t>(i) * ldy + r] =
                (static_cast<float>(acc) * row_scale[r]) * x_scale[i];
        }
    }
}

float rms_inverse(const float* x, int n, float eps) {
    const float ss = lane_sum(n, [x](int i) { return x[i] * x[i]; });
    return 1.f / std::sqrt(ss / static_cast<float>(n) + eps);
}

void rms_norm(const float* x, const float* w, int n, float eps, float* out) {
    const float inv = rms_inverse(x, n, eps);
    for (int i = 0; i < n; ++i) out[i] = w[i] * (x[i] * inv);
}

float rms_norm_quantize_i8(const float* x, const float* w, int n, float eps, int n_pad, int8_t* q,
                           int32_t* sum) {
    const float inv = rms_inverse(x, n, eps);
    return quantize_values(n, n_pad, q, sum, [&](int i) { return w[i] * (x[i] * inv); });
}

void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; ++h) {
        float* v = x + static_cast<size_t>(h) * head_dim;
        for (int i = 0; i < half; ++i) {
            const float x1 = v[i];
            const float x2 = v[i + half];
            v[i] = x1 * cos[i] - x2 * sin[i];
            v[i + half] = x2 * cos[i] + x1 * sin[i];
        }
    }
}

void softmax(float* x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; ++i) mx = std::max(mx, x[i]);
    for (int i = 0; i < n; ++i) x[i] = std::exp(x[i] - mx);
    const float sum = lane_sum(n, [x](int i) { return x[i]; });
    const float inv = 1.f / sum;
    for (int i = 0; i < n; ++i) x[i] *= inv;
}

void relu2_mul(const float* g, const float* u, float* out, int n) {
    for (int i = 0; i < n; ++i) {
        const float r = std::max(g[i], 0.f);
        out[i] = r * r * u[i];
    }
}

void silu_mul(const float* g, const float* u, float* out, int n) {
    for (int i = 0; i < n; ++i) out[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

inline float load_kv(const void* base, KvType type, size_t i) {
    switch (type) {
        case KvType::F32:
            return static_cast<const float*>(base)[i];
        case KvType::F16:
            return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
        case KvType::BF16:
            return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
        case KvType::I8:
            return static_cast<float>(static_cast<const int8_t*>(base)[i]);
    }
    return 0.f;
}

// I8 scores: integer dot products of the quantised query with the int8 keys.
void int8_scores(const AttentionHeadArgs& a) {
    std::vector<int8_t> q8(static_cast<size_t>(a.head_dim));
    int32_t sum = 0;
    const float qd = a.scale / quantize_row_i8(a.q, a.head_dim, a.head_dim, q8.data(), &sum);
    const int8_t* k = static_cast<const int8_t*>(a.k);
    for (int p = 0; p < a.n_keys; ++p) {
        int32_t dot = 0;
        for (int d = 0; d < a.head_dim; ++d) dot += q8[d] * k[int8_key_offset(p, d, a.head_dim)];
        a.scratch[p] = (static_cast<float>(dot) * qd) * a.k_scale[p];
    }
}

void float_scores(const AttentionHeadArgs& a) {
    for (int p = 0; p < a.n_keys; ++p) {
        const float dot = lane_sum(a.head_dim, [&](int d) {
            return a.q[d] * load_kv(a.k, a.kv_type, p * a.row_stride + d);
        });
        a.scratch[p] = dot * a.scale;
    }
}

// I8 values: integer sums of 14-bit weights, a chunk of keys at a time (see AttentionHeadArgs).
void int8_values(const AttentionHeadArgs& a, const float* w) {
    const int hd = a.head_dim;
    const int8_t* v = static_cast<const int8_t*>(a.v);
    std::vector<int32_t> high(static_cast<size_t>(hd)), low(static_cast<size_t>(hd));
    for (int d = 0; d < hd; ++d) a.out[d] = 0.f;
    for (int c0 = 0; c0 < a.n_keys; c0 += kInt8ValueChunk) {
        const int c1 = std::min(a.n_keys, c0 + kInt8ValueChunk);
        float largest = 0.f;
        for (int p = c0; p < c1; ++p) largest = w[p] > largest ? w[p] : largest;
        const float m = kInt8WeightLevels / largest;
        std::fill(high.begin(), high.end(), 0);
        std::fill(low.begin(), low.end(), 0);
        for (int p = c0; p < c1; ++p) {
            // As vmaxps / vminps order their operands: a NaN becomes 0.
            float x = w[p] * m;
            x = x > 0.f ? x : 0.f;
            x = x < kInt8WeightLevels ? x : kInt8WeightLevels;
            const int weight = static_cast<int>(std::nearbyint(x));
            const int hi = weight >> 7, lo = weight & 127;
            for (int d = 0; d < hd; ++d) {
                const int value = v[int8_value_offset(p, d, hd)];
                high[static_cast<size_t>(d)] += hi * value;
                low[static_cast<size_t>(d)] += lo * value;
            }
        }
        const float unit = largest / kInt8WeightLevels;
        for (int d = 0; d < hd; ++d) {
            const float sum = std::fma(static_cast<float>(high[static_cast<size_t>(d)]), 128.f,
                                       static_cast<float>(low[static_cast<size_t>(d)]));
            a.out[d] = std::fma(sum, unit, a.out[d]);
        }
    }
}

void attention_query(const AttentionHeadArgs& a) {
    if (a.kv_type == KvType::I8) {
        int8_scores(a);
    } else {
        float_scores(a);
    }
    softmax(a.scratch, a.n_keys);
    if (a.kv_type == KvType::I8) {
        for (int p = 0; p < a.n_keys; ++p) a.scratch[p] *= a.v_scale[p];
        return int8_values(a, a.scratch);
    }
    for (int d = 0; d < a.head_dim; ++d) a.out[d] = 0.f;
    for (int p = 0; p < a.n_keys; ++p) {
        const float pw = a.scratch[p];
        for (int d = 0; d < a.head_dim; ++d)
            a.out[d] += pw * load_kv(a.v, a.kv_type, p * a.row_stride + d);
    }
}

void attention_head(const AttentionHeadArgs& a) {
    attention_each_query(a, attention_query);
}

void store_kv_row(const float* x, int n, KvType type, void* out, float* scale) {
    switch (type) {
        case KvType::F32:
            std::memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
            return;
        case KvType::F16:
            for (int i = 0; i < n; ++i) static_cast<uint16_t*>(out)[i] = f32_to_f16(x[i]);
            return;
        case KvType::BF16:
            for (int i = 0; i < n; ++i) static_cast<uint16_t*>(out)[i] = f32_to_bf16(x[i]);
            return;
        case KvType::I8: {
            int32_t sum = 0;
            *scale = 1.f / quantize_row_i8(x, n, n, static_cast<int8_t*>(out), &sum);
            return;
        }
    }
}

void store_int8_kv(const float* x, int head_dim, int pos, bool key, int8_t* plane, float* scale) {
    store_int8_row(quantize_row_i8, x, head_dim, pos, key, plane, scale);
}

constexpr int kFloatOrderGroup = 8;

// out[i][g] = sum over k of x[i][k] * wv[k][g], fused multiply-adds in k order; the group's
// chains are independent, which hides the FMA latency. Built twice and picked at load time:
// with FMA instructions, std::fma is one instruction (the group's eight chains one vector FMA);
// without them, a call to the C library's fmaf, which is correctly rounded too, so both give
// the same bits. (A call per multiply-add made reference-numerics models 60x slower under
// AddressSanitizer than in a release build: 4-5 minutes a test.)
__attribute__((target_clones("fma", "default"))) void float_order_group(const float* x, int m,
                                                                        size_t cols,
                                                                        const float* wv,
                                                                        float* out) {
    for (int i = 0; i < m; ++i) {
        const float* xi = x + static_cast<size_t>(i) * cols;
        float acc[kFloatOrderGroup] = {};
        for (size_t k = 0; k < cols; ++k) {
            const float xk = xi[k];
            const float* wk = wv + k * kFloatOrderGroup;
            for (int g = 0; g < kFloatOrderGroup; ++g) acc[g] = std::fma(xk, wk[g], acc[g]);
        }
        for (int g = 0; g < kFloatOrderGroup; ++g) out[i * kFloatOrderGroup + g] = acc[g];
    }
}

}  // namespace

void ternary_gemm_float_order(const TernaryMatrixView& w, int r_begin, int r_end, const int8_t* q,
                              int stride, const float* s_x, int m, float alpha, bool alpha_inside,
                              float* y, int ldy) {
    // Rows go in groups whose weights are expanded to floats once and reused for every token.
    constexpr int kGroup = kFloatOrderGroup;
    const size_t cols = static_cast<size_t>(w.cols);
    std::vector<float> x(static_cast<size_t>(m) * cols);
    for (int i = 0; i < m; ++i) {
        for (size_t k = 0; k < cols; ++k)
            x[i * cols + k] = static_cast<float>(q[static_cast<size_t>(i) * stride + k]) / s_x[i];
    }
    const float plus = alpha_inside ? alpha : 1.f;
    const float weight_value[4] = {-plus, 0.f, plus, 0.f};
    std::vector<float> wv(kGroup * cols), out(static_cast<size_t>(m) * kGroup);
    for (int r0 = r_begin; r0 < r_end; r0 += kGroup) {
        const int rows = std::min(kGroup, r_end - r0);
        for (size_t k = 0; k < cols; ++k) {
            for (int g = 0; g < kGroup; ++g) {
                wv[k * kGroup + g] =
                    g < rows ? weight_value[ternary_code(w, r0 + g, static_cast<int>(k))] : 0.f;
            }
        }
        float_order_group(x.data(), m, cols, wv.data(), out.data());
        for (int i = 0; i < m; ++i) {
            for (int g = 0; g < rows; ++g) {
                const float acc = out[static_cast<size_t>(i) * kGroup + g];
                y[static_cast<size_t>(i) * ldy + r0 + g] = alpha_inside ? acc : acc * alpha;
            }
        }
    }
}

const KernelTable& scalar_kernels() {
    static const KernelTable table{
        .isa = Isa::Scalar,
        .name = "scalar",
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
    return table;
}

}  // namespace bitnet::cpu
