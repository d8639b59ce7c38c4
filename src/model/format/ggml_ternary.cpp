#include "model/format/ggml_ternary.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "bitnet/error.h"
#include "core/half.h"
#include "kernels/cpu/ternary_pack.h"

namespace bitnet::gguf {

namespace {

constexpr int64_t kTqBlock = 256;       // TQ1_0 / TQ2_0 values per block
constexpr int64_t kTq1BlockBytes = 54;  // qs[48], qh[4], f16 d
constexpr int64_t kTq2BlockBytes = 66;  // qs[64], f16 d
constexpr int64_t kI2sBlock = 128;      // I2_S (x86) values per 32-byte block
constexpr int64_t kQ8Block = 32;
constexpr int64_t kQ8BlockBytes = 34;  // f16 d, 32 int8

uint16_t load_u16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
float load_f32(const uint8_t* p) {
    float v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
void store_u16(uint8_t* p, uint16_t v) {
    std::memcpy(p, &v, sizeof v);
}
void store_f32(uint8_t* p, float v) {
    std::memcpy(p, &v, sizeof v);
}

std::string cell(int64_t row, int64_t col) {
    return "(row " + std::to_string(row) + ", column " + std::to_string(col) + ")";
}

[[noreturn]] void bad_data(const std::string& where, const std::string& what) {
    throw Error(ErrorCode::ParseError, where + ": " + what);
}

// TQ1_0 packs 5 trits into a byte as ceil(v * 256 / 243) of their base-3 number v (first trit
// most significant) and reads trit n back as the top "digit" of (byte * 3^n mod 256) * 3 / 256.
// 243 of the 256 byte values are such encodings; the others never come out of the quantizer.
struct Tq1Tables {
    std::array<std::array<int8_t, 5>, 256> trits{};  // codes 0..2 as ggml decodes them
    std::array<bool, 256> canonical{};
    std::array<uint8_t, 243> encode{};
    Tq1Tables() {
        static constexpr int kPow3[5] = {1, 3, 9, 27, 81};
        for (int v = 0; v < 243; ++v) {
            encode[v] = static_cast<uint8_t>((v * 256 + 242) / 243);
            canonical[encode[v]] = true;
        }
        for (int b = 0; b < 256; ++b) {
            for (int n = 0; n < 5; ++n) {
                const uint8_t q = static_cast<uint8_t>(b * kPow3[n]);
                trits[b][n] = static_cast<int8_t>((q * 3) >> 8);
            }
        }
    }
};
const Tq1Tables& tq1_tables() {
    static const Tq1Tables tables;
    return tables;
}

// Block-local element k of a TQ1_0 block: which byte holds it and which trit of that byte.
struct Tq1Slot {
    int byte;
    int trit;
};
constexpr Tq1Slot tq1_slot(int k) {
    if (k < 160) return {k % 32, k / 32};                       // qs[0..32): 5 values 32 apart
    if (k < 240) return {32 + (k - 160) % 16, (k - 160) / 16};  // qs[32..48): 16 apart
    return {48 + (k - 240) % 4, (k - 240) / 4};                 // qh[0..4): 4 values 4 apart
}

// Block-local element k of a TQ2_0 block: byte and bit shift.
constexpr int tq2_byte(int k) {
    return (k / 128) * 32 + k % 32;
}
constexpr int tq2_shift(int k) {
    return 2 * ((k % 128) / 32);
}

// Tracks the one scale every block holding a nonzero weight must share.
class SharedScale {
  public:
    explicit SharedScale(const std::string& where) : where_(where) {}
    void block(uint16_t d_bits, int64_t index, int64_t row, int64_t col) {
        if (!seen_) {
            seen_ = true;
            bits_ = d_bits;
            first_ = index;
            const float d = f16_to_f32(d_bits);
            if (!std::isfinite(d) || d < 0) {
                bad_data(where_, "block " + std::to_string(index) + " " + cell(row, col) +
                                     " has scale d = " + std::to_string(d) +
                                     " (must be finite and >= 0)");
            }
        } else if (d_bits != bits_) {
            bad_data(where_, "block " + std::to_string(index) + " " + cell(row, col) +
                                 " has scale d = " + std::to_string(f16_to_f32(d_bits)) +
                                 " but block " + std::to_string(first_) + " has " +
                                 std::to_string(f16_to_f32(bits_)) +
                                 ": per-block scales are not BitNet b1.58 ternary weights (one "
                                 "scale per tensor)");
        }
    }
    float alpha() const { return seen_ ? f16_to_f32(bits_) : 0.f; }

  private:
    const std::string& where_;
    bool seen_ = false;
    uint16_t bits_ = 0;
    int64_t first_ = 0;
};

float decode_tq1_0(const uint8_t* data, int64_t rows, int64_t cols, int8_t* values,
                   const std::string& where) {
    const Tq1Tables& tab = tq1_tables();
    const int64_t blocks_per_row = cols / kTqBlock;
    SharedScale scale(where);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t b = 0; b < blocks_per_row; ++b) {
            const uint8_t* blk = data + (r * blocks_per_row + b) * kTq1BlockBytes;
            for (int i = 0; i < 52; ++i) {
                // qh bytes hold 4 trits; their fifth (least significant) is always 0.
                if (!tab.canonical[blk[i]] || (i >= 48 && tab.trits[blk[i]][4] != 0)) {
                    bad_data(where, "byte " + std::to_string(i) + " of block " +
                                        std::to_string(r * blocks_per_row + b) + " " +
                                        cell(r, b * kTqBlock) + " = " + std::to_string(blk[i]) +
                                        " is not a TQ1_0 encoding of ternary values");
                }
            }
            int8_t* out = values + r * cols + b * kTqBlock;
            bool nonzero = false;
            for (int k = 0; k < kTqBlock; ++k) {
                const Tq1Slot s = tq1_slot(k);
                out[k] = static_cast<int8_t>(tab.trits[blk[s.byte]][s.trit] - 1);
                nonzero |= out[k] != 0;
            }
            if (nonzero) {
                scale.block(load_u16(blk + 52), r * blocks_per_row + b, r, b * kTqBlock);
            }
        }
    }
    return scale.alpha();
}

float decode_tq2_0(const uint8_t* data, int64_t rows, int64_t cols, int8_t* values,
                   const std::string& where) {
    const int64_t blocks_per_row = cols / kTqBlock;
    SharedScale scale(where);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t b = 0; b < blocks_per_row; ++b) {
            const uint8_t* blk = data + (r * blocks_per_row + b) * kTq2BlockBytes;
            int8_t* out = values + r * cols + b * kTqBlock;
            // Byte-wise so the compiler vectorises it: loading a 2B model repacks ~2e9 values.
            uint8_t code3 = 0, nonzero = 0;
            for (int half = 0; half < 2; ++half) {
                for (int shift = 0; shift < 8; shift += 2) {
                    for (int m = 0; m < 32; ++m) {
                        const uint8_t byte = blk[half * 32 + m];
                        out[half * 128 + shift * 16 + m] =
                            static_cast<int8_t>(((byte >> shift) & 3) - 1);
                    }
                }
            }
            for (int i = 0; i < 64; ++i) {
                code3 |= blk[i] & (blk[i] >> 1) & 0x55;
                nonzero |= blk[i] ^ 0x55;
            }
            if (code3 != 0) {
                for (int k = 0; k < kTqBlock; ++k) {
                    if (out[k] == 2) {
                        bad_data(where,
                                 "2-bit code 3 (no ternary value) at " + cell(r, b * kTqBlock + k));
                    }
                }
            }
            if (nonzero != 0) {
                scale.block(load_u16(blk + 64), r * blocks_per_row + b, r, b * kTqBlock);
            }
        }
    }
    return scale.alpha();
}

float checked_scale(float s, const std::string& where) {
    if (!std::isfinite(s) || s < 0) {
        bad_data(where, "scale " + std::to_string(s) + " is not finite and >= 0");
    }
    return s;
}

float decode_i2_s(const uint8_t* data, int64_t rows, int64_t cols, int8_t* values,
                  const std::string& where) {
    const int64_t n = rows * cols;
    uint8_t code3 = 0;
    for (int64_t block = 0; block < n / kI2sBlock; ++block) {
        const uint8_t* in = data + block * 32;
        int8_t* out = values + block * kI2sBlock;
        for (int g = 0; g < 4; ++g) {
            for (int m = 0; m < 32; ++m) {
                out[g * 32 + m] = static_cast<int8_t>(((in[m] >> (6 - 2 * g)) & 3) - 1);
            }
        }
        for (int m = 0; m < 32; ++m) code3 |= in[m] & (in[m] >> 1) & 0x55;
    }
    if (code3 != 0) {
        for (int64_t i = 0; i < n; ++i) {
            if (values[i] == 2) {
                bad_data(where, "2-bit code 3 (no ternary value) at " + cell(i / cols, i % cols));
            }
        }
    }
    return checked_scale(load_f32(data + n / 4), where);
}

float decode_bitnet_t2(const uint8_t* data, int64_t rows, int64_t cols, int8_t* values,
                       const std::string& where) {
    const int64_t padded =
        (cols + cpu::kTernaryBlock - 1) / cpu::kTernaryBlock * cpu::kTernaryBlock;
    const int64_t row_bytes = padded / 4;
    for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* row = data + r * row_bytes;
        for (int64_t k = 0; k < padded; ++k) {
            const int64_t within = k % cpu::kTernaryBlock;
            const uint8_t byte = row[(k / cpu::kTernaryBlock) * cpu::kTernaryBlockBytes +
                                     within % cpu::kTernaryBlockBytes];
            const int code = (byte >> (2 * (within / cpu::kTernaryBlockBytes))) & 3;
            if (k < cols) {
                if (code == 3) {
                    bad_data(where, "2-bit code 3 (no ternary value) at " + cell(r, k));
                }
                values[r * cols + k] = static_cast<int8_t>(code - 1);
            } else if (code != 1) {
                bad_data(where, "padding column " + std::to_string(k) + " of row " +
                                    std::to_string(r) + " holds a nonzero weight");
            }
        }
    }
    return checked_scale(load_f32(data + rows * row_bytes), where);
}

// Dense w = t * alpha. alpha is max |w|; every other nonzero |w| may differ from it by the
// rounding of the storage type, in case values were rounded one at a time from other floats.
float decode_dense(uint32_t type, const uint8_t* data, int64_t rows, int64_t cols, int8_t* values,
                   const std::string& where) {
    std::vector<float> row(static_cast<size_t>(cols));
    float alpha = 0;
    for (int64_t r = 0; r < rows; ++r) {
        decode_row_f32(type, data + r * cols * (type == GGML_F32 ? 4 : 2), cols, row.data());
        for (int64_t c = 0; c < cols; ++c) {
            const float a = std::fabs(row[static_cast<size_t>(c)]);
            if (!std::isfinite(a)) {
                bad_data(where, "tensor is not ternary: " + cell(r, c) + " is " +
                                    std::to_string(row[static_cast<size_t>(c)]));
            }
            alpha = std::max(alpha, a);
        }
    }
    const double tolerance = type == GGML_F32 ? 0x1p-20 : type == GGML_F16 ? 0x1p-10 : 0x1p-7;
    const float low = static_cast<float>(alpha * (1.0 - tolerance));
    for (int64_t r = 0; r < rows; ++r) {
        decode_row_f32(type, data + r * cols * (type == GGML_F32 ? 4 : 2), cols, row.data());
        for (int64_t c = 0; c < cols; ++c) {
            const float w = row[static_cast<size_t>(c)];
            int8_t t = 0;
            if (w != 0) {
                if (std::fabs(w) < low) {
                    bad_data(where, "tensor is not ternary: " + cell(r, c) + " is " +
                                        std::to_string(w) + ", neither 0 nor +-" +
                                        std::to_string(alpha));
                }
                t = w > 0 ? 1 : -1;
            }
            values[r * cols + c] = t;
        }
    }
    return alpha;
}

void check_values(const int8_t* values, int64_t rows, int64_t cols, const std::string& name) {
    const int64_t n = rows * cols;
    for (int64_t i = 0; i < n; ++i) {
        if (values[i] < -1 || values[i] > 1) {
            throw Error(ErrorCode::InvalidArgument,
                        "tensor '" + name + "': value " + std::to_string(values[i]) + " at " +
                            cell(i / cols, i % cols) + " is not -1, 0 or 1");
        }
    }
}

void encode_tq(uint32_t type, const int8_t* values, int64_t rows, int64_t cols, float alpha,
               uint8_t* out) {
    const Tq1Tables& tab = tq1_tables();
    const uint16_t d = f32_to_f16(alpha);
    const int64_t blocks_per_row = cols / kTqBlock;
    const int64_t block_bytes = type == GGML_TQ1_0 ? kTq1BlockBytes : kTq2BlockBytes;
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t b = 0; b < blocks_per_row; ++b) {
            const int8_t* in = values + r * cols + b * kTqBlock;
            uint8_t* blk = out + (r * blocks_per_row + b) * block_bytes;
            bool nonzero = false;
            for (int k = 0; k < kTqBlock; ++k) nonzero |= in[k] != 0;
            if (type == GGML_TQ2_0) {
                for (int k = 0; k < kTqBlock; ++k) {
                    blk[tq2_byte(k)] |= static_cast<uint8_t>((in[k] + 1) << tq2_shift(k));
                }
                store_u16(blk + 64, nonzero ? d : 0);
            } else {
                int v[52] = {};  // base-3 number of each byte's trits
                for (int k = 0; k < kTqBlock; ++k) {
                    const Tq1Slot s = tq1_slot(k);
                    static constexpr int kPlace[5] = {81, 27, 9, 3, 1};
                    v[s.byte] += (in[k] + 1) * kPlace[s.trit];
                }
                for (int i = 0; i < 52; ++i) blk[i] = tab.encode[v[i]];
                store_u16(blk + 52, nonzero ? d : 0);
            }
        }
    }
}

void encode_i2_s(const int8_t* values, int64_t n, float alpha, uint8_t* out) {
    for (int64_t i = 0; i < n; ++i) {
        const int64_t j = i % kI2sBlock;
        out[(i / kI2sBlock) * 32 + j % 32] |=
            static_cast<uint8_t>((values[i] + 1) << (6 - 2 * (j / 32)));
    }
    store_f32(out + n / 4, alpha);
}

void encode_bitnet_t2(const int8_t* values, int64_t rows, int64_t cols, float alpha, uint8_t* out) {
    const size_t row_bytes = cpu::ternary_packed_bytes(1, static_cast<int>(cols));
    for (int64_t r = 0; r < rows; ++r) {
        cpu::pack_ternary_row(values + r * cols, static_cast<int>(cols), out + r * row_bytes);
    }
    store_f32(out + rows * row_bytes, alpha);
}

void check_decodable(uint32_t type, const std::vector<int64_t>& dims, uint64_t bytes,
                     const std::string& where) {
    if (!is_ternary_decodable(type)) {
        throw Error(ErrorCode::UnsupportedFormat,
                    where + ": type " + tensor_type_name(type) + " does not hold ternary weights");
    }
    const std::optional<uint64_t> expected = tensor_bytes(type, dims);
    if (!expected) bad_data(where, "dims are not valid for type " + tensor_type_name(type));
    if (bytes != *expected) {
        bad_data(where, std::to_string(bytes) + " bytes, type " + tensor_type_name(type) +
                            " with these dims takes " + std::to_string(*expected));
    }
}

int8_t saturate_i8(float r, float limit) {
    if (!(r == r)) return 0;  // NaN
    return static_cast<int8_t>(std::clamp(r, -limit, limit));
}

}  // namespace

MatrixShape matrix_shape(const std::vector<int64_t>& dims) {
    MatrixShape s;
    if (dims.empty()) return s;
    s.cols = dims[0];
    s.rows = 1;
    for (size_t i = 1; i < dims.size(); ++i) s.rows *= dims[i];
    return s;
}

bool is_ternary_decodable(uint32_t type) {
    return type == GGML_TQ1_0 || type == GGML_TQ2_0 || type == GGML_I2_S || type == BITNET_T2 ||
           type == GGML_F32 || type == GGML_F16 || type == GGML_BF16;
}

bool is_ternary_encodable(uint32_t type) {
    return type == GGML_TQ1_0 || type == GGML_TQ2_0 || type == GGML_I2_S || type == BITNET_T2;
}

float decode_ternary(uint32_t type, const std::vector<int64_t>& dims, const uint8_t* data,
                     uint64_t bytes, int8_t* values, const std::string& where) {
    check_decodable(type, dims, bytes, where);
    const MatrixShape m = matrix_shape(dims);
    switch (type) {
        case GGML_TQ1_0:
            return decode_tq1_0(data, m.rows, m.cols, values, where);
        case GGML_TQ2_0:
            return decode_tq2_0(data, m.rows, m.cols, values, where);
        case GGML_I2_S:
            return decode_i2_s(data, m.rows, m.cols, values, where);
        case BITNET_T2:
            return decode_bitnet_t2(data, m.rows, m.cols, values, where);
        default:
            return decode_dense(type, data, m.rows, m.cols, values, where);
    }
}

TernaryWeights decode_ternary(const TensorEntry& tensor, const std::string& origin) {
    const std::string where =
        (origin.empty() ? "" : origin + ": ") + "tensor '" + tensor.name + "'";
    check_decodable(tensor.type, tensor.dims, tensor.bytes, where);  // before allocating
    TernaryWeights w;
    const MatrixShape m = matrix_shape(tensor.dims);
    w.rows = m.rows;
    w.cols = m.cols;
    w.values.resize(static_cast<size_t>(m.rows * m.cols));
    w.alpha =
        decode_ternary(tensor.type, tensor.dims, tensor.data, tensor.bytes, w.values.data(), where);
    return w;
}

std::vector<uint8_t> encode_ternary(uint32_t type, const int8_t* values, int64_t rows, int64_t cols,
                                    float alpha, const std::string& name) {
    const auto invalid = [&](const std::string& what) {
        throw Error(ErrorCode::InvalidArgument, "tensor '" + name + "': " + what);
    };
    if (!is_ternary_encodable(type)) {
        invalid("cannot encode ternary weights as " + tensor_type_name(type));
    }
    if (rows <= 0 || cols <= 0 || cols > (1 << 30)) {
        invalid("shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
    }
    const std::optional<uint64_t> bytes = tensor_bytes(type, {cols, rows});
    if (!bytes) {
        invalid(tensor_type_name(type) + " cannot hold " + std::to_string(cols) +
                " columns (TQ1_0 / TQ2_0 need a multiple of 256, I2_S of 128)");
    }
    if (!std::isfinite(alpha) || alpha < 0) invalid("alpha " + std::to_string(alpha));
    if ((type == GGML_TQ1_0 || type == GGML_TQ2_0) &&
        !std::isfinite(f16_to_f32(f32_to_f16(alpha)))) {
        invalid("alpha " + std::to_string(alpha) + " overflows the f16 block scale");
    }
    check_values(values, rows, cols, name);
    std::vector<uint8_t> out(static_cast<size_t>(*bytes), 0);
    switch (type) {
        case GGML_TQ1_0:
        case GGML_TQ2_0:
            encode_tq(type, values, rows, cols, alpha, out.data());
            break;
        case GGML_I2_S:
            encode_i2_s(values, rows * cols, alpha, out.data());
            break;
        default:
            encode_bitnet_t2(values, rows, cols, alpha, out.data());
    }
    return out;
}

void encode_q8_0(const float* x, int64_t n, uint8_t* out) {
    for (int64_t b = 0; b < n / kQ8Block; ++b) {
        const float* in = x + b * kQ8Block;
        uint8_t* blk = out + b * kQ8BlockBytes;
        float amax = 0;
        for (int j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(in[j]));
        const float d = amax / 127;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        store_u16(blk, f32_to_f16(d));
        for (int j = 0; j < kQ8Block; ++j) {
            const int8_t q = saturate_i8(std::round(in[j] * id), 127);
            std::memcpy(blk + 2 + j, &q, 1);
        }
    }
}

void decode_q8_0(const uint8_t* in, int64_t n, float* out) {
    for (int64_t b = 0; b < n / kQ8Block; ++b) {
        const uint8_t* blk = in + b * kQ8BlockBytes;
        const float d = f16_to_f32(load_u16(blk));
        for (int j = 0; j < kQ8Block; ++j) {
            out[b * kQ8Block + j] = static_cast<float>(static_cast<int8_t>(blk[2 + j])) * d;
        }
    }
}

void decode_row_f32(uint32_t type, const uint8_t* src, int64_t n, float* out) {
    switch (type) {
        case GGML_F32:
            std::memcpy(out, src, static_cast<size_t>(n) * 4);
            return;
        case GGML_F16:
            for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_u16(src + 2 * i));
            return;
        case GGML_BF16:
            for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load_u16(src + 2 * i));
            return;
        case GGML_Q8_0:
            if (n % kQ8Block == 0) {
                decode_q8_0(src, n, out);
                return;
            }
            break;
        default:
            break;
    }
    throw Error(ErrorCode::InvalidArgument, "cannot decode " + std::to_string(n) +
                                                " values of type " + tensor_type_name(type) +
                                                " to float32");
}

void encode_row_f32(uint32_t type, const float* x, int64_t n, uint8_t* dst) {
    switch (type) {
        case GGML_F32:
            std::memcpy(dst, x, static_cast<size_t>(n) * 4);
            return;
        case GGML_F16:
            for (int64_t i = 0; i < n; ++i) store_u16(dst + 2 * i, f32_to_f16(x[i]));
            return;
        case GGML_BF16:
            for (int64_t i = 0; i < n; ++i) store_u16(dst + 2 * i, f32_to_bf16(x[i]));
            return;
        case GGML_Q8_0:
            if (n % kQ8Block == 0) {
                encode_q8_0(x, n, dst);
                return;
            }
            break;
        default:
            break;
    }
    throw Error(ErrorCode::InvalidArgument, "cannot encode " + std::to_string(n) +
                                                " float32 values as " + tensor_type_name(type));
}

uint64_t i8r_scales_offset(int64_t rows, int64_t cols) {
    return (static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols) + 3) / 4 * 4;
}

std::vector<uint8_t> encode_i8r(const float* x, int64_t rows, int64_t cols) {
    const uint64_t scales = i8r_scales_offset(rows, cols);
    std::vector<uint8_t> out(static_cast<size_t>(scales + 4 * static_cast<uint64_t>(rows)), 0);
    for (int64_t r = 0; r < rows; ++r) {
        const float* in = x + r * cols;
        float amax = 0;
        for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(in[c]));
        const float s = amax / 127;
        for (int64_t c = 0; c < cols; ++c) {
            const int8_t q = s != 0 ? saturate_i8(std::nearbyint(in[c] / s), 127) : 0;
            std::memcpy(&out[static_cast<size_t>(r * cols + c)], &q, 1);
        }
        store_f32(out.data() + scales + 4 * r, s);
    }
    return out;
}

void decode_i8r_row(const uint8_t* data, int64_t rows, int64_t cols, int64_t row, float* out) {
    const float s = load_f32(data + i8r_scales_offset(rows, cols) + 4 * row);
    const uint8_t* q = data + row * cols;
    for (int64_t c = 0; c < cols; ++c) out[c] = static_cast<float>(static_cast<int8_t>(q[c])) * s;
}

}  // namespace bitnet::gguf
