// Unit tests of the sampler: greedy, seeded repeatability, the distribution it draws from, top-k,
// top-p, min-p, penalties, logit bias, and bad input (everything banned, NaN, bad parameters).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "bitnet/error.h"
#include "bitnet/sampling.h"
#include "runtime/argmax.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Pure temperature sampling: every filter off.
SamplingParams plain(float temperature = 1.f, uint64_t seed = 1234) {
    SamplingParams p;
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.f;
    p.min_p = 0.f;
    p.seed = seed;
    return p;
}

SamplingParams greedy() {
    SamplingParams p;
    p.temperature = 0.f;
    return p;
}

std::vector<float> random_logits(size_t n, uint64_t seed, float scale = 5.f) {
    std::mt19937_64 rng(seed);
    std::vector<float> out(n);
    for (float& l : out) {
        const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
        l = static_cast<float>((2.0 * u - 1.0) * scale);
    }
    return out;
}

// Draws `n` tokens, each from a fresh copy of `logits` (the sampler modifies them in place).
std::vector<int32_t> draw(Sampler& s, const std::vector<float>& logits, int n,
                          const std::vector<int32_t>& history = {}) {
    std::vector<int32_t> out;
    out.reserve(static_cast<size_t>(n));
    std::vector<float> work(logits.size());
    for (int i = 0; i < n; ++i) {
        work = logits;
        out.push_back(s.sample(work, history));
    }
    return out;
}

std::set<int32_t> distinct(const std::vector<int32_t>& ids) {
    return {ids.begin(), ids.end()};
}

std::vector<int32_t> argsort_desc(const std::vector<float>& logits) {
    std::vector<int32_t> ids(logits.size());
    std::iota(ids.begin(), ids.end(), 0);
    std::stable_sort(ids.begin(), ids.end(),
                     [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    return ids;
}

// ---- greedy ------------------------------------------------------------------------------------

TEST(SamplerGreedy, PicksArgmax) {
    Sampler s(greedy());
    std::vector<float> logits = {0.1f, 2.5f, -1.f, 2.4f, -7.f};
    EXPECT_EQ(s.sample(logits, {}), 1);
    for (uint64_t seed = 1; seed <= 20; ++seed) {
        std::vector<float> l = random_logits(1000, seed);
        const auto best = std::max_element(l.begin(), l.end()) - l.begin();
        EXPECT_EQ(s.sample(l, {}), best);
    }
}

TEST(SamplerGreedy, NegativeTemperatureIsGreedy) {
    SamplingParams p = plain(-1.f);
    Sampler s(p);
    const std::vector<float> logits = {0.3f, -0.2f, 1.7f, 1.6f};
    for (int32_t id : draw(s, logits, 50)) EXPECT_EQ(id, 2);
}

TEST(SamplerGreedy, TiesGoToLowestId) {
    Sampler s(greedy());
    std::vector<float> logits = {1.f, 3.f, 2.f, 3.f, 3.f};
    EXPECT_EQ(s.sample(logits, {}), 1);
    std::vector<float> zeros(16, 0.f);  // all tied: the point of this case
    EXPECT_EQ(s.sample(zeros, {}), 0);
}

TEST(SamplerGreedy, UsesNoRandomDraw) {
    // A greedy sampler's choices do not depend on its seed, and the same logits sampled greedily
    // in between do not shift a sampling sampler's sequence (no shared state is involved).
    SamplingParams a = greedy(), b = greedy();
    a.seed = 1;
    b.seed = 2;
    Sampler sa(a), sb(b);
    for (uint64_t seed = 1; seed <= 10; ++seed) {
        const std::vector<float> l = random_logits(100, seed);
        EXPECT_EQ(draw(sa, l, 5), draw(sb, l, 5));
    }
}

// ---- seeds -------------------------------------------------------------------------------------

TEST(SamplerSeed, SameSeedSameSequence) {
    const std::vector<float> logits = random_logits(50, 7, 2.f);
    Sampler a(plain(1.f, 42)), b(plain(1.f, 42)), c(plain(1.f, 43));
    const std::vector<int32_t> da = draw(a, logits, 1000);
    const std::vector<int32_t> db = draw(b, logits, 1000);
    const std::vector<int32_t> dc = draw(c, logits, 1000);
    EXPECT_EQ(da, db);
    EXPECT_NE(da, dc);
    int differing = 0;
    for (size_t i = 0; i < da.size(); ++i) differing += da[i] != dc[i];
    EXPECT_GT(differing, 500);  // independent streams, not a shifted copy
    EXPECT_GT(distinct(da).size(), 20u);
}

TEST(SamplerSeed, SameSeedSameSequenceWithFilters) {
    SamplingParams p;  // the defaults: top-k 40, top-p 0.95, min-p 0.05, T 0.8
    p.seed = 99;
    Sampler a(p), b(p);
    const std::vector<float> logits = random_logits(5000, 3, 4.f);
    EXPECT_EQ(draw(a, logits, 300), draw(b, logits, 300));
}

// ---- the distribution --------------------------------------------------------------------------

// Pearson's chi-square of observed counts against softmax(logits / T).
double chi_square(const std::vector<float>& logits, float temperature, int draws, uint64_t seed) {
    std::vector<double> prob(logits.size());
    double total = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) {
        prob[i] = std::exp(static_cast<double>(logits[i]) / temperature);
        total += prob[i];
    }
    for (double& q : prob) q /= total;
    Sampler s(plain(temperature, seed));
    std::vector<int> counts(logits.size(), 0);
    for (int32_t id : draw(s, logits, draws)) ++counts[static_cast<size_t>(id)];
    double chi2 = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) {
        const double expected = prob[i] * draws;
        chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
    }
    return chi2;
}

TEST(SamplerDistribution, MatchesSoftmaxOfLogitsOverTemperature) {
    const std::vector<float> logits = {1.0f, 0.5f, 0.1f, -0.5f, 2.0f, -1.0f, 0.3f, 1.5f};
    // 7 degrees of freedom: P(chi2 > 24.3) = 0.001. Fixed seeds make the test deterministic; the
    // bound would catch e.g. a missing temperature, which gives chi2 in the thousands.
    for (float t : {0.5f, 1.0f, 2.0f}) {
        for (uint64_t seed : {1u, 2u, 3u}) {
            EXPECT_LT(chi_square(logits, t, 100000, seed), 24.3) << "T=" << t << " seed " << seed;
        }
    }
    // And a wrong temperature is detected: sampling at T=1 tested against T=0.5's distribution.
    std::vector<double> prob(logits.size());
    Sampler s(plain(1.f, 5));
    std::vector<int> counts(logits.size(), 0);
    for (int32_t id : draw(s, logits, 20000)) ++counts[static_cast<size_t>(id)];
    double total = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) total += prob[i] = std::exp(logits[i] / 0.5);
    double chi2 = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) {
        const double e = prob[i] / total * 20000;
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
    }
    EXPECT_GT(chi2, 100.0);
}

TEST(SamplerDistribution, TemperatureDividesLogitsInPlace) {
    Sampler s(plain(0.5f));
    std::vector<float> logits = {1.f, -2.f, 0.25f, -kInf};
    s.sample(logits, {});
    EXPECT_FLOAT_EQ(logits[0], 2.f);
    EXPECT_FLOAT_EQ(logits[1], -4.f);
    EXPECT_FLOAT_EQ(logits[2], 0.5f);
    EXPECT_EQ(logits[3], -kInf);
}

TEST(SamplerDistribution, TinyTemperatureIsNearlyGreedy) {
    Sampler s(plain(1e-20f));
    const std::vector<float> logits = {3.f, 10.f, 9.9f, -4.f};
    for (int32_t id : draw(s, logits, 200)) EXPECT_EQ(id, 1);
}

// ---- top-k -------------------------------------------------------------------------------------

TEST(SamplerTopK, OneEqualsGreedy) {
    SamplingParams p = plain(1.5f);
    p.top_k = 1;
    Sampler s(p), g(greedy());
    for (uint64_t seed = 1; seed <= 50; ++seed) {
        std::vector<float> l = random_logits(2000, seed);
        l[17] = l[1500] = 6.f;  // a tie at the top: both take the lower id
        std::vector<float> l2 = l;
        EXPECT_EQ(s.sample(l, {}), g.sample(l2, {}));
        std::vector<float> l3 = l;
        EXPECT_EQ(s.sample(l3, {}), 17);
    }
}

TEST(SamplerTopK, NeverPicksOutsideTheKBest) {
    const std::vector<float> logits = random_logits(100, 11, 1.f);
    const std::vector<int32_t> order = argsort_desc(logits);
    for (int k : {2, 5, 10}) {
        SamplingParams p = plain(5.f);  // hot, so the tail would show up if it were kept
        p.top_k = k;
        Sampler s(p);
        const std::set<int32_t> best(order.begin(), order.begin() + k);
        const std::set<int32_t> seen = distinct(draw(s, logits, 3000));
        EXPECT_EQ(seen, best) << "k=" << k;
    }
    // k >= vocab or k <= 0: off.
    for (int k : {0, -3, 100, 1000}) {
        SamplingParams p = plain(5.f);
        p.top_k = k;
        Sampler s(p);
        EXPECT_GT(distinct(draw(s, logits, 3000)).size(), 90u) << "k=" << k;
    }
}

// ---- top-p -------------------------------------------------------------------------------------

// Logits log(prob) for a hand-made distribution, placed at scrambled ids.
std::vector<float> hand_made(const std::vector<double>& probs, const std::vector<int32_t>& ids) {
    std::vector<float> logits(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
        logits[static_cast<size_t>(ids[i])] = static_cast<float>(std::log(probs[i]));
    }
    return logits;
}

TEST(SamplerTopP, KeepsExactlyTheNucleus) {
    // Probabilities best first, at ids 4, 0, 5, 2, 1, 3; cumulative: .40 .65 .80 .90 .96 1.
    const std::vector<double> probs = {0.40, 0.25, 0.15, 0.10, 0.06, 0.04};
    const std::vector<int32_t> ids = {4, 0, 5, 2, 1, 3};
    const std::vector<float> logits = hand_made(probs, ids);
    const struct {
        float top_p;
        size_t kept;
    } cases[] = {{0.1f, 1}, {0.39f, 1}, {0.5f, 2}, {0.7f, 3}, {0.85f, 4}, {0.93f, 5}, {0.99f, 6}};
    for (const auto& c : cases) {
        SamplingParams p = plain(1.f);
        p.top_p = c.top_p;
        Sampler s(p);
        const std::set<int32_t> expected(ids.begin(), ids.begin() + c.kept);
        EXPECT_EQ(distinct(draw(s, logits, 4000)), expected) << "top_p=" << c.top_p;
    }
}

TEST(SamplerTopP, LargeNucleusWithoutTopK) {
    // 1000 tokens with slowly falling logits (best at the highest id): the nucleus is a few
    // hundred tokens, found without sorting the vocabulary.
    const size_t n = 1000;
    std::vector<float> logits(n);
    for (size_t i = 0; i < n; ++i) logits[i] = static_cast<float>(i) * 0.002f;
    const float top_p = 0.6f;
    std::vector<double> prob(n);
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) total += prob[i] = std::exp(static_cast<double>(logits[i]));
    size_t kept = 0;
    double cum = 0.0;
    while (cum < top_p * total) cum += prob[n - 1 - kept++];
    ASSERT_GT(kept, 200u);
    // The boundary is well clear of top_p, so float rounding cannot move it.
    ASSERT_GT(cum / total - top_p, 1e-4);
    ASSERT_GT(top_p - (cum - prob[n - kept]) / total, 1e-4);

    SamplingParams p = plain(1.f);
    p.top_p = top_p;
    Sampler s(p);
    // The worst of the ~365 kept tokens has 1.9e-3 of the nucleus: 10,000 draws miss it with
    // probability about 1e-8.
    const std::set<int32_t> seen = distinct(draw(s, logits, kUnderSanitizers ? 10000 : 30000));
    EXPECT_EQ(*seen.begin(), static_cast<int32_t>(n - kept));  // the worst kept token shows up
    EXPECT_EQ(*seen.rbegin(), static_cast<int32_t>(n - 1));
    EXPECT_GT(seen.size(), kept - 10);
}

TEST(SamplerTopP, ExactNucleusInALlama3SizedVocabulary) {
    // 60 strong tokens at scattered ids over a tail of 128196 weak ones: the nucleus at 0.5 is
    // some of the strong ones, and it must be exactly the brute-force one.
    const size_t vocab = 128256;
    std::vector<float> logits = random_logits(vocab, 77, 5.f);
    for (float& l : logits) l -= 5.f;  // the tail in [-10, 0]
    std::vector<int32_t> strong;
    for (int32_t i = 0; i < 60; ++i) {
        const int32_t id = (i * 7919 + 13) % static_cast<int32_t>(vocab);
        logits[static_cast<size_t>(id)] = 10.f + 0.01f * static_cast<float>(i % 17);
        strong.push_back(id);
    }
    const float top_p = 0.5f;
    const std::vector<int32_t> order = argsort_desc(logits);
    double total = 0.0;
    for (float l : logits) total += std::exp(static_cast<double>(l) - 10.16);
    size_t kept = 0;
    double cum = 0.0, before = 0.0;
    while (cum < top_p * total) {
        before = cum;
        cum += std::exp(static_cast<double>(logits[static_cast<size_t>(order[kept++])]) - 10.16);
    }
    ASSERT_GT(cum / total - top_p, 1e-4);
    ASSERT_GT(top_p - before / total, 1e-4);
    ASSERT_LT(kept, 60u);
    ASSERT_GT(kept, 10u);
    const std::set<int32_t> expected(order.begin(), order.begin() + static_cast<ptrdiff_t>(kept));

    SamplingParams p = plain(1.f);
    p.top_p = top_p;
    Sampler s(p);
    // About 30 strong tokens are kept (half of the 60, which hold almost all the mass), each with
    // at least 1/35 of the nucleus: 400 draws miss one with probability below 30 exp(-400 / 35),
    // about 3e-4.
    EXPECT_EQ(distinct(draw(s, logits, kUnderSanitizers ? 400 : 1500)), expected);
}

TEST(SamplerTopP, AppliesToTheTopKSurvivors) {
    // After top-k 3 the survivors are renormalised: .4/.8, .25/.8, .15/.8 = .5, .3125, .1875.
    const std::vector<double> probs = {0.40, 0.25, 0.15, 0.10, 0.06, 0.04};
    const std::vector<int32_t> ids = {4, 0, 5, 2, 1, 3};
    SamplingParams p = plain(1.f);
    p.top_k = 3;
    p.top_p = 0.75f;  // .5, .8125: two tokens (without top-k it would be three)
    Sampler s(p);
    EXPECT_EQ(distinct(draw(s, hand_made(probs, ids), 4000)), (std::set<int32_t>{4, 0}));
}

// ---- min-p -------------------------------------------------------------------------------------

TEST(SamplerMinP, DropsTokensBelowTheFractionOfTheBest) {
    const std::vector<double> probs = {0.50, 0.20, 0.10, 0.09, 0.06, 0.05};
    const std::vector<int32_t> ids = {2, 5, 0, 3, 4, 1};
    const std::vector<float> logits = hand_made(probs, ids);
    const struct {
        float min_p;
        size_t kept;
    } cases[] = {{0.05f, 6}, {0.11f, 5}, {0.15f, 4}, {0.19f, 3}, {0.3f, 2}, {0.5f, 1}, {2.f, 1}};
    for (const auto& c : cases) {
        SamplingParams p = plain(1.f);
        p.min_p = c.min_p;
        Sampler s(p);
        const std::set<int32_t> expected(ids.begin(), ids.begin() + c.kept);
        EXPECT_EQ(distinct(draw(s, logits, 4000)), expected) << "min_p=" << c.min_p;
    }
}

TEST(SamplerMinP, ComesBeforeTemperature) {
    // p = .5 and .04 relative to .5 is .08 < min_p .1, so token 1 is dropped even though a high
    // temperature would lift it above the bar.
    const std::vector<double> probs = {0.50, 0.46, 0.04};
    const std::vector<int32_t> ids = {0, 2, 1};
    SamplingParams p = plain(10.f);
    p.min_p = 0.1f;
    Sampler s(p);
    EXPECT_EQ(distinct(draw(s, hand_made(probs, ids), 3000)), (std::set<int32_t>{0, 2}));
}

// ---- penalties ---------------------------------------------------------------------------------

TEST(SamplerPenalties, RepetitionDividesPositiveAndMultipliesNegative) {
    SamplingParams p = greedy();
    p.repeat_penalty = 2.f;
    p.repeat_last_n = 64;
    Sampler s(p);
    std::vector<float> logits = {2.f, -1.f, 0.5f, 3.f, -2.f, 0.f};
    const std::vector<int32_t> history = {0, 1, 0, 4, 5};
    EXPECT_EQ(s.sample(logits, history), 3);
    EXPECT_FLOAT_EQ(logits[0], 1.f);  // once, although it occurs twice
    EXPECT_FLOAT_EQ(logits[1], -2.f);
    EXPECT_FLOAT_EQ(logits[2], 0.5f);
    EXPECT_FLOAT_EQ(logits[3], 3.f);
    EXPECT_FLOAT_EQ(logits[4], -4.f);
    EXPECT_FLOAT_EQ(logits[5], 0.f);

    // The penalised argmax loses its place.
    std::vector<float> l2 = {2.f, 1.5f};
    const std::vector<int32_t> h2 = {0};
    EXPECT_EQ(s.sample(l2, h2), 1);
}

TEST(SamplerPenalties, WindowIsTheLastRepeatLastNTokens) {
    const std::vector<float> base = {2.f, -1.f, 0.5f, 3.f, -2.f};
    const std::vector<int32_t> history = {1, 2, 0, 4};
    const struct {
        int last_n;
        std::vector<float> expected;
    } cases[] = {
        {0, {2.f, -1.f, 0.5f, 3.f, -2.f}},   {1, {2.f, -1.f, 0.5f, 3.f, -4.f}},
        {2, {1.f, -1.f, 0.5f, 3.f, -4.f}},   {3, {1.f, -1.f, 0.25f, 3.f, -4.f}},
        {-1, {1.f, -2.f, 0.25f, 3.f, -4.f}}, {100, {1.f, -2.f, 0.25f, 3.f, -4.f}},
    };
    for (const auto& c : cases) {
        SamplingParams p = greedy();
        p.repeat_penalty = 2.f;
        p.repeat_last_n = c.last_n;
        Sampler s(p);
        std::vector<float> logits = base;
        s.sample(logits, history);
        for (size_t i = 0; i < base.size(); ++i) {
            EXPECT_FLOAT_EQ(logits[i], c.expected[i]) << "last_n=" << c.last_n << " token " << i;
        }
    }
}

TEST(SamplerPenalties, FrequencyAndPresence) {
    SamplingParams p = greedy();
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    Sampler s(p);
    std::vector<float> logits = {1.f, 2.f, 3.f, 0.5f};
    const std::vector<int32_t> history = {0, 0, 0, 2};
    EXPECT_EQ(s.sample(logits, history), 2);
    EXPECT_FLOAT_EQ(logits[0], 1.f - 3 * 0.5f - 0.25f);
    EXPECT_FLOAT_EQ(logits[1], 2.f);
    EXPECT_FLOAT_EQ(logits[2], 3.f - 0.5f - 0.25f);
    EXPECT_FLOAT_EQ(logits[3], 0.5f);

    // With the repetition penalty too: it applies first.
    p.repeat_penalty = 2.f;
    Sampler s2(p);
    std::vector<float> l2 = {1.f, 2.f, -3.f, 0.5f};
    s2.sample(l2, history);
    EXPECT_FLOAT_EQ(l2[0], 0.5f - 1.75f);
    EXPECT_FLOAT_EQ(l2[2], -6.f - 0.75f);

    // The state does not leak into the next call: the same input gives the same output.
    std::vector<float> l3 = {1.f, 2.f, -3.f, 0.5f};
    s2.sample(l3, history);
    EXPECT_EQ(l2, l3);
}

// ---- logit bias --------------------------------------------------------------------------------

TEST(SamplerBias, MinusInfinityBansAndBigForces) {
    const std::vector<float> logits = {0.5f, 3.f, 2.9f, -1.f};
    {
        SamplingParams p = greedy();
        p.logit_bias[1] = -kInf;
        Sampler s(p);
        EXPECT_EQ(draw(s, logits, 1)[0], 2);
    }
    {
        SamplingParams p = plain(2.f);
        p.logit_bias[1] = -kInf;
        Sampler s(p);
        EXPECT_EQ(distinct(draw(s, logits, 3000)), (std::set<int32_t>{0, 2, 3}));
    }
    {
        SamplingParams p = plain(1.f);
        p.logit_bias[3] = 100.f;
        Sampler s(p);
        EXPECT_EQ(distinct(draw(s, logits, 1000)), (std::set<int32_t>{3}));
    }
    {
        SamplingParams p = plain(1.f);
        p.logit_bias[0] = kInf;
        Sampler s(p);
        EXPECT_EQ(distinct(draw(s, logits, 100)), (std::set<int32_t>{0}));
    }
}

TEST(SamplerBias, IsAddedBeforeThePenalties) {
    SamplingParams p = greedy();
    p.logit_bias[0] = 1.f;
    p.logit_bias[2] = -0.5f;
    p.repeat_penalty = 2.f;
    Sampler s(p);
    std::vector<float> logits = {1.f, 0.f, 0.25f};
    const std::vector<int32_t> history = {0, 2};
    s.sample(logits, history);
    EXPECT_FLOAT_EQ(logits[0], 1.f);    // (1 + 1) / 2
    EXPECT_FLOAT_EQ(logits[1], 0.f);    // untouched
    EXPECT_FLOAT_EQ(logits[2], -0.5f);  // (0.25 - 0.5) * 2
}

// ---- bad input ---------------------------------------------------------------------------------

void expect_invalid(const std::function<void()>& f, const std::string& needle) {
    try {
        f();
        ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

TEST(SamplerErrors, EverythingBanned) {
    for (const SamplingParams& base : {greedy(), plain(1.f), SamplingParams{}}) {
        SamplingParams p = base;
        for (int32_t t = 0; t < 3; ++t) p.logit_bias[t] = -kInf;
        Sampler s(p);
        std::vector<float> logits = {1.f, 2.f, 3.f};
        expect_invalid([&] { s.sample(logits, {}); }, "banned");

        Sampler s2(base);
        std::vector<float> all_inf(5, -kInf);
        expect_invalid([&] { s2.sample(all_inf, {}); }, "banned");
    }
}

TEST(SamplerErrors, NaNLogitsCountAsMinusInfinity) {
    Sampler g(greedy());
    std::vector<float> logits = {kNaN, 1.f, kNaN, 2.f, -0.5f};
    EXPECT_EQ(g.sample(logits, {}), 3);
    EXPECT_EQ(logits[0], -kInf);

    std::vector<float> nan_first = {kNaN, -1.f, 0.f};
    EXPECT_EQ(g.sample(nan_first, {}), 2);

    for (const SamplingParams& p : {plain(1.f), SamplingParams{}}) {
        Sampler s(p);
        const std::vector<float> l = {kNaN, 1.f, kNaN, 2.f, -0.5f};
        const std::set<int32_t> seen = distinct(draw(s, l, 2000));
        EXPECT_EQ(seen.count(0), 0u);
        EXPECT_EQ(seen.count(2), 0u);
        EXPECT_EQ(seen.count(3), 1u);
    }

    Sampler s(plain(1.f));
    std::vector<float> all_nan(4, kNaN);
    expect_invalid([&] { s.sample(all_nan, {}); }, "banned");

    // NaN after a penalty (an infinite logit times a penalty is still infinite, not NaN).
    SamplingParams pp = plain(1.f);
    pp.repeat_penalty = 1.5f;
    pp.presence_penalty = 1.f;
    Sampler sp(pp);
    std::vector<float> l2 = {kNaN, 1.f, -kInf};
    const std::vector<int32_t> h = {0, 2};
    EXPECT_EQ(sp.sample(l2, h), 1);
}

TEST(SamplerErrors, BadParametersAreRejectedNamingTheField) {
    auto make = [](SamplingParams p) { return [p] { Sampler s(p); }; };
    SamplingParams p;
    p.top_p = 0.f;
    expect_invalid(make(p), "top_p");
    p.top_p = -0.5f;
    expect_invalid(make(p), "top_p");
    p.top_p = kNaN;
    expect_invalid(make(p), "top_p");

    p = SamplingParams{};
    p.repeat_penalty = 0.f;
    expect_invalid(make(p), "repeat_penalty");
    p.repeat_penalty = -1.f;
    expect_invalid(make(p), "repeat_penalty");

    p = SamplingParams{};
    p.temperature = kNaN;
    expect_invalid(make(p), "temperature");

    p = SamplingParams{};
    p.min_p = kNaN;
    expect_invalid(make(p), "min_p");

    p = SamplingParams{};
    p.repeat_last_n = -2;
    expect_invalid(make(p), "repeat_last_n");

    p = SamplingParams{};
    p.frequency_penalty = kInf;
    expect_invalid(make(p), "frequency_penalty");
    p = SamplingParams{};
    p.presence_penalty = kNaN;
    expect_invalid(make(p), "presence_penalty");

    p = SamplingParams{};
    p.logit_bias[-1] = 1.f;
    expect_invalid(make(p), "logit_bias");
    p = SamplingParams{};
    p.logit_bias[3] = kNaN;
    expect_invalid(make(p), "logit_bias");

    // Allowed: negative temperature (greedy), top_p above 1, min_p above 1, huge top_k.
    p = SamplingParams{};
    p.temperature = -0.5f;
    p.top_p = 1.5f;
    p.min_p = 3.f;
    p.top_k = 1 << 30;
    EXPECT_NO_THROW(Sampler{p});
}

TEST(SamplerErrors, BadCallArguments) {
    SamplingParams p = plain(1.f);
    p.repeat_penalty = 1.1f;
    Sampler s(p);
    std::vector<float> empty;
    expect_invalid([&] { s.sample(empty, {}); }, "vocabulary");

    std::vector<float> logits = {1.f, 2.f, 3.f};
    const std::vector<int32_t> bad_history = {0, 1, 7};
    expect_invalid([&] { s.sample(logits, bad_history); }, "history token 7");
    // The failed call left no counts behind: the next call penalises exactly once.
    std::vector<float> l2 = {1.f, 2.f, 3.f};
    const std::vector<int32_t> h2 = {0};
    SamplingParams pg = greedy();
    pg.repeat_penalty = 2.f;
    Sampler g(pg);
    expect_invalid([&] { g.sample(logits, bad_history); }, "history token");
    g.sample(l2, h2);
    EXPECT_FLOAT_EQ(l2[0], 0.5f);
    EXPECT_FLOAT_EQ(l2[1], 2.f);

    SamplingParams pb = plain(1.f);
    pb.logit_bias[10] = 1.f;
    Sampler sb(pb);
    std::vector<float> l3 = {1.f, 2.f, 3.f};
    expect_invalid([&] { sb.sample(l3, {}); }, "logit_bias");
}

// ---- a real vocabulary size --------------------------------------------------------------------

TEST(SamplerLargeVocab, Llama3VocabularyRandomLogits) {
    const size_t vocab = 128256;
    const std::vector<float> logits = random_logits(vocab, 2024, 8.f);
    std::vector<int32_t> history;
    for (int32_t i = 0; i < 64; ++i) history.push_back(i * 1999 % static_cast<int32_t>(vocab));

    SamplingParams defaults;  // top-k 40, top-p .95, min-p .05
    SamplingParams nucleus = plain(1.f);
    nucleus.top_p = 0.9f;  // no top-k: top-p sorts in chunks
    SamplingParams pure = plain(1.2f);
    SamplingParams penalised = defaults;
    penalised.repeat_penalty = 1.3f;
    penalised.frequency_penalty = 0.1f;
    penalised.presence_penalty = 0.2f;
    penalised.repeat_last_n = -1;

    const std::vector<int32_t> order = argsort_desc(logits);
    const std::set<int32_t> top40(order.begin(), order.begin() + 40);
    const int draws = kUnderSanitizers ? 40 : 200;
    for (const SamplingParams& p : {defaults, nucleus, pure, penalised}) {
        Sampler s(p);
        const std::vector<int32_t> ids = draw(s, logits, draws, history);
        for (int32_t id : ids) {
            ASSERT_GE(id, 0);
            ASSERT_LT(id, static_cast<int32_t>(vocab));
        }
        if (p.top_k == 40 && p.repeat_penalty == 1.f) {
            for (int32_t id : ids) EXPECT_EQ(top40.count(id), 1u) << id;
        }
        Sampler again(p);
        EXPECT_EQ(draw(again, logits, draws, history), ids);
    }
}

// The greedy pick keeps eight running maxima: every length around the lanes and the tail, ties
// (few distinct values) at any position, and -inf logits, against std::max_element.
TEST(FirstArgmax, IsTheFirstLargestValue) {
    std::mt19937 gen(7);
    for (size_t n : {1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 31, 33, 100, 512, 513, 4099}) {
        for (int distinct : {2, 5, 1000000}) {
            std::uniform_int_distribution<int> pick(0, distinct - 1);
            for (int trial = 0; trial < 20; ++trial) {
                std::vector<float> x(n);
                for (float& v : x) v = static_cast<float>(pick(gen)) * 0.25f - 3.f;
                if (trial % 4 == 1) x[gen() % n] = -kInf;
                if (trial % 4 == 2) std::fill(x.begin(), x.end(), -kInf);
                const size_t want =
                    static_cast<size_t>(std::max_element(x.begin(), x.end()) - x.begin());
                ASSERT_EQ(first_argmax(x.data(), n), want)
                    << "n " << n << ", " << distinct << " values, trial " << trial;
            }
        }
    }
}

}  // namespace
}  // namespace bitnet::test
