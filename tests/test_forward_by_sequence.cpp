// A batch run with a share of the sequences on each thread (ForwardPass::run_by_sequence) gives
// the bits the shared-loop pass gives, for decode steps and for prompts of different lengths,
// and rejects what run() rejects before touching any cache.
#include <gtest/gtest.h>

#include <memory>
#include <span>
#include <vector>

#include "bitnet/error.h"
#include "core/arena.h"
#include "core/thread_pool.h"
#include "kernels/cpu/kernels.h"
#include "model/forward.h"
#include "model/model_impl.h"
#include "runtime/kv_cache.h"
#include "test_support.h"

namespace bitnet {
namespace {

std::unique_ptr<Model::Impl> tiny_model() {
    return load_hf_checkpoint(test::model_dir("tiny-packed"));
}

// Sequences of different lengths, then decode steps, through one pass of either kind a step.
class Batch {
  public:
    Batch(const Model::Impl& model, std::vector<std::vector<int32_t>> prompts, int steps)
        : model_(model), prompts_(std::move(prompts)) {
        for (const auto& p : prompts_)
            caches_.push_back(std::make_unique<KVCache>(
                model.config, static_cast<int>(p.size()) + steps, cpu::KvType::F32));
        for (int t = 0; t < 3; ++t) arenas_.push_back(std::make_unique<Arena>());
    }

    // Logits of every prompt token, then of each decode step (the next token of a sequence is
    // a function of its position, the same for both kinds of pass).
    std::vector<float> run(bool by_sequence, int threads, int steps) {
        const size_t V = static_cast<size_t>(model_.config.vocab_size);
        ThreadPool pool(threads);
        Arena arena;
        ForwardPass pass(model_, cpu::kernels(cpu::select_isa()), pool, arena);
        pass.set_share_min_work(0);  // the loop-sharing pass at its most threaded
        std::vector<float> out;
        auto go = [&](std::vector<ForwardItem>& items) {
            size_t rows = 0;
            for (const ForwardItem& it : items) rows += it.all_logits ? it.n_tokens : 1;
            const size_t at = out.size();
            out.resize(at + rows * V);
            size_t r = 0;  // each item's rows after the previous item's
            for (ForwardItem& it : items) {
                it.logits = out.data() + at + r * V;
                r += it.all_logits ? it.n_tokens : 1;
            }
            arena.reset();
            if (by_sequence) {
                pass.run_by_sequence(items, arenas_);
            } else {
                pass.run(items);
            }
        };
        for (auto& c : caches_) c->set_length(0);
        std::vector<ForwardItem> items;
        for (size_t i = 0; i < prompts_.size(); ++i) {
            items.push_back({caches_[i].get(), prompts_[i].data(),
                             static_cast<int>(prompts_[i].size()), true, nullptr, nullptr});
        }
        go(items);
        std::vector<int32_t> next(prompts_.size());
        for (int s = 0; s < steps; ++s) {
            items.clear();
            for (size_t i = 0; i < prompts_.size(); ++i) {
                next[i] = static_cast<int32_t>((37 * (i + 1) + 11 * s) % model_.config.vocab_size);
                items.push_back({caches_[i].get(), &next[i], 1, false, nullptr, nullptr});
            }
            go(items);
        }
        for (size_t i = 0; i < prompts_.size(); ++i) {
            EXPECT_EQ(caches_[i]->length(), static_cast<int>(prompts_[i].size()) + steps)
                << "sequence " << i;
        }
        return out;
    }

    std::vector<std::unique_ptr<KVCache>>& caches() { return caches_; }
    std::span<const std::unique_ptr<Arena>> arenas() const { return arenas_; }

  private:
    const Model::Impl& model_;
    std::vector<std::vector<int32_t>> prompts_;
    std::vector<std::unique_ptr<KVCache>> caches_;
    std::vector<std::unique_ptr<Arena>> arenas_;
};

const std::vector<std::vector<int32_t>> kPrompts = {
    {509, 17, 300}, {4}, {88, 511, 2, 140, 33, 7, 250}, {61, 402}, {99, 18, 5, 333, 12}};

TEST(ForwardBySequenceTest, SameBitsAsSharedLoopsAtEveryThreadCount) {
    const auto model = tiny_model();
    Batch batch(*model, kPrompts, 4);
    const std::vector<float> want = batch.run(false, 2, 4);
    for (int threads : {2, 3, 4}) {
        const std::vector<float> got = batch.run(true, threads, 4);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < want.size(); ++i)
            ASSERT_EQ(got[i], want[i]) << threads << " threads, logit " << i;
    }
}

TEST(ForwardBySequenceTest, RejectsASessionTwiceBeforeAnyCacheMoves) {
    const auto model = tiny_model();
    Batch batch(*model, kPrompts, 1);
    ThreadPool pool(2);
    Arena arena;
    ForwardPass pass(*model, cpu::kernels(cpu::select_isa()), pool, arena);
    const int32_t token = 3;
    // The first and the last item would fall in different shares.
    std::vector<ForwardItem> items;
    for (int i : {0, 1, 2, 0})
        items.push_back(
            {batch.caches()[static_cast<size_t>(i)].get(), &token, 1, false, nullptr, nullptr});
    try {
        pass.run_by_sequence(items, batch.arenas());
        ADD_FAILURE() << "a session twice in one batch was accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    }
    for (const auto& c : batch.caches()) EXPECT_EQ(c->length(), 0);
}

TEST(ForwardBySequenceTest, PaysOnlyForSeveralBalancedSequencesOfASmallModel) {
    const auto model = tiny_model();
    KVCache cache(model->config, 8, cpu::KvType::F32);
    const int32_t tokens[4] = {1, 2, 3, 4};
    auto items_of = [&](std::vector<int> lengths) {
        std::vector<ForwardItem> items;
        for (int n : lengths) items.push_back({&cache, tokens, n, false, nullptr, nullptr});
        return items;
    };
    EXPECT_TRUE(ForwardPass::by_sequence_pays(*model, items_of({1, 1, 1, 1}), 2));
    EXPECT_TRUE(ForwardPass::by_sequence_pays(*model, items_of({2, 1, 1}), 2));
    EXPECT_FALSE(ForwardPass::by_sequence_pays(*model, items_of({1, 1, 1, 1}), 1));
    EXPECT_FALSE(ForwardPass::by_sequence_pays(*model, items_of({1, 1}), 3));
    // One sequence with most of the tokens would keep one thread busy alone.
    EXPECT_FALSE(ForwardPass::by_sequence_pays(*model, items_of({4, 1, 1}), 2));
}

}  // namespace
}  // namespace bitnet
