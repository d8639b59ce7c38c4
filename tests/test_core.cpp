// Unit tests of the core pieces: the activation arena, the thread pool, bf16/f16 conversions,
// plain tensors and memory-mapped files.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bitnet/error.h"
#include "bitnet/tensor.h"
#include "core/arena.h"
#include "core/half.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"

namespace bitnet::test {
namespace {

namespace fs = std::filesystem;

float f32_of(uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
uint32_t bits_of(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}

// ---- Arena ------------------------------------------------------------------------------

TEST(CoreArenaTest, AllocationsAreAlignedAndDisjoint) {
    Arena arena;
    std::vector<std::pair<uint8_t*, size_t>> blocks;
    for (size_t size : {1, 3, 63, 64, 65, 100, 4096, 12345, 0, 7}) {
        auto* p = static_cast<uint8_t*>(arena.allocate(size));
        ASSERT_NE(p, nullptr);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << size;
        std::memset(p, static_cast<int>(blocks.size()), size);
        blocks.emplace_back(p, size);
    }
    // Every allocation still holds its own fill: none overlaps another.
    for (size_t i = 0; i < blocks.size(); ++i) {
        for (size_t j = 0; j < blocks[i].second; ++j) {
            ASSERT_EQ(blocks[i].first[j], static_cast<uint8_t>(i)) << "allocation " << i;
        }
    }
    const ArenaStats s = arena.stats();
    EXPECT_EQ(s.used_bytes % 64, 0u);
    EXPECT_GE(s.used_bytes, 1u + 3 + 63 + 64 + 65 + 100 + 4096 + 12345 + 7);
    EXPECT_LE(s.used_bytes, s.capacity_bytes);
    double* d = arena.allocate_array<double>(3);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(d) % 64, 0u);
}

TEST(CoreArenaTest, ResetReusesMemoryWithoutNewBlocks) {
    Arena arena;
    const size_t sizes[] = {1000, 50000, 3, 200000, 64, 777};
    auto cycle = [&] {
        std::vector<void*> ptrs;
        for (size_t s : sizes) ptrs.push_back(arena.allocate(s));
        arena.reset();
        return ptrs;
    };
    const std::vector<void*> first = cycle();
    const ArenaStats after_first = arena.stats();
    EXPECT_EQ(after_first.used_bytes, 0u);
    EXPECT_GE(after_first.block_allocations, 1u);
    for (int i = 0; i < 200; ++i) {
        const std::vector<void*> again = cycle();
        ASSERT_EQ(arena.stats().block_allocations, after_first.block_allocations) << "cycle " << i;
        ASSERT_EQ(arena.stats().capacity_bytes, after_first.capacity_bytes);
        ASSERT_EQ(again, first) << "the same sizes should get the same addresses";
    }
}

TEST(CoreArenaTest, GrowsThenCoalescesIntoOneBlock) {
    Arena arena;
    const size_t half_mb = 512 * 1024;
    // The first block is 1 MiB; the third half-megabyte forces a second block.
    for (int i = 0; i < 3; ++i) arena.allocate(half_mb);
    ArenaStats s = arena.stats();
    EXPECT_EQ(s.block_allocations, 2u);
    EXPECT_GE(s.capacity_bytes, 3 * half_mb);
    EXPECT_EQ(s.peak_bytes, 3 * half_mb);
    const size_t grown = s.capacity_bytes;

    arena.reset();  // replaces both blocks with one that fits the whole step
    s = arena.stats();
    EXPECT_EQ(s.block_allocations, 3u);
    EXPECT_GE(s.capacity_bytes, 3 * half_mb);
    EXPECT_LE(s.capacity_bytes, grown);

    // From now on the same step fits in the one block.
    for (int cycle = 0; cycle < 20; ++cycle) {
        auto* a = static_cast<uint8_t*>(arena.allocate(half_mb));
        auto* b = static_cast<uint8_t*>(arena.allocate(half_mb));
        auto* c = static_cast<uint8_t*>(arena.allocate(half_mb));
        EXPECT_EQ(b, a + half_mb);  // contiguous in a single block
        EXPECT_EQ(c, b + half_mb);
        arena.reset();
    }
    EXPECT_EQ(arena.stats().block_allocations, 3u);
    EXPECT_EQ(arena.stats().peak_bytes, 3 * half_mb);
}

TEST(CoreArenaTest, ReserveAvoidsLaterAllocations) {
    Arena arena;
    arena.reserve(4 << 20);
    const size_t blocks = arena.stats().block_allocations;
    EXPECT_GE(arena.stats().capacity_bytes, size_t{4} << 20);
    for (int i = 0; i < 4; ++i) arena.allocate(1 << 20);
    arena.reset();
    arena.reserve(1 << 20);  // smaller than what it holds: nothing to do
    EXPECT_EQ(arena.stats().block_allocations, blocks);
    arena.allocate(10);
    EXPECT_TRUE([&] {
        try {
            arena.reserve(64 << 20);  // live allocations: refused, not a dangling pointer
        } catch (const Error& e) {
            return e.code() == ErrorCode::Internal;
        }
        return false;
    }());
}

TEST(CoreArenaTest, LimitGivesOutOfMemoryError) {
    Arena arena(1536 * 1024);
    EXPECT_EQ(arena.stats().limit_bytes, 1536u * 1024);
    arena.allocate(100);  // the first 1 MiB block
    try {
        arena.allocate(1 << 20);  // needs a second block past the limit
        FAIL() << "expected OutOfMemory";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::OutOfMemory);
        EXPECT_NE(std::string(e.what()).find("1572864"), std::string::npos) << e.what();
    }
    EXPECT_LE(arena.stats().capacity_bytes, 1536u * 1024);
    // After the failed step is reset, the arena serves requests that fit again.
    arena.reset();
    EXPECT_NO_THROW(arena.allocate(1000));

    // A limit below the arena's usual first block: requests that fit the limit are served.
    Arena small(64 * 1024);
    EXPECT_NO_THROW(small.allocate(1000));
    EXPECT_NO_THROW(small.allocate(20000));
    EXPECT_LE(small.stats().capacity_bytes, 64u * 1024);
    try {
        small.allocate(100 * 1024);
        ADD_FAILURE() << "expected OutOfMemory past the 64 KiB limit";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::OutOfMemory);
    }
}

// ---- ThreadPool -------------------------------------------------------------------------

TEST(CoreThreadPoolTest, CoversEveryIndexExactlyOnce) {
    for (int threads : {1, 2, 3, 4, 7}) {
        ThreadPool pool(threads);
        EXPECT_EQ(pool.size(), threads);
        for (int64_t n : {0, 1, 2, 3, 5, 6, 7, 8, 63, 64, 65, 1000, 1001}) {
            for (int64_t grain : {0, 1, 2, 3, 7, 64, 1000, 5000}) {
                std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
                std::atomic<int> pieces{0};
                std::atomic<bool> bad_piece{false};
                pool.parallel_for(n, grain, [&](int64_t begin, int64_t end) {
                    ++pieces;
                    const int64_t g = std::max<int64_t>(grain, 1);
                    if (begin < 0 || end > n || begin >= end || begin % g != 0) bad_piece = true;
                    for (int64_t i = begin; i < end; ++i) ++hits[static_cast<size_t>(i)];
                });
                SCOPED_TRACE("threads " + std::to_string(threads) + " n " + std::to_string(n) +
                             " grain " + std::to_string(grain));
                EXPECT_FALSE(bad_piece);
                EXPECT_LE(pieces.load(), threads);
                if (n == 0) {
                    EXPECT_EQ(pieces.load(), 0);
                }
                for (int64_t i = 0; i < n; ++i) {
                    ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "index " << i;
                }
            }
        }
    }
}

TEST(CoreThreadPoolTest, UsesSeveralThreadsWhenThereIsWork) {
    ThreadPool pool(4);
    std::mutex m;
    std::set<std::thread::id> ids;
    pool.parallel_for(4, 1, [&](int64_t, int64_t) {
        std::lock_guard<std::mutex> lock(m);
        ids.insert(std::this_thread::get_id());
    });
    EXPECT_EQ(ids.size(), 4u);  // one piece per thread, each on its own thread
}

TEST(CoreThreadPoolTest, PropagatesExceptionsAfterEveryPieceFinished) {
    ThreadPool pool(4);
    for (int64_t thrower : {0, 250, 999}) {  // the caller's piece and the workers' pieces
        std::atomic<int> finished{0};
        try {
            pool.parallel_for(1000, 1, [&](int64_t begin, int64_t end) {
                if (begin <= thrower && thrower < end) {
                    throw Error(ErrorCode::InvalidArgument, "piece " + std::to_string(begin));
                }
                ++finished;
            });
            FAIL() << "expected the exception of the piece holding " << thrower;
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
        }
        EXPECT_EQ(finished.load(), 3) << "the other pieces run to completion";
    }
    // A plain std::exception passes through too, and the pool stays usable.
    EXPECT_THROW(pool.parallel_for(8, 1, [](int64_t, int64_t) { throw std::logic_error("x"); }),
                 std::logic_error);
    std::atomic<int64_t> sum{0};
    pool.parallel_for(100, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) sum += i;
    });
    EXPECT_EQ(sum.load(), 4950);
}

TEST(CoreThreadPoolTest, ConcurrentCallersAreSerializedCorrectly) {
    ThreadPool pool(3);
    std::atomic<int> failures{0};
    auto caller = [&](int64_t seed) {
        for (int iter = 0; iter < 300; ++iter) {
            const int64_t n = 1 + (seed * 131 + iter * 17) % 513;
            std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
            pool.parallel_for(n, 1 + iter % 5, [&](int64_t b, int64_t e) {
                for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
            });
            for (const auto& h : hits) {
                if (h.load() != 1) ++failures;
            }
        }
    };
    std::thread a(caller, 1);
    std::thread b(caller, 2);
    caller(3);
    a.join();
    b.join();
    EXPECT_EQ(failures.load(), 0);
}

TEST(CoreThreadPoolTest, NonPositiveSizeMeansTheCallerAlone) {
    ThreadPool pool(0);
    EXPECT_EQ(pool.size(), 1);
    int calls = 0;
    pool.parallel_for(10, 1, [&](int64_t b, int64_t e) {
        ++calls;
        EXPECT_EQ(b, 0);
        EXPECT_EQ(e, 10);
    });
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(ThreadPool(-3).size(), 1);
}

// ---- half.h -----------------------------------------------------------------------------

TEST(CoreHalfTest, Bf16KnownBitPatterns) {
    EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
    EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
    EXPECT_EQ(f32_to_bf16(0.0f), 0x0000);
    EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
    // Round to nearest, ties to even.
    EXPECT_EQ(f32_to_bf16(f32_of(0x3f808000)), 0x3f80);  // tie, 0x3f80 even
    EXPECT_EQ(f32_to_bf16(f32_of(0x3f818000)), 0x3f82);  // tie, 0x3f81 odd: up
    EXPECT_EQ(f32_to_bf16(f32_of(0x3f808001)), 0x3f81);  // above the tie
    EXPECT_EQ(f32_to_bf16(f32_of(0x3f807fff)), 0x3f80);  // below the tie
    EXPECT_EQ(f32_to_bf16(f32_of(0x00018000)), 0x0002);  // subnormal tie, odd: up
    EXPECT_EQ(f32_to_bf16(f32_of(0x00010000)), 0x0001);  // subnormal, exact
    // Infinities, overflow by rounding, NaN (quiet and signalling stay NaN).
    EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
    EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
    EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
    EXPECT_EQ(f32_to_bf16(f32_of(0x7f7f7fff)), 0x7f7f);
    for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xffc00000u, 0x7fffffffu, 0xff800001u}) {
        const uint16_t h = f32_to_bf16(f32_of(nan));
        EXPECT_EQ(h & 0x7f80, 0x7f80) << std::hex << nan;
        EXPECT_NE(h & 0x007f, 0) << std::hex << nan << " became infinity";
        EXPECT_EQ(h & 0x8000, (nan >> 16) & 0x8000) << "sign of " << std::hex << nan;
    }
    EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
    EXPECT_EQ(bits_of(bf16_to_f32(0x0001)), 0x00010000u);
    EXPECT_TRUE(std::isnan(bf16_to_f32(0x7fc1)));
}

TEST(CoreHalfTest, F16KnownBitPatterns) {
    EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
    EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
    EXPECT_EQ(f32_to_f16(0.5f), 0x3800);
    EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
    EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);   // largest finite
    EXPECT_EQ(f32_to_f16(65519.99f), 0x7bff);  // below the tie to 65536
    EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);   // tie rounds to even: inf
    EXPECT_EQ(f32_to_f16(1e10f), 0x7c00);
    EXPECT_EQ(f32_to_f16(-1e10f), 0xfc00);
    EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f), 0x3c00);             // tie, even: down
    EXPECT_EQ(f32_to_f16(1.0f + 0x3p-11f), 0x3c02);             // tie, odd: up
    EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);  // above the tie
    // Subnormals: 2^-24 is the smallest; ties round to even, also into the normal range.
    EXPECT_EQ(f32_to_f16(0x1p-24f), 0x0001);
    EXPECT_EQ(f32_to_f16(0x1p-25f), 0x0000);
    EXPECT_EQ(f32_to_f16(0x1.8p-25f), 0x0001);
    EXPECT_EQ(f32_to_f16(0x3p-25f), 0x0002);
    EXPECT_EQ(f32_to_f16(0x1p-14f), 0x0400);            // smallest normal
    EXPECT_EQ(f32_to_f16(1023 * 0x1p-24f), 0x03ff);     // largest subnormal
    EXPECT_EQ(f32_to_f16(1023.5f * 0x1p-24f), 0x0400);  // tie into the normals
    EXPECT_EQ(f32_to_f16(-0x1p-24f), 0x8001);
    EXPECT_EQ(f32_to_f16(1e-30f), 0x0000);
    EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::infinity()), 0x7c00);
    const uint16_t nan = f32_to_f16(std::numeric_limits<float>::quiet_NaN());
    EXPECT_EQ(nan & 0x7c00, 0x7c00);
    EXPECT_NE(nan & 0x03ff, 0);
    const uint16_t snan = f32_to_f16(f32_of(0x7f800001u));  // signalling NaN stays NaN
    EXPECT_EQ(snan & 0x7c00, 0x7c00);
    EXPECT_NE(snan & 0x03ff, 0);

    EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);
    EXPECT_EQ(f16_to_f32(0x03ff), 1023 * 0x1p-24f);
    EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
    EXPECT_EQ(f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
    EXPECT_EQ(f16_to_f32(0x8000), 0.0f);
    EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
    EXPECT_TRUE(std::isnan(f16_to_f32(0xfc01)));
}

TEST(CoreHalfTest, AllF16ValuesRoundTripExactly) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const uint16_t bits = static_cast<uint16_t>(h);
        const float f = f16_to_f32(bits);
        const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
        if (exp == 31 && mant != 0) {
            ASSERT_TRUE(std::isnan(f)) << std::hex << h;
            const uint16_t back = f32_to_f16(f);
            ASSERT_TRUE((back & 0x7c00) == 0x7c00 && (back & 0x3ff) != 0) << std::hex << h;
            continue;
        }
        // The value from first principles.
        const float magnitude =
            exp == 31  ? std::numeric_limits<float>::infinity()
            : exp == 0 ? std::ldexp(static_cast<float>(mant), -24)
                       : std::ldexp(static_cast<float>(1024 + mant), static_cast<int>(exp) - 25);
        const float expected = (h & 0x8000) ? -magnitude : magnitude;
        ASSERT_EQ(bits_of(f), bits_of(expected)) << std::hex << h;
        ASSERT_EQ(f32_to_f16(f), bits) << std::hex << h;
    }
}

TEST(CoreHalfTest, AllBf16ValuesRoundTripExactly) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = bf16_to_f32(static_cast<uint16_t>(h));
        ASSERT_EQ(bits_of(f), h << 16);
        if (std::isnan(f)) continue;
        ASSERT_EQ(f32_to_bf16(f), h) << std::hex << h;
    }
}

// Rounding of many float32 values: the result is a nearest neighbour, and even on a tie.
template <typename ToHalf, typename FromHalf>
void check_nearest_even(ToHalf to_half, FromHalf from_half, float overflow_tie) {
    for (uint64_t b = 0; b < 0x80000000ull; b += 40009) {
        for (uint32_t sign : {0u, 0x80000000u}) {
            const float x = f32_of(static_cast<uint32_t>(b) | sign);
            if (std::isnan(x)) continue;
            const uint16_t h = to_half(x);
            const double v = from_half(h);
            if (std::fabs(x) >= overflow_tie) {
                ASSERT_TRUE(std::isinf(v)) << x;
                continue;
            }
            ASSERT_TRUE(std::isfinite(v)) << x;
            const double err = std::fabs(static_cast<double>(x) - v);
            // Neighbours of the same sign (one step toward and away from zero).
            for (int step : {-1, 1}) {
                const int mag = (h & 0x7fff) + step;
                if (mag < 0) continue;
                const double n = from_half(static_cast<uint16_t>((h & 0x8000) | mag));
                if (!std::isfinite(n)) continue;
                const double nerr = std::fabs(static_cast<double>(x) - n);
                ASSERT_LE(err, nerr) << "x " << x << " -> " << std::hex << h;
                if (err == nerr) {
                    ASSERT_EQ(h & 1, 0) << "tie not to even: x " << x;
                }
            }
        }
    }
}

TEST(CoreHalfTest, RoundsToNearestEven) {
    check_nearest_even(f32_to_f16, f16_to_f32, 65520.0f);
    check_nearest_even(f32_to_bf16, bf16_to_f32, f32_of(0x7f7f8000));
}

// ---- Tensor -----------------------------------------------------------------------------

TEST(CoreTensorTest, ShapeNumelAndBytes) {
    Tensor t(DType::F32, {2, 3, 4});
    EXPECT_EQ(t.rank(), 3u);
    EXPECT_EQ(t.numel(), 24);
    EXPECT_EQ(t.nbytes(), 96u);
    EXPECT_EQ(t.dim(1), 3);
    EXPECT_EQ(t.shape_string(), "[2, 3, 4]");
    EXPECT_FALSE(t.empty());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
    for (int i = 0; i < 24; ++i) EXPECT_EQ(t.data_as<float>()[i], 0.f);  // zero-filled
    Tensor b(DType::BF16, {5});
    EXPECT_EQ(b.nbytes(), 10u);
    Tensor scalar(DType::I32, {});
    EXPECT_EQ(scalar.numel(), 1);
    EXPECT_EQ(scalar.nbytes(), 4u);
    Tensor none(DType::U8, {0, 7});
    EXPECT_EQ(none.numel(), 0);
    EXPECT_TRUE(Tensor().empty());
    EXPECT_EQ(dtype_size(DType::Ternary2), 0u);
    EXPECT_STREQ(dtype_name(DType::BF16), "bf16");
}

TEST(CoreTensorTest, BadShapesAndAccessThrow) {
    auto code_of = [](auto&& f) {
        try {
            f();
        } catch (const Error& e) {
            return static_cast<int>(e.code());
        }
        return -1;
    };
    const int invalid = static_cast<int>(ErrorCode::InvalidArgument);
    Tensor t(DType::F32, {2, 3});
    EXPECT_EQ(code_of([&] { t.dim(2); }), invalid);
    EXPECT_EQ(code_of([&] { t.data_as<int32_t>(); }), invalid);
    EXPECT_EQ(code_of([&] { t.data_as<uint16_t>(); }), invalid);
    EXPECT_EQ(code_of([&] { std::as_const(t).data_as<int8_t>(); }), invalid);
    EXPECT_NO_THROW(t.data_as<float>());
    Tensor h(DType::F16, {2});
    EXPECT_NO_THROW(h.data_as<uint16_t>());
    EXPECT_EQ(code_of([&] { h.data_as<float>(); }), invalid);
    EXPECT_EQ(code_of([] { Tensor x(DType::Ternary2, {4, 4}); }), invalid);
    EXPECT_EQ(code_of([] { Tensor x(DType::F32, {3, -1}); }), invalid);
    EXPECT_EQ(code_of([] { Tensor x(DType::F32, {int64_t{1} << 40, int64_t{1} << 40}); }), invalid);
    float buf[4];
    EXPECT_EQ(code_of([&] { Tensor::view(DType::F32, {-4}, buf); }), invalid);
    EXPECT_EQ(Tensor::view(DType::F32, {2, 2}, buf).data(), buf);
    // An unfilled tensor checks its shape and dtype like a filled one.
    EXPECT_EQ(code_of([] { Tensor::uninitialized(DType::Ternary2, {4}); }), invalid);
    EXPECT_EQ(code_of([] { Tensor::uninitialized(DType::F32, {3, -1}); }), invalid);
    EXPECT_EQ(code_of([] { Tensor::uninitialized(DType::F32, {int64_t{1} << 62}); }), invalid);
}

TEST(CoreTensorTest, UninitializedTensorOwnsAnAlignedBufferOfItsShape) {
    Tensor t = Tensor::uninitialized(DType::BF16, {3, 5});
    EXPECT_EQ(t.dtype(), DType::BF16);
    EXPECT_EQ(t.shape(), (std::vector<int64_t>{3, 5}));
    EXPECT_EQ(t.nbytes(), 30u);
    ASSERT_NE(t.data(), nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
    uint16_t* p = t.data_as<uint16_t>();
    for (int i = 0; i < 15; ++i) p[i] = static_cast<uint16_t>(3 * i + 1);
    const Tensor copy = t;  // shares the buffer, as filled tensors do
    EXPECT_EQ(copy.data_as<uint16_t>()[14], 43);
    EXPECT_TRUE(Tensor::uninitialized(DType::F32, {0}).numel() == 0);
}

// numel fits int64 but numel * element size does not fit size_t: the byte count must not wrap
// to a small allocation behind a huge shape.
TEST(CoreTensorTest, ByteCountOverflowIsAnError) {
    for (int64_t n : {int64_t{1} << 62, (int64_t{1} << 62) + 1}) {
        try {
            Tensor t(DType::F32, {n});
            ADD_FAILURE() << "a tensor of " << n << " f32 was created (" << t.nbytes() << " bytes)";
        } catch (const Error& e) {
            EXPECT_TRUE(e.code() == ErrorCode::InvalidArgument ||
                        e.code() == ErrorCode::OutOfMemory)
                << e.what();
        }
    }
}

// ---- MappedFile -------------------------------------------------------------------------

TEST(CoreMappedFileTest, MapsContentsAndNamesMissingPaths) {
    const fs::path dir = fs::temp_directory_path() / ("bitnet-core-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string path = (dir / "data.bin").string();
    {
        std::ofstream out(path, std::ios::binary);
        out << "hello mapped world";
    }
    {
        MappedFile f(path);
        EXPECT_EQ(f.size(), 18u);
        EXPECT_EQ(f.path(), path);
        EXPECT_EQ(std::memcmp(f.data(), "hello mapped world", 18), 0);
    }
    const std::string empty = (dir / "empty.bin").string();
    std::ofstream(empty).close();
    EXPECT_EQ(MappedFile(empty).size(), 0u);

    const std::string missing = (dir / "missing.bin").string();
    try {
        MappedFile f(missing);
        ADD_FAILURE() << "no error for a missing file";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::NotFound);
        EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
    }
    try {
        MappedFile f(dir.string());
        ADD_FAILURE() << "no error for a directory";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::IoError);
        EXPECT_NE(std::string(e.what()).find(dir.string()), std::string::npos) << e.what();
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace bitnet::test
