// The keys and values of one sequence, per layer and KV head: [capacity][head_dim] in f32 (the
// exact mode), f16 or bf16, or int8 in the tiles of kernels/cpu/int8_kv_layout.h; int8 rows have
// one float scale each, in planes of their own ([capacity] per layer, K or V, and KV head).
// Allocated once when a session is created. Head-major, so that the attention of one head reads one
// contiguous run: with positions outermost a head's rows were 1/n_kv_heads of each row apart, which
// left the hardware prefetchers behind when decoding.
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
    size_t bytes() const noexcept { return storage_.size() + scales_.size() * sizeof(float); }
    // Keys and values of one position over all layers (I8: the padding of key rows to whole
    // quads and the scales included, the tiles' padding to whole tiles not).
    size_t position_bytes() const noexcept;
    // Elements from one position of a head to the next.
    size_t row_elements() const noexcept { return static_cast<size_t>(head_dim_); }
    // Bytes of one position of a head.
    size_t row_bytes() const noexcept { return row_elements() * elem_bytes_; }
    // Bytes from the start of a head's keys (or values) to the end of position n - 1's.
    size_t head_bytes(int n) const noexcept;

    // Stores one position's keys and values of a layer: n_kv_heads x head_dim floats each,
    // converted by the kernels' store_kv_row (I8: store_int8_kv, into the planes' tiles).
    void store(const cpu::KernelTable& kernels, int layer, int pos, const float* k, const float* v);
    // Position 0 of a layer's keys / values of one KV head, for cpu::AttentionHeadArgs.
    const void* keys(int layer, int kv_head) const noexcept { return base(layer, 0, kv_head); }
    const void* values(int layer, int kv_head) const noexcept { return base(layer, 1, kv_head); }
    // Position 0 of their scales (I8), or nullptr.
    const float* key_scales(int layer, int kv_head) const noexcept {
        return has_scales() ? scales_.data() + scale_offset(layer, 0, kv_head) : nullptr;
    }
    const float* value_scales(int layer, int kv_head) const noexcept {
        return has_scales() ? scales_.data() + scale_offset(layer, 1, kv_head) : nullptr;
    }

  private:
    const void* base(int layer, int which, int kv_head) const noexcept;
    void* base(int layer, int which, int kv_head) noexcept;
    size_t plane(int layer, int which, int kv_head) const noexcept {
        return (static_cast<size_t>(layer) * 2 + which) * kv_heads_ + kv_head;
    }
    bool has_scales() const noexcept { return scales_.size() != 0; }
    size_t plane_bytes() const noexcept { return head_bytes(capacity_); }
    size_t scale_offset(int layer, int which, int kv_head) const noexcept {
        return plane(layer, which, kv_head) * capacity_;
    }

    int capacity_;
    int length_ = 0;
    cpu::KvType type_;
    int kv_heads_;
    int head_dim_;
    size_t elem_bytes_;
    AlignedBuffer<uint8_t> storage_;
    AlignedBuffer<float> scales_;
};

}  // namespace bitnet
