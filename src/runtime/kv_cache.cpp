#include "runtime/kv_cache.h"

namespace bitnet {

KVCache::KVCache(const ModelConfig& config, int capacity, cpu::KvType type)
    : capacity_(capacity),
      type_(type),
      kv_heads_(config.num_kv_heads),
      head_dim_(config.head_dim),
      elem_bytes_(cpu::kv_elem_bytes(type)),
      storage_(static_cast<size_t>(config.num_layers) * 2 * config.num_kv_heads * capacity *
                   config.head_dim * elem_bytes_,
               false),
      scales_(type == cpu::KvType::I8
                  ? static_cast<size_t>(config.num_layers) * 2 * config.num_kv_heads * capacity
                  : 0,
              false) {}

const void* KVCache::base(int layer, int which, int kv_head) const noexcept {
    const size_t head_plane = static_cast<size_t>(capacity_) * head_dim_ * elem_bytes_;
    return storage_.data() + plane(layer, which, kv_head) * head_plane;
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
            uint8_t* dst = static_cast<uint8_t*>(base(layer, which, head)) +
                           static_cast<size_t>(pos) * n * elem_bytes_;
            float* scale =
                has_scales() ? scales_.data() + scale_offset(layer, which, head) + pos : nullptr;
            kernels.store_kv_row(src[which] + head * n, head_dim_, type_, dst, scale);
        }
    }
}

}  // namespace bitnet
