// The safetensors reader against synthetic images built in memory: a valid round trip through
// write_safetensors, and every way a corrupt or hostile header can lie, each of which must be a
// bitnet::Error naming the file and the tensor at fault. Also a real checkpoint cut short.
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "bitnet/error.h"
#include "model/format/safetensors.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

namespace fs = std::filesystem;

const char* const kOrigin = "synthetic.safetensors";

// A temporary directory removed at the end of the test.
class TempDir {
  public:
    TempDir() {
        static int counter = 0;
        const auto* info = testing::UnitTest::GetInstance()->current_test_info();
        path_ = fs::temp_directory_path() /
                ("bitnet-st-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
                 (info ? info->name() : "x"));
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    std::string file(const std::string& name) const { return (path_ / name).string(); }

  private:
    fs::path path_;
};

// An image: 8-byte little-endian header length, the header text as given, then `data`.
std::vector<uint8_t> image(const std::string& header, const std::vector<uint8_t>& data = {},
                           uint64_t declared_len = UINT64_MAX) {
    const uint64_t len = declared_len == UINT64_MAX ? header.size() : declared_len;
    std::vector<uint8_t> out(8 + header.size() + data.size());
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(len >> (8 * i));
    std::copy(header.begin(), header.end(), out.begin() + 8);
    std::copy(data.begin(), data.end(), out.begin() + 8 + static_cast<ptrdiff_t>(header.size()));
    return out;
}

// One header entry: "name": {"dtype": ..., "shape": ..., "data_offsets": ...}, fields verbatim.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
    return "\"" + name + "\": {\"dtype\": " + dtype + ", \"shape\": " + shape +
           ", \"data_offsets\": " + offsets + "}";
}

StHeader parse(const std::vector<uint8_t>& bytes) {
    // A copy of exactly this size, so a read past the end is caught under AddressSanitizer.
    std::vector<uint8_t> exact(bytes);
    return parse_safetensors(exact.empty() ? nullptr : exact.data(), exact.size(), kOrigin);
}

testing::AssertionResult parse_fails(const std::string& header, const std::vector<uint8_t>& data,
                                     ErrorCode code, std::initializer_list<std::string> needles) {
    return throws_error([&] { parse(image(header, data)); }, code, needles);
}

std::vector<uint8_t> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const uint8_t* data, size_t n) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n));
    ASSERT_TRUE(out.good()) << path;
}

TEST(SafetensorsTest, RoundTripIsBitExact) {
    TempDir dir;
    std::vector<float> f32 = {1.5f, -2.f, 0.f, 3.25e-8f, -0.f, 1e30f};
    std::vector<uint16_t> bf16 = {0x3f80, 0x7fc0, 0x0001, 0xff80};
    std::vector<uint8_t> u8 = {0, 1, 2, 253, 254, 255};
    int64_t i64 = -1234567890123LL;
    std::vector<int64_t> shapes_f32 = {2, 3};
    const std::vector<StWriteTensor> tensors = {
        {"a.f32", StDType::F32, shapes_f32, f32.data()},
        {"b.bf16", StDType::BF16, {4}, bf16.data()},
        {"c.u8", StDType::U8, {3, 1, 2}, u8.data()},
        {"d.scalar", StDType::I64, {}, &i64},
        {"e.empty", StDType::F16, {0, 5}, nullptr},
    };
    const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "a \"b\" c"}};
    const std::string path = dir.file("rt.safetensors");
    write_safetensors(path, tensors, metadata);

    SafetensorsFile file(path);
    EXPECT_EQ(file.path(), path);
    EXPECT_EQ(file.header().metadata, metadata);
    ASSERT_EQ(file.header().tensors.size(), tensors.size());
    const std::vector<uint8_t> bytes = read_file(path);
    EXPECT_EQ(file.file_size(), bytes.size());
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
    EXPECT_EQ((8 + header_len) % 8, 0u) << "data section should start 8-byte aligned";

    const size_t sizes[] = {24, 8, 6, 8, 0};
    const StDType dtypes[] = {StDType::F32, StDType::BF16, StDType::U8, StDType::I64, StDType::F16};
    for (size_t i = 0; i < tensors.size(); ++i) {
        SCOPED_TRACE(tensors[i].name);
        const StTensor* t = file.find(tensors[i].name);
        ASSERT_NE(t, nullptr);
        EXPECT_EQ(t->name, tensors[i].name);
        EXPECT_EQ(t->dtype, dtypes[i]);
        EXPECT_EQ(t->shape, tensors[i].shape);
        EXPECT_EQ(t->nbytes, sizes[i]);
        if (sizes[i] > 0) {
            EXPECT_EQ(std::memcmp(t->data, tensors[i].data, sizes[i]), 0);
        }
        // The pointer lies inside the mapping, in the data section.
        const uint8_t* base = file.header().tensors.front().data;
        EXPECT_GE(t->data, base);
    }
    EXPECT_EQ(file.find("a.f32")->numel(), 6);
    EXPECT_EQ(file.find("d.scalar")->numel(), 1);
    EXPECT_EQ(file.find("e.empty")->numel(), 0);
    EXPECT_EQ(file.find("missing"), nullptr);
    EXPECT_STREQ(st_dtype_name(StDType::BF16), "BF16");
    EXPECT_EQ(st_dtype_size(StDType::F64), 8u);
}

TEST(SafetensorsTest, ParsesInMemoryImageWithOffsetsAndEmptyHeader) {
    std::vector<uint8_t> data(12);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i);
    const std::string header = "{" + entry("y", "\"U8\"", "[4]", "[8, 12]") + ", " +
                               entry("x", "\"F32\"", "[2]", "[0, 8]") + "}";
    const std::vector<uint8_t> bytes = image(header, data);
    const StHeader h = parse_safetensors(bytes.data(), bytes.size(), kOrigin);
    ASSERT_EQ(h.tensors.size(), 2u);
    EXPECT_EQ(h.tensors[0].name, "x");  // in order of data offsets
    EXPECT_EQ(h.tensors[0].data, bytes.data() + 8 + header.size());
    EXPECT_EQ(h.tensors[1].data, bytes.data() + 8 + header.size() + 8);
    EXPECT_EQ(h.tensors[1].data[0], 8);
    EXPECT_TRUE(parse(image("{}")).tensors.empty());
    EXPECT_TRUE(parse(image("  {\"__metadata__\": {}}  ")).metadata.empty());
}

TEST(SafetensorsTest, FileShorterThanEightBytes) {
    for (size_t n : {0, 1, 7}) {
        const std::vector<uint8_t> bytes(n, 0);
        EXPECT_TRUE(throws_error([&] { parse(bytes); }, ErrorCode::ParseError, {kOrigin, "short"}))
            << n << " bytes";
    }
}

TEST(SafetensorsTest, HeaderLengthPastTheEnd) {
    EXPECT_TRUE(throws_error([] { parse(image("{}", {}, 3)); }, ErrorCode::ParseError,
                             {kOrigin, "truncated"}));
    EXPECT_TRUE(throws_error([] { parse(image("{}", {}, 1000)); }, ErrorCode::ParseError,
                             {kOrigin, "1000"}));
    // A length that wraps around when 8 is added must not slip past the check.
    EXPECT_TRUE(throws_error([] { parse(image("{}", {}, UINT64_MAX - 3)); }, ErrorCode::ParseError,
                             {kOrigin}));
}

TEST(SafetensorsTest, HeaderLengthOver100MB) {
    const uint64_t len = (100ull << 20) + 1;
    EXPECT_TRUE(throws_error([&] { parse(image("{}", {}, len)); }, ErrorCode::ParseError,
                             {kOrigin, "100 MB"}));
}

TEST(SafetensorsTest, HeaderNotJson) {
    EXPECT_TRUE(parse_fails("{\"a\": ", {}, ErrorCode::ParseError, {kOrigin, "JSON"}));
    EXPECT_TRUE(parse_fails("\xff\xfe garbage", {}, ErrorCode::ParseError, {kOrigin, "JSON"}));
    EXPECT_TRUE(parse_fails("", {}, ErrorCode::ParseError, {kOrigin}));
}

TEST(SafetensorsTest, HeaderNotAnObject) {
    for (const char* h : {"[1, 2]", "42", "\"text\"", "null"}) {
        EXPECT_TRUE(parse_fails(h, {}, ErrorCode::ParseError, {kOrigin, "object"})) << h;
    }
    EXPECT_TRUE(parse_fails("{\"w\": [1]}", {}, ErrorCode::ParseError, {kOrigin, "'w'"}));
}

TEST(SafetensorsTest, EntryMissingAField) {
    const std::vector<uint8_t> data(4);
    EXPECT_TRUE(parse_fails("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'", "dtype"}));
    EXPECT_TRUE(parse_fails("{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'", "shape"}));
    EXPECT_TRUE(parse_fails("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'", "data_offsets"}));
    // Present but of the wrong JSON type.
    EXPECT_TRUE(parse_fails("{" + entry("w", "7", "[1]", "[0, 4]") + "}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'", "dtype"}));
    EXPECT_TRUE(parse_fails("{" + entry("w", "\"F32\"", "1", "[0, 4]") + "}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'", "shape"}));
    EXPECT_TRUE(parse_fails("{" + entry("w", "\"F32\"", "[1]", "[0, 4, 8]") + "}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'", "data_offsets"}));
    EXPECT_TRUE(parse_fails("{" + entry("w", "\"F32\"", "[1]", "[\"0\", 4]") + "}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'", "data_offsets"}));
}

TEST(SafetensorsTest, DataOffsetsOutsideTheData) {
    const std::vector<uint8_t> data(8);
    // Reversed.
    EXPECT_TRUE(parse_fails("{" + entry("w", "\"F32\"", "[1]", "[8, 4]") + "}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'", "[8, 4)"}));
    // Past the end of the data section.
    EXPECT_TRUE(parse_fails("{" + entry("w", "\"F32\"", "[4]", "[0, 16]") + "}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'", "8-byte"}));
    EXPECT_TRUE(parse_fails("{" + entry("w", "\"U8\"", "[0]", "[9, 9]") + "}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'"}));
    // Negative, and huge enough to wrap a pointer.
    EXPECT_TRUE(parse_fails("{" + entry("w", "\"F32\"", "[1]", "[-4, 0]") + "}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'"}));
    EXPECT_TRUE(parse_fails("{" + entry("w", "\"U8\"", "[4]", "[18446744073709551612, 0]") + "}",
                            data, ErrorCode::ParseError, {kOrigin, "'w'"}));
}

TEST(SafetensorsTest, ByteCountMustMatchDtypeAndShape) {
    const std::vector<uint8_t> data(16);
    EXPECT_TRUE(parse_fails("{" + entry("w", "\"F32\"", "[2]", "[0, 4]") + "}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'", "4 bytes", "8"}));
    EXPECT_TRUE(parse_fails("{" + entry("w", "\"BF16\"", "[2, 2]", "[0, 16]") + "}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'", "16 bytes", "8"}));
    EXPECT_TRUE(parse_fails("{" + entry("w", "\"I64\"", "[]", "[0, 0]") + "}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'"}));
}

TEST(SafetensorsTest, UnknownDtype) {
    const std::vector<uint8_t> data(4);
    for (const char* dt : {"F8_E9", "f32", "", "INT4", "F8_E4M3"}) {
        EXPECT_TRUE(parse_fails(
            "{" + entry("w.q", "\"" + std::string(dt) + "\"", "[4]", "[0, 4]") + "}", data,
            ErrorCode::UnsupportedFormat, {kOrigin, "'w.q'", "'" + std::string(dt) + "'"}))
            << dt;
    }
}

TEST(SafetensorsTest, ShapeEntriesMustBeNonNegativeIntegers) {
    const std::vector<uint8_t> data(8);
    for (const char* shape :
         {"[-1, 2]", "[2.0]", "[1.5]", "[\"2\"]", "[null]", "[[2]]", "[true]"}) {
        EXPECT_TRUE(parse_fails("{" + entry("w", "\"U8\"", shape, "[0, 2]") + "}", data,
                                ErrorCode::ParseError, {kOrigin, "'w'", "shape"}))
            << shape;
    }
    // Nine dimensions of size 1.
    EXPECT_TRUE(parse_fails("{" + entry("w", "\"U8\"", "[1,1,1,1,1,1,1,1,1]", "[0, 1]") + "}", data,
                            ErrorCode::ParseError, {kOrigin, "'w'"}));
}

TEST(SafetensorsTest, ShapeWhoseProductOverflows) {
    const std::vector<uint8_t> data(16);
    // 2^32 * 2^32 * 4 bytes wraps to 0 in 64-bit arithmetic; with offsets [0, 0] a careless
    // parser would accept a tensor of 2^64 elements in zero bytes.
    const std::string cases[] = {"[4294967296, 4294967296]", "[4294967296, 4294967296, 16]",
                                 "[18446744073709551615]", "[65536, 65536, 65536, 65536]"};
    for (const std::string& shape : cases) {
        EXPECT_TRUE(parse_fails("{" + entry("w", "\"F32\"", shape, "[0, 0]") + "}", data,
                                ErrorCode::ParseError, {kOrigin, "'w'"}))
            << shape;
    }
    // A zero dimension makes even a huge shape empty, which is valid.
    const StHeader h =
        parse(image("{" + entry("w", "\"F32\"", "[0, 1099511627776]", "[0, 0]") + "}"));
    ASSERT_EQ(h.tensors.size(), 1u);
    EXPECT_EQ(h.tensors[0].nbytes, 0u);
}

TEST(SafetensorsTest, OverlappingTensors) {
    const std::vector<uint8_t> data(16);
    EXPECT_TRUE(parse_fails("{" + entry("a", "\"F32\"", "[2]", "[0, 8]") + ", " +
                                entry("b", "\"F32\"", "[2]", "[4, 12]") + "}",
                            data, ErrorCode::ParseError, {kOrigin, "'a'", "'b'", "overlap"}));
    EXPECT_TRUE(parse_fails("{" + entry("a", "\"U8\"", "[8]", "[0, 8]") + ", " +
                                entry("b", "\"U8\"", "[8]", "[0, 8]") + "}",
                            data, ErrorCode::ParseError, {kOrigin, "overlap"}));
    EXPECT_TRUE(parse_fails("{" + entry("a", "\"U8\"", "[16]", "[0, 16]") + ", " +
                                entry("b", "\"U8\"", "[2]", "[6, 8]") + "}",
                            data, ErrorCode::ParseError, {kOrigin, "overlap"}));
    // Adjacent is fine.
    EXPECT_EQ(parse(image("{" + entry("a", "\"U8\"", "[8]", "[0, 8]") + ", " +
                              entry("b", "\"U8\"", "[8]", "[8, 16]") + "}",
                          data))
                  .tensors.size(),
              2u);
}

TEST(SafetensorsTest, MetadataMustMapStringsToStrings) {
    EXPECT_TRUE(parse_fails("{\"__metadata__\": {\"format\": \"pt\", \"n\": 1}}", {},
                            ErrorCode::ParseError, {kOrigin, "__metadata__.n"}));
    EXPECT_TRUE(parse_fails("{\"__metadata__\": {\"x\": {\"y\": \"z\"}}}", {},
                            ErrorCode::ParseError, {kOrigin, "__metadata__"}));
    EXPECT_TRUE(parse_fails("{\"__metadata__\": [\"pt\"]}", {}, ErrorCode::ParseError,
                            {kOrigin, "__metadata__"}));
}

TEST(SafetensorsTest, MissingOrUnreadableFileNamesThePath) {
    TempDir dir;
    const std::string missing = dir.file("nope.safetensors");
    EXPECT_TRUE(throws_error([&] { SafetensorsFile f(missing); }, ErrorCode::NotFound, {missing}));
    const std::string sub = dir.file("sub.safetensors");
    fs::create_directories(sub);
    EXPECT_TRUE(throws_error([&] { SafetensorsFile f(sub); }, ErrorCode::IoError, {sub}));
}

TEST(SafetensorsTest, TruncatedRealFileThrowsNeverCrashes) {
    const std::vector<uint8_t> full = read_file(model_dir("tiny-packed") + "/model.safetensors");
    ASSERT_GT(full.size(), 1000u);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | full[i];
    ASSERT_LT(8 + header_len, full.size());
    ASSERT_NO_THROW(parse(full));

    const size_t h_end = static_cast<size_t>(8 + header_len);
    const size_t cuts[] = {0,
                           3,
                           8,
                           9,
                           h_end / 2,
                           h_end - 1,
                           h_end,
                           h_end + 1,
                           h_end + 4096,
                           full.size() / 2,
                           full.size() - 2,
                           full.size() - 1};
    TempDir dir;
    for (size_t cut : cuts) {
        SCOPED_TRACE("cut at " + std::to_string(cut));
        const std::vector<uint8_t> part(full.begin(), full.begin() + static_cast<ptrdiff_t>(cut));
        EXPECT_TRUE(throws_error([&] { parse(part); }, ErrorCode::ParseError, {kOrigin}));
        const std::string path = dir.file("cut" + std::to_string(cut) + ".safetensors");
        write_file(path, part.data(), part.size());
        EXPECT_TRUE(throws_error([&] { SafetensorsFile f(path); }, ErrorCode::ParseError, {path}));
    }
}

TEST(SafetensorsTest, CorruptedLengthOfRealFileThrows) {
    std::vector<uint8_t> full = read_file(model_dir("tiny-packed") + "/model.safetensors");
    ASSERT_GT(full.size(), 16u);
    // Header length pointing into the middle of the header: the JSON is cut short.
    std::vector<uint8_t> bad = full;
    bad[0] = 40;
    for (int i = 1; i < 8; ++i) bad[i] = 0;
    EXPECT_TRUE(throws_error([&] { parse(bad); }, ErrorCode::ParseError, {kOrigin, "JSON"}));
    // Header length covering the whole file: the JSON runs into binary data.
    bad = full;
    const uint64_t len = full.size() - 8;
    for (int i = 0; i < 8; ++i) bad[i] = static_cast<uint8_t>(len >> (8 * i));
    EXPECT_TRUE(throws_error([&] { parse(bad); }, ErrorCode::ParseError, {kOrigin}));
}

}  // namespace
}  // namespace bitnet::test
