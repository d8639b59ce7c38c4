// The thread pool's spinning hand-off: loops back to back (workers still spinning), loops after
// the workers went to sleep, loops that need only some of the workers, and every kind of
// callable. tests/test_core.cpp covers the splitting and exception contracts.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/thread_pool.h"

namespace bitnet {
namespace {

// Runs parallel_for(n, grain) and checks every index was visited exactly once.
void expect_each_index_once(ThreadPool& pool, int64_t n, int64_t grain) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "n=" << n << " index " << i;
}

TEST(ThreadPoolSpinTest, ManyLoopsBackToBack) {
    for (int threads : {2, 3, 4}) {
        ThreadPool pool(threads);
        std::atomic<int64_t> total{0};
        for (int loop = 0; loop < 3000; ++loop) {
            pool.parallel_for(threads * 3, 1, [&](int64_t b, int64_t e) { total += e - b; });
        }
        EXPECT_EQ(total.load(), int64_t{3000} * threads * 3);
    }
}

TEST(ThreadPoolSpinTest, LoopsAfterTheWorkersFellAsleep) {
    ThreadPool pool(3);
    for (int loop = 0; loop < 12; ++loop) {
        // Far past the spin time, so the workers block and must be woken.
        std::this_thread::sleep_for(std::chrono::milliseconds(loop % 2 == 0 ? 3 : 0));
        expect_each_index_once(pool, 1000 + loop, 7);
    }
}

TEST(ThreadPoolSpinTest, LoopsThatNeedOnlySomeWorkers) {
    // One unit, two units, then all: idle workers must neither run a piece nor be waited for.
    ThreadPool pool(4);
    for (int loop = 0; loop < 3000; ++loop) {
        const int64_t units = 1 + loop % 5;
        expect_each_index_once(pool, units * 16, 16);
        if (loop % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

TEST(ThreadPoolSpinTest, AnyCallable) {
    ThreadPool pool(2);
    std::atomic<int64_t> sum{0};
    // A lambda, a std::function and a plain function pointer. (One callable object serves
    // every thread, so it must be safe to call concurrently.)
    pool.parallel_for(10, 1, [&](int64_t b, int64_t e) { sum += e - b; });
    EXPECT_EQ(sum.load(), 10);
    sum = 0;
    const std::function<void(int64_t, int64_t)> fn = [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) sum += i;
    };
    pool.parallel_for(100, 1, fn);
    EXPECT_EQ(sum.load(), 4950);
    static std::atomic<int64_t> plain_sum;
    plain_sum = 0;
    void (*plain)(int64_t, int64_t) = [](int64_t b, int64_t e) { plain_sum += e - b; };
    pool.parallel_for(33, 4, plain);
    EXPECT_EQ(plain_sum.load(), 33);
}

TEST(ThreadPoolSpinTest, OneThreadRunsInlineOnTheCaller) {
    ThreadPool pool(1);
    const std::thread::id caller = std::this_thread::get_id();
    int pieces = 0;
    pool.parallel_for(1000, 1, [&](int64_t b, int64_t e) {
        ++pieces;
        EXPECT_EQ(std::this_thread::get_id(), caller);
        EXPECT_EQ(b, 0);
        EXPECT_EQ(e, 1000);
    });
    EXPECT_EQ(pieces, 1);
}

TEST(ThreadPoolSpinTest, ExceptionsWhileOthersSpin) {
    ThreadPool pool(3);
    for (int loop = 0; loop < 200; ++loop) {
        const int64_t thrower = loop % 3;  // the caller's piece or either worker's
        EXPECT_THROW(pool.parallel_for(3, 1,
                                       [&](int64_t b, int64_t) {
                                           if (b == thrower) throw std::runtime_error("piece");
                                       }),
                     std::runtime_error);
        expect_each_index_once(pool, 30, 1);
    }
}

TEST(ThreadPoolSpinTest, DestroyedWhileSpinningOrAsleep) {
    for (int wait_ms : {0, 3}) {
        for (int i = 0; i < 20; ++i) {
            ThreadPool pool(3);
            expect_each_index_once(pool, 9, 1);
            std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
        }
    }
}

// parallel_for_dynamic: every index exactly once, in pieces that start on a multiple of the
// grain and (but for the one that ends the range) are multiples of it, and that shrink as the
// work runs out.
TEST(ThreadPoolDynamicTest, EveryIndexOnceInGrainPieces) {
    for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        for (int64_t n : {1, 7, 64, 1000, 4097}) {
            for (int64_t grain : {1, 16, 100, 5000}) {
                SCOPED_TRACE("threads=" + std::to_string(threads) + " n=" + std::to_string(n) +
                             " grain=" + std::to_string(grain));
                std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
                std::mutex mutex;
                std::vector<std::pair<int64_t, int64_t>> pieces;
                pool.parallel_for_dynamic(n, grain, [&](int64_t b, int64_t e) {
                    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
                    std::lock_guard<std::mutex> lock(mutex);
                    pieces.emplace_back(b, e);
                });
                for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1);
                std::sort(pieces.begin(), pieces.end());
                for (const auto& [b, e] : pieces) {
                    EXPECT_LT(b, e);
                    EXPECT_EQ(b % grain, 0);
                    if (e < n) {
                        EXPECT_EQ((e - b) % grain, 0);
                    }
                }
                if (threads > 1 && n >= 64 * grain) {
                    EXPECT_GT(pieces.size(), static_cast<size_t>(threads));
                    EXPECT_LE(pieces.back().second - pieces.back().first,
                              pieces.front().second - pieces.front().first)
                        << "pieces shrink toward the end";
                }
            }
        }
    }
}

TEST(ThreadPoolDynamicTest, ASlowThreadTakesLess) {
    // The caller's first piece (at most a quarter of the range with two threads) does not
    // finish until the worker has done 100 of the 200 indices, so the shares cannot be fixed
    // halves. (The wait gives up after 60 s, so a broken pool fails instead of hanging.)
    ThreadPool pool(2);
    std::atomic<int64_t> caller_items{0}, other_items{0};
    std::atomic<bool> waited{false};
    const auto caller = std::this_thread::get_id();
    pool.parallel_for_dynamic(200, 1, [&](int64_t b, int64_t e) {
        if (std::this_thread::get_id() != caller) {
            other_items.fetch_add(e - b);
            return;
        }
        caller_items.fetch_add(e - b);
        if (!waited.exchange(true)) {
            const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
            while (other_items.load() < 100 && std::chrono::steady_clock::now() < give_up)
                std::this_thread::yield();
        }
    });
    EXPECT_EQ(caller_items.load() + other_items.load(), 200);
    EXPECT_GE(other_items.load(), 100);
}

TEST(ThreadPoolDynamicTest, ExceptionsReachTheCaller) {
    ThreadPool pool(3);
    EXPECT_THROW(pool.parallel_for_dynamic(100, 7,
                                           [&](int64_t b, int64_t) {
                                               if (b == 42) throw std::runtime_error("piece");
                                           }),
                 std::runtime_error);
    expect_each_index_once(pool, 50, 1);
}

}  // namespace
}  // namespace bitnet
