#include "model/weights.h"

#include <cmath>
#include <cstring>

#include "core/half.h"

namespace bitnet {

void DenseMatrix::row_to_f32(int row, float* out) const {
    const size_t offset = static_cast<size_t>(row) * cols;
    if (dtype == DType::BF16) {
        const uint16_t* src = static_cast<const uint16_t*>(data) + offset;
        for (int i = 0; i < cols; ++i) out[i] = bf16_to_f32(src[i]);
    } else {
        std::memcpy(out, static_cast<const float*>(data) + offset, sizeof(float) * cols);
    }
}

void RopeFrequencies::build(int head_dim, float theta) {
    inv_freq.resize(static_cast<size_t>(head_dim / 2));
    for (size_t i = 0; i < inv_freq.size(); ++i) {
        inv_freq[i] =
            1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
    }
}

void RopeFrequencies::angles(int pos, float* cos_out, float* sin_out) const {
    for (size_t i = 0; i < inv_freq.size(); ++i) {
        const float angle = static_cast<float>(pos) * inv_freq[i];
        cos_out[i] = std::cos(angle);
        sin_out[i] = std::sin(angle);
    }
}

}  // namespace bitnet
