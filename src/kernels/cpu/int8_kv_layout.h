// The layout of I8 KV caches. Rows of int8 keys and values are not kept row by row: the
// kernels' integer products (vpdpbusd, vpmaddubsw) sum four bytes of one 32-bit lane, so each
// plane is stored with the four bytes a lane sums side by side, and no kernel shuffles bytes.
// - Keys, in tiles of kInt8KeyTile positions: a 64-byte line holds four dimensions of the
//   tile's sixteen keys, so a broadcast quad of the query times a line gives sixteen partial
//   scores, one a lane, with nothing to reduce across lanes. Dimensions past head_dim, up to
//   int8_key_dims(head_dim), are zero.
// - Values, in groups of four positions: lane d of a group holds dimension d of its four
//   keys, so four keys' weights broadcast into every lane sum into each dimension at once.
// Bytes of positions a plane has not stored yet are read, and multiplied by zero weights or
// left out of the stored scores; they never reach a result.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/kernels.h"

namespace bitnet::cpu {

inline constexpr int kInt8KeyTile = 16;
inline constexpr int kInt8ValueGroup = 4;

// Key dimensions stored a position: head_dim rounded up to whole quads.
BITNET_KERNEL_INLINE static constexpr int int8_key_dims(int head_dim) {
    return (head_dim + 3) & ~3;
}

// Bytes of one tile of keys (kInt8KeyTile positions).
BITNET_KERNEL_INLINE static constexpr size_t int8_key_tile_bytes(int head_dim) {
    return static_cast<size_t>(kInt8KeyTile) * int8_key_dims(head_dim);
}

// Bytes of one group of values (kInt8ValueGroup positions).
BITNET_KERNEL_INLINE static constexpr size_t int8_value_group_bytes(int head_dim) {
    return static_cast<size_t>(kInt8ValueGroup) * head_dim;
}

// Byte of dimension d of position p in a plane of keys.
BITNET_KERNEL_INLINE static constexpr size_t int8_key_offset(int p, int d, int head_dim) {
    return static_cast<size_t>(p / kInt8KeyTile) * int8_key_tile_bytes(head_dim) +
           static_cast<size_t>(d / 4) * 64 + (p % kInt8KeyTile) * 4 + d % 4;
}

// Byte of dimension d of position p in a plane of values.
BITNET_KERNEL_INLINE static constexpr size_t int8_value_offset(int p, int d, int head_dim) {
    return static_cast<size_t>(p / kInt8ValueGroup) * int8_value_group_bytes(head_dim) +
           static_cast<size_t>(d) * 4 + p % kInt8ValueGroup;
}

// Bytes of a plane (keys or values) of `positions` positions, in whole tiles.
BITNET_KERNEL_INLINE static constexpr size_t int8_plane_bytes(int positions, int head_dim) {
    const size_t tiles = static_cast<size_t>(positions + kInt8KeyTile - 1) / kInt8KeyTile;
    return tiles * int8_key_tile_bytes(head_dim);
}

// Write the head_dim int8 values of one position into a plane of keys (padding dimensions
// included) or of values.
void store_int8_key(const int8_t* row, int head_dim, int p, int8_t* plane);
void store_int8_value(const int8_t* row, int head_dim, int p, int8_t* plane);

// KernelTable::store_int8_kv for levels without a store of their own: x quantised by
// `quantize` (the level's quantize_row_i8), then placed by store_int8_key or store_int8_value.
void store_int8_row(float (*quantize)(const float*, int, int, int8_t*, int32_t*), const float* x,
                    int head_dim, int pos, bool key, int8_t* plane, float* scale);

}  // namespace bitnet::cpu
