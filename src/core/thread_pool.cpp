#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace bitnet {

namespace {

// Long enough to bridge the gaps between the loops of one forward pass (and between decode
// steps of a busy engine), short enough that an idle pool stops burning its cores at once.
constexpr std::chrono::microseconds kSpinTime(100);
// Past this, a spinning thread also yields, so that on an oversubscribed machine it gives its
// core to the thread it waits for instead of keeping it from running.
constexpr std::chrono::microseconds kPauseOnlyTime(5);

constexpr uint64_t kTicketStep = uint64_t{1} << 16;  // ticket = loop number * step + workers

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Spins until done() or kSpinTime has passed; returns done().
template <typename Done>
bool spin_until(Done done) {
    if (done()) return true;
    const auto start = std::chrono::steady_clock::now();
    bool yielding = false;
    for (;;) {
        for (int i = 0; i < 32; ++i) {
            cpu_relax();
            if (done()) return true;
        }
        if (yielding) std::this_thread::yield();
        const auto spent = std::chrono::steady_clock::now() - start;
        if (spent >= kSpinTime) return done();
        yielding = spent >= kPauseOnlyTime;
    }
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
    const int n = std::clamp(threads, 1, static_cast<int>(kTicketStep) - 1);
    workers_.reserve(static_cast<size_t>(n - 1));
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_.store(true);
        ticket_.fetch_add(kTicketStep);
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
}

void ThreadPool::run_piece(int index) {
    const int64_t begin = static_cast<int64_t>(index) * chunk_;
    const int64_t end = std::min(n_, begin + chunk_);
    if (begin >= end) return;
    try {
        invoke_(fn_, begin, end);
    } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
    }
}

// Sleeping and waking pair up like this: the waker changes the state (ticket_ or pending_),
// then reads the sleeper count; the sleeper registers, then re-reads the state under the mutex.
// Both sides use sequentially consistent operations, so at least one of them sees the other,
// and no wake-up is lost.
uint64_t ThreadPool::wait_for_job(uint64_t seen) {
    auto changed = [&] { return ticket_.load(std::memory_order_acquire) != seen; };
    if (!spin_until(changed)) {
        std::unique_lock<std::mutex> lock(mutex_);
        sleeping_workers_.fetch_add(1);
        wake_.wait(lock, [&] { return ticket_.load() != seen; });
        sleeping_workers_.fetch_sub(1);
    }
    return ticket_.load(std::memory_order_acquire);
}

void ThreadPool::worker_loop(int index) {
    uint64_t seen = 0;
    for (;;) {
        seen = wait_for_job(seen);
        if (stop_.load(std::memory_order_acquire)) return;
        if (index > static_cast<int>(seen % kTicketStep)) continue;  // no piece in this loop
        run_piece(index);
        if (pending_.fetch_sub(1) == 1 && caller_sleeping_.load()) {
            std::lock_guard<std::mutex> lock(mutex_);
            done_.notify_one();
        }
    }
}

void ThreadPool::wait_for_workers() {
    auto done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
    if (spin_until(done)) return;
    std::unique_lock<std::mutex> lock(mutex_);
    caller_sleeping_.store(true);
    done_.wait(lock, [&] { return pending_.load() == 0; });
    caller_sleeping_.store(false);
}

void ThreadPool::run(int64_t n, int64_t grain, int64_t units, Invoke invoke, const void* fn) {
    const int threads = static_cast<int>(std::min<int64_t>(size(), units));
    std::lock_guard<std::mutex> call_lock(call_mutex_);
    invoke_ = invoke;
    fn_ = fn;
    n_ = n;
    chunk_ = (units + threads - 1) / threads * grain;
    error_ = nullptr;
    pending_.store(threads - 1);
    // Publishes the fields above with the new loop number and its worker count.
    const uint64_t next = (ticket_.load() / kTicketStep + 1) * kTicketStep;
    ticket_.store(next + static_cast<uint64_t>(threads - 1));
    if (sleeping_workers_.load() > 0) {
        std::lock_guard<std::mutex> lock(mutex_);
        wake_.notify_all();
    }
    run_piece(0);
    wait_for_workers();
    std::exception_ptr error;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        error = error_;
        error_ = nullptr;
    }
    if (error) std::rethrow_exception(error);
}

}  // namespace bitnet
