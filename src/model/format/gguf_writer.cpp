#include "model/format/gguf_writer.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "bitnet/error.h"

namespace bitnet::gguf {

namespace {

constexpr uint64_t kProgressStep = 8ull << 20;
constexpr uint64_t kDefaultAlignment = 32;
constexpr int kMaxArrayDepth = 8;  // as the reader accepts

[[noreturn]] void invalid(const std::string& what) {
    throw Error(ErrorCode::InvalidArgument, "GGUF writer: " + what);
}

bool is_power_of_two(uint64_t a) {
    return a != 0 && (a & (a - 1)) == 0;
}

uint64_t padding_to(uint64_t offset, uint64_t alignment) {
    return (alignment - offset % alignment) % alignment;
}

class ByteSink {
  public:
    explicit ByteSink(std::vector<uint8_t>& out) : out_(out) {}
    template <typename T>
    void put(T v) {
        uint8_t b[sizeof(T)];
        std::memcpy(b, &v, sizeof v);
        out_.insert(out_.end(), b, b + sizeof b);
    }
    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        out_.insert(out_.end(), s.begin(), s.end());
    }
    void put_zeros(uint64_t n) { out_.insert(out_.end(), static_cast<size_t>(n), 0); }
    size_t size() const { return out_.size(); }

  private:
    std::vector<uint8_t>& out_;
};

// Values whose member of their kind holds something the type cannot encode are refused rather
// than silently truncated.
void put_unsigned(ByteSink& out, ValueType t, uint64_t v, const std::string& key) {
    uint64_t max = 0;
    switch (t) {
        case ValueType::U8:
            max = 0xff;
            break;
        case ValueType::U16:
            max = 0xffff;
            break;
        case ValueType::U32:
            max = 0xffffffffu;
            break;
        case ValueType::Bool:
            max = 1;
            break;
        default:
            max = std::numeric_limits<uint64_t>::max();
    }
    if (v > max) {
        invalid("key '" + key + "': " + std::to_string(v) + " does not fit in " +
                value_type_name(t));
    }
    switch (t) {
        case ValueType::U8:
        case ValueType::Bool:
            out.put<uint8_t>(static_cast<uint8_t>(v));
            break;
        case ValueType::U16:
            out.put<uint16_t>(static_cast<uint16_t>(v));
            break;
        case ValueType::U32:
            out.put<uint32_t>(static_cast<uint32_t>(v));
            break;
        default:
            out.put<uint64_t>(v);
    }
}

void put_signed(ByteSink& out, ValueType t, int64_t v, const std::string& key) {
    int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
    if (t == ValueType::I8) lo = -128, hi = 127;
    if (t == ValueType::I16) lo = -32768, hi = 32767;
    if (t == ValueType::I32)
        lo = std::numeric_limits<int32_t>::min(), hi = std::numeric_limits<int32_t>::max();
    if (v < lo || v > hi) {
        invalid("key '" + key + "': " + std::to_string(v) + " does not fit in " +
                value_type_name(t));
    }
    switch (t) {
        case ValueType::I8:
            out.put<int8_t>(static_cast<int8_t>(v));
            break;
        case ValueType::I16:
            out.put<int16_t>(static_cast<int16_t>(v));
            break;
        case ValueType::I32:
            out.put<int32_t>(static_cast<int32_t>(v));
            break;
        default:
            out.put<int64_t>(v);
    }
}

void put_float(ByteSink& out, ValueType t, double v) {
    if (t == ValueType::F32) {
        out.put<float>(static_cast<float>(v));
    } else {
        out.put<double>(v);
    }
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
bool is_known(ValueType t) {
    return static_cast<uint32_t>(t) <= static_cast<uint32_t>(ValueType::F64);
}

void put_value(ByteSink& out, const Value& v, const std::string& key, int depth);

void put_array(ByteSink& out, const Value& v, const std::string& key, int depth) {
    const ValueType et = v.elem_type;
    if (!is_known(et)) invalid("key '" + key + "': unknown array element type");
    if (depth >= kMaxArrayDepth) {
        invalid("key '" + key + "': arrays nested deeper than " + std::to_string(kMaxArrayDepth));
    }
    // Exactly the vector of the element kind may hold elements.
    const size_t filled = (v.arr_u.empty() ? 0 : 1) + (v.arr_i.empty() ? 0 : 1) +
                          (v.arr_f.empty() ? 0 : 1) + (v.arr_s.empty() ? 0 : 1) +
                          (v.items.empty() ? 0 : 1);
    if (filled > 1 || (filled == 1 && v.array_size() == 0)) {
        invalid("key '" + key + "': array of " + value_type_name(et) +
                " holds elements in the vector of another kind");
    }
    out.put<uint32_t>(static_cast<uint32_t>(et));
    out.put<uint64_t>(v.array_size());
    if (is_unsigned_kind(et)) {
        for (uint64_t x : v.arr_u) put_unsigned(out, et, x, key);
    } else if (is_signed_kind(et)) {
        for (int64_t x : v.arr_i) put_signed(out, et, x, key);
    } else if (is_float_kind(et)) {
        for (double x : v.arr_f) put_float(out, et, x);
    } else if (et == ValueType::String) {
        for (const std::string& s : v.arr_s) out.put_string(s);
    } else {
        for (const Value& item : v.items) {
            if (item.type != ValueType::Array) {
                invalid("key '" + key + "': an element of an array of arrays is a " +
                        value_type_name(item.type));
            }
            put_array(out, item, key, depth + 1);
        }
    }
}

void put_value(ByteSink& out, const Value& v, const std::string& key, int depth) {
    if (!is_known(v.type)) invalid("key '" + key + "': unknown value type");
    if (is_unsigned_kind(v.type)) {
        put_unsigned(out, v.type, v.u, key);
    } else if (is_signed_kind(v.type)) {
        put_signed(out, v.type, v.i, key);
    } else if (is_float_kind(v.type)) {
        put_float(out, v.type, v.f);
    } else if (v.type == ValueType::String) {
        out.put_string(v.s);
    } else {
        put_array(out, v, key, depth);
    }
}

Value scalar(ValueType t) {
    Value v;
    v.type = t;
    return v;
}

Value array_of(ValueType et) {
    Value v;
    v.type = ValueType::Array;
    v.elem_type = et;
    return v;
}

// Writes a file through stdio; closes it on scope exit if still open.
class OutFile {
  public:
    explicit OutFile(const std::string& path) : path_(path) {
        f_ = std::fopen(path.c_str(), "wb");
        if (f_ == nullptr) fail("cannot open for writing");
    }
    ~OutFile() {
        if (f_ != nullptr) std::fclose(f_);
    }
    OutFile(const OutFile&) = delete;
    OutFile& operator=(const OutFile&) = delete;

    void write(const uint8_t* p, uint64_t n) {
        if (n > 0 && std::fwrite(p, 1, static_cast<size_t>(n), f_) != n) fail("write failed");
    }
    void close() {
        FILE* f = f_;
        f_ = nullptr;
        if (std::fclose(f) != 0) fail("write failed");
    }

  private:
    [[noreturn]] void fail(const std::string& what) {
        const int err = errno;
        throw Error(ErrorCode::IoError, path_ + ": " + what + ": " + std::strerror(err));
    }
    std::string path_;
    FILE* f_ = nullptr;
};

}  // namespace

void Writer::set(std::string_view key, Value value) {
    for (KeyValue& kv : metadata_) {
        if (kv.key == key) {
            kv.value = std::move(value);
            return;
        }
    }
    metadata_.push_back(KeyValue{std::string(key), std::move(value)});
}

void Writer::set_u8(std::string_view key, uint8_t v) {
    Value x = scalar(ValueType::U8);
    x.u = v;
    set(key, std::move(x));
}
void Writer::set_i8(std::string_view key, int8_t v) {
    Value x = scalar(ValueType::I8);
    x.i = v;
    set(key, std::move(x));
}
void Writer::set_u16(std::string_view key, uint16_t v) {
    Value x = scalar(ValueType::U16);
    x.u = v;
    set(key, std::move(x));
}
void Writer::set_i16(std::string_view key, int16_t v) {
    Value x = scalar(ValueType::I16);
    x.i = v;
    set(key, std::move(x));
}
void Writer::set_u32(std::string_view key, uint32_t v) {
    Value x = scalar(ValueType::U32);
    x.u = v;
    set(key, std::move(x));
}
void Writer::set_i32(std::string_view key, int32_t v) {
    Value x = scalar(ValueType::I32);
    x.i = v;
    set(key, std::move(x));
}
void Writer::set_u64(std::string_view key, uint64_t v) {
    Value x = scalar(ValueType::U64);
    x.u = v;
    set(key, std::move(x));
}
void Writer::set_i64(std::string_view key, int64_t v) {
    Value x = scalar(ValueType::I64);
    x.i = v;
    set(key, std::move(x));
}
void Writer::set_f32(std::string_view key, float v) {
    Value x = scalar(ValueType::F32);
    x.f = v;
    set(key, std::move(x));
}
void Writer::set_f64(std::string_view key, double v) {
    Value x = scalar(ValueType::F64);
    x.f = v;
    set(key, std::move(x));
}
void Writer::set_bool(std::string_view key, bool v) {
    Value x = scalar(ValueType::Bool);
    x.u = v ? 1 : 0;
    set(key, std::move(x));
}
void Writer::set_string(std::string_view key, std::string v) {
    Value x = scalar(ValueType::String);
    x.s = std::move(v);
    set(key, std::move(x));
}
void Writer::set_string_array(std::string_view key, std::vector<std::string> v) {
    Value x = array_of(ValueType::String);
    x.arr_s = std::move(v);
    set(key, std::move(x));
}
void Writer::set_f32_array(std::string_view key, const std::vector<float>& v) {
    Value x = array_of(ValueType::F32);
    x.arr_f.assign(v.begin(), v.end());
    set(key, std::move(x));
}
void Writer::set_i32_array(std::string_view key, const std::vector<int32_t>& v) {
    Value x = array_of(ValueType::I32);
    x.arr_i.assign(v.begin(), v.end());
    set(key, std::move(x));
}
void Writer::set_u32_array(std::string_view key, const std::vector<uint32_t>& v) {
    Value x = array_of(ValueType::U32);
    x.arr_u.assign(v.begin(), v.end());
    set(key, std::move(x));
}

bool Writer::remove(std::string_view key) {
    for (auto it = metadata_.begin(); it != metadata_.end(); ++it) {
        if (it->key == key) {
            metadata_.erase(it);
            return true;
        }
    }
    return false;
}

const Value* Writer::find(std::string_view key) const {
    for (const KeyValue& kv : metadata_) {
        if (kv.key == key) return &kv.value;
    }
    return nullptr;
}

void Writer::set_alignment(uint32_t alignment) {
    if (!is_power_of_two(alignment)) {
        invalid("alignment " + std::to_string(alignment) + " is not a nonzero power of two");
    }
    set_u32("general.alignment", alignment);
}

uint64_t Writer::alignment() const {
    const Value* v = find("general.alignment");
    if (v == nullptr) return kDefaultAlignment;
    uint64_t a = 0;
    if (is_unsigned_kind(v->type) && v->type != ValueType::Bool) {
        a = v->u;
    } else if (is_signed_kind(v->type) && v->i > 0) {
        a = static_cast<uint64_t>(v->i);
    }
    if (!is_power_of_two(a) || a > (uint64_t{1} << 31)) {
        invalid("general.alignment is not a nonzero power of two up to 2^31");
    }
    return a;
}

void Writer::set_version(uint32_t version) {
    if (version != 2 && version != 3) {
        invalid("GGUF version " + std::to_string(version) + " (2 or 3 can be written)");
    }
    version_ = version;
}

void Writer::check_new_tensor(const std::string& name, const std::vector<int64_t>& dims,
                              uint32_t type, uint64_t bytes) const {
    for (const Tensor& t : tensors_) {
        if (t.name == name) invalid("tensor '" + name + "' added twice");
    }
    const std::optional<uint64_t> expected = tensor_bytes(type, dims);
    if (!expected) {
        std::string shape;
        for (int64_t d : dims) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
        invalid("tensor '" + name + "': type " + tensor_type_name(type) + " with dims [" + shape +
                "] is not a valid GGUF tensor");
    }
    if (bytes != *expected) {
        invalid("tensor '" + name + "': " + std::to_string(bytes) + " bytes given, type " +
                tensor_type_name(type) + " with these dims takes " + std::to_string(*expected));
    }
}

void Writer::add_tensor(std::string name, std::vector<int64_t> dims, uint32_t type,
                        std::vector<uint8_t> bytes) {
    check_new_tensor(name, dims, type, bytes.size());
    Tensor t;
    t.name = std::move(name);
    t.dims = std::move(dims);
    t.type = type;
    t.bytes = bytes.size();
    t.owned = std::move(bytes);
    tensors_.push_back(std::move(t));
}

void Writer::add_tensor_ref(std::string name, std::vector<int64_t> dims, uint32_t type,
                            const uint8_t* data, uint64_t bytes) {
    check_new_tensor(name, dims, type, bytes);
    if (data == nullptr) invalid("tensor '" + name + "': no data");
    Tensor t;
    t.name = std::move(name);
    t.dims = std::move(dims);
    t.type = type;
    t.bytes = bytes;
    t.ref = data;
    tensors_.push_back(std::move(t));
}

bool Writer::remove_tensor(std::string_view name) {
    for (auto it = tensors_.begin(); it != tensors_.end(); ++it) {
        if (it->name == name) {
            tensors_.erase(it);
            return true;
        }
    }
    return false;
}

void Writer::keep_alive(std::shared_ptr<const void> owner) {
    owners_.push_back(std::move(owner));
}

std::vector<uint8_t> Writer::header_bytes() const {
    const uint64_t align = alignment();
    std::vector<uint8_t> bytes;
    ByteSink out(bytes);
    out.put<uint8_t>('G');
    out.put<uint8_t>('G');
    out.put<uint8_t>('U');
    out.put<uint8_t>('F');
    out.put<uint32_t>(version_);
    out.put<uint64_t>(tensors_.size());
    out.put<uint64_t>(metadata_.size());
    for (const KeyValue& kv : metadata_) {
        out.put_string(kv.key);
        out.put<uint32_t>(static_cast<uint32_t>(kv.value.type));
        put_value(out, kv.value, kv.key, 0);
    }
    uint64_t offset = 0;
    for (const Tensor& t : tensors_) {
        out.put_string(t.name);
        out.put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
        for (int64_t d : t.dims) out.put<uint64_t>(static_cast<uint64_t>(d));
        out.put<uint32_t>(t.type);
        out.put<uint64_t>(offset);
        offset += t.bytes + padding_to(t.bytes, align);
    }
    if (!tensors_.empty() || pad_end_) out.put_zeros(padding_to(out.size(), align));
    return bytes;
}

uint64_t Writer::file_size() const {
    const uint64_t align = alignment();
    uint64_t size = header_bytes().size();
    for (size_t i = 0; i < tensors_.size(); ++i) {
        size += tensors_[i].bytes;
        if (i + 1 < tensors_.size() || pad_end_) size += padding_to(tensors_[i].bytes, align);
    }
    return size;
}

void Writer::write(const std::string& path, const Progress& progress) const {
    const uint64_t align = alignment();
    const std::vector<uint8_t> header = header_bytes();
    const uint64_t total = file_size();
    const std::string tmp = path + ".tmp";
    try {
        OutFile out(tmp);
        out.write(header.data(), header.size());
        uint64_t done = header.size();
        uint64_t next_report = kProgressStep;
        const std::vector<uint8_t> zeros(static_cast<size_t>(std::min<uint64_t>(align, 1 << 20)));
        for (size_t i = 0; i < tensors_.size(); ++i) {
            const Tensor& t = tensors_[i];
            for (uint64_t pos = 0; pos < t.bytes;) {
                const uint64_t n = std::min<uint64_t>(t.bytes - pos, kProgressStep);
                out.write(t.data() + pos, n);
                pos += n;
                done += n;
                if (progress && done >= next_report) {
                    progress(done, total);
                    next_report = done + kProgressStep;
                }
            }
            if (i + 1 < tensors_.size() || pad_end_) {
                for (uint64_t pad = padding_to(t.bytes, align); pad > 0;) {
                    const uint64_t n = std::min<uint64_t>(pad, zeros.size());
                    out.write(zeros.data(), n);
                    pad -= n;
                    done += n;
                }
            }
        }
        out.close();
        if (progress) progress(done, total);
        std::error_code ec;
        std::filesystem::rename(tmp, path, ec);
        if (ec) {
            throw Error(ErrorCode::IoError,
                        path + ": cannot rename " + tmp + " into place: " + ec.message());
        }
    } catch (...) {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
        throw;
    }
}

std::vector<uint8_t> Writer::to_bytes() const {
    const uint64_t align = alignment();
    std::vector<uint8_t> bytes = header_bytes();
    for (size_t i = 0; i < tensors_.size(); ++i) {
        const Tensor& t = tensors_[i];
        bytes.insert(bytes.end(), t.data(), t.data() + t.bytes);
        if (i + 1 < tensors_.size() || pad_end_) {
            bytes.insert(bytes.end(), static_cast<size_t>(padding_to(t.bytes, align)), 0);
        }
    }
    return bytes;
}

Writer writer_from_file(const File& file) {
    Writer w;
    w.set_version(file.version());
    for (const KeyValue& kv : file.metadata()) w.set(kv.key, kv.value);
    w.keep_alive(file.mapping());
    uint64_t end = 0;  // end of the last tensor's data (or of the infos), unpadded
    for (const TensorEntry& t : file.tensors()) {
        w.add_tensor_ref(t.name, t.dims, t.type, t.data, t.bytes);
        end = static_cast<uint64_t>(t.data - file.mapping()->data()) + t.bytes;
    }
    if (file.tensors().empty()) {
        // The infos end where the header of a re-serialization without padding ends.
        w.set_pad_end(false);
        end = w.to_bytes().size();
        w.set_pad_end(true);
    }
    // ggml pads the end of the file too; a file that stops right after its last byte of data
    // is written back the same way.
    if (file.file_size() == end && end % file.alignment() != 0) w.set_pad_end(false);
    return w;
}

}  // namespace bitnet::gguf
