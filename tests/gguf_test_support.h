// Helpers for the GGUF tests: a byte-level builder for hand-made (and deliberately broken)
// GGUF images, a scratch directory, and file reading.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace bitnet::test {

// Appends GGUF fields little-endian, with no checks, so tests can write anything.
class RawGguf {
  public:
    std::vector<uint8_t> bytes;

    RawGguf& magic(const char* m = "GGUF") {
        bytes.insert(bytes.end(), m, m + 4);
        return *this;
    }
    // Magic, version and the two counts.
    RawGguf& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
        magic();
        u32(version);
        u64(n_tensors);
        return u64(n_kv);
    }
    template <typename T>
    RawGguf& put(T v) {
        uint8_t b[sizeof(T)];
        std::memcpy(b, &v, sizeof v);
        bytes.insert(bytes.end(), b, b + sizeof b);
        return *this;
    }
    RawGguf& u8(uint8_t v) { return put(v); }
    RawGguf& u32(uint32_t v) { return put(v); }
    RawGguf& u64(uint64_t v) { return put(v); }
    RawGguf& str(const std::string& s) {
        u64(s.size());
        bytes.insert(bytes.end(), s.begin(), s.end());
        return *this;
    }
    // A key with its value type; the caller appends the value.
    RawGguf& key(const std::string& k, uint32_t type) {
        str(k);
        return u32(type);
    }
    RawGguf& kv_u32(const std::string& k, uint32_t v) { return key(k, 4).u32(v); }
    RawGguf& kv_str(const std::string& k, const std::string& v) { return key(k, 8).str(v); }
    RawGguf& tensor(const std::string& name, const std::vector<uint64_t>& dims, uint32_t type,
                    uint64_t offset) {
        str(name);
        u32(static_cast<uint32_t>(dims.size()));
        for (uint64_t d : dims) u64(d);
        u32(type);
        return u64(offset);
    }
    RawGguf& pad(size_t alignment = 32) {
        while (bytes.size() % alignment != 0) bytes.push_back(0);
        return *this;
    }
    RawGguf& data(size_t n, uint8_t fill = 0x55) {
        bytes.insert(bytes.end(), n, fill);
        return *this;
    }
};

// A fresh directory under the system temp dir, removed with the object.
class ScratchDir {
  public:
    explicit ScratchDir(const std::string& tag) {
        static int counter = 0;
        path_ =
            std::filesystem::temp_directory_path() /
            ("bitnet-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
        std::filesystem::remove_all(path_);
        std::filesystem::create_directories(path_);
    }
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    std::string file(const std::string& name) const { return (path_ / name).string(); }

  private:
    std::filesystem::path path_;
};

inline std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
}

// The GGUF reference files in ../shared/reference/gguf (empty when absent).
inline std::vector<std::string> reference_gguf_files(const std::string& shared) {
    std::vector<std::string> out;
    const std::filesystem::path dir = std::filesystem::path(shared) / "reference" / "gguf";
    if (!std::filesystem::is_directory(dir)) return out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        if (e.path().extension() == ".gguf") out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace bitnet::test
