#include "runtime/benchmark.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/aligned_buffer.h"
#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "model/forward.h"
#include "model/model_impl.h"
#include "runtime/argmax.h"
#include "runtime/engine_impl.h"
#include "runtime/prompt_lookup.h"

namespace bitnet {

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

int argmax(const float* x, int n) {
    return static_cast<int>(first_argmax(x, static_cast<size_t>(n)));
}

Spread spread_of(std::vector<double> v) {
    Spread s;
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    s.min = v.front();
    s.max = v.back();
    return s;
}

// Nearest-rank percentile of sorted values.
double percentile(const std::vector<double>& sorted, double p) {
    if (sorted.empty()) return 0;
    const double rank = std::ceil(p / 100.0 * static_cast<double>(sorted.size()));
    const size_t i = static_cast<size_t>(std::clamp(rank, 1.0, static_cast<double>(sorted.size())));
    return sorted[i - 1];
}

std::vector<int32_t> random_tokens(uint64_t seed, int n, int vocab) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int32_t& id : ids) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        id = static_cast<int32_t>((s >> 11) % static_cast<uint64_t>(vocab));
    }
    return ids;
}

void check(bool ok, const std::string& message) {
    if (!ok) throw Error(ErrorCode::InvalidArgument, "bench: " + message);
}

void validate(const InferenceEngine& engine, const Model& model, const BenchOptions& o) {
    check(o.prompt_tokens >= 1,
          "the prompt length (-p) must be at least 1, got " + std::to_string(o.prompt_tokens));
    check(o.gen_tokens >= 1, "the number of generated tokens (-n) must be at least 1, got " +
                                 std::to_string(o.gen_tokens));
    check(o.batch >= 1, "--batch must be at least 1, got " + std::to_string(o.batch));
    check(o.draft >= 0, "--draft must be >= 0, got " + std::to_string(o.draft));
    check(o.repeat >= 1, "--repeat must be at least 1, got " + std::to_string(o.repeat));
    check(o.warmup >= 0, "--warmup must be >= 0, got " + std::to_string(o.warmup));
    check(o.bandwidth_passes >= 1,
          "bandwidth passes must be at least 1, got " + std::to_string(o.bandwidth_passes));
    const int context = model.config().max_position_embeddings;
    check(static_cast<int64_t>(o.prompt_tokens) + o.gen_tokens <= context,
          "-p " + std::to_string(o.prompt_tokens) + " + -n " + std::to_string(o.gen_tokens) +
              " tokens exceed the model's context of " + std::to_string(context));
    check(o.batch <= engine.options().max_batch_size,
          "--batch " + std::to_string(o.batch) + " exceeds the engine's batch size of " +
              std::to_string(engine.options().max_batch_size));
}

// Keys and values of one cached position over all layers, as the session's cache stores them
// (int8 rows with their float scale).
double kv_bytes_per_position(Session& s) {
    return static_cast<double>(s.impl().cache.position_bytes());
}

// What a decode step reads of a BitLinear: the row groups instead of the rows they cover, where
// the matrix has them (the threads' row ranges come in whole groups).
size_t bitlinear_bytes(const BitLinearWeight& w) {
    const size_t all = w.packed.bytes() != 0
                           ? w.packed.bytes()
                           : static_cast<size_t>(w.view.rows) * w.view.row_bytes();
    if (w.view.groups == nullptr) return all;
    const int grouped_rows = w.view.rows / cpu::kTernaryGroupRows * cpu::kTernaryGroupRows;
    return all - static_cast<size_t>(grouped_rows) * w.view.row_bytes() + w.groups.bytes();
}

size_t floats_bytes(const std::vector<float>& v) {
    return v.size() * sizeof(float);
}

// ---- read bandwidth ------------------------------------------------------------------------

#if defined(__x86_64__)
__attribute__((target("avx512f"))) uint64_t read_avx512(const uint8_t* p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 256 <= n; i += 256) {
        a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + i + 64));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + i + 128));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + i + 192));
    }
    alignas(64) uint64_t lanes[8];
    _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
    uint64_t sum = 0;
    for (uint64_t v : lanes) sum += v;
    return sum;
}

__attribute__((target("avx2"))) uint64_t read_avx2(const uint8_t* p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
    }
    const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    alignas(32) uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#endif

uint64_t read_generic(const uint8_t* p, size_t n) {
    uint64_t acc[8] = {};
    for (size_t i = 0; i + 64 <= n; i += 64) {
        for (int j = 0; j < 8; ++j) {
            uint64_t v;
            std::memcpy(&v, p + i + 8 * j, 8);
            acc[j] += v;
        }
    }
    uint64_t s = 0;
    for (uint64_t v : acc) s += v;
    return s;
}

uint64_t read_all(const uint8_t* p, size_t n) {
#if defined(__x86_64__)
    if (cpu_features().avx512) return read_avx512(p, n);
    if (cpu_features().avx2) return read_avx2(p, n);
#endif
    return read_generic(p, n);
}

// ---- host ------------------------------------------------------------------------------------

size_t status_kib(const char* key) {
    std::ifstream in("/proc/self/status");
    std::string line;
    const size_t len = std::strlen(key);
    while (std::getline(in, line)) {
        if (line.compare(0, len, key) == 0) return std::strtoull(line.c_str() + len, nullptr, 10);
    }
    return 0;
}

size_t rusage_max_bytes() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<size_t>(u.ru_maxrss) * 1024;
}

std::string cpu_name() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            const size_t colon = line.find(':');
            if (colon != std::string::npos) {
                const size_t start = line.find_first_not_of(' ', colon + 1);
                return start == std::string::npos ? "" : line.substr(start);
            }
        }
    }
    return "unknown";
}

// Bytes of the last-level cache, 0 where sysfs does not say.
size_t last_level_cache_bytes() {
    size_t best = 0;
    for (int i = 0; i < 8; ++i) {
        std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/size");
        std::string text;
        if (!(in >> text)) continue;
        size_t v = std::strtoull(text.c_str(), nullptr, 10);
        if (text.back() == 'K') v <<= 10;
        if (text.back() == 'M') v <<= 20;
        best = std::max(best, v);
    }
    return best;
}

std::string utc_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// ---- the measured runs ----------------------------------------------------------------------

struct SingleRun {
    double prefill_s = 0, ttft_s = 0, decode_s = 0;
    std::vector<double> steps;
    std::vector<int32_t> tokens;  // generated, the prompt's next token first
};

struct SpeculativeRun {
    double decode_s = 0;
    int steps = 0, drafted = 0, accepted = 0;
    std::vector<int32_t> tokens;
};

class Runner {
  public:
    Runner(InferenceEngine& engine, const std::shared_ptr<const Model>& model,
           const BenchOptions& o)
        : engine_(engine),
          model_(model),
          o_(o),
          vocab_(model->config().vocab_size),
          capacity_(o.prompt_tokens + o.gen_tokens),
          prompt_(random_tokens(o.seed, o.prompt_tokens, vocab_)) {}

    SingleRun single(Session& s);
    // The same greedy generation as single(), drafting up to `draft` tokens a step by prompt
    // lookup (as many as TextGeneration's schedule allows) and verifying them in one pass.
    SpeculativeRun speculative(Session& s, int draft);
    double batch(std::vector<std::unique_ptr<Session>>& sessions, std::vector<double>& steps);
    // `steps` greedy decode steps continuing the session (after a fresh prompt, untimed, where
    // they would not fit); returns their seconds and sets *positions to the cached positions
    // they attended over, summed.
    double decode_block(Session& s, int steps, double* positions);
    // Decode steps through the bare forward pass and the public API, interleaved; appends each
    // step's seconds.
    void api_vs_bare(Session& s, KVCache& bare_cache, std::vector<double>& bare_steps,
                     std::vector<double>& api_steps);
    int capacity() const { return capacity_; }

  private:
    InferenceEngine& engine_;
    std::shared_ptr<const Model> model_;
    const BenchOptions& o_;
    int vocab_;
    int capacity_;
    std::vector<int32_t> prompt_;
};

SingleRun Runner::single(Session& s) {
    SingleRun r;
    s.reset();
    const auto t0 = Clock::now();
    Tensor logits = engine_.forward(s, prompt_);
    const auto t1 = Clock::now();
    int32_t token = argmax(logits.data_as<float>(), vocab_);
    const auto t2 = Clock::now();
    r.prefill_s = seconds(t0, t1);
    r.ttft_s = seconds(t0, t2);
    r.steps.reserve(static_cast<size_t>(o_.gen_tokens));
    r.tokens.reserve(static_cast<size_t>(o_.gen_tokens) + 1);
    r.tokens.push_back(token);
    for (int i = 0; i < o_.gen_tokens; ++i) {
        const auto a = Clock::now();
        logits = engine_.forward(s, std::span<const int32_t>(&token, 1));
        token = argmax(logits.data_as<float>(), vocab_);
        const auto b = Clock::now();
        r.steps.push_back(seconds(a, b));
        r.decode_s += r.steps.back();
        r.tokens.push_back(token);
    }
    return r;
}

SpeculativeRun Runner::speculative(Session& s, int draft) {
    SpeculativeRun r;
    s.reset();
    int32_t token = argmax(engine_.forward(s, prompt_).data_as<float>(), vocab_);
    std::vector<int32_t> history = prompt_;
    history.push_back(token);
    r.tokens.push_back(token);
    std::vector<int32_t> step;
    DraftSchedule schedule(draft);
    const auto t0 = Clock::now();
    for (int produced = 0; produced < o_.gen_tokens;) {
        const int start = s.position();
        step.assign(1, token);
        const std::vector<int32_t> d =
            prompt_lookup_draft(history, std::min(schedule.next(), o_.gen_tokens - produced - 1));
        step.insert(step.end(), d.begin(), d.end());
        const SequenceStep one{&s, step, true};
        const Tensor logits = std::move(engine_.forward(std::span<const SequenceStep>(&one, 1))[0]);
        // Row i follows step[i]; it counts only while every draft before it was confirmed.
        int confirmed = 0;
        for (size_t i = 0; i < step.size(); ++i) {
            token = argmax(logits.data_as<float>() + i * static_cast<size_t>(vocab_), vocab_);
            history.push_back(token);
            r.tokens.push_back(token);
            ++produced;
            if (i + 1 == step.size() || step[i + 1] != token) break;
            ++confirmed;
        }
        s.truncate(start + 1 + confirmed);
        ++r.steps;
        r.drafted += static_cast<int>(d.size());
        r.accepted += confirmed;
        schedule.update(static_cast<int>(d.size()), confirmed);
    }
    r.decode_s = seconds(t0, Clock::now());
    return r;
}

double Runner::batch(std::vector<std::unique_ptr<Session>>& sessions, std::vector<double>& steps) {
    const size_t n = sessions.size();
    std::vector<int32_t> tokens(n);
    for (size_t i = 0; i < n; ++i) {
        sessions[i]->reset();
        const auto prompt = random_tokens(o_.seed + 1 + i, o_.prompt_tokens, vocab_);
        tokens[i] = argmax(engine_.forward(*sessions[i], prompt).data_as<float>(), vocab_);
    }
    std::vector<SequenceStep> step(n);
    for (size_t i = 0; i < n; ++i) step[i] = {sessions[i].get(), {&tokens[i], 1}, false};
    double total = 0;
    for (int j = 0; j < o_.gen_tokens; ++j) {
        const auto a = Clock::now();
        const std::vector<Tensor> out = engine_.forward(step);
        for (size_t i = 0; i < n; ++i) tokens[i] = argmax(out[i].data_as<float>(), vocab_);
        const auto b = Clock::now();
        steps.push_back(seconds(a, b));
        total += steps.back();
    }
    return total;
}

double Runner::decode_block(Session& s, int steps, double* positions) {
    if (s.position() == 0 || s.position() + steps > capacity_) {
        s.reset();
        engine_.forward(s, prompt_);
    }
    int32_t token = prompt_.back();
    *positions = 0;
    const auto a = Clock::now();
    for (int i = 0; i < steps; ++i) {
        *positions += s.position() + 1;
        const Tensor logits = engine_.forward(s, std::span<const int32_t>(&token, 1));
        token = argmax(logits.data_as<float>(), vocab_);
    }
    return seconds(a, Clock::now());
}

void Runner::api_vs_bare(Session& s, KVCache& bare_cache, std::vector<double>& bare_steps,
                         std::vector<double>& api_steps) {
    InferenceEngine::Impl& e = engine_.impl();
    AlignedBuffer<float> logits(static_cast<size_t>(vocab_), false);
    ForwardPass pass(model_->impl(), *e.kernels, *e.pool, e.arena, e.options.reference_numerics);
    auto bare = [&](const int32_t* tokens, int count) {
        ForwardItem item;
        item.cache = &bare_cache;
        item.tokens = tokens;
        item.n_tokens = count;
        item.logits = logits.data();
        e.arena.reset();
        pass.run(std::span<ForwardItem>(&item, 1));
        return argmax(logits.data(), vocab_);
    };
    auto api = [&](const int32_t* tokens, int count) {
        const Tensor out = engine_.forward(s, std::span<const int32_t>(tokens, count));
        return argmax(out.data_as<float>(), vocab_);
    };
    s.reset();
    bare_cache.set_length(0);
    int32_t bare_token = bare(prompt_.data(), o_.prompt_tokens);
    int32_t api_token = api(prompt_.data(), o_.prompt_tokens);
    for (int j = 0; j < o_.gen_tokens; ++j) {
        // Alternate which goes first, so neither always finds the other's data in cache.
        for (int turn = 0; turn < 2; ++turn) {
            const bool bare_now = (turn == 0) == (j % 2 == 0);
            const auto a = Clock::now();
            if (bare_now) {
                bare_token = bare(&bare_token, 1);
            } else {
                api_token = api(&api_token, 1);
            }
            (bare_now ? bare_steps : api_steps).push_back(seconds(a, Clock::now()));
        }
    }
}

double round_sig(double x, int digits = 4) {
    if (x == 0 || !std::isfinite(x)) return x;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*g", digits, x);
    return std::strtod(buf, nullptr);
}

std::string fixed(double x, int decimals) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, x);
    return buf;
}

// Three significant digits or at least the integer part.
std::string sig3(double x) {
    const double a = std::fabs(x);
    return fixed(x, a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3);
}

std::string duration(double ms) {
    return ms < 1 ? sig3(ms * 1000) + " us" : ms < 1000 ? sig3(ms) + " ms" : sig3(ms / 1000) + " s";
}

double mb(size_t bytes) {
    return static_cast<double>(bytes) / 1e6;
}

}  // namespace

size_t weight_bytes_per_token(const Model& model) {
    const ModelWeights& w = model.impl().weights;
    size_t bytes = floats_bytes(w.final_norm) + w.lm_head().bytes();
    if (!w.tied && w.embedding.rows > 0) bytes += w.embedding.bytes() / w.embedding.rows;
    for (const LayerWeights& L : w.layers) {
        bytes += floats_bytes(L.attn_norm) + floats_bytes(L.attn_sub_norm) +
                 floats_bytes(L.ffn_norm) + floats_bytes(L.ffn_sub_norm);
        for (const BitLinearWeight* b : L.bitlinears())
            bytes += bitlinear_bytes(*b) + floats_bytes(b->input_norm);
    }
    return bytes;
}

namespace {
size_t slice_bytes(size_t bytes, int threads) {
    const size_t slice = bytes / static_cast<size_t>(threads) / 256 * 256;
    if (slice == 0)
        throw Error(ErrorCode::InvalidArgument,
                    "read bandwidth: a buffer of " + std::to_string(bytes) + " bytes is too small");
    return slice;
}
}  // namespace

// On huge pages where the OS offers them, as the weights are: the ceiling is what the machine's
// memory delivers, not its TLB (see huge_pages.h).
ReadProbe::ReadProbe(ThreadPool& pool, size_t bytes)
    : pool_(pool),
      slice_(slice_bytes(bytes, pool.size())),
      buffer_(slice_ * static_cast<size_t>(pool.size()), false, Pages::Huge) {
    // Each thread first touches its own slice, so pages sit near the thread that reads them.
    pool_.parallel_for(pool_.size(), 1, [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t)
            std::memset(buffer_.data() + static_cast<size_t>(t) * slice_, static_cast<int>(t + 1),
                        slice_);
    });
}

double ReadProbe::pass() {
    std::atomic<uint64_t> sink{0};  // a side effect, so the reads cannot be elided
    const auto a = Clock::now();
    pool_.parallel_for(pool_.size(), 1, [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t)
            sink += read_all(buffer_.data() + static_cast<size_t>(t) * slice_, slice_);
    });
    const double s = seconds(a, Clock::now());
    return static_cast<double>(buffer_.bytes()) / s / 1e9;
}

double measure_read_bandwidth(ThreadPool& pool, size_t bytes, int passes) {
    if (passes < 1) throw Error(ErrorCode::InvalidArgument, "read bandwidth: passes must be >= 1");
    ReadProbe probe(pool, bytes);
    double best = 0;
    for (int p = 0; p < passes; ++p) best = std::max(best, probe.pass());
    return best;
}

double measure_read_bandwidth(int threads, size_t bytes, int passes) {
    if (threads < 1)
        throw Error(ErrorCode::InvalidArgument, "read bandwidth: threads must be >= 1");
    ThreadPool pool(threads);
    return measure_read_bandwidth(pool, bytes, passes);
}

size_t peak_rss_bytes() {
    const size_t kib = status_kib("VmHWM:");
    return kib != 0 ? kib * 1024 : rusage_max_bytes();
}

size_t current_rss_bytes() {
    return status_kib("VmRSS:") * 1024;
}

bool reset_peak_rss() {
    const int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::write(fd, "5", 1) == 1;
    ::close(fd);
    return ok;
}

namespace {

// Blocks of up to 32 decode steps between read passes (one more pass than blocks): a block
// is set against the mean of the passes beside it, so both rates come from the same seconds.
void interleave_with_reads(Runner& run, InferenceEngine& engine,
                           const std::shared_ptr<const Model>& model, const BenchOptions& o,
                           ThreadPool& pool, BenchResult& r) {
    const int blocks = std::max(o.repeat, 5);
    const int steps = std::min(o.gen_tokens, 32);
    auto session = engine.create_session(model, run.capacity());
    const double kv_row = kv_bytes_per_position(*session);
    ReadProbe probe(pool, o.bandwidth_bytes);
    double positions = 0;
    run.decode_block(*session, steps, &positions);  // warm-up: the weights' first touch
    std::vector<double> reads{probe.pass()}, ratios;
    for (int b = 0; b < blocks; ++b) {
        const double s = run.decode_block(*session, steps, &positions);
        reads.push_back(probe.pass());
        const double bytes = static_cast<double>(r.bytes_per_token) * steps + kv_row * positions;
        ratios.push_back(bytes / s / 1e9 / ((reads[b] + reads[b + 1]) / 2));
    }
    r.interleaved_pct = spread_of(ratios).median * 100;
    r.interleaved_read_gb_s = spread_of(reads).median;
    r.interleaved_blocks = blocks;
}

}  // namespace

BenchResult run_benchmark(InferenceEngine& engine, const std::shared_ptr<const Model>& model,
                          const BenchOptions& o) {
    if (!model) throw Error(ErrorCode::InvalidArgument, "bench: no model");
    validate(engine, *model, o);
    const ModelConfig& c = model->config();
    BenchResult r;
    r.model = model->info().path;
    r.format = model->info().format;
    r.weight_bytes = model->info().engine_bytes;
    r.huge_page_bytes = model->info().huge_page_bytes;
    r.kernel = engine.kernel_level();
    r.kv_cache = kv_cache_type_name(engine.options().kv_cache_type);
    r.threads = engine.threads();
    r.options = o;
    r.cpu = cpu_name();
    r.date = utc_now();
    r.model_bytes = model->info().engine_bytes;
    r.bytes_per_token = weight_bytes_per_token(*model);
    // The ceiling is measured before and after the runs: on a VM the cores (and so the
    // bandwidth) the host gives can change between runs. The buffer is freed before the peak
    // resident set restarts, where the kernel lets it restart.
    ThreadPool& pool = *engine.impl().pool;
    const bool can_reset = reset_peak_rss();
    if (o.bandwidth_bytes > 0 && can_reset)
        r.bandwidth_start_gb_s =
            measure_read_bandwidth(pool, o.bandwidth_bytes, o.bandwidth_passes);
    r.peak_rss_reset = can_reset && reset_peak_rss();

    Runner run(engine, model, o);
    double kv_row = 0;
    {
        auto session = engine.create_session(model, run.capacity());
        kv_row = kv_bytes_per_position(*session);
        for (int i = 0; i < o.warmup; ++i) run.single(*session);
        std::vector<double> prompt, gen, ttft, steps;
        for (int i = 0; i < o.repeat; ++i) {
            const SingleRun s = run.single(*session);
            prompt.push_back(o.prompt_tokens / s.prefill_s);
            gen.push_back(o.gen_tokens / s.decode_s);
            ttft.push_back(s.ttft_s * 1e3);
            for (double t : s.steps) steps.push_back(t * 1e3);
        }
        r.prompt_tok_s = spread_of(prompt);
        r.gen_tok_s = spread_of(gen);
        r.ttft_ms = spread_of(ttft);
        std::sort(steps.begin(), steps.end());
        r.latency_p50_ms = percentile(steps, 50);
        r.latency_p95_ms = percentile(steps, 95);
        r.latency_p99_ms = percentile(steps, 99);
        r.latency_min_ms = steps.front();
        r.latency_max_ms = steps.back();
        // Memory of one sequence running, before the batch and comparison runs add caches.
        r.kv_cache_bytes = engine.memory_stats().kv_cache_bytes;
        r.peak_rss_bytes = peak_rss_bytes();
    }

    // Decode step j attends over prompt + j + 1 positions of every layer's keys and values.
    r.kv_bytes_per_token = kv_row * (o.prompt_tokens + (o.gen_tokens + 1) / 2.0);
    r.achieved_gb_s =
        (static_cast<double>(r.bytes_per_token) + r.kv_bytes_per_token) * r.gen_tok_s.median / 1e9;
    r.cache_bytes = last_level_cache_bytes();
    r.fits_in_cache = static_cast<double>(r.bytes_per_token) + r.kv_bytes_per_token <
                      static_cast<double>(r.cache_bytes);

    if (o.batch > 1) {
        std::vector<std::unique_ptr<Session>> sessions;
        for (int i = 0; i < o.batch; ++i)
            sessions.push_back(engine.create_session(model, run.capacity()));
        std::vector<double> rates, steps;
        for (int i = 0; i < o.warmup; ++i) run.batch(sessions, steps);
        steps.clear();
        for (int i = 0; i < o.repeat; ++i)
            rates.push_back(static_cast<double>(o.batch) * o.gen_tokens /
                            run.batch(sessions, steps));
        r.batch_tok_s = spread_of(rates);
        r.batch_ratio = r.batch_tok_s.median / r.gen_tok_s.median;
        std::sort(steps.begin(), steps.end());
        r.batch_step_p50_ms = percentile(steps, 50) * 1e3;
    }

    if (o.draft > 0) {
        auto session = engine.create_session(model, run.capacity());
        const std::vector<int32_t> plain = run.single(*session).tokens;
        for (int i = 0; i < o.warmup; ++i) run.speculative(*session, o.draft);
        std::vector<double> rates;
        int steps = 0, drafted = 0, accepted = 0;
        r.spec_identical = true;
        for (int i = 0; i < o.repeat; ++i) {
            const SpeculativeRun s = run.speculative(*session, o.draft);
            rates.push_back(o.gen_tokens / s.decode_s);
            steps += s.steps;
            drafted += s.drafted;
            accepted += s.accepted;
            r.spec_identical = r.spec_identical && s.tokens == plain;
        }
        r.spec_tok_s = spread_of(rates);
        r.spec_speedup = r.spec_tok_s.median / r.gen_tok_s.median;
        r.spec_drafted = drafted / o.repeat;
        r.spec_acceptance = drafted > 0 ? static_cast<double>(accepted) / drafted : 0;
        r.spec_tokens_per_step = static_cast<double>(o.gen_tokens) * o.repeat / steps;
    }

    if (o.api_overhead) {
        auto session = engine.create_session(model, run.capacity());
        KVCache bare_cache(c, run.capacity(), session->impl().cache.type());
        std::vector<double> bare, api;
        for (int i = 0; i < o.warmup; ++i) run.api_vs_bare(*session, bare_cache, bare, api);
        bare.clear();
        api.clear();
        for (int i = 0; i < o.repeat; ++i) run.api_vs_bare(*session, bare_cache, bare, api);
        // Medians of single steps: a step the OS preempted does not count against either side.
        r.bare_step_ms = spread_of(bare).median * 1e3;
        r.api_step_ms = spread_of(api).median * 1e3;
        // The overhead is the median of the differences of neighbouring steps (same position,
        // same moment): the difference of the two medians moved by +-1.5% between runs of one
        // build, as much as the overhead itself.
        std::vector<double> extra(bare.size());
        for (size_t i = 0; i < bare.size(); ++i) extra[i] = api[i] - bare[i];
        r.api_overhead_pct = spread_of(extra).median * 1e3 / r.bare_step_ms * 100;
    }

    // getrusage's figure lags the kernel's high-water mark until the resident set shrinks.
    r.max_rss_bytes = std::max(rusage_max_bytes(), peak_rss_bytes());
    if (o.bandwidth_bytes > 0) {
        // On the engine's own pool: the threads that ran the model, and no second pool whose
        // idle workers could compete for the cores.
        r.bandwidth_end_gb_s = measure_read_bandwidth(pool, o.bandwidth_bytes, o.bandwidth_passes);
        r.bandwidth_gb_s = std::max(r.bandwidth_start_gb_s, r.bandwidth_end_gb_s);
        r.bandwidth_pct = r.achieved_gb_s / r.bandwidth_gb_s * 100;
        interleave_with_reads(run, engine, model, o, pool, r);
    }
    return r;
}

std::string bench_json(const BenchResult& r) {
    const BenchOptions& o = r.options;
    nlohmann::ordered_json j;
    j["model"] = r.model;
    j["format"] = r.format;
    j["weight_bytes"] = r.weight_bytes;
    j["huge_page_bytes"] = r.huge_page_bytes;
    j["kernel"] = r.kernel;
    j["threads"] = r.threads;
    j["kv_cache"] = r.kv_cache;
    j["prompt_tokens"] = o.prompt_tokens;
    j["gen_tokens"] = o.gen_tokens;
    j["batch"] = o.batch;
    j["repeat"] = o.repeat;
    j["prompt_tok_s"] = round_sig(r.prompt_tok_s.median);
    j["prompt_tok_s_min"] = round_sig(r.prompt_tok_s.min);
    j["prompt_tok_s_max"] = round_sig(r.prompt_tok_s.max);
    j["gen_tok_s"] = round_sig(r.gen_tok_s.median);
    j["gen_tok_s_min"] = round_sig(r.gen_tok_s.min);
    j["gen_tok_s_max"] = round_sig(r.gen_tok_s.max);
    j["ttft_ms"] = round_sig(r.ttft_ms.median);
    j["ttft_ms_min"] = round_sig(r.ttft_ms.min);
    j["ttft_ms_max"] = round_sig(r.ttft_ms.max);
    j["token_latency_ms"] = {{"p50", round_sig(r.latency_p50_ms)},
                             {"p95", round_sig(r.latency_p95_ms)},
                             {"p99", round_sig(r.latency_p99_ms)},
                             {"min", round_sig(r.latency_min_ms)},
                             {"max", round_sig(r.latency_max_ms)}};
    if (o.batch > 1) {
        j["batch_tok_s"] = round_sig(r.batch_tok_s.median);
        j["batch_tok_s_min"] = round_sig(r.batch_tok_s.min);
        j["batch_tok_s_max"] = round_sig(r.batch_tok_s.max);
        j["batch_ratio"] = round_sig(r.batch_ratio);
        j["batch_step_ms_p50"] = round_sig(r.batch_step_p50_ms);
    }
    if (o.draft > 0) {
        j["draft"] = o.draft;
        j["spec_tok_s"] = round_sig(r.spec_tok_s.median);
        j["spec_tok_s_min"] = round_sig(r.spec_tok_s.min);
        j["spec_tok_s_max"] = round_sig(r.spec_tok_s.max);
        j["spec_speedup"] = round_sig(r.spec_speedup);
        j["spec_acceptance"] = round_sig(r.spec_acceptance);
        j["spec_tokens_per_step"] = round_sig(r.spec_tokens_per_step);
        j["spec_identical"] = r.spec_identical;
    }
    j["peak_rss_mb"] = round_sig(mb(r.peak_rss_bytes));
    j["peak_rss_reset"] = r.peak_rss_reset;
    j["max_rss_mb"] = round_sig(mb(r.max_rss_bytes));
    j["model_mb"] = round_sig(mb(r.model_bytes));
    j["kv_cache_mb"] = round_sig(mb(r.kv_cache_bytes));
    j["rss_other_mb"] = round_sig(mb(r.peak_rss_bytes) - mb(r.model_bytes) - mb(r.kv_cache_bytes));
    j["bytes_per_token"] = r.bytes_per_token;
    j["kv_bytes_per_token"] = std::llround(r.kv_bytes_per_token);
    j["achieved_gb_s"] = round_sig(r.achieved_gb_s);
    j["bandwidth_gb_s"] = round_sig(r.bandwidth_gb_s);
    j["bandwidth_start_gb_s"] = round_sig(r.bandwidth_start_gb_s);
    j["bandwidth_end_gb_s"] = round_sig(r.bandwidth_end_gb_s);
    j["bandwidth_pct"] = round_sig(r.bandwidth_pct);
    if (r.interleaved_blocks > 0) {
        j["interleaved_pct"] = round_sig(r.interleaved_pct);
        j["interleaved_read_gb_s"] = round_sig(r.interleaved_read_gb_s);
        j["interleaved_blocks"] = r.interleaved_blocks;
    }
    j["fits_in_cache"] = r.fits_in_cache;
    if (o.api_overhead) {
        j["api_step_ms"] = round_sig(r.api_step_ms);
        j["bare_step_ms"] = round_sig(r.bare_step_ms);
        j["api_overhead_pct"] = round_sig(r.api_overhead_pct, 3);
    }
    j["cpu"] = r.cpu;
    j["date"] = r.date;
    return j.dump();
}

std::string bench_table(const BenchResult& r) {
    const BenchOptions& o = r.options;
    std::string out;
    auto line = [&](const std::string& label, const std::string& value,
                    const std::string& range = "") {
        char buf[512];
        std::snprintf(buf, sizeof buf, "%-34s %-26s %s\n", label.c_str(), value.c_str(),
                      range.c_str());
        out += buf;
    };
    auto rate = [](const Spread& s) {
        return std::pair{sig3(s.median) + " tok/s", sig3(s.min) + " .. " + sig3(s.max)};
    };
    out += "model    " + r.model + ": " + r.format + "\n";
    out += "weights  " + sig3(static_cast<double>(r.weight_bytes) / 1e6) + " MB, " +
           sig3(static_cast<double>(r.huge_page_bytes) / 1e6) + " MB of them in 2 MiB pages\n";
    out += "run      " + std::to_string(r.threads) + " threads, " + r.kernel + " kernels, kv " +
           r.kv_cache + ", median of " + std::to_string(o.repeat) + " (+" +
           std::to_string(o.warmup) + " warm-up)\n";
    out += "machine  " + r.cpu + ", " + r.date + "\n\n";
    line("measure", "median", "min .. max");
    const auto [pv, pr] = rate(r.prompt_tok_s);
    line("prompt processing, " + std::to_string(o.prompt_tokens) + " tokens", pv, pr);
    const auto [gv, gr] = rate(r.gen_tok_s);
    line("generation, " + std::to_string(o.gen_tokens) + " tokens", gv, gr);
    line("time to first token", duration(r.ttft_ms.median),
         duration(r.ttft_ms.min) + " .. " + duration(r.ttft_ms.max));
    line("token latency p50 / p95 / p99",
         duration(r.latency_p50_ms) + " / " + duration(r.latency_p95_ms) + " / " +
             duration(r.latency_p99_ms),
         duration(r.latency_min_ms) + " .. " + duration(r.latency_max_ms));
    if (o.batch > 1) {
        const auto [bv, br] = rate(r.batch_tok_s);
        line(std::to_string(o.batch) + " sequences decoding, aggregate", bv,
             br + "  (" + sig3(r.batch_ratio) + "x one sequence)");
    }
    if (o.draft > 0) {
        const auto [sv, sr] = rate(r.spec_tok_s);
        line("speculative, drafts of " + std::to_string(o.draft), sv,
             sr + "  (" + sig3(r.spec_speedup) + "x; " + fixed(r.spec_acceptance * 100, 0) +
                 "% of " + std::to_string(r.spec_drafted) + " drafted accepted, " +
                 sig3(r.spec_tokens_per_step) + " tokens a pass; " +
                 (r.spec_identical ? "same tokens" : "DIFFERENT TOKENS") + ")");
    }
    line("peak RSS", sig3(mb(r.peak_rss_bytes)) + " MB",
         "weights " + sig3(mb(r.model_bytes)) + " MB + KV cache " + sig3(mb(r.kv_cache_bytes)) +
             " MB + " + sig3(mb(r.peak_rss_bytes) - mb(r.model_bytes) - mb(r.kv_cache_bytes)) +
             " MB other");
    line("read per generated token",
         sig3(mb(r.bytes_per_token) + r.kv_bytes_per_token / 1e6) + " MB",
         "weights " + sig3(mb(r.bytes_per_token)) + " MB + KV " + sig3(r.kv_bytes_per_token / 1e6) +
             " MB");
    if (r.bandwidth_gb_s > 0) {
        line("achieved read bandwidth", sig3(r.achieved_gb_s) + " GB/s",
             sig3(r.bandwidth_pct) + "% of " + sig3(r.bandwidth_gb_s) + " GB/s measured (" +
                 sig3(r.bandwidth_start_gb_s) + " before, " + sig3(r.bandwidth_end_gb_s) +
                 " after)" +
                 (r.fits_in_cache ? " (from cache: the model fits in the " +
                                        sig3(mb(r.cache_bytes)) + " MB last-level cache)"
                                  : ""));
        line("  same seconds", sig3(r.interleaved_pct) + "%",
             "of the read rate between decode blocks (" + std::to_string(r.interleaved_blocks) +
                 " blocks, reads median " + sig3(r.interleaved_read_gb_s) + " GB/s)" +
                 (r.fits_in_cache ? " (from cache)" : ""));
    } else {
        line("achieved read bandwidth", sig3(r.achieved_gb_s) + " GB/s", "(ceiling not measured)");
    }
    if (o.api_overhead) {
        line("public API over bare forward",
             (r.api_overhead_pct >= 0 ? "+" : "") + fixed(r.api_overhead_pct, 2) + "%",
             duration(r.api_step_ms) + " vs " + duration(r.bare_step_ms) + " a decode step");
    }
    return out;
}

}  // namespace bitnet
