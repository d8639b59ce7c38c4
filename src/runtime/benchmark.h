// The measurements behind `bitnet bench`, as a library so tests can run them: prompt and
// generation speed through the public engine API, time to first token, per-token latency,
// batched decoding, peak memory, bytes read per token against a read-bandwidth ceiling measured
// in the same run, and the cost of the public API over a bare forward-pass loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bitnet/engine.h"
#include "core/aligned_buffer.h"
#include "core/thread_pool.h"

namespace bitnet {

struct BenchOptions {
    int prompt_tokens = 128;  // prefill of this many tokens
    int gen_tokens = 128;     // decode steps after the prompt, greedy
    int batch = 1;            // > 1: also N sequences decoding together
    int draft = 0;            // > 0: also greedy decoding with prompt-lookup drafts of this many
    int repeat = 3;           // timed runs; figures are the median (and min-max) over them
    int warmup = 1;           // untimed full runs first (page faults, pool growth)
    size_t bandwidth_bytes = size_t{1} << 30;  // read-bandwidth buffer; 0 skips the measure
    int bandwidth_passes = 5;                  // the best pass counts
    bool api_overhead = true;                  // also time the bare forward loop
    uint64_t seed = 1234;                      // prompt token ids
};

struct Spread {
    double median = 0, min = 0, max = 0;
};

struct BenchResult {
    // What ran.
    std::string model;           // path or synthetic name
    std::string format;          // ModelInfo::format
    size_t weight_bytes = 0;     // ModelInfo::engine_bytes
    size_t huge_page_bytes = 0;  // ModelInfo::huge_page_bytes
    std::string kernel;
    std::string kv_cache;
    int threads = 0;
    BenchOptions options;
    std::string cpu;   // /proc/cpuinfo model name
    std::string date;  // UTC, ISO 8601

    Spread prompt_tok_s;  // p / prefill time
    Spread gen_tok_s;     // n / decode time (after the prompt)
    Spread ttft_ms;       // prefill + picking the first token
    // Every decode step of every repeat (forward + argmax), in milliseconds.
    double latency_p50_ms = 0, latency_p95_ms = 0, latency_p99_ms = 0;
    double latency_min_ms = 0, latency_max_ms = 0;

    // Batched decoding (batch > 1): aggregate tokens/s of all sequences, vs gen_tok_s.
    Spread batch_tok_s;
    double batch_ratio = 0;
    double batch_step_p50_ms = 0;

    // Speculative decoding (draft > 0): the same greedy generation with prompt-lookup drafts
    // verified in batched steps; tokens/s, vs gen_tok_s, the share of drafted tokens accepted,
    // tokens produced per forward pass, and whether the tokens equal plain decoding's (they
    // must: anything else is a bug).
    Spread spec_tok_s;
    double spec_speedup = 0;
    double spec_acceptance = 0;
    double spec_tokens_per_step = 0;
    int spec_drafted = 0;
    bool spec_identical = false;

    // Memory while one sequence runs: VmHWM, restarted when the benchmark starts (where the
    // kernel allows), so building or loading the model does not count; the process's lifetime
    // maximum (getrusage, or VmHWM if higher) before the bandwidth buffer; the weights the model
    // holds and the KV cache of the one session.
    size_t peak_rss_bytes = 0;
    bool peak_rss_reset = false;
    size_t max_rss_bytes = 0;
    size_t model_bytes = 0;
    size_t kv_cache_bytes = 0;

    // Bytes one decode step reads: weights (ternary matrices, head, norms, one embedding row
    // when untied) and the KV cache (mean over the decode steps of one sequence).
    size_t bytes_per_token = 0;
    double kv_bytes_per_token = 0;
    double achieved_gb_s = 0;   // (bytes_per_token + kv_bytes_per_token) * median gen tok/s
    double bandwidth_gb_s = 0;  // measured ceiling: the better of before and after; 0: skipped
    double bandwidth_start_gb_s = 0, bandwidth_end_gb_s = 0;
    double bandwidth_pct = 0;  // achieved / ceiling * 100
    // Decode blocks and read passes interleaved (bandwidth measured): each block's read rate
    // over the mean of the passes just before and after it, median over the blocks. On a
    // shared host the bandwidth moves by a third within seconds, and the best pass of the
    // ceiling may be a moment the decode runs never met; this pairs each block with its own.
    double interleaved_pct = 0;
    double interleaved_read_gb_s = 0;  // median of those read passes
    int interleaved_blocks = 0;
    size_t cache_bytes = 0;      // last-level cache
    bool fits_in_cache = false;  // weights + KV smaller than it: reads come from cache, not DRAM

    // Decode step through InferenceEngine::forward vs ForwardPass::run on the same engine's
    // pool and arena, interleaved step by step (medians of single steps, milliseconds).
    double api_step_ms = 0, bare_step_ms = 0, api_overhead_pct = 0;
};

// Runs every measure on `model` with `engine` (whose threads, kernel level and KV cache type
// apply). The engine's batch size must admit options.batch. Throws bitnet::Error
// (InvalidArgument) for options out of range, naming the option.
BenchResult run_benchmark(InferenceEngine& engine, const std::shared_ptr<const Model>& model,
                          const BenchOptions& options);

// Bytes of weights one decode step reads (see BenchResult::bytes_per_token).
size_t weight_bytes_per_token(const Model& model);

// A buffer on huge pages (as the weights are), each thread's slice first touched by that
// thread; pass() streams all of it on the pool's threads and returns GB/s (1e9 bytes).
class ReadProbe {
  public:
    ReadProbe(ThreadPool& pool, size_t bytes);
    double pass();

  private:
    ThreadPool& pool_;
    size_t slice_;
    AlignedBuffer<uint8_t> buffer_;
};

// Best of `passes` multi-threaded streaming reads of a `bytes` buffer, in GB/s (1e9 bytes).
double measure_read_bandwidth(int threads, size_t bytes, int passes);
double measure_read_bandwidth(ThreadPool& pool, size_t bytes, int passes);

// Peak resident set (VmHWM, or getrusage's maximum where /proc is missing) and current (VmRSS).
size_t peak_rss_bytes();
size_t current_rss_bytes();
// Restarts VmHWM from the current resident set; false where the kernel does not allow it.
bool reset_peak_rss();

// One JSON object on one line, with at least prompt_tok_s, gen_tok_s, ttft_ms,
// token_latency_ms {p50, p95, p99}, peak_rss_mb, bytes_per_token, achieved_gb_s, bandwidth_gb_s.
std::string bench_json(const BenchResult& r);
// A short aligned table for people.
std::string bench_table(const BenchResult& r);

}  // namespace bitnet
