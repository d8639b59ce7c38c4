// The weights of a BitNet decoder as the CPU kernels use them: BitLinear matrices repacked
// once at load into the kernel layout, norms as float32, and embedding / lm_head used straight
// from the file mapping when their dtype allows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
    int out_features() const { return view.rows; }
    int in_features() const { return view.cols; }
};

// A full-precision matrix [rows, cols], f32 or bf16; either mapped from the file or owned.
struct DenseMatrix {
    DType dtype = DType::F32;
    const void* data = nullptr;
    int rows = 0;
    int cols = 0;
    AlignedBuffer<uint8_t> owned;  // set when the file's bytes had to be converted or aligned
    void row_to_f32(int row, float* out) const;
};

struct LayerWeights {
    std::vector<float> attn_norm;      // [hidden] input_layernorm
    std::vector<float> attn_sub_norm;  // [heads * head_dim], empty without sub-norms
    std::vector<float> ffn_norm;       // [hidden] post_attention_layernorm
    std::vector<float> ffn_sub_norm;   // [intermediate], empty without sub-norms
    BitLinearWeight q, k, v, o, gate, up, down;
};

struct ModelWeights {
    DenseMatrix embedding;    // [vocab, hidden]
    DenseMatrix lm_head_own;  // [vocab, hidden] when not tied
    bool tied = false;
    std::vector<float> final_norm;  // [hidden]
    std::vector<LayerWeights> layers;
    const DenseMatrix& lm_head() const { return tied ? embedding : lm_head_own; }
};

// Rotary embedding frequencies; cos/sin are computed per token in the forward pass, which costs
// far less than a layer and needs no table sized for the longest context.
struct RopeFrequencies {
    std::vector<float> inv_freq;  // [head_dim / 2]
    void build(int head_dim, float theta);
    // cos/sin of position `pos` for every frequency, in float32 as transformers computes them.
    void angles(int pos, float* cos_out, float* sin_out) const;
};

}  // namespace bitnet
