// A pass that wants only some rows' logits (a prompt's last token) finishes only those rows in
// the last layer, after every token has stored its keys and values. The kept rows' logits must
// be the bits of a pass that finishes every row, and the caches must be the same: the next
// decode steps give the same bits too. Batches mix items that want every row with items that
// want their last row, at several thread counts (the loop-sharing pass at its most threaded).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "core/arena.h"
#include "core/thread_pool.h"
#include "kernels/cpu/kernels.h"
#include "model/forward.h"
#include "model/model_impl.h"
#include "runtime/kv_cache.h"
#include "test_support.h"

namespace bitnet {
namespace {

struct PassLogits {
    std::vector<std::vector<float>> last;   // per item: its last row's logits after the prompt
    std::vector<std::vector<float>> steps;  // per decode step: every item's logits
};

// Prompts through one pass (all_logits as given), then three decode steps.
PassLogits run_passes(const Model::Impl& model, const std::vector<std::vector<int32_t>>& prompts,
                      const std::vector<bool>& all_logits, int threads) {
    const size_t V = static_cast<size_t>(model.config.vocab_size);
    ThreadPool pool(threads);
    Arena arena;
    ForwardPass pass(model, cpu::kernels(cpu::select_isa()), pool, arena);
    pass.set_share_min_work(0);
    std::vector<std::unique_ptr<KVCache>> caches;
    for (const auto& p : prompts)
        caches.push_back(std::make_unique<KVCache>(model.config, static_cast<int>(p.size()) + 3,
                                                   cpu::KvType::F32));
    PassLogits out;
    std::vector<std::vector<float>> logits(prompts.size());
    std::vector<ForwardItem> items(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
        const int n = static_cast<int>(prompts[i].size());
        logits[i].resize((all_logits[i] ? static_cast<size_t>(n) : 1) * V);
        items[i] =
            ForwardItem{caches[i].get(), prompts[i].data(), n, all_logits[i], logits[i].data()};
    }
    pass.run(items);
    for (size_t i = 0; i < prompts.size(); ++i)
        out.last.emplace_back(logits[i].end() - static_cast<std::ptrdiff_t>(V), logits[i].end());
    for (int s = 0; s < 3; ++s) {
        std::vector<int32_t> tokens(prompts.size());
        std::vector<float> step(prompts.size() * V);
        for (size_t i = 0; i < prompts.size(); ++i) {
            tokens[i] = static_cast<int32_t>((7 * s + 3 * i + 1) % V);
            items[i] = ForwardItem{caches[i].get(), &tokens[i], 1, false, step.data() + i * V};
        }
        arena.reset();
        pass.run(items);
        out.steps.push_back(std::move(step));
    }
    return out;
}

void expect_bits(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << what;
}

TEST(ForwardPruning, KeptRowsAndLaterStepsMatchAPassThatFinishesEveryRow) {
    const auto model = load_hf_checkpoint(test::model_dir("tiny-packed"));
    const std::vector<std::vector<int32_t>> prompts = {
        {5, 9, 200, 31, 4, 77, 12}, {1}, {300, 301, 2}, {8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8}};
    for (int threads : {1, 2, 3}) {
        SCOPED_TRACE("threads " + std::to_string(threads));
        // Every row wanted: nothing is pruned. Then the pruned passes: all items want their
        // last row only, and a mix.
        const PassLogits full = run_passes(*model, prompts, {true, true, true, true}, threads);
        for (const std::vector<bool>& wanted : {std::vector<bool>{false, false, false, false},
                                                std::vector<bool>{false, true, false, true}}) {
            const PassLogits pruned = run_passes(*model, prompts, wanted, threads);
            for (size_t i = 0; i < prompts.size(); ++i)
                expect_bits(full.last[i], pruned.last[i], "a prompt's last row");
            for (size_t s = 0; s < full.steps.size(); ++s)
                expect_bits(full.steps[s], pruned.steps[s], "a later decode step");
        }
    }
}

}  // namespace
}  // namespace bitnet
