// A fixed set of worker threads for data-parallel loops. The calling thread takes part in
// every loop, so a pool of n threads starts n - 1 workers. Work is split into contiguous
// chunks (one per thread by default) so threads never write to neighbouring cache lines of
// each other's output unless the caller's ranges do.
//
// The forward pass runs about ten loops per layer, microseconds apart, so waking sleeping
// threads (a futex system call each, then the scheduler) would cost more than small loops take.
// Workers therefore spin on the loop counter for a while after each loop (kSpinTime, with the
// CPU's pause hint), and only then block; the caller spins the same way for the workers to
// finish. A pool of one thread has no workers and runs the loop inline, at no cost.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace bitnet {

class ThreadPool {
  public:
    explicit ThreadPool(int threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const noexcept { return static_cast<int>(workers_.size()) + 1; }

    // Calls fn(begin, end) over [0, n) split into pieces whose sizes are multiples of `grain`
    // (except the last), at most one piece per thread. Blocks until all pieces are done.
    // The first exception thrown by fn is rethrown here after every piece has finished.
    // Not reentrant: fn must not call parallel_for on the same pool.
    template <typename Fn>
    void parallel_for(int64_t n, int64_t grain, Fn&& fn) {
        if (n <= 0) return;
        if (grain < 1) grain = 1;
        const int64_t units = (n + grain - 1) / grain;
        if (workers_.empty() || units <= 1) {
            fn(int64_t{0}, n);
            return;
        }
        using F = std::remove_reference_t<Fn>;
        run(
            n, grain, units,
            [](const void* f, int64_t b, int64_t e) {
                (*static_cast<F*>(const_cast<void*>(f)))(b, e);
            },
            &fn);
    }

    // Like parallel_for, but threads claim pieces one at a time from a shared counter, so a
    // thread that runs slower (a busier core, a descheduled vCPU) takes fewer: the loop ends
    // when the work does, not when the slowest fixed share does. Pieces shrink as the work runs
    // out (guided scheduling: about remaining / (2 x threads), a multiple of `grain`, the last
    // one shorter), so the threads also finish close together. Pieces are handed out in order,
    // so each thread still walks memory mostly forward.
    template <typename Fn>
    void parallel_for_dynamic(int64_t n, int64_t grain, Fn&& fn) {
        if (n <= 0) return;
        if (grain < 1) grain = 1;
        if (workers_.empty() || n <= grain) {
            fn(int64_t{0}, n);
            return;
        }
        std::atomic<int64_t> next{0};
        const int64_t threads = std::min<int64_t>(size(), (n + grain - 1) / grain);
        parallel_for(threads, 1, [&](int64_t, int64_t) {
            int64_t begin = next.load(std::memory_order_relaxed);
            while (begin < n) {
                const int64_t share = (n - begin) / (2 * threads) / grain * grain;
                const int64_t end = std::min(n, begin + std::max(grain, share));
                if (next.compare_exchange_weak(begin, end, std::memory_order_relaxed)) {
                    fn(begin, end);
                    begin = next.load(std::memory_order_relaxed);
                }
            }
        });
    }

  private:
    using Invoke = void (*)(const void* fn, int64_t begin, int64_t end);

    void run(int64_t n, int64_t grain, int64_t units, Invoke invoke, const void* fn);
    void worker_loop(int index);
    void run_piece(int index);
    // Spins, then blocks, until ticket_ differs from `seen`; returns the new ticket.
    uint64_t wait_for_job(uint64_t seen);
    void wait_for_workers();

    std::vector<std::thread> workers_;

    // The current loop, written by the caller before ticket_ is bumped and read only by the
    // workers that have a piece in it (the caller waits for those before the next loop).
    Invoke invoke_ = nullptr;
    const void* fn_ = nullptr;
    int64_t n_ = 0;
    int64_t chunk_ = 0;

    // Loop counter << 16 | number of workers with a piece (the first ones), in one word so
    // that a worker without a piece never reads the fields above.
    alignas(64) std::atomic<uint64_t> ticket_{0};
    std::atomic<bool> stop_{false};
    alignas(64) std::atomic<int> pending_{0};  // active workers not yet done
    alignas(64) std::atomic<int> sleeping_workers_{0};
    std::atomic<bool> caller_sleeping_{false};

    std::mutex mutex_;  // guards the blocking waits and error_
    std::condition_variable wake_;
    std::condition_variable done_;
    std::exception_ptr error_;
    std::mutex call_mutex_;  // one parallel_for at a time
};

}  // namespace bitnet
