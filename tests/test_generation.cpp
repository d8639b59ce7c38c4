// Text generation through the public API: greedy decoding reproduces transformers' generate(),
// sampling is repeatable, stop strings stop exactly, streams deliver what generate() returns.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bitnet/bitnet.h"  // the umbrella header users include
#include "model/format/safetensors.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

struct Fixture {
    std::shared_ptr<const Model> model;
    std::shared_ptr<const Tokenizer> tokenizer;
    nlohmann::json reference;
};

const Fixture& fixture(const std::string& name) {
    static std::map<std::string, Fixture> cache;
    auto it = cache.find(name);
    if (it != cache.end()) return it->second;
    Fixture f;
    f.model = Model::load(model_dir(name));
    f.tokenizer = Tokenizer::load(model_dir(name));
    std::ifstream in(model_dir(name) + "/reference.json");
    f.reference = nlohmann::json::parse(in);
    return cache.emplace(name, std::move(f)).first->second;
}

GenerationParams greedy(int n) {
    GenerationParams p;
    p.sampling.temperature = 0.f;
    p.max_tokens = n;
    p.ignore_eos = true;
    return p;
}

std::unique_ptr<InferenceEngine> engine(bool reference_numerics = false) {
    return InferenceEngine::builder().threads(2).reference_numerics(reference_numerics).build();
}

// The reference generations: text prompt in, token ids out, through tokenizer + sampler + cache.
TEST(GenerationTest, GreedyTextGenerationReproducesTransformers) {
    for (const char* name : {"tiny-packed", "tiny-master"}) {
        const Fixture& f = fixture(name);
        SafetensorsFile ref(model_dir(name) + "/reference.safetensors");
        const int V = f.model->config().vocab_size;
        auto e = engine(true);
        for (const auto& gen : f.reference["generations"]) {
            const int j = gen["prompt"].get<int>();
            const std::string text = f.reference["texts"][static_cast<size_t>(j)]["text"];
            const std::vector<int32_t> want = gen["ids"].get<std::vector<int32_t>>();
            const size_t prompt_len = f.reference["texts"][static_cast<size_t>(j)]["ids"].size();
            const GenerationResult r = e->generate(f.model, *f.tokenizer, text, greedy(40));
            EXPECT_EQ(r.stats.prompt_tokens, static_cast<int>(prompt_len));
            // Up to the first step where the reference itself is undecided (margin < 1e-2).
            const float* logits = reinterpret_cast<const float*>(
                ref.find("generate." + std::to_string(j) + ".logits")->data);
            for (size_t step = 0; step < r.tokens.size(); ++step) {
                const float* row = logits + (prompt_len + step - 1) * V;
                std::vector<float> top(row, row + V);
                std::partial_sort(top.begin(), top.begin() + 2, top.end(), std::greater<float>());
                if (top[0] - top[1] < 1e-2f) break;
                ASSERT_EQ(r.tokens[step], want[prompt_len + step])
                    << name << " generation " << j << " step " << step;
            }
        }
    }
}

TEST(GenerationTest, SeededSamplingIsRepeatable) {
    const Fixture& f = fixture("tiny-packed");
    auto e = engine();
    GenerationParams p;
    p.max_tokens = 24;
    p.ignore_eos = true;
    p.sampling.temperature = 1.0f;
    p.sampling.seed = 1234;
    const GenerationResult a = e->generate(f.model, *f.tokenizer, "Once upon a time", p);
    const GenerationResult b = e->generate(f.model, *f.tokenizer, "Once upon a time", p);
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_EQ(a.text, b.text);
    p.sampling.seed = 99;
    const GenerationResult c = e->generate(f.model, *f.tokenizer, "Once upon a time", p);
    EXPECT_NE(a.tokens, c.tokens);
    EXPECT_EQ(a.finish, FinishReason::Length);
    EXPECT_EQ(a.stats.generated_tokens, 24);
}

// A stop string made of the end of one token and the start of the next stops exactly before it,
// and the streamed pieces never include any part of it.
TEST(GenerationTest, StopStringAcrossTokensStopsExactly) {
    const Fixture& f = fixture("tiny-master");
    auto e = engine();
    const std::string prompt = "The quick brown fox";
    const GenerationResult free_run = e->generate(f.model, *f.tokenizer, prompt, greedy(30));
    // Find a token boundary with at least two bytes on each side.
    std::string so_far;
    size_t boundary = 0;
    for (size_t i = 0; i + 1 < free_run.tokens.size() && boundary == 0; ++i) {
        const std::string left =
            f.tokenizer->decode(std::span<const int32_t>(free_run.tokens.data(), i + 1));
        const std::string right =
            f.tokenizer->decode(std::span<const int32_t>(free_run.tokens.data(), i + 2));
        if (left.size() >= 4 && right.size() >= left.size() + 2 &&
            free_run.text.compare(0, right.size(), right) == 0) {
            boundary = left.size();
        }
    }
    ASSERT_GT(boundary, 0u) << "no usable token boundary in: " << free_run.text;
    const std::string stop = free_run.text.substr(boundary - 2, 4);
    const size_t expected_end = free_run.text.find(stop);
    GenerationParams p = greedy(30);
    p.stop_strings = {stop};
    std::string streamed;
    const GenerationResult r =
        e->generate(f.model, *f.tokenizer, prompt, p, [&](std::string_view piece) {
            streamed += piece;
            return true;
        });
    EXPECT_EQ(r.finish, FinishReason::Stop);
    EXPECT_EQ(r.text, free_run.text.substr(0, expected_end));
    EXPECT_EQ(streamed, r.text);
}

TEST(GenerationTest, StreamingDeliversTheSameTextInOrder) {
    const Fixture& f = fixture("tiny-packed");
    auto e = engine();
    const GenerationResult plain = e->generate(f.model, *f.tokenizer, "hello world", greedy(32));
    std::string via_callback;
    e->generate(f.model, *f.tokenizer, "hello world", greedy(32), [&](std::string_view piece) {
        via_callback += piece;
        return true;
    });
    EXPECT_EQ(via_callback, plain.text);
    auto stream = e->create_stream(f.model, f.tokenizer, "hello world", greedy(32));
    std::string via_stream;
    while (auto piece = stream->next()) via_stream += *piece;
    EXPECT_EQ(via_stream, plain.text);
    EXPECT_EQ(stream->wait().tokens, plain.tokens);
}

TEST(GenerationTest, CancelledStreamFreesItsKvCache) {
    const Fixture& f = fixture("tiny-packed");
    auto e = engine();
    auto stream = e->create_stream(f.model, f.tokenizer, "hello world", greedy(2000));
    ASSERT_TRUE(stream->next().has_value());
    stream->cancel();
    const GenerationResult r = stream->wait();
    EXPECT_EQ(r.finish, FinishReason::Cancelled);
    EXPECT_LT(r.stats.generated_tokens, 2000);
    EXPECT_EQ(e->memory_stats().live_sessions, 0);
    EXPECT_EQ(e->memory_stats().kv_cache_bytes, 0u);
}

TEST(GenerationTest, BatchedRequestsMatchSingleOnes) {
    const Fixture& f = fixture("tiny-master");
    auto e = engine();
    const std::vector<std::string> prompts = {"a", "The quick brown fox jumps", "def f(x):\n",
                                              "numbers 3.14"};
    const std::vector<GenerationResult> batch =
        e->process_batch(f.model, *f.tokenizer, prompts, greedy(20));
    ASSERT_EQ(batch.size(), prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
        const GenerationResult single = e->generate(f.model, *f.tokenizer, prompts[i], greedy(20));
        EXPECT_EQ(batch[i].tokens, single.tokens) << prompts[i];
        EXPECT_EQ(batch[i].text, single.text) << prompts[i];
    }
}

TEST(GenerationTest, BadRequestsAreErrors) {
    const Fixture& f = fixture("tiny-packed");
    auto e = engine();
    GenerationParams p = greedy(5);
    p.stop_strings = {""};
    EXPECT_TRUE(throws_error([&] { e->generate(f.model, *f.tokenizer, "x", p); },
                             ErrorCode::InvalidArgument, {"stop"}));
    EXPECT_TRUE(throws_error([&] { e->generate(f.model, *f.tokenizer, "\xff\xfe", greedy(5)); },
                             ErrorCode::InvalidArgument, {}));
    GenerationParams tiny = greedy(5);
    tiny.max_context = 2;
    EXPECT_TRUE(
        throws_error([&] { e->generate(f.model, *f.tokenizer, "a long prompt here", tiny); },
                     ErrorCode::CapacityExceeded, {"context"}));
}

}  // namespace
}  // namespace bitnet::test
