// libFuzzer target for the GGUF reader, writer and tensor codecs.
//
// The input is a GGUF image. When the reader accepts it, every metadata value is walked, every
// tensor is decoded with the codec of its type (ternary types to values + alpha, and encoded
// back: decoding that again must give the same values), and the file is written again with the
// writer and parsed once more, which must give the same metadata and tensors. bitnet::Error is
// the only acceptable failure of the reader and decoders; anything else, a broken round trip,
// a crash or a sanitizer report is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bitnet/error.h"
#include "model/format/ggml_ternary.h"
#include "model/format/gguf.h"
#include "model/format/gguf_writer.h"

namespace {

using namespace bitnet::gguf;

[[noreturn]] void finding(const std::string& what) {
    std::fprintf(stderr, "finding: %s\n", what.c_str());
    std::abort();
}

// Touches every element so that a value the reader built wrongly shows up under the sanitizers.
size_t walk(const Value& v) {
    size_t n = v.s.size() + static_cast<size_t>(v.u & 1) + static_cast<size_t>(v.i & 1) +
               (v.f != v.f ? 1 : 0);
    for (const std::string& s : v.arr_s) n += s.size();
    for (uint64_t x : v.arr_u) n += static_cast<size_t>(x & 1);
    for (int64_t x : v.arr_i) n += static_cast<size_t>(x & 1);
    for (double x : v.arr_f) n += x != x ? 1 : 0;
    for (const Value& item : v.items) n += walk(item);
    if (v.type == ValueType::Array && v.array_size() == 0 && n != 0) finding("array_size");
    return n;
}

void decode_tensor(const TensorEntry& t) {
    const MatrixShape m = matrix_shape(t.dims);
    if (is_ternary_decodable(t.type)) {
        try {
            const TernaryWeights w = decode_ternary(t, "fuzz.gguf");
            if (!is_ternary_encodable(t.type)) return;
            const std::vector<uint8_t> bytes =
                encode_ternary(t.type, w.values.data(), w.rows, w.cols, w.alpha, t.name);
            if (bytes.size() != t.bytes) finding("re-encoded size of " + t.name);
            std::vector<int8_t> again(w.values.size());
            const float alpha =
                decode_ternary(t.type, t.dims, bytes.data(), bytes.size(), again.data(), t.name);
            if (again != w.values || alpha != w.alpha) finding("ternary round trip of " + t.name);
        } catch (const bitnet::Error& e) {
            if (e.code() == bitnet::ErrorCode::InvalidArgument) {
                finding(std::string("encoder refused decoded values: ") + e.what());
            }
        }
        return;
    }
    std::vector<float> row(static_cast<size_t>(m.cols));
    if (t.type == GGML_Q8_0) {
        for (int64_t r = 0; r < m.rows; ++r) {
            decode_row_f32(t.type, t.data + r * (m.cols / 32) * 34, m.cols, row.data());
        }
    } else if (t.type == BITNET_I8R) {
        for (int64_t r = 0; r < m.rows; ++r) decode_i8r_row(t.data, m.rows, m.cols, r, row.data());
    }
}

// Writes the parsed file again and checks that it parses to the same content.
void rewrite(const Parsed& p, const uint8_t* data, size_t size) {
    Writer w;
    w.set_version(p.version);
    for (const KeyValue& kv : p.metadata) w.set(kv.key, kv.value);
    for (const TensorEntry& t : p.tensors) {
        w.add_tensor_ref(t.name, t.dims, t.type, t.data, t.bytes);
    }
    if (p.tensors.empty()) {
        w.set_pad_end(false);  // as writer_from_file does for a file that ends unpadded
    } else {
        const TensorEntry& last = p.tensors.back();
        if (static_cast<size_t>(last.data - data) + last.bytes == size) w.set_pad_end(false);
    }
    const std::vector<uint8_t> bytes = w.to_bytes();
    if (bytes.size() != w.file_size()) finding("file_size disagrees with to_bytes");
    const Parsed q = parse(bytes.data(), bytes.size(), "rewritten.gguf");
    if (q.version != p.version || q.alignment != p.alignment ||
        q.metadata.size() != p.metadata.size() || q.tensors.size() != p.tensors.size()) {
        finding("rewritten file differs");
    }
    for (size_t i = 0; i < p.metadata.size(); ++i) {
        const Value& a = p.metadata[i].value;
        const Value& b = q.metadata[i].value;
        if (p.metadata[i].key != q.metadata[i].key || a.type != b.type || a.u != b.u ||
            a.i != b.i || a.s != b.s || a.array_size() != b.array_size() || a.arr_s != b.arr_s ||
            a.arr_u != b.arr_u || a.arr_i != b.arr_i) {
            finding("rewritten key " + p.metadata[i].key + " differs");
        }
    }
    for (size_t i = 0; i < p.tensors.size(); ++i) {
        const TensorEntry& a = p.tensors[i];
        const TensorEntry& b = q.tensors[i];
        if (a.name != b.name || a.dims != b.dims || a.type != b.type || a.bytes != b.bytes ||
            std::memcmp(a.data, b.data, a.bytes) != 0) {
            finding("rewritten tensor " + a.name + " differs");
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // A copy of exactly `size` bytes, so a read past the end is an ASan report.
    const std::vector<uint8_t> image(data, data + size);
    Parsed parsed;
    try {
        parsed = parse(image.data(), image.size(), "fuzz.gguf");
    } catch (const bitnet::Error& e) {
        if (std::getenv("BITNET_FUZZ_VERBOSE")) std::fprintf(stderr, "error: %s\n", e.what());
        return 0;
    }
    size_t sink = 0;
    for (const KeyValue& kv : parsed.metadata) sink += kv.key.size() + walk(kv.value);
    for (const TensorEntry& t : parsed.tensors) decode_tensor(t);
    rewrite(parsed, image.data(), image.size());
    if (std::getenv("BITNET_FUZZ_VERBOSE")) {
        std::fprintf(stderr, "parsed: %zu keys, %zu tensors (%zu)\n", parsed.metadata.size(),
                     parsed.tensors.size(), sink);
    }
    return 0;
}
