// CPU kernels: the scalar reference against plain arithmetic, and every SIMD level this CPU
// supports against the scalar reference. Integer results (ternary_gemm, quantize_row_i8) must
// be bit-identical; float kernels may differ by summation order only.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/half.h"
#include "kernels/cpu/dense_groups.h"
#include "kernels/cpu/int8_kv_layout.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/ternary_pack.h"

namespace bitnet::cpu {

// Names the level in gtest messages instead of dumping the enum's bytes. Static, in Isa's own
// namespace so gtest finds it by argument-dependent lookup without an external symbol.
[[maybe_unused]] static void PrintTo(Isa isa, std::ostream* os) {
    *os << isa_name(isa);
}

namespace {

const int kCols[] = {1, 3, 63, 64, 255, 256, 257, 500, 767, 2560};

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

std::vector<int8_t> random_ternary(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> dist(-1, 1);
    std::vector<int8_t> v(n);
    for (int8_t& x : v) x = static_cast<int8_t>(dist(rng));
    return v;
}

bool same_bits(float a, float b) {
    return std::memcmp(&a, &b, sizeof a) == 0;
}

// A packed ternary matrix with its plain values, and quantised activations for it.
// A packed layout, and for Bits2 whether the rows are stored in row tiles and whether a copy in
// row groups comes with them (kernels.h).
struct Storage {
    TernaryLayout layout;
    bool tiled = false;
    bool groups = false;
    Storage(TernaryLayout l, bool t = false, bool g = false)  // NOLINT: implicit
        : layout(l), tiled(t), groups(g) {}
    operator TernaryLayout() const { return layout; }  // NOLINT: implicit
};

struct TernaryProblem {
    int rows, cols, cols_padded, batch, stride;
    std::vector<int8_t> values;  // [rows, cols]
    std::vector<uint8_t> packed;
    std::vector<int8_t> q;  // [batch, stride]
    std::vector<int32_t> row_sum;
    std::vector<float> out_scale;

    TernaryLayout layout;
    bool tiled;
    bool grouped;
    std::vector<uint8_t> tiled_packed;  // the row tiles of `packed`, when tiled
    AlignedBuffer<uint8_t> groups;      // its row groups, when grouped

    TernaryProblem(int rows_, int cols_, int batch_, uint32_t seed,
                   Storage storage = TernaryLayout::Bits2)
        : rows(rows_),
          cols(cols_),
          cols_padded(round_up(cols_, ternary_block(storage.layout))),
          batch(batch_),
          stride(ternary_activation_stride(cols_) + 32),
          layout(storage.layout),
          tiled(storage.tiled),
          grouped(storage.groups) {
        values = random_ternary(static_cast<size_t>(rows) * cols, seed);
        repack();
        // Bytes between cols_padded and stride are not part of any row: make them loud.
        q.assign(static_cast<size_t>(batch) * stride, int8_t{99});
        row_sum.resize(batch);
        out_scale.resize(batch);
        const std::vector<float> x =
            random_floats(static_cast<size_t>(batch) * cols, seed + 1, -3.f, 3.f);
        for (int m = 0; m < batch; ++m) {
            const float s = scalar_kernels().quantize_row_i8(
                x.data() + static_cast<size_t>(m) * cols, cols, cols_padded,
                q.data() + static_cast<size_t>(m) * stride, &row_sum[m]);
            out_scale[m] = 0.37f / s;
        }
    }
    // Packs `values` again (after a test changed them).
    void repack() {
        packed.assign(ternary_packed_bytes(rows, cols, layout), 0);
        const TernaryMatrixView v = row_major_view();
        for (int r = 0; r < rows; ++r) {
            uint8_t* out = packed.data() + static_cast<size_t>(r) * v.row_bytes();
            if (layout == TernaryLayout::Bits2) {
                pack_ternary_row(values.data() + static_cast<size_t>(r) * cols, cols, out);
            } else {
                pack_ternary5_row(values.data() + static_cast<size_t>(r) * cols, cols, out);
            }
        }
        if (tiled) {
            // Loud bytes first: tiling must write every byte.
            tiled_packed.assign(ternary_packed_bytes(rows, cols), uint8_t{0xff});
            tile_ternary_rows(v, tiled_packed.data());
        }
        if (grouped) {
            // Loud bytes again: every byte of the groups must be written.
            groups = AlignedBuffer<uint8_t>(ternary_groups_bytes(v) + 64, false);
            std::memset(groups.data(), 0xff, groups.bytes());
            group_ternary_rows(view_of_storage(), groups.data());
        }
    }
    TernaryMatrixView row_major_view() const {
        return make_ternary_view(packed.data(), rows, cols, layout);
    }
    // The matrix as the kernels under test read it: in row tiles when tiled, with its row groups
    // when grouped.
    TernaryMatrixView view() const {
        TernaryMatrixView v = view_of_storage();
        if (grouped) v.groups = groups.data();
        return v;
    }
    TernaryMatrixView view_of_storage() const {
        if (!tiled) return row_major_view();
        TernaryMatrixView v = row_major_view();
        v.data = tiled_packed.data();
        v.tiled = true;
        return v;
    }
    std::string name() const {
        return std::string(layout_name(layout)) + (tiled ? " (row tiles)" : "") +
               (grouped ? " (+ row groups)" : "");
    }
    QuantizedActivations acts() const {
        return {q.data(), row_sum.data(), out_scale.data(), batch, stride};
    }
};

// ---- the scalar reference against plain arithmetic --------------------------------------------

const Storage kLayouts[] = {TernaryLayout::Bits2,
                            {TernaryLayout::Bits2, true},
                            {TernaryLayout::Bits2, false, true},
                            TernaryLayout::Trits5};

TEST(KernelScalarTest, PackRoundTrip) {
    for (const Storage layout : kLayouts) {
        for (int cols : kCols) {
            const TernaryProblem p(5, cols, 1, 11u + cols, layout);
            const TernaryMatrixView w = p.view();
            ASSERT_EQ(w.cols_padded, round_up(cols, ternary_block(layout)));
            ASSERT_EQ(w.row_bytes() * 5, ternary_packed_bytes(5, cols, layout));
            for (int r = 0; r < p.rows; ++r) {
                for (int k = 0; k < cols; ++k)
                    ASSERT_EQ(ternary_at(w, r, k), p.values[static_cast<size_t>(r) * cols + k])
                        << p.name() << " cols=" << cols << " r=" << r << " k=" << k;
                for (int k = cols; k < w.cols_padded; ++k)
                    ASSERT_EQ(ternary_at(w, r, k), 0) << p.name() << " padding, cols=" << cols;
            }
            EXPECT_FALSE(find_invalid_ternary_code(w).has_value());
        }
    }
}

TEST(KernelScalarTest, Trits5EncodesEveryCombination) {
    // Byte j of a block holds k = j + 64 i, i = 0..4: put all 243 combinations in bytes 0..63 of
    // four blocks and read them back.
    const int cols = 4 * kTernary5Block;
    std::vector<int8_t> v(cols, 0);
    for (int n = 0; n < 243; ++n) {
        const int block = n / 64, j = n % 64;
        int rest = n;
        for (int i = 4; i >= 0; --i, rest /= 3)
            v[block * kTernary5Block + j + 64 * i] = static_cast<int8_t>(rest % 3 - 1);
    }
    std::vector<uint8_t> packed(ternary_packed_bytes(1, cols, TernaryLayout::Trits5));
    pack_ternary5_row(v.data(), cols, packed.data());
    ASSERT_EQ(packed.size(), 256u);
    const TernaryMatrixView w = make_ternary_view(packed.data(), 1, cols, TernaryLayout::Trits5);
    for (int k = 0; k < cols; ++k) ASSERT_EQ(ternary_at(w, 0, k), v[k]) << "k=" << k;
    // All-zero padding bytes, and b = ceil(n * 256 / 243) for n = 0 and 242.
    EXPECT_EQ(packed[255], 128);
    EXPECT_EQ(packed[0], 0);
    EXPECT_EQ(packed[242 % 64 + 64 * 3], 255);
}

TEST(KernelScalarTest, InvalidCodesAreFound) {
    TernaryProblem p(3, 700, 1, 5u, TernaryLayout::Bits2);
    p.packed[p.view().row_bytes() * 2 + 70] |= 0x30;  // bit pair 2 of a byte in block 1 -> 0b11
    EXPECT_EQ(find_invalid_ternary_code(p.view()), std::make_optional(std::pair<int, int>(2, 1)));
    // In row tiles, the same byte reports the same row and block.
    TernaryProblem t(3, 700, 1, 5u, {TernaryLayout::Bits2, true});
    const_cast<uint8_t*>(t.view().block(2, 1))[70 - 64] |= 0x30;
    EXPECT_EQ(find_invalid_ternary_code(t.view()), std::make_optional(std::pair<int, int>(2, 1)));
    TernaryProblem q(3, 700, 1, 5u, TernaryLayout::Trits5);
    q.packed[q.view().row_bytes() + 130] = 1;  // no n gives ceil(n * 256 / 243) = 1
    EXPECT_EQ(find_invalid_ternary_code(q.view()), std::make_optional(std::pair<int, int>(1, 2)));
}

TEST(KernelScalarTest, TernaryGemmMatchesNaiveProduct) {
    for (const Storage layout : kLayouts) {
        for (int cols : kCols) {
            const TernaryProblem p(7, cols, 3, 100u + cols, layout);
            std::vector<float> y(static_cast<size_t>(p.batch) * p.rows);
            scalar_kernels().ternary_gemm(p.view(), 0, p.rows, p.acts(), y.data(), p.rows);
            for (int m = 0; m < p.batch; ++m) {
                for (int r = 0; r < p.rows; ++r) {
                    int32_t dot = 0;
                    for (int k = 0; k < cols; ++k)
                        dot += p.q[static_cast<size_t>(m) * p.stride + k] *
                               p.values[static_cast<size_t>(r) * cols + k];
                    EXPECT_TRUE(same_bits(y[static_cast<size_t>(m) * p.rows + r],
                                          static_cast<float>(dot) * p.out_scale[m]))
                        << p.name() << " cols=" << cols << " m=" << m << " r=" << r;
                }
            }
        }
    }
}

// Reference numerics: each output is the k-order chain of fused multiply-adds of q_k / s_x and
// the weight (times alpha inside or after), whatever the row range, group tail or layout.
TEST(KernelScalarTest, FloatOrderGemmIsTheFusedChainInColumnOrder) {
    for (const Storage layout : kLayouts) {
        for (int cols : {1, 63, 257, 767}) {
            const TernaryProblem p(21, cols, 3, 300u + cols, layout);
            std::vector<float> s_x(p.batch);
            for (int m = 0; m < p.batch; ++m) s_x[m] = 0.37f / p.out_scale[m];
            for (const bool inside : {false, true}) {
                const float alpha = 0.0421f;
                const int r_begin = 3, r_end = 20;  // a range that starts and ends inside groups
                std::vector<float> y(static_cast<size_t>(p.batch) * p.rows, -7.f);
                ternary_gemm_float_order(p.view(), r_begin, r_end, p.q.data(), p.stride, s_x.data(),
                                         p.batch, alpha, inside, y.data(), p.rows);
                for (int m = 0; m < p.batch; ++m) {
                    for (int r = 0; r < p.rows; ++r) {
                        float expected = -7.f;
                        if (r >= r_begin && r < r_end) {
                            float acc = 0.f;
                            for (int k = 0; k < cols; ++k) {
                                const float x =
                                    static_cast<float>(p.q[static_cast<size_t>(m) * p.stride + k]) /
                                    s_x[m];
                                const float w = p.values[static_cast<size_t>(r) * cols + k] *
                                                (inside ? alpha : 1.f);
                                acc = std::fma(x, w, acc);
                            }
                            expected = inside ? acc : acc * alpha;
                        }
                        EXPECT_TRUE(same_bits(y[static_cast<size_t>(m) * p.rows + r], expected))
                            << p.name() << " cols=" << cols << " m=" << m << " r=" << r
                            << " alpha inside=" << inside;
                    }
                }
            }
        }
    }
}
TEST(KernelScalarTest, QuantizeFollowsFormula) {
    const std::vector<float> x = {0.5f, -1.25f, 2.f, -4.f, 0.f, 1.f / 3.f};
    std::vector<int8_t> q(8, 42);
    int32_t sum = 0;
    const float s = scalar_kernels().quantize_row_i8(x.data(), 6, 8, q.data(), &sum);
    EXPECT_EQ(s, 127.f / 4.f);
    const std::vector<int8_t> expect = {16, -40, 64, -127,
                                        0,  11,  0,  0};  // 15.875 -> 16, -39.6875 -> -40
    EXPECT_EQ(q, expect);
    EXPECT_EQ(sum, 16 - 40 + 64 - 127 + 0 + 11);
}

// ---- every SIMD level against the scalar reference
// -----------------------------------------------

class KernelTest : public ::testing::TestWithParam<Isa> {
  protected:
    const KernelTable& k() const { return kernels(GetParam()); }
    static const KernelTable& ref() { return scalar_kernels(); }
};

TEST_P(KernelTest, TableIsTheRequestedLevel) {
    EXPECT_EQ(k().isa, GetParam());
    EXPECT_STREQ(k().name, isa_name(GetParam()));
}

// Runs ternary_gemm of both levels over rows [r_begin, r_end) into a y with spare columns, and
// checks every element bit for bit (untouched ones included).
// Runs ternary_gemm of both levels over rows [r_begin, r_end) into a y with spare columns, and
// checks every element bit for bit (untouched ones included).
void check_ternary(const KernelTable& k, const TernaryProblem& p, int r_begin, int r_end) {
    const int ldy = p.rows + 3;
    std::vector<float> y_ref(static_cast<size_t>(p.batch) * ldy, -7.f);
    std::vector<float> y(y_ref.size(), -7.f);
    scalar_kernels().ternary_gemm(p.row_major_view(), r_begin, r_end, p.acts(), y_ref.data(), ldy);
    k.ternary_gemm(p.view(), r_begin, r_end, p.acts(), y.data(), ldy);
    for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_TRUE(same_bits(y[i], y_ref[i]))
            << p.name() << " rows=" << p.rows << " cols=" << p.cols << " batch=" << p.batch
            << " range=[" << r_begin << "," << r_end << ") m=" << i / ldy << " r=" << i % ldy
            << ": " << y[i] << " vs " << y_ref[i];
    }
}

TEST_P(KernelTest, TernaryGemmShapes) {
    for (const Storage layout : kLayouts) {
        for (int cols : kCols) {
            for (int rows : {1, 2, 7, 8, 24, 33}) {
                for (int batch : {1, 2, 3, 5, 8, 17, 40}) {
                    const TernaryProblem p(rows, cols, batch,
                                           1000u + 37u * cols + 7u * rows + batch, layout);
                    check_ternary(k(), p, 0, rows);
                }
            }
        }
    }
}

// One-row products of rows of at most two blocks take a GEMV unrolled for a few counts of
// 64-column steps, rounding a row's count up into its zero padding: every count (1-8 in Bits2,
// 1-10 in Trits5), with 16-row groups, 8-row groups and single rows after them.
TEST_P(KernelTest, TernaryGemvEveryShortRowLength) {
    for (const Storage layout : kLayouts) {
        for (int cols : {40, 100, 170, 230, 300, 350, 420, 470, 550, 600, 640}) {
            for (int rows : {1, 17, 41}) {
                const TernaryProblem p(rows, cols, 1, 300u + 3u * cols + rows, layout);
                check_ternary(k(), p, 0, rows);
                if (rows > 2) check_ternary(k(), p, 1, rows - 1);
            }
        }
    }
}

// Many activation rows over rows of at most eight 64-column steps take panels of sixteen matrix
// rows a vector (AVX-512 VNNI): every step count, row counts around sixteen, batches on both
// sides of each step count's threshold, and row ranges that start inside a group of sixteen.
TEST_P(KernelTest, TernaryGemmShortRowPanels) {
    for (const Storage layout : kLayouts) {
        for (int cols : {1, 64, 65, 128, 129, 200, 256, 300, 384, 448, 500, 512}) {
            for (int rows : {1, 15, 16, 17, 40}) {
                for (int batch : {5, 7, 8, 11, 12, 31, 32, 33, 70}) {
                    const TernaryProblem p(rows, cols, batch, 4000u + 13u * cols + rows + batch,
                                           layout);
                    check_ternary(k(), p, 0, rows);
                    if (rows > 17) check_ternary(k(), p, 3, rows - 2);
                }
            }
        }
    }
}

TEST_P(KernelTest, TernaryGemmEveryBatchSize) {
    for (const Storage layout : kLayouts) {
        for (int batch : {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,
                          15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 79, 80, 96, 129}) {
            const TernaryProblem p(37, 767, batch, 500u + batch, layout);
            check_ternary(k(), p, 0, p.rows);
        }
    }
}

// Matrices past 1 MiB take the paths that prefetch weights from memory (the GEMV and few-row
// tiles, and the panels of many-row products; 40 rows take AMX tiles where the CPU has them);
// prefetching must not change a result.
TEST_P(KernelTest, TernaryGemmLargeMatrices) {
    for (const Storage layout : kLayouts) {
        for (int batch : {1, 3, 13, 40}) {
            if (batch == 40 && layout.layout == TernaryLayout::Bits2 && !layout.tiled) continue;
            const TernaryProblem p(1903, 2600, batch, 900u + batch, layout);
            check_ternary(k(), p, 5, p.rows);
        }
    }
}

// A long prompt's activations go through the GEMMs in blocks that fit L2 (at most 4 MB, here
// 4.2 MB of rows and more), each block over every matrix row: blocks whose ends fall inside the
// AMX kernel's groups of 32 rows and the AVX tiles' groups, in either layout.
TEST_P(KernelTest, TernaryGemmActivationsInBlocks) {
    EXPECT_GE(activation_block_bytes(), size_t{128} << 10);
    EXPECT_LE(activation_block_bytes(), size_t{4} << 20);
    for (const Storage layout : {kLayouts[0], kLayouts[3]}) {
        for (int batch : {700, 733}) {
            const TernaryProblem p(21, 6000, batch, 6100u + batch, layout);
            ASSERT_GT(static_cast<size_t>(p.stride) * batch, size_t{4} << 20);
            check_ternary(k(), p, 2, 21);
        }
    }
}

TEST_P(KernelTest, TernaryGemmRowRanges) {
    for (const Storage layout : kLayouts) {
        for (int batch : {1, 4, 6, 20}) {
            const TernaryProblem p(41, 500, batch, 77u + batch, layout);
            for (const auto& [b, e] :
                 std::vector<std::pair<int, int>>{{3, 41}, {5, 6}, {9, 30}, {13, 13}, {1, 40}}) {
                check_ternary(k(), p, b, e);
            }
        }
    }
}

// Products of 3 to 32 activation rows over rows of more than 512 columns run on AMX tiles a
// block of codes at a time where the CPU has them (two groups of activation rows past sixteen):
// step counts that end inside a block (520, 2600 columns), ranges that start and end inside the
// tiles' sixteen matrix rows, and the batch sizes around each group's edge and the panels'.
TEST_P(KernelTest, TernaryGemmFewRowsInBlocks) {
    for (const Storage layout : kLayouts) {
        for (int cols : {520, 767, 2600}) {
            for (int batch : {2, 3, 4, 8, 15, 16, 17, 23, 32, 33}) {
                const TernaryProblem p(47, cols, batch, 8100u + 5u * cols + batch, layout);
                for (const auto& [b, e] : std::vector<std::pair<int, int>>{
                         {0, 47}, {1, 46}, {16, 32}, {5, 6}, {17, 47}}) {
                    check_ternary(k(), p, b, e);
                }
            }
        }
    }
}

// Where weights_stream_wants_help(), the GEMVs over weights from memory read rows side by side
// and prefetch: the same bits either way, at every level and whatever this CPU is.
TEST_P(KernelTest, MemoryGemvsGiveTheSameBitsEitherWay) {
    const KernelTable& k = kernels(GetParam());
    struct Restore {
        ~Restore() { force_weights_stream_help(-1); }
    } restore;
    auto expect_same_both_ways = [](const std::string& what, auto&& run) {
        std::vector<float> out[2];
        for (const int help : {0, 1}) {
            force_weights_stream_help(help);
            out[help] = run();
        }
        ASSERT_EQ(out[0].size(), out[1].size());
        for (size_t i = 0; i < out[0].size(); ++i)
            ASSERT_TRUE(same_bits(out[0][i], out[1][i])) << what << ", output " << i;
    };
    // 1,700 rows of 2,560 columns: over 1 MB in two bits (the prefetching tiles), Trits5 rows of
    // eight blocks; a range that starts off the groups of eight and ends in a tail.
    const int rows = 1700, cols = 2560, r_begin = 3, r_end = 1698;
    for (const Storage layout : kLayouts) {
        const TernaryProblem p(rows, cols, 1, 41u, layout);
        expect_same_both_ways(p.name(), [&] {
            std::vector<float> y(rows, 0.f);
            k.ternary_gemm(p.view(), r_begin, r_end, p.acts(), y.data(), rows);
            return y;
        });
    }
    // A bf16 head of 8.7 MB (rows in sequence from memory) and an int8 head.
    const std::vector<float> x = random_floats(cols, 42u);
    const std::vector<float> wf = random_floats(static_cast<size_t>(rows) * cols, 43u);
    std::vector<uint16_t> w16(wf.size());
    for (size_t i = 0; i < wf.size(); ++i) w16[i] = f32_to_bf16(wf[i]);
    expect_same_both_ways("bf16 head", [&] {
        std::vector<float> y(rows, 0.f);
        k.dense_gemm_bf16(w16.data(), cols, r_begin, r_end, x.data(), 1, cols, y.data(), rows);
        return y;
    });
    std::vector<int8_t> w8(wf.size()), xq(cols);
    for (size_t i = 0; i < wf.size(); ++i) w8[i] = static_cast<int8_t>(std::lround(wf[i] * 127));
    for (int i = 0; i < cols; ++i) xq[i] = static_cast<int8_t>(std::lround(x[i] * 127));
    const std::vector<float> row_scale = random_floats(rows, 44u, 0.001f, 0.01f);
    const float x_scale = 0.0173f;
    expect_same_both_ways("int8 head", [&] {
        std::vector<float> y(rows, 0.f);
        k.int8_gemm_i8r(w8.data(), row_scale.data(), cols, r_begin, r_end, xq.data(), &x_scale, 1,
                        cols, y.data(), rows);
        return y;
    });
}

TEST_P(KernelTest, TernaryLayoutsGiveIdenticalResults) {
    // The same weights in both layouts: the int32 dot products, and so y, are bit-identical.
    for (int cols : {300, 2560, 6912}) {
        for (int batch : {1, 3, 8}) {
            const TernaryProblem p2(9, cols, batch, 300u + cols + batch, TernaryLayout::Bits2);
            TernaryProblem p5(9, cols, batch, 300u + cols + batch, TernaryLayout::Trits5);
            ASSERT_EQ(p2.values, p5.values);
            std::vector<float> y2(static_cast<size_t>(batch) * 9), y5(y2.size());
            k().ternary_gemm(p2.view(), 0, 9, p2.acts(), y2.data(), 9);
            k().ternary_gemm(p5.view(), 0, 9, p5.acts(), y5.data(), 9);
            for (size_t i = 0; i < y2.size(); ++i)
                ASSERT_TRUE(same_bits(y2[i], y5[i])) << "cols=" << cols << " i=" << i;
        }
    }
}

TEST_P(KernelTest, Trits5EveryByteDecodesAsTheReference) {
    // Non-canonical bytes too: all 256 values in every position, against the scalar decode.
    TernaryProblem p(4, 320, 3, 17u, TernaryLayout::Trits5);
    for (size_t i = 0; i < p.packed.size(); ++i) p.packed[i] = static_cast<uint8_t>(i * 7 + 3);
    check_ternary(k(), p, 0, 4);
}

TEST_P(KernelTest, TernaryGemmExtremeActivations) {
    // Every activation -128 or 127 with weights all -1 or all +1: the largest magnitudes the
    // 16-bit partial sums of the maddubs path and the Trits5 accumulators can see.
    for (const Storage layout : kLayouts) {
        for (int cols : {2560, 6912}) {
            TernaryProblem p(4, cols, 18, 9u, layout);
            for (int r = 0; r < 4; ++r) {
                const int8_t w = static_cast<int8_t>(r == 0 ? -1 : r == 1 ? 1 : r == 2 ? 0 : 1);
                std::fill(p.values.begin() + static_cast<ptrdiff_t>(r) * cols,
                          p.values.begin() + static_cast<ptrdiff_t>(r + 1) * cols, w);
            }
            p.repack();
            for (int m = 0; m < p.batch; ++m) {
                int8_t* qm = p.q.data() + static_cast<size_t>(m) * p.stride;
                std::fill(qm, qm + cols, static_cast<int8_t>(m % 2 == 0 ? -128 : 127));
                p.row_sum[m] = (m % 2 == 0 ? -128 : 127) * cols;
            }
            check_ternary(k(), p, 0, 4);
        }
    }
}

// quantize_row_i8 of both levels on x (n values, padded to n_pad), compared exactly.
void check_quantize(const KernelTable& k, const std::vector<float>& x, int n_pad,
                    const std::string& what) {
    const int n = static_cast<int>(x.size());
    std::vector<int8_t> q_ref(n_pad + 8, 55), q(n_pad + 8, 55);
    int32_t sum_ref = 1, sum = 2;
    const float s_ref =
        scalar_kernels().quantize_row_i8(x.data(), n, n_pad, q_ref.data(), &sum_ref);
    const float s = k.quantize_row_i8(x.data(), n, n_pad, q.data(), &sum);
    EXPECT_TRUE(same_bits(s, s_ref)) << what << " n=" << n;
    EXPECT_EQ(sum, sum_ref) << what << " n=" << n;
    for (int i = 0; i < n_pad + 8; ++i)
        ASSERT_EQ(q[i], q_ref[i]) << what << " n=" << n << " i=" << i;
}

TEST_P(KernelTest, QuantizeRandom) {
    for (int n : kCols) {
        check_quantize(k(), random_floats(n, 3u + n, -2.f, 2.f), round_up(n, kTernaryBlock),
                       "uniform");
        std::mt19937 rng(n);
        std::normal_distribution<float> normal(0.f, 1.f);
        std::vector<float> x(n);
        for (float& v : x) v = normal(rng);
        if (n > 10) x[n / 3] = 40.f;  // an outlier, as real activations have
        check_quantize(k(), x, round_up(n, kTernaryBlock), "normal");
    }
}

// Padding that ends inside the last 64 values, or covers more than them: the tail's store is
// cut at n_pad, and bytes past it stay as they were (check_quantize's guard).
TEST_P(KernelTest, QuantizePaddingThatEndsAnywhere) {
    for (auto [n, pad] : std::vector<std::pair<int, int>>{{1, 1},
                                                          {5, 8},
                                                          {10, 20},
                                                          {1, 63},
                                                          {32, 64},
                                                          {64, 65},
                                                          {70, 100},
                                                          {130, 150},
                                                          {30, 200}})
        check_quantize(k(), random_floats(n, 9u + n, -2.f, 2.f), pad, "padding");
}

TEST_P(KernelTest, QuantizeRoundingTies) {
    for (int n : {1, 3, 17, 63, 64, 255, 256, 257, 500}) {
        // With max|x| = 127 the scale is exactly 1, so j + 0.5 are exact ties.
        std::vector<float> x(n);
        for (int i = 0; i < n; ++i) x[i] = static_cast<float>(i % 254 - 127) + 0.5f;
        x[0] = 127.f;
        check_quantize(k(), x, round_up(n, kTernaryBlock), "ties scale 1");
        // With max|x| = 63.5 the scale is exactly 2: x * 2 = j + 0.5 for x = j / 2 + 0.25.
        for (int i = 0; i < n; ++i) x[i] = static_cast<float>(i % 126 - 63) * 0.5f + 0.25f;
        x[0] = -63.5f;
        check_quantize(k(), x, round_up(n, kTernaryBlock), "ties scale 2");
    }
}

TEST_P(KernelTest, QuantizeExtremes) {
    for (int n : {1, 7, 64, 257, 2560}) {
        std::vector<float> x = random_floats(n, 8u + n, -1.f, 1.f);
        for (float& v : x) v *= 3e37f;
        check_quantize(k(), x, round_up(n, kTernaryBlock), "huge");
        x = random_floats(n, 9u + n, -1.f, 1.f);
        for (float& v : x) v *= 1e-30f;  // below the 1e-5 floor of max|x|
        check_quantize(k(), x, round_up(n, kTernaryBlock), "tiny");
        x.assign(n, -2.5f);
        check_quantize(k(), x, round_up(n, kTernaryBlock), "all equal");
        x.assign(n, 0.f);
        x[n - 1] = 1e-3f;
        check_quantize(k(), x, round_up(n, kTernaryBlock), "one nonzero");
        check_quantize(k(), x, n, "no padding");
    }
}

// |a - b| within rel of the scale of the inputs that produced b.
::testing::AssertionResult close(float a, float b, double scale, double rel = 2e-5) {
    if (std::fabs(static_cast<double>(a) - b) <= rel * scale + 1e-30)
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << a << " vs " << b << " (scale " << scale << ")";
}

template <typename W>
void check_dense(const KernelTable& k, int rows, int cols, int m, uint32_t seed) {
    const std::vector<float> wf = random_floats(static_cast<size_t>(rows) * cols, seed);
    std::vector<W> w(wf.size());
    std::vector<float> wv(wf.size());  // the weights as the kernels see them
    for (size_t i = 0; i < wf.size(); ++i) {
        if constexpr (sizeof(W) == 2) {
            w[i] = f32_to_bf16(wf[i]);
            wv[i] = bf16_to_f32(w[i]);
        } else {
            w[i] = wf[i];
            wv[i] = wf[i];
        }
    }
    const int ldx = cols + 5, ldy = rows + 2;
    const std::vector<float> x = random_floats(static_cast<size_t>(m) * ldx, seed + 1);
    std::vector<float> y_ref(static_cast<size_t>(m) * ldy, -3.f), y(y_ref);
    const int r_begin = rows > 4 ? 2 : 0;
    if constexpr (sizeof(W) == 2) {
        scalar_kernels().dense_gemm_bf16(w.data(), cols, r_begin, rows, x.data(), m, ldx,
                                         y_ref.data(), ldy);
        k.dense_gemm_bf16(w.data(), cols, r_begin, rows, x.data(), m, ldx, y.data(), ldy);
    } else {
        scalar_kernels().dense_gemm_f32(w.data(), cols, r_begin, rows, x.data(), m, ldx,
                                        y_ref.data(), ldy);
        k.dense_gemm_f32(w.data(), cols, r_begin, rows, x.data(), m, ldx, y.data(), ldy);
    }
    for (int i = 0; i < m; ++i) {
        for (int r = 0; r < ldy; ++r) {
            double scale = 0;
            if (r >= r_begin && r < rows) {
                for (int j = 0; j < cols; ++j)
                    scale += std::fabs(x[static_cast<size_t>(i) * ldx + j] *
                                       wv[static_cast<size_t>(r) * cols + j]);
            }
            const size_t at = static_cast<size_t>(i) * ldy + r;
            ASSERT_TRUE(close(y[at], y_ref[at], scale))
                << "rows=" << rows << " cols=" << cols << " m=" << m << " i=" << i << " r=" << r;
        }
    }
}

TEST_P(KernelTest, DenseGemm) {
    for (int cols : kCols) {
        for (int rows : {1, 5, 7, 33}) {
            for (int m : {1, 2, 3, 4, 5, 9}) {
                check_dense<float>(k(), rows, cols, m, 10u * cols + rows + m);
                check_dense<uint16_t>(k(), rows, cols, m, 10u * cols + rows + m + 1);
            }
        }
    }
}

// A head's copy in dense row groups gives each row the bits the same level's row-major kernel
// gives a row of its tiles of four or eight (rows from 0 in whole groups), for f32 and bf16
// alike, whatever the number of activation rows; rows outside the groups asked for are not
// written.
TEST_P(KernelTest, DenseRowGroupsSumAsTheRowMajorTiles) {
    if (k().dense_groups_gemm == nullptr) GTEST_SKIP() << "no dense row groups at this level";
    for (int cols : {16, 32, 128, 272, 512}) {
        for (int groups : {1, 3, 5}) {
            const int rows = groups * kDenseGroupRows;
            const std::vector<float> wf =
                random_floats(static_cast<size_t>(rows) * cols, 40u + cols + rows);
            std::vector<uint16_t> w16(wf.size());
            std::vector<float> w32(wf.size());
            for (size_t i = 0; i < wf.size(); ++i) {
                w16[i] = f32_to_bf16(wf[i]);
                w32[i] = bf16_to_f32(w16[i]);  // the same values in both formats
            }
            std::vector<uint8_t> g16(dense_groups_bytes(rows, cols, 2)),
                g32(dense_groups_bytes(rows, cols, 4));
            ASSERT_EQ(g16.size(), w16.size() * 2);
            ASSERT_EQ(g32.size(), w32.size() * 4);
            group_dense_rows(w16.data(), rows, cols, 2, g16.data());
            group_dense_rows(w32.data(), rows, cols, 4, g32.data());
            for (int m : {1, 2, 3, 5}) {
                const int ldx = cols + 3, ldy = rows + 7;
                const std::vector<float> x =
                    random_floats(static_cast<size_t>(m) * ldx, 41u + cols + m, -2.f, 2.f);
                std::vector<float> want(static_cast<size_t>(m) * ldy, -3.f), got16(want),
                    got32(want);
                k().dense_gemm_bf16(w16.data(), cols, 0, rows, x.data(), m, ldx, want.data(), ldy);
                // All groups, and groups [1, groups) on their own.
                const int first = groups > 1 ? 1 : 0;
                k().dense_groups_gemm(g16.data(), true, cols, first, groups, x.data(), m, ldx,
                                      got16.data(), ldy);
                k().dense_groups_gemm(g32.data(), false, cols, first, groups, x.data(), m, ldx,
                                      got32.data(), ldy);
                for (int i = 0; i < m; ++i) {
                    for (int r = 0; r < ldy; ++r) {
                        const size_t at = static_cast<size_t>(i) * ldy + r;
                        const bool written = r >= first * kDenseGroupRows && r < rows;
                        const float expect = written ? want[at] : -3.f;
                        ASSERT_TRUE(same_bits(got16[at], expect))
                            << "bf16 cols=" << cols << " rows=" << rows << " m=" << m << " i=" << i
                            << " r=" << r << ": " << got16[at] << " vs " << expect;
                        ASSERT_TRUE(same_bits(got32[at], expect))
                            << "f32 cols=" << cols << " rows=" << rows << " m=" << m << " i=" << i
                            << " r=" << r << ": " << got32[at] << " vs " << expect;
                    }
                }
            }
        }
    }
    EXPECT_EQ(dense_groups_bytes(15, 128, 2), 0u);
    EXPECT_EQ(dense_groups_bytes(40, 120, 4), 0u);
    EXPECT_EQ(dense_groups_bytes(40, 528, 2), 0u);  // past kDenseGroupMaxCols
    EXPECT_EQ(dense_groups_bytes(40, 128, 2), 32u * 128 * 2);
}

TEST_P(KernelTest, RmsNorm) {
    for (int n : {1, 3, 8, 15, 16, 17, 31, 63, 64, 255, 257, 2560, 6912}) {
        const std::vector<float> x = random_floats(n, 20u + n, -4.f, 4.f);
        const std::vector<float> w = random_floats(n, 21u + n, 0.5f, 2.f);
        std::vector<float> y_ref(n + 1, 9.f), y(n + 1, 9.f);
        ref().rms_norm(x.data(), w.data(), n, 1e-5f, y_ref.data());
        k().rms_norm(x.data(), w.data(), n, 1e-5f, y.data());
        for (int i = 0; i <= n; ++i)
            ASSERT_TRUE(close(y[i], y_ref[i], std::fabs(y_ref[i]))) << "n=" << n << " i=" << i;
        std::vector<float> inplace = x;  // out may alias x
        k().rms_norm(inplace.data(), w.data(), n, 1e-5f, inplace.data());
        for (int i = 0; i < n; ++i)
            ASSERT_TRUE(close(inplace[i], y_ref[i], std::fabs(y_ref[i]))) << "in place, n=" << n;
    }
}

// The fused norm-and-quantise must give the bits of rms_norm followed by quantize_row_i8 at the
// same level (the forward pass takes one for the other), on every level including the scalar one.
void check_rms_norm_quantize(const KernelTable& k, int n, uint32_t seed) {
    const std::vector<float> x = random_floats(n, seed, -4.f, 4.f);
    const std::vector<float> w = random_floats(n, seed + 1, 0.5f, 2.f);
    const int n_pad = round_up(n, 64) + 64;
    std::vector<float> normed(n);
    std::vector<int8_t> q_ref(n_pad + 1, 77), q(n_pad + 1, 77);
    int32_t sum_ref = 0, sum = 0;
    k.rms_norm(x.data(), w.data(), n, 1e-5f, normed.data());
    const float s_ref = k.quantize_row_i8(normed.data(), n, n_pad, q_ref.data(), &sum_ref);
    const float s = k.rms_norm_quantize_i8(x.data(), w.data(), n, 1e-5f, n_pad, q.data(), &sum);
    ASSERT_TRUE(same_bits(s, s_ref)) << k.name << " n=" << n << ": " << s << " vs " << s_ref;
    ASSERT_EQ(sum, sum_ref) << k.name << " n=" << n;
    ASSERT_EQ(q, q_ref) << k.name << " n=" << n;  // q_ref[n_pad] = 77 checks nothing past n_pad
    int nonzero = 0;
    for (int i = 0; i < n; ++i) nonzero += q[static_cast<size_t>(i)] != 0;
    ASSERT_GT(nonzero, 0) << "n=" << n;
}

TEST(RmsNormQuantize, IsRmsNormThenQuantizeAtEveryLevel) {
    for (Isa isa : supported_isas()) {
        for (int n : {1,  2,  7,  8,   9,   15,  16,  17,  31,  32,   33,
                      63, 64, 65, 127, 128, 129, 255, 512, 513, 2560, 6912})
            check_rms_norm_quantize(kernels(isa), n, 90u + n);
    }
}

TEST_P(KernelTest, Rope) {
    for (int head_dim : {2, 6, 40, 64, 72, 128}) {
        for (int n_heads : {1, 3, 20}) {
            const int half = head_dim / 2;
            const std::vector<float> x = random_floats(static_cast<size_t>(n_heads) * head_dim + 1,
                                                       30u + head_dim + n_heads, -2.f, 2.f);
            std::vector<float> c(half), s(half);
            for (int i = 0; i < half; ++i) {
                const double angle = 17.0 * std::pow(500000.0, -2.0 * i / head_dim);
                c[i] = static_cast<float>(std::cos(angle));
                s[i] = static_cast<float>(std::sin(angle));
            }
            std::vector<float> y_ref = x, y = x;
            ref().rope(y_ref.data(), n_heads, head_dim, c.data(), s.data());
            k().rope(y.data(), n_heads, head_dim, c.data(), s.data());
            for (size_t i = 0; i < y.size(); ++i)
                ASSERT_TRUE(close(y[i], y_ref[i], 4.0, 1e-6))
                    << "head_dim=" << head_dim << " i=" << i;
        }
    }
}

TEST_P(KernelTest, Softmax) {
    std::vector<int> sizes;
    for (int n = 1; n <= 40; ++n) sizes.push_back(n);
    for (int n : {63, 64, 65, 255, 257, 1000, 4096}) sizes.push_back(n);
    for (int n : sizes) {
        for (float spread : {1.f, 30.f}) {
            std::vector<float> x = random_floats(n, 40u + n, -spread, spread);
            if (n > 5) x[n / 2] = -std::numeric_limits<float>::infinity();  // a masked position
            if (n > 9) x[3] = -200.f;  // exp underflows to zero
            std::vector<float> y_ref = x, y = x;
            ref().softmax(y_ref.data(), n);
            k().softmax(y.data(), n);
            for (int i = 0; i < n; ++i)
                ASSERT_TRUE(close(y[i], y_ref[i], std::fabs(y_ref[i]) + 1e-6))
                    << "n=" << n << " spread=" << spread << " i=" << i;
        }
    }
}

TEST_P(KernelTest, GatedActivations) {
    for (int n : {1, 5, 8, 16, 17, 100, 6912}) {
        std::vector<float> g = random_floats(n, 50u + n, -12.f, 12.f);
        if (n > 4) {
            g[0] = -100.f;  // exp(-g) overflows in the reference
            g[1] = 90.f;
            g[2] = 0.f;
            g[3] = -1e-20f;
        }
        const std::vector<float> u = random_floats(n, 51u + n, -3.f, 3.f);
        for (int which = 0; which < 2; ++which) {
            auto fn = [which](const KernelTable& t) {
                return which == 0 ? t.relu2_mul : t.silu_mul;
            };
            std::vector<float> y_ref(n), y(n);
            fn(ref())(g.data(), u.data(), y_ref.data(), n);
            fn(k())(g.data(), u.data(), y.data(), n);
            for (int i = 0; i < n; ++i) {
                const double scale = std::fabs(y_ref[i]) + 1e-30;
                ASSERT_TRUE(close(y[i], y_ref[i], scale))
                    << (which ? "silu" : "relu2") << " n=" << n << " g=" << g[i];
            }
            std::vector<float> in_g = g, in_u = u;  // out may alias g or u
            fn(k())(in_g.data(), u.data(), in_g.data(), n);
            fn(k())(g.data(), in_u.data(), in_u.data(), n);
            for (int i = 0; i < n; ++i) {
                ASSERT_TRUE(same_bits(in_g[i], y[i])) << "out aliasing g";
                ASSERT_TRUE(same_bits(in_u[i], y[i])) << "out aliasing u";
            }
        }
    }
}

// Rows of head_dim floats ([positions][heads][head_dim]) as a KV cache of `type` stores them:
// converted by the scalar store_kv_row, with I8's scales per head ([heads][positions]). I8 heads
// are planes of their own in int8_kv_layout.h's tiles, whose bytes past the last position hold
// a pattern that must not reach any result; other types keep the rows as they come.
enum class KvPlane { Keys, Values };

struct StoredKv {
    std::vector<uint8_t> bytes;
    std::vector<float> scales;
    KvType type;
    size_t elem;
    size_t plane;  // I8: bytes of a head's plane
    int positions;
    const void* head(int h, int head_dim) const {
        if (type == KvType::I8) return bytes.data() + static_cast<size_t>(h) * plane;
        return bytes.data() + static_cast<size_t>(h) * head_dim * elem;
    }
    const float* head_scales(int h) const {
        return scales.data() + static_cast<size_t>(h) * positions;
    }
};

StoredKv store_kv(const std::vector<float>& x, KvType type, int heads, int head_dim,
                  KvPlane which) {
    StoredKv s;
    s.type = type;
    s.elem = kv_elem_bytes(type);
    s.positions = static_cast<int>(x.size() / (static_cast<size_t>(heads) * head_dim));
    s.plane = int8_plane_bytes(s.positions, head_dim);
    s.bytes.assign(type == KvType::I8 ? s.plane * heads : x.size() * s.elem, 0x81);
    s.scales.resize(static_cast<size_t>(heads) * s.positions);
    std::vector<int8_t> row(static_cast<size_t>(head_dim));
    for (int p = 0; p < s.positions; ++p) {
        for (int h = 0; h < heads; ++h) {
            const size_t at = (static_cast<size_t>(p) * heads + h) * head_dim;
            float* scale = &s.scales[static_cast<size_t>(h) * s.positions + p];
            if (type != KvType::I8) {
                scalar_kernels().store_kv_row(x.data() + at, head_dim, type,
                                              s.bytes.data() + at * s.elem, scale);
                continue;
            }
            scalar_kernels().store_kv_row(x.data() + at, head_dim, type, row.data(), scale);
            int8_t* plane = reinterpret_cast<int8_t*>(s.bytes.data() + h * s.plane);
            if (which == KvPlane::Keys) {
                store_int8_key(row.data(), head_dim, p, plane);
            } else {
                store_int8_value(row.data(), head_dim, p, plane);
            }
        }
    }
    return s;
}

// KV cache of n_keys positions x n_kv heads (row_stride = n_kv * head_dim); the head under
// test is kv head 2 of 5, so its rows start mid-row and are strided, or the only head of one
// (the engine's own layout: one head's rows one after another).
void check_attention(const KernelTable& k, KvType type, int head_dim, int n_keys, uint32_t seed,
                     int n_kv = 5) {
    const int head = n_kv > 2 ? 2 : 0;
    const size_t stride = static_cast<size_t>(n_kv) * head_dim;
    const std::vector<float> kf = random_floats(stride * n_keys, seed, -2.f, 2.f);
    const std::vector<float> vf = random_floats(stride * n_keys, seed + 1, -2.f, 2.f);
    const std::vector<float> q = random_floats(head_dim, seed + 2, -2.f, 2.f);
    const StoredKv ks = store_kv(kf, type, n_kv, head_dim, KvPlane::Keys),
                   vs = store_kv(vf, type, n_kv, head_dim, KvPlane::Values);
    AttentionHeadArgs a;
    a.q = q.data();
    a.k = ks.head(head, head_dim);
    a.v = vs.head(head, head_dim);
    a.k_scale = ks.head_scales(head);
    a.v_scale = vs.head_scales(head);
    a.kv_type = type;
    a.row_stride = stride;
    a.n_keys = n_keys;
    a.head_dim = head_dim;
    a.scale = 1.f / std::sqrt(static_cast<float>(head_dim));
    std::vector<float> scratch_ref(n_keys), scratch(n_keys), out_ref(head_dim + 1, 5.f),
        out(head_dim + 1, 5.f);
    AttentionHeadArgs b = a;
    a.scratch = scratch_ref.data();
    a.out = out_ref.data();
    b.scratch = scratch.data();
    b.out = out.data();
    scalar_kernels().attention_head(a);
    k.attention_head(b);
    for (int d = 0; d <= head_dim; ++d) {
        ASSERT_TRUE(close(out[d], out_ref[d], 2.0))
            << "type=" << static_cast<int>(type) << " head_dim=" << head_dim << " n_keys=" << n_keys
            << " d=" << d;
    }
    // Fetching ahead (caches read from memory) must not change a bit.
    std::vector<float> out_fetched(head_dim + 1, 5.f);
    b.prefetch = true;
    b.out = out_fetched.data();
    k.attention_head(b);
    for (int d = 0; d <= head_dim; ++d) {
        ASSERT_TRUE(same_bits(out_fetched[d], out[d]))
            << "prefetch, type=" << static_cast<int>(type) << " head_dim=" << head_dim
            << " n_keys=" << n_keys << " d=" << d;
    }
}

// A KV cache row converted at any level has core/half.h's bits: rounding ties, subnormals,
// overflow to infinity, signed zeros and NaNs (made quiet) included.
TEST(StoreKvRow, EveryLevelRoundsAsHalfH) {
    std::vector<float> special;
    const uint32_t patterns[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                 0xffc00001u, 0x7f800001u, 0xff812345u, 0x00000001u, 0x807fffffu,
                                 0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x7f7fffffu, 0xff7f8000u,
                                 0x477fe000u, 0x477ff000u, 0x477fefffu, 0xc7800000u, 0x33800000u,
                                 0x33000000u, 0x33000001u, 0x387fc000u, 0x38800000u, 0x38000000u,
                                 0xb87ff000u, 0x3c001000u, 0x3c003000u, 0x3c002fffu};
    for (uint32_t bits : patterns) {
        float f;
        std::memcpy(&f, &bits, sizeof f);
        special.push_back(f);
    }
    const std::vector<float> random = random_floats(300, 97u, -70000.f, 70000.f);
    const std::vector<float> small = random_floats(300, 98u, -1e-4f, 1e-4f);
    for (Isa isa : supported_isas()) {
        const KernelTable& k = kernels(isa);
        for (const std::vector<float>* src :
             std::initializer_list<const std::vector<float>*>{&special, &random, &small}) {
            for (int n : {1, 7, 8, 9, 15, 16, 17, 29, 31, 32, 33, 64, 100, 128, 300}) {
                if (n > static_cast<int>(src->size())) continue;
                const float* x = src->data();
                std::vector<float> f32(n + 1, 5.f);
                k.store_kv_row(x, n, KvType::F32, f32.data(), nullptr);
                ASSERT_EQ(0, std::memcmp(f32.data(), x, sizeof(float) * n)) << k.name;
                ASSERT_EQ(f32[n], 5.f) << k.name << ": wrote past n";
                for (KvType type : {KvType::F16, KvType::BF16}) {
                    std::vector<uint16_t> got(n + 1, 0x5555);
                    k.store_kv_row(x, n, type, got.data(), nullptr);
                    ASSERT_EQ(got[n], 0x5555) << k.name << ": wrote past n";
                    for (int i = 0; i < n; ++i) {
                        const uint16_t want =
                            type == KvType::F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
                        uint32_t in;
                        std::memcpy(&in, &x[i], sizeof in);
                        ASSERT_EQ(got[i], want)
                            << k.name << (type == KvType::F16 ? " f16" : " bf16") << " n=" << n
                            << " i=" << i << " input 0x" << std::hex << in;
                    }
                }
            }
        }
    }
}

// An int8 KV row is quantize_row_i8's bytes with the scale 1 / s_x, the same bits at every
// level, and nothing is written past the row.
TEST(StoreKvRow, Int8RowsAreQuantizeRowI8AtEveryLevel) {
    for (Isa isa : supported_isas()) {
        const KernelTable& k = kernels(isa);
        for (int n : {1, 7, 16, 31, 32, 33, 64, 100, 128, 300}) {
            for (float range : {1e-4f, 3.f, 70000.f}) {
                const std::vector<float> x = random_floats(n, 99u + n, -range, range);
                std::vector<int8_t> want(n), got(n + 1, 0x55);
                int32_t sum = 0;
                const float s_x =
                    scalar_kernels().quantize_row_i8(x.data(), n, n, want.data(), &sum);
                float scale = 0.f;
                k.store_kv_row(x.data(), n, KvType::I8, got.data(), &scale);
                ASSERT_TRUE(same_bits(scale, 1.f / s_x)) << k.name << " n=" << n;
                ASSERT_EQ(0, std::memcmp(got.data(), want.data(), n)) << k.name << " n=" << n;
                ASSERT_EQ(got[n], 0x55) << k.name << ": wrote past n";
                // Dequantised, each value is within half a step of the input.
                for (int i = 0; i < n; ++i)
                    ASSERT_LE(std::abs(got[i] * scale - x[i]), 0.5001f * scale)
                        << k.name << " i=" << i;
            }
        }
    }
}

// One key far above the rest (scores 200 apart): the others' weights underflow to zero, so the
// int8 value sums meet chunks whose largest weight is 0 (and 0 x infinity on the way). Every
// level must give the scalar level's output: that key's value row, as the cache holds it.
TEST(AttentionInt8Cache, ChunksOfZeroWeightsAddNothing) {
    const int head_dim = 32, n_keys = 600;
    const size_t n = static_cast<size_t>(head_dim) * n_keys;
    std::vector<float> kf = random_floats(n, 91u, -1.f, 1.f);
    const std::vector<float> vf = random_floats(n, 92u, -2.f, 2.f);
    std::vector<float> q(head_dim, 0.f);
    q[0] = 40.f;
    for (int p = 0; p < n_keys; ++p)
        kf[static_cast<size_t>(p) * head_dim] = p == 300 ? 30.f : -30.f;
    const StoredKv ks = store_kv(kf, KvType::I8, 1, head_dim, KvPlane::Keys),
                   vs = store_kv(vf, KvType::I8, 1, head_dim, KvPlane::Values);
    AttentionHeadArgs a;
    a.q = q.data();
    a.k = ks.bytes.data();
    a.v = vs.bytes.data();
    a.k_scale = ks.scales.data();
    a.v_scale = vs.scales.data();
    a.kv_type = KvType::I8;
    a.row_stride = head_dim;
    a.n_keys = n_keys;
    a.head_dim = head_dim;
    a.scale = 1.f / std::sqrt(static_cast<float>(head_dim));
    std::vector<float> scratch(n_keys), expected(head_dim), out(head_dim);
    a.scratch = scratch.data();
    a.out = expected.data();
    scalar_kernels().attention_head(a);
    const int8_t* plane = reinterpret_cast<const int8_t*>(vs.bytes.data());
    for (int d = 0; d < head_dim; ++d) {
        ASSERT_TRUE(std::isfinite(expected[d])) << "d=" << d;
        ASSERT_NEAR(expected[d], plane[int8_value_offset(300, d, head_dim)] * vs.scales[300], 1e-3f)
            << "d=" << d;
    }
    for (Isa isa : supported_isas()) {
        a.out = out.data();
        kernels(isa).attention_head(a);
        for (int d = 0; d < head_dim; ++d)
            ASSERT_TRUE(same_bits(out[d], expected[d])) << isa_name(isa) << " d=" << d;
    }
}

// What an int8 cache costs: attention over it stays within a few percent of the f32 cache's
// output (random keys and values in [-2, 2]), at every level.
TEST(AttentionInt8Cache, IsCloseToTheF32Cache) {
    for (Isa isa : supported_isas()) {
        const KernelTable& k = kernels(isa);
        for (int head_dim : {32, 128}) {
            for (int n_keys : {5, 200}) {
                const size_t n = static_cast<size_t>(head_dim) * n_keys;
                const std::vector<float> kf = random_floats(n, 5u + n_keys, -2.f, 2.f);
                const std::vector<float> vf = random_floats(n, 6u + n_keys, -2.f, 2.f);
                const std::vector<float> q = random_floats(head_dim, 7u, -2.f, 2.f);
                const StoredKv ks = store_kv(kf, KvType::I8, 1, head_dim, KvPlane::Keys),
                               vs = store_kv(vf, KvType::I8, 1, head_dim, KvPlane::Values);
                std::vector<float> scratch(n_keys), exact(head_dim), approx(head_dim);
                AttentionHeadArgs a;
                a.q = q.data();
                a.row_stride = head_dim;
                a.n_keys = n_keys;
                a.head_dim = head_dim;
                a.scale = 1.f / std::sqrt(static_cast<float>(head_dim));
                a.scratch = scratch.data();
                a.k = kf.data();
                a.v = vf.data();
                a.out = exact.data();
                k.attention_head(a);
                a.kv_type = KvType::I8;
                a.k = ks.bytes.data();
                a.v = vs.bytes.data();
                a.k_scale = ks.scales.data();
                a.v_scale = vs.scales.data();
                a.out = approx.data();
                k.attention_head(a);
                for (int d = 0; d < head_dim; ++d)
                    ASSERT_NEAR(approx[d], exact[d], 0.03)
                        << k.name << " head_dim=" << head_dim << " n_keys=" << n_keys << " d=" << d;
            }
        }
    }
}

TEST_P(KernelTest, AttentionHead) {
    for (KvType type : {KvType::F32, KvType::F16, KvType::BF16, KvType::I8}) {
        for (int head_dim : {16, 32, 40, 64, 72, 128}) {
            for (int n_keys = 1; n_keys <= 41; ++n_keys)
                check_attention(k(), type, head_dim, n_keys, 60u + n_keys);
        }
        for (int head_dim : {16, 32, 128}) {
            for (int n_keys : {1, 2, 15, 16, 17, 31, 33, 200})
                check_attention(k(), type, head_dim, n_keys, 65u + n_keys, 1);
        }
        check_attention(k(), type, 128, 1000, 61u);
        for (int n_keys : {255, 256, 257, 300, 513, 777})
            check_attention(k(), type, 64, n_keys, 66u + n_keys, 1);
        check_attention(k(), type, 2, 7, 62u);
        check_attention(k(), type, 6, 9, 63u);
        check_attention(k(), type, 520, 37, 64u);  // past the split queries' stack buffers
    }
}

// n_queries heads sharing one KV head in one call: each query's output must be the same bits
// as a call of its own (so batching or splitting a group never changes a token), and nothing
// past the last query's output may be written.
void check_grouped_attention(const KernelTable& k, KvType type, int head_dim, int n_keys,
                             int n_queries, uint32_t seed) {
    const size_t hd = static_cast<size_t>(head_dim), n = static_cast<size_t>(n_keys);
    const std::vector<float> kf = random_floats(hd * n, seed, -2.f, 2.f);
    const std::vector<float> vf = random_floats(hd * n, seed + 1, -2.f, 2.f);
    const std::vector<float> q = random_floats(hd * n_queries, seed + 2, -2.f, 2.f);
    const StoredKv ks = store_kv(kf, type, 1, head_dim, KvPlane::Keys),
                   vs = store_kv(vf, type, 1, head_dim, KvPlane::Values);
    AttentionHeadArgs a;
    a.k = ks.head(0, head_dim);
    a.v = vs.head(0, head_dim);
    a.k_scale = ks.head_scales(0);
    a.v_scale = vs.head_scales(0);
    a.kv_type = type;
    a.row_stride = hd;
    a.n_keys = n_keys;
    a.head_dim = head_dim;
    a.scale = 1.f / std::sqrt(static_cast<float>(head_dim));
    std::vector<float> scratch(n * n_queries), out(hd * n_queries + 1, 5.f);
    AttentionHeadArgs all = a;
    all.q = q.data();
    all.n_queries = n_queries;
    all.scratch = scratch.data();
    all.out = out.data();
    k.attention_head(all);
    ASSERT_EQ(out.back(), 5.f) << "wrote past the last query";
    for (int i = 0; i < n_queries; ++i) {
        std::vector<float> one_scratch(n), one_out(hd);
        AttentionHeadArgs one = a;
        one.q = q.data() + i * hd;
        one.scratch = one_scratch.data();
        one.out = one_out.data();
        k.attention_head(one);
        for (size_t d = 0; d < hd; ++d) {
            ASSERT_TRUE(same_bits(out[i * hd + d], one_out[d]))
                << "type=" << static_cast<int>(type) << " head_dim=" << head_dim
                << " n_keys=" << n_keys << " n_queries=" << n_queries << " query " << i
                << " d=" << d << ": " << out[i * hd + d] << " vs " << one_out[d];
        }
    }
}

// The int8 cache's tiles at head widths that are not whole quads or whole slices (29-31: the
// 32-dimension scores read one padding quad), and at tile and group tails.
TEST(AttentionInt8Cache, HeadsOfAnyWidthAndTileTails) {
    for (Isa isa : supported_isas()) {
        SCOPED_TRACE(isa_name(isa));
        for (int head_dim : {3, 5, 29, 30, 31, 33, 130}) {
            for (int n_keys : {1, 4, 15, 16, 17, 33, 257})
                check_attention(kernels(isa), KvType::I8, head_dim, n_keys,
                                300u + head_dim + n_keys);
        }
    }
}

// More chunks of weights than the chunks' maxima keep on the stack (64 x 256 keys).
TEST(AttentionInt8Cache, ManyChunks) {
    for (Isa isa : supported_isas()) {
        SCOPED_TRACE(isa_name(isa));
        check_attention(kernels(isa), KvType::I8, 16, 16700, 77u, 1);
        check_grouped_attention(kernels(isa), KvType::I8, 16, 16700, 3, 78u);
    }
}

// Groups of three queries and more than four (passes of four, then the rest) over an int8
// cache, whose value sums take fewer slices a pass the more queries share it.
TEST(AttentionInt8Cache, GroupsOfEverySize) {
    for (Isa isa : supported_isas()) {
        SCOPED_TRACE(isa_name(isa));
        for (int head_dim : {16, 30, 64, 72, 128, 200}) {
            for (int n_keys : {1, 5, 31, 257}) {
                for (int n_queries : {3, 5, 6, 7})
                    check_grouped_attention(kernels(isa), KvType::I8, head_dim, n_keys, n_queries,
                                            500u + n_queries);
            }
        }
    }
}

TEST(AttentionGroups, EachQueryIsTheSameAloneAndInAGroup) {
    for (Isa isa : supported_isas()) {
        SCOPED_TRACE(isa_name(isa));
        for (KvType type : {KvType::F32, KvType::F16, KvType::BF16, KvType::I8}) {
            for (int head_dim : {16, 24, 40, 64, 128, 200, 520}) {
                for (int n_keys : {1, 3, 31, 32, 33, 70, 257}) {
                    for (int n_queries : {2, 4, 9})
                        check_grouped_attention(kernels(isa), type, head_dim, n_keys, n_queries,
                                                70u + n_keys + n_queries);
                }
            }
        }
    }
}

std::vector<Isa> simd_levels() {
    std::vector<Isa> out;
    for (Isa isa : supported_isas()) {
        if (isa != Isa::Scalar) out.push_back(isa);
    }
    return out;
}

std::string level_name(const ::testing::TestParamInfo<Isa>& param) {
    return isa_name(param.param);
}

INSTANTIATE_TEST_SUITE_P(Levels, KernelTest, ::testing::ValuesIn(simd_levels()), level_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(KernelTest);

}  // namespace
}  // namespace bitnet::cpu
