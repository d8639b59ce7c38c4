// The keys and values of one sequence, per layer: [capacity][n_kv_heads][head_dim] in f32 (the
// exact mode), f16 or bf16. Allocated once when a session is created.
#pragma once

#include <cstdint>

#include "bitnet/model.h"
#include "core/aligned_buffer.h"
#include "kernels/cpu/kernels.h"

namespace bitnet {

class KVCache {
  public:
    KVCache(const ModelConfig& config, int capacity, cpu::KvType type);

    int capacity() const noexcept { return capacity_; }
    int length() const noexcept { return length_; }
    void set_length(int n) noexcept { length_ = n; }
    cpu::KvType type() const noexcept { return type_; }
    size_t bytes() const noexcept { return storage_.size(); }
    size_t row_elements() const noexcept { return row_elems_; }

    // Stores one position's keys and values (row_elements() floats each) of a layer.
    void store(int layer, int pos, const float* k, const float* v);
    // Base of a layer's keys / values, for cpu::AttentionHeadArgs.
    const void* keys(int layer) const noexcept { return base(layer, 0); }
    const void* values(int layer) const noexcept { return base(layer, 1); }

  private:
    const void* base(int layer, int which) const noexcept;
    void* base(int layer, int which) noexcept;

    int capacity_;
    int length_ = 0;
    cpu::KvType type_;
    size_t row_elems_;
    size_t elem_bytes_;
    AlignedBuffer<uint8_t> storage_;
};

}  // namespace bitnet
