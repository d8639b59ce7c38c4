#include "runtime/kv_cache.h"

#include <cstring>

#include "core/half.h"

namespace bitnet {

KVCache::KVCache(const ModelConfig& config, int capacity, cpu::KvType type)
    : capacity_(capacity),
      type_(type),
      row_elems_(static_cast<size_t>(config.num_kv_heads) * config.head_dim),
      elem_bytes_(type == cpu::KvType::F32 ? 4 : 2),
      storage_(static_cast<size_t>(config.num_layers) * 2 * capacity * row_elems_ * elem_bytes_,
               false) {}

const void* KVCache::base(int layer, int which) const noexcept {
    const size_t plane = static_cast<size_t>(capacity_) * row_elems_ * elem_bytes_;
    return storage_.data() + (static_cast<size_t>(layer) * 2 + which) * plane;
}

void* KVCache::base(int layer, int which) noexcept {
    return const_cast<void*>(static_cast<const KVCache*>(this)->base(layer, which));
}

void KVCache::store(int layer, int pos, const float* k, const float* v) {
    const float* src[2] = {k, v};
    for (int which = 0; which < 2; ++which) {
        uint8_t* dst = static_cast<uint8_t*>(base(layer, which)) +
                       static_cast<size_t>(pos) * row_elems_ * elem_bytes_;
        switch (type_) {
            case cpu::KvType::F32:
                std::memcpy(dst, src[which], row_elems_ * 4);
                break;
            case cpu::KvType::F16: {
                uint16_t* d = reinterpret_cast<uint16_t*>(dst);
                for (size_t i = 0; i < row_elems_; ++i) d[i] = f32_to_f16(src[which][i]);
                break;
            }
            case cpu::KvType::BF16: {
                uint16_t* d = reinterpret_cast<uint16_t*>(dst);
                for (size_t i = 0; i < row_elems_; ++i) d[i] = f32_to_bf16(src[which][i]);
                break;
            }
        }
    }
}

}  // namespace bitnet
