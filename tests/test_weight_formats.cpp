// The forward pass over every weight format: the 1.6-bit ternary layout computes exactly what the
// 2-bit layout does, and each embedding / lm_head format gives the f32 head's logits within the
// precision it keeps. Runs the tiny packed checkpoint at every kernel level.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
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

// 20 tokens: long enough for the prefill kernels' paths (16 rows and more).
const std::vector<int32_t> kPrompt = {509, 17, 300, 4,  88, 511, 2,   140, 33,  7,
                                      250, 61, 402, 99, 18, 5,   333, 12,  480, 77};

// Logits of every prompt position, then of `decode_steps` single tokens fed one pass each.
// share_min_work 0 hands every loop to the threads, however small (see ForwardPass).
std::vector<float> all_logits(const Model::Impl& model, cpu::Isa isa, bool reference_numerics,
                              int threads = 2, int64_t share_min_work = kDefaultShareMinWork,
                              int decode_steps = 0) {
    const ModelConfig& c = model.config;
    ThreadPool pool(threads);
    Arena arena;
    const size_t V = static_cast<size_t>(c.vocab_size);
    KVCache cache(c, static_cast<int>(kPrompt.size()) + decode_steps, cpu::KvType::F32);
    std::vector<float> logits((kPrompt.size() + static_cast<size_t>(decode_steps)) * V);
    ForwardItem item{&cache, kPrompt.data(), static_cast<int>(kPrompt.size()),
                     true,   logits.data(),  nullptr};
    ForwardPass pass(model, cpu::kernels(isa), pool, arena, reference_numerics);
    pass.set_share_min_work(share_min_work);
    pass.run(std::span<ForwardItem>(&item, 1));
    for (int i = 0; i < decode_steps; ++i) {
        arena.reset();
        ForwardItem step{&cache,
                         &kPrompt[static_cast<size_t>(i)],
                         1,
                         false,
                         logits.data() + (kPrompt.size() + static_cast<size_t>(i)) * V,
                         nullptr};
        pass.run(std::span<ForwardItem>(&step, 1));
    }
    return logits;
}

std::unique_ptr<Model::Impl> tiny_model() {
    return load_hf_checkpoint(test::model_dir("tiny-packed"));
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
    return test::rel_l2(a.data(), b.data(), a.size());
}

class WeightFormatTest : public ::testing::TestWithParam<cpu::Isa> {};

TEST_P(WeightFormatTest, Trits5LayersGiveBitIdenticalLogits) {
    const auto base = tiny_model();
    auto t5 = tiny_model();
    for (LayerWeights& L : t5->weights.layers) {
        for (BitLinearWeight* w : L.bitlinears())
            *w = repack_ternary(*w, cpu::TernaryLayout::Trits5);
    }
    ASSERT_EQ(t5->weights.layers[0].gate.view.layout, cpu::TernaryLayout::Trits5);
    const std::vector<float> want = all_logits(*base, GetParam(), false);
    const std::vector<float> got = all_logits(*t5, GetParam(), false);
    ASSERT_EQ(want.size(), got.size());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "logit " << i;
}

TEST_P(WeightFormatTest, RowTiledLayersGiveBitIdenticalLogits) {
    // The loaders tile matrices of 1 MiB and more (none in the tiny model); from 0 bytes, every
    // owned 2-bit matrix is tiled, and prompt and decode steps must not change a bit.
    const auto base = tiny_model();
    auto tiled = tiny_model();
    tile_streamed_weights(tiled->weights, 0);
    for (const LayerWeights& L : tiled->weights.layers) {
        for (const BitLinearWeight* w : L.bitlinears()) ASSERT_TRUE(w->view.tiled) << w->name;
    }
    const std::vector<float> want = all_logits(*base, GetParam(), false, 2, 0, 3);
    const std::vector<float> got = all_logits(*tiled, GetParam(), false, 2, 0, 3);
    ASSERT_EQ(want.size(), got.size());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "logit " << i;
    // Float-order numerics (transformers' rounding) read the tiles too.
    const std::vector<float> want_ref = all_logits(*base, GetParam(), true, 2, 0, 1);
    const std::vector<float> got_ref = all_logits(*tiled, GetParam(), true, 2, 0, 1);
    for (size_t i = 0; i < want_ref.size(); ++i)
        ASSERT_EQ(got_ref[i], want_ref[i]) << "reference-numerics logit " << i;
}

TEST_P(WeightFormatTest, RowGroupsGiveBitIdenticalLogits) {
    // Where the AVX-512 VNNI GEMV runs, it reads the copies in row groups that make_model adds to
    // small matrices of short rows and a small head; levels without those kernels ignore them. Here
    // every matrix gets one (the 768-column down projection too: three blocks), and decode steps on
    // one thread and on two (rows split between them) must not change a bit.
    const auto base = tiny_model();
    auto grouped = tiny_model();
    const auto names = group_cached_weights(grouped->weights, kGroupedMaxBytes, 1 << 20);
    for (const LayerWeights& L : grouped->weights.layers) {
        for (const BitLinearWeight* w : L.bitlinears())
            ASSERT_NE(w->view.groups, nullptr) << w->name;
    }
    ASSERT_EQ(names.size(), grouped->weights.layers.size() * 7);
    // And the bf16 head, which sums every row as the row-major head kernel does.
    const DenseMatrix& head = grouped->weights.lm_head();
    ASSERT_EQ(head.format, DenseFormat::BF16);
    const auto head_copy = group_cached_head(grouped->weights);
    ASSERT_TRUE(head_copy.has_value());
    EXPECT_EQ(head_copy->first, head.name);
    ASSERT_EQ(head_copy->second, static_cast<size_t>(head.rows / 16 * 16) * head.cols * 2);
    EXPECT_FALSE(group_cached_head(grouped->weights).has_value()) << "a second copy";
    // By default rows of more than kGroupedMaxColumns keep no copy (a 2B's memory).
    auto by_default = tiny_model();
    group_cached_weights(by_default->weights);
    EXPECT_NE(by_default->weights.layers[0].gate.view.groups, nullptr) << "256-column rows";
    EXPECT_EQ(by_default->weights.layers[0].down.view.groups, nullptr) << "768-column rows";
    for (int threads : {1, 2}) {
        const std::vector<float> want = all_logits(*base, GetParam(), false, threads, 0, 3);
        const std::vector<float> got = all_logits(*grouped, GetParam(), false, threads, 0, 3);
        ASSERT_EQ(want.size(), got.size());
        for (size_t i = 0; i < want.size(); ++i)
            ASSERT_EQ(got[i], want[i]) << "logit " << i << ", " << threads << " threads";
    }
}

TEST_P(WeightFormatTest, HeadFormatsKeepTheLogitsWithinTheirPrecision) {
    // The head alone changes format: the embedding lookup stays as it was, so the difference is
    // the head's (through three layers, the tied embedding's rounding would be amplified).
    auto model = tiny_model();
    ASSERT_TRUE(model->weights.tied);
    model->weights.tied = false;
    const DenseMatrix& original = model->weights.embedding;
    model->weights.lm_head_own = convert_dense(original, DenseFormat::F32);
    // Against the f32 head in the same numerics mode (reference numerics changes the layers).
    const std::vector<float> f32 = all_logits(*model, GetParam(), false);
    const std::vector<float> f32_reference = all_logits(*model, GetParam(), true);
    struct Case {
        DenseFormat format;
        bool reference_numerics;
        double max_rel_l2;
    };
    // Measured errors are about a quarter of these bounds (docs/PERFORMANCE.md states them).
    for (const Case& c : {Case{DenseFormat::BF16, false, 1e-2}, Case{DenseFormat::F16, false, 1e-3},
                          Case{DenseFormat::Q8_0, false, 2e-2}, Case{DenseFormat::I8R, false, 4e-2},
                          Case{DenseFormat::I8R, true, 2e-2}}) {
        model->weights.lm_head_own =
            convert_dense(convert_dense(original, DenseFormat::F32), c.format);
        const std::vector<float> got = all_logits(*model, GetParam(), c.reference_numerics);
        const double err = rel_l2(got, c.reference_numerics ? f32_reference : f32);
        EXPECT_LT(err, c.max_rel_l2)
            << dense_format_name(c.format) << (c.reference_numerics ? " (float activations)" : "");
        RecordProperty(std::string("rel_l2_") + dense_format_name(c.format) +
                           (c.reference_numerics ? "_float" : ""),
                       std::to_string(err));
    }
}

TEST_P(WeightFormatTest, ThreadsGiveTheSameLogitsWhetherLoopsAreSharedOrNot) {
    // With the default threshold a tiny model's decode steps run on the calling thread alone;
    // with 0 every loop is split, down to a single token's products and attention.
    const auto model = tiny_model();
    const std::vector<float> one = all_logits(*model, GetParam(), false, 1, 0, 3);
    const std::vector<float> shared = all_logits(*model, GetParam(), false, 3, 0, 3);
    const std::vector<float> as_default =
        all_logits(*model, GetParam(), false, 3, kDefaultShareMinWork, 3);
    for (size_t i = 0; i < one.size(); ++i) {
        ASSERT_EQ(one[i], shared[i]) << "logit " << i;
        ASSERT_EQ(one[i], as_default[i]) << "logit " << i;
    }
}

TEST_P(WeightFormatTest, I8rHeadIsTheSameAtEveryThreadCount) {
    auto model = tiny_model();
    model->weights.embedding = convert_dense(model->weights.embedding, DenseFormat::I8R);
    const std::vector<float> one = all_logits(*model, GetParam(), false, 1);
    const std::vector<float> three = all_logits(*model, GetParam(), false, 3, 0);
    for (size_t i = 0; i < one.size(); ++i) ASSERT_EQ(one[i], three[i]) << "logit " << i;
    // And the same as the scalar reference: the int8 head is exact arithmetic.
    const std::vector<float> ref = all_logits(*model, cpu::Isa::Scalar, false, 1);
    if (GetParam() != cpu::Isa::Scalar) {
        // Layers use float kernels whose summation order differs per level, so only close.
        EXPECT_LT(rel_l2(one, ref), 1e-3);
    }
}

// The compact format on the repository's trained model (debdocs-41m, when present): 1.6-bit
// layers change nothing, and the int8 head's logit error is what docs/PERFORMANCE.md states.
TEST(CompactFormatTest, TrainedModelLogitErrorOfTheInt8Head) {
    const std::string dir = test::shipped_model_dir("debdocs-41m");
    if (!std::filesystem::exists(dir + "/config.json")) GTEST_SKIP() << "no " << dir;
    const auto base = load_hf_checkpoint(dir);
    auto compact = load_hf_checkpoint(dir);
    for (LayerWeights& L : compact->weights.layers) {
        for (BitLinearWeight* w : L.bitlinears())
            *w = repack_ternary(*w, cpu::TernaryLayout::Trits5);
    }
    DenseMatrix& head =
        compact->weights.tied ? compact->weights.embedding : compact->weights.lm_head_own;
    if (compact->weights.tied) {
        // Keep the embedding lookup exact; only the head becomes int8.
        compact->weights.lm_head_own = convert_dense(head, DenseFormat::I8R);
        compact->weights.tied = false;
    } else {
        head = convert_dense(head, DenseFormat::I8R);
    }
    const cpu::Isa isa = cpu::select_isa();
    const std::vector<float> want = all_logits(*base, isa, false);
    const std::vector<float> got = all_logits(*compact, isa, false);
    const int V = base->config.vocab_size;
    int same_top1 = 0;
    const int rows = static_cast<int>(want.size() / static_cast<size_t>(V));
    for (int r = 0; r < rows; ++r) {
        same_top1 += test::argmax(want.data() + static_cast<size_t>(r) * V, V) ==
                     test::argmax(got.data() + static_cast<size_t>(r) * V, V);
    }
    const double err = rel_l2(got, want);
    RecordProperty("rel_l2", std::to_string(err));
    RecordProperty("same_top1", std::to_string(same_top1) + "/" + std::to_string(rows));
    EXPECT_LT(err, 0.05);
    EXPECT_GE(same_top1, rows - 1);
}

INSTANTIATE_TEST_SUITE_P(Levels, WeightFormatTest, ::testing::ValuesIn(cpu::supported_isas()),
                         [](const ::testing::TestParamInfo<cpu::Isa>& p) {
                             return std::string(cpu::isa_name(p.param));
                         });

}  // namespace
}  // namespace bitnet
