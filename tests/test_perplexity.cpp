// Perplexity: the arithmetic, agreement with an NLL computed here from transformers' logits in
// reference.safetensors, chunking as llama.cpp does it, batching, errors, and `bitnet perplexity`.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <sstream>

#include "bitnet/perplexity.h"
#include "model/format/safetensors.h"
#include "runtime/perplexity.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// An NLL written independently of the library: long double, log-sum-exp by the textbook.

long double reference_nll(const float* row, int vocab, int32_t token) {
    long double max = row[0];
    for (int i = 1; i < vocab; ++i) max = std::max<long double>(max, row[i]);
    long double sum = 0;
    for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<long double>(row[i]) - max);
    return max + std::log(sum) - static_cast<long double>(row[token]);
}

struct Expected {
    double ppl = 0;
    double ppl_stderr = 0;
    int64_t count = 0;
};

// llama.cpp's scoring of one chunk of `ctx` tokens whose all-position logits are `logits`:
// rows ctx/2 .. ctx-2 predict the token after each.
void score_chunk(const float* logits, int vocab, const int32_t* chunk, int ctx,
                 std::vector<long double>& nlls) {
    for (int j = ctx / 2; j < ctx - 1; ++j)
        nlls.push_back(reference_nll(logits + static_cast<size_t>(j) * vocab, vocab, chunk[j + 1]));
}

Expected summarize(const std::vector<long double>& nlls) {
    long double mean = 0;
    for (long double v : nlls) mean += v;
    mean /= static_cast<long double>(nlls.size());
    long double var = 0;  // sample variance, the textbook standard error of the mean
    for (long double v : nlls) var += (v - mean) * (v - mean);
    var /= static_cast<long double>(nlls.size() - 1);
    Expected e;
    e.ppl = static_cast<double>(std::exp(mean));
    e.ppl_stderr = static_cast<double>(std::exp(mean) *
                                       std::sqrt(var / static_cast<long double>(nlls.size())));
    e.count = static_cast<int64_t>(nlls.size());
    return e;
}

// ---------------------------------------------------------------------------------------------
// The arithmetic

TEST(PerplexityMath, TokenNllMatchesALongDoubleSoftmax) {
    std::mt19937 rng(11);
    for (const float spread : {0.5f, 8.0f, 90.0f}) {  // 90: exp overflows without the max shift
        std::uniform_real_distribution<float> dist(-spread, spread);
        const int vocab = 1031;
        std::vector<float> row(vocab);
        for (float& x : row) x = dist(rng);
        for (const int32_t token : {0, 517, vocab - 1}) {
            const double got = token_nll(row.data(), vocab, token);
            const double want = static_cast<double>(reference_nll(row.data(), vocab, token));
            EXPECT_NEAR(got, want, 1e-9 * std::max(1.0, std::abs(want))) << spread;
            EXPECT_GE(got, 0.0);
        }
    }
}

TEST(PerplexityMath, AccumulatorGivesLlamaCppsEstimate) {
    NllAccumulator acc;
    EXPECT_EQ(acc.ppl_stderr(), 0.0);
    acc.add(1.5);
    EXPECT_DOUBLE_EQ(acc.ppl(), std::exp(1.5));
    EXPECT_EQ(acc.ppl_stderr(), 0.0) << "one token has no spread";
    for (double v : {2.0, 3.25, 4.0}) acc.add(v);
    const double mean = (1.5 + 2.0 + 3.25 + 4.0) / 4;
    double population_var = 0;
    for (double v : {1.5, 2.0, 3.25, 4.0}) population_var += (v - mean) * (v - mean) / 4;
    EXPECT_EQ(acc.count(), 4);
    EXPECT_DOUBLE_EQ(acc.mean(), mean);
    EXPECT_DOUBLE_EQ(acc.ppl(), std::exp(mean));
    // llama.cpp: sqrt(population variance / (n - 1)) == sample standard error of the mean.
    EXPECT_NEAR(acc.ppl_stderr(), std::exp(mean) * std::sqrt(population_var / 3), 1e-12);

    NllAccumulator constant;
    for (int i = 0; i < 5; ++i) constant.add(2.0);
    EXPECT_EQ(constant.ppl_stderr(), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Against transformers

struct Fixture {
    std::shared_ptr<const Model> model;
    std::shared_ptr<const Tokenizer> tokenizer;
    std::unique_ptr<SafetensorsFile> reference;
    nlohmann::json reference_json;

    std::vector<int32_t> ids(const std::string& name) const {
        const StTensor* t = reference->find(name);
        if (t == nullptr) throw std::runtime_error("reference has no " + name);
        std::vector<int32_t> out(static_cast<size_t>(t->numel()));
        std::memcpy(out.data(), t->data, t->nbytes);
        return out;
    }
    const float* logits(const std::string& name) const {
        const StTensor* t = reference->find(name);
        if (t == nullptr || t->dtype != StDType::F32)
            throw std::runtime_error("reference has no f32 " + name);
        return reinterpret_cast<const float*>(t->data);
    }
    // Every reference sequence: prompt.J and generate.J.
    std::vector<std::string> sequences() const {
        std::vector<std::string> out;
        for (const char* kind : {"prompt.", "generate."}) {
            for (int j = 0; j < 64; ++j) {
                const std::string n = kind + std::to_string(j);
                if (reference->find(n + ".ids")) out.push_back(n);
            }
        }
        return out;
    }
    int vocab() const { return model->config().vocab_size; }
    int32_t bos() const { return *tokenizer->bos_id(); }
};

const Fixture& fixture(const std::string& name) {
    static std::map<std::string, Fixture> cache;
    auto it = cache.find(name);
    if (it != cache.end()) return it->second;
    Fixture f;
    const std::string dir = model_dir(name);
    f.model = Model::load(dir);
    f.tokenizer = Tokenizer::load(dir);
    f.reference = std::make_unique<SafetensorsFile>(dir + "/reference.safetensors");
    std::ifstream in(dir + "/reference.json");
    f.reference_json = nlohmann::json::parse(in);
    return cache.emplace(name, std::move(f)).first->second;
}

std::unique_ptr<InferenceEngine> make_engine(int batch = 16) {
    return InferenceEngine::builder().threads(2).batch_size(batch).build();
}

class PerplexityReference : public testing::TestWithParam<std::string> {};

// One reference sequence as one chunk: the engine's perplexity must be transformers' (computed
// here from the stored logits) within what the logit bounds allow, and clearly apart from
// what a scoring misaligned by one position would give.
TEST_P(PerplexityReference, OneSequenceAsOneChunkGivesTheTransformersPerplexity) {
    const Fixture& f = fixture(GetParam());
    auto engine = make_engine();
    const int V = f.vocab();
    int checked = 0;
    for (const std::string& name : f.sequences()) {
        const std::vector<int32_t> ids = f.ids(name + ".ids");
        const int T = static_cast<int>(ids.size());
        if (T < 8) continue;  // too short to score more than a couple of tokens
        SCOPED_TRACE(name + " (" + std::to_string(T) + " tokens)");
        PerplexityOptions o;
        o.context = T;
        const PerplexityResult r = compute_perplexity(*engine, f.model, ids, ids[0], o);

        std::vector<long double> nlls, shifted;
        score_chunk(f.logits(name + ".logits"), V, ids.data(), T, nlls);
        for (int j = T / 2; j < T - 2; ++j)  // off by one: row j scored against token j + 2
            shifted.push_back(reference_nll(f.logits(name + ".logits") + size_t(j) * V, V,
                                            ids[static_cast<size_t>(j) + 2]));
        const Expected want = summarize(nlls);
        const Expected wrong = summarize(shifted);

        EXPECT_EQ(r.chunks, 1);
        EXPECT_EQ(r.tokens_scored, want.count);
        EXPECT_EQ(r.tokens_in_text, T);
        ASSERT_EQ(r.running_ppl.size(), 1u);
        EXPECT_EQ(r.running_ppl[0], r.ppl);
        // How far the engine's logits may move the perplexity: an NLL, logsumexp(z) - z[t],
        // changes by at most 2 max|dz| when the logits change by dz. The engine's own logits
        // (a plain forward pass, not the perplexity code) must meet the reference bounds.
        const InferResult own = engine->infer(*f.model, {ids}, {.all_logits = true});
        const float* mine = own.logits[0].data_as<float>();
        const float* theirs = f.logits(name + ".logits");
        ASSERT_LT(rel_l2(mine, theirs, static_cast<size_t>(T) * V), 0.3);
        double allowed = 0;  // on the mean NLL, i.e. on log(PPL)
        for (int j = T / 2; j < T - 1; ++j) {
            float worst = 0;
            for (int k = 0; k < V; ++k) {
                const size_t at = static_cast<size_t>(j) * V + k;
                worst = std::max(worst, std::abs(mine[at] - theirs[at]));
            }
            allowed += 2.0 * worst / static_cast<double>(want.count);
        }
        const double log_error = std::abs(std::log(r.ppl) - std::log(want.ppl));
        EXPECT_LE(log_error, allowed + 1e-9) << "engine " << r.ppl << ", transformers " << want.ppl;
        EXPECT_GT(std::abs(std::log(wrong.ppl) - std::log(want.ppl)), allowed)
            << "this sequence cannot tell a misaligned scoring apart";
        std::printf(
            "%s %s: ppl %.6g vs transformers %.6g: |d log ppl| %.4f <= %.4f; misaligned "
            "%.4f\n",
            GetParam().c_str(), name.c_str(), r.ppl, want.ppl, log_error, allowed,
            std::abs(std::log(wrong.ppl) - std::log(want.ppl)));
        ++checked;
    }
    EXPECT_GE(checked, 4);
}

INSTANTIATE_TEST_SUITE_P(TinyModels, PerplexityReference,
                         testing::Values("tiny-packed", "tiny-master"),
                         [](const testing::TestParamInfo<std::string>& param) {
                             return param.param == "tiny-packed" ? "packed" : "master";
                         });

// ---------------------------------------------------------------------------------------------
// Chunking, BOS and batching, against full forward passes over each chunk

std::vector<int32_t> all_reference_tokens(const Fixture& f) {
    std::vector<int32_t> out;
    for (const std::string& name : f.sequences()) {
        const std::vector<int32_t> ids = f.ids(name + ".ids");
        out.insert(out.end(), ids.begin() + 1, ids.end());  // without their BOS
    }
    return out;
}

// What compute_perplexity must give: every whole chunk run from scratch through infer() with its
// first token replaced by `bos`, scored here.
std::vector<double> expected_running_ppl(InferenceEngine& engine, const Fixture& f,
                                         const std::vector<int32_t>& tokens, int ctx, int bos,
                                         Expected* total) {
    std::vector<long double> nlls;
    std::vector<double> running;
    for (size_t start = 0; start + ctx <= tokens.size(); start += ctx) {
        std::vector<int32_t> chunk(tokens.begin() + start, tokens.begin() + start + ctx);
        if (bos >= 0) chunk[0] = bos;
        const InferResult r = engine.infer(*f.model, {chunk}, {.all_logits = true});
        score_chunk(r.logits[0].data_as<float>(), f.vocab(), chunk.data(), ctx, nlls);
        running.push_back(summarize(nlls).ppl);
    }
    *total = summarize(nlls);
    return running;
}

TEST(PerplexityChunks, EveryChunkIsScoredLikeAFullPassOverIt) {
    const Fixture& f = fixture("tiny-packed");
    auto engine = make_engine();
    const std::vector<int32_t> all = all_reference_tokens(f);
    ASSERT_GT(all.size(), 300u);
    for (const int ctx : {4, 25, 64}) {  // smallest, odd, and with a long dropped remainder
        SCOPED_TRACE("ctx " + std::to_string(ctx));
        // The smallest context on a prefix only (one forward pass per chunk here), 1 left over.
        const std::vector<int32_t> tokens(all.begin(), all.begin() + (ctx == 4 ? 61 : all.size()));
        Expected want;
        const std::vector<double> running =
            expected_running_ppl(*engine, f, tokens, ctx, f.bos(), &want);
        PerplexityOptions o;
        o.context = ctx;
        const PerplexityResult r = compute_perplexity(*engine, f.model, tokens, f.bos(), o);
        ASSERT_EQ(r.running_ppl.size(), running.size());
        EXPECT_EQ(r.chunks, static_cast<int>(tokens.size() / ctx));
        EXPECT_EQ(r.tokens_scored, r.chunks * static_cast<int64_t>(ctx - 1 - ctx / 2));
        EXPECT_EQ(r.tokens_scored, want.count);
        for (size_t i = 0; i < running.size(); ++i)
            EXPECT_NEAR(r.running_ppl[i], running[i], 1e-5 * running[i]) << "chunk " << i + 1;
        EXPECT_NEAR(r.ppl, want.ppl, 1e-5 * want.ppl);
        EXPECT_NEAR(r.ppl_stderr, want.ppl_stderr, 1e-4 * want.ppl_stderr);
        EXPECT_NEAR(r.mean_nll, std::log(want.ppl), 1e-5);
    }
}

TEST(PerplexityChunks, EachChunkStartsWithBosOnlyWhenAsked) {
    const Fixture& f = fixture("tiny-packed");
    auto engine = make_engine();
    const std::vector<int32_t> tokens = all_reference_tokens(f);
    PerplexityOptions o;
    o.context = 20;
    Expected with_bos, without_bos;
    expected_running_ppl(*engine, f, tokens, o.context, f.bos(), &with_bos);
    expected_running_ppl(*engine, f, tokens, o.context, -1, &without_bos);
    const PerplexityResult a = compute_perplexity(*engine, f.model, tokens, f.bos(), o);
    const PerplexityResult b = compute_perplexity(*engine, f.model, tokens, -1, o);
    EXPECT_NEAR(a.ppl, with_bos.ppl, 1e-5 * with_bos.ppl);
    EXPECT_NEAR(b.ppl, without_bos.ppl, 1e-5 * without_bos.ppl);
    EXPECT_GT(std::abs(a.ppl - b.ppl), 1e-3 * a.ppl) << "BOS must change the context";
}

TEST(PerplexityChunks, BatchedAndUnbatchedRunsAgree) {
    const Fixture& f = fixture("tiny-master");
    auto engine = make_engine(8);
    const std::vector<int32_t> tokens = all_reference_tokens(f);
    PerplexityOptions o;
    o.context = 30;
    const PerplexityResult one = compute_perplexity(*engine, f.model, tokens, f.bos(), o);
    ASSERT_GE(one.chunks, 9);
    for (const int batch : {2, 3, 8}) {  // 3 and 8 leave a partial last group
        o.batch = batch;
        std::vector<int> seen;
        const PerplexityResult r =
            compute_perplexity(*engine, f.model, tokens, f.bos(), o,
                               [&](const PerplexityProgress& p) { seen.push_back(p.chunk); });
        ASSERT_EQ(r.running_ppl.size(), one.running_ppl.size()) << "batch " << batch;
        for (size_t i = 0; i < r.running_ppl.size(); ++i) {
            EXPECT_NEAR(r.running_ppl[i], one.running_ppl[i], 1e-6 * one.running_ppl[i])
                << "batch " << batch << " chunk " << i + 1;
        }
        EXPECT_NEAR(r.ppl_stderr, one.ppl_stderr, 1e-5 * one.ppl_stderr);
        EXPECT_EQ(r.tokens_scored, one.tokens_scored);
        ASSERT_EQ(seen.size(), static_cast<size_t>(r.chunks) + 1);
        for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], static_cast<int>(i));
    }
    o.batch = 1;
    o.max_chunks = 3;
    const PerplexityResult first_three = compute_perplexity(*engine, f.model, tokens, f.bos(), o);
    EXPECT_EQ(first_three.chunks, 3);
    EXPECT_NEAR(first_three.ppl, one.running_ppl[2], 1e-9 * first_three.ppl);
}

TEST(PerplexityText, TokenizesWithBosAsTheReferenceDoes) {
    const Fixture& f = fixture("tiny-packed");
    EXPECT_TRUE(tokenizer_adds_bos(*f.tokenizer));
    std::string all_text;
    for (const auto& t : f.reference_json["texts"]) {
        const std::string text = t["text"].get<std::string>();
        const std::vector<int32_t> want = t["ids"].get<std::vector<int32_t>>();
        EXPECT_EQ(perplexity_tokens(*f.tokenizer, text), want) << text;
        all_text += text + "\n";
    }
    auto engine = make_engine();
    PerplexityOptions o;
    o.context = 16;
    const std::vector<int32_t> tokens = perplexity_tokens(*f.tokenizer, all_text);
    const PerplexityResult from_text =
        compute_perplexity(*engine, f.model, *f.tokenizer, all_text, o);
    const PerplexityResult from_tokens = compute_perplexity(*engine, f.model, tokens, f.bos(), o);
    EXPECT_EQ(from_text.tokens_in_text, static_cast<int64_t>(tokens.size()));
    EXPECT_EQ(from_text.running_ppl, from_tokens.running_ppl);
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST(PerplexityErrors, BadOptionsAndShortTextsSayWhatIsWrong) {
    const Fixture& f = fixture("tiny-packed");
    auto engine = make_engine(4);
    const std::vector<int32_t> tokens = all_reference_tokens(f);
    auto run = [&](int ctx, int batch, int max_chunks, size_t n_tokens) {
        PerplexityOptions o;
        o.context = ctx;
        o.batch = batch;
        o.max_chunks = max_chunks;
        return [=, &engine, &f, &tokens] {
            compute_perplexity(*engine, f.model, std::span(tokens.data(), n_tokens), f.bos(), o);
        };
    };
    const auto n = tokens.size();
    for (const int ctx : {-5, 0, 1, 3}) {
        EXPECT_TRUE(throws_error(run(ctx, 1, 0, n), ErrorCode::InvalidArgument,
                                 {"context " + std::to_string(ctx), "at least 4"}));
    }
    EXPECT_TRUE(throws_error(run(4097, 1, 0, n), ErrorCode::InvalidArgument,
                             {"context 4097", "4096 positions"}));
    EXPECT_TRUE(throws_error(run(16, 0, 0, n), ErrorCode::InvalidArgument, {"batch 0"}));
    EXPECT_TRUE(
        throws_error(run(16, 5, 0, n), ErrorCode::InvalidArgument, {"batch 5", "batch size of 4"}));
    EXPECT_TRUE(throws_error(run(16, 1, -1, n), ErrorCode::InvalidArgument, {"max_chunks"}));
    EXPECT_TRUE(throws_error(run(64, 1, 0, 63), ErrorCode::InvalidArgument,
                             {"63 tokens", "needs at least 64"}));
    EXPECT_TRUE(throws_error(run(64, 1, 0, 0), ErrorCode::InvalidArgument, {"0 tokens"}));
    EXPECT_NO_THROW(run(64, 1, 0, 64)());  // exactly one chunk is enough

    std::vector<int32_t> bad(tokens.begin(), tokens.begin() + 16);
    bad[9] = 100000;
    PerplexityOptions o;
    o.context = 16;
    EXPECT_TRUE(throws_error([&] { compute_perplexity(*engine, f.model, bad, f.bos(), o); },
                             ErrorCode::InvalidArgument, {"100000"}));
}

// ---------------------------------------------------------------------------------------------
// `bitnet perplexity`, run as a user runs it

class PerplexityCli : public testing::Test {
  protected:
    void SetUp() override {
        static std::atomic<int> counter{0};
        dir_ = fs::path(testing::TempDir()) /
               ("bitnet_ppl_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    struct Run {
        int code = -1;
        std::string out, err;
    };
    static std::string read(const fs::path& p) {
        std::ifstream in(p, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
    Run run(const std::vector<std::string>& args) const {
        auto quote = [](const std::string& s) {
            std::string q = "'";
            for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
            return q + "'";
        };
        std::string cmd = quote(BITNET_CLI_PATH);
        for (const std::string& a : args) cmd += " " + quote(a);
        const fs::path out = dir_ / "out.txt", err = dir_ / "err.txt";
        cmd += " >" + quote(out.string()) + " 2>" + quote(err.string()) + " </dev/null";
        const int status = std::system(cmd.c_str());
        Run r;
        r.code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        r.out = read(out);
        r.err = read(err);
        return r;
    }
    // The reference texts, repeated: plain UTF-8 prose, code and numbers.
    std::string write_text(int repeats) const {
        std::string text;
        for (int i = 0; i < repeats; ++i) {
            for (const auto& t : fixture("tiny-packed").reference_json["texts"])
                text += t["text"].get<std::string>() + "\n";
        }
        const fs::path p = dir_ / "text.txt";
        std::ofstream(p, std::ios::binary) << text;
        return p.string();
    }
    fs::path dir_;
};

TEST_F(PerplexityCli, PrintsRunningAndFinalPerplexityLikeLlamaCpp) {
    const std::string file = write_text(3);
    const std::string model = model_dir("tiny-packed");
    const Run r = run({"perplexity", model, file, "--ctx", "32", "-t", "2"});
    ASSERT_EQ(r.code, 0) << r.err;

    const Fixture& f = fixture("tiny-packed");
    auto engine = make_engine();
    PerplexityOptions o;
    o.context = 32;
    const std::string text = read(file);
    const PerplexityResult want = compute_perplexity(*engine, f.model, *f.tokenizer, text, o);
    ASSERT_GE(want.chunks, 4);

    std::string running;
    for (int i = 0; i < want.chunks; ++i) {
        char item[64];
        std::snprintf(item, sizeof item, "[%d]%.4f,", i + 1, want.running_ppl[i]);
        running += item;
    }
    char final_line[128];
    std::snprintf(final_line, sizeof final_line, "Final estimate: PPL = %.4f +/- %.5f\n", want.ppl,
                  want.ppl_stderr);
    EXPECT_EQ(r.out.substr(0, running.size() + 1), running + "\n") << r.out;
    EXPECT_NE(r.out.find(final_line), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("scored " + std::to_string(want.tokens_scored) + " tokens in " +
                         std::to_string(want.chunks) + " chunks of 32"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.err.find(std::to_string(want.tokens_in_text) + " tokens"), std::string::npos)
        << r.err;
    EXPECT_EQ(r.err.find('\r'), std::string::npos) << "no progress bar when not a terminal";
    EXPECT_EQ(r.err.find('\033'), std::string::npos);

    const Run batched = run({"perplexity", model, file, "--ctx", "32", "--batch", "3", "-t", "2"});
    ASSERT_EQ(batched.code, 0) << batched.err;
    EXPECT_NE(batched.out.find(final_line), std::string::npos) << batched.out;

    const Run limited = run({"perplexity", model, file, "--ctx", "32", "--chunks", "2"});
    ASSERT_EQ(limited.code, 0) << limited.err;
    EXPECT_NE(limited.out.find("in 2 chunks of 32"), std::string::npos) << limited.out;
}

TEST_F(PerplexityCli, BadInvocationsFailWithAClearMessage) {
    const std::string model = model_dir("tiny-packed");
    const std::string file = write_text(1);
    struct Case {
        std::vector<std::string> args;
        std::string mentioned;
    };
    const std::vector<Case> cases = {
        {{"perplexity", model, (dir_ / "missing.txt").string()}, "missing.txt: no such file"},
        {{"perplexity", model, dir_.string()}, "is a directory"},
        {{"perplexity", model, file, "--ctx", "2"}, "at least 4"},
        {{"perplexity", model, file, "--ctx", "5000"}, "4096 positions"},
        {{"perplexity", model, file, "--ctx", "4096"}, "needs at least 4096"},
        {{"perplexity", model, file, "--batch", "0", "--ctx", "16"}, "batch 0"},
        {{"perplexity", model, file, "--ctx", "abc"}, "ctx"},
        {{"perplexity", (dir_ / "nomodel").string(), file}, "nomodel"},
        {{"perplexity", model}, "file"},
    };
    for (const Case& c : cases) {
        std::string joined;
        for (const std::string& a : c.args) joined += " " + a;
        SCOPED_TRACE("bitnet" + joined);
        const Run r = run(c.args);
        EXPECT_GT(r.code, 0);
        EXPECT_LT(r.code, 128);
        EXPECT_NE(r.err.find(c.mentioned), std::string::npos) << r.err;
    }

    // Invalid UTF-8 names the file.
    const fs::path bad = dir_ / "bad.txt";
    std::ofstream(bad, std::ios::binary) << "valid text \xff\xfe then junk";
    const Run r = run({"perplexity", model, bad.string(), "--ctx", "4"});
    EXPECT_GT(r.code, 0);
    EXPECT_NE(r.err.find("bad.txt"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace bitnet::test
