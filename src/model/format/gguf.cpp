#include "model/format/gguf.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <unordered_set>

#include "bitnet/error.h"

namespace bitnet::gguf {

namespace {

constexpr uint8_t kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint64_t kDefaultAlignment = 32;
// The largest a u32 key holds (ggml reads the key as u32).
constexpr uint64_t kMaxAlignment = uint64_t{1} << 31;
// Arrays of arrays are legal GGUF, but every level costs a stack frame here and in ~Value.
constexpr int kMaxArrayDepth = 8;
constexpr uint32_t kMaxDims = 4;

bool is_known_value_type(uint32_t t) {
    return t <= static_cast<uint32_t>(ValueType::F64);
}

// Bytes a value of type `t` takes at least in the file, so a count read from the file can be
// checked against the bytes left before anything is allocated for it.
uint64_t min_encoded_size(ValueType t) {
    switch (t) {
        case ValueType::U8:
        case ValueType::I8:
        case ValueType::Bool:
            return 1;
        case ValueType::U16:
        case ValueType::I16:
            return 2;
        case ValueType::U32:
        case ValueType::I32:
        case ValueType::F32:
            return 4;
        case ValueType::U64:
        case ValueType::I64:
        case ValueType::F64:
        case ValueType::String:  // the u64 length
            return 8;
        case ValueType::Array:  // u32 element type + u64 count
            return 12;
    }
    return 1;
}

bool is_unsigned_kind(ValueType t) {
    return t == ValueType::U8 || t == ValueType::U16 || t == ValueType::U32 ||
           t == ValueType::U64 || t == ValueType::Bool;
}
bool is_signed_kind(ValueType t) {
    return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}
bool is_float_kind(ValueType t) {
    return t == ValueType::F32 || t == ValueType::F64;
}

// Reads little-endian fields from an in-memory image; every read is bounds-checked and a
// failure names the file and what was being read.
class Cursor {
  public:
    Cursor(const uint8_t* data, size_t size, const std::string& origin)
        : data_(data), size_(size), origin_(origin) {}

    size_t pos() const { return pos_; }
    size_t remaining() const { return size_ - pos_; }
    void set_context(std::string context) { context_ = std::move(context); }

    [[noreturn]] void fail(const std::string& what, ErrorCode code = ErrorCode::ParseError) const {
        std::string msg = origin_ + ": ";
        if (!context_.empty()) msg += context_ + ": ";
        throw Error(code, msg + what);
    }

    const uint8_t* take(uint64_t n, const char* what) {
        if (n > remaining()) {
            fail("file truncated: " + std::string(what) + " needs " + std::to_string(n) +
                 " bytes at offset " + std::to_string(pos_) + ", only " +
                 std::to_string(remaining()) + " left");
        }
        const uint8_t* p = data_ + pos_;
        pos_ += static_cast<size_t>(n);
        return p;
    }

    template <typename T>
    T read(const char* what) {
        const uint8_t* p = take(sizeof(T), what);
        T v;
        std::memcpy(&v, p, sizeof v);  // the engine only runs on little-endian hosts
        return v;
    }

    std::string read_string(const char* what) {
        const uint64_t len = read<uint64_t>(what);
        if (len > remaining()) {
            fail(std::string(what) + ": string length " + std::to_string(len) +
                 " runs past the end of the file (" + std::to_string(remaining()) + " bytes left)");
        }
        const uint8_t* p = take(len, what);
        return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
    }

    // A count of elements of at least `min_size` bytes each, checked against the bytes left.
    uint64_t read_count(const char* what, uint64_t min_size) {
        const uint64_t n = read<uint64_t>(what);
        if (n > remaining() / min_size) {
            fail(std::string(what) + " " + std::to_string(n) + " cannot fit in the " +
                 std::to_string(remaining()) + " bytes left in the file");
        }
        return n;
    }

  private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
    const std::string& origin_;
    std::string context_;
};

ValueType read_value_type(Cursor& in, const char* what) {
    const uint32_t t = in.read<uint32_t>(what);
    if (!is_known_value_type(t)) in.fail("unknown value type " + std::to_string(t));
    return static_cast<ValueType>(t);
}

uint64_t read_unsigned(Cursor& in, ValueType t) {
    switch (t) {
        case ValueType::U8:
            return in.read<uint8_t>("u8 value");
        case ValueType::U16:
            return in.read<uint16_t>("u16 value");
        case ValueType::U32:
            return in.read<uint32_t>("u32 value");
        case ValueType::U64:
            return in.read<uint64_t>("u64 value");
        case ValueType::Bool: {
            const uint8_t b = in.read<uint8_t>("bool value");
            if (b > 1) in.fail("bool value " + std::to_string(b) + " is neither 0 nor 1");
            return b;
        }
        default:
            in.fail("internal: not an unsigned type", ErrorCode::Internal);
    }
}

int64_t read_signed(Cursor& in, ValueType t) {
    switch (t) {
        case ValueType::I8:
            return in.read<int8_t>("i8 value");
        case ValueType::I16:
            return in.read<int16_t>("i16 value");
        case ValueType::I32:
            return in.read<int32_t>("i32 value");
        case ValueType::I64:
            return in.read<int64_t>("i64 value");
        default:
            in.fail("internal: not a signed type", ErrorCode::Internal);
    }
}

double read_float(Cursor& in, ValueType t) {
    if (t == ValueType::F32) return in.read<float>("f32 value");
    return in.read<double>("f64 value");
}

Value read_value(Cursor& in, ValueType type, int depth);

void read_array(Cursor& in, Value& v, int depth) {
    if (depth >= kMaxArrayDepth) {
        in.fail("arrays nested deeper than " + std::to_string(kMaxArrayDepth) + " levels");
    }
    v.elem_type = read_value_type(in, "array element type");
    const uint64_t n = in.read_count("array length", min_encoded_size(v.elem_type));
    const size_t count = static_cast<size_t>(n);
    const ValueType et = v.elem_type;
    if (is_unsigned_kind(et)) {
        v.arr_u.reserve(count);
        for (size_t i = 0; i < count; ++i) v.arr_u.push_back(read_unsigned(in, et));
    } else if (is_signed_kind(et)) {
        v.arr_i.reserve(count);
        for (size_t i = 0; i < count; ++i) v.arr_i.push_back(read_signed(in, et));
    } else if (is_float_kind(et)) {
        v.arr_f.reserve(count);
        for (size_t i = 0; i < count; ++i) v.arr_f.push_back(read_float(in, et));
    } else if (et == ValueType::String) {
        v.arr_s.reserve(count);
        for (size_t i = 0; i < count; ++i) v.arr_s.push_back(in.read_string("array string"));
    } else {
        v.items.reserve(count);
        for (size_t i = 0; i < count; ++i) v.items.push_back(read_value(in, et, depth + 1));
    }
}

Value read_value(Cursor& in, ValueType type, int depth) {
    Value v;
    v.type = type;
    if (is_unsigned_kind(type)) {
        v.u = read_unsigned(in, type);
    } else if (is_signed_kind(type)) {
        v.i = read_signed(in, type);
    } else if (is_float_kind(type)) {
        v.f = read_float(in, type);
    } else if (type == ValueType::String) {
        v.s = in.read_string("string value");
    } else {
        read_array(in, v, depth);
    }
    return v;
}

// The product of the dims, or nullopt when it overflows int64.
std::optional<uint64_t> element_count(const std::vector<int64_t>& dims) {
    uint64_t n = 1;
    for (int64_t d : dims) {
        if (d <= 0) return std::nullopt;
        if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
    }
    if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return n;
}

struct TypeInfo {
    uint32_t id;
    const char* name;
    int64_t block;  // elements per block along ne0 (ggml types only)
    int64_t block_bytes;
};
constexpr TypeInfo kSupportedTypes[] = {
    {GGML_F32, "F32", 1, 4},        {GGML_F16, "F16", 1, 2},
    {GGML_Q8_0, "Q8_0", 32, 34},    {GGML_BF16, "BF16", 1, 2},
    {GGML_TQ1_0, "TQ1_0", 256, 54}, {GGML_TQ2_0, "TQ2_0", 256, 66},
    {GGML_I2_S, "I2_S", 128, 32},   {BITNET_T2, "BITNET_T2", 0, 0},
    {BITNET_T5, "BITNET_T5", 0, 0}, {BITNET_I8R, "BITNET_I8R", 0, 0},
};

const TypeInfo* supported_type(uint32_t type) {
    for (const TypeInfo& t : kSupportedTypes) {
        if (t.id == type) return &t;
    }
    return nullptr;
}

// Names of the other ggml types, only so that an unsupported file says what it holds.
const char* other_ggml_type_name(uint32_t type) {
    static const char* const kNames[] = {
        nullptr,   nullptr,  "Q4_0",    "Q4_1",  nullptr,  nullptr, "Q5_0",  "Q5_1",
        nullptr,   "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
        "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
        "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M",
    };
    if (type < sizeof kNames / sizeof kNames[0]) return kNames[type];
    return nullptr;
}

// "Q6_K (14)" for a ggml type the engine does not read, the bare id for an unknown one.
std::string type_for_message(uint32_t type) {
    if (other_ggml_type_name(type) != nullptr) {
        return tensor_type_name(type) + " (" + std::to_string(type) + ")";
    }
    return std::to_string(type);
}

// A name from the file, quoted for an error message: control bytes are escaped (a hostile file
// must not drive the terminal) and very long names are cut.
std::string quoted(const std::string& name) {
    constexpr size_t kMaxShown = 200;
    std::string out = "'";
    for (size_t i = 0; i < name.size() && i < kMaxShown; ++i) {
        const unsigned char c = static_cast<unsigned char>(name[i]);
        if (c < 0x20 || c == 0x7f) {
            static const char kHex[] = "0123456789abcdef";
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    if (name.size() > kMaxShown) out += "...";
    return out + "'";
}

// Why `dims` cannot hold a tensor of `type` (empty when they can); `bytes` gets the size.
std::string tensor_size_problem(uint32_t type, const std::vector<int64_t>& dims, uint64_t* bytes) {
    const TypeInfo* info = supported_type(type);
    if (info == nullptr) return "unsupported tensor type " + type_for_message(type);
    if (dims.empty() || dims.size() > kMaxDims) {
        return std::to_string(dims.size()) + " dimensions (1 to 4 allowed)";
    }
    for (size_t i = 0; i < dims.size(); ++i) {
        if (dims[i] <= 0) {
            return "dimension " + std::to_string(i) + " is " + std::to_string(dims[i]);
        }
    }
    const std::optional<uint64_t> numel = element_count(dims);
    if (!numel) return "element count overflows";
    const uint64_t ne0 = static_cast<uint64_t>(dims[0]);
    const uint64_t rows = *numel / ne0;
    const std::string too_large = "byte size overflows";
    uint64_t n = 0;
    if (info->block > 0) {
        if (ne0 % static_cast<uint64_t>(info->block) != 0) {
            return "ne0 = " + std::to_string(ne0) + " is not a multiple of " + info->name +
                   "'s block of " + std::to_string(info->block);
        }
        const uint64_t blocks = *numel / static_cast<uint64_t>(info->block);
        if (__builtin_mul_overflow(blocks, static_cast<uint64_t>(info->block_bytes), &n)) {
            return too_large;
        }
        // I2_S: 2 bits a value (32 bytes per 128), then 32 bytes holding the f32 scale.
        if (type == GGML_I2_S && __builtin_add_overflow(n, 32, &n)) return too_large;
    } else if (type == BITNET_T2 || type == BITNET_T5) {
        const uint64_t per_block = type == BITNET_T2 ? 256 : 320;
        const uint64_t blocks = (ne0 + per_block - 1) / per_block;
        if (__builtin_mul_overflow(rows, blocks, &n) || __builtin_mul_overflow(n, 64, &n) ||
            __builtin_add_overflow(n, 64, &n)) {
            return too_large;
        }
    } else {  // BITNET_I8R: int8 rows, padding to 4 bytes, one f32 scale per row
        n = (*numel + 3) / 4 * 4;
        uint64_t scales = 0;
        if (__builtin_mul_overflow(rows, 4, &scales) || __builtin_add_overflow(n, scales, &n)) {
            return too_large;
        }
    }
    if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return too_large;
    *bytes = n;
    return {};
}

uint64_t alignment_from(const Cursor& in, const std::vector<KeyValue>& metadata) {
    for (const KeyValue& kv : metadata) {
        if (kv.key != "general.alignment") continue;
        uint64_t a = 0;
        if (is_unsigned_kind(kv.value.type) && kv.value.type != ValueType::Bool) {
            a = kv.value.u;
        } else if (is_signed_kind(kv.value.type) && kv.value.i > 0) {
            a = static_cast<uint64_t>(kv.value.i);
        } else if (!is_signed_kind(kv.value.type)) {
            in.fail("key 'general.alignment' has type " +
                    std::string(value_type_name(kv.value.type)) + ", not an integer");
        }
        if (a == 0 || (a & (a - 1)) != 0 || a > kMaxAlignment) {
            in.fail(
                "key 'general.alignment' = " +
                (is_signed_kind(kv.value.type) ? std::to_string(kv.value.i) : std::to_string(a)) +
                " is not a nonzero power of two up to 2^31");
        }
        return a;
    }
    return kDefaultAlignment;
}

}  // namespace

const char* value_type_name(ValueType t) {
    switch (t) {
        case ValueType::U8:
            return "u8";
        case ValueType::I8:
            return "i8";
        case ValueType::U16:
            return "u16";
        case ValueType::I16:
            return "i16";
        case ValueType::U32:
            return "u32";
        case ValueType::I32:
            return "i32";
        case ValueType::F32:
            return "f32";
        case ValueType::Bool:
            return "bool";
        case ValueType::String:
            return "string";
        case ValueType::Array:
            return "array";
        case ValueType::U64:
            return "u64";
        case ValueType::I64:
            return "i64";
        case ValueType::F64:
            return "f64";
    }
    return "?";
}

size_t Value::array_size() const {
    if (type != ValueType::Array) return 0;
    if (is_unsigned_kind(elem_type)) return arr_u.size();
    if (is_signed_kind(elem_type)) return arr_i.size();
    if (is_float_kind(elem_type)) return arr_f.size();
    if (elem_type == ValueType::String) return arr_s.size();
    return items.size();
}

std::string tensor_type_name(uint32_t type) {
    if (const TypeInfo* info = supported_type(type)) return info->name;
    if (const char* name = other_ggml_type_name(type)) return name;
    return "type " + std::to_string(type);
}

std::optional<uint64_t> tensor_bytes(uint32_t type, const std::vector<int64_t>& dims) {
    uint64_t bytes = 0;
    if (!tensor_size_problem(type, dims, &bytes).empty()) return std::nullopt;
    return bytes;
}

int64_t TensorEntry::numel() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return n;
}

Parsed parse(const uint8_t* data, size_t size, const std::string& origin) {
    Cursor in(data, size, origin);
    in.set_context("header");
    const uint8_t* magic = in.take(4, "magic");
    if (std::memcmp(magic, kMagic, 4) != 0) in.fail("bad magic: not a GGUF file");
    Parsed out;
    out.version = in.read<uint32_t>("version");
    if (out.version != 2 && out.version != 3) {
        const uint32_t swapped = __builtin_bswap32(out.version);
        if (swapped == 2 || swapped == 3) {
            in.fail("big-endian GGUF is not supported", ErrorCode::UnsupportedFormat);
        }
        in.fail("GGUF version " + std::to_string(out.version) +
                    " is not supported (versions 2 and 3 are)",
                ErrorCode::UnsupportedFormat);
    }
    const uint64_t n_tensors = in.read<uint64_t>("tensor count");
    // Smallest key-value pair: empty key (8), type (4), a one-byte value.
    const uint64_t n_kv = in.read_count("metadata count", 13);

    std::unordered_set<std::string> keys;
    out.metadata.reserve(static_cast<size_t>(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
        in.set_context("metadata entry " + std::to_string(i));
        KeyValue kv;
        kv.key = in.read_string("key");
        in.set_context("key " + quoted(kv.key));
        if (!keys.insert(kv.key).second) in.fail("duplicate key");
        const ValueType type = read_value_type(in, "value type");
        kv.value = read_value(in, type, 0);
        out.metadata.push_back(std::move(kv));
    }
    in.set_context("");
    out.alignment = alignment_from(in, out.metadata);

    // Smallest tensor info: empty name (8), n_dims (4), one dim (8), type (4), offset (8).
    in.set_context("header");
    if (n_tensors > in.remaining() / 32) {
        in.fail("tensor count " + std::to_string(n_tensors) + " cannot fit in the " +
                std::to_string(in.remaining()) + " bytes left in the file");
    }
    std::unordered_set<std::string> names;
    out.tensors.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        in.set_context("tensor info " + std::to_string(i));
        TensorEntry t;
        t.name = in.read_string("tensor name");
        in.set_context("tensor " + quoted(t.name));
        if (!names.insert(t.name).second) in.fail("duplicate tensor name");
        const uint32_t n_dims = in.read<uint32_t>("n_dims");
        if (n_dims == 0 || n_dims > kMaxDims) {
            in.fail("n_dims = " + std::to_string(n_dims) + " (1 to 4 allowed)");
        }
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t v = in.read<uint64_t>("dimension");
            if (v == 0 || v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
                in.fail("dimension " + std::to_string(d) + " is " +
                        std::to_string(static_cast<int64_t>(v)));
            }
            t.dims.push_back(static_cast<int64_t>(v));
        }
        t.type = in.read<uint32_t>("tensor type");
        t.offset = in.read<uint64_t>("tensor offset");
        if (supported_type(t.type) == nullptr) {
            in.fail("unsupported tensor type " + type_for_message(t.type),
                    ErrorCode::UnsupportedFormat);
        }
        const std::string problem = tensor_size_problem(t.type, t.dims, &t.bytes);
        if (!problem.empty()) in.fail(tensor_type_name(t.type) + ": " + problem);
        if (t.offset % out.alignment != 0) {
            in.fail("offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                    std::to_string(out.alignment));
        }
        out.tensors.push_back(std::move(t));
    }
    in.set_context("");

    const uint64_t infos_end = in.pos();
    uint64_t data_offset = 0;
    if (__builtin_add_overflow(infos_end, out.alignment - 1, &data_offset)) {
        in.fail("alignment " + std::to_string(out.alignment) + " puts the data section past 2^64");
    }
    out.data_offset = data_offset / out.alignment * out.alignment;

    for (TensorEntry& t : out.tensors) {
        uint64_t begin = 0, end = 0;
        if (__builtin_add_overflow(out.data_offset, t.offset, &begin) ||
            __builtin_add_overflow(begin, t.bytes, &end) || end > size) {
            in.set_context("tensor " + quoted(t.name));
            in.fail("data (" + std::to_string(t.bytes) + " bytes at data offset " +
                    std::to_string(t.offset) + ") runs past the end of the " +
                    std::to_string(size) + "-byte file (truncated?)");
        }
        t.data = data + begin;
    }

    std::vector<const TensorEntry*> by_offset;
    by_offset.reserve(out.tensors.size());
    for (const TensorEntry& t : out.tensors) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const TensorEntry* a, const TensorEntry* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
        const TensorEntry& a = *by_offset[i - 1];
        const TensorEntry& b = *by_offset[i];
        if (a.offset + a.bytes > b.offset) {
            in.fail("tensors " + quoted(a.name) + " and " + quoted(b.name) + " overlap");
        }
    }
    return out;
}

File::File(const std::string& path) : mapping_(std::make_shared<const MappedFile>(path)) {
    parsed_ = parse(mapping_->data(), mapping_->size(), path);
    for (size_t i = 0; i < parsed_.metadata.size(); ++i) {
        key_index_.emplace(parsed_.metadata[i].key, i);
    }
    for (size_t i = 0; i < parsed_.tensors.size(); ++i) {
        tensor_index_.emplace(parsed_.tensors[i].name, i);
    }
}

const Value* File::find(std::string_view key) const {
    const auto it = key_index_.find(key);
    return it == key_index_.end() ? nullptr : &parsed_.metadata[it->second].value;
}

const TensorEntry* File::find_tensor(std::string_view name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &parsed_.tensors[it->second];
}

namespace {

[[noreturn]] void key_error(const File& f, std::string_view key, const std::string& what) {
    throw Error(ErrorCode::ParseError, f.path() + ": key '" + std::string(key) + "' " + what);
}

std::string type_description(const Value& v) {
    if (v.type != ValueType::Array) return value_type_name(v.type);
    return std::string("array of ") + value_type_name(v.elem_type);
}

std::optional<int64_t> int_of(const File& f, std::string_view key, const Value& v) {
    if (is_signed_kind(v.type)) return v.i;
    if (is_unsigned_kind(v.type)) {
        if (v.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            key_error(f, key, "= " + std::to_string(v.u) + " is out of range");
        }
        return static_cast<int64_t>(v.u);
    }
    return std::nullopt;
}

}  // namespace

std::optional<std::string> File::get_string_opt(std::string_view key) const {
    const Value* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (v->type != ValueType::String) {
        key_error(*this, key, "has type " + type_description(*v) + ", expected string");
    }
    return v->s;
}

std::string File::get_string(std::string_view key) const {
    std::optional<std::string> s = get_string_opt(key);
    if (!s) key_error(*this, key, "is missing");
    return *s;
}

std::optional<int64_t> File::get_int_opt(std::string_view key) const {
    const Value* v = find(key);
    if (v == nullptr) return std::nullopt;
    const std::optional<int64_t> i = int_of(*this, key, *v);
    if (!i) key_error(*this, key, "has type " + type_description(*v) + ", expected an integer");
    return i;
}

int64_t File::get_int(std::string_view key) const {
    const std::optional<int64_t> i = get_int_opt(key);
    if (!i) key_error(*this, key, "is missing");
    return *i;
}

std::optional<double> File::get_float_opt(std::string_view key) const {
    const Value* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (is_float_kind(v->type)) return v->f;
    if (is_signed_kind(v->type)) return static_cast<double>(v->i);
    if (is_unsigned_kind(v->type) && v->type != ValueType::Bool) {
        return static_cast<double>(v->u);
    }
    key_error(*this, key, "has type " + type_description(*v) + ", expected a number");
}

double File::get_float(std::string_view key) const {
    const std::optional<double> f = get_float_opt(key);
    if (!f) key_error(*this, key, "is missing");
    return *f;
}

std::optional<bool> File::get_bool_opt(std::string_view key) const {
    const Value* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (v->type != ValueType::Bool) {
        key_error(*this, key, "has type " + type_description(*v) + ", expected bool");
    }
    return v->u != 0;
}

std::vector<std::string> File::get_string_array(std::string_view key) const {
    const Value* v = find(key);
    if (v == nullptr) return {};
    if (v->type != ValueType::Array || v->elem_type != ValueType::String) {
        key_error(*this, key, "has type " + type_description(*v) + ", expected array of string");
    }
    return v->arr_s;
}

std::vector<double> File::get_float_array(std::string_view key) const {
    const Value* v = find(key);
    if (v == nullptr) return {};
    if (v->type != ValueType::Array) {
        key_error(*this, key, "has type " + type_description(*v) + ", expected an array");
    }
    if (is_float_kind(v->elem_type)) return v->arr_f;
    std::vector<double> out;
    if (is_signed_kind(v->elem_type)) {
        out.assign(v->arr_i.begin(), v->arr_i.end());
    } else if (is_unsigned_kind(v->elem_type) && v->elem_type != ValueType::Bool) {
        out.assign(v->arr_u.begin(), v->arr_u.end());
    } else {
        key_error(*this, key, "has type " + type_description(*v) + ", expected numbers");
    }
    return out;
}

std::vector<int64_t> File::get_int_array(std::string_view key) const {
    const Value* v = find(key);
    if (v == nullptr) return {};
    if (v->type != ValueType::Array) {
        key_error(*this, key, "has type " + type_description(*v) + ", expected an array");
    }
    if (is_signed_kind(v->elem_type)) return v->arr_i;
    if (!is_unsigned_kind(v->elem_type)) {
        key_error(*this, key, "has type " + type_description(*v) + ", expected integers");
    }
    std::vector<int64_t> out;
    out.reserve(v->arr_u.size());
    for (size_t i = 0; i < v->arr_u.size(); ++i) {
        if (v->arr_u[i] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            key_error(*this, key,
                      "element " + std::to_string(i) + " = " + std::to_string(v->arr_u[i]) +
                          " is out of range");
        }
        out.push_back(static_cast<int64_t>(v->arr_u[i]));
    }
    return out;
}

bool is_gguf_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    if (!in.read(magic, 4)) return false;
    return std::memcmp(magic, kMagic, 4) == 0;
}

}  // namespace bitnet::gguf
