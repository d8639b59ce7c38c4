#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "bitnet/error.h"

namespace bitnet {

// Handing a loop to the other threads and meeting them at its end costs 1-3 us on the 2-core VM
// measured, and about three times that in the hours its host places the two vCPUs far apart;
// a core does about 2^18 multiply-adds in that time. Only tiny models fall below it: the 1m
// model decoding one token, whose step took 30-90 us on two threads and 21-29 us on one, now
// 20-29 us. A 2B decode step's smallest product has 6.5 M.
const int64_t kDefaultShareMinWork = int64_t{1} << 18;

namespace {

// Per-token int8 activations of M rows, laid out for cpu::QuantizedActivations.
struct QuantizedRows {
    int8_t* q = nullptr;
    int32_t* sum = nullptr;
    float* s_x = nullptr;
    int rows = 0;
    int stride = 0;
};

QuantizedRows alloc_quantized(Arena& arena, int rows, int cols) {
    QuantizedRows r;
    r.rows = rows;
    r.stride = cpu::ternary_activation_stride(cols);  // serves either weight layout
    r.q = arena.allocate_array<int8_t>(static_cast<size_t>(rows) * r.stride);
    r.sum = arena.allocate_array<int32_t>(static_cast<size_t>(rows));
    r.s_x = arena.allocate_array<float>(static_cast<size_t>(rows));
    return r;
}

// Quantizes one token's activations into row t of `rows`.
void quantize_row(const cpu::KernelTable& k, const float* x, int n, const QuantizedRows& rows,
                  int64_t t) {
    rows.s_x[t] = k.quantize_row_i8(x, n, rows.stride, rows.q + t * rows.stride, rows.sum + t);
}

// The same of rms_norm(x, w), in one kernel call that stores no floats.
void norm_quantize_row(const cpu::KernelTable& k, const float* x, const float* w, int n, float eps,
                       const QuantizedRows& rows, int64_t t) {
    rows.s_x[t] =
        k.rms_norm_quantize_i8(x, w, n, eps, rows.stride, rows.q + t * rows.stride, rows.sum + t);
}

void add_into(float* h, const float* delta, int n) {
    for (int i = 0; i < n; ++i) h[i] += delta[i];
}

// One BitLinear product of a GEMM group: y[m][0..out) = BitLinear(w, x_m).
struct GemmJob {
    const BitLinearWeight* w;
    const QuantizedRows* x;
    float* y;
    int ldy;
    float* out_scale;  // [rows], filled before the parallel loop
};

constexpr int kRowGrain = 16;  // rows per thread piece come in multiples of this
// Shares the loop out (pieces claimed one at a time when kDynamic, see ThreadPool) when `work`
// multiply-adds reach `min_work`, else runs fn(0, n) here.
template <bool kDynamic = false, typename Fn>
void share(ThreadPool& pool, int64_t work, int64_t min_work, int64_t n, int64_t grain, Fn&& fn) {
    if (work < min_work) {
        if (n > 0) fn(int64_t{0}, n);
    } else if constexpr (kDynamic) {
        pool.parallel_for_dynamic(n, grain, std::forward<Fn>(fn));
    } else {
        pool.parallel_for(n, grain, std::forward<Fn>(fn));
    }
}
// Weights (all the engine holds of a model) up to which a batch may run a sequence a thread:
// every thread reads them each step, from L2 and this core's share of L3.
constexpr size_t kBySequenceMaxWeightBytes = size_t{4} << 20;

// Keys (or values) of one attention unit up to which the unit before fetches them: 64 rows of
// a 32-dimension f32 head.
constexpr size_t kKvShortStreamBytes = size_t{8} << 10;

// KV bytes a step reads (all layers) from which attention fetches ahead: about what L2 and
// this core's share of L3 hold.
constexpr size_t kKvFromMemoryBytes = size_t{8} << 20;

}  // namespace

struct ForwardPass::Batch {
    std::span<ForwardItem> items;
    int M = 0;               // new tokens in the whole batch
    int* item_of = nullptr;  // [M]
    int* pos = nullptr;      // [M] position of each token in its sequence
    float* cos = nullptr;    // [M][head_dim / 2]
    float* sin = nullptr;
    // Scratch reused by every layer.
    float* x = nullptr;  // [M][hidden] normed input of a block
    float* q = nullptr;  // [M][heads * head_dim]
    float* k = nullptr;  // [M][kv_heads * head_dim]
    float* v = nullptr;
    float* attn = nullptr;  // [M][heads * head_dim]
    float* gate = nullptr;  // [M][intermediate]
    float* up = nullptr;
    float* proj = nullptr;          // [M][hidden] output of o_proj / down_proj
    float* norm_scratch = nullptr;  // [M][max(hidden, intermediate, q dim)] for use_rms_norm
    QuantizedRows qx, qattn, qffn, qextra;
    // The keys and values this step reads exceed kKvFromMemoryBytes: attention fetches ahead.
    bool prefetch_kv = false;
};

void ForwardPass::validate(std::span<ForwardItem> items) const {
    if (items.empty()) throw Error(ErrorCode::InvalidArgument, "forward pass over an empty batch");
    for (size_t i = 0; i < items.size(); ++i) {
        const ForwardItem& it = items[i];
        const std::string which = "sequence " + std::to_string(i);
        if (it.cache == nullptr)
            throw Error(ErrorCode::InvalidArgument, which + " has no KV cache");
        if (it.n_tokens <= 0 || it.tokens == nullptr)
            throw Error(ErrorCode::InvalidArgument, which + " has no tokens");
        for (size_t j = 0; j < i; ++j) {
            if (items[j].cache == it.cache)
                throw Error(ErrorCode::InvalidArgument,
                            which + " uses the same session as sequence " + std::to_string(j));
        }
        if (static_cast<int64_t>(it.cache->length()) + it.n_tokens > it.cache->capacity()) {
            throw Error(ErrorCode::CapacityExceeded,
                        which + ": " + std::to_string(it.cache->length()) + " cached + " +
                            std::to_string(it.n_tokens) +
                            " new tokens exceed the KV cache capacity of " +
                            std::to_string(it.cache->capacity()));
        }
        for (int t = 0; t < it.n_tokens; ++t) {
            if (it.tokens[t] < 0 || it.tokens[t] >= m_.config.vocab_size) {
                throw Error(ErrorCode::InvalidArgument,
                            which + ": token id " + std::to_string(it.tokens[t]) + " at index " +
                                std::to_string(t) + " is outside the vocabulary [0, " +
                                std::to_string(m_.config.vocab_size) + ")");
            }
        }
    }
}

namespace {

void run_gemms(const cpu::KernelTable& k, ThreadPool& pool, int64_t share_min_work,
               bool reference_numerics, std::initializer_list<GemmJob> jobs) {
    int64_t total = 0, work = 0;
    for (const GemmJob& j : jobs) {
        for (int m = 0; m < j.x->rows; ++m) j.out_scale[m] = j.w->alpha / j.x->s_x[m];
        total += j.w->out_features();
        work += static_cast<int64_t>(j.w->out_features()) * j.w->in_features() * j.x->rows;
    }
    // Guided pieces (multiples of kRowGrain rows): a slower core takes less of the product.
    share<true>(pool, work, share_min_work, total, kRowGrain, [&](int64_t begin, int64_t end) {
        int64_t offset = 0;
        for (const GemmJob& j : jobs) {
            const int64_t rows = j.w->out_features();
            const int64_t lo = std::max(begin, offset), hi = std::min(end, offset + rows);
            if (lo < hi && reference_numerics) {
                cpu::ternary_gemm_float_order(
                    j.w->view, static_cast<int>(lo - offset), static_cast<int>(hi - offset), j.x->q,
                    j.x->stride, j.x->s_x, j.x->rows, j.w->alpha, j.w->alpha_inside, j.y, j.ldy);
            } else if (lo < hi) {
                cpu::QuantizedActivations acts{j.x->q, j.x->sum, j.out_scale, j.x->rows,
                                               j.x->stride};
                k.ternary_gemm(j.w->view, static_cast<int>(lo - offset),
                               static_cast<int>(hi - offset), acts, j.y, j.ldy);
            }
            offset += rows;
        }
    });
}

}  // namespace

void ForwardPass::layer(const Batch& all, int index, float* h, std::span<const int> keep) {
    Batch b = all;  // narrowed to the kept tokens once their keys and values are stored
    const ModelConfig& c = m_.config;
    const LayerWeights& L = m_.weights.layers[static_cast<size_t>(index)];
    const int H = c.hidden_size, F = c.intermediate_size, hd = c.head_dim;
    const int QD = c.num_heads * hd, KD = c.num_kv_heads * hd;
    int M = b.M;
    const size_t t_h = static_cast<size_t>(H);

    // BitLinear inputs: normed rows quantized once and shared by the matrices that read them,
    // unless the model has a per-BitLinear input norm (use_rms_norm), which needs its own pass.
    auto input_for = [&](const BitLinearWeight& w, const float* x,
                         const QuantizedRows& shared) -> const QuantizedRows* {
        if (w.input_norm.empty()) return &shared;
        const int n = w.in_features();
        pool_.parallel_for(M, 1, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
                k_.rms_norm(x + t * n, w.input_norm.data(), n, c.bitlinear_input_norm_eps,
                            b.norm_scratch + t * n);
                quantize_row(k_, b.norm_scratch + t * n, n, b.qextra, t);
            }
        });
        return &b.qextra;
    };
    float* scales = arena_.allocate_array<float>(static_cast<size_t>(M) * 3);
    auto gemm1 = [&](const BitLinearWeight& w, const float* x, const QuantizedRows& shared,
                     float* y, int ldy) {
        run_gemms(k_, pool_, share_min_work_, reference_numerics_,
                  {{&w, input_for(w, x, shared), y, ldy, scales}});
    };
    const bool shared_inputs = !c.bitlinear_input_norm;
    // Row t of the input x (n values) of the BitLinears that follow, normed by `norm` unless
    // it is empty: quantised into `rows` when they share their inputs, else normed into
    // `normed` (which may be x) for input_for's passes.
    auto prepare_input = [&](const float* x, const std::vector<float>& norm, int n,
                             const QuantizedRows& rows, int64_t t, float* normed) {
        if (!shared_inputs) {
            if (!norm.empty()) k_.rms_norm(x, norm.data(), n, c.rms_norm_eps, normed);
        } else if (norm.empty()) {
            quantize_row(k_, x, n, rows, t);
        } else {
            norm_quantize_row(k_, x, norm.data(), n, c.rms_norm_eps, rows, t);
        }
    };

    // ---- attention block ----
    pool_.parallel_for(M, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t)
            prepare_input(h + t * t_h, L.attn_norm, H, b.qx, t, b.x + t * t_h);
    });
    if (shared_inputs) {
        run_gemms(k_, pool_, share_min_work_, reference_numerics_,
                  {{&L.q, &b.qx, b.q, QD, scales},
                   {&L.k, &b.qx, b.k, KD, scales + M},
                   {&L.v, &b.qx, b.v, KD, scales + 2 * M}});
    } else {
        gemm1(L.q, b.x, b.qx, b.q, QD);
        gemm1(L.k, b.x, b.qx, b.k, KD);
        gemm1(L.v, b.x, b.qx, b.v, KD);
    }
    const int half = hd / 2;
    pool_.parallel_for(M, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            k_.rope(b.q + t * QD, c.num_heads, hd, b.cos + t * half, b.sin + t * half);
            k_.rope(b.k + t * KD, c.num_kv_heads, hd, b.cos + t * half, b.sin + t * half);
            b.items[static_cast<size_t>(b.item_of[t])].cache->store(k_, index, b.pos[t],
                                                                    b.k + t * KD, b.v + t * KD);
        }
    });
    if (!keep.empty() && static_cast<int>(keep.size()) < M) {
        // The rest of the layer reads only the kept tokens' queries and residual rows, moved to
        // the front (keep ascends, so each row moves towards the front or stays).
        const int kept = static_cast<int>(keep.size());
        int* pos = arena_.allocate_array<int>(static_cast<size_t>(kept));
        int* item_of = arena_.allocate_array<int>(static_cast<size_t>(kept));
        for (int r = 0; r < kept; ++r) {
            const int t = keep[static_cast<size_t>(r)];
            pos[r] = b.pos[t];
            item_of[r] = b.item_of[t];
            if (t == r) continue;
            std::memcpy(b.q + static_cast<size_t>(r) * QD, b.q + static_cast<size_t>(t) * QD,
                        sizeof(float) * QD);
            std::memcpy(h + r * t_h, h + t * t_h, sizeof(float) * H);
        }
        b.pos = pos;
        b.item_of = item_of;
        b.M = M = kept;
        for (QuantizedRows* q : {&b.qx, &b.qattn, &b.qffn, &b.qextra})
            q->rows = std::min(q->rows, kept);
    }
    const int group = c.num_heads / c.num_kv_heads;
    const float scale = 1.f / std::sqrt(static_cast<float>(hd));
    // A unit is the query heads of one token that share a KV head, or a part of them: one
    // kernel call reads those keys and values once for all of its queries. The group is split
    // only when there would be too few units to share out evenly (one sequence decoding), and
    // never when the loop runs on this thread alone.
    // Units run KV-head-major when a sequence brings several tokens: a thread's contiguous
    // share then holds early and late tokens of a prompt alike, where token-major shares would
    // give the last thread the longest causal rows. Single-token sequences (decoding) run
    // token-major, so each thread streams whole caches.
    const int64_t groups = static_cast<int64_t>(M) * c.num_kv_heads;
    int64_t keys = 0;  // summed over the tokens, for the multiply-adds of all heads
    for (int t = 0; t < M; ++t) keys += b.pos[t] + 1;
    const int64_t attention_work = 2 * keys * QD;
    const bool shared = attention_work >= share_min_work_;
    int parts = 1;
    while (shared && parts < group && (group % parts != 0 || groups * parts < 4 * pool_.size()))
        ++parts;
    const int per_unit = group / parts;
    const bool one_token_each = static_cast<size_t>(M) == b.items.size();
    // A unit's keys and values of a few KB come from L3 (a batch's caches do not fit L2) in
    // streams too short for the hardware prefetchers to pick up, so each unit fetches the
    // next one's while it computes, on the CPUs where that pays (fetch_short_kv_). Longer
    // streams the prefetchers find, and the caches of steps past kKvFromMemoryBytes have the
    // kernel's own fetching ahead.
    // Unit u is part u % parts of group u / parts, which is (token, KV head) in the order above.
    // A thread's units are consecutive, so it divides once and then steps: three 64-bit
    // divisions a unit (six with the unit fetched ahead) cost the 1m model 0.1-0.2 us a step.
    struct Unit {
        int64_t t;    // the token
        int kv_head;  // whose keys and values it reads
        int part;
    };
    const int kv_heads = c.num_kv_heads;
    auto unit_at = [&](int64_t u) {
        const int64_t grp = u / parts;
        const int part = static_cast<int>(u % parts);
        if (one_token_each) return Unit{grp / kv_heads, static_cast<int>(grp % kv_heads), part};
        return Unit{grp % M, static_cast<int>(grp / M), part};
    };
    auto next_unit = [&](Unit n) {
        if (++n.part < parts) return n;
        n.part = 0;
        if (one_token_each) {
            if (++n.kv_head == kv_heads) {
                n.kv_head = 0;
                ++n.t;
            }
        } else if (++n.t == M) {
            n.t = 0;
            ++n.kv_head;
        }
        return n;
    };
    auto prefetch_unit = [&](const Unit& unit) {
        const KVCache& cache = *b.items[static_cast<size_t>(b.item_of[unit.t])].cache;
        const size_t bytes = cache.head_bytes(b.pos[unit.t] + 1);
        if (bytes > kKvShortStreamBytes) return;
        const char* k = static_cast<const char*>(cache.keys(index, unit.kv_head));
        const char* v = static_cast<const char*>(cache.values(index, unit.kv_head));
        for (size_t off = 0; off < bytes; off += 64) {
            __builtin_prefetch(k + off);
            __builtin_prefetch(v + off);
        }
        if (const float* ks = cache.key_scales(index, unit.kv_head)) {
            const float* vs = cache.value_scales(index, unit.kv_head);
            for (int p = 0; p <= b.pos[unit.t]; p += 16) {
                __builtin_prefetch(ks + p);
                __builtin_prefetch(vs + p);
            }
        }
    };
    const bool fetch_next = !b.prefetch_kv && fetch_short_kv_;
    share(pool_, attention_work, share_min_work_, groups * parts, 1, [&](int64_t u0, int64_t u1) {
        thread_local std::vector<float> scratch;
        Unit unit = unit_at(u0);
        for (int64_t u = u0; u < u1; ++u, unit = next_unit(unit)) {
            if (fetch_next && u + 1 < u1) prefetch_unit(next_unit(unit));
            const int64_t t = unit.t;
            const int kv_head = unit.kv_head;
            const int first_head = kv_head * group + unit.part * per_unit;
            const KVCache& cache = *b.items[static_cast<size_t>(b.item_of[t])].cache;
            const int n_keys = b.pos[t] + 1;
            const size_t need = static_cast<size_t>(n_keys) * per_unit;
            if (scratch.size() < need) scratch.resize(need * 2);
            cpu::AttentionHeadArgs a;
            a.q = b.q + t * QD + static_cast<size_t>(first_head) * hd;
            a.k = cache.keys(index, kv_head);
            a.v = cache.values(index, kv_head);
            a.k_scale = cache.key_scales(index, kv_head);
            a.v_scale = cache.value_scales(index, kv_head);
            a.kv_type = cache.type();
            a.prefetch = b.prefetch_kv;
            a.row_stride = cache.row_elements();
            a.n_keys = n_keys;
            a.head_dim = hd;
            a.n_queries = per_unit;
            a.scale = scale;
            a.scratch = scratch.data();
            a.out = b.attn + t * QD + static_cast<size_t>(first_head) * hd;
            k_.attention_head(a);
        }
    });
    pool_.parallel_for(M, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            float* a = b.attn + t * QD;
            prepare_input(a, L.attn_sub_norm, QD, b.qattn, t, a);
        }
    });
    gemm1(L.o, b.attn, b.qattn, b.proj, H);

    // ---- feed-forward block ----
    pool_.parallel_for(M, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            float* ht = h + t * t_h;
            add_into(ht, b.proj + t * t_h, H);
            prepare_input(ht, L.ffn_norm, H, b.qx, t, b.x + t * t_h);
        }
    });
    if (shared_inputs) {
        run_gemms(k_, pool_, share_min_work_, reference_numerics_,
                  {{&L.gate, &b.qx, b.gate, F, scales}, {&L.up, &b.qx, b.up, F, scales + M}});
    } else {
        gemm1(L.gate, b.x, b.qx, b.gate, F);
        gemm1(L.up, b.x, b.qx, b.up, F);
    }
    pool_.parallel_for(M, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            float* g = b.gate + t * F;
            if (c.activation == Activation::Relu2) {
                k_.relu2_mul(g, b.up + t * F, g, F);
            } else {
                k_.silu_mul(g, b.up + t * F, g, F);
            }
            prepare_input(g, L.ffn_sub_norm, F, b.qffn, t, g);
        }
    });
    gemm1(L.down, b.gate, b.qffn, b.proj, H);
    pool_.parallel_for(M, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) add_into(h + t * t_h, b.proj + t * t_h, H);
    });
}

void ForwardPass::run_layers(std::span<ForwardItem> items, float* h, int first, int last,
                             std::span<const int> keep) {
    const ModelConfig& c = m_.config;
    Batch b;
    b.items = items;
    // Past a few MiB the caches have left L2 and L3 by the time a layer comes round again (the
    // weights stream through in between).
    size_t kv_bytes = 0;
    for (const ForwardItem& it : items) {
        b.M += it.n_tokens;
        kv_bytes +=
            static_cast<size_t>(it.cache->length() + it.n_tokens) * it.cache->position_bytes();
    }
    b.prefetch_kv = kv_bytes >= kKvFromMemoryBytes;
    const int M = b.M;
    const size_t Mz = static_cast<size_t>(M);
    const int half = c.head_dim / 2;
    const int QD = c.num_heads * c.head_dim, KD = c.num_kv_heads * c.head_dim;
    b.item_of = arena_.allocate_array<int>(Mz);
    b.pos = arena_.allocate_array<int>(Mz);
    b.cos = arena_.allocate_array<float>(Mz * half);
    b.sin = arena_.allocate_array<float>(Mz * half);
    for (size_t i = 0, t = 0; i < items.size(); ++i) {
        for (int j = 0; j < items[i].n_tokens; ++j, ++t) {
            b.item_of[t] = static_cast<int>(i);
            b.pos[t] = items[i].cache->length() + j;
            m_.rope.angles(b.pos[t], b.cos + t * half, b.sin + t * half);
        }
    }
    b.x = arena_.allocate_array<float>(Mz * c.hidden_size);
    b.q = arena_.allocate_array<float>(Mz * QD);
    b.k = arena_.allocate_array<float>(Mz * KD);
    b.v = arena_.allocate_array<float>(Mz * KD);
    b.attn = arena_.allocate_array<float>(Mz * QD);
    b.gate = arena_.allocate_array<float>(Mz * c.intermediate_size);
    b.up = arena_.allocate_array<float>(Mz * c.intermediate_size);
    b.proj = arena_.allocate_array<float>(Mz * c.hidden_size);
    b.qx = alloc_quantized(arena_, M, c.hidden_size);
    b.qattn = alloc_quantized(arena_, M, QD);
    b.qffn = alloc_quantized(arena_, M, c.intermediate_size);
    if (c.bitlinear_input_norm) {
        const int widest = std::max({c.hidden_size, c.intermediate_size, QD});
        b.norm_scratch = arena_.allocate_array<float>(Mz * widest);
        b.qextra = alloc_quantized(arena_, M, widest);
    }
    for (int i = first; i < last; ++i)
        layer(b, i, h, i + 1 == last ? keep : std::span<const int>{});
}

void ForwardPass::lm_head(const float* normed, int R, float* logits) {
    const DenseMatrix& head = m_.weights.lm_head();
    const int H = m_.config.hidden_size, V = m_.config.vocab_size;
    const int64_t work = static_cast<int64_t>(V) * H * R;
    if (head.format == DenseFormat::I8R && !reference_numerics_) {
        // The int8 head quantises its input rows like a BitLinear input: one more rounding
        // of the logits (docs/NUMERICS.md) in exchange for integer dot products.
        int8_t* xq = arena_.allocate_array<int8_t>(static_cast<size_t>(R) * H);
        float* x_scale = arena_.allocate_array<float>(static_cast<size_t>(R));
        for (int r = 0; r < R; ++r) {
            int32_t sum = 0;
            const float* x = normed + static_cast<size_t>(r) * H;
            x_scale[r] = 1.f / k_.quantize_row_i8(x, H, H, xq + static_cast<size_t>(r) * H, &sum);
        }
        share<true>(pool_, work, share_min_work_, V, 64, [&](int64_t v0, int64_t v1) {
            k_.int8_gemm_i8r(static_cast<const int8_t*>(head.data), head.row_scale, H,
                             static_cast<int>(v0), static_cast<int>(v1), xq, x_scale, R, H, logits,
                             V);
        });
        return;
    }
    // Rows [r0, r1) from the matrix as the file stores it.
    auto rows = [&](int r0, int r1) {
        switch (head.format) {
            case DenseFormat::F32:
                return k_.dense_gemm_f32(static_cast<const float*>(head.data), H, r0, r1, normed, R,
                                         H, logits, V);
            case DenseFormat::BF16:
                return k_.dense_gemm_bf16(static_cast<const uint16_t*>(head.data), H, r0, r1,
                                          normed, R, H, logits, V);
            case DenseFormat::F16:
                return k_.dense_gemm_f16(static_cast<const uint16_t*>(head.data), H, r0, r1, normed,
                                         R, H, logits, V);
            case DenseFormat::Q8_0:
                return k_.dense_gemm_q8_0(static_cast<const uint8_t*>(head.data), H, r0, r1, normed,
                                          R, H, logits, V);
            case DenseFormat::I8R:
                return k_.dense_gemm_i8r(static_cast<const int8_t*>(head.data), head.row_scale, H,
                                         r0, r1, normed, R, H, logits, V);
        }
    };
    if (head.groups.size() != 0 && k_.dense_groups_gemm != nullptr) {
        // Whole row groups from the copy; the rows after the last group row-major, whose sums
        // have the same bits either way (kernels.h).
        const int groups = V / cpu::kDenseGroupRows;
        const bool bf16 = head.format == DenseFormat::BF16;
        share<true>(pool_, work, share_min_work_, groups, 4, [&](int64_t g0, int64_t g1) {
            k_.dense_groups_gemm(head.groups.data(), bf16, H, static_cast<int>(g0),
                                 static_cast<int>(g1), normed, R, H, logits, V);
        });
        if (groups * cpu::kDenseGroupRows < V) rows(groups * cpu::kDenseGroupRows, V);
        return;
    }
    share<true>(pool_, work, share_min_work_, V, 64,
                [&](int64_t v0, int64_t v1) { rows(static_cast<int>(v0), static_cast<int>(v1)); });
}

void ForwardPass::run(std::span<ForwardItem> items) {
    validate(items);
    const ModelConfig& c = m_.config;
    const int H = c.hidden_size, V = c.vocab_size, L = c.num_layers;
    int M = 0;
    for (const ForwardItem& it : items) M += it.n_tokens;
    const size_t t_h = static_cast<size_t>(H);

    float* h = arena_.allocate_array<float>(static_cast<size_t>(M) * H);
    {
        size_t t = 0;
        for (const ForwardItem& it : items) {
            for (int j = 0; j < it.n_tokens; ++j, ++t)
                m_.weights.embedding.row_to_f32(it.tokens[j], h + t * t_h);
        }
    }
    // Hidden-state capture, for --hidden and the reference tests: copy rows out per item.
    auto capture = [&](int slot, const float* src) {
        size_t t = 0;
        for (const ForwardItem& it : items) {
            if (it.hidden != nullptr) {
                std::memcpy(it.hidden + static_cast<size_t>(slot) * it.n_tokens * t_h,
                            src + t * t_h, sizeof(float) * it.n_tokens * t_h);
            }
            t += static_cast<size_t>(it.n_tokens);
        }
    };
    bool any_hidden = false;
    for (const ForwardItem& it : items) any_hidden |= it.hidden != nullptr;

    // The rows whose logits are wanted (all rows when capturing hidden states).
    int R = 0;
    for (const ForwardItem& it : items)
        R += any_hidden ? it.n_tokens : (it.all_logits ? it.n_tokens : 1);
    int* row_token = arena_.allocate_array<int>(static_cast<size_t>(R));
    {
        int r = 0, t = 0;
        for (const ForwardItem& it : items) {
            const int first = (any_hidden || it.all_logits) ? 0 : it.n_tokens - 1;
            for (int j = first; j < it.n_tokens; ++j) row_token[r++] = t + j;
            t += it.n_tokens;
        }
    }
    // The last layer finishes those rows only, which leaves them at the front of h.
    const bool pruned = R < M;
    if (any_hidden) {
        capture(0, h);
        for (int i = 0; i < L; ++i) {
            run_layers(items, h, i, i + 1);
            if (i + 1 < L) capture(i + 1, h);
        }
    } else {
        run_layers(items, h, 0, L,
                   pruned ? std::span<const int>(row_token, static_cast<size_t>(R))
                          : std::span<const int>{});
    }

    float* normed = arena_.allocate_array<float>(static_cast<size_t>(R) * H);
    pool_.parallel_for(R, 1, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const size_t row = pruned ? static_cast<size_t>(r) : static_cast<size_t>(row_token[r]);
            k_.rms_norm(h + row * t_h, m_.weights.final_norm.data(), H, c.rms_norm_eps,
                        normed + r * t_h);
        }
    });
    if (any_hidden) capture(L, normed);

    float* logits = arena_.allocate_array<float>(static_cast<size_t>(R) * V);
    lm_head(normed, R, logits);
    {
        int r = 0;
        for (const ForwardItem& it : items) {
            const int rows = any_hidden ? it.n_tokens : (it.all_logits ? it.n_tokens : 1);
            const int wanted = it.all_logits ? it.n_tokens : 1;
            if (it.logits != nullptr) {
                std::memcpy(it.logits, logits + static_cast<size_t>(r + rows - wanted) * V,
                            sizeof(float) * wanted * V);
            }
            r += rows;
        }
    }
    for (const ForwardItem& it : items) it.cache->set_length(it.cache->length() + it.n_tokens);
}

bool ForwardPass::by_sequence_pays(const Model::Impl& model, std::span<const ForwardItem> items,
                                   int threads) {
    if (threads < 2 || items.size() < static_cast<size_t>(threads) ||
        model.info.engine_bytes > kBySequenceMaxWeightBytes)
        return false;
    int64_t tokens = 0;
    int longest = 0;
    for (const ForwardItem& it : items) {
        tokens += it.n_tokens;
        longest = std::max(longest, it.n_tokens);
    }
    return longest <= (tokens + threads - 1) / threads;
}

void ForwardPass::run_by_sequence(std::span<ForwardItem> items,
                                  std::span<const std::unique_ptr<Arena>> arenas) {
    // The whole batch first: a session in two shares would pass each share's own check.
    validate(items);
    const int shares = static_cast<int>(
        std::min({static_cast<size_t>(pool_.size()), items.size(), arenas.size()}));
    if (shares < 2) return run(items);
    // Contiguous shares: share s ends once the running token count reaches (s + 1) / shares of
    // the batch, and leaves at least one item for each share after it.
    int64_t tokens = 0;
    for (const ForwardItem& it : items) tokens += it.n_tokens;
    std::vector<size_t> end(static_cast<size_t>(shares), items.size());
    size_t i = 0;
    int64_t seen = 0;
    for (int s = 0; s + 1 < shares; ++s) {
        const size_t last = items.size() - static_cast<size_t>(shares - 1 - s);
        do {
            seen += items[i++].n_tokens;
        } while (i < last && seen * shares < tokens * (s + 1));
        end[static_cast<size_t>(s)] = i;
    }
    pool_.parallel_for(shares, 1, [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0; s < s1; ++s) {
            const size_t begin = s == 0 ? 0 : end[static_cast<size_t>(s - 1)];
            const size_t stop = end[static_cast<size_t>(s)];
            ThreadPool alone(1);
            Arena& arena = *arenas[static_cast<size_t>(s)];
            arena.reset();
            ForwardPass part(m_, k_, alone, arena, reference_numerics_);
            part.run(items.subspan(begin, stop - begin));
        }
    });
}

}  // namespace bitnet
