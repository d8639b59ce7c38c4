// Ternary and float codecs of the GGUF layouts: round trips on random values with odd shapes,
// hand-checked bytes, every kind of bad data rejected with an error naming the tensor, and
// (when ../shared is present) the tensors of the files written by bitnet.cpp / llama.cpp
// against the checkpoint they were made from.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "core/half.h"
#include "gguf_test_support.h"
#include "model/format/ggml_ternary.h"
#include "model/format/safetensors.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

using gguf::decode_ternary;
using gguf::encode_ternary;

// Random ternary values with about a third zeros, plus some all-zero rows so that whole
// blocks are zero.
std::vector<int8_t> random_ternary(int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int8_t> v(static_cast<size_t>(rows * cols));
    for (int8_t& x : v) x = static_cast<int8_t>(static_cast<int>(rng() % 3) - 1);
    if (rows > 2) std::fill(v.begin() + cols, v.begin() + 2 * cols, 0);  // row 1
    v[0] = 1;
    return v;
}

float decode(uint32_t type, int64_t rows, int64_t cols, const std::vector<uint8_t>& bytes,
             std::vector<int8_t>& out) {
    out.assign(static_cast<size_t>(rows * cols), 7);
    return decode_ternary(type, {cols, rows}, bytes.data(), bytes.size(), out.data(), "t");
}

struct Case {
    uint32_t type;
    int64_t rows;
    int64_t cols;
};

TEST(GgmlTernary, RoundTripsRandomValues) {
    const Case cases[] = {
        {gguf::GGML_TQ1_0, 1, 256},  {gguf::GGML_TQ1_0, 7, 768}, {gguf::GGML_TQ2_0, 3, 256},
        {gguf::GGML_TQ2_0, 5, 1280}, {gguf::GGML_I2_S, 1, 128},  {gguf::GGML_I2_S, 9, 384},
        {gguf::BITNET_T2, 3, 37},    {gguf::BITNET_T2, 5, 300},  {gguf::BITNET_T2, 2, 512},
    };
    uint32_t seed = 10;
    for (const Case& c : cases) {
        SCOPED_TRACE(gguf::tensor_type_name(c.type) + " " + std::to_string(c.rows) + "x" +
                     std::to_string(c.cols));
        const std::vector<int8_t> values = random_ternary(c.rows, c.cols, seed++);
        const float alpha = 0.8134765625f;  // exact in f16
        const std::vector<uint8_t> bytes =
            encode_ternary(c.type, values.data(), c.rows, c.cols, alpha, "t");
        ASSERT_EQ(bytes.size(), *gguf::tensor_bytes(c.type, {c.cols, c.rows}));
        std::vector<int8_t> back;
        EXPECT_EQ(decode(c.type, c.rows, c.cols, bytes, back), alpha);
        EXPECT_EQ(back, values);
        // Encoding the decoded values again gives the same bytes.
        EXPECT_EQ(encode_ternary(c.type, back.data(), c.rows, c.cols, alpha, "t"), bytes);
    }
}

TEST(GgmlTernary, BlockScalesAsLlamaCppWritesThem) {
    // alpha not exact in f16: d is alpha rounded to f16; all-zero blocks get d = 0.
    const float alpha = 0.1f;
    std::vector<int8_t> values(3 * 512, 0);
    values[5] = -1;         // block 0 of row 0
    values[512 + 300] = 1;  // block 1 of row 1; row 2 is all zero
    for (uint32_t type : {gguf::GGML_TQ1_0, gguf::GGML_TQ2_0}) {
        SCOPED_TRACE(gguf::tensor_type_name(type));
        const std::vector<uint8_t> bytes = encode_ternary(type, values.data(), 3, 512, alpha, "t");
        const size_t block = type == gguf::GGML_TQ1_0 ? 54 : 66;
        ASSERT_EQ(bytes.size(), 6 * block);
        const auto d_of = [&](size_t b) {
            uint16_t d;
            std::memcpy(&d, &bytes[b * block + block - 2], 2);
            return d;
        };
        EXPECT_EQ(d_of(0), f32_to_f16(alpha));
        EXPECT_EQ(d_of(1), 0);
        EXPECT_EQ(d_of(2), 0);
        EXPECT_EQ(d_of(3), f32_to_f16(alpha));
        EXPECT_EQ(d_of(4), 0);
        EXPECT_EQ(d_of(5), 0);
        std::vector<int8_t> back;
        EXPECT_EQ(decode(type, 3, 512, bytes, back), f16_to_f32(f32_to_f16(alpha)));
        EXPECT_EQ(back, values);
    }
    // An all-zero tensor has alpha 0.
    const std::vector<int8_t> zeros(256, 0);
    const std::vector<uint8_t> z = encode_ternary(gguf::GGML_TQ2_0, zeros.data(), 1, 256, 2.f);
    std::vector<int8_t> back;
    EXPECT_EQ(decode(gguf::GGML_TQ2_0, 1, 256, z, back), 0.f);
    EXPECT_EQ(back, zeros);
}

// Bytes worked out by hand from the layouts (ggml-quants.c, bitnet.cpp's quantize_i2_s).
TEST(GgmlTernary, HandCheckedBytes) {
    std::vector<int8_t> plus(256, 1);
    const std::vector<uint8_t> tq2 = encode_ternary(gguf::GGML_TQ2_0, plus.data(), 1, 256, 1.f);
    EXPECT_EQ(tq2[0], 0xAA);  // four codes 2
    EXPECT_EQ(tq2[64], 0x00);
    EXPECT_EQ(tq2[65], 0x3C);  // f16 1.0
    const std::vector<uint8_t> tq1 = encode_ternary(gguf::GGML_TQ1_0, plus.data(), 1, 256, 1.f);
    EXPECT_EQ(tq1[0], 255);  // ceil(242 * 256 / 243): five codes 2
    EXPECT_EQ(tq1[47], 255);
    EXPECT_EQ(tq1[48], 253);  // ceil(240 * 256 / 243): four codes 2, then a zero trit

    // Value k of a TQ2_0 block sits in byte (k / 128) * 32 + k % 32 at shift 2 * (k % 128 / 32).
    std::vector<int8_t> one(256, 0);
    one[161] = -1;  // byte 33, shift 2
    const std::vector<uint8_t> t = encode_ternary(gguf::GGML_TQ2_0, one.data(), 1, 256, 1.f);
    EXPECT_EQ(t[33], 0x55 & ~0x0C);
    EXPECT_EQ(t[32], 0x55);
    // TQ1_0: value 161 is trit 0 (most significant) of byte 32 + 1 = 33; the other four trits of
    // that byte are code 1: v = 0 * 81 + 1 * 27 + 9 + 3 + 1 = 40 -> ceil(40 * 256 / 243) = 43.
    const std::vector<uint8_t> t1 = encode_ternary(gguf::GGML_TQ1_0, one.data(), 1, 256, 1.f);
    EXPECT_EQ(t1[33], 43);
    // I2_S: value j of a 128-block at byte j % 32, shift 6 - 2 * (j / 32); scale after the codes.
    std::vector<int8_t> i2(256, 0);
    i2[128 + 33] = 1;  // block 1, byte 1, shift 4
    const std::vector<uint8_t> s = encode_ternary(gguf::GGML_I2_S, i2.data(), 2, 128, 0.5f);
    ASSERT_EQ(s.size(), 64u + 32);
    EXPECT_EQ(s[32 + 1], (0x55 & ~0x30) | 0x20);
    EXPECT_EQ(s[0], 0x55);
    float scale;
    std::memcpy(&scale, &s[64], 4);
    EXPECT_EQ(scale, 0.5f);
    EXPECT_EQ(s[68], 0);
}

TEST(GgmlTernary, DenseTensorsOfTernaryValues) {
    const int64_t rows = 5, cols = 37;
    const std::vector<int8_t> values = random_ternary(rows, cols, 77);
    const float alpha = 0.0371f;
    std::vector<float> w(values.size());
    for (size_t i = 0; i < w.size(); ++i) w[i] = values[i] * alpha;
    for (uint32_t type : {gguf::GGML_F32, gguf::GGML_F16, gguf::GGML_BF16}) {
        SCOPED_TRACE(gguf::tensor_type_name(type));
        std::vector<uint8_t> bytes(*gguf::tensor_bytes(type, {cols, rows}));
        gguf::encode_row_f32(type, w.data(), rows * cols, bytes.data());
        std::vector<int8_t> back;
        const float got = decode(type, rows, cols, bytes, back);
        EXPECT_EQ(back, values);
        float expect = alpha;
        if (type == gguf::GGML_F16) expect = f16_to_f32(f32_to_f16(alpha));
        if (type == gguf::GGML_BF16) expect = bf16_to_f32(f32_to_bf16(alpha));
        EXPECT_EQ(got, expect);

        // One value that is neither 0 nor +-alpha.
        std::vector<float> bad = w;
        bad[2 * cols + 3] = alpha * 0.5f;
        gguf::encode_row_f32(type, bad.data(), rows * cols, bytes.data());
        EXPECT_TRUE(throws_error([&] { decode(type, rows, cols, bytes, back); },
                                 ErrorCode::ParseError, {"t:", "not ternary", "row 2, column 3"}));
        bad[2 * cols + 3] = NAN;
        gguf::encode_row_f32(type, bad.data(), rows * cols, bytes.data());
        EXPECT_TRUE(throws_error([&] { decode(type, rows, cols, bytes, back); },
                                 ErrorCode::ParseError, {"not ternary"}));
    }
}

// A tensor of a file; the data points into `bytes`.
gguf::TensorEntry entry(const std::string& name, uint32_t type, std::vector<int64_t> dims,
                        const std::vector<uint8_t>& bytes) {
    gguf::TensorEntry t;
    t.name = name;
    t.type = type;
    t.dims = std::move(dims);
    t.bytes = bytes.size();
    t.data = bytes.data();
    return t;
}

TEST(GgmlTernary, BadDataIsRefusedNamingTheTensor) {
    const std::vector<int8_t> values = random_ternary(2, 512, 5);
    const auto encoded = [&](uint32_t type) {
        return encode_ternary(type, values.data(), 2, 512, 1.5f, "w");
    };
    const auto fails = [&](uint32_t type, const std::vector<uint8_t>& bytes,
                           std::initializer_list<std::string> needles) {
        std::vector<std::string> all = {"f.gguf: tensor 'blk.3.ffn_up.weight'"};
        all.insert(all.end(), needles.begin(), needles.end());
        const gguf::TensorEntry t = entry("blk.3.ffn_up.weight", type, {512, 2}, bytes);
        try {
            decode_ternary(t, "f.gguf");
        } catch (const Error& e) {
            const std::string msg = e.what();
            for (const std::string& n : all) {
                if (msg.find(n) == std::string::npos) {
                    return testing::AssertionFailure() << "lacks '" << n << "': " << msg;
                }
            }
            return testing::AssertionSuccess();
        }
        return testing::AssertionFailure() << "decoded";
    };

    std::vector<uint8_t> tq2 = encoded(gguf::GGML_TQ2_0);
    tq2[66 + 5] |= 0x03;  // block 1, value 5: code 3
    EXPECT_TRUE(fails(gguf::GGML_TQ2_0, tq2, {"code 3", "row 0, column 261"}));
    tq2 = encoded(gguf::GGML_TQ2_0);
    tq2[3 * 66 + 64] ^= 0x01;  // block 3's d differs from block 0's
    EXPECT_TRUE(fails(gguf::GGML_TQ2_0, tq2, {"block 3", "block 0", "per-block scales"}));
    tq2 = encoded(gguf::GGML_TQ2_0);
    for (int b = 0; b < 4; ++b) tq2[b * 66 + 65] |= 0x80;  // every d negative
    EXPECT_TRUE(fails(gguf::GGML_TQ2_0, tq2, {"scale", ">= 0"}));

    std::vector<uint8_t> tq1 = encoded(gguf::GGML_TQ1_0);
    tq1[54 + 2] = 1;  // never produced: ceil(v * 256 / 243) skips 1
    EXPECT_TRUE(fails(gguf::GGML_TQ1_0, tq1, {"byte 2 of block 1", "not a TQ1_0 encoding"}));
    tq1 = encoded(gguf::GGML_TQ1_0);
    tq1[48] = 2;  // qh byte whose fifth trit is not zero: 2 = ceil(1 * 256 / 243)
    EXPECT_TRUE(fails(gguf::GGML_TQ1_0, tq1, {"byte 48 of block 0"}));
    tq1 = encoded(gguf::GGML_TQ1_0);
    tq1[2 * 54 + 53] ^= 0x04;
    EXPECT_TRUE(fails(gguf::GGML_TQ1_0, tq1, {"block 2", "per-block scales"}));

    std::vector<uint8_t> i2s = encoded(gguf::GGML_I2_S);
    i2s[32 * 4 + 7] |= 0xC0;  // flat block 4 (row 1, first block), value 7: shift 6
    EXPECT_TRUE(fails(gguf::GGML_I2_S, i2s, {"code 3", "row 1, column 7"}));
    i2s = encoded(gguf::GGML_I2_S);
    const float nan = NAN;
    std::memcpy(&i2s[256], &nan, 4);
    EXPECT_TRUE(fails(gguf::GGML_I2_S, i2s, {"scale"}));

    std::vector<uint8_t> t2 = encoded(gguf::BITNET_T2);
    t2[128 + 64 + 1] |= 0x30;  // row 1, block 1, byte 1, shift 4: column 256 + 128 + 1
    EXPECT_TRUE(fails(gguf::BITNET_T2, t2, {"code 3", "row 1, column 385"}));

    EXPECT_TRUE(fails(gguf::GGML_TQ2_0, std::vector<uint8_t>(100), {"100 bytes"}));
    const gguf::TensorEntry q8 = entry("emb", gguf::GGML_Q8_0, {32}, std::vector<uint8_t>(34));
    EXPECT_TRUE(throws_error([&] { decode_ternary(q8, "f.gguf"); }, ErrorCode::UnsupportedFormat,
                             {"f.gguf: tensor 'emb'", "Q8_0"}));
}

TEST(GgmlTernary, BitnetT2PaddingMustHoldZeros) {
    const std::vector<int8_t> values = random_ternary(3, 100, 8);
    std::vector<uint8_t> bytes = encode_ternary(gguf::BITNET_T2, values.data(), 3, 100, 2.f, "p");
    ASSERT_EQ(bytes.size(), 3u * 64 + 64);
    float scale;
    std::memcpy(&scale, &bytes[192], 4);
    EXPECT_EQ(scale, 2.f);
    bytes[64 + 40] = static_cast<uint8_t>((bytes[64 + 40] & ~0xC0) | 0x80);  // row 1, col 232
    std::vector<int8_t> back;
    EXPECT_TRUE(throws_error([&] { decode(gguf::BITNET_T2, 3, 100, bytes, back); },
                             ErrorCode::ParseError, {"padding column 232 of row 1"}));
}

TEST(GgmlTernary, EncodeRefusesBadArguments) {
    std::vector<int8_t> values = random_ternary(2, 256, 3);
    EXPECT_NO_THROW(encode_ternary(gguf::GGML_TQ1_0, values.data(), 2, 256, 1.f, "w"));
    values[300] = 2;
    EXPECT_TRUE(
        throws_error([&] { encode_ternary(gguf::GGML_TQ1_0, values.data(), 2, 256, 1.f, "w"); },
                     ErrorCode::InvalidArgument, {"tensor 'w'", "value 2", "row 1, column 44"}));
    values[300] = 0;
    EXPECT_TRUE(
        throws_error([&] { encode_ternary(gguf::GGML_TQ2_0, values.data(), 4, 128, 1.f, "w"); },
                     ErrorCode::InvalidArgument, {"tensor 'w'", "128 columns"}));
    EXPECT_TRUE(
        throws_error([&] { encode_ternary(gguf::GGML_I2_S, values.data(), 8, 64, 1.f, "w"); },
                     ErrorCode::InvalidArgument, {"tensor 'w'", "64 columns"}));
    EXPECT_TRUE(
        throws_error([&] { encode_ternary(gguf::GGML_TQ2_0, values.data(), 2, 256, -1.f, "w"); },
                     ErrorCode::InvalidArgument, {"tensor 'w'", "alpha"}));
    EXPECT_TRUE(
        throws_error([&] { encode_ternary(gguf::GGML_I2_S, values.data(), 2, 256, INFINITY, "w"); },
                     ErrorCode::InvalidArgument, {"alpha"}));
    EXPECT_TRUE(
        throws_error([&] { encode_ternary(gguf::GGML_TQ1_0, values.data(), 2, 256, 1e6f, "w"); },
                     ErrorCode::InvalidArgument, {"f16"}));
    EXPECT_TRUE(
        throws_error([&] { encode_ternary(gguf::GGML_Q8_0, values.data(), 2, 256, 1.f, "w"); },
                     ErrorCode::InvalidArgument, {"Q8_0"}));
    EXPECT_NO_THROW(encode_ternary(gguf::GGML_I2_S, values.data(), 2, 256, 1e6f, "w"));
}

TEST(GgmlFloatCodecs, Q8_0MatchesTheReferenceQuantizer) {
    std::mt19937 rng(21);
    std::normal_distribution<float> dist(0.f, 0.7f);
    const int64_t n = 32 * 7;
    std::vector<float> x(n);
    for (float& v : x) v = dist(rng);
    std::fill(x.begin() + 64, x.begin() + 96, 0.f);  // block 2 all zero
    std::vector<uint8_t> q(7 * 34);
    gguf::encode_q8_0(x.data(), n, q.data());
    std::vector<float> back(n);
    gguf::decode_q8_0(q.data(), n, back.data());
    for (int64_t b = 0; b < 7; ++b) {
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
        const float d = amax / 127;
        uint16_t dh;
        std::memcpy(&dh, &q[b * 34], 2);
        EXPECT_EQ(dh, f32_to_f16(d));
        for (int j = 0; j < 32; ++j) {
            const float id = d != 0 ? 1.f / d : 0.f;
            EXPECT_EQ(static_cast<int8_t>(q[b * 34 + 2 + j]),
                      static_cast<int8_t>(std::round(x[b * 32 + j] * id)));
            EXPECT_NEAR(back[b * 32 + j], x[b * 32 + j], f16_to_f32(dh) * 0.5f + 1e-3f * amax);
        }
    }
    EXPECT_EQ(back[70], 0.f);
    std::vector<float> via_row(n);
    gguf::decode_row_f32(gguf::GGML_Q8_0, q.data(), n, via_row.data());
    EXPECT_EQ(via_row, back);
}

TEST(GgmlFloatCodecs, F16Bf16F32Rows) {
    std::mt19937 rng(4);
    std::uniform_real_distribution<float> dist(-3.f, 3.f);
    const int64_t n = 29;
    std::vector<float> x(n);
    for (float& v : x) v = dist(rng);
    for (uint32_t type : {gguf::GGML_F32, gguf::GGML_F16, gguf::GGML_BF16}) {
        SCOPED_TRACE(gguf::tensor_type_name(type));
        std::vector<uint8_t> bytes(*gguf::tensor_bytes(type, {n}) + 1);
        // Unaligned on purpose.
        gguf::encode_row_f32(type, x.data(), n, bytes.data() + 1);
        std::vector<float> back(n);
        gguf::decode_row_f32(type, bytes.data() + 1, n, back.data());
        for (int64_t i = 0; i < n; ++i) {
            float expect = x[i];
            if (type == gguf::GGML_F16) expect = f16_to_f32(f32_to_f16(x[i]));
            if (type == gguf::GGML_BF16) expect = bf16_to_f32(f32_to_bf16(x[i]));
            EXPECT_EQ(back[i], expect);
        }
    }
    std::vector<float> out(31);
    EXPECT_TRUE(
        throws_error([&] { gguf::decode_row_f32(gguf::GGML_Q8_0, nullptr, 31, out.data()); },
                     ErrorCode::InvalidArgument, {"Q8_0"}));
    EXPECT_TRUE(
        throws_error([&] { gguf::decode_row_f32(gguf::GGML_TQ2_0, nullptr, 256, out.data()); },
                     ErrorCode::InvalidArgument, {"TQ2_0"}));
}

TEST(GgmlFloatCodecs, I8RowsRoundHalfToEven) {
    const int64_t rows = 3, cols = 5;
    // Row 0: amax 127 gives s = 1, so the halves show the rounding; row 1 all zero.
    const std::vector<float> x = {2.5f, 3.5f, -2.5f, 127.f, -0.5f, 0,     0,   0,
                                  0,    0,    0.3f,  -0.9f, 0.01f, 0.45f, 0.2f};
    const std::vector<uint8_t> bytes = gguf::encode_i8r(x.data(), rows, cols);
    ASSERT_EQ(bytes.size(), *gguf::tensor_bytes(gguf::BITNET_I8R, {cols, rows}));
    EXPECT_EQ(gguf::i8r_scales_offset(rows, cols), 16u);
    const auto q = [&](int64_t i) { return static_cast<int8_t>(bytes[i]); };
    EXPECT_EQ(q(0), 2);
    EXPECT_EQ(q(1), 4);
    EXPECT_EQ(q(2), -2);
    EXPECT_EQ(q(3), 127);
    EXPECT_EQ(q(4), 0);
    EXPECT_EQ(bytes[15], 0);  // padding
    std::vector<float> row(cols);
    gguf::decode_i8r_row(bytes.data(), rows, cols, 1, row.data());
    EXPECT_EQ(row, std::vector<float>(cols, 0.f));
    gguf::decode_i8r_row(bytes.data(), rows, cols, 2, row.data());
    const float s = 0.9f / 127;
    for (int64_t c = 0; c < cols; ++c) {
        EXPECT_NEAR(row[c], x[2 * cols + c], s / 2 + 1e-7f);
        EXPECT_EQ(static_cast<int8_t>(bytes[2 * cols + c]),
                  static_cast<int8_t>(std::nearbyint(x[2 * cols + c] / s)));
    }
}

// ---- the reference files ------------------------------------------------------------------

// Unpacked ternary values and alpha of tiny-packed's projections, by GGUF tensor name.
struct Reference {
    std::vector<int8_t> values;
    float alpha = 0;
};

std::map<std::string, Reference> tiny_packed_checkpoint() {
    const SafetensorsFile ckpt(shared_dir() + "/reference/tiny-packed/model.safetensors");
    const std::pair<const char*, const char*> names[] = {
        {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"},
        {"attn_v", "self_attn.v_proj"}, {"attn_output", "self_attn.o_proj"},
        {"ffn_gate", "mlp.gate_proj"},  {"ffn_up", "mlp.up_proj"},
        {"ffn_down", "mlp.down_proj"},
    };
    std::map<std::string, Reference> out;
    for (int layer = 0; layer < 3; ++layer) {
        for (const auto& [gguf_name, hf_name] : names) {
            const std::string prefix =
                "model.layers." + std::to_string(layer) + "." + std::string(hf_name);
            const StTensor* packed = ckpt.find(prefix + ".weight");
            const StTensor* scale = ckpt.find(prefix + ".weight_scale");
            if (packed == nullptr || scale == nullptr) continue;
            // Packed [out/4, in] uint8: row k * R + r of W is ((P[r, c] >> 2k) & 3) - 1.
            const int64_t r_count = packed->shape[0], cols = packed->shape[1];
            Reference ref;
            ref.values.resize(static_cast<size_t>(4 * r_count * cols));
            for (int k = 0; k < 4; ++k) {
                for (int64_t r = 0; r < r_count; ++r) {
                    for (int64_t c = 0; c < cols; ++c) {
                        const uint8_t p = packed->data[r * cols + c];
                        ref.values[(k * r_count + r) * cols + c] =
                            static_cast<int8_t>(((p >> (2 * k)) & 3) - 1);
                    }
                }
            }
            uint16_t bits;
            std::memcpy(&bits, scale->data, 2);
            ref.alpha = bf16_to_f32(bits);
            out["blk." + std::to_string(layer) + "." + gguf_name + ".weight"] = std::move(ref);
        }
    }
    return out;
}

std::string reference_file(const std::string& name) {
    return shared_dir() + "/reference/gguf/" + name;
}

TEST(GgmlTernaryReference, TinyPackedFilesHoldTheCheckpoint) {
    if (reference_gguf_files(shared_dir()).empty()) GTEST_SKIP() << "no ../shared/reference/gguf";
    const std::map<std::string, Reference> ckpt = tiny_packed_checkpoint();
    ASSERT_EQ(ckpt.size(), 21u);
    for (const char* name : {"tiny-packed.tq1_0.gguf", "tiny-packed.tq2_0.gguf",
                             "tiny-packed.i2_s.gguf", "tiny-packed.f16.gguf",
                             "tiny-packed.bitnet.tq1_0.gguf", "tiny-packed.bitnet.tq2_0.gguf"}) {
        SCOPED_TRACE(name);
        const gguf::File f(reference_file(name));
        int checked = 0;
        for (const auto& [tensor_name, ref] : ckpt) {
            SCOPED_TRACE(tensor_name);
            const gguf::TensorEntry* t = f.find_tensor(tensor_name);
            ASSERT_NE(t, nullptr);
            const gguf::TernaryWeights w = decode_ternary(*t, f.path());
            EXPECT_EQ(w.values, ref.values);
            EXPECT_EQ(w.alpha, ref.alpha);  // bf16 weight_scale, exact in f16 and f32
            if (gguf::is_ternary_encodable(t->type)) {
                const std::vector<uint8_t> again =
                    encode_ternary(t->type, w.values.data(), w.rows, w.cols, w.alpha, t->name);
                ASSERT_EQ(again.size(), t->bytes);
                // I2_S: the 28 bytes after the f32 scale are whatever was in llama-quantize's
                // buffer (not written by quantize_i2_s), so they are not compared.
                const size_t compared =
                    t->type == gguf::GGML_I2_S ? static_cast<size_t>(t->bytes - 28) : t->bytes;
                EXPECT_EQ(std::memcmp(again.data(), t->data, compared), 0);
            }
            ++checked;
        }
        EXPECT_EQ(checked, 21);
    }
}

TEST(GgmlTernaryReference, TinyMasterFormatsAgree) {
    if (reference_gguf_files(shared_dir()).empty()) GTEST_SKIP() << "no ../shared/reference/gguf";
    const gguf::File i2s(reference_file("tiny-master.i2_s.gguf"));
    int checked = 0;
    for (const char* name :
         {"tiny-master.tq1_0.gguf", "tiny-master.tq2_0.gguf", "tiny-master.f16.gguf"}) {
        SCOPED_TRACE(name);
        const gguf::File f(reference_file(name));
        for (const gguf::TensorEntry& t : i2s.tensors()) {
            if (t.type != gguf::GGML_I2_S) continue;
            SCOPED_TRACE(t.name);
            const gguf::TernaryWeights a = decode_ternary(t, i2s.path());
            const gguf::TernaryWeights b = decode_ternary(*f.find_tensor(t.name), f.path());
            EXPECT_EQ(a.values, b.values);
            // I2_S keeps alpha in f32, the others round it to f16.
            EXPECT_EQ(b.alpha, f16_to_f32(f32_to_f16(a.alpha)));
            if (f.find_tensor(t.name)->type != gguf::GGML_F16) {
                const std::vector<uint8_t> again = encode_ternary(
                    f.find_tensor(t.name)->type, b.values.data(), b.rows, b.cols, a.alpha, t.name);
                EXPECT_EQ(std::memcmp(again.data(), f.find_tensor(t.name)->data, again.size()), 0);
            }
            ++checked;
        }
    }
    EXPECT_EQ(checked, 3 * 14);
}

}  // namespace
}  // namespace bitnet::test
