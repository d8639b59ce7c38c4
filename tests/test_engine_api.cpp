// The public engine API (include/bitnet/engine.h) as a user sees it: the simple tensor API, the
// builder, typed errors for every misuse, memory accounting and KV cache precision, on the small
// reference checkpoints in tests/data.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "model/format/safetensors.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

// One reference folder: the model and reference.safetensors, loaded once per test binary.
struct RefData {
    std::shared_ptr<const Model> model;
    std::unique_ptr<SafetensorsFile> file;
    std::vector<int> prompts;  // J of every prompt.J

    std::vector<int32_t> ids(int j) const {
        const StTensor* t = file->find("prompt." + std::to_string(j) + ".ids");
        if (t == nullptr || t->dtype != StDType::I32)
            throw std::runtime_error("reference has no i32 prompt ids");
        std::vector<int32_t> out(static_cast<size_t>(t->numel()));
        std::memcpy(out.data(), t->data, t->nbytes);
        return out;
    }
    const float* logits(int j) const {
        const StTensor* t = file->find("prompt." + std::to_string(j) + ".logits");
        if (t == nullptr || t->dtype != StDType::F32)
            throw std::runtime_error("reference has no f32 prompt logits");
        return reinterpret_cast<const float*>(t->data);
    }
    int vocab() const { return model->config().vocab_size; }
};

const RefData& ref(const std::string& name) {
    static std::map<std::string, RefData> cache;
    auto it = cache.find(name);
    if (it != cache.end()) return it->second;
    RefData r;
    r.model = Model::load(model_dir(name));
    r.file = std::make_unique<SafetensorsFile>(model_dir(name) + "/reference.safetensors");
    for (int j = 0; j < 64; ++j) {
        if (r.file->find("prompt." + std::to_string(j) + ".ids")) r.prompts.push_back(j);
    }
    return cache.emplace(name, std::move(r)).first->second;
}

// Runs f, which must throw a bitnet::Error with the given code; returns its message.
template <typename F>
std::string expect_error(ErrorCode want, F&& f) {
    try {
        f();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), want) << "got " << to_string(e.code()) << " (wanted " << to_string(want)
                                  << "): " << e.what();
        return e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "threw a non-bitnet exception: " << e.what();
        return {};
    }
    ADD_FAILURE() << "did not throw (wanted " << to_string(want) << ")";
    return {};
}

Tensor ids_tensor(const std::vector<std::vector<int32_t>>& rows, bool batched) {
    const int64_t T = static_cast<int64_t>(rows.front().size());
    Tensor t = batched ? Tensor(DType::I32, {static_cast<int64_t>(rows.size()), T})
                       : Tensor(DType::I32, {T});
    for (size_t b = 0; b < rows.size(); ++b)
        std::memcpy(t.data_as<int32_t>() + b * T, rows[b].data(), sizeof(int32_t) * T);
    return t;
}

const float* last_row(const Tensor& logits, int V) {
    return logits.data_as<float>() + (logits.dim(0) - 1) * static_cast<int64_t>(V);
}

// ---------------------------------------------------------------------------------------------
// Simple API

TEST(EngineApiSimple, TensorInferMatchesLastRowOfAllLogits) {
    const RefData& r = ref("tiny-packed");
    const int V = r.vocab();
    InferenceEngine engine;
    const auto model = engine.load_model(model_dir("tiny-packed"));
    const std::vector<int32_t> ids = r.ids(r.prompts.front());
    const Tensor out = engine.infer(*model, ids_tensor({ids}, false));
    ASSERT_EQ(out.dtype(), DType::F32);
    ASSERT_EQ(out.shape(), (std::vector<int64_t>{V}));
    const InferResult all = engine.infer(*model, {ids}, {.all_logits = true});
    ASSERT_EQ(all.logits.size(), 1u);
    ASSERT_EQ(all.logits[0].shape(), (std::vector<int64_t>{static_cast<int64_t>(ids.size()), V}));
    EXPECT_LT(rel_l2(out.data_as<float>(), last_row(all.logits[0], V), V), 1e-6);
    // Not trivially zero, and plausibly the model: close to the reference's last row.
    EXPECT_LT(rel_l2(out.data_as<float>(), r.logits(r.prompts.front()) + (ids.size() - 1) * V, V),
              0.3);
}

TEST(EngineApiSimple, BatchedTensorGivesOneRowPerSequence) {
    const RefData& r = ref("tiny-packed");
    const int V = r.vocab();
    InferenceEngine engine;
    const auto model = engine.load_model(model_dir("tiny-packed"));
    std::vector<std::vector<int32_t>> rows;
    for (size_t i = 0; i < 3; ++i) {
        std::vector<int32_t> ids = r.ids(r.prompts[i]);
        ids.resize(std::min<size_t>(ids.size(), 20));
        ASSERT_EQ(ids.size(), 20u);
        rows.push_back(ids);
    }
    const Tensor out = engine.infer(*model, ids_tensor(rows, true));
    ASSERT_EQ(out.shape(), (std::vector<int64_t>{3, V}));
    for (size_t b = 0; b < rows.size(); ++b) {
        const Tensor single = engine.infer(*model, ids_tensor({rows[b]}, false));
        EXPECT_LT(rel_l2(out.data_as<float>() + b * V, single.data_as<float>(), V), 1e-6)
            << "row " << b;
    }
    // The rows differ from each other: the batch really holds three sequences.
    EXPECT_GT(rel_l2(out.data_as<float>(), out.data_as<float>() + V, V), 1e-3);
}

// ---------------------------------------------------------------------------------------------
// Builder

TEST(EngineApiBuilder, ThreadCountDoesNotChangeLogits) {
    const RefData& r = ref("tiny-master");
    const int V = r.vocab();
    auto one = InferenceEngine::builder().threads(1).build();
    auto two = InferenceEngine::builder().threads(2).build();
    EXPECT_EQ(one->threads(), 1);
    EXPECT_EQ(two->threads(), 2);
    std::vector<std::vector<int32_t>> seqs;
    for (int j : r.prompts) seqs.push_back(r.ids(j));
    const InferResult a = one->infer(*r.model, seqs, {.all_logits = true});
    const InferResult b = two->infer(*r.model, seqs, {.all_logits = true});
    for (size_t i = 0; i < seqs.size(); ++i) {
        const size_t n = seqs[i].size() * V;
        EXPECT_EQ(std::memcmp(a.logits[i].data(), b.logits[i].data(), n * sizeof(float)), 0)
            << "sequence " << i << " rel l2 "
            << rel_l2(a.logits[i].data_as<float>(), b.logits[i].data_as<float>(), n);
    }
}

TEST(EngineApiBuilder, ReportsKernelLevelAndDevice) {
    auto engine = InferenceEngine::builder().threads(1).build();
    const std::string level = engine->kernel_level();
    EXPECT_FALSE(level.empty());
    bool known = false;
    for (cpu::Isa isa : cpu::supported_isas()) known = known || level == cpu::isa_name(isa);
    EXPECT_TRUE(known) << level;
    // Auto falls back to the CPU in a build without a GPU backend.
    EXPECT_EQ(engine->device(), Device::CPU);
    EXPECT_EQ(InferenceEngine::builder().use_gpu(true).threads(1).build()->device(), Device::CPU);
    EXPECT_EQ(InferenceEngine::builder().device(Device::CPU).threads(1).build()->device(),
              Device::CPU);
    auto scalar =
        InferenceEngine::builder().kernel_level(CpuKernelLevel::Scalar).threads(1).build();
    EXPECT_EQ(scalar->kernel_level(), cpu::isa_name(cpu::Isa::Scalar));
}

// Each kernel table has one public level, and each supported level runs the table it names.
TEST(EngineApiBuilder, EveryKernelLevelNamesItsOwnTable) {
    EXPECT_EQ(isa_for(CpuKernelLevel::Auto), cpu::select_isa());
    for (int i = 0; i <= static_cast<int>(cpu::Isa::AMX); ++i) {
        const auto isa = static_cast<cpu::Isa>(i);
        const CpuKernelLevel level = level_for(isa);
        EXPECT_NE(level, CpuKernelLevel::Auto) << cpu::isa_name(isa);
        EXPECT_EQ(isa_for(level), isa) << cpu::isa_name(isa);
    }
    for (cpu::Isa isa : cpu::supported_isas()) {
        auto engine = InferenceEngine::builder().kernel_level(level_for(isa)).threads(1).build();
        EXPECT_EQ(engine->kernel_level(), cpu::isa_name(isa));
    }
}

TEST(EngineApiBuilder, CudaThrowsInCpuOnlyBuild) {
    const std::string msg = expect_error(ErrorCode::UnsupportedFormat, [] {
        (void)InferenceEngine::builder().device(Device::CUDA).build();
    });
    EXPECT_NE(msg.find("CUDA"), std::string::npos) << msg;
}

TEST(EngineApiBuilder, BatchSizeLimitsForwardButInferChunks) {
    const RefData& r = ref("tiny-packed");
    const int V = r.vocab();
    auto engine = InferenceEngine::builder().batch_size(2).threads(2).build();
    std::vector<std::unique_ptr<Session>> sessions;
    std::vector<std::vector<int32_t>> seqs;
    std::vector<SequenceStep> steps;
    for (size_t i = 0; i < 3; ++i) seqs.push_back(r.ids(r.prompts[i]));
    for (size_t i = 0; i < 3; ++i) {
        sessions.push_back(engine->create_session(r.model, 128));
        steps.push_back({sessions.back().get(), seqs[i], false});
    }
    const std::string msg =
        expect_error(ErrorCode::InvalidArgument, [&] { (void)engine->forward(steps); });
    EXPECT_NE(msg.find('2'), std::string::npos) << msg;
    for (const auto& s : sessions) EXPECT_EQ(s->position(), 0);

    // infer() runs five sequences on a batch size of two in chunks.
    std::vector<std::vector<int32_t>> five;
    for (size_t i = 0; i < 5; ++i) five.push_back(r.ids(r.prompts[i]));
    const InferResult all = engine->infer(*r.model, five, {.all_logits = true});
    ASSERT_EQ(all.logits.size(), 5u);
    for (size_t i = 0; i < five.size(); ++i) {
        const InferResult single = engine->infer(*r.model, {five[i]}, {.all_logits = true});
        ASSERT_EQ(all.logits[i].shape(), single.logits[0].shape());
        EXPECT_LT(rel_l2(all.logits[i].data_as<float>(), single.logits[0].data_as<float>(),
                         five[i].size() * V),
                  1e-6)
            << "sequence " << i;
        EXPECT_LT(
            rel_l2(all.logits[i].data_as<float>(), r.logits(r.prompts[i]), five[i].size() * V), 0.3)
            << "sequence " << i;
    }
}

// ---------------------------------------------------------------------------------------------
// Typed errors

class EngineApiErrors : public testing::Test {
  protected:
    void SetUp() override {
        r_ = &ref("tiny-packed");
        engine_ = InferenceEngine::builder().threads(2).build();
    }
    const RefData* r_ = nullptr;
    std::unique_ptr<InferenceEngine> engine_;
};

TEST_F(EngineApiErrors, OutOfVocabularyTokenNamesTheId) {
    const int V = r_->vocab();
    for (int32_t bad : {V, V + 17, -1, -3}) {
        SCOPED_TRACE("token " + std::to_string(bad));
        std::vector<int32_t> ids = {1, 2, bad, 4};
        const std::string id = std::to_string(bad);
        std::string msg = expect_error(ErrorCode::InvalidArgument,
                                       [&] { (void)engine_->infer(*r_->model, {ids}); });
        EXPECT_NE(msg.find(id), std::string::npos) << msg;
        msg = expect_error(ErrorCode::InvalidArgument,
                           [&] { (void)engine_->infer(*r_->model, ids_tensor({ids}, false)); });
        EXPECT_NE(msg.find(id), std::string::npos) << msg;
        auto session = engine_->create_session(r_->model, 16);
        msg = expect_error(ErrorCode::InvalidArgument,
                           [&] { (void)engine_->forward(*session, ids); });
        EXPECT_NE(msg.find(id), std::string::npos) << msg;
        EXPECT_EQ(session->position(), 0);
    }
}

TEST_F(EngineApiErrors, EmptySequence) {
    expect_error(ErrorCode::InvalidArgument,
                 [&] { (void)engine_->infer(*r_->model, std::vector<std::vector<int32_t>>{{}}); });
    expect_error(ErrorCode::InvalidArgument, [&] {
        (void)engine_->infer(*r_->model, std::vector<std::vector<int32_t>>{{1, 2, 3}, {}});
    });
    expect_error(ErrorCode::InvalidArgument,
                 [&] { (void)engine_->infer(*r_->model, std::vector<std::vector<int32_t>>{}); });
    expect_error(ErrorCode::InvalidArgument,
                 [&] { (void)engine_->infer(*r_->model, Tensor(DType::I32, {0})); });
    expect_error(ErrorCode::InvalidArgument, [&] {
        (void)engine_->infer(*r_->model, Tensor(DType::I32, {2, 0}));
    });
    auto session = engine_->create_session(r_->model, 16);
    expect_error(ErrorCode::InvalidArgument,
                 [&] { (void)engine_->forward(*session, std::span<const int32_t>()); });
    expect_error(ErrorCode::InvalidArgument,
                 [&] { (void)engine_->forward(std::span<const SequenceStep>()); });
    EXPECT_EQ(session->position(), 0);
}

TEST_F(EngineApiErrors, WrongDtypeAndRank) {
    Tensor f32(DType::F32, {4});
    for (int i = 0; i < 4; ++i) f32.data_as<float>()[i] = static_cast<float>(i + 1);
    std::string msg =
        expect_error(ErrorCode::InvalidArgument, [&] { (void)engine_->infer(*r_->model, f32); });
    EXPECT_NE(msg.find("i32"), std::string::npos) << msg;
    Tensor rank3(DType::I32, {1, 2, 3});
    for (int i = 0; i < 6; ++i) rank3.data_as<int32_t>()[i] = i + 1;
    msg =
        expect_error(ErrorCode::InvalidArgument, [&] { (void)engine_->infer(*r_->model, rank3); });
    EXPECT_NE(msg.find("[1, 2, 3]"), std::string::npos) << msg;
    expect_error(ErrorCode::InvalidArgument, [&] { (void)engine_->infer(*r_->model, Tensor()); });
}

TEST_F(EngineApiErrors, SessionOfAnotherEngine) {
    auto other = InferenceEngine::builder().threads(1).build();
    auto session = other->create_session(r_->model, 16);
    const std::vector<int32_t> ids = {1, 2, 3};
    expect_error(ErrorCode::InvalidArgument, [&] { (void)engine_->forward(*session, ids); });
    EXPECT_EQ(session->position(), 0);
    // It still works with its own engine.
    EXPECT_NO_THROW((void)other->forward(*session, ids));
    EXPECT_EQ(session->position(), 3);
}

TEST_F(EngineApiErrors, SameSessionTwiceInOnePass) {
    auto session = engine_->create_session(r_->model, 16);
    const std::vector<int32_t> a = {1, 2, 3}, b = {4, 5};
    const std::vector<SequenceStep> steps = {{session.get(), a, false}, {session.get(), b, false}};
    expect_error(ErrorCode::InvalidArgument, [&] { (void)engine_->forward(steps); });
    EXPECT_EQ(session->position(), 0);
}

TEST_F(EngineApiErrors, NullSession) {
    const std::vector<int32_t> a = {1, 2, 3};
    const std::vector<SequenceStep> steps = {{nullptr, a, false}};
    expect_error(ErrorCode::InvalidArgument, [&] { (void)engine_->forward(steps); });
    auto session = engine_->create_session(r_->model, 16);
    const std::vector<SequenceStep> mixed = {{session.get(), a, false}, {nullptr, a, false}};
    expect_error(ErrorCode::InvalidArgument, [&] { (void)engine_->forward(mixed); });
    EXPECT_EQ(session->position(), 0);
    expect_error(ErrorCode::InvalidArgument, [&] { (void)engine_->create_session(nullptr, 16); });
    expect_error(ErrorCode::InvalidArgument, [&] { (void)engine_->create_session(r_->model, -1); });
}

TEST_F(EngineApiErrors, CapacityExceededLeavesSessionUsable) {
    const int V = r_->vocab();
    const std::vector<int32_t> seq = r_->ids(r_->prompts.front());
    ASSERT_GE(seq.size(), 8u);
    auto session = engine_->create_session(r_->model, 8);
    EXPECT_EQ(session->capacity(), 8);
    (void)engine_->forward(*session, std::span<const int32_t>(seq.data(), 5));
    ASSERT_EQ(session->position(), 5);
    const std::string msg = expect_error(ErrorCode::CapacityExceeded, [&] {
        (void)engine_->forward(*session, std::span<const int32_t>(seq.data() + 5, 4));
    });
    EXPECT_NE(msg.find('8'), std::string::npos) << msg;
    EXPECT_EQ(session->position(), 5);
    // Within capacity it goes on where it was, and computes what one pass over 8 tokens computes.
    const Tensor last = engine_->forward(*session, std::span<const int32_t>(seq.data() + 5, 3));
    EXPECT_EQ(session->position(), 8);
    const InferResult full =
        engine_->infer(*r_->model, {std::vector<int32_t>(seq.begin(), seq.begin() + 8)});
    EXPECT_LT(rel_l2(last.data_as<float>(), full.logits[0].data_as<float>(), V), 1e-5);
    // Full: even one more token is too many.
    const int32_t one = seq[8 % seq.size()];
    expect_error(ErrorCode::CapacityExceeded,
                 [&] { (void)engine_->forward(*session, std::span<const int32_t>(&one, 1)); });
    EXPECT_EQ(session->position(), 8);
}

// ---------------------------------------------------------------------------------------------
// Memory

TEST(EngineApiMemory, DecodeStepsReuseThePool) {
    const RefData& r = ref("tiny-packed");
    const int V = r.vocab();
    auto engine = InferenceEngine::builder().threads(2).build();
    const std::vector<int32_t> prompt = r.ids(r.prompts.front());
    auto session = engine->create_session(r.model, static_cast<int>(prompt.size()) + 64);
    Tensor logits = engine->forward(*session, prompt);
    int32_t next = argmax(logits.data_as<float>(), V);
    logits = engine->forward(*session, std::span<const int32_t>(&next, 1));  // warm-up decode step
    const MemoryStats before = engine->memory_stats();
    EXPECT_GT(before.pool_capacity_bytes, 0u);
    EXPECT_GT(before.pool_block_allocations, 0u);
    for (int step = 0; step < 50; ++step) {
        next = argmax(logits.data_as<float>(), V);
        logits = engine->forward(*session, std::span<const int32_t>(&next, 1));
    }
    const MemoryStats after = engine->memory_stats();
    EXPECT_EQ(after.pool_block_allocations, before.pool_block_allocations);
    EXPECT_EQ(after.pool_capacity_bytes, before.pool_capacity_bytes);
    EXPECT_EQ(session->position(), static_cast<int>(prompt.size()) + 51);
}

TEST(EngineApiMemory, SessionsAreCounted) {
    const RefData& r = ref("tiny-packed");
    const ModelConfig& c = r.model->config();
    auto engine = InferenceEngine::builder().threads(1).build();
    const MemoryStats s0 = engine->memory_stats();
    EXPECT_EQ(s0.live_sessions, 0);
    EXPECT_EQ(s0.kv_cache_bytes, 0u);
    auto a = engine->create_session(r.model, 32);
    const MemoryStats s1 = engine->memory_stats();
    EXPECT_EQ(s1.live_sessions, 1);
    // At least keys and values of every layer for 32 positions in f32.
    const size_t minimum =
        size_t{2} * c.num_layers * 32 * c.num_kv_heads * c.head_dim * sizeof(float);
    EXPECT_GE(s1.kv_cache_bytes, minimum);
    {
        auto b = engine->create_session(r.model, 64);
        const MemoryStats s2 = engine->memory_stats();
        EXPECT_EQ(s2.live_sessions, 2);
        EXPECT_GT(s2.kv_cache_bytes, s1.kv_cache_bytes);
    }
    const MemoryStats s3 = engine->memory_stats();
    EXPECT_EQ(s3.live_sessions, 1);
    EXPECT_EQ(s3.kv_cache_bytes, s1.kv_cache_bytes);
    a.reset();
    const MemoryStats s4 = engine->memory_stats();
    EXPECT_EQ(s4.live_sessions, 0);
    EXPECT_EQ(s4.kv_cache_bytes, 0u);
    // Sessions of another engine are not counted here; infer()'s temporary ones are gone after it.
    auto other = InferenceEngine::builder().threads(1).build();
    auto foreign = other->create_session(r.model, 32);
    EXPECT_EQ(engine->memory_stats().live_sessions, 0);
    (void)engine->infer(*r.model, {r.ids(r.prompts.front())});
    EXPECT_EQ(engine->memory_stats().live_sessions, 0);
    EXPECT_EQ(engine->memory_stats().kv_cache_bytes, 0u);
}

TEST(EngineApiMemory, SmallPoolLimitThrowsOutOfMemory) {
    const RefData& r = ref("tiny-packed");
    auto engine = InferenceEngine::builder().memory_pool_size(4096).threads(1).build();
    const std::vector<int32_t> prompt = r.ids(r.prompts.front());
    auto session = engine->create_session(r.model, 64);
    std::string msg =
        expect_error(ErrorCode::OutOfMemory, [&] { (void)engine->forward(*session, prompt); });
    EXPECT_NE(msg.find("4096"), std::string::npos) << msg;
    EXPECT_NE(msg.find("limit"), std::string::npos) << msg;
    EXPECT_EQ(session->position(), 0);  // the failed pass appended nothing
    msg = expect_error(ErrorCode::OutOfMemory, [&] { (void)engine->infer(*r.model, {prompt}); });
    EXPECT_NE(msg.find("4096"), std::string::npos) << msg;
    EXPECT_LE(engine->memory_stats().pool_capacity_bytes, 4096u);
}

// ---------------------------------------------------------------------------------------------
// KV cache precision against the reference logits, through incremental decoding.

TEST(EngineApiKvCache, PrecisionAgainstReference) {
    for (const std::string& m : std::vector<std::string>{"tiny-packed", "tiny-master"}) {
        const RefData& r = ref(m);
        const int V = r.vocab();
        for (KVCacheType type :
             {KVCacheType::F32, KVCacheType::F16, KVCacheType::BF16, KVCacheType::I8}) {
            const std::string kv = kv_cache_type_name(type);
            SCOPED_TRACE("model " + m + " kv " + kv);
            auto engine = InferenceEngine::builder().kv_cache_type(type).threads(2).build();
            std::vector<double> errs, tops;
            for (int j : r.prompts) {
                const std::vector<int32_t> ids = r.ids(j);
                const int T = static_cast<int>(ids.size());
                auto session = engine->create_session(r.model, T);
                std::vector<float> got(static_cast<size_t>(T) * V);
                // Prefill the first half (all logits), then decode the rest one token at a time.
                const int prefill = std::max(1, T / 2);
                const Tensor first =
                    engine->forward(*session, std::span<const int32_t>(ids.data(), prefill), true);
                std::memcpy(got.data(), first.data(), sizeof(float) * prefill * V);
                for (int t = prefill; t < T; ++t) {
                    const Tensor step =
                        engine->forward(*session, std::span<const int32_t>(ids.data() + t, 1));
                    std::memcpy(got.data() + static_cast<size_t>(t) * V, step.data(),
                                sizeof(float) * V);
                }
                EXPECT_EQ(session->position(), T);
                const double err = rel_l2(got.data(), r.logits(j), got.size());
                const double top = top1_agreement(got.data(), r.logits(j), T, V);
                if (type == KVCacheType::F32) {
                    EXPECT_LT(err, 0.3) << "prompt." << j;
                    EXPECT_GE(top, 0.85) << "prompt." << j;
                }
                errs.push_back(err);
                tops.push_back(top);
            }
            double mean_top = 0;
            for (double t : tops) mean_top += t / static_cast<double>(tops.size());
            const double med = median(errs);
            if (type == KVCacheType::F32) {
                EXPECT_LT(med, 0.05);
                EXPECT_GE(mean_top, 0.95);
            } else {
                // The tiny models' random weights make their logits far more sensitive to the
                // cache than a trained model's (docs/NUMERICS.md: perplexity); a broken cache
                // gives errors near 1.
                EXPECT_LT(med, type == KVCacheType::I8 ? 0.3 : 0.2);
                EXPECT_GE(mean_top, 0.8);
            }
            std::printf("kv=%s model=%s median_rel_l2=%.6g mean_top1=%.4f\n", kv.c_str(), m.c_str(),
                        med, mean_top);
            RecordProperty("median_rel_l2_" + kv + "_" + m, std::to_string(med));
            RecordProperty("mean_top1_" + kv + "_" + m, std::to_string(mean_top));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions

TEST(EngineApiSession, ResetThenRerunMatchesFreshSession) {
    const RefData& r = ref("tiny-master");
    const int V = r.vocab();
    auto engine = InferenceEngine::builder().threads(2).build();
    const std::vector<int32_t> a = r.ids(r.prompts[0]);
    const std::vector<int32_t> b = r.ids(r.prompts[1]);
    const int cap = static_cast<int>(std::max(a.size(), b.size()));
    auto used = engine->create_session(r.model, cap);
    (void)engine->forward(*used, a, true);
    EXPECT_EQ(used->position(), static_cast<int>(a.size()));
    used->reset();
    EXPECT_EQ(used->position(), 0);
    EXPECT_EQ(used->capacity(), cap);
    const Tensor again = engine->forward(*used, b, true);
    auto fresh = engine->create_session(r.model, cap);
    const Tensor want = engine->forward(*fresh, b, true);
    ASSERT_EQ(again.shape(), want.shape());
    EXPECT_LT(rel_l2(again.data_as<float>(), want.data_as<float>(), b.size() * V), 1e-6);
    // And the same prompt after a reset, decoded token by token, matches too.
    used->reset();
    Tensor step;
    for (int32_t id : b) step = engine->forward(*used, std::span<const int32_t>(&id, 1));
    EXPECT_LT(rel_l2(step.data_as<float>(), last_row(want, V), V), 1e-5);
    EXPECT_EQ(&used->model(), r.model.get());
}

}  // namespace
}  // namespace bitnet::test
