#include "runtime/kv_cache.h"

#include "kernels/cpu/int8_kv_layout.h"

namespace bitnet {

KVCache::KVCache(const ModelConfig& config, int capacity, cpu::KvType type)
    : capacity_(capacity),
      type_(type),
      kv_heads_(config.num_kv_heads),
      head_dim_(config.head_dim),
      elem_bytes_(cpu::kv_elem_bytes(type)),
      storage_(static_cast<size_t>(config.num_layers) * 2 * config.num_kv_heads * plane_bytes(),
               false),
      scales_(type == cpu::KvType::I8
                  ? static_cast<size_t>(config.num_layers) * 2 * config.num_kv_heads * capacity
                  : 0,
              false) {}

size_t KVCache::position_bytes() const noexcept {
    const size_t plane = plane_bytes();
    const size_t planes = plane > 0 ? storage_.size() / plane : 0;  // layers x K, V x KV heads
    if (type_ != cpu::KvType::I8) return planes * row_bytes();
    return planes / 2 * (cpu::int8_key_dims(head_dim_) + head_dim_) + planes * sizeof(float);
}

size_t KVCache::head_bytes(int n) const noexcept {
    if (type_ == cpu::KvType::I8) return cpu::int8_plane_bytes(n, head_dim_);
    return static_cast<size_t>(n) * row_bytes();
}

const void* KVCache::base(int layer, int which, int kv_head) const noexcept {
    return storage_.data() + plane(layer, which, kv_head) * plane_bytes();
}

void* KVCache::base(int layer, int which, int kv_head) noexcept {
    return const_cast<void*>(static_cast<const KVCache*>(this)->base(layer, which, kv_head));
}

void KVCache::store(const cpu::KernelTable& kernels, int layer, int pos, const float* k,
                    const float* v) {
    const float* src[2] = {k, v};
    const size_t n = static_cast<size_t>(head_dim_);
    for (int which = 0; which < 2; ++which) {
        for (int head = 0; head < kv_heads_; ++head) {
            uint8_t* plane = static_cast<uint8_t*>(base(layer, which, head));
            if (type_ != cpu::KvType::I8) {
                kernels.store_kv_row(src[which] + head * n, head_dim_, type_,
                                     plane + static_cast<size_t>(pos) * row_bytes(), nullptr);
                continue;
            }
            kernels.store_int8_kv(src[which] + head * n, head_dim_, pos, which == 0,
                                  reinterpret_cast<int8_t*>(plane),
                                  scales_.data() + scale_offset(layer, which, head) + pos);
        }
    }
}

}  // namespace bitnet
