// Reading the GGUF format (v2 and v3, little-endian): header, typed metadata, tensor infos and
// the aligned data section. The reader validates everything a corrupt or hostile file could lie
// about (lengths, counts, offsets, sizes, alignment) before any tensor byte is used, and every
// error names the file and the key or tensor at fault.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"

namespace bitnet::gguf {

enum class ValueType : uint32_t {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
};
const char* value_type_name(ValueType t);

// One metadata value. Scalars keep their exact bits in the member of their kind; arrays keep
// their element type and one vector of the matching kind, so a value written back is identical.
struct Value {
    ValueType type = ValueType::U8;
    ValueType elem_type = ValueType::U8;  // arrays only
    uint64_t u = 0;                       // U8, U16, U32, U64, Bool
    int64_t i = 0;                        // I8, I16, I32, I64
    double f = 0;                         // F32 (exactly representable), F64
    std::string s;                        // String
    // Arrays: exactly one of these is filled, by element kind (arrays of arrays: `items`).
    std::vector<uint64_t> arr_u;
    std::vector<int64_t> arr_i;
    std::vector<double> arr_f;
    std::vector<std::string> arr_s;
    std::vector<Value> items;
    size_t array_size() const;
};

struct KeyValue {
    std::string key;
    Value value;
};

// ggml tensor types the engine knows. I2_S is microsoft/BitNet's (not upstream ggml). The
// BITNET_* ids are this engine's own layouts, far from ggml's numbering; their sizes are
// given by tensor_bytes().
enum TensorType : uint32_t {
    GGML_F32 = 0,
    GGML_F16 = 1,
    GGML_Q8_0 = 8,
    GGML_BF16 = 30,
    GGML_TQ1_0 = 34,
    GGML_TQ2_0 = 35,
    GGML_I2_S = 36,
    BITNET_T2 = 4096,   // kernel-order 2-bit ternary + trailing per-tensor scale
    BITNET_T5 = 4097,   // kernel-order 1.6-bit ternary (5 trits a byte) + trailing scale
    BITNET_I8R = 4098,  // int8 rows + one float32 scale per row
};
// Name of a type ("TQ2_0"), or "type <n>" when unknown.
std::string tensor_type_name(uint32_t type);
// Byte size of a tensor of `type` with GGUF dims (innermost first); nullopt when the type is
// unknown, or the dims are not valid for it (e.g. ne0 not a multiple of the block size), or
// the size overflows.
std::optional<uint64_t> tensor_bytes(uint32_t type, const std::vector<int64_t>& dims);

struct TensorEntry {
    std::string name;
    std::vector<int64_t> dims;  // innermost first, 1..4 of them
    uint32_t type = 0;
    uint64_t offset = 0;  // from the start of the data section
    uint64_t bytes = 0;   // tensor_bytes(type, dims)
    const uint8_t* data = nullptr;
    int64_t numel() const;
};

// Parses a whole GGUF image held in memory; `origin` names the file in errors.
struct Parsed {
    uint32_t version = 3;
    uint64_t alignment = 32;
    uint64_t data_offset = 0;  // file offset of the data section
    std::vector<KeyValue> metadata;
    std::vector<TensorEntry> tensors;  // file order
};
Parsed parse(const uint8_t* data, size_t size, const std::string& origin);

// A memory-mapped GGUF file with typed accessors. Accessors throw bitnet::Error (ParseError)
// naming the file and key when a key is missing or has the wrong type or range.
class File {
  public:
    explicit File(const std::string& path);

    const std::string& path() const { return mapping_->path(); }
    size_t file_size() const { return mapping_->size(); }
    uint32_t version() const { return parsed_.version; }
    uint64_t alignment() const { return parsed_.alignment; }
    const std::vector<KeyValue>& metadata() const { return parsed_.metadata; }
    const std::vector<TensorEntry>& tensors() const { return parsed_.tensors; }
    std::shared_ptr<const MappedFile> mapping() const { return mapping_; }

    const Value* find(std::string_view key) const;
    const TensorEntry* find_tensor(std::string_view name) const;

    std::string get_string(std::string_view key) const;
    std::optional<std::string> get_string_opt(std::string_view key) const;
    // Any integer type (and Bool); range-checked into int64.
    int64_t get_int(std::string_view key) const;
    std::optional<int64_t> get_int_opt(std::string_view key) const;
    // F32, F64 or any integer type.
    double get_float(std::string_view key) const;
    std::optional<double> get_float_opt(std::string_view key) const;
    std::optional<bool> get_bool_opt(std::string_view key) const;
    // Arrays; an absent key gives an empty vector, a present key of another type is an error.
    std::vector<std::string> get_string_array(std::string_view key) const;
    std::vector<double> get_float_array(std::string_view key) const;
    std::vector<int64_t> get_int_array(std::string_view key) const;

  private:
    std::shared_ptr<const MappedFile> mapping_;
    Parsed parsed_;
    std::map<std::string, size_t, std::less<>> key_index_;
    std::map<std::string, size_t, std::less<>> tensor_index_;
};

// True when the first bytes of the file at `path` are the GGUF magic.
bool is_gguf_file(const std::string& path);

}  // namespace bitnet::gguf
