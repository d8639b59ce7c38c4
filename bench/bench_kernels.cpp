// CPU kernel benchmarks on the shapes of bitnet-b1.58-2B-4T, single-threaded, for every level
// this CPU supports (the level is part of each benchmark's name). Bytes are weight bytes, so
// bytes_per_second of a GEMV is its weight streaming bandwidth; items are multiply-adds.
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/arena.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/cpu/dense_groups.h"
#include "kernels/cpu/int8_kv_layout.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/ternary_pack.h"
#include "model/forward.h"
#include "model/model_impl.h"
#include "model/synthetic_model.h"
#include "runtime/kv_cache.h"

namespace bitnet::cpu {
namespace {

// Fast deterministic filler; the statistics of the data do not affect the kernels' speed.
struct XorShift {
    uint64_t s = 0x9e3779b97f4a7c15ull;
    uint32_t next() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return static_cast<uint32_t>(s >> 32);
    }
    float uniform() { return static_cast<float>(next() >> 8) * (2.f / 16777216.f) - 1.f; }
};

// Random weights in the 2-bit layout; Trits5 when `trits5` (random canonical bytes); 2-bit in
// row tiles when `tiled` (as the engine holds matrices of 1 MiB and more).
struct TernaryWeights {
    int rows, cols;
    TernaryLayout layout;
    bool tiled;
    AlignedBuffer<uint8_t> data;
    TernaryWeights(int r, int c, bool trits5 = false, bool tiled_ = false)
        : rows(r),
          cols(c),
          layout(trits5 ? TernaryLayout::Trits5 : TernaryLayout::Bits2),
          tiled(tiled_ && !trits5),
          data(ternary_packed_bytes(r, c, layout)) {
        XorShift rng;
        for (size_t i = 0; i < data.size(); ++i) {
            if (trits5) {
                data[i] = static_cast<uint8_t>((rng.next() % 243 * 256 + 242) / 243);
                continue;
            }
            uint8_t b = 0;
            for (int j = 0; j < 4; ++j) b = static_cast<uint8_t>(b | ((rng.next() % 3) << (2 * j)));
            data[i] = b;
        }
        if (tiled)
            tile_ternary_rows(make_ternary_view(data.data(), rows, cols, layout), data.data());
    }
    TernaryMatrixView view() const {
        TernaryMatrixView v = make_ternary_view(data.data(), rows, cols, layout);
        v.tiled = tiled;
        return v;
    }
};

struct Activations {
    int rows, stride;
    AlignedBuffer<int8_t> q;
    std::vector<int32_t> row_sum;
    std::vector<float> out_scale;
    Activations(int m, int cols)
        : rows(m),
          stride(round_up(cols, kTernaryBlock)),
          q(static_cast<size_t>(m) * stride),
          row_sum(m),
          out_scale(m) {
        XorShift rng;
        std::vector<float> x(cols);
        for (int i = 0; i < m; ++i) {
            for (float& v : x) v = rng.uniform();
            const float s = scalar_kernels().quantize_row_i8(
                x.data(), cols, stride, q.data() + static_cast<size_t>(i) * stride, &row_sum[i]);
            out_scale[i] = 1.f / s;
        }
    }
    QuantizedActivations view() const {
        return {q.data(), row_sum.data(), out_scale.data(), rows, stride};
    }
};

// Built on first use and shared by every level, so setup is paid once per shape.
template <typename T, typename... Args>
const T& cached(Args... args) {
    static std::map<std::tuple<Args...>, std::unique_ptr<T>> cache;
    auto& slot = cache[std::tuple<Args...>(args...)];
    if (!slot) slot = std::make_unique<T>(args...);
    return *slot;
}

void bench_ternary(benchmark::State& state, Isa isa, int rows, int cols, int m, bool trits5,
                   bool tiled) {
    const KernelTable& k = kernels(isa);
    const TernaryWeights& w = cached<TernaryWeights>(rows, cols, trits5, tiled);
    const Activations& x = cached<Activations>(m, cols);
    std::vector<float> y(static_cast<size_t>(m) * rows);
    const QuantizedActivations acts = x.view();
    for (auto _ : state) {
        k.ternary_gemm(w.view(), 0, rows, acts, y.data(), rows);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(w.data.size()));
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * m *
                            static_cast<int64_t>(rows) * cols);
}

// A small model's one-token product in cache (the 1m model's shapes), from the packed rows or
// from the row-group copy the engine makes on AVX-512 VNNI CPUs (kernels.h), same results.
void bench_ternary_groups(benchmark::State& state, Isa isa, int rows, int cols, bool groups) {
    const KernelTable& k = kernels(isa);
    const TernaryWeights& w = cached<TernaryWeights>(rows, cols, false, false);
    const Activations& x = cached<Activations>(1, cols);
    AlignedBuffer<uint8_t> grouped(ternary_groups_bytes(w.view()), false);
    const TernaryMatrixView view = groups ? group_ternary_rows(w.view(), grouped.data()) : w.view();
    std::vector<float> y(static_cast<size_t>(rows));
    const QuantizedActivations acts = x.view();
    for (auto _ : state) {
        k.ternary_gemm(view, 0, rows, acts, y.data(), rows);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * rows * cols);
}

// Times run() (one head product into y); bytes are the head's, items its multiply-adds.
template <typename Run>
void run_head(benchmark::State& state, size_t weight_bytes, int64_t multiply_adds,
              std::vector<float>& y, Run run) {
    for (auto _ : state) {
        run();
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(weight_bytes));
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * multiply_adds);
}

struct Int8Matrix {
    AlignedBuffer<int8_t> data;
    std::vector<float> row_scale;
    Int8Matrix(int rows, int cols)
        : data(static_cast<size_t>(rows) * cols, false), row_scale(rows) {
        XorShift rng;
        for (size_t i = 0; i < data.size(); ++i)
            data[i] = static_cast<int8_t>(static_cast<int>(rng.next() % 255) - 127);
        for (float& s : row_scale) s = 0.001f + rng.uniform() * 1e-3f;
    }
};

// The compact int8 head (I8R) on int8 activations, as generation and batches run it.
void bench_lm_head_i8(benchmark::State& state, Isa isa, int rows, int cols, int m) {
    const KernelTable& k = kernels(isa);
    const Int8Matrix& w = cached<Int8Matrix>(rows, cols);
    std::vector<int8_t> xq(static_cast<size_t>(m) * cols);
    std::vector<float> x_scale(m), y(static_cast<size_t>(m) * rows);
    XorShift rng;
    for (int8_t& v : xq) v = static_cast<int8_t>(static_cast<int>(rng.next() % 255) - 127);
    for (float& s : x_scale) s = 0.01f + rng.uniform() * 1e-2f;
    run_head(state, w.data.bytes(), static_cast<int64_t>(rows) * cols * m, y, [&] {
        k.int8_gemm_i8r(w.data.data(), w.row_scale.data(), cols, 0, rows, xq.data(), x_scale.data(),
                        m, cols, y.data(), rows);
    });
}

struct Bf16Matrix {
    AlignedBuffer<uint16_t> data;
    Bf16Matrix(int rows, int cols) : data(static_cast<size_t>(rows) * cols, false) {
        XorShift rng;
        // Sign and mantissa random, exponent fixed: finite values around 2^-7.
        for (size_t i = 0; i < data.size(); ++i)
            data[i] = static_cast<uint16_t>(0x3c00u | (rng.next() & 0x807fu));
    }
};

void bench_lm_head(benchmark::State& state, Isa isa, int rows, int cols, int m) {
    const KernelTable& k = kernels(isa);
    const Bf16Matrix& w = cached<Bf16Matrix>(rows, cols);
    std::vector<float> x(static_cast<size_t>(m) * cols), y(static_cast<size_t>(m) * rows);
    XorShift rng;
    for (float& v : x) v = rng.uniform();
    run_head(state, w.data.bytes(), static_cast<int64_t>(rows) * cols * m, y, [&] {
        k.dense_gemm_bf16(w.data.data(), cols, 0, rows, x.data(), m, cols, y.data(), rows);
    });
}

// A small model's head in cache (the 1m model's: 512 x 128 bf16), from its rows or from its copy
// in dense row groups (kernels.h), which gives the same bits.
void bench_small_head(benchmark::State& state, Isa isa, int rows, int cols, int m, bool groups) {
    const KernelTable& k = kernels(isa);
    const Bf16Matrix& w = cached<Bf16Matrix>(rows, cols);
    AlignedBuffer<uint8_t> grouped(dense_groups_bytes(rows, cols, 2), false);
    group_dense_rows(w.data.data(), rows, cols, 2, grouped.data());
    std::vector<float> x(static_cast<size_t>(m) * cols), y(static_cast<size_t>(m) * rows);
    XorShift rng;
    for (float& v : x) v = rng.uniform();
    run_head(state, w.data.bytes(), static_cast<int64_t>(rows) * cols * m, y, [&] {
        if (groups) {
            k.dense_groups_gemm(grouped.data(), true, cols, 0, rows / kDenseGroupRows, x.data(), m,
                                cols, y.data(), rows);
        } else {
            k.dense_gemm_bf16(w.data.data(), cols, 0, rows, x.data(), m, cols, y.data(), rows);
        }
    });
}

void bench_quantize(benchmark::State& state, Isa isa, int n) {
    const KernelTable& k = kernels(isa);
    std::vector<float> x(n);
    XorShift rng;
    for (float& v : x) v = rng.uniform();
    std::vector<int8_t> q(round_up(n, kTernaryBlock));
    int32_t sum = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(
            k.quantize_row_i8(x.data(), n, static_cast<int>(q.size()), q.data(), &sum));
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n *
                            static_cast<int64_t>(sizeof(float)));
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * n);
}

// A BitLinear input: RMSNorm and int8 quantisation of n values, fused (one kernel, no floats
// stored) or as the two calls the forward pass made before the fused kernel.
void bench_norm_quantize(benchmark::State& state, Isa isa, int n, bool fused) {
    const KernelTable& k = kernels(isa);
    std::vector<float> x(n), w(n), normed(n);
    XorShift rng;
    for (float& v : x) v = rng.uniform();
    for (float& v : w) v = 0.5f + rng.uniform();
    std::vector<int8_t> q(round_up(n, kTernaryBlock));
    const int n_pad = static_cast<int>(q.size());
    int32_t sum = 0;
    for (auto _ : state) {
        if (fused) {
            benchmark::DoNotOptimize(
                k.rms_norm_quantize_i8(x.data(), w.data(), n, 1e-5f, n_pad, q.data(), &sum));
        } else {
            k.rms_norm(x.data(), w.data(), n, 1e-5f, normed.data());
            benchmark::DoNotOptimize(k.quantize_row_i8(normed.data(), n, n_pad, q.data(), &sum));
        }
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * n);
}

// `queries` query heads sharing one KV head over n_keys cached positions (keys and values of
// `type`, one head's rows contiguous as the cache keeps them). `planes` > 1 cycles through that
// many heads' keys and values, 2 x 256 KiB each at 256 f32 keys x 128: a decoding batch's
// caches, read from memory.
void bench_attention(benchmark::State& state, Isa isa, KvType type, int head_dim, int n_keys,
                     int queries, int planes, bool prefetch) {
    const KernelTable& k = kernels(isa);
    const size_t plane = static_cast<size_t>(head_dim) * n_keys;
    std::vector<float> kv(plane * 2 * planes), q(static_cast<size_t>(head_dim) * queries),
        scratch(static_cast<size_t>(n_keys) * queries), out(q.size());
    XorShift rng;
    for (float& v : kv) v = rng.uniform();
    for (float& v : q) v = rng.uniform();
    // Rows stored as the cache stores them (with a scale each for I8, in its tiles).
    const size_t elem = kv_elem_bytes(type), rows = kv.size() / head_dim;
    const size_t plane_bytes =
        type == KvType::I8 ? int8_plane_bytes(n_keys, head_dim) : plane * elem;
    AlignedBuffer<uint8_t> stored(plane_bytes * 2 * planes);
    std::vector<float> row_scales(rows);
    for (size_t r = 0; r < rows; ++r) {
        const size_t which = r / n_keys;  // plane: 2 x head + (keys 0, values 1)
        const int p = static_cast<int>(r % n_keys);
        uint8_t* dst = stored.data() + which * plane_bytes;
        if (type != KvType::I8) {
            k.store_kv_row(kv.data() + r * head_dim, head_dim, type, dst + p * head_dim * elem,
                           row_scales.data() + r);
            continue;
        }
        k.store_int8_kv(kv.data() + r * head_dim, head_dim, p, which % 2 == 0,
                        reinterpret_cast<int8_t*>(dst), row_scales.data() + r);
    }
    const char* base = reinterpret_cast<const char*>(stored.data());
    AttentionHeadArgs a;
    a.q = q.data();
    a.kv_type = type;
    a.row_stride = static_cast<size_t>(head_dim);
    a.n_keys = n_keys;
    a.head_dim = head_dim;
    a.n_queries = queries;
    a.prefetch = prefetch;
    a.scale = 0.125f;
    a.scratch = scratch.data();
    a.out = out.data();
    int next = 0;
    for (auto _ : state) {
        a.k = base + 2 * plane_bytes * next;
        a.v = base + (2 * next + 1) * plane_bytes;
        a.k_scale = row_scales.data() + 2 * static_cast<size_t>(n_keys) * next;
        a.v_scale = a.k_scale + n_keys;
        next = next + 1 == planes ? 0 : next + 1;
        k.attention_head(a);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 2 * n_keys * head_dim *
                            queries);
}

// The KV cache types the attention benchmarks run, with their names in benchmark names.
const std::pair<KvType, const char*> kAttentionKvTypes[] = {
    {KvType::F32, "f32"}, {KvType::BF16, "bf16"}, {KvType::I8, "i8"}};

// Synthetic models are built once per (shape, weights, head) and shared by the benchmarks.
const Model::Impl& synthetic(const std::string& shape, const std::string& weights,
                             const std::string& head) {
    static std::map<std::string, std::shared_ptr<const Model>> cache;
    std::shared_ptr<const Model>& slot = cache[shape + "/" + weights + "/" + head];
    if (!slot) {
        SyntheticSpec spec;
        spec.shape = shape;
        spec.weights = weights;
        spec.head = head;
        slot = make_synthetic_model(spec);
    }
    return slot->impl();
}

// Prefill of one `tokens`-token prompt through a whole synthetic model (logits of the last
// token only, as generation needs).
void bench_prefill(benchmark::State& state, Isa isa, const std::string& shape,
                   const std::string& weights, const std::string& head, int threads, int tokens) {
    const Model::Impl& impl = synthetic(shape, weights, head);
    ThreadPool pool(threads);
    Arena arena;
    KVCache cache(impl.config, tokens, KvType::F32);
    std::vector<int32_t> prompt(static_cast<size_t>(tokens));
    for (int i = 0; i < tokens; ++i) prompt[i] = (i * 37 + 11) % impl.config.vocab_size;
    std::vector<float> logits(static_cast<size_t>(impl.config.vocab_size));
    ForwardPass pass(impl, kernels(isa), pool, arena);
    for (auto _ : state) {
        arena.reset();
        cache.set_length(0);
        ForwardItem item{&cache, prompt.data(), tokens, false, logits.data(), nullptr};
        pass.run(std::span<ForwardItem>(&item, 1));
        benchmark::DoNotOptimize(logits.data());
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * tokens);
}

// One decode step of a whole synthetic model (embedding, every layer, head) with `context`
// tokens already cached: the per-token latency of generation without sampling or API.
void bench_decode_step(benchmark::State& state, Isa isa, const std::string& shape,
                       const std::string& weights, const std::string& head, int threads,
                       int context, KvType kv) {
    const Model::Impl& impl = synthetic(shape, weights, head);
    ThreadPool pool(threads);
    Arena arena;
    KVCache cache(impl.config, context + 1, kv);
    std::vector<int32_t> prompt(static_cast<size_t>(context));
    for (int i = 0; i < context; ++i) prompt[i] = (i * 37 + 11) % impl.config.vocab_size;
    ForwardPass pass(impl, kernels(isa), pool, arena);
    ForwardItem fill{&cache, prompt.data(), context, false, nullptr, nullptr};
    pass.run(std::span<ForwardItem>(&fill, 1));
    std::vector<float> logits(static_cast<size_t>(impl.config.vocab_size));
    const int32_t token = 7;
    for (auto _ : state) {
        arena.reset();
        cache.set_length(context);
        ForwardItem step{&cache, &token, 1, false, logits.data(), nullptr};
        pass.run(std::span<ForwardItem>(&step, 1));
        benchmark::DoNotOptimize(logits.data());
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// The int8 multiply-add ceiling of one core with VNNI, for the GEMM figures to be read against in
// the same run: sixteen independent vpdpbusd chains (64 multiply-adds each) and nothing else (no
// loads, no code extraction). Each chain depends on itself only, so nothing can be folded.
// Sixteen chains, since a chain's latency (about six cycles on Emerald Rapids) times two
// vpdpbusd a cycle needs twelve or more in flight. Through the assembler: from the intrinsic,
// GCC 12 copied every accumulator to another register and back each step, sixteen moves that
// took the same ports, so this figure read 150-300 G/s from run to run where this loop reads
// 300-340 (2026-11-29).
constexpr int kPeakChains = 16;
constexpr int64_t kPeakSteps = 1 << 14;

__attribute__((target("avx512f,avx512bw,avx512vnni"))) int64_t peak_vnni(int32_t seed) {
    __m512i c0 = _mm512_set1_epi32(seed), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
            c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0, c12 = c0, c13 = c0, c14 = c0, c15 = c0;
    const __m512i a = _mm512_set1_epi8(static_cast<char>(seed | 1)), b = _mm512_set1_epi8(3);
    // Eight chains a statement: an asm takes at most 30 operands.
    auto eight = [&](__m512i & d0, __m512i & d1, __m512i & d2, __m512i & d3, __m512i & d4,
                     __m512i & d5, __m512i & d6, __m512i & d7) __attribute__((always_inline)) {
        __asm__ volatile(
            "vpdpbusd %[b], %[a], %0\n\tvpdpbusd %[b], %[a], %1\n\t"
            "vpdpbusd %[b], %[a], %2\n\tvpdpbusd %[b], %[a], %3\n\t"
            "vpdpbusd %[b], %[a], %4\n\tvpdpbusd %[b], %[a], %5\n\t"
            "vpdpbusd %[b], %[a], %6\n\tvpdpbusd %[b], %[a], %7"
            : "+v"(d0), "+v"(d1), "+v"(d2), "+v"(d3), "+v"(d4), "+v"(d5), "+v"(d6), "+v"(d7)
            : [a] "v"(a), [b] "v"(b));
    };
    for (int64_t n = 0; n < kPeakSteps; ++n) {
        eight(c0, c1, c2, c3, c4, c5, c6, c7);
        eight(c8, c9, c10, c11, c12, c13, c14, c15);
    }
    const __m512i acc[kPeakChains] = {c0, c1, c2,  c3,  c4,  c5,  c6,  c7,
                                      c8, c9, c10, c11, c12, c13, c14, c15};
    int64_t sum = 0;
    alignas(64) int32_t lanes[16];
    for (const __m512i& v : acc) {
        _mm512_store_si512(lanes, v);
        for (int32_t l : lanes) sum += l;
    }
    return sum;
}

void bench_int8_peak(benchmark::State& state) {
    int32_t seed = 1;
    for (auto _ : state) benchmark::DoNotOptimize(peak_vnni(seed++));
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kPeakSteps * kPeakChains *
                            64);
}

void register_all() {
    struct Shape {
        const char* name;
        int rows, cols;
    };
    const Shape shapes[] = {{"qkv", 3840, 2560},
                            {"o", 2560, 2560},
                            {"gate_up", 13824, 2560},
                            {"down", 2560, 6912},
                            // 320 KiB: a GEMV's compute rate, with the weights in L2.
                            {"l2", 512, 2560},
                            // 128 MiB of 2-bit weights, past every cache: GEMV at DRAM bandwidth,
                            // and a small batch's GEMM with weights from memory as in decoding.
                            {"dram", 204800, 2560}};
    for (Isa isa : supported_isas()) {
        const std::string level = isa_name(isa);
        if (isa == Isa::AVX512VNNI)
            benchmark::RegisterBenchmark("vpdpbusd_peak/avx512vnni", bench_int8_peak);
        for (const Shape& s : shapes) {
            for (int m : {1, 8, 16, 32, 128, 1024}) {
                if (std::string(s.name) == "dram" && (m > 8 || isa == Isa::Scalar)) continue;
                // Where AMX tiles take over from VNNI (16 rows), and a long prompt's
                // activations, past L2.
                if ((m == 16 || m == 32 || m > 128) &&
                    (isa < Isa::AVX512VNNI || std::string(s.name) == "qkv"))
                    continue;
                if (std::string(s.name) == "l2" && m > 1) continue;
                // The scalar reference would take seconds per prefill call; its GEMV is the
                // baseline.
                if (isa == Isa::Scalar && m > 1) continue;
                const std::string name = "ternary_gemm/" + level + "/" + s.name + "_" +
                                         std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                                         "/M=" + std::to_string(m);
                benchmark::RegisterBenchmark(name.c_str(), bench_ternary, isa, s.rows, s.cols, m,
                                             false, false)
                    ->Unit(benchmark::kMicrosecond);
                // The 1.6-bit layout ("ternary5_gemm": bytes are its 20% smaller weights).
                const std::string name5 = "ternary5_gemm" + name.substr(name.find('/'));
                benchmark::RegisterBenchmark(name5.c_str(), bench_ternary, isa, s.rows, s.cols, m,
                                             true, false)
                    ->Unit(benchmark::kMicrosecond);
                // 2-bit in row tiles, as the engine holds matrices of 1 MiB and more.
                if (s.rows * static_cast<size_t>(s.cols) / 4 < (size_t{1} << 20)) continue;
                const std::string tiled = "ternary_tiled_gemm" + name.substr(name.find('/'));
                benchmark::RegisterBenchmark(tiled.c_str(), bench_ternary, isa, s.rows, s.cols, m,
                                             false, true)
                    ->Unit(benchmark::kMicrosecond);
            }
        }
        // The whole head streams from memory; 4096 rows (21 MB) stay in the last-level cache,
        // 256 rows (1.3 MB of bf16) in L2: the tiles' compute rate.
        for (const auto& [rows, m] : std::vector<std::pair<int, int>>{
                 {128256, 1}, {128256, 8}, {4096, 1}, {4096, 8}, {256, 8}}) {
            if (isa == Isa::Scalar && (m > 1 || rows < 128256)) continue;
            benchmark::RegisterBenchmark(("dense_gemm_bf16/" + level + "/lm_head_" +
                                          std::to_string(rows) + "x2560/M=" + std::to_string(m))
                                             .c_str(),
                                         bench_lm_head, isa, rows, 2560, m)
                ->Unit(benchmark::kMicrosecond);
            if (isa == Isa::Scalar) continue;
            benchmark::RegisterBenchmark(("int8_gemm_i8r/" + level + "/lm_head_" +
                                          std::to_string(rows) + "x2560/M=" + std::to_string(m))
                                             .c_str(),
                                         bench_lm_head_i8, isa, rows, 2560, m)
                ->Unit(benchmark::kMicrosecond);
        }
        // Row groups serve one-token products at the VNNI level only.
        for (const auto& [rows, cols] :
             std::vector<std::pair<int, int>>{{128, 128}, {512, 128}, {128, 512}}) {
            for (bool groups : {false, true}) {
                if (groups && isa != Isa::AVX512VNNI) continue;
                const std::string name =
                    std::string(groups ? "ternary_groups_gemv/" : "ternary_gemm/") + level +
                    "/small_" + std::to_string(rows) + "x" + std::to_string(cols) + "/M=1";
                benchmark::RegisterBenchmark(name.c_str(), bench_ternary_groups, isa, rows, cols,
                                             groups)
                    ->Unit(benchmark::kNanosecond);
            }
        }
        for (int m : {1, 4}) {
            for (bool groups : {false, true}) {
                if (groups && kernels(isa).dense_groups_gemm == nullptr) continue;
                benchmark::RegisterBenchmark(((groups ? "dense_groups_gemm/" : "dense_gemm_bf16/") +
                                              level + "/small_head_512x128/M=" + std::to_string(m))
                                                 .c_str(),
                                             bench_small_head, isa, 512, 128, m, groups);
            }
        }
        for (const auto& [hd, keys] :
             std::vector<std::pair<int, int>>{{32, 64}, {32, 256}, {128, 128}, {128, 1024}}) {
            for (const auto& [type, type_name] : kAttentionKvTypes) {
                benchmark::RegisterBenchmark(
                    ("attention_head/" + level + "/" + type_name +
                     "/head_dim=" + std::to_string(hd) + "/keys=" + std::to_string(keys))
                        .c_str(),
                    bench_attention, isa, type, hd, keys, 1, 1, false)
                    ->Unit(benchmark::kNanosecond);
            }
        }
        // 2B-4T's four query heads a KV head: in L2, and from memory without and with prefetch.
        for (const auto& [planes, prefetch] :
             std::vector<std::pair<int, bool>>{{1, false}, {256, false}, {256, true}}) {
            const std::string where = planes == 1 ? "cached"
                                      : prefetch  ? "memory+prefetch"
                                                  : "memory";
            for (const auto& [type, type_name] : kAttentionKvTypes) {
                benchmark::RegisterBenchmark(("attention_group/" + level + "/" + type_name +
                                              "/head_dim=128/keys=256/queries=4/" + where)
                                                 .c_str(),
                                             bench_attention, isa, type, 128, 256, 4, planes,
                                             prefetch)
                    ->Unit(benchmark::kNanosecond);
            }
        }
        benchmark::RegisterBenchmark(("quantize_row_i8/" + level + "/2560").c_str(), bench_quantize,
                                     isa, 2560)
            ->Unit(benchmark::kNanosecond);
        for (int n : {128, 512, 2560}) {
            for (bool fused : {false, true}) {
                benchmark::RegisterBenchmark(
                    ((fused ? "rms_norm_quantize_i8/" : "rms_norm+quantize_row_i8/") + level + "/" +
                     std::to_string(n))
                        .c_str(),
                    bench_norm_quantize, isa, n, fused)
                    ->Unit(benchmark::kNanosecond);
            }
        }
    }
    const Isa best = supported_isas().back();
    // The whole 2B-4T-shaped model (1.2 GB of weights built in memory, slow to set up): run
    // with --benchmark_filter=2b.
    for (int threads : {1, 2}) {
        for (const char* weights : {"t2", "t5"}) {
            const std::string w = weights;
            const std::string head = w == "t2" ? "bf16" : "i8";
            const std::string suffix =
                "/2b_" + w + "_" + head + "/threads=" + std::to_string(threads);
            benchmark::RegisterBenchmark(
                (std::string("prefill/") + isa_name(best) + suffix + "/tokens=128").c_str(),
                bench_prefill, best, "2b", w, head, threads, 128)
                ->Unit(benchmark::kMillisecond)
                ->MinTime(2.0);
            benchmark::RegisterBenchmark(
                (std::string("decode_step/") + isa_name(best) + suffix + "/context=128").c_str(),
                bench_decode_step, best, "2b", w, head, threads, 128, KvType::F32)
                ->Unit(benchmark::kMillisecond)
                ->MinTime(2.0);
        }
    }
    for (int context : {16, 128}) {
        for (int threads : {1, 2}) {
            const std::string name = std::string("decode_step/") + isa_name(best) +
                                     "/1m_t2_bf16/context=" + std::to_string(context) +
                                     "/threads=" + std::to_string(threads);
            benchmark::RegisterBenchmark(name.c_str(), bench_decode_step, best, "1m", "t2", "bf16",
                                         threads, context, KvType::F32)
                ->Unit(benchmark::kMicrosecond);
        }
    }
    // The issue #5 measure decodes at context 128-255 with the int8 cache; 192 is its middle.
    benchmark::RegisterBenchmark(
        (std::string("decode_step/") + isa_name(best) + "/1m_t2_bf16_kvi8/context=192/threads=1")
            .c_str(),
        bench_decode_step, best, "1m", "t2", "bf16", 1, 192, KvType::I8)
        ->Unit(benchmark::kMicrosecond);
}

}  // namespace
}  // namespace bitnet::cpu

int main(int argc, char** argv) {
    bitnet::cpu::register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
