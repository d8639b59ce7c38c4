// The GGUF writer: what it writes reads back identically, read -> write reproduces files
// byte for byte (the reference files of ../shared/reference/gguf included), and bad tensors or
// metadata are refused with errors naming them.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "gguf_test_support.h"
#include "model/format/gguf_writer.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

using gguf::Value;
using gguf::ValueType;
using gguf::Writer;

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> out(n);
    for (uint8_t& b : out) b = static_cast<uint8_t>(rng());
    return out;
}

// A writer using every value kind and a tensor of every supported type, with odd shapes.
Writer sample_writer(std::vector<std::vector<uint8_t>>& kept) {
    Writer w;
    w.set_string("general.architecture", "bitnet-25");
    w.set_u8("u8", 250);
    w.set_i8("i8", -128);
    w.set_u16("u16", 65535);
    w.set_i16("i16", -32768);
    w.set_u32("u32", 4294967295u);
    w.set_i32("i32", -5);
    w.set_u64("u64", ~0ull);
    w.set_i64("i64", -(int64_t{1} << 40));
    w.set_f32("f32", 0.1f);
    w.set_f64("f64", 3.141592653589793);
    w.set_bool("flag", true);
    w.set_string_array("tokens", {"a", "", "\xe2\x96\x81x"});
    w.set_f32_array("scores", {0.f, -1.5f, 1e-30f});
    w.set_i32_array("types", {1, 3, -7});
    w.set_u32_array("ids", {0, 4000000000u});
    Value nested;
    nested.type = ValueType::Array;
    nested.elem_type = ValueType::Array;
    Value inner;
    inner.type = ValueType::Array;
    inner.elem_type = ValueType::U16;
    inner.arr_u = {1, 65535};
    nested.items = {inner, inner};
    nested.items[1].arr_u.clear();
    w.set("nested", nested);

    struct Spec {
        const char* name;
        std::vector<int64_t> dims;
        uint32_t type;
    };
    const Spec specs[] = {
        {"f32", {7, 3}, gguf::GGML_F32},      {"f16", {5}, gguf::GGML_F16},
        {"bf16", {3, 3, 3}, gguf::GGML_BF16}, {"q8", {64, 3}, gguf::GGML_Q8_0},
        {"tq1", {256, 3}, gguf::GGML_TQ1_0},  {"tq2", {512, 1}, gguf::GGML_TQ2_0},
        {"i2s", {128, 5}, gguf::GGML_I2_S},   {"t2", {300, 3}, gguf::BITNET_T2},
        {"t5", {321, 2}, gguf::BITNET_T5},    {"i8r", {5, 3}, gguf::BITNET_I8R},
        {"4d", {2, 3, 1, 2}, gguf::GGML_F32},
    };
    uint32_t seed = 1;
    for (const Spec& s : specs) {
        const uint64_t n = *gguf::tensor_bytes(s.type, s.dims);
        if (seed % 2 == 0) {
            w.add_tensor(s.name, s.dims, s.type, random_bytes(n, seed));
        } else {
            kept.push_back(random_bytes(n, seed));
            w.add_tensor_ref(s.name, s.dims, s.type, kept.back().data(), n);
        }
        ++seed;
    }
    return w;
}

TEST(GgufWriter, WrittenFilesReadBackExactly) {
    ScratchDir dir("gguf-writer");
    std::vector<std::vector<uint8_t>> kept;
    kept.reserve(32);
    const Writer w = sample_writer(kept);
    const std::string path = dir.file("sample.gguf");
    w.write(path);
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
    EXPECT_EQ(std::filesystem::file_size(path), w.file_size());
    EXPECT_EQ(read_bytes(path), w.to_bytes());

    const gguf::File f(path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_EQ(f.find("general.alignment"), nullptr);  // not written unless set
    ASSERT_EQ(f.metadata().size(), w.metadata().size());
    for (size_t i = 0; i < f.metadata().size(); ++i) {
        EXPECT_EQ(f.metadata()[i].key, w.metadata()[i].key);
        EXPECT_EQ(f.metadata()[i].value.type, w.metadata()[i].value.type);
    }
    EXPECT_EQ(f.find("u8")->u, 250u);
    EXPECT_EQ(f.find("i8")->i, -128);
    EXPECT_EQ(f.find("u64")->u, ~0ull);
    EXPECT_EQ(f.find("i64")->i, -(int64_t{1} << 40));
    EXPECT_EQ(f.find("f32")->f, static_cast<double>(0.1f));
    EXPECT_EQ(f.find("f64")->f, 3.141592653589793);
    EXPECT_EQ(f.get_bool_opt("flag"), true);
    EXPECT_EQ(f.get_string_array("tokens"), (std::vector<std::string>{"a", "", "\xe2\x96\x81x"}));
    EXPECT_EQ(f.get_float_array("scores"),
              (std::vector<double>{0.0, -1.5, static_cast<double>(1e-30f)}));
    EXPECT_EQ(f.get_int_array("types"), (std::vector<int64_t>{1, 3, -7}));
    EXPECT_EQ(f.get_int_array("ids"), (std::vector<int64_t>{0, 4000000000}));
    const Value* nested = f.find("nested");
    ASSERT_NE(nested, nullptr);
    ASSERT_EQ(nested->items.size(), 2u);
    EXPECT_EQ(nested->items[0].elem_type, ValueType::U16);
    EXPECT_EQ(nested->items[0].arr_u, (std::vector<uint64_t>{1, 65535}));
    EXPECT_EQ(nested->items[1].array_size(), 0u);

    ASSERT_EQ(f.tensors().size(), w.tensors().size());
    for (size_t i = 0; i < f.tensors().size(); ++i) {
        const gguf::TensorEntry& t = f.tensors()[i];
        const Writer::Tensor& src = w.tensors()[i];
        SCOPED_TRACE(src.name);
        EXPECT_EQ(t.name, src.name);
        EXPECT_EQ(t.dims, src.dims);
        EXPECT_EQ(t.type, src.type);
        EXPECT_EQ(t.offset % 32, 0u);
        ASSERT_EQ(t.bytes, src.bytes);
        EXPECT_EQ(std::memcmp(t.data, src.data(), t.bytes), 0);
    }

    // read -> write gives the same bytes.
    const std::string again = dir.file("again.gguf");
    gguf::writer_from_file(f).write(again);
    EXPECT_EQ(read_bytes(again), read_bytes(path));
}

TEST(GgufWriter, SettingAKeyAgainKeepsItsPlace) {
    Writer w;
    w.set_u32("a", 1);
    w.set_string("b", "x");
    w.set_u32("c", 3);
    w.set_string("a", "now a string");
    ASSERT_EQ(w.metadata().size(), 3u);
    EXPECT_EQ(w.metadata()[0].key, "a");
    EXPECT_EQ(w.metadata()[0].value.type, ValueType::String);
    EXPECT_EQ(w.metadata()[0].value.s, "now a string");
    EXPECT_TRUE(w.remove("b"));
    EXPECT_FALSE(w.remove("b"));
    ASSERT_EQ(w.metadata().size(), 2u);
    EXPECT_EQ(w.metadata()[1].key, "c");
    EXPECT_EQ(w.find("c")->u, 3u);
    EXPECT_EQ(w.find("b"), nullptr);
}

TEST(GgufWriter, AlignmentFromTheMetadata) {
    ScratchDir dir("gguf-writer");
    Writer w;
    w.set_string("general.name", "aligned");
    w.set_alignment(256);
    w.add_tensor("a", {3}, gguf::GGML_F32, random_bytes(12, 5));
    w.add_tensor("b", {70}, gguf::GGML_F16, random_bytes(140, 6));
    w.add_tensor("c", {1}, gguf::GGML_F32, random_bytes(4, 7));
    EXPECT_EQ(w.alignment(), 256u);
    const std::string path = dir.file("a256.gguf");
    w.write(path);
    const gguf::File f(path);
    EXPECT_EQ(f.alignment(), 256u);
    EXPECT_EQ(f.get_int("general.alignment"), 256);
    EXPECT_EQ(f.find("general.alignment")->type, ValueType::U32);
    EXPECT_EQ(f.tensors()[1].offset, 256u);
    EXPECT_EQ(f.tensors()[2].offset, 512u);
    EXPECT_EQ(f.file_size() % 256, 0u);  // the last tensor is padded too, as ggml writes
    const std::string again = dir.file("again.gguf");
    gguf::writer_from_file(f).write(again);
    EXPECT_EQ(read_bytes(again), read_bytes(path));

    EXPECT_TRUE(
        throws_error([&] { w.set_alignment(48); }, ErrorCode::InvalidArgument, {"alignment 48"}));
    w.set_u64("general.alignment", 3);
    EXPECT_TRUE(
        throws_error([&] { w.to_bytes(); }, ErrorCode::InvalidArgument, {"general.alignment"}));
}

TEST(GgufWriter, VersionTwoAndUnpaddedEndsAreReproduced) {
    ScratchDir dir("gguf-writer");
    // A v2 file whose last tensor (Q8_0, 34 bytes) is not followed by padding.
    RawGguf g;
    g.header(2, 1, 2).kv_str("general.name", "v2");
    g.tensor("a", {4}, gguf::GGML_F32, 0).tensor("b", {32}, gguf::GGML_Q8_0, 32);
    g.pad().data(16, 0x41).pad().data(34, 0x42);
    const std::string path = dir.file("v2.gguf");
    write_bytes(path, g.bytes);
    const gguf::File f(path);
    EXPECT_EQ(f.version(), 2u);
    const Writer w = gguf::writer_from_file(f);
    EXPECT_EQ(w.version(), 2u);
    EXPECT_EQ(w.to_bytes(), g.bytes);

    // Metadata only, ending right after the last key.
    RawGguf meta;
    meta.header(0, 1).kv_str("general.name", "m");
    const std::string mpath = dir.file("meta.gguf");
    write_bytes(mpath, meta.bytes);
    EXPECT_EQ(gguf::writer_from_file(gguf::File(mpath)).to_bytes(), meta.bytes);
    // ... and the same padded to the alignment, as ggml writes it.
    meta.pad();
    write_bytes(mpath, meta.bytes);
    EXPECT_EQ(gguf::writer_from_file(gguf::File(mpath)).to_bytes(), meta.bytes);
}

TEST(GgufWriter, ProgressReachesTheFileSize) {
    ScratchDir dir("gguf-writer");
    Writer w;
    w.set_string("general.name", "big");
    const std::vector<uint8_t> big = random_bytes(20u << 20, 9);  // 20 MB of F16
    w.add_tensor_ref("big", {static_cast<int64_t>(big.size() / 2)}, gguf::GGML_F16, big.data(),
                     big.size());
    w.add_tensor("small", {3}, gguf::GGML_F32, random_bytes(12, 10));
    std::vector<std::pair<uint64_t, uint64_t>> calls;
    const std::string path = dir.file("big.gguf");
    w.write(path, [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); });
    ASSERT_GE(calls.size(), 3u);
    for (size_t i = 1; i < calls.size(); ++i) EXPECT_GE(calls[i].first, calls[i - 1].first);
    EXPECT_EQ(calls.back().first, std::filesystem::file_size(path));
    EXPECT_EQ(calls.back().second, std::filesystem::file_size(path));
    const gguf::File f(path);
    EXPECT_EQ(std::memcmp(f.find_tensor("big")->data, big.data(), big.size()), 0);
}

TEST(GgufWriter, RefusesBadTensorsAndValues) {
    Writer w;
    w.add_tensor("x", {32}, gguf::GGML_Q8_0, std::vector<uint8_t>(34, 1));
    EXPECT_TRUE(
        throws_error([&] { w.add_tensor("x", {4}, gguf::GGML_F32, std::vector<uint8_t>(16)); },
                     ErrorCode::InvalidArgument, {"tensor 'x'", "twice"}));
    EXPECT_TRUE(
        throws_error([&] { w.add_tensor("short", {4}, gguf::GGML_F32, std::vector<uint8_t>(15)); },
                     ErrorCode::InvalidArgument, {"tensor 'short'", "15 bytes", "16"}));
    EXPECT_TRUE(
        throws_error([&] { w.add_tensor("tq", {100}, gguf::GGML_TQ2_0, std::vector<uint8_t>(66)); },
                     ErrorCode::InvalidArgument, {"tensor 'tq'", "TQ2_0", "[100]"}));
    EXPECT_TRUE(throws_error(
        [&] {
            w.add_tensor("five", {1, 1, 1, 1, 1}, gguf::GGML_F32, std::vector<uint8_t>(4));
        },
        ErrorCode::InvalidArgument, {"tensor 'five'"}));
    EXPECT_TRUE(throws_error([&] { w.add_tensor("q4", {32}, 2, std::vector<uint8_t>(18)); },
                             ErrorCode::InvalidArgument, {"tensor 'q4'", "Q4_0"}));
    EXPECT_TRUE(throws_error([&] { w.add_tensor_ref("null", {1}, gguf::GGML_F32, nullptr, 4); },
                             ErrorCode::InvalidArgument, {"tensor 'null'"}));
    EXPECT_TRUE(w.remove_tensor("x"));
    EXPECT_FALSE(w.remove_tensor("x"));
    EXPECT_TRUE(w.tensors().empty());

    Value too_big;
    too_big.type = ValueType::U8;
    too_big.u = 300;
    w.set("small", too_big);
    EXPECT_TRUE(throws_error([&] { w.to_bytes(); }, ErrorCode::InvalidArgument,
                             {"key 'small'", "300", "u8"}));
    Value mixed;
    mixed.type = ValueType::Array;
    mixed.elem_type = ValueType::String;
    mixed.arr_u = {1};
    w.set("small", mixed);
    EXPECT_TRUE(throws_error([&] { w.to_bytes(); }, ErrorCode::InvalidArgument,
                             {"key 'small'", "array of string"}));
    w.remove("small");
    EXPECT_TRUE(throws_error([&] { w.set_version(1); }, ErrorCode::InvalidArgument, {"1"}));
    EXPECT_NO_THROW(w.to_bytes());
}

TEST(GgufWriter, WriteFailureNamesThePath) {
    ScratchDir dir("gguf-writer");
    Writer w;
    w.set_string("general.name", "x");
    const std::string path = dir.file("no/such/dir/out.gguf");
    EXPECT_TRUE(throws_error([&] { w.write(path); }, ErrorCode::IoError, {path}));
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

// Reading each reference file and writing it back gives the file's bytes.
TEST(GgufWriter, ReferenceFilesAreReproducedByteForByte) {
    const std::vector<std::string> files = reference_gguf_files(shared_dir());
    if (files.empty()) GTEST_SKIP() << "no ../shared/reference/gguf";
    ScratchDir dir("gguf-writer");
    for (const std::string& path : files) {
        SCOPED_TRACE(path);
        const std::string out = dir.file("copy.gguf");
        {
            const gguf::File f(path);
            gguf::writer_from_file(f).write(out);
        }
        const std::vector<uint8_t> original = read_bytes(path);
        const std::vector<uint8_t> copy = read_bytes(out);
        ASSERT_EQ(copy.size(), original.size());
        EXPECT_TRUE(copy == original);
    }
}

}  // namespace
}  // namespace bitnet::test
