// The BitNet decoder forward pass over a batch of independent sequences. Every new token of
// every sequence goes through each BitLinear together (one GEMM with M = all new tokens), and
// attention runs per sequence over that sequence's KV cache, so prefill of one prompt, decode of
// many sessions, and any mix of the two are the same code path.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "core/arena.h"
#include "core/thread_pool.h"
#include "kernels/cpu/kernels.h"
#include "model/model_impl.h"
#include "runtime/kv_cache.h"

namespace bitnet {

// See ForwardPass::set_share_min_work and its definition.
extern const int64_t kDefaultShareMinWork;

struct ForwardItem {
    KVCache* cache = nullptr;  // new tokens go to positions cache->length() ...
    const int32_t* tokens = nullptr;
    int n_tokens = 0;
    bool all_logits = false;  // else only the last token's
    float* logits = nullptr;  // [all_logits ? n_tokens : 1][vocab], may be null
    // Optional [(layers + 1)][n_tokens][hidden]: embedding output, residual stream after each
    // layer but the last, and the final-normed stream last (the reference files' hidden.I).
    float* hidden = nullptr;
};

class ForwardPass {
  public:
    ForwardPass(const Model::Impl& model, const cpu::KernelTable& kernels, ThreadPool& pool,
                Arena& arena, bool reference_numerics = false)
        : m_(model),
          k_(kernels),
          pool_(pool),
          arena_(arena),
          reference_numerics_(reference_numerics),
          share_min_work_(kDefaultShareMinWork),
          fetch_short_kv_(cpu::short_kv_streams_want_fetching()) {}

    // Embeds, runs every layer and the head, and advances each cache by its new tokens.
    // Validates token ids and cache capacity first; on error nothing is changed.
    void run(std::span<ForwardItem> items);

    // run() with the sequences shared out instead of the loops: each pool thread runs a
    // single-threaded pass over its share of the items (contiguous, balanced by tokens), with
    // its own arena from `arenas` (one a thread at least, reset here). The same bits as run():
    // every kernel computes a token's row alike whatever the rows beside it. The whole batch is
    // validated first, so only running out of memory can stop a share; the shares that
    // finished then keep their tokens.
    void run_by_sequence(std::span<ForwardItem> items,
                         std::span<const std::unique_ptr<Arena>> arenas);

    // Whether run_by_sequence beats run() for this batch on `threads` threads: a model whose
    // weights stay in cache (each thread reads them all), at least a sequence a thread, and no
    // sequence longer than a thread's share of the tokens.
    static bool by_sequence_pays(const Model::Impl& model, std::span<const ForwardItem> items,
                                 int threads);

    // Runs layers [first, last) on the residual stream h ([total new tokens][hidden], items in
    // order) without touching cache lengths: the building block of run(), exposed so tests can
    // feed recorded hidden states into one layer (teacher forcing). With `keep` (ascending
    // token indices), the last layer stores every token's keys and values but finishes only
    // the kept tokens, whose rows then lead h in that order: run() keeps the rows whose logits
    // are wanted, as llama.cpp does, which spares a prompt's last layer all but one row.
    void run_layers(std::span<ForwardItem> items, float* h, int first, int last,
                    std::span<const int> keep = {});

    // logits [R][vocab] of the final-normed rows `normed` [R][hidden] (public so tests can
    // measure the head's precision alone, on recorded hidden states).
    void lm_head(const float* normed, int R, float* logits);

    // Multiply-adds below which a loop runs on the calling thread instead of being shared out
    // (kDefaultShareMinWork in forward.cpp); 0 shares every loop, as tests of the threaded
    // paths on tiny models need.
    void set_share_min_work(int64_t multiply_adds) { share_min_work_ = multiply_adds; }

  private:
    struct Batch;
    void validate(std::span<ForwardItem> items) const;
    void layer(const Batch& all, int index, float* h, std::span<const int> keep);

    const Model::Impl& m_;
    const cpu::KernelTable& k_;
    ThreadPool& pool_;
    Arena& arena_;
    bool reference_numerics_;
    int64_t share_min_work_;
    bool fetch_short_kv_;  // see cpu::short_kv_streams_want_fetching
};

}  // namespace bitnet
