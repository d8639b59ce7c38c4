// A fixed set of worker threads for data-parallel loops. The calling thread takes part in
// every loop, so a pool of n threads starts n - 1 workers. Work is split into contiguous
// chunks (one per thread by default) so threads never write to neighbouring cache lines of
// each other's output unless the caller's ranges do.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
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
    void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  private:
    void worker_loop(int index);
    void run_piece(int index);

    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable done_;
    const std::function<void(int64_t, int64_t)>* job_ = nullptr;
    int64_t n_ = 0;
    int64_t chunk_ = 0;
    uint64_t generation_ = 0;
    int pending_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
    std::mutex call_mutex_;  // one parallel_for at a time
};

}  // namespace bitnet
