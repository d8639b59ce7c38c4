// The embedding / lm_head formats: DenseMatrix layout, conversion and row decoding, and the head
// GEMM kernels of each format at every SIMD level against the scalar reference (float kernels
// within summation-order tolerance, the int8 I8R kernel bit for bit).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "bitnet/error.h"
#include "core/half.h"
#include "kernels/cpu/kernels.h"
#include "model/weights.h"

namespace bitnet {
namespace {

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

// An owned f32 matrix of random values (one row with a large outlier, as real heads have).
DenseMatrix random_f32_matrix(int rows, int cols, uint32_t seed) {
    DenseMatrix m;
    m.rows = rows;
    m.cols = cols;
    m.owned = AlignedBuffer<uint8_t>(static_cast<size_t>(rows) * cols * sizeof(float), false);
    std::vector<float> v = random_floats(static_cast<size_t>(rows) * cols, seed);
    if (rows > 1) v[static_cast<size_t>(cols) + cols / 2] = 9.f;
    std::memcpy(m.owned.data(), v.data(), v.size() * sizeof(float));
    m.bind(m.owned.data(), m.owned.bytes());
    return m;
}

const DenseFormat kFormats[] = {DenseFormat::F32, DenseFormat::BF16, DenseFormat::F16,
                                DenseFormat::Q8_0, DenseFormat::I8R};

TEST(DenseMatrixTest, ByteSizesFollowTheGgufLayouts) {
    EXPECT_EQ(dense_format_bytes(DenseFormat::F32, 3, 5), 60u);
    EXPECT_EQ(dense_format_bytes(DenseFormat::BF16, 3, 5), 30u);
    EXPECT_EQ(dense_format_bytes(DenseFormat::F16, 3, 5), 30u);
    EXPECT_EQ(dense_format_bytes(DenseFormat::Q8_0, 3, 64), 3u * 2 * 34);
    // 15 int8 values padded to 16 bytes, then three float scales.
    EXPECT_EQ(dense_format_bytes(DenseFormat::I8R, 3, 5), 16u + 12u);
    EXPECT_STREQ(dense_format_name(DenseFormat::Q8_0), "q8_0");
    EXPECT_STREQ(dense_format_name(DenseFormat::I8R), "i8r");
}

TEST(DenseMatrixTest, BindRejectsWrongSizesAndQ8Columns) {
    std::vector<uint8_t> bytes(1000, 1);
    DenseMatrix m;
    m.format = DenseFormat::F16;
    m.rows = 3;
    m.cols = 5;
    try {
        m.bind(bytes.data(), 31);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::ShapeMismatch);
        EXPECT_NE(std::string(e.what()).find("f16 matrix [3, 5]"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("30"), std::string::npos) << e.what();
    }
    m.format = DenseFormat::Q8_0;
    m.cols = 48;
    EXPECT_THROW(m.bind(bytes.data(), dense_format_bytes(DenseFormat::Q8_0, 3, 48)), Error);
    m.format = DenseFormat::I8R;
    m.cols = 5;
    m.bind(bytes.data(), 28);
    EXPECT_EQ(static_cast<const void*>(m.row_scale), static_cast<const void*>(bytes.data() + 16));
}

TEST(DenseMatrixTest, RowsDecodeAsTheFormatsDefine) {
    // Q8_0: one row of two blocks with scales 0.5 and -2 (exact in f16).
    std::vector<uint8_t> q8(68);
    const uint16_t d0 = f32_to_f16(0.5f), d1 = f32_to_f16(-2.f);
    std::memcpy(q8.data(), &d0, 2);
    std::memcpy(q8.data() + 34, &d1, 2);
    for (int i = 0; i < 32; ++i) {
        q8[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(i - 16));
        q8[36 + i] = static_cast<uint8_t>(static_cast<int8_t>(i == 0 ? -128 : 127 - i));
    }
    DenseMatrix m;
    m.format = DenseFormat::Q8_0;
    m.rows = 1;
    m.cols = 64;
    m.bind(q8.data(), q8.size());
    std::vector<float> row(64);
    m.row_to_f32(0, row.data());
    for (int i = 0; i < 32; ++i) EXPECT_EQ(row[i], 0.5f * static_cast<float>(i - 16));
    EXPECT_EQ(row[32], 256.f);
    for (int i = 1; i < 32; ++i) EXPECT_EQ(row[32 + i], -2.f * static_cast<float>(127 - i));

    // I8R: int8 rows, padding, then the scales.
    std::vector<uint8_t> i8(dense_format_bytes(DenseFormat::I8R, 2, 3));
    const int8_t q[6] = {1, -2, 3, -128, 127, 0};
    const float scales[2] = {0.25f, 3.f};
    std::memcpy(i8.data(), q, 6);
    std::memcpy(i8.data() + 8, scales, 8);
    m = DenseMatrix{};
    m.format = DenseFormat::I8R;
    m.rows = 2;
    m.cols = 3;
    m.bind(i8.data(), i8.size());
    m.row_to_f32(1, row.data());
    EXPECT_EQ(row[0], -384.f);
    EXPECT_EQ(row[1], 381.f);
    EXPECT_EQ(row[2], 0.f);
}

TEST(DenseMatrixTest, ConversionsRoundTripWithinTheFormatsPrecision) {
    const int rows = 7, cols = 96;
    const DenseMatrix src = random_f32_matrix(rows, cols, 5u);
    std::vector<float> a(cols), b(cols);
    for (DenseFormat f : kFormats) {
        const DenseMatrix m = convert_dense(src, f);
        ASSERT_EQ(m.format, f);
        ASSERT_EQ(m.owned.bytes(), dense_format_bytes(f, rows, cols));
        for (int r = 0; r < rows; ++r) {
            src.row_to_f32(r, a.data());
            m.row_to_f32(r, b.data());
            float amax = 0.f;
            for (float v : a) amax = std::max(amax, std::fabs(v));
            for (int i = 0; i < cols; ++i) {
                double tol = 0;
                switch (f) {
                    case DenseFormat::F32:
                        tol = 0;
                        break;
                    case DenseFormat::BF16:
                        tol = std::fabs(a[i]) * 0x1p-8;
                        break;
                    case DenseFormat::F16:
                        tol = std::fabs(a[i]) * 0x1p-11 + 1e-7;
                        break;
                    case DenseFormat::Q8_0:  // half a step of its own block's scale, + f16 of d
                    case DenseFormat::I8R:
                        tol = amax / 127.f * 0.5f + amax * 1e-3;
                        break;
                }
                ASSERT_LE(std::fabs(a[i] - b[i]), tol)
                    << dense_format_name(f) << " r=" << r << " i=" << i;
            }
        }
    }
    EXPECT_THROW(convert_dense(random_f32_matrix(2, 33, 1u), DenseFormat::Q8_0), Error);
}

// ---- head GEMM kernels ---------------------------------------------------------------------

// The head kernel of `m`'s format on float activations.
void head_gemm(const cpu::KernelTable& k, const DenseMatrix& m, int r_begin, int r_end,
               const float* x, int n, int ldx, float* y, int ldy) {
    const int K = m.cols;
    switch (m.format) {
        case DenseFormat::F32:
            return k.dense_gemm_f32(static_cast<const float*>(m.data), K, r_begin, r_end, x, n, ldx,
                                    y, ldy);
        case DenseFormat::BF16:
            return k.dense_gemm_bf16(static_cast<const uint16_t*>(m.data), K, r_begin, r_end, x, n,
                                     ldx, y, ldy);
        case DenseFormat::F16:
            return k.dense_gemm_f16(static_cast<const uint16_t*>(m.data), K, r_begin, r_end, x, n,
                                    ldx, y, ldy);
        case DenseFormat::Q8_0:
            return k.dense_gemm_q8_0(static_cast<const uint8_t*>(m.data), K, r_begin, r_end, x, n,
                                     ldx, y, ldy);
        case DenseFormat::I8R:
            return k.dense_gemm_i8r(static_cast<const int8_t*>(m.data), m.row_scale, K, r_begin,
                                    r_end, x, n, ldx, y, ldy);
    }
}

TEST(HeadKernelScalarTest, MatchesThePlainProductOfDecodedRows) {
    for (DenseFormat f : kFormats) {
        const int rows = 6, cols = 96, n = 2;
        const DenseMatrix m = convert_dense(random_f32_matrix(rows, cols, 21u), f);
        const std::vector<float> x = random_floats(static_cast<size_t>(n) * cols, 22u);
        std::vector<float> y(static_cast<size_t>(n) * rows), w(cols);
        head_gemm(cpu::scalar_kernels(), m, 0, rows, x.data(), n, cols, y.data(), rows);
        for (int i = 0; i < n; ++i) {
            for (int r = 0; r < rows; ++r) {
                m.row_to_f32(r, w.data());
                double dot = 0, scale = 0;
                for (int j = 0; j < cols; ++j) {
                    dot += static_cast<double>(x[static_cast<size_t>(i) * cols + j]) * w[j];
                    scale += std::fabs(x[static_cast<size_t>(i) * cols + j] * w[j]);
                }
                EXPECT_NEAR(y[static_cast<size_t>(i) * rows + r], dot, 1e-5 * scale)
                    << dense_format_name(f) << " i=" << i << " r=" << r;
            }
        }
    }
}

class HeadKernelTest : public ::testing::TestWithParam<cpu::Isa> {
  protected:
    const cpu::KernelTable& k() const { return cpu::kernels(GetParam()); }
};

TEST_P(HeadKernelTest, FloatActivationsMatchTheScalarReference) {
    for (DenseFormat f : kFormats) {
        for (int cols : {1, 7, 32, 64, 96, 255, 320, 2560}) {
            if (f == DenseFormat::Q8_0 && cols % 32 != 0) continue;
            for (int rows : {1, 5, 9, 33}) {
                for (int n : {1, 2, 3, 5, 8}) {
                    const uint32_t seed = 7u * cols + 3u * rows + n;
                    const DenseMatrix m = convert_dense(random_f32_matrix(rows, cols, seed), f);
                    const int ldx = cols + 3, ldy = rows + 2;
                    const std::vector<float> x =
                        random_floats(static_cast<size_t>(n) * ldx, seed + 1, -2.f, 2.f);
                    std::vector<float> y_ref(static_cast<size_t>(n) * ldy, -3.f), y(y_ref);
                    const int r_begin = rows > 4 ? 2 : 0;
                    head_gemm(cpu::scalar_kernels(), m, r_begin, rows, x.data(), n, ldx,
                              y_ref.data(), ldy);
                    head_gemm(k(), m, r_begin, rows, x.data(), n, ldx, y.data(), ldy);
                    std::vector<float> w(cols);
                    for (int i = 0; i < n; ++i) {
                        for (int r = 0; r < ldy; ++r) {
                            double scale = 0;  // sum |x w|: the size of the rounding error
                            if (r >= r_begin && r < rows) {
                                m.row_to_f32(r, w.data());
                                for (int j = 0; j < cols; ++j)
                                    scale += std::fabs(x[static_cast<size_t>(i) * ldx + j] * w[j]);
                            }
                            const size_t at = static_cast<size_t>(i) * ldy + r;
                            ASSERT_LE(std::fabs(static_cast<double>(y[at]) - y_ref[at]),
                                      2e-5 * scale + 1e-30)
                                << dense_format_name(f) << " rows=" << rows << " cols=" << cols
                                << " n=" << n << " i=" << i << " r=" << r << ": " << y[at] << " vs "
                                << y_ref[at];
                        }
                    }
                }
            }
        }
    }
}

// Speculative decoding verifies drafted tokens in one call of several activation rows and must
// pick exactly the token plain decoding (one row a call) would, so every level's head gives each
// row bit for bit the same logits alone and in company, in every format (scalar included).
void check_rows_alone_and_together(const cpu::KernelTable& k, const char* level) {
    for (DenseFormat f : kFormats) {
        // 512 and 513: both sides of the one-row tiles for short rows (kShortDenseRow); 544
        // and 2560: the AMX level's bf16 tiles (more than 512 columns, a multiple of 32).
        for (int cols : {32, 96, 200, 512, 513, 544, 2560}) {
            if (f == DenseFormat::Q8_0 && cols % 32 != 0) continue;
            for (int rows : {3, 13, 70}) {
                const uint32_t seed = 5u * cols + rows;
                const DenseMatrix m = convert_dense(random_f32_matrix(rows, cols, seed), f);
                const int n = 17, ldx = cols + 1, ldy = rows;
                const std::vector<float> x =
                    random_floats(static_cast<size_t>(n) * ldx, seed + 2, -2.f, 2.f);
                for (int r_begin : {0, 1}) {
                    std::vector<float> together(static_cast<size_t>(n) * ldy, 0.f), alone(rows);
                    // Past one 4 x 4 tile of activation rows, and its tails.
                    for (int batch : {2, 3, 5, 8, 9, 11, 16, 17}) {
                        head_gemm(k, m, r_begin, rows, x.data(), batch, ldx, together.data(), ldy);
                        for (int i = 0; i < batch; ++i) {
                            head_gemm(k, m, r_begin, rows, x.data() + static_cast<size_t>(i) * ldx,
                                      1, ldx, alone.data(), ldy);
                            for (int r = r_begin; r < rows; ++r) {
                                const float t = together[static_cast<size_t>(i) * ldy + r];
                                ASSERT_EQ(std::memcmp(&t, &alone[r], sizeof(float)), 0)
                                    << level << " " << dense_format_name(f) << " rows=" << rows
                                    << " cols=" << cols << " batch=" << batch << " i=" << i
                                    << " r=" << r << ": " << t << " vs " << alone[r];
                            }
                        }
                    }
                }
            }
        }
    }
}

TEST(HeadKernelScalarTest, EachRowIsTheSameAloneAndInABatch) {
    check_rows_alone_and_together(cpu::scalar_kernels(), "scalar");
}

TEST_P(HeadKernelTest, EachRowIsTheSameAloneAndInABatch) {
    check_rows_alone_and_together(k(), cpu::isa_name(GetParam()));
}

// A single activation row over a range of 8 MiB and more (a head streamed from memory) reads the
// rows one after another; each row must still be the bits of a batch's row, and near the scalar
// reference. Ranges start and end off the groups of four.
TEST_P(HeadKernelTest, LongRangesAloneAreTheSameAsInABatch) {
    const int cols = 2560;
    for (DenseFormat f :
         {DenseFormat::F32, DenseFormat::BF16, DenseFormat::F16, DenseFormat::I8R}) {
        const size_t elem = f == DenseFormat::F32 ? 4 : f == DenseFormat::I8R ? 1 : 2;
        const int rows = static_cast<int>((size_t{9} << 20) / (cols * elem)) + 3;
        const DenseMatrix m = convert_dense(random_f32_matrix(rows, cols, 31u), f);
        const int n = 3, ldx = cols + 1;
        const std::vector<float> x = random_floats(static_cast<size_t>(n) * ldx, 32u, -2.f, 2.f);
        const int r_begin = 1, r_end = rows - 2;
        std::vector<float> together(static_cast<size_t>(n) * rows, 0.f), alone(rows, 0.f),
            reference(rows, 0.f);
        head_gemm(k(), m, r_begin, r_end, x.data(), n, ldx, together.data(), rows);
        std::vector<float> w(cols);
        for (int i = 0; i < n; ++i) {
            const float* xi = x.data() + static_cast<size_t>(i) * ldx;
            head_gemm(k(), m, r_begin, r_end, xi, 1, ldx, alone.data(), rows);
            head_gemm(cpu::scalar_kernels(), m, r_begin, r_end, xi, 1, ldx, reference.data(), rows);
            for (int r = r_begin; r < r_end; ++r) {
                const float t = together[static_cast<size_t>(i) * rows + r];
                ASSERT_EQ(std::memcmp(&t, &alone[r], sizeof(float)), 0)
                    << dense_format_name(f) << " i=" << i << " r=" << r << ": " << t << " vs "
                    << alone[r];
                if (r % 97 != 0) continue;  // the reference for a sample of the rows
                m.row_to_f32(r, w.data());
                double scale = 0;
                for (int j = 0; j < cols; ++j) scale += std::fabs(xi[j] * w[j]);
                ASSERT_NEAR(alone[r], reference[r], 1e-5 * scale)
                    << dense_format_name(f) << " i=" << i << " r=" << r;
            }
        }
    }
}

// The int8 I8R head against the scalar reference, bit for bit; rows [r_begin, r_end) only.
void check_int8_head(const cpu::KernelTable& k, const std::vector<int8_t>& w,
                     const std::vector<float>& row_scale, int rows, int cols,
                     const std::vector<int8_t>& xq, const std::vector<float>& x_scale, int n,
                     int ldx, int r_begin) {
    const int ldy = rows + 1;
    std::vector<float> y_ref(static_cast<size_t>(n) * ldy, 5.f), y(y_ref);
    cpu::scalar_kernels().int8_gemm_i8r(w.data(), row_scale.data(), cols, r_begin, rows, xq.data(),
                                        x_scale.data(), n, ldx, y_ref.data(), ldy);
    k.int8_gemm_i8r(w.data(), row_scale.data(), cols, r_begin, rows, xq.data(), x_scale.data(), n,
                    ldx, y.data(), ldy);
    for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_EQ(std::memcmp(&y[i], &y_ref[i], sizeof(float)), 0)
            << "rows=" << rows << " cols=" << cols << " n=" << n << " m=" << i / ldy
            << " r=" << i % ldy << ": " << y[i] << " vs " << y_ref[i];
    }
}

TEST_P(HeadKernelTest, Int8I8rIsExact) {
    std::mt19937 rng(3);
    std::uniform_int_distribution<int> wdist(-128, 127);
    for (int cols : {1, 7, 31, 32, 63, 64, 65, 200, 2560}) {
        for (int rows : {1, 4, 9, 17}) {
            for (int n : {1, 2, 3, 4, 5, 9}) {
                std::vector<int8_t> w(static_cast<size_t>(rows) * cols);
                for (int8_t& v : w) v = static_cast<int8_t>(wdist(rng));
                const std::vector<float> row_scale = random_floats(rows, 9u + cols, 0.01f, 0.1f);
                const int ldx = cols + 5;
                const std::vector<float> x =
                    random_floats(static_cast<size_t>(n) * ldx, 11u + cols + rows + n, -3.f, 3.f);
                std::vector<int8_t> xq(static_cast<size_t>(n) * ldx, int8_t{77});
                std::vector<float> x_scale(n);
                for (int i = 0; i < n; ++i) {
                    int32_t sum = 0;
                    x_scale[i] = 1.f / cpu::scalar_kernels().quantize_row_i8(
                                           x.data() + static_cast<size_t>(i) * ldx, cols, cols,
                                           xq.data() + static_cast<size_t>(i) * ldx, &sum);
                }
                check_int8_head(k(), w, row_scale, rows, cols, xq, x_scale, n, ldx,
                                rows > 3 ? 1 : 0);
            }
        }
    }
}

TEST_P(HeadKernelTest, Int8I8rManyActivationRows) {
    // Past 256 rows the kernels take activation rows in groups (their sums live on the stack);
    // the AMX level's tiles (rows of more than 512 columns, a multiple of 64) take sixteen
    // activation rows a tile, two tiles at a time, and head rows in blocks of sixteen.
    struct Shape {
        int rows, cols, n;
    };
    for (const Shape& s : {Shape{9, 65, 261}, Shape{70, 640, 37}}) {
        std::mt19937 rng(5);
        std::uniform_int_distribution<int> wdist(-128, 127), xdist(-127, 127);
        const int ldx = s.cols + 3;
        std::vector<int8_t> w(static_cast<size_t>(s.rows) * s.cols),
            xq(static_cast<size_t>(s.n) * ldx);
        for (int8_t& v : w) v = static_cast<int8_t>(wdist(rng));
        for (int8_t& v : xq) v = static_cast<int8_t>(xdist(rng));
        const std::vector<float> row_scale = random_floats(s.rows, 13u, 0.01f, 0.1f);
        const std::vector<float> x_scale = random_floats(s.n, 14u, 0.01f, 0.1f);
        check_int8_head(k(), w, row_scale, s.rows, s.cols, xq, x_scale, s.n, ldx, 1);
    }
}

TEST_P(HeadKernelTest, Int8I8rExtremes) {
    // Weights -128 / 127 against activations -127 / 127: the largest products and the value
    // (-128) whose negation does not fit in int8.
    const int rows = 4, cols = 2560, n = 3;
    std::vector<int8_t> w(static_cast<size_t>(rows) * cols);
    for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < cols; ++c)
            w[static_cast<size_t>(r) * cols + c] =
                static_cast<int8_t>(r == 0   ? -128
                                    : r == 1 ? 127
                                             : (c % 2 ? -128 : 127));
    }
    std::vector<int8_t> xq(static_cast<size_t>(n) * cols);
    for (int i = 0; i < n; ++i) {
        for (int c = 0; c < cols; ++c)
            xq[static_cast<size_t>(i) * cols + c] =
                static_cast<int8_t>(i == 0   ? -127
                                    : i == 1 ? 127
                                             : (c % 3 ? 127 : -127));
    }
    const std::vector<float> row_scale = {1.f, 0.5f, 0.25f, 2.f};
    const std::vector<float> x_scale = {1.f, 1.f / 3.f, 1.f};
    check_int8_head(k(), w, row_scale, rows, cols, xq, x_scale, n, cols, 0);
    // And the reference itself against plain arithmetic.
    std::vector<float> y(static_cast<size_t>(n) * rows);
    cpu::scalar_kernels().int8_gemm_i8r(w.data(), row_scale.data(), cols, 0, rows, xq.data(),
                                        x_scale.data(), n, cols, y.data(), rows);
    EXPECT_EQ(y[0], static_cast<float>(-128 * -127 * cols));
    EXPECT_EQ(y[rows + 1], (static_cast<float>(127 * 127 * cols) * 0.5f) * x_scale[1]);
}

std::vector<cpu::Isa> simd_levels() {
    std::vector<cpu::Isa> out;
    for (cpu::Isa isa : cpu::supported_isas()) {
        if (isa != cpu::Isa::Scalar) out.push_back(isa);
    }
    return out;
}

INSTANTIATE_TEST_SUITE_P(Levels, HeadKernelTest, ::testing::ValuesIn(simd_levels()),
                         [](const ::testing::TestParamInfo<cpu::Isa>& p) {
                             return std::string(cpu::isa_name(p.param));
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(HeadKernelTest);

}  // namespace
}  // namespace bitnet
