// The weights of a BitNet decoder as the CPU kernels use them: BitLinear matrices repacked
// once at load into the kernel layout (or used as an engine GGUF stores them), norms as
// float32, and embedding / lm_head as the file stores them when their dtype allows; what is
// used as stored stays in the file mapping or is copied into huge pages (WeightMemory).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bitnet/model.h"
#include "bitnet/tensor.h"
#include "core/aligned_buffer.h"
#include "kernels/cpu/kernels.h"

namespace bitnet {

struct BitLinearWeight {
    std::string name;               // checkpoint name of the weight tensor
    AlignedBuffer<uint8_t> packed;  // kernel layout, see kernels.h
    cpu::TernaryMatrixView view;    // rows = out_features, cols = in_features
    float alpha = 1.f;              // y = dot(x_q, w_t) / s_x * alpha
    bool alpha_inside = false;      // transformers folds alpha into the weights (online mode)
    std::vector<float> input_norm;  // use_rms_norm models only: RMSNorm weight of the input
    AlignedBuffer<uint8_t> groups;  // view.groups: the matrix again in row groups, or empty
    int out_features() const { return view.rows; }
    int in_features() const { return view.cols; }
};

// Storage formats of the embedding / lm_head matrix [rows, cols]. Every format is row-major and
// byte-compatible with its GGUF tensor type, so a mapped file is used without a copy.
enum class DenseFormat : uint8_t {
    F32,   // float32
    BF16,  // bfloat16
    F16,   // IEEE half (GGUF's usual token_embd type)
    Q8_0,  // ggml Q8_0: per row cols / 32 blocks of {f16 d, int8 q[32]} (34 bytes); w = d * q
    I8R,   // int8 [rows][cols], zero bytes up to a multiple of 4, then float32 scale[rows];
           // w = scale[row] * q (the engine's compact head, GGUF type BITNET_I8R)
};
const char* dense_format_name(DenseFormat format) noexcept;
// Bytes of a [rows, cols] matrix in `format` (as GGUF stores it). Q8_0 needs cols % 32 == 0.
size_t dense_format_bytes(DenseFormat format, int rows, int cols) noexcept;

// A dense matrix [rows, cols] in one of the DenseFormats; either mapped from a file or owned.
struct DenseMatrix {
    std::string name;  // the tensor's name in its file, as TensorInfo gives it
    DenseFormat format = DenseFormat::F32;
    const void* data = nullptr;        // the format's bytes (I8R: the int8 rows)
    const float* row_scale = nullptr;  // I8R only: [rows]
    int rows = 0;
    int cols = 0;
    AlignedBuffer<uint8_t> owned;  // set when the file's bytes had to be converted or aligned
    // F32 / BF16 only: the same matrix again in the kernels' dense row groups, or empty.
    AlignedBuffer<uint8_t> groups;

    // Points data (and row_scale) into `bytes` of `size` bytes, laid out as the format says;
    // format, rows and cols must be set. Throws bitnet::Error (ShapeMismatch) naming the format
    // and shape when size is not dense_format_bytes() or Q8_0 cols is not a multiple of 32.
    void bind(const void* bytes, size_t size);
    // Row `row` as float32 (the embedding lookup); out holds cols floats.
    void row_to_f32(int row, float* out) const;
    size_t bytes() const noexcept { return dense_format_bytes(format, rows, cols); }
};

// Converts `src` to `format` in an owned buffer: exact for F32 and the widening conversions,
// round-to-nearest-even for F16/BF16, and for Q8_0 / I8R symmetric absmax quantisation
// (Q8_0 as ggml: d = max|x| / 127 per block of 32, stored as f16; I8R: scale = max|x| / 127
// per row, q = round(x / scale) in [-127, 127]).
DenseMatrix convert_dense(const DenseMatrix& src, DenseFormat format);

// Pages for a weight buffer the engine fills itself (repacked, converted or synthetic weights):
// huge pages from kHugePageMinBytes on where the OS offers them (see huge_pages.h).
Pages weight_pages(size_t bytes) noexcept;
inline AlignedBuffer<uint8_t> weight_buffer(size_t bytes, bool zero = false) {
    return AlignedBuffer<uint8_t>(bytes, zero, weight_pages(bytes));
}

// Where the kernels read a tensor they use as the file stores it.
struct PlacedWeights {
    const uint8_t* data;
    size_t mapped_bytes;  // for ModelInfo::mapped_bytes: all of them, or 0 when copied
    const char* how;      // for TensorInfo::engine_format: " (mapped)" or " (huge pages)"
};
// `bytes` at `src` stay in the file mapping or, as `memory` asks, are copied into `owned` on
// huge pages; after a copy the mapping's pages of src leave this process's resident set (the
// page cache keeps them).
PlacedWeights place_file_weights(const uint8_t* src, size_t bytes, WeightMemory memory,
                                 AlignedBuffer<uint8_t>& owned);

// Drops the whole pages of [src, src + bytes), a read-only file mapping, from this process's
// resident set once the engine holds what it needs of them (copied, decoded or repacked); the
// page cache keeps them, and a later read faults them in again.
void release_file_pages(const void* src, size_t bytes) noexcept;

// The same weights in `layout`, in an owned buffer (for conversion and synthetic models).
BitLinearWeight repack_ternary(const BitLinearWeight& w, cpu::TernaryLayout layout);

struct LayerWeights {
    std::vector<float> attn_norm;      // [hidden] input_layernorm
    std::vector<float> attn_sub_norm;  // [heads * head_dim], empty without sub-norms
    std::vector<float> ffn_norm;       // [hidden] post_attention_layernorm
    std::vector<float> ffn_sub_norm;   // [intermediate], empty without sub-norms
    BitLinearWeight q, k, v, o, gate, up, down;
    // The seven projections, in the order a layer runs them.
    std::array<BitLinearWeight*, 7> bitlinears() { return {&q, &k, &v, &o, &gate, &up, &down}; }
    std::array<const BitLinearWeight*, 7> bitlinears() const {
        return {&q, &k, &v, &o, &gate, &up, &down};
    }
};

struct ModelWeights {
    DenseMatrix embedding;    // [vocab, hidden]
    DenseMatrix lm_head_own;  // [vocab, hidden] when not tied
    bool tied = false;
    std::vector<float> final_norm;  // [hidden]
    std::vector<LayerWeights> layers;
    const DenseMatrix& lm_head() const { return tied ? embedding : lm_head_own; }
};

// Bytes of the weights held in huge-page memory (ModelInfo::huge_page_bytes).
size_t huge_page_bytes(const ModelWeights& weights) noexcept;

// Bits2 matrices of at least this many bytes that the engine holds in its own memory are
// stored in row tiles (see kernels.h): the GEMV streams them from DRAM, where a tile's rows in
// one sequential stream read at a plain read's rate. Smaller ones stay in cache between tokens.
inline constexpr size_t kTiledMinBytes = size_t{1} << 20;
// Rearranges those matrices of `weights` into row tiles, in place. Mapped weights are left as
// the file stores them.
// Returns the names of the matrices it tiled.
std::vector<std::string> tile_streamed_weights(ModelWeights& weights,
                                               size_t min_bytes = kTiledMinBytes);

// Bits2 matrices of short rows (at most kGroupedMaxColumns) and below kGroupedMaxBytes: a small
// model's, which stay in cache between tokens. Where the AVX-512 VNNI GEMV runs, each gets a copy
// in row groups (kernels.h), which that GEMV reads instead: 1.5-1.7x over the row-major rows of
// 128-512 columns, where reducing across lanes cost as much as the multiply-adds, for at most
// the matrix's bytes again (128-column rows: half, as their 2-bit rows are padded to 256
// columns and the groups only to 64). Longer rows gain little and belong to models that stream
// their weights (the 2B's 640 x 2560 key and value matrices would take 25 MB more memory).
inline constexpr size_t kGroupedMaxBytes = kTiledMinBytes;
inline constexpr int kGroupedMaxColumns = 2 * cpu::kTernaryBlock;
// Adds those copies to `weights`; returns the names of the matrices it gave one, with the bytes
// of each copy.
std::vector<std::pair<std::string, size_t>> group_cached_weights(
    ModelWeights& weights, size_t max_bytes = kGroupedMaxBytes,
    int max_columns = kGroupedMaxColumns);

// Likewise an f32 or bf16 head below max_bytes (a small model's, in cache between tokens) whose
// rows are a multiple of 16 long gets a copy in dense row groups (kernels.h), which the AVX-512
// head kernel reads instead: 1.9-2x over the row-major rows for the 1m model's 512 x 128 bf16
// head (1.2-1.4x for 4-32 activation rows), where reducing across lanes and widening bf16 took
// as long as the multiply-adds. The sums have the same bits either way. Returns the head's name
// with the bytes of the copy, or nothing when none was made.
std::optional<std::pair<std::string, size_t>> group_cached_head(
    ModelWeights& weights, size_t max_bytes = kGroupedMaxBytes);

// Rotary embedding frequencies; cos/sin are computed per token in the forward pass, which costs
// far less than a layer and needs no table sized for the longest context.
struct RopeFrequencies {
    std::vector<float> inv_freq;  // [head_dim / 2]
    void build(int head_dim, float theta);
    // cos/sin of position `pos` for every frequency, in float32 as transformers computes them.
    void angles(int pos, float* cos_out, float* sin_out) const;
};

}  // namespace bitnet
