// The tiles of int8 KV caches (kernels/cpu/int8_kv_layout.h): where each byte goes, the padding,
// and the cache storing positions there.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "kernels/cpu/int8_kv_layout.h"
#include "kernels/cpu/kernels.h"
#include "runtime/kv_cache.h"

namespace bitnet::cpu {
namespace {

std::vector<int8_t> random_row(int n, std::mt19937& rng) {
    std::uniform_int_distribution<int> byte(-127, 127);
    std::vector<int8_t> row(static_cast<size_t>(n));
    for (int8_t& b : row) b = static_cast<int8_t>(byte(rng));
    return row;
}

// Every (position, dimension) has a byte of its own within the plane, and the stores put the
// row's values there; a key's padding dimensions are zero, and nothing else is written.
TEST(Int8KvLayout, EachPositionLandsWhereItsOffsetsSay) {
    std::mt19937 rng(7);
    for (int head_dim : {1, 2, 6, 30, 32, 40, 128}) {
        const int positions = 37;  // three tiles, the last one partly used
        const size_t bytes = int8_plane_bytes(positions, head_dim);
        ASSERT_EQ(bytes % 64, 0u) << "head_dim=" << head_dim;
        std::vector<int8_t> keys(bytes, 99), values(bytes, 99);
        std::vector<std::vector<int8_t>> rows;
        std::set<size_t> key_bytes, value_bytes;
        for (int p = 0; p < positions; ++p) {
            rows.push_back(random_row(head_dim, rng));
            store_int8_key(rows.back().data(), head_dim, p, keys.data());
            store_int8_value(rows.back().data(), head_dim, p, values.data());
            for (int d = 0; d < int8_key_dims(head_dim); ++d) {
                const size_t at = int8_key_offset(p, d, head_dim);
                ASSERT_LT(at, bytes);
                ASSERT_TRUE(key_bytes.insert(at).second) << "key byte used twice: " << at;
            }
            for (int d = 0; d < head_dim; ++d) {
                const size_t at = int8_value_offset(p, d, head_dim);
                ASSERT_LT(at, bytes);
                ASSERT_TRUE(value_bytes.insert(at).second) << "value byte used twice: " << at;
            }
        }
        for (int p = 0; p < positions; ++p) {
            for (int d = 0; d < int8_key_dims(head_dim); ++d) {
                const int8_t want = d < head_dim ? rows[p][d] : int8_t{0};
                ASSERT_EQ(keys[int8_key_offset(p, d, head_dim)], want)
                    << "head_dim=" << head_dim << " p=" << p << " d=" << d;
            }
            for (int d = 0; d < head_dim; ++d) {
                ASSERT_EQ(values[int8_value_offset(p, d, head_dim)], rows[p][d])
                    << "head_dim=" << head_dim << " p=" << p << " d=" << d;
            }
        }
        for (size_t i = 0; i < bytes; ++i) {
            if (!key_bytes.count(i)) {
                ASSERT_EQ(keys[i], 99) << "stray key byte " << i;
            }
            if (!value_bytes.count(i)) {
                ASSERT_EQ(values[i], 99) << "stray value byte " << i;
            }
        }
    }
}

// A line of keys holds four dimensions of sixteen positions; a value lane, four positions of
// one dimension (what the kernels' integer products sum).
TEST(Int8KvLayout, LinesAndLanesHoldWhatTheKernelsSum) {
    EXPECT_EQ(int8_key_offset(0, 4, 32), 64u);
    EXPECT_EQ(int8_key_offset(15, 3, 32), 63u);
    EXPECT_EQ(int8_key_offset(16, 0, 32), 512u);
    EXPECT_EQ(int8_key_offset(17, 5, 30), 16u * 32 + 64 + 4 + 1);
    EXPECT_EQ(int8_value_offset(3, 0, 32), 3u);
    EXPECT_EQ(int8_value_offset(2, 5, 32), 22u);
    EXPECT_EQ(int8_value_offset(4, 0, 32), 128u);
    EXPECT_EQ(int8_plane_bytes(1, 32), 512u);
    EXPECT_EQ(int8_plane_bytes(16, 32), 512u);
    EXPECT_EQ(int8_plane_bytes(17, 30), 1024u);
}

// Every level's store_int8_kv writes the bytes and the scale that quantising the row with the
// scalar level and storing it with the layout's functions writes, and no other byte.
TEST(Int8KvLayout, EveryLevelStoresAsTheScalarLevel) {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-3.f, 3.f);
    for (Isa isa : supported_isas()) {
        const KernelTable& k = kernels(isa);
        for (int head_dim : {1, 6, 20, 32, 40, 128, 600}) {
            const int positions = 21;
            const size_t bytes = int8_plane_bytes(positions, head_dim);
            for (bool key : {true, false}) {
                std::vector<int8_t> got(bytes, -77), want(bytes, -77);
                for (int p = 0; p < positions; ++p) {
                    std::vector<float> x(static_cast<size_t>(head_dim));
                    for (float& v : x) v = u(rng);
                    float got_scale = 0.f, want_scale = 0.f;
                    k.store_int8_kv(x.data(), head_dim, p, key, got.data(), &got_scale);
                    std::vector<int8_t> row(static_cast<size_t>(head_dim));
                    scalar_kernels().store_kv_row(x.data(), head_dim, KvType::I8, row.data(),
                                                  &want_scale);
                    if (key) {
                        store_int8_key(row.data(), head_dim, p, want.data());
                    } else {
                        store_int8_value(row.data(), head_dim, p, want.data());
                    }
                    ASSERT_EQ(got_scale, want_scale) << k.name << " p=" << p;
                }
                for (size_t i = 0; i < bytes; ++i) {
                    ASSERT_EQ(got[i], want[i]) << k.name << " head_dim=" << head_dim
                                               << (key ? " keys" : " values") << " byte " << i;
                }
            }
        }
    }
}

// The cache quantises each head's row and places it in its plane, with any level's kernels; the
// scales follow, and a key's padding dimensions are zero.
TEST(Int8KvLayout, CacheStoresRowsInTiles) {
    for (Isa isa : supported_isas()) {
        const KernelTable& k = kernels(isa);
        for (int head_dim : {20, 30}) {
            ModelConfig c;
            c.num_layers = 2;
            c.num_kv_heads = 3;
            c.head_dim = head_dim;
            const int capacity = 21;
            KVCache cache(c, capacity, KvType::I8);
            std::mt19937 rng(3);
            std::uniform_real_distribution<float> u(-2.f, 2.f);
            const size_t n = static_cast<size_t>(c.num_kv_heads) * head_dim;
            for (int pos : {0, 5, 16, 20}) {
                std::vector<float> kf(n), vf(n);
                for (float& x : kf) x = u(rng);
                for (float& x : vf) x = u(rng);
                cache.store(k, 1, pos, kf.data(), vf.data());
                for (int h = 0; h < c.num_kv_heads; ++h) {
                    for (int which = 0; which < 2; ++which) {
                        const float* src = (which == 0 ? kf.data() : vf.data()) + h * head_dim;
                        std::vector<int8_t> row(static_cast<size_t>(head_dim));
                        float scale = 0.f;
                        scalar_kernels().store_kv_row(src, head_dim, KvType::I8, row.data(),
                                                      &scale);
                        const int8_t* plane = static_cast<const int8_t*>(
                            which == 0 ? cache.keys(1, h) : cache.values(1, h));
                        const float* scales =
                            which == 0 ? cache.key_scales(1, h) : cache.value_scales(1, h);
                        EXPECT_EQ(scales[pos], scale) << k.name << " pos=" << pos << " head=" << h;
                        const int dims = which == 0 ? int8_key_dims(head_dim) : head_dim;
                        for (int d = 0; d < dims; ++d) {
                            const size_t at = which == 0 ? int8_key_offset(pos, d, head_dim)
                                                         : int8_value_offset(pos, d, head_dim);
                            ASSERT_EQ(plane[at], d < head_dim ? row[d] : int8_t{0})
                                << k.name << " head_dim=" << head_dim << " pos=" << pos
                                << " head=" << h << " which=" << which << " d=" << d;
                        }
                    }
                }
            }
            EXPECT_EQ(cache.head_bytes(capacity), int8_plane_bytes(capacity, head_dim));
            // Per position: keys padded to whole quads, values, and a scale each.
            EXPECT_EQ(cache.position_bytes(),
                      static_cast<size_t>(c.num_layers * c.num_kv_heads) *
                          (int8_key_dims(head_dim) + head_dim + 2 * sizeof(float)));
        }
    }
}

}  // namespace
}  // namespace bitnet::cpu
