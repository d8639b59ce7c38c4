// The keys and values of one sequence, per layer and KV head: [capacity][head_dim] in f32 (the
// exact mode), f16 or bf16. Allocated once when a session is created. Head-major, so that the
// attention of one head reads one contiguous run: with positions outermost a head's rows were
// 1/n_kv_heads of each row apart, which left the hardware prefetchers behind when decoding.
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
    // Keys and values of one position over all layers.
    size_t position_bytes() const noexcept { return capacity_ > 0 ? bytes() / capacity_ : 0; }
    // Elements from one position of a head to the next.
    size_t row_elements() const noexcept { return static_cast<size_t>(head_dim_); }
    // Bytes of one position of a head.
    size_t row_bytes() const noexcept { return row_elements() * elem_bytes_; }

    // Stores one position's keys and values of a layer: n_kv_heads x head_dim floats each,
    // converted by the kernels' store_kv_row.
    void store(const cpu::KernelTable& kernels, int layer, int pos, const float* k, const float* v);
    // Position 0 of a layer's keys / values of one KV head, for cpu::AttentionHeadArgs.
    const void* keys(int layer, int kv_head) const noexcept { return base(layer, 0, kv_head); }
    const void* values(int layer, int kv_head) const noexcept { return base(layer, 1, kv_head); }

  private:
    const void* base(int layer, int which, int kv_head) const noexcept;
    void* base(int layer, int which, int kv_head) noexcept;

    int capacity_;
    int length_ = 0;
    cpu::KvType type_;
    int kv_heads_;
    int head_dim_;
    size_t elem_bytes_;
    AlignedBuffer<uint8_t> storage_;
};

}  // namespace bitnet
