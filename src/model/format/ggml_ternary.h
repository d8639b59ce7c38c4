// Codecs between plain values and the tensor layouts of GGUF files: ternary weights
// (w = t * alpha, t in {-1, 0, 1}, one alpha per tensor) in ggml's TQ1_0 / TQ2_0, microsoft/
// BitNet's I2_S and the engine's BITNET_T2, or dense F32/F16/BF16; and the float layouts Q8_0,
// F16, BF16, F32 and the engine's BITNET_I8R. Byte layouts follow ggml / bitnet.cpp exactly, so
// encoding values decoded from their files reproduces the files' bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/format/gguf.h"

namespace bitnet::gguf {

// A GGUF tensor seen as a matrix: cols = dims[0] (innermost), rows = product of the others.
struct MatrixShape {
    int64_t rows = 0;
    int64_t cols = 0;
};
MatrixShape matrix_shape(const std::vector<int64_t>& dims);

// Types decode_ternary() reads: TQ1_0, TQ2_0, I2_S, BITNET_T2, F32, F16, BF16.
bool is_ternary_decodable(uint32_t type);
// Types encode_ternary() writes: TQ1_0, TQ2_0, I2_S, BITNET_T2.
bool is_ternary_encodable(uint32_t type);

struct TernaryWeights {
    int64_t rows = 0;
    int64_t cols = 0;
    std::vector<int8_t> values;  // rows * cols, row-major, each -1, 0 or +1
    float alpha = 0;             // 0 when every value is 0
};

// Decodes a ternary tensor of `type` and GGUF `dims` from `data` (exactly
// tensor_bytes(type, dims) bytes, checked) into `values` (rows * cols int8) and returns alpha.
// Block types must use one scale for every block holding a nonzero weight; dense types must
// hold only 0 and +-alpha (alpha = max |w|, within the type's rounding). Codes without a
// meaning, non-ternary data, negative or non-finite scales throw bitnet::Error (ParseError)
// whose message starts with `where` (e.g. "model.gguf: tensor 'blk.0.attn_q.weight'").
float decode_ternary(uint32_t type, const std::vector<int64_t>& dims, const uint8_t* data,
                     uint64_t bytes, int8_t* values, const std::string& where);
// The same for a tensor of a parsed file; `origin` (the file path) prefixes errors.
TernaryWeights decode_ternary(const TensorEntry& tensor, const std::string& origin = "");

// Encodes rows x cols ternary `values` (each -1, 0, 1) with scale `alpha` (finite, >= 0) into
// `type`'s layout for GGUF dims {cols, rows}: TQ1_0 / TQ2_0 as llama.cpp's reference
// quantizer writes w = t * alpha (d = alpha as f16 in every block holding a nonzero, 0 in
// all-zero blocks; cols % 256 == 0), I2_S as the x86 bitnet.cpp build (cols % 128 == 0; the 28
// bytes after the f32 scale are zero), BITNET_T2 with cpu::pack_ternary_row (64 trailing
// bytes, f32 alpha first, the rest zero). Bad arguments throw bitnet::Error (InvalidArgument)
// naming `name`.
std::vector<uint8_t> encode_ternary(uint32_t type, const int8_t* values, int64_t rows, int64_t cols,
                                    float alpha, const std::string& name = "");

// Q8_0: blocks of 32 values, each an f16 d = amax / 127 then 32 int8 q = round(x / d)
// (ggml's reference quantizer). n % 32 == 0; `out` holds n / 32 * 34 bytes.
void encode_q8_0(const float* x, int64_t n, uint8_t* out);
void decode_q8_0(const uint8_t* in, int64_t n, float* out);

// n consecutive values of a float-like type (F32, F16, BF16, Q8_0 with n % 32 == 0 and `src`
// at a block start) to/from float32; `src`/`dst` need no alignment. Other types throw
// bitnet::Error (InvalidArgument).
void decode_row_f32(uint32_t type, const uint8_t* src, int64_t n, float* out);
void encode_row_f32(uint32_t type, const float* x, int64_t n, uint8_t* dst);

// BITNET_I8R: rows * cols int8 (row-major), zero padding to a multiple of 4 bytes, then one
// f32 scale per row; row r is q * scale[r]. Encoding per row: s = amax / 127,
// q = round_half_even(x / s) (q = 0, s = 0 for an all-zero row).
uint64_t i8r_scales_offset(int64_t rows, int64_t cols);
std::vector<uint8_t> encode_i8r(const float* x, int64_t rows, int64_t cols);
void decode_i8r_row(const uint8_t* data, int64_t rows, int64_t cols, int64_t row, float* out);

}  // namespace bitnet::gguf
