// The GGUF reader: every metadata value type, tensor infos, alignment, and every way a file can
// be corrupt or hostile, each rejected with a bitnet::Error naming the file and the key or
// tensor at fault. The reference files of ../shared/reference/gguf parse when present.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "gguf_test_support.h"
#include "model/format/gguf.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

using gguf::Parsed;
using gguf::ValueType;

constexpr const char* kOrigin = "mem.gguf";

Parsed parse(const RawGguf& g) {
    return gguf::parse(g.bytes.data(), g.bytes.size(), kOrigin);
}

testing::AssertionResult parse_fails(const RawGguf& g, ErrorCode code,
                                     std::initializer_list<std::string> needles) {
    std::vector<std::string> all = {kOrigin};
    all.insert(all.end(), needles.begin(), needles.end());
    try {
        parse(g);
    } catch (const Error& e) {
        const std::string msg = e.what();
        if (e.code() != code) {
            return testing::AssertionFailure() << "code " << to_string(e.code()) << ", expected "
                                               << to_string(code) << ": " << msg;
        }
        if (msg.rfind(kOrigin, 0) != 0) {
            return testing::AssertionFailure() << "message does not start with the file: " << msg;
        }
        for (const std::string& n : all) {
            if (msg.find(n) == std::string::npos) {
                return testing::AssertionFailure() << "message lacks '" << n << "': " << msg;
            }
        }
        return testing::AssertionSuccess();
    }
    return testing::AssertionFailure() << "parsed without error";
}

TEST(GgufReader, ReadsEveryValueTypeExactly) {
    RawGguf g;
    g.header(0, 16);
    g.key("u8", 0).u8(200);
    g.key("i8", 1).put<int8_t>(-100);
    g.key("u16", 2).put<uint16_t>(60000);
    g.key("i16", 3).put<int16_t>(-30000);
    g.key("u32", 4).u32(4000000000u);
    g.key("i32", 5).put<int32_t>(-2000000000);
    g.key("f32", 6).put<float>(0.1f);
    g.key("bool", 7).u8(1);
    g.key("str", 8).str("h\xc3\xa9llo\0x");
    g.key("u64", 10).u64(0xfedcba9876543210ull);
    g.key("i64", 11).put<int64_t>(std::numeric_limits<int64_t>::min());
    g.key("f64", 12).put<double>(-1e300);
    g.key("arr_str", 9).u32(8).u64(3).str("a").str("").str("ccc");
    g.key("arr_f32", 9).u32(6).u64(2).put<float>(1.5f).put<float>(-0.25f);
    g.key("arr_bool", 9).u32(7).u64(2).u8(0).u8(1);
    // An array of two arrays of i16: [[1, -2], []].
    g.key("nested", 9).u32(9).u64(2);
    g.u32(3).u64(2).put<int16_t>(1).put<int16_t>(-2);
    g.u32(3).u64(0);
    const Parsed p = parse(g);
    ASSERT_EQ(p.metadata.size(), 16u);
    EXPECT_EQ(p.tensors.size(), 0u);
    EXPECT_EQ(p.alignment, 32u);
    const auto& m = p.metadata;
    EXPECT_EQ(m[0].key, "u8");
    EXPECT_EQ(m[0].value.type, ValueType::U8);
    EXPECT_EQ(m[0].value.u, 200u);
    EXPECT_EQ(m[1].value.i, -100);
    EXPECT_EQ(m[2].value.u, 60000u);
    EXPECT_EQ(m[3].value.i, -30000);
    EXPECT_EQ(m[4].value.u, 4000000000u);
    EXPECT_EQ(m[5].value.i, -2000000000);
    EXPECT_EQ(m[6].value.type, ValueType::F32);
    EXPECT_EQ(m[6].value.f, static_cast<double>(0.1f));
    EXPECT_EQ(m[7].value.type, ValueType::Bool);
    EXPECT_EQ(m[7].value.u, 1u);
    EXPECT_EQ(m[8].value.s, std::string("h\xc3\xa9llo"));  // the \0 ended the C literal
    EXPECT_EQ(m[9].value.u, 0xfedcba9876543210ull);
    EXPECT_EQ(m[10].value.i, std::numeric_limits<int64_t>::min());
    EXPECT_EQ(m[11].value.f, -1e300);
    EXPECT_EQ(m[12].value.type, ValueType::Array);
    EXPECT_EQ(m[12].value.elem_type, ValueType::String);
    EXPECT_EQ(m[12].value.arr_s, (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_EQ(m[12].value.array_size(), 3u);
    EXPECT_EQ(m[13].value.arr_f, (std::vector<double>{1.5, -0.25}));
    EXPECT_EQ(m[14].value.arr_u, (std::vector<uint64_t>{0, 1}));
    ASSERT_EQ(m[15].value.items.size(), 2u);
    EXPECT_EQ(m[15].value.elem_type, ValueType::Array);
    EXPECT_EQ(m[15].value.items[0].elem_type, ValueType::I16);
    EXPECT_EQ(m[15].value.items[0].arr_i, (std::vector<int64_t>{1, -2}));
    EXPECT_EQ(m[15].value.items[1].array_size(), 0u);
}

TEST(GgufReader, TensorInfosAndDataOfVersions2And3) {
    for (uint32_t version : {2u, 3u}) {
        RawGguf g;
        g.header(3, 1, version).kv_str("general.architecture", "bitnet");
        g.tensor("a", {256, 3}, gguf::GGML_TQ2_0, 0);
        g.tensor("b", {5}, gguf::GGML_F16, 224);
        g.tensor("c", {32, 2}, gguf::GGML_Q8_0, 256);
        g.pad();
        const size_t data_start = g.bytes.size();
        g.data(3 * 66, 0x11).pad().data(10, 0x22).pad().data(68, 0x33);
        const Parsed p = parse(g);
        EXPECT_EQ(p.version, version);
        EXPECT_EQ(p.data_offset, data_start);
        ASSERT_EQ(p.tensors.size(), 3u);
        EXPECT_EQ(p.tensors[0].name, "a");
        EXPECT_EQ(p.tensors[0].dims, (std::vector<int64_t>{256, 3}));
        EXPECT_EQ(p.tensors[0].bytes, 198u);
        EXPECT_EQ(p.tensors[0].numel(), 768);
        EXPECT_EQ(p.tensors[0].data, g.bytes.data() + data_start);
        EXPECT_EQ(p.tensors[1].bytes, 10u);
        EXPECT_EQ(p.tensors[1].data[0], 0x22);
        EXPECT_EQ(p.tensors[2].bytes, 68u);
        EXPECT_EQ(p.tensors[2].data, g.bytes.data() + data_start + 256);
        EXPECT_EQ(p.tensors[2].data[67], 0x33);
    }
}

TEST(GgufReader, HonoursGeneralAlignment) {
    RawGguf g;
    g.header(2, 1).kv_u32("general.alignment", 128);
    g.tensor("a", {3}, gguf::GGML_F32, 0).tensor("b", {4}, gguf::GGML_F32, 128);
    g.pad(128);
    const size_t start = g.bytes.size();
    g.data(12).pad(128).data(16);
    const Parsed p = parse(g);
    EXPECT_EQ(p.alignment, 128u);
    EXPECT_EQ(p.data_offset, start);
    EXPECT_EQ(p.data_offset % 128, 0u);

    RawGguf misaligned;
    misaligned.header(2, 1).kv_u32("general.alignment", 128);
    misaligned.tensor("a", {3}, gguf::GGML_F32, 0).tensor("b", {4}, gguf::GGML_F32, 64);
    misaligned.pad(128).data(12).pad(64).data(16);
    EXPECT_TRUE(parse_fails(misaligned, ErrorCode::ParseError,
                            {"tensor 'b'", "offset 64", "alignment 128"}));
}

TEST(GgufReader, RejectsBadAlignment) {
    for (uint32_t a : {0u, 3u, 48u}) {
        RawGguf g;
        g.header(0, 1).kv_u32("general.alignment", a);
        EXPECT_TRUE(parse_fails(g, ErrorCode::ParseError,
                                {"general.alignment", std::to_string(a), "power of two"}));
    }
    RawGguf too_large;  // a power of two, but past what ggml's u32 key can hold
    too_large.header(0, 1).key("general.alignment", 10).u64(uint64_t{1} << 32);
    EXPECT_TRUE(parse_fails(too_large, ErrorCode::ParseError, {"general.alignment", "2^31"}));
    RawGguf as_string;
    as_string.header(0, 1).kv_str("general.alignment", "32");
    EXPECT_TRUE(parse_fails(as_string, ErrorCode::ParseError, {"general.alignment", "string"}));
}

TEST(GgufReader, EveryTruncationIsAParseError) {
    RawGguf g;
    g.header(2, 3).kv_str("general.name", "trunc");
    g.key("arr", 9).u32(8).u64(2).str("xy").str("z");
    g.kv_u32("n", 7);
    g.tensor("t0", {256}, gguf::GGML_TQ1_0, 0).tensor("t1", {4, 2}, gguf::GGML_BF16, 64);
    g.pad().data(54).pad().data(16);
    ASSERT_NO_THROW(parse(g));
    for (size_t n = 0; n < g.bytes.size(); ++n) {
        try {
            gguf::parse(g.bytes.data(), n, kOrigin);
            ADD_FAILURE() << "prefix of " << n << " bytes parsed";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::ParseError) << n << ": " << e.what();
            EXPECT_EQ(std::string(e.what()).rfind(kOrigin, 0), 0u) << e.what();
        }
    }
    RawGguf header_only;
    header_only.magic().u32(3).u64(0);
    EXPECT_TRUE(parse_fails(header_only, ErrorCode::ParseError, {"truncated", "metadata count"}));
}

TEST(GgufReader, RejectsBadMagicAndVersions) {
    RawGguf bad_magic;
    bad_magic.magic("GGUG").u32(3).u64(0).u64(0);
    EXPECT_TRUE(parse_fails(bad_magic, ErrorCode::ParseError, {"magic"}));
    for (uint32_t v : {0u, 1u, 4u, 1000u}) {
        RawGguf g;
        g.header(0, 0, v);
        EXPECT_TRUE(parse_fails(g, ErrorCode::UnsupportedFormat,
                                {"version " + std::to_string(v), "not supported"}));
    }
    RawGguf big_endian;
    big_endian.header(0, 0, 0x03000000u);
    EXPECT_TRUE(parse_fails(big_endian, ErrorCode::UnsupportedFormat, {"big-endian"}));
}

TEST(GgufReader, RejectsLengthsAndCountsPastTheEnd) {
    RawGguf key_len;
    key_len.header(0, 1).u64(1ull << 60).data(8);
    EXPECT_TRUE(parse_fails(key_len, ErrorCode::ParseError, {"string length", "past the end"}));

    RawGguf value_len;
    value_len.header(0, 1).key("general.name", 8).u64(100).data(20, 'a');
    EXPECT_TRUE(
        parse_fails(value_len, ErrorCode::ParseError, {"key 'general.name'", "string length 100"}));

    RawGguf array_count;
    array_count.header(0, 1).key("tokenizer.ggml.scores", 9).u32(6).u64(1ull << 61).data(64);
    EXPECT_TRUE(parse_fails(array_count, ErrorCode::ParseError,
                            {"key 'tokenizer.ggml.scores'", "array length", "cannot fit"}));

    RawGguf string_array;  // 1000 strings of at least 8 bytes cannot fit in 100 bytes
    string_array.header(0, 1).key("tokenizer.ggml.tokens", 9).u32(8).u64(1000).data(100, 0);
    EXPECT_TRUE(parse_fails(string_array, ErrorCode::ParseError,
                            {"key 'tokenizer.ggml.tokens'", "array length 1000"}));

    RawGguf kv_count;
    kv_count.header(0, 1ull << 62).data(64);
    EXPECT_TRUE(parse_fails(kv_count, ErrorCode::ParseError, {"metadata count", "cannot fit"}));

    RawGguf tensor_count;
    tensor_count.header(1ull << 40, 0).data(64);
    EXPECT_TRUE(parse_fails(tensor_count, ErrorCode::ParseError, {"tensor count", "cannot fit"}));
}

TEST(GgufReader, RejectsBadValues) {
    RawGguf dup;
    dup.header(0, 2).kv_u32("a.b", 1).kv_u32("a.b", 2);
    EXPECT_TRUE(parse_fails(dup, ErrorCode::ParseError, {"key 'a.b'", "duplicate key"}));

    RawGguf bad_type;
    bad_type.header(0, 1).key("weird", 13).u32(0);
    EXPECT_TRUE(parse_fails(bad_type, ErrorCode::ParseError, {"key 'weird'", "value type 13"}));

    RawGguf bad_elem;
    bad_elem.header(0, 1).key("arr", 9).u32(77).u64(0);
    EXPECT_TRUE(parse_fails(bad_elem, ErrorCode::ParseError, {"key 'arr'", "value type 77"}));

    RawGguf bad_bool;
    bad_bool.header(0, 1).key("flag", 7).u8(2);
    EXPECT_TRUE(parse_fails(bad_bool, ErrorCode::ParseError, {"key 'flag'", "bool value 2"}));

    RawGguf bad_bool_elem;
    bad_bool_elem.header(0, 1).key("flags", 9).u32(7).u64(3).u8(1).u8(0).u8(255);
    EXPECT_TRUE(parse_fails(bad_bool_elem, ErrorCode::ParseError, {"key 'flags'", "bool"}));

    RawGguf deep;  // arrays nested 20 levels deep
    deep.header(0, 1).key("deep", 9);
    for (int i = 0; i < 20; ++i) deep.u32(9).u64(1);
    deep.u32(0).u64(0);
    EXPECT_TRUE(parse_fails(deep, ErrorCode::ParseError, {"key 'deep'", "nested"}));
}

TEST(GgufReader, RejectsBadTensorInfos) {
    const auto file_with = [](const std::string& name, const std::vector<uint64_t>& dims,
                              uint32_t type, size_t data_bytes) {
        RawGguf g;
        g.header(1, 0).tensor(name, dims, type, 0).pad().data(data_bytes);
        return g;
    };
    EXPECT_TRUE(parse_fails(file_with("no_dims", {}, gguf::GGML_F32, 32), ErrorCode::ParseError,
                            {"tensor 'no_dims'", "n_dims = 0"}));
    EXPECT_TRUE(parse_fails(file_with("five", {1, 1, 1, 1, 1}, gguf::GGML_F32, 32),
                            ErrorCode::ParseError, {"tensor 'five'", "n_dims = 5"}));
    EXPECT_TRUE(parse_fails(file_with("zero", {4, 0}, gguf::GGML_F32, 32), ErrorCode::ParseError,
                            {"tensor 'zero'", "dimension 1 is 0"}));
    EXPECT_TRUE(parse_fails(file_with("neg", {1ull << 63}, gguf::GGML_F32, 32),
                            ErrorCode::ParseError, {"tensor 'neg'", "dimension 0 is -"}));
    EXPECT_TRUE(parse_fails(file_with("huge", {1ull << 40, 1ull << 40}, gguf::GGML_F32, 32),
                            ErrorCode::ParseError, {"tensor 'huge'", "overflows"}));
    EXPECT_TRUE(parse_fails(file_with("bytes", {1ull << 31, 1ull << 31}, gguf::GGML_F32, 32),
                            ErrorCode::ParseError, {"tensor 'bytes'", "overflows"}));
    EXPECT_TRUE(parse_fails(file_with("q6k", {256}, 14, 256), ErrorCode::UnsupportedFormat,
                            {"tensor 'q6k'", "Q6_K"}));
    EXPECT_TRUE(parse_fails(file_with("t999", {256}, 999, 256), ErrorCode::UnsupportedFormat,
                            {"tensor 't999'", "type 999"}));
    EXPECT_TRUE(parse_fails(file_with("tq2", {100, 2}, gguf::GGML_TQ2_0, 256),
                            ErrorCode::ParseError, {"tensor 'tq2'", "ne0 = 100", "256"}));
    EXPECT_TRUE(parse_fails(file_with("tq1", {512 + 32}, gguf::GGML_TQ1_0, 256),
                            ErrorCode::ParseError, {"tensor 'tq1'", "TQ1_0"}));
    EXPECT_TRUE(parse_fails(file_with("q8", {48}, gguf::GGML_Q8_0, 256), ErrorCode::ParseError,
                            {"tensor 'q8'", "32"}));
    EXPECT_TRUE(parse_fails(file_with("i2s", {64, 4}, gguf::GGML_I2_S, 256), ErrorCode::ParseError,
                            {"tensor 'i2s'", "128"}));
    EXPECT_TRUE(parse_fails(file_with("past", {64}, gguf::GGML_F32, 255), ErrorCode::ParseError,
                            {"tensor 'past'", "past the end"}));

    // Control bytes of a hostile name are escaped in the message.
    EXPECT_TRUE(parse_fails(file_with("\x1b[2Jx", {8}, 999, 32), ErrorCode::UnsupportedFormat,
                            {"tensor '\\x1b[2Jx'"}));

    RawGguf dup;
    dup.header(2, 0).tensor("w", {8}, gguf::GGML_F32, 0).tensor("w", {8}, gguf::GGML_F32, 32);
    dup.pad().data(64);
    EXPECT_TRUE(parse_fails(dup, ErrorCode::ParseError, {"tensor 'w'", "duplicate tensor name"}));

    RawGguf overlap;
    overlap.header(2, 0).tensor("a", {16}, gguf::GGML_F32, 0).tensor("b", {8}, gguf::GGML_F32, 32);
    overlap.pad().data(64);
    EXPECT_TRUE(parse_fails(overlap, ErrorCode::ParseError, {"'a'", "'b'", "overlap"}));

    RawGguf misaligned;
    misaligned.header(1, 0).tensor("m", {8}, gguf::GGML_F32, 16).pad().data(64);
    EXPECT_TRUE(parse_fails(misaligned, ErrorCode::ParseError, {"tensor 'm'", "offset 16"}));

    RawGguf offset_overflow;
    offset_overflow.header(1, 0).tensor("o", {8}, gguf::GGML_F32, ~31ull).pad().data(64);
    EXPECT_TRUE(
        parse_fails(offset_overflow, ErrorCode::ParseError, {"tensor 'o'", "past the end"}));
}

TEST(GgufReader, TensorBytesOfEveryType) {
    using gguf::tensor_bytes;
    EXPECT_EQ(tensor_bytes(gguf::GGML_F32, {7, 3}), 84u);
    EXPECT_EQ(tensor_bytes(gguf::GGML_F16, {7, 3}), 42u);
    EXPECT_EQ(tensor_bytes(gguf::GGML_BF16, {7, 3, 2}), 84u);
    EXPECT_EQ(tensor_bytes(gguf::GGML_Q8_0, {64, 3}), 6u * 34);
    EXPECT_EQ(tensor_bytes(gguf::GGML_TQ2_0, {512, 3}), 6u * 66);
    EXPECT_EQ(tensor_bytes(gguf::GGML_TQ1_0, {512, 3}), 6u * 54);
    EXPECT_EQ(tensor_bytes(gguf::GGML_I2_S, {384, 5}), 384u * 5 / 4 + 32);
    EXPECT_EQ(tensor_bytes(gguf::BITNET_T2, {300, 7}), 7u * 2 * 64 + 64);
    EXPECT_EQ(tensor_bytes(gguf::BITNET_T2, {256, 7}), 7u * 64 + 64);
    EXPECT_EQ(tensor_bytes(gguf::BITNET_T5, {321, 3, 2}), 6u * 2 * 64 + 64);
    EXPECT_EQ(tensor_bytes(gguf::BITNET_I8R, {5, 3}), 16u + 12);
    EXPECT_EQ(tensor_bytes(gguf::BITNET_I8R, {4, 3}), 12u + 12);
    EXPECT_FALSE(tensor_bytes(gguf::GGML_Q8_0, {33}));
    EXPECT_FALSE(tensor_bytes(gguf::GGML_I2_S, {256 + 64, 2}));
    EXPECT_FALSE(tensor_bytes(gguf::GGML_F32, {}));
    EXPECT_FALSE(tensor_bytes(gguf::GGML_F32, {1, 1, 1, 1, 1}));
    EXPECT_FALSE(tensor_bytes(gguf::GGML_F32, {-4}));
    EXPECT_FALSE(tensor_bytes(2, {32}));  // Q4_0: not supported
    EXPECT_FALSE(tensor_bytes(gguf::GGML_F32, {int64_t{1} << 62, 2}));
    EXPECT_FALSE(tensor_bytes(gguf::GGML_F32, {int64_t{1} << 61}));
    EXPECT_EQ(gguf::tensor_type_name(gguf::GGML_TQ1_0), "TQ1_0");
    EXPECT_EQ(gguf::tensor_type_name(gguf::GGML_I2_S), "I2_S");
    EXPECT_EQ(gguf::tensor_type_name(gguf::BITNET_T2), "BITNET_T2");
    EXPECT_EQ(gguf::tensor_type_name(14), "Q6_K");
    EXPECT_EQ(gguf::tensor_type_name(5000), "type 5000");
}

// Random corruption of a valid image: the parser returns or throws bitnet::Error, nothing else.
TEST(GgufReader, SurvivesRandomCorruption) {
    RawGguf g;
    g.header(2, 3).kv_str("general.name", "c");
    g.key("arr", 9).u32(9).u64(1).u32(4).u64(2).u32(1).u32(2);
    g.kv_u32("general.alignment", 32);
    g.tensor("a", {256, 2}, gguf::GGML_TQ2_0, 0).tensor("b", {32}, gguf::GGML_Q8_0, 160);
    g.pad().data(132).pad().data(34);
    ASSERT_NO_THROW(parse(g));
    std::mt19937 rng(1234);
    int accepted = 0;
    for (int trial = 0; trial < 3000; ++trial) {
        std::vector<uint8_t> bytes = g.bytes;
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int f = 0; f < flips; ++f) {
            bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
        }
        try {
            gguf::parse(bytes.data(), bytes.size(), kOrigin);
            ++accepted;
        } catch (const Error& e) {
            EXPECT_EQ(std::string(e.what()).rfind(kOrigin, 0), 0u) << e.what();
        }
    }
    EXPECT_GT(accepted, 0);  // flips inside tensor data are harmless
}

TEST(GgufFile, TypedAccessors) {
    ScratchDir dir("gguf-reader");
    RawGguf g;
    g.header(1, 10);
    g.kv_str("general.architecture", "bitnet-25");
    g.kv_u32("bitnet-25.block_count", 30);
    g.key("big", 10).u64(~0ull);
    g.key("eps", 6).put<float>(1e-5f);
    g.key("neg", 5).put<int32_t>(-7);
    g.key("flag", 7).u8(1);
    g.key("tokens", 9).u32(8).u64(2).str("a").str("b");
    g.key("scores", 9).u32(6).u64(2).put<float>(0.5f).put<float>(-1.f);
    g.key("types", 9).u32(5).u64(3).put<int32_t>(1).put<int32_t>(3).put<int32_t>(-1);
    g.key("ids", 9).u32(10).u64(1).u64(~0ull);
    g.tensor("token_embd.weight", {4, 2}, gguf::GGML_F16, 0).pad().data(16);
    const std::string path = dir.file("acc.gguf");
    write_bytes(path, g.bytes);

    EXPECT_TRUE(gguf::is_gguf_file(path));
    const gguf::File f(path);
    EXPECT_EQ(f.path(), path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_EQ(f.file_size(), g.bytes.size());
    EXPECT_EQ(f.get_string("general.architecture"), "bitnet-25");
    EXPECT_EQ(f.get_int("bitnet-25.block_count"), 30);
    EXPECT_EQ(f.get_int("neg"), -7);
    EXPECT_EQ(f.get_int("flag"), 1);
    EXPECT_FLOAT_EQ(static_cast<float>(f.get_float("eps")), 1e-5f);
    EXPECT_EQ(f.get_float("bitnet-25.block_count"), 30.0);
    EXPECT_EQ(f.get_bool_opt("flag"), true);
    EXPECT_FALSE(f.get_bool_opt("absent"));
    EXPECT_FALSE(f.get_int_opt("absent"));
    EXPECT_FALSE(f.get_string_opt("absent"));
    EXPECT_FALSE(f.get_float_opt("absent"));
    EXPECT_EQ(f.get_string_array("tokens"), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(f.get_float_array("scores"), (std::vector<double>{0.5, -1.0}));
    EXPECT_EQ(f.get_float_array("types"), (std::vector<double>{1, 3, -1}));
    EXPECT_EQ(f.get_int_array("types"), (std::vector<int64_t>{1, 3, -1}));
    EXPECT_TRUE(f.get_string_array("absent").empty());
    ASSERT_NE(f.find("eps"), nullptr);
    EXPECT_EQ(f.find("eps")->type, ValueType::F32);
    ASSERT_NE(f.find_tensor("token_embd.weight"), nullptr);
    EXPECT_EQ(f.find_tensor("token_embd.weight")->bytes, 16u);
    EXPECT_EQ(f.find_tensor("output.weight"), nullptr);

    EXPECT_TRUE(throws_error([&] { f.get_string("missing.key"); }, ErrorCode::ParseError,
                             {path, "missing.key", "missing"}));
    EXPECT_TRUE(throws_error([&] { f.get_int("general.architecture"); }, ErrorCode::ParseError,
                             {path, "general.architecture", "string"}));
    EXPECT_TRUE(throws_error([&] { f.get_int("big"); }, ErrorCode::ParseError,
                             {path, "'big'", "out of range"}));
    EXPECT_TRUE(throws_error([&] { f.get_string("bitnet-25.block_count"); }, ErrorCode::ParseError,
                             {path, "block_count", "u32"}));
    EXPECT_TRUE(throws_error([&] { f.get_bool_opt("neg"); }, ErrorCode::ParseError,
                             {path, "'neg'", "bool"}));
    EXPECT_TRUE(throws_error([&] { f.get_string_array("scores"); }, ErrorCode::ParseError,
                             {path, "'scores'", "array of f32"}));
    EXPECT_TRUE(throws_error([&] { f.get_int_array("scores"); }, ErrorCode::ParseError,
                             {path, "'scores'"}));
    EXPECT_TRUE(throws_error([&] { f.get_int_array("ids"); }, ErrorCode::ParseError,
                             {path, "'ids'", "out of range"}));
    EXPECT_TRUE(throws_error([&] { f.get_float_array("tokens"); }, ErrorCode::ParseError,
                             {path, "'tokens'"}));
    EXPECT_TRUE(throws_error([&] { f.get_float("tokens"); }, ErrorCode::ParseError,
                             {path, "'tokens'", "array of string"}));
}

TEST(GgufFile, MissingAndForeignFiles) {
    ScratchDir dir("gguf-reader");
    EXPECT_TRUE(throws_error([&] { gguf::File f(dir.file("absent.gguf")); }, ErrorCode::NotFound,
                             {"absent.gguf"}));
    EXPECT_FALSE(gguf::is_gguf_file(dir.file("absent.gguf")));
    const std::string st = dir.file("x.safetensors");
    write_bytes(st, {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '});
    EXPECT_FALSE(gguf::is_gguf_file(st));
    EXPECT_TRUE(throws_error([&] { gguf::File f(st); }, ErrorCode::ParseError, {st, "magic"}));
    const std::string empty = dir.file("empty.gguf");
    write_bytes(empty, {});
    EXPECT_TRUE(
        throws_error([&] { gguf::File f(empty); }, ErrorCode::ParseError, {empty, "truncated"}));
}

// The files of ../shared/reference/gguf, written by bitnet.cpp's and llama.cpp's tools.
TEST(GgufFile, ReferenceFilesParse) {
    const std::vector<std::string> files = reference_gguf_files(shared_dir());
    if (files.empty()) GTEST_SKIP() << "no ../shared/reference/gguf";
    ASSERT_EQ(files.size(), 10u);
    for (const std::string& path : files) {
        SCOPED_TRACE(path);
        const gguf::File f(path);
        EXPECT_EQ(f.version(), 3u);
        EXPECT_EQ(f.alignment(), 32u);
        const bool packed = path.find("tiny-packed") != std::string::npos;
        const bool upstream = path.find(".bitnet.") != std::string::npos;
        EXPECT_EQ(f.tensors().size(), packed ? 35u : 25u);
        EXPECT_EQ(f.get_string("general.architecture"), upstream ? "bitnet" : "bitnet-25");
        const std::string arch = f.get_string("general.architecture");
        EXPECT_EQ(f.get_int(arch + ".embedding_length"), 256);
        EXPECT_EQ(f.get_int(arch + ".block_count"), packed ? 3 : 2);
        EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
        EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), packed ? 512u : 389u);
        EXPECT_EQ(f.get_bool_opt("tokenizer.ggml.add_bos_token"), true);
        EXPECT_FLOAT_EQ(static_cast<float>(f.get_float(arch + ".attention.layer_norm_rms_epsilon")),
                        1e-5f);
        const gguf::TensorEntry* q = f.find_tensor("blk.0.attn_q.weight");
        ASSERT_NE(q, nullptr);
        EXPECT_EQ(q->dims, (std::vector<int64_t>{256, 256}));
        uint32_t want = gguf::GGML_F16;
        if (path.find("tq1_0") != std::string::npos) want = gguf::GGML_TQ1_0;
        if (path.find("tq2_0") != std::string::npos) want = gguf::GGML_TQ2_0;
        if (path.find("i2_s") != std::string::npos) want = gguf::GGML_I2_S;
        EXPECT_EQ(q->type, want);
        EXPECT_EQ(f.find_tensor("token_embd.weight")->type, gguf::GGML_F16);
        EXPECT_EQ(f.find_tensor("output_norm.weight")->type, gguf::GGML_F32);
        EXPECT_EQ(f.find_tensor("output.weight") != nullptr, !packed);
    }
}

}  // namespace
}  // namespace bitnet::test
