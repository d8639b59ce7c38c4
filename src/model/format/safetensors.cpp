#include "model/format/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bitnet/error.h"

namespace bitnet {

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit

struct DTypeEntry {
    const char* name;
    StDType dtype;
    size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {"F64", StDType::F64, 8},   {"F32", StDType::F32, 4}, {"F16", StDType::F16, 2},
    {"BF16", StDType::BF16, 2}, {"I64", StDType::I64, 8}, {"I32", StDType::I32, 4},
    {"I16", StDType::I16, 2},   {"I8", StDType::I8, 1},   {"U8", StDType::U8, 1},
    {"BOOL", StDType::BOOL, 1},
};

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
    throw Error(ErrorCode::ParseError, origin + ": " + what);
}

uint64_t read_u64le(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

}  // namespace

const char* st_dtype_name(StDType dtype) {
    for (const DTypeEntry& e : kDTypes) {
        if (e.dtype == dtype) return e.name;
    }
    return "?";
}

size_t st_dtype_size(StDType dtype) {
    for (const DTypeEntry& e : kDTypes) {
        if (e.dtype == dtype) return e.size;
    }
    return 0;
}

int64_t StTensor::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

StHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& origin) {
    if (size < 8)
        fail(origin,
             "file is " + std::to_string(size) + " bytes, too short for a safetensors header");
    const uint64_t header_len = read_u64le(data);
    if (header_len > kMaxHeaderBytes) {
        fail(origin, "header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
    }
    if (header_len > size - 8) {
        fail(origin, "header length " + std::to_string(header_len) + " runs past the end of the " +
                         std::to_string(size) + "-byte file (truncated?)");
    }
    json header;
    try {
        header = json::parse(data + 8, data + 8 + header_len);
    } catch (const json::exception& e) {
        fail(origin, std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) fail(origin, "header is not a JSON object");

    const uint8_t* base = data + 8 + header_len;
    const size_t data_size = size - 8 - header_len;
    StHeader out;
    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& name = it.key();
        const json& entry = it.value();
        if (name == "__metadata__") {
            if (!entry.is_object()) fail(origin, "__metadata__ is not an object");
            for (auto m = entry.begin(); m != entry.end(); ++m) {
                if (!m.value().is_string())
                    fail(origin, "__metadata__." + m.key() + " is not a string");
                out.metadata[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        const std::string where = "tensor '" + name + "'";
        if (!entry.is_object()) fail(origin, where + ": entry is not an object");
        const auto dt = entry.find("dtype");
        const auto sh = entry.find("shape");
        const auto off = entry.find("data_offsets");
        if (dt == entry.end() || !dt->is_string())
            fail(origin, where + ": missing string field 'dtype'");
        if (sh == entry.end() || !sh->is_array())
            fail(origin, where + ": missing array field 'shape'");
        if (off == entry.end() || !off->is_array() || off->size() != 2) {
            fail(origin, where + ": 'data_offsets' must be an array of two integers");
        }
        StTensor t;
        t.name = name;
        const std::string dtype_str = dt->get<std::string>();
        const DTypeEntry* dtype_entry = nullptr;
        for (const DTypeEntry& e : kDTypes) {
            if (dtype_str == e.name) dtype_entry = &e;
        }
        if (dtype_entry == nullptr) {
            throw Error(ErrorCode::UnsupportedFormat,
                        origin + ": " + where + ": unsupported dtype '" + dtype_str + "'");
        }
        t.dtype = dtype_entry->dtype;
        if (sh->size() > 8) fail(origin, where + ": " + std::to_string(sh->size()) + " dimensions");
        uint64_t numel = 1;
        for (const json& d : *sh) {
            if (!d.is_number_unsigned())
                fail(origin, where + ": shape entries must be non-negative integers");
            const uint64_t v = d.get<uint64_t>();
            if (v > (1ull << 40) || (v != 0 && numel > (1ull << 50) / v))
                fail(origin, where + ": shape is too large");
            numel *= v;
            t.shape.push_back(static_cast<int64_t>(v));
        }
        if (!(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned()) {
            fail(origin, where + ": 'data_offsets' must be non-negative integers");
        }
        const uint64_t begin = (*off)[0].get<uint64_t>();
        const uint64_t end = (*off)[1].get<uint64_t>();
        if (begin > end || end > data_size) {
            fail(origin, where + ": data_offsets [" + std::to_string(begin) + ", " +
                             std::to_string(end) + ") lie outside the " +
                             std::to_string(data_size) + "-byte data section");
        }
        const uint64_t expected = numel * dtype_entry->size;
        if (end - begin != expected) {
            fail(origin, where + ": holds " + std::to_string(end - begin) + " bytes but dtype " +
                             dtype_str + " and shape need " + std::to_string(expected));
        }
        t.data = base + begin;
        t.nbytes = static_cast<size_t>(expected);
        out.tensors.push_back(std::move(t));
    }
    std::sort(out.tensors.begin(), out.tensors.end(),
              [](const StTensor& a, const StTensor& b) { return a.data < b.data; });
    for (size_t i = 1; i < out.tensors.size(); ++i) {
        const StTensor& prev = out.tensors[i - 1];
        if (prev.data + prev.nbytes > out.tensors[i].data) {
            fail(origin, "tensors '" + prev.name + "' and '" + out.tensors[i].name + "' overlap");
        }
    }
    return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(std::make_unique<MappedFile>(path)) {
    header_ = parse_safetensors(file_->data(), file_->size(), path);
    for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

const StTensor* SafetensorsFile::find(const std::string& name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

void write_safetensors(const std::string& path, const std::vector<StWriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    json header = json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    std::vector<uint64_t> sizes;
    for (const StWriteTensor& t : tensors) {
        uint64_t numel = 1;
        for (int64_t d : t.shape) numel *= static_cast<uint64_t>(d);
        const uint64_t bytes = numel * st_dtype_size(t.dtype);
        header[t.name] = {{"dtype", st_dtype_name(t.dtype)},
                          {"shape", t.shape},
                          {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
        sizes.push_back(bytes);
    }
    std::string text = header.dump();
    while ((8 + text.size()) % 8 != 0) text.push_back(' ');  // keeps the data 8-byte aligned
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(ErrorCode::IoError, path + ": cannot open for writing");
    uint8_t len[8];
    for (int i = 0; i < 8; ++i)
        len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (size_t i = 0; i < tensors.size(); ++i) {
        out.write(static_cast<const char*>(tensors[i].data),
                  static_cast<std::streamsize>(sizes[i]));
    }
    if (!out) throw Error(ErrorCode::IoError, path + ": write failed");
}

}  // namespace bitnet
