// Writing GGUF files: ordered typed metadata, tensor infos and the aligned data section, laid
// out the way ggml's and gguf-py's writers lay them out (tensor data packed in order, each
// tensor padded with zeros to the alignment), so a file read with gguf::File and written back
// with writer_from_file() is byte-identical.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/format/gguf.h"

namespace bitnet::gguf {

class Writer {
  public:
    // bytes_done grows to bytes_total (the whole file); called every few MB and at the end.
    using Progress = std::function<void(uint64_t bytes_done, uint64_t bytes_total)>;

    struct Tensor {
        std::string name;
        std::vector<int64_t> dims;  // innermost first
        uint32_t type = GGML_F32;
        std::vector<uint8_t> owned;    // the bytes, when the writer owns them
        const uint8_t* ref = nullptr;  // else the caller's bytes
        uint64_t bytes = 0;            // tensor_bytes(type, dims)
        const uint8_t* data() const { return ref != nullptr ? ref : owned.data(); }
    };

    // Metadata in insertion order. Setting an existing key replaces its value in place. The
    // value is checked when the file is written (range of the kind, array element kind).
    void set(std::string_view key, Value value);
    void set_u8(std::string_view key, uint8_t v);
    void set_i8(std::string_view key, int8_t v);
    void set_u16(std::string_view key, uint16_t v);
    void set_i16(std::string_view key, int16_t v);
    void set_u32(std::string_view key, uint32_t v);
    void set_i32(std::string_view key, int32_t v);
    void set_u64(std::string_view key, uint64_t v);
    void set_i64(std::string_view key, int64_t v);
    void set_f32(std::string_view key, float v);
    void set_f64(std::string_view key, double v);
    void set_bool(std::string_view key, bool v);
    void set_string(std::string_view key, std::string v);
    void set_string_array(std::string_view key, std::vector<std::string> v);
    void set_f32_array(std::string_view key, const std::vector<float>& v);
    void set_i32_array(std::string_view key, const std::vector<int32_t>& v);
    void set_u32_array(std::string_view key, const std::vector<uint32_t>& v);
    bool remove(std::string_view key);  // false when absent
    const Value* find(std::string_view key) const;
    const std::vector<KeyValue>& metadata() const { return metadata_; }

    // Alignment of the data section and of every tensor: the `general.alignment` key when the
    // metadata has one (a nonzero power of two), else 32. set_alignment() sets that key (u32).
    void set_alignment(uint32_t alignment);
    uint64_t alignment() const;

    // GGUF version written (2 or 3, default 3; both have the same little-endian layout).
    void set_version(uint32_t version);
    uint32_t version() const { return version_; }

    // Whether the last tensor (or, with no tensors, the tensor infos) is followed by zero
    // padding to the alignment, as ggml and gguf-py write (default true).
    void set_pad_end(bool pad) { pad_end_ = pad; }

    // Tensors, written in the order added. The byte count must equal tensor_bytes(type, dims);
    // bad shapes, types, sizes and duplicate names throw bitnet::Error (InvalidArgument).
    void add_tensor(std::string name, std::vector<int64_t> dims, uint32_t type,
                    std::vector<uint8_t> bytes);
    // The caller keeps `data` alive and unchanged until the last write().
    void add_tensor_ref(std::string name, std::vector<int64_t> dims, uint32_t type,
                        const uint8_t* data, uint64_t bytes);
    bool remove_tensor(std::string_view name);  // false when absent
    const std::vector<Tensor>& tensors() const { return tensors_; }
    // Keeps `owner` (e.g. a mapping that add_tensor_ref bytes point into) alive with the writer.
    void keep_alive(std::shared_ptr<const void> owner);

    // Size of the file write() produces.
    uint64_t file_size() const;

    // Writes PATH.tmp, then renames it to `path`; throws bitnet::Error (IoError) naming the
    // path, or InvalidArgument for metadata that cannot be written.
    void write(const std::string& path, const Progress& progress = {}) const;
    // The whole file in memory (for small files: tests, fuzz seeds).
    std::vector<uint8_t> to_bytes() const;

  private:
    std::vector<uint8_t> header_bytes() const;  // up to and including the padding to the data
    void check_new_tensor(const std::string& name, const std::vector<int64_t>& dims, uint32_t type,
                          uint64_t bytes) const;

    std::vector<KeyValue> metadata_;
    std::vector<Tensor> tensors_;
    uint32_t version_ = 3;
    bool pad_end_ = true;
    std::vector<std::shared_ptr<const void>> owners_;
};

// A writer holding `file`'s version, metadata (in order, so also its alignment) and tensors (file
// order, bytes referenced in the file's mapping, which the writer keeps alive). Writing it gives
// the same bytes as the file whenever the file is laid out as ggml writes files: tensors packed in
// info order with zero padding, nothing after the last tensor's padding.
Writer writer_from_file(const File& file);

}  // namespace bitnet::gguf
