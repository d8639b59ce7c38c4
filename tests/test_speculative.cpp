// Speculative decoding with prompt-lookup drafts: the drafting rule, rolling a session back, and
// the promise that matters: the output is the same as without drafts, token for token, for
// greedy and seeded sampling alike, at every kernel level, whatever the stop condition.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "bitnet/bitnet.h"
#include "runtime/prompt_lookup.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

std::vector<int32_t> draft(std::vector<int32_t> history, int max_tokens) {
    return prompt_lookup_draft(history, max_tokens);
}

TEST(PromptLookupTest, ProposesWhatFollowedTheLastEarlierOccurrence) {
    // The suffix 6 7 8 occurred twice before; the latest occurrence was followed by 5 6.
    EXPECT_EQ(draft({6, 7, 8, 1, 2, 6, 7, 8, 5, 6, 9, 6, 7, 8}, 2), (std::vector<int32_t>{5, 6}));
    // The longer n-gram wins over a more recent shorter one: 3 6 7 8 occurred at the start.
    EXPECT_EQ(draft({3, 6, 7, 8, 1, 2, 6, 7, 8, 5, 3, 6, 7, 8}, 3),
              (std::vector<int32_t>{1, 2, 6}));
    // Drafts stop at the end of the history and at max_tokens.
    EXPECT_EQ(draft({4, 5, 6, 9, 4, 5, 6}, 8), (std::vector<int32_t>{9, 4, 5, 6}));
    EXPECT_EQ(draft({4, 5, 6, 9, 4, 5, 6}, 1), (std::vector<int32_t>{9}));
    // A loop drafts its own continuation.
    EXPECT_EQ(draft({1, 2, 1, 2, 1, 2, 1}, 3), (std::vector<int32_t>{2, 1}));
}

TEST(PromptLookupTest, DraftsNothingWithoutAMatchOfThreeTokens) {
    EXPECT_TRUE(draft({}, 4).empty());
    EXPECT_TRUE(draft({1, 2, 3}, 4).empty());
    EXPECT_TRUE(draft({1, 2, 3, 4, 5, 6}, 4).empty());
    // Two matching tokens are not enough.
    EXPECT_TRUE(draft({9, 1, 2, 5, 6, 1, 2}, 4).empty());
    EXPECT_TRUE(draft({1, 2, 3, 4, 1, 2, 3}, 0).empty());
    EXPECT_TRUE(draft({1, 2, 3, 4, 1, 2, 3}, -1).empty());
}

TEST(DraftScheduleTest, GrowsOnFullAcceptanceAndShrinksOnRejection) {
    DraftSchedule s(6);
    EXPECT_EQ(s.next(), 6);
    s.update(6, 2);  // rejected at the third token
    EXPECT_EQ(s.next(), 5);
    for (int i = 0; i < 8; ++i) s.update(s.next(), 0);
    EXPECT_EQ(s.next(), 1) << "never below one token";
    s.update(1, 1);
    EXPECT_EQ(s.next(), 3);
    s.update(3, 3);
    s.update(5, 5);
    EXPECT_EQ(s.next(), 6) << "never above the limit";
    s.update(0, 0);  // nothing drafted (no match): no evidence either way
    EXPECT_EQ(s.next(), 6);
    EXPECT_EQ(DraftSchedule(0).next(), 0);
}

TEST(SessionTest, TruncatedSessionContinuesAsIfTheTokensWereNeverFed) {
    auto model = Model::load(model_dir("tiny-packed"));
    auto engine = InferenceEngine::builder().threads(2).build();
    const std::vector<int32_t> prefix = {1, 15, 27, 3, 99};
    const std::vector<int32_t> dropped = {4, 8, 15, 16};
    const int32_t next = 42;
    auto a = engine->create_session(model, 32);
    engine->forward(*a, prefix);
    engine->forward(*a, dropped);
    a->truncate(static_cast<int>(prefix.size()));
    EXPECT_EQ(a->position(), static_cast<int>(prefix.size()));
    const Tensor got = engine->forward(*a, std::span<const int32_t>(&next, 1));
    auto b = engine->create_session(model, 32);
    engine->forward(*b, prefix);
    const Tensor want = engine->forward(*b, std::span<const int32_t>(&next, 1));
    ASSERT_EQ(got.numel(), want.numel());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), static_cast<size_t>(got.numel()) * 4), 0);

    EXPECT_TRUE(throws_error([&] { a->truncate(-1); }, ErrorCode::InvalidArgument, {"truncate"}));
    EXPECT_TRUE(throws_error([&] { a->truncate(a->position() + 1); }, ErrorCode::InvalidArgument,
                             {"truncate", "outside"}));
}

struct Loaded {
    std::shared_ptr<const Model> model;
    std::shared_ptr<const Tokenizer> tokenizer;
};

const Loaded& loaded(const std::string& dir) {
    static std::map<std::string, Loaded> cache;
    auto it = cache.find(dir);
    if (it == cache.end())
        it = cache.emplace(dir, Loaded{Model::load(dir), Tokenizer::load(dir)}).first;
    return it->second;
}

// Text that repeats, so that drafts get accepted and the test is not vacuous.
const char* const kPrompts[] = {
    "The package manager installs packages. The package manager removes packages. The package",
    "one two three four one two three four one two",
    "def f(x):\n    return x\n\ndef g(x):\n    return x\n\ndef",
};

GenerationParams params(int max_tokens, bool sampled, int draft) {
    GenerationParams p;
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    p.draft_tokens = draft;
    if (sampled) {
        p.sampling.temperature = 0.9f;
        p.sampling.repeat_penalty = 1.1f;  // penalties see each accepted draft in turn
        p.sampling.seed = 1234;
    } else {
        p.sampling.temperature = 0.f;
    }
    return p;
}

void expect_same(const GenerationResult& plain, const GenerationResult& spec,
                 const std::string& what) {
    EXPECT_EQ(spec.tokens, plain.tokens) << what;
    EXPECT_EQ(spec.text, plain.text) << what;
    EXPECT_EQ(spec.finish, plain.finish) << what;
    EXPECT_EQ(plain.stats.drafted_tokens, 0) << what;
    EXPECT_LE(spec.stats.accepted_tokens, spec.stats.drafted_tokens) << what;
}

class SpeculativeTest : public ::testing::TestWithParam<cpu::Isa> {
  protected:
    std::unique_ptr<InferenceEngine> engine() const {
        return InferenceEngine::builder().threads(2).kernel_level(level_for(GetParam())).build();
    }
};

// The scalar level takes about 0.1 s a step of the 41M-weight model: short greedy runs only.
bool slow_level(cpu::Isa isa) {
    return isa == cpu::Isa::Scalar;
}

// Stop conditions and batched requests are the runtime's, the same at every level; under the
// sanitizers they run at the level users get only.
bool runtime_test_skipped(cpu::Isa isa) {
    return slow_level(isa) || (kUnderSanitizers && isa != cpu::select_isa());
}

TEST_P(SpeculativeTest, GeneratesExactlyWhatPlainDecodingDoes) {
    const bool slow = slow_level(GetParam());
    std::vector<std::string> dirs = {shipped_model_dir("debdocs-41m"), model_dir("tiny-packed")};
    if (!slow) dirs.push_back(model_dir("tiny-master"));
    // The draft schedule varies the length within each run (1 up to the limit). Under the
    // sanitizers, one limit and shorter runs: the same verify and rollback paths, fewer times.
    const std::vector<int> drafts =
        slow || kUnderSanitizers ? std::vector<int>{4} : std::vector<int>{2, 6};
    const int max_tokens = slow ? 12 : kUnderSanitizers ? 16 : 32;
    int accepted = 0;
    for (const std::string& dir : dirs) {
        const Loaded& m = loaded(dir);
        auto e = engine();
        for (const char* prompt : kPrompts) {
            // The scalar level: the first two prompts, and under the sanitizers the second only
            // (the trained model accepts a draft of its repeats within 12 tokens).
            if (slow && (kUnderSanitizers ? prompt != kPrompts[1] : prompt == kPrompts[2]))
                continue;
            for (bool sampled : {false, true}) {
                if (slow && sampled) continue;
                const GenerationResult plain =
                    e->generate(m.model, *m.tokenizer, prompt, params(max_tokens, sampled, 0));
                for (int draft : drafts) {
                    const GenerationResult spec = e->generate(m.model, *m.tokenizer, prompt,
                                                              params(max_tokens, sampled, draft));
                    expect_same(plain, spec,
                                dir + " '" + prompt + "' draft " + std::to_string(draft) +
                                    (sampled ? " sampled" : " greedy"));
                    accepted += spec.stats.accepted_tokens;
                }
            }
        }
    }
    EXPECT_GT(accepted, 0) << "no draft was ever accepted: the comparison proves little";
}

TEST(SpeculativeModesTest, ReferenceNumericsAndHalfPrecisionCachesToo) {
    const Loaded& tiny = loaded(model_dir("tiny-master"));
    const Loaded& trained = loaded(shipped_model_dir("debdocs-41m"));
    const std::pair<const Loaded*, std::unique_ptr<InferenceEngine>> runs[] = {
        {&tiny, InferenceEngine::builder().threads(2).reference_numerics(true).build()},
        {&trained, InferenceEngine::builder().threads(2).kv_cache_type(KVCacheType::F16).build()}};
    for (const auto& [m, e] : runs) {
        for (bool sampled : {false, true}) {
            const GenerationResult plain =
                e->generate(m->model, *m->tokenizer, kPrompts[0], params(32, sampled, 0));
            const GenerationResult spec =
                e->generate(m->model, *m->tokenizer, kPrompts[0], params(32, sampled, 5));
            expect_same(plain, spec, sampled ? "sampled" : "greedy");
        }
    }
}

TEST_P(SpeculativeTest, StopsWhereAndHowPlainDecodingStops) {
    if (runtime_test_skipped(GetParam()))
        GTEST_SKIP() << "the runtime's logic, run at the other levels";
    const Loaded& m = loaded(shipped_model_dir("debdocs-41m"));
    auto e = engine();
    // Token budgets that end inside a drafted run, a cache that fills up mid-draft, and stop
    // strings that begin in one accepted draft and end in the next.
    for (int max_tokens : {1, 2, 5, 13}) {
        const GenerationResult plain =
            e->generate(m.model, *m.tokenizer, kPrompts[0], params(max_tokens, false, 0));
        const GenerationResult spec =
            e->generate(m.model, *m.tokenizer, kPrompts[0], params(max_tokens, false, 6));
        expect_same(plain, spec, "max_tokens " + std::to_string(max_tokens));
        EXPECT_EQ(static_cast<int>(spec.tokens.size()), max_tokens);
    }
    const int prompt_tokens = static_cast<int>(m.tokenizer->encode(kPrompts[0], true).size());
    for (int room : {1, 3, 9}) {
        GenerationParams p0 = params(100, false, 0), p6 = params(100, false, 6);
        p0.max_context = p6.max_context = prompt_tokens + room;
        expect_same(e->generate(m.model, *m.tokenizer, kPrompts[0], p0),
                    e->generate(m.model, *m.tokenizer, kPrompts[0], p6),
                    "context room " + std::to_string(room));
    }
    const GenerationResult free_run =
        e->generate(m.model, *m.tokenizer, kPrompts[0], params(60, false, 0));
    ASSERT_GT(free_run.text.size(), 30u);
    for (size_t at : {size_t{10}, free_run.text.size() / 2, free_run.text.size() - 4}) {
        GenerationParams p0 = params(60, false, 0), p6 = params(60, false, 6);
        p0.stop_strings = p6.stop_strings = {free_run.text.substr(at, 4)};
        std::string streamed;
        const GenerationResult spec =
            e->generate(m.model, *m.tokenizer, kPrompts[0], p6, [&](std::string_view piece) {
                streamed += piece;
                return true;
            });
        expect_same(e->generate(m.model, *m.tokenizer, kPrompts[0], p0), spec,
                    "stop string at " + std::to_string(at));
        EXPECT_EQ(streamed, spec.text);
        EXPECT_EQ(spec.finish, FinishReason::Stop);
    }
}

TEST_P(SpeculativeTest, BatchedRequestsDraftEachOnTheirOwn) {
    if (runtime_test_skipped(GetParam()))
        GTEST_SKIP() << "the runtime's logic, run at the other levels";
    const Loaded& m = loaded(shipped_model_dir("debdocs-41m"));
    auto e = engine();
    const std::vector<std::string> prompts(std::begin(kPrompts), std::end(kPrompts));
    const std::vector<GenerationResult> plain =
        e->process_batch(m.model, *m.tokenizer, prompts, params(32, false, 0));
    const std::vector<GenerationResult> spec =
        e->process_batch(m.model, *m.tokenizer, prompts, params(32, false, 4));
    ASSERT_EQ(spec.size(), plain.size());
    for (size_t i = 0; i < prompts.size(); ++i) expect_same(plain[i], spec[i], prompts[i]);
}

TEST(SpeculativeRequestTest, NegativeDraftIsAnError) {
    const Loaded& m = loaded(model_dir("tiny-packed"));
    auto e = InferenceEngine::builder().threads(1).build();
    EXPECT_TRUE(throws_error([&] { e->generate(m.model, *m.tokenizer, "x", params(4, false, -1)); },
                             ErrorCode::InvalidArgument, {"draft_tokens"}));
}

INSTANTIATE_TEST_SUITE_P(Levels, SpeculativeTest, ::testing::ValuesIn(cpu::supported_isas()),
                         [](const ::testing::TestParamInfo<cpu::Isa>& p) {
                             return std::string(cpu::isa_name(p.param));
                         });

}  // namespace
}  // namespace bitnet::test
