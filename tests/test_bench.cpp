// `bitnet bench` and its parts: synthetic models (shapes, weight statistics, determinism, every
// head format), the benchmark library on a synthetic and a real checkpoint (fields present and
// consistent; never timing thresholds), bad options, the command line and bench/compare.sh.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/ternary_pack.h"
#include "model/model_impl.h"
#include "model/synthetic_model.h"
#include "runtime/benchmark.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

namespace fs = std::filesystem;

// Bytes of every weight the engine holds, less the rows that a decode step reads from their copy
// in row groups instead (model/weights.h); a head's groups take the bytes of the rows they copy.
size_t held_bytes_read_once(const Model& m) {
    size_t bytes = m.info().engine_bytes - m.impl().weights.lm_head().groups.bytes();
    for (const LayerWeights& l : m.impl().weights.layers) {
        for (const BitLinearWeight* w : l.bitlinears()) {
            if (w->view.groups != nullptr)
                bytes -= static_cast<size_t>(w->view.rows / cpu::kTernaryGroupRows *
                                             cpu::kTernaryGroupRows) *
                         w->view.row_bytes();
        }
    }
    return bytes;
}

std::shared_ptr<const Model> synthetic(const std::string& head = "bf16", uint64_t seed = 1,
                                       int threads = 0) {
    SyntheticSpec spec;
    spec.shape = "1m";
    spec.head = head;
    spec.seed = seed;
    spec.threads = threads;
    return make_synthetic_model(spec);
}

// ---- synthetic models -----------------------------------------------------------------------

TEST(SyntheticModel, ShapesAreThoseOfTheirModels) {
    const ModelConfig b = synthetic_config("2b");
    EXPECT_EQ(b.hidden_size, 2560);
    EXPECT_EQ(b.intermediate_size, 6912);
    EXPECT_EQ(b.num_layers, 30);
    EXPECT_EQ(b.num_heads, 20);
    EXPECT_EQ(b.num_kv_heads, 5);
    EXPECT_EQ(b.head_dim, 128);
    EXPECT_EQ(b.vocab_size, 128256);
    EXPECT_EQ(b.activation, Activation::Relu2);
    EXPECT_TRUE(b.sub_norms);
    EXPECT_TRUE(b.tie_word_embeddings);
    const ModelConfig m = synthetic_config("1m");
    EXPECT_EQ(m.hidden_size, 128);
    EXPECT_EQ(m.intermediate_size, 512);
    EXPECT_EQ(m.num_layers, 4);
    EXPECT_EQ(m.num_heads, 4);
    EXPECT_EQ(m.num_kv_heads, 4);
    EXPECT_EQ(m.vocab_size, 512);
    EXPECT_EQ(m.num_heads * m.head_dim, m.hidden_size);
}

TEST(SyntheticModel, UnknownNamesAreClearErrors) {
    EXPECT_TRUE(throws_error([] { synthetic_config("3b"); }, ErrorCode::InvalidArgument,
                             {"'3b'", "2b", "1m"}));
    SyntheticSpec spec;
    spec.weights = "t3";
    EXPECT_TRUE(throws_error([&] { make_synthetic_model(spec); }, ErrorCode::InvalidArgument,
                             {"'t3'", "t2"}));
    spec.weights = "t2";
    spec.head = "q4_0";
    EXPECT_TRUE(throws_error([&] { make_synthetic_model(spec); }, ErrorCode::InvalidArgument,
                             {"'q4_0'", "bf16", "i8"}));
    spec.head = "bf16";
    spec.threads = -1;
    EXPECT_TRUE(
        throws_error([&] { make_synthetic_model(spec); }, ErrorCode::InvalidArgument, {"threads"}));
}

TEST(SyntheticModel, WeightsAreRandomTernaryWithAThirdZeros) {
    const auto model = synthetic();
    const ModelWeights& w = model->impl().weights;
    ASSERT_EQ(w.layers.size(), 4u);
    for (const LayerWeights& L : w.layers) {
        for (const BitLinearWeight* b : L.bitlinears()) {
            SCOPED_TRACE(b->name);
            int64_t count[3] = {0, 0, 0};
            for (int r = 0; r < b->view.rows; ++r) {
                for (int k = 0; k < b->view.cols_padded; ++k) {
                    const int v = cpu::ternary_at(b->view, r, k);
                    ASSERT_TRUE(v >= -1 && v <= 1);
                    if (k >= b->view.cols) {
                        ASSERT_EQ(v, 0) << "padding column " << k;
                    } else {
                        ++count[v + 1];
                    }
                }
            }
            const double n = static_cast<double>(b->view.rows) * b->view.cols;
            for (int v = 0; v < 3; ++v)
                EXPECT_NEAR(count[v] / n, 1.0 / 3, 0.02) << "value " << v - 1;
            EXPECT_FLOAT_EQ(b->alpha, 1.f / std::sqrt(2.f * b->in_features() / 3.f));
        }
        for (const std::vector<float>* norm :
             {&L.attn_norm, &L.ffn_norm, &L.attn_sub_norm, &L.ffn_sub_norm}) {
            ASSERT_FALSE(norm->empty());
            const auto [lo, hi] = std::minmax_element(norm->begin(), norm->end());
            EXPECT_GE(*lo, 0.9f);
            EXPECT_LE(*hi, 1.1f);
            EXPECT_LT(*lo, *hi);
        }
    }
}

TEST(SyntheticModel, SameSeedGivesTheSameModelWhateverTheThreads) {
    const auto one = synthetic("bf16", 7, 1), two = synthetic("bf16", 7, 2),
               other = synthetic("bf16", 8, 2);
    const ModelWeights &a = one->impl().weights, &b = two->impl().weights,
                       &c = other->impl().weights;
    const size_t embedding_bytes = a.embedding.bytes();
    EXPECT_EQ(std::memcmp(a.embedding.data, b.embedding.data, embedding_bytes), 0);
    EXPECT_NE(std::memcmp(a.embedding.data, c.embedding.data, embedding_bytes), 0);
    for (size_t l = 0; l < a.layers.size(); ++l) {
        const auto wa = a.layers[l].bitlinears(), wb = b.layers[l].bitlinears(),
                   wc = c.layers[l].bitlinears();
        for (size_t i = 0; i < wa.size(); ++i) {
            SCOPED_TRACE(wa[i]->name);
            ASSERT_EQ(wa[i]->packed.bytes(), wb[i]->packed.bytes());
            EXPECT_EQ(
                std::memcmp(wa[i]->packed.data(), wb[i]->packed.data(), wa[i]->packed.bytes()), 0);
            EXPECT_NE(
                std::memcmp(wa[i]->packed.data(), wc[i]->packed.data(), wa[i]->packed.bytes()), 0);
        }
        EXPECT_EQ(a.layers[l].attn_norm, b.layers[l].attn_norm);
        EXPECT_NE(a.layers[l].attn_norm, c.layers[l].attn_norm);
    }
}

// The 1.6-bit layout holds the very weights of the 2-bit one (in 4/5 of the bytes for wide rows;
// the 1m model's short rows are mostly padding either way), and the model computes the same logits
// (the kernels' int32 dot products are exact in both layouts).
TEST(SyntheticModel, TritsLayoutHoldsTheSameWeights) {
    SyntheticSpec spec;
    spec.seed = 3;
    const auto two = make_synthetic_model(spec);
    spec.weights = "t5";
    const auto five = make_synthetic_model(spec);
    EXPECT_NE(five->info().format.find("ternary5"), std::string::npos) << five->info().format;
    const auto& a = two->impl().weights.layers;
    const auto& b = five->impl().weights.layers;
    for (size_t l = 0; l < a.size(); ++l) {
        const auto wa = a[l].bitlinears(), wb = b[l].bitlinears();
        for (size_t i = 0; i < wa.size(); ++i) {
            SCOPED_TRACE(wa[i]->name);
            const cpu::TernaryMatrixView &va = wa[i]->view, &vb = wb[i]->view;
            ASSERT_EQ(vb.layout, cpu::TernaryLayout::Trits5);
            ASSERT_EQ(wb[i]->packed.bytes(),
                      cpu::ternary_packed_bytes(vb.rows, vb.cols, cpu::TernaryLayout::Trits5));
            EXPECT_FALSE(cpu::find_invalid_ternary_code(vb).has_value());
            EXPECT_EQ(wa[i]->alpha, wb[i]->alpha);
            for (int r = 0; r < va.rows; r += 7)
                for (int k = 0; k < va.cols; ++k)
                    ASSERT_EQ(cpu::ternary_at(va, r, k), cpu::ternary_at(vb, r, k))
                        << r << "," << k;
            for (int r = 0; r < vb.rows; r += 5)
                for (int k = vb.cols; k < vb.cols_padded; ++k)
                    ASSERT_EQ(cpu::ternary_at(vb, r, k), 0) << "padding " << r << "," << k;
        }
    }
    InferenceEngine engine(EngineOptions{.threads = 2});
    const std::vector<std::vector<int32_t>> ids = {{5, 300, 17, 42, 511, 0, 99}};
    const Tensor la = engine.infer(*two, ids).logits[0], lb = engine.infer(*five, ids).logits[0];
    ASSERT_EQ(la.numel(), lb.numel());
    EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.nbytes()), 0);
}

TEST(SyntheticModel, InfoDescribesWhatWasBuilt) {
    const auto model = synthetic();
    const ModelInfo& info = model->info();
    const ModelConfig& c = model->config();
    EXPECT_EQ(info.path, "synthetic:1m");
    EXPECT_NE(info.format.find("synthetic"), std::string::npos) << info.format;
    EXPECT_NE(info.format.find("bf16"), std::string::npos) << info.format;
    EXPECT_EQ(info.file_bytes, 0u);
    EXPECT_EQ(info.mapped_bytes, 0u);
    const size_t H = c.hidden_size, F = c.intermediate_size;
    EXPECT_EQ(info.ternary_weights, c.num_layers * (4 * H * H + 3 * H * F));
    size_t sum = 0;
    for (const TensorInfo& t : info.tensors) sum += t.engine_bytes;
    EXPECT_EQ(sum, info.engine_bytes);
    EXPECT_EQ(info.tensors.size(), static_cast<size_t>(2 + c.num_layers * 11));
    EXPECT_EQ(info.tensors.front().name, "model.embed_tokens.weight");
    // With its copy in dense row groups where the AVX-512 kernels run (the same bytes).
    const size_t head_copy = model->impl().weights.lm_head().groups.bytes();
    EXPECT_TRUE(head_copy == 0 || head_copy == 512u * 128u * 2u);
    EXPECT_EQ(info.tensors.front().engine_bytes, 512u * 128u * 2u + head_copy);
}

struct HeadCase {
    const char* name;
    DenseFormat format;
};

class SyntheticHead : public testing::TestWithParam<HeadCase> {};

// Every head format runs, and holds the same random matrix as the bf16 one up to its rounding.
TEST_P(SyntheticHead, RunsAndMatchesTheBf16Head) {
    const auto model = synthetic(GetParam().name);
    const auto reference = synthetic("bf16");
    const DenseMatrix& head = model->impl().weights.lm_head();
    EXPECT_EQ(head.format, GetParam().format);
    EXPECT_EQ(head.rows, 512);
    EXPECT_NE(model->info().format.find(GetParam().name), std::string::npos);
    std::vector<float> row(128), ref(128);
    double err = 0, norm = 0;
    for (int r = 0; r < head.rows; r += 37) {
        head.row_to_f32(r, row.data());
        reference->impl().weights.lm_head().row_to_f32(r, ref.data());
        for (int k = 0; k < 128; ++k) {
            err += (row[k] - ref[k]) * (row[k] - ref[k]);
            norm += ref[k] * ref[k];
        }
    }
    EXPECT_LT(std::sqrt(err / norm), 0.01);  // bf16 itself rounds to 2^-9
    InferenceEngine engine(EngineOptions{.threads = 2});
    const Tensor ids = [] {
        Tensor t(DType::I32, {9});
        for (int i = 0; i < 9; ++i) t.data_as<int32_t>()[i] = (i * 131 + 7) % 512;
        return t;
    }();
    const Tensor logits = engine.infer(*model, ids);
    ASSERT_EQ(logits.numel(), 512);
    const float* x = logits.data_as<float>();
    for (int i = 0; i < 512; ++i) ASSERT_TRUE(std::isfinite(x[i])) << i;
    EXPECT_NE(*std::min_element(x, x + 512), *std::max_element(x, x + 512));
}

INSTANTIATE_TEST_SUITE_P(Formats, SyntheticHead,
                         testing::Values(HeadCase{"f32", DenseFormat::F32},
                                         HeadCase{"bf16", DenseFormat::BF16},
                                         HeadCase{"f16", DenseFormat::F16},
                                         HeadCase{"q8_0", DenseFormat::Q8_0},
                                         HeadCase{"i8", DenseFormat::I8R}),
                         [](const auto& p) { return std::string(p.param.name); });

// ---- the benchmark library --------------------------------------------------------------------

BenchOptions tiny_options() {
    BenchOptions o;
    o.prompt_tokens = 5;
    o.gen_tokens = 7;
    o.repeat = 2;
    o.batch = 3;
    o.bandwidth_bytes = size_t{8} << 20;
    o.bandwidth_passes = 2;
    return o;
}

// One sequence, one run, nothing beside it: no batch, API comparison or read ceiling.
BenchOptions single_run_options() {
    BenchOptions o = tiny_options();
    o.batch = 1;
    o.api_overhead = false;
    o.bandwidth_bytes = 0;
    o.warmup = 0;
    o.repeat = 1;
    return o;
}

double number(const nlohmann::json& j, const char* key) {
    EXPECT_TRUE(j.contains(key)) << key;
    EXPECT_TRUE(j.contains(key) && j[key].is_number()) << key;
    return j.contains(key) && j[key].is_number() ? j[key].get<double>() : -1;
}

// Fields present, positive and consistent with each other and with the model.
void expect_sane(const std::string& line, const Model& model, const BenchOptions& o) {
    ASSERT_EQ(line.find('\n'), std::string::npos);
    const nlohmann::json j = nlohmann::json::parse(line);
    for (const char* key :
         {"prompt_tok_s", "gen_tok_s", "ttft_ms", "peak_rss_mb", "achieved_gb_s", "bandwidth_gb_s",
          "bandwidth_pct", "batch_tok_s", "batch_ratio", "batch_step_ms_p50", "api_step_ms",
          "bare_step_ms", "model_mb", "interleaved_pct", "interleaved_read_gb_s"}) {
        EXPECT_GT(number(j, key), 0) << key;
    }
    for (const char* base : {"prompt_tok_s", "gen_tok_s", "ttft_ms", "batch_tok_s"}) {
        const std::string b = base;
        EXPECT_LE(number(j, (b + "_min").c_str()), number(j, base)) << base;
        EXPECT_LE(number(j, base), number(j, (b + "_max").c_str())) << base;
    }
    ASSERT_TRUE(j.contains("token_latency_ms"));
    const auto& lat = j["token_latency_ms"];
    const double p50 = number(lat, "p50"), p95 = number(lat, "p95"), p99 = number(lat, "p99");
    EXPECT_GT(p50, 0);
    EXPECT_LE(number(lat, "min"), p50);
    EXPECT_LE(p50, p95);
    EXPECT_LE(p95, p99);
    EXPECT_LE(p99, number(lat, "max"));
    // The first token comes after the prefill, which takes at least prompt / (its rate).
    EXPECT_GE(number(j, "ttft_ms") * 1.001, 1e3 * o.prompt_tokens / number(j, "prompt_tok_s_max"));

    const ModelConfig& c = model.config();
    EXPECT_EQ(j["bytes_per_token"].get<size_t>(), weight_bytes_per_token(model));
    const double kv = static_cast<double>(c.num_layers) * 2 * c.num_kv_heads * c.head_dim * 4 *
                      (o.prompt_tokens + (o.gen_tokens + 1) / 2.0);
    EXPECT_NEAR(number(j, "kv_bytes_per_token"), kv, 1);
    EXPECT_NEAR(number(j, "achieved_gb_s"),
                (number(j, "bytes_per_token") + kv) * number(j, "gen_tok_s") / 1e9,
                number(j, "achieved_gb_s") * 0.002);
    EXPECT_NEAR(number(j, "batch_ratio"), number(j, "batch_tok_s") / number(j, "gen_tok_s"),
                number(j, "batch_ratio") * 0.002);
    EXPECT_GT(number(j, "bandwidth_end_gb_s"), 0);
    EXPECT_EQ(number(j, "interleaved_blocks"), std::max(o.repeat, 5));
    EXPECT_EQ(number(j, "bandwidth_gb_s"),
              std::max(number(j, "bandwidth_start_gb_s"), number(j, "bandwidth_end_gb_s")));
    EXPECT_GE(number(j, "peak_rss_mb"), number(j, "model_mb"));
    EXPECT_GE(number(j, "max_rss_mb"), number(j, "peak_rss_mb"));
    EXPECT_NEAR(number(j, "kv_cache_mb"),
                static_cast<double>(c.num_layers) * 2 * c.num_kv_heads * c.head_dim * 4 *
                    (o.prompt_tokens + o.gen_tokens) / 1e6,
                0.01);
    EXPECT_EQ(j["prompt_tokens"], o.prompt_tokens);
    EXPECT_EQ(j["gen_tokens"], o.gen_tokens);
    EXPECT_EQ(j["batch"], o.batch);
    EXPECT_EQ(j["repeat"], o.repeat);
    EXPECT_EQ(j["threads"], 2);
    EXPECT_EQ(j["model"], model.info().path);
}

TEST(Benchmark, SyntheticModelGivesConsistentFigures) {
    const auto model = synthetic();
    InferenceEngine engine(EngineOptions{.threads = 2});
    const BenchOptions o = tiny_options();
    const BenchResult r = run_benchmark(engine, model, o);
    EXPECT_EQ(r.bytes_per_token, held_bytes_read_once(*model)) << "tied: every weight is read once";
    EXPECT_TRUE(r.fits_in_cache || r.cache_bytes == 0);
    expect_sane(bench_json(r), *model, o);
    const std::string table = bench_table(r);
    for (const char* row : {"prompt processing, 5 tokens", "generation, 7 tokens",
                            "time to first token", "p50 / p95 / p99", "3 sequences decoding",
                            "peak RSS", "achieved read bandwidth", "same seconds", "public API"}) {
        EXPECT_NE(table.find(row), std::string::npos) << row << "\n" << table;
    }
}

TEST(Benchmark, PackedCheckpointGivesConsistentFigures) {
    InferenceEngine engine(EngineOptions{.threads = 2});
    const auto model = engine.load_model(model_dir("tiny-packed"));
    const BenchOptions o = tiny_options();
    const BenchResult r = run_benchmark(engine, model, o);
    EXPECT_EQ(r.bytes_per_token, held_bytes_read_once(*model));
    expect_sane(bench_json(r), *model, o);
}

TEST(Benchmark, AnUntiedModelReadsOneEmbeddingRow) {
    const auto model = Model::load(model_dir("tiny-master"));
    const ModelWeights& w = model->impl().weights;
    ASSERT_FALSE(w.tied);
    EXPECT_EQ(weight_bytes_per_token(*model), held_bytes_read_once(*model) - w.embedding.bytes() +
                                                  w.embedding.bytes() / w.embedding.rows);
}

TEST(Benchmark, SpeculativeDecodingGivesTheSameTokens) {
    // The trained model on a random prompt falls into repeats that prompt lookup predicts.
    InferenceEngine engine(EngineOptions{.threads = 2});
    const auto model = engine.load_model(shipped_model_dir("debdocs-41m"));
    BenchOptions o = tiny_options();
    o.prompt_tokens = 16;
    o.gen_tokens = 40;
    o.batch = 1;
    o.draft = 4;
    o.api_overhead = false;
    o.bandwidth_bytes = 0;
    const BenchResult r = run_benchmark(engine, model, o);
    EXPECT_TRUE(r.spec_identical);
    EXPECT_GT(r.spec_drafted, 0);
    EXPECT_GT(r.spec_acceptance, 0);
    EXPECT_LE(r.spec_acceptance, 1);
    EXPECT_GE(r.spec_tokens_per_step, 1);
    EXPECT_LE(r.spec_tokens_per_step, 1 + o.draft);
    const nlohmann::json j = nlohmann::json::parse(bench_json(r));
    EXPECT_EQ(j["draft"], 4);
    EXPECT_EQ(j["spec_identical"], true);
    EXPECT_NEAR(number(j, "spec_speedup"), number(j, "spec_tok_s") / number(j, "gen_tok_s"),
                number(j, "spec_speedup") * 0.002);
    EXPECT_LE(number(j, "spec_tok_s_min"), number(j, "spec_tok_s"));
    EXPECT_NE(bench_table(r).find("speculative, drafts of 4"), std::string::npos);
}

TEST(Benchmark, SkippedPartsAreLeftOut) {
    const auto model = synthetic();
    InferenceEngine engine(EngineOptions{.threads = 1});
    const BenchOptions o = single_run_options();
    const nlohmann::json j = nlohmann::json::parse(bench_json(run_benchmark(engine, model, o)));
    EXPECT_FALSE(j.contains("batch_tok_s"));
    EXPECT_FALSE(j.contains("spec_tok_s"));
    EXPECT_FALSE(j.contains("api_overhead_pct"));
    EXPECT_EQ(j["bandwidth_gb_s"], 0);
    EXPECT_FALSE(j.contains("interleaved_pct"));
    EXPECT_GT(j["gen_tok_s"].get<double>(), 0);
}

// An int8 cache reads and holds a byte a value plus a float scale a row (head_dim values).
TEST(Benchmark, Int8CacheCountsItsScales) {
    const auto model = synthetic();
    InferenceEngine engine(EngineOptions{.threads = 1, .kv_cache_type = KVCacheType::I8});
    const BenchOptions o = single_run_options();
    const nlohmann::json j = nlohmann::json::parse(bench_json(run_benchmark(engine, model, o)));
    const ModelConfig& c = model->config();
    const double row = static_cast<double>(c.num_layers) * 2 * c.num_kv_heads * (c.head_dim + 4);
    EXPECT_EQ(j["kv_cache"], "i8");
    EXPECT_NEAR(number(j, "kv_bytes_per_token"), row * (o.prompt_tokens + (o.gen_tokens + 1) / 2.0),
                1);
    EXPECT_NEAR(number(j, "kv_cache_mb"), row * (o.prompt_tokens + o.gen_tokens) / 1e6, 0.01);
    EXPECT_GT(number(j, "gen_tok_s"), 0);
}

TEST(Benchmark, BadOptionsAreClearErrors) {
    const auto model = synthetic();
    InferenceEngine engine(EngineOptions{.threads = 1, .max_batch_size = 4});
    auto fails = [&](auto change, std::initializer_list<std::string> needles) {
        BenchOptions o = tiny_options();
        change(o);
        return throws_error([&] { run_benchmark(engine, model, o); }, ErrorCode::InvalidArgument,
                            needles);
    };
    EXPECT_TRUE(fails([](BenchOptions& o) { o.prompt_tokens = 0; }, {"-p", "0"}));
    EXPECT_TRUE(fails([](BenchOptions& o) { o.gen_tokens = -3; }, {"-n", "-3"}));
    EXPECT_TRUE(fails([](BenchOptions& o) { o.batch = 0; }, {"--batch"}));
    EXPECT_TRUE(fails([](BenchOptions& o) { o.draft = -2; }, {"--draft", "-2"}));
    EXPECT_TRUE(fails([](BenchOptions& o) { o.batch = 5; }, {"--batch 5", "batch size of 4"}));
    EXPECT_TRUE(fails([](BenchOptions& o) { o.repeat = 0; }, {"--repeat"}));
    EXPECT_TRUE(fails([](BenchOptions& o) { o.warmup = -1; }, {"--warmup"}));
    EXPECT_TRUE(
        fails([](BenchOptions& o) { o.prompt_tokens = 4090; }, {"4090", "context of 4096"}));
    EXPECT_TRUE(throws_error([&] { run_benchmark(engine, nullptr, tiny_options()); },
                             ErrorCode::InvalidArgument, {"no model"}));
}

TEST(Benchmark, ReadBandwidthIsMeasured) {
    EXPECT_GT(measure_read_bandwidth(2, size_t{4} << 20, 2), 0);
    EXPECT_GT(measure_read_bandwidth(1, 1000 * 1000 + 17, 1), 0);  // odd size: whole slices only
    EXPECT_TRUE(throws_error([] { measure_read_bandwidth(0, 1 << 20, 1); },
                             ErrorCode::InvalidArgument, {"threads"}));
    EXPECT_TRUE(throws_error([] { measure_read_bandwidth(4, 100, 1); }, ErrorCode::InvalidArgument,
                             {"too small"}));
    EXPECT_GT(peak_rss_bytes(), 0u);
    EXPECT_GT(current_rss_bytes(), 0u);
}

// ---- the command line and bench/compare.sh ------------------------------------------------------

struct Outcome {
    int code = -1;
    std::string out, err;
};

std::string quote(const std::string& s) {
    std::string q = "'";
    for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    return q + "'";
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

class BenchCommand : public testing::Test {
  protected:
    void SetUp() override {
        static std::atomic<int> counter{0};
        dir_ = fs::path(testing::TempDir()) / ("bitnet_bench_test_" + std::to_string(::getpid()) +
                                               "_" + std::to_string(counter++));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    Outcome run(const std::string& program, const std::vector<std::string>& args) const {
        std::string cmd = quote(program);
        for (const std::string& a : args) cmd += " " + quote(a);
        cmd += " >" + quote((dir_ / "out").string()) + " 2>" + quote((dir_ / "err").string()) +
               " </dev/null";
        const int status = std::system(cmd.c_str());
        Outcome r;
        r.code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        r.out = slurp(dir_ / "out");
        r.err = slurp(dir_ / "err");
        return r;
    }
    Outcome bench(std::vector<std::string> args) const {
        args.insert(args.begin(), "bench");
        return run(BITNET_CLI_PATH, args);
    }
    static std::string compare_script() {
        return (fs::path(BITNET_TEST_DATA_DIR) / ".." / ".." / "bench" / "compare.sh").string();
    }
    // A stand-in for llama-bench: prints -o json output for the -p and -n it was given.
    std::string fake_peer() const {
        const fs::path p = dir_ / "llama-bench";
        std::ofstream(p) << R"(#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in -p) P=$2; shift;; -n) N=$2; shift;; esac; shift; done
echo "llama_model_loader: loading" >&2
printf '[\n  {\n    "cpu_info": "fake",\n    "n_prompt": %s,\n    "n_gen": 0,\n    "avg_ts": 80.5,\n    "samples_ts": [ 80.5 ]\n  },\n' "$P"
printf '  {\n    "n_prompt": 0,\n    "n_gen": %s,\n    "avg_ts": 20.25,\n    "samples_ts": [ 20.25 ]\n  }\n]\n' "$N"
)";
        fs::permissions(p, fs::perms::owner_all);
        std::ofstream(dir_ / "model.gguf") << "GGUF";
        return p.string();
    }
    fs::path dir_;
};

const std::vector<std::string> kQuick = {
    "-p", "4", "-n", "5", "--repeat", "2", "-t", "2", "--bandwidth-mib", "8"};

TEST_F(BenchCommand, JsonIsTheLastLine) {
    std::vector<std::string> args = {"--synthetic", "1m", "--weights",  "t5", "--head", "i8",
                                     "--batch",     "2",  "--kv-cache", "i8", "--json"};
    args.insert(args.end(), kQuick.begin(), kQuick.end());
    const Outcome r = bench(args);
    ASSERT_EQ(r.code, 0) << r.err;
    const std::string last = r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1);
    const nlohmann::json j = nlohmann::json::parse(last);
    EXPECT_EQ(j["model"], "synthetic:1m");
    EXPECT_NE(j["format"].get<std::string>().find("i8"), std::string::npos);
    EXPECT_NE(j["format"].get<std::string>().find("ternary5"), std::string::npos);
    EXPECT_EQ(j["threads"], 2);
    EXPECT_EQ(j["batch"], 2);
    EXPECT_EQ(j["kv_cache"], "i8");
    for (const char* key : {"prompt_tok_s", "gen_tok_s", "ttft_ms", "peak_rss_mb",
                            "bytes_per_token", "achieved_gb_s", "bandwidth_gb_s", "batch_tok_s"})
        EXPECT_GT(j[key].get<double>(), 0) << key;
    EXPECT_LE(j["token_latency_ms"]["p50"].get<double>(),
              j["token_latency_ms"]["p99"].get<double>());
}

TEST_F(BenchCommand, TableForPeople) {
    std::vector<std::string> args = {model_dir("tiny-packed"), "--no-api-overhead"};
    args.insert(args.end(), kQuick.begin(), kQuick.end());
    const Outcome r = bench(args);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("prompt processing, 4 tokens"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("tok/s"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("public API"), std::string::npos) << r.out;
}

TEST_F(BenchCommand, BadArgumentsAreClearErrors) {
    struct Case {
        std::vector<std::string> args;
        std::string mentioned;
    };
    const std::vector<Case> cases = {
        {{}, "--synthetic"},
        {{model_dir("tiny-packed"), "--synthetic", "1m"}, "not both"},
        {{model_dir("tiny-packed"), "--head", "i8"}, "--synthetic model"},
        {{"--synthetic", "3b"}, "unknown synthetic model '3b'"},
        {{"--synthetic", "1m", "--weights", "t9"}, "'t9'"},
        {{"--synthetic", "1m", "--head", "f8"}, "'f8'"},
        {{"--synthetic", "1m", "-p", "0"}, "-p"},
        {{"--synthetic", "1m", "-n", "0"}, "-n"},
        {{"--synthetic", "1m", "--repeat", "0"}, "--repeat"},
        {{"--synthetic", "1m", "--kernel", "avx9"}, "--kernel"},
        {{model_dir("no-such-model")}, "no-such-model"},
    };
    for (const Case& c : cases) {
        std::string joined;
        for (const std::string& a : c.args) joined += " " + a;
        SCOPED_TRACE("bitnet bench" + joined);
        const Outcome r = bench(c.args);
        EXPECT_GT(r.code, 0);
        EXPECT_LT(r.code, 128);
        EXPECT_NE(r.err.find(c.mentioned), std::string::npos) << r.err;
    }
}

TEST_F(BenchCommand, CompareWithoutPeerPrintsOurFigures) {
    const Outcome r = run(compare_script(),
                          {"--bitnet", BITNET_CLI_PATH, "--synthetic", "1m", "-t", "1", "-p", "4",
                           "-n", "6", "--repeat", "2", "--ours-args", "--bandwidth-mib 8"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("peer: none"), std::string::npos) << r.out;
    for (const char* row : {"prompt tok/s (pp4)", "generation tok/s (tg6)", "peak RSS",
                            "read bandwidth ceiling", "% of reads between blocks"}) {
        const size_t at = r.out.find(row);
        ASSERT_NE(at, std::string::npos) << row << "\n" << r.out;
        const std::string line = r.out.substr(at, r.out.find('\n', at) - at);
        EXPECT_NE(line.find(".."), std::string::npos) << line;  // median (min..max)
        EXPECT_EQ(line.substr(line.size() - 1), "-") << line;   // no ratio without a peer
    }
    EXPECT_EQ(r.err.find("peer"), std::string::npos) << "the peer never ran:\n" << r.err;
}

TEST_F(BenchCommand, CompareAlternatesWithThePeerAndPrintsRatios) {
    const std::string peer = fake_peer();
    const Outcome r =
        run(compare_script(), {"--bitnet", BITNET_CLI_PATH, "--synthetic", "1m", "-t", "1", "-p",
                               "4", "-n", "6", "--repeat", "2", "--ours-args", "--bandwidth-mib 8",
                               "--peer", peer, "--gguf", (dir_ / "model.gguf").string()});
    ASSERT_EQ(r.code, 0) << r.err;
    const std::string order = "run 1/2: ours\nrun 1/2: peer\nrun 2/2: ours\nrun 2/2: peer\n";
    EXPECT_EQ(r.err, order);
    const size_t pp = r.out.find("prompt tok/s (pp4)");
    ASSERT_NE(pp, std::string::npos) << r.out;
    const std::string line = r.out.substr(pp, r.out.find('\n', pp) - pp);
    EXPECT_NE(line.find("80.50 (80.50..80.50)"), std::string::npos) << line;
    EXPECT_EQ(line.back(), 'x') << line;
    const size_t tg = r.out.find("generation tok/s (tg6)");
    ASSERT_NE(tg, std::string::npos);
    EXPECT_NE(r.out.find("20.25 (20.25..20.25)", tg), std::string::npos) << r.out;
}

TEST_F(BenchCommand, CompareRefusesWhatItCannotRun) {
    const std::string gguf = (dir_ / "model.gguf").string();
    const std::string peer = fake_peer();
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        {{"--synthetic", "1m"}, "--bitnet"},
        {{"--bitnet", BITNET_CLI_PATH}, "--model PATH or --synthetic"},
        {{"--bitnet", BITNET_CLI_PATH, "--synthetic", "1m", "--peer", "/no/such/llama-bench",
          "--gguf", gguf},
         "not an executable"},
        {{"--bitnet", BITNET_CLI_PATH, "--synthetic", "1m", "--peer", peer}, "--gguf"},
        {{"--bitnet", BITNET_CLI_PATH, "--synthetic", "1m", "-p", "x"}, "'x'"},
        {{"--bitnet", BITNET_CLI_PATH, "--synthetic", "1m", "--frobnicate"}, "'--frobnicate'"},
    };
    for (const auto& [args, mentioned] : cases) {
        const Outcome r = run(compare_script(), args);
        EXPECT_EQ(r.code, 2) << mentioned;
        EXPECT_NE(r.err.find(mentioned), std::string::npos) << r.err;
    }
}

}  // namespace
}  // namespace bitnet::test
