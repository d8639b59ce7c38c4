// GGUF models end to end: conversion from the reference checkpoints into every type the engine
// writes (their logits against transformers'), byte-identical re-conversion, zero-copy loading
// of the engine's own layout, upstream llama.cpp's `bitnet` files, and bad model files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "bitnet/tokenizer.h"
#include "gguf_test_support.h"
#include "kernels/cpu/ternary_pack.h"
#include "model/format/ggml_ternary.h"
#include "model/format/gguf.h"
#include "model/format/gguf_writer.h"
#include "model/format/safetensors.h"
#include "model/forward.h"
#include "model/gguf_export.h"
#include "model/model_impl.h"
#include "runtime/engine_impl.h"
#include "test_support.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/gguf_vocab_file.h"

namespace bitnet::test {
namespace {

// Median relative L2 and mean top-1 agreement of the engine's logits on every prompt of a
// reference folder; every sequence must also meet the per-sequence bounds.
struct Agreement {
    double median_rel_l2 = 0;
    double worst_rel_l2 = 0;
    double mean_top1 = 0;
};

Agreement agreement(const Model& model, const std::string& reference_dir) {
    SafetensorsFile ref(reference_dir + "/reference.safetensors");
    std::vector<std::vector<int32_t>> seqs;
    std::vector<const float*> want;
    for (int j = 0; j < 64; ++j) {
        const StTensor* ids = ref.find("prompt." + std::to_string(j) + ".ids");
        if (ids == nullptr) continue;
        std::vector<int32_t> v(static_cast<size_t>(ids->numel()));
        std::memcpy(v.data(), ids->data, ids->nbytes);
        seqs.push_back(std::move(v));
        want.push_back(reinterpret_cast<const float*>(
            ref.find("prompt." + std::to_string(j) + ".logits")->data));
    }
    InferenceEngine engine(EngineOptions{.threads = 2});
    const InferResult r = engine.infer(model, seqs, {.all_logits = true});
    const int V = model.config().vocab_size;
    std::vector<double> errs;
    Agreement a;
    for (size_t i = 0; i < seqs.size(); ++i) {
        const int T = static_cast<int>(seqs[i].size());
        const float* got = r.logits[i].data_as<float>();
        errs.push_back(rel_l2(got, want[i], static_cast<size_t>(T) * V));
        a.mean_top1 += top1_agreement(got, want[i], T, V) / static_cast<double>(seqs.size());
        a.worst_rel_l2 = std::max(a.worst_rel_l2, errs.back());
    }
    a.median_rel_l2 = median(errs);
    return a;
}

void expect_reference_bounds(const Agreement& a, const std::string& what) {
    EXPECT_LT(a.worst_rel_l2, 0.3) << what;
    EXPECT_LT(a.median_rel_l2, 0.05) << what;
    EXPECT_GE(a.mean_top1, 0.95) << what;
}

std::vector<int8_t> values_of(const BitLinearWeight& w) {
    std::vector<int8_t> v(static_cast<size_t>(w.out_features()) * w.in_features());
    for (int r = 0; r < w.out_features(); ++r) {
        for (int k = 0; k < w.in_features(); ++k) {
            v[static_cast<size_t>(r) * w.in_features() + k] =
                static_cast<int8_t>(cpu::ternary_at(w.view, r, k));
        }
    }
    return v;
}

template <typename F>
void for_each_bitlinear(const Model& m, F&& f) {
    for (const LayerWeights& L : m.impl().weights.layers) {
        for (const BitLinearWeight* w : L.bitlinears()) f(*w);
    }
}

// The ternary values of two models agree exactly, and their scales within `alpha_rel`.
void expect_same_ternary(const Model& a, const Model& b, double alpha_rel) {
    std::vector<const BitLinearWeight*> wa, wb;
    for_each_bitlinear(a, [&](const BitLinearWeight& w) { wa.push_back(&w); });
    for_each_bitlinear(b, [&](const BitLinearWeight& w) { wb.push_back(&w); });
    ASSERT_EQ(wa.size(), wb.size());
    for (size_t i = 0; i < wa.size(); ++i) {
        EXPECT_EQ(values_of(*wa[i]), values_of(*wb[i])) << wa[i]->name;
        EXPECT_NEAR(wa[i]->alpha, wb[i]->alpha, alpha_rel * wa[i]->alpha) << wa[i]->name;
    }
}

std::unique_ptr<GgufVocab> vocab_of(const std::string& dir, const Model& m) {
    const auto tok = Tokenizer::load(dir);
    return std::make_unique<GgufVocab>(
        gguf_vocab_from_tokenizer(*tok, static_cast<size_t>(m.config().vocab_size)));
}

// The folder of a model named in these tests: tests/data/<name>, or the shipped models/<name>.
std::string source_dir(const std::string& name) {
    return std::filesystem::exists(model_dir(name)) ? model_dir(name) : shipped_model_dir(name);
}
std::string reference_of(const std::string& name) {
    return std::filesystem::exists(model_dir(name + "-reference")) ? model_dir(name + "-reference")
                                                                   : model_dir(name);
}

std::string write_gguf(const ScratchDir& dir, const std::string& model_name, uint32_t type,
                       std::optional<uint32_t> embedding_type = std::nullopt) {
    const auto m = Model::load(source_dir(model_name));
    const std::string embedding =
        embedding_type ? gguf::tensor_type_name(*embedding_type) : std::string("keep");
    const std::string out =
        dir.file(model_name + "." + gguf::tensor_type_name(type) + "." + embedding + ".gguf");
    export_gguf(*m, vocab_of(source_dir(model_name), *m).get(), out,
                {.ternary_type = type, .embedding_type = embedding_type});
    return out;
}

struct ConvertParam {
    std::string model;
    uint32_t type;
};

class GgufConvertTest : public testing::TestWithParam<ConvertParam> {};

TEST_P(GgufConvertTest, ConvertedModelMeetsTheReferenceBounds) {
    ScratchDir dir("gguf-convert");
    const std::string path = write_gguf(dir, GetParam().model, GetParam().type);
    const auto source = Model::load(model_dir(GetParam().model));
    const auto converted = Model::load(path);
    // Block types keep alpha as f16: exact for tiny-packed (bf16 scales), within f16 rounding
    // for tiny-master's float32 scales.
    const bool f16_scale =
        GetParam().type == gguf::GGML_TQ1_0 || GetParam().type == gguf::GGML_TQ2_0;
    expect_same_ternary(*source, *converted, f16_scale ? 4.9e-4 : 0.0);
    expect_reference_bounds(agreement(*converted, model_dir(GetParam().model)),
                            path + " against transformers");
    // The tokenizer travels in the metadata and tokenizes as the checkpoint's does.
    const auto tok_a = Tokenizer::load(model_dir(GetParam().model));
    const auto tok_b = Tokenizer::load(path);
    const std::string text = "Hello world, 12345 tokens!\n  <|eot_id|> done";
    EXPECT_EQ(tok_a->encode(text), tok_b->encode(text));
}

TEST_P(GgufConvertTest, ReconvertingToTheSameTypeGivesIdenticalBytes) {
    ScratchDir dir("gguf-reconvert");
    const std::string first = write_gguf(dir, GetParam().model, GetParam().type);
    const auto m = Model::load(first);
    const gguf::File source(first);
    const std::string second = dir.file("again.gguf");
    GgufExportOptions o{.ternary_type = GetParam().type};
    o.name = source.get_string("general.name");
    export_gguf(*m, std::make_unique<GgufVocab>(gguf_vocab_from_file(source)).get(), second, o);
    EXPECT_EQ(read_bytes(first), read_bytes(second));
}

std::vector<ConvertParam> convert_params() {
    std::vector<ConvertParam> out;
    for (const char* m : {"tiny-packed", "tiny-master"}) {
        for (uint32_t t : {gguf::BITNET_T2, gguf::BITNET_T5, gguf::GGML_TQ2_0, gguf::GGML_TQ1_0,
                           gguf::GGML_I2_S}) {
            out.push_back({m, t});
        }
    }
    return out;
}

std::string convert_name(const testing::TestParamInfo<ConvertParam>& info) {
    std::string m = info.param.model;
    for (char& c : m) c = c == '-' ? '_' : c;
    return m + "_" + gguf::tensor_type_name(info.param.type);
}

INSTANTIATE_TEST_SUITE_P(Types, GgufConvertTest, testing::ValuesIn(convert_params()), convert_name);

TEST(GgufEngineLayout, TernaryTensorsAreUsedStraightFromTheMapping) {
    ScratchDir dir("gguf-mapped");
    const std::string path = write_gguf(dir, "tiny-packed", gguf::BITNET_T2);
    const auto m = Model::load(path);
    size_t ternary_bytes = 0;
    for_each_bitlinear(*m, [&](const BitLinearWeight& w) {
        EXPECT_EQ(w.packed.size(), 0u) << w.name << " was copied";
        EXPECT_EQ(reinterpret_cast<uintptr_t>(w.view.data) % 64, 0u) << w.name;
        ternary_bytes += w.view.row_bytes() * static_cast<size_t>(w.out_features());
    });
    EXPECT_GE(m->info().mapped_bytes, ternary_bytes);
    for (const TensorInfo& t : m->info().tensors) {
        if (t.name.find("attn_q") != std::string::npos) {
            EXPECT_EQ(t.engine_format, with_row_groups("ternary2 (mapped)"));
        }
    }
}

// The logits of the head alone on the recorded final hidden states (transformers'), relative L2
// against the same head in float32: the accuracy cost of the head's storage type, without the
// amplification through the random tiny models' layers.
double head_only_error(const Model& m, const Model& f32_model, const std::string& reference_dir) {
    SafetensorsFile ref(reference_dir + "/reference.safetensors");
    const ModelConfig& c = m.config();
    InferenceEngine engine(EngineOptions{.threads = 1});
    InferenceEngine::Impl& e = engine.impl();
    std::vector<double> errs;
    for (int j = 0; j < 64; ++j) {
        const StTensor* h =
            ref.find("prompt." + std::to_string(j) + ".hidden." + std::to_string(c.num_layers));
        if (h == nullptr) continue;
        const int R = static_cast<int>(h->numel() / c.hidden_size);
        std::vector<float> got(static_cast<size_t>(R) * c.vocab_size), want(got.size());
        e.arena.reset();
        ForwardPass(m.impl(), *e.kernels, *e.pool, e.arena, false)
            .lm_head(reinterpret_cast<const float*>(h->data), R, got.data());
        ForwardPass(f32_model.impl(), *e.kernels, *e.pool, e.arena, false)
            .lm_head(reinterpret_cast<const float*>(h->data), R, want.data());
        errs.push_back(rel_l2(got.data(), want.data(), got.size()));
    }
    return median(errs);
}

TEST(GgufHeadPrecision, EachEmbeddingTypeCostsWhatTheReadmeStates) {
    // Measured figures (README "Head precision"): the head alone costs nothing for f16/bf16 of a
    // bf16 checkpoint (1e-7 relative on the AMX level's tiles, 3e-9 for f16), ~0.4% for q8_0 and
    // ~0.8% for i8 (which also quantises the head's input to int8). End to end, these random tiny
    // models amplify any change through their int8 rounding (../shared/reference/README.md), so
    // only the exact types must keep the bounds.
    ScratchDir dir("gguf-heads");
    // The trained model's six 41M-weight files take most of the time under the sanitizers,
    // where the tiny models run the same writer, loader and head kernels.
    std::vector<const char*> models = {"tiny-packed", "tiny-master"};
    if (!kUnderSanitizers) models.push_back("debdocs-41m");
    for (const char* model : models) {
        const auto f32 = Model::load(write_gguf(dir, model, gguf::BITNET_T2, gguf::GGML_F32));
        const std::pair<uint32_t, DenseFormat> types[] = {
            {gguf::GGML_F32, DenseFormat::F32},   {gguf::GGML_BF16, DenseFormat::BF16},
            {gguf::GGML_F16, DenseFormat::F16},   {gguf::GGML_Q8_0, DenseFormat::Q8_0},
            {gguf::BITNET_I8R, DenseFormat::I8R},
        };
        for (const auto& [t, format] : types) {
            const std::string path = write_gguf(dir, model, gguf::BITNET_T2, t);
            const auto m = Model::load(path);
            // The type asked for, F32 (type 0) included, not the source's bf16.
            ASSERT_EQ(m->impl().weights.lm_head().format, format) << path;
            const double head = head_only_error(*m, *f32, reference_of(model));
            const Agreement a = agreement(*m, reference_of(model));
            const bool exact = t == gguf::GGML_F32 || t == gguf::GGML_BF16 || t == gguf::GGML_F16;
            if (exact) {
                EXPECT_LT(head, 1e-6) << path;
                expect_reference_bounds(a, path);
            } else {
                EXPECT_GT(head, 1e-5) << path << ": a lossy head should change the logits";
                EXPECT_LT(head, 2e-2) << path;
            }
            const std::string key = std::string(model) + "_" + gguf::tensor_type_name(t);
            // Three significant digits: std::to_string's six decimals print the exact types'
            // errors (1e-7 and less) as zero.
            auto digits = [](double v) {
                char text[32];
                std::snprintf(text, sizeof text, "%.3g", v);
                return std::string(text);
            };
            RecordProperty(key + "_head_only", digits(head));
            RecordProperty(key + "_end_to_end_median", digits(a.median_rel_l2));
            RecordProperty(key + "_end_to_end_top1", digits(a.mean_top1));
        }
    }
}

TEST(GgufUpstreamFiles, BitnetArchitectureLoadsAsSiluWithTheSameTernaryValues) {
    const auto upstream = Model::load(model_dir("gguf/tiny-packed.bitnet.tq2_0.gguf"));
    const auto fork = Model::load(model_dir("gguf/tiny-packed.tq2_0.gguf"));
    EXPECT_EQ(upstream->config().architecture, "bitnet");
    EXPECT_EQ(upstream->config().activation, Activation::Silu);
    EXPECT_EQ(fork->config().activation, Activation::Relu2);
    expect_same_ternary(*fork, *upstream, 0.0);
    // And it runs.
    InferenceEngine engine;
    const InferResult r = engine.infer(*upstream, std::vector<std::vector<int32_t>>{{1, 2, 3}});
    ASSERT_EQ(r.logits.size(), 1u);
    EXPECT_EQ(r.logits[0].numel(), upstream->config().vocab_size);
}

// Bad model files: a valid engine file, edited with the writer.
class GgufBadModelTest : public testing::Test {
  protected:
    void SetUp() override { good_ = write_gguf(dir_, "tiny-packed", gguf::BITNET_T2); }
    std::string edited(const std::function<void(gguf::Writer&)>& edit) {
        gguf::Writer w = gguf::writer_from_file(gguf::File(good_));
        edit(w);
        const std::string path = dir_.file("bad" + std::to_string(n_++) + ".gguf");
        w.write(path);
        return path;
    }
    ScratchDir dir_{"gguf-bad-model"};
    std::string good_;
    int n_ = 0;
};

TEST_F(GgufBadModelTest, MissingTensorIsNamed) {
    const std::string p = edited([](gguf::Writer& w) { w.remove_tensor("blk.1.ffn_up.weight"); });
    EXPECT_TRUE(
        throws_error([&] { Model::load(p); }, ErrorCode::NotFound, {p, "blk.1.ffn_up.weight"}));
}

TEST_F(GgufBadModelTest, UnknownArchitectureIsNamed) {
    const std::string p =
        edited([](gguf::Writer& w) { w.set_string("general.architecture", "mamba"); });
    EXPECT_TRUE(throws_error([&] { Model::load(p); }, ErrorCode::UnsupportedFormat,
                             {p, "general.architecture", "mamba"}));
}

TEST_F(GgufBadModelTest, MissingHyperparameterIsNamed) {
    const std::string p =
        edited([](gguf::Writer& w) { w.remove("bitnet-25.attention.head_count"); });
    EXPECT_TRUE(throws_error([&] { Model::load(p); }, ErrorCode::ParseError,
                             {p, "bitnet-25.attention.head_count"}));
}

TEST_F(GgufBadModelTest, WrongShapeIsNamed) {
    const std::string p = edited([](gguf::Writer& w) {
        w.remove_tensor("blk.0.attn_norm.weight");
        std::vector<uint8_t> bytes(100 * 4);
        for (size_t i = 0; i < bytes.size(); i += 4) {
            const float one = 1.f;
            std::memcpy(&bytes[i], &one, 4);
        }
        w.add_tensor("blk.0.attn_norm.weight", {100}, gguf::GGML_F32, bytes);
    });
    EXPECT_TRUE(throws_error([&] { Model::load(p); }, ErrorCode::ShapeMismatch,
                             {p, "blk.0.attn_norm.weight", "{100}", "{256}"}));
}

TEST_F(GgufBadModelTest, HeadCountThatDoesNotDivideIsRefused) {
    const std::string p =
        edited([](gguf::Writer& w) { w.set_u32("bitnet-25.attention.head_count_kv", 3); });
    EXPECT_TRUE(throws_error([&] { Model::load(p); }, ErrorCode::InvalidConfig, {p}));
}

TEST_F(GgufBadModelTest, ProjectionInADenseFloatTypeMustBeTernary) {
    const std::string p = edited([](gguf::Writer& w) {
        w.remove_tensor("blk.2.attn_v.weight");
        // 128 x 256 floats that are not {0, +-alpha}.
        std::vector<uint8_t> bytes(128 * 256 * 4);
        for (size_t i = 0; i < bytes.size() / 4; ++i) {
            const float v = 0.01f * static_cast<float>(i % 7) - 0.02f;
            std::memcpy(&bytes[4 * i], &v, 4);
        }
        w.add_tensor("blk.2.attn_v.weight", {256, 128}, gguf::GGML_F32, bytes);
    });
    EXPECT_TRUE(throws_error([&] { Model::load(p); }, ErrorCode::ParseError,
                             {p, "blk.2.attn_v.weight", "ternary"}));
}

TEST_F(GgufBadModelTest, ProjectionInANonTernaryBlockTypeIsRefused) {
    const std::string p = edited([](gguf::Writer& w) {
        w.remove_tensor("blk.0.attn_k.weight");
        std::vector<float> x(128 * 256);
        for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i));
        std::vector<uint8_t> bytes(*gguf::tensor_bytes(gguf::GGML_Q8_0, {256, 128}));
        gguf::encode_q8_0(x.data(), static_cast<int64_t>(x.size()), bytes.data());
        w.add_tensor("blk.0.attn_k.weight", {256, 128}, gguf::GGML_Q8_0, bytes);
    });
    EXPECT_TRUE(throws_error([&] { Model::load(p); }, ErrorCode::UnsupportedFormat,
                             {p, "blk.0.attn_k.weight", "Q8_0"}));
}

TEST_F(GgufBadModelTest, EngineTensorWithAnInvalidCodeOrScaleIsRefused) {
    const gguf::File file(good_);
    const gguf::TensorEntry* t = file.find_tensor("blk.1.attn_output.weight");
    ASSERT_NE(t, nullptr);
    std::vector<uint8_t> bytes(t->data, t->data + t->bytes);
    const std::vector<int64_t> dims = t->dims;
    std::vector<uint8_t> code3 = bytes;
    code3[777] = 0xFF;  // four 2-bit codes 3
    const std::string p1 = edited([&](gguf::Writer& w) {
        w.remove_tensor("blk.1.attn_output.weight");
        w.add_tensor("blk.1.attn_output.weight", dims, gguf::BITNET_T2, code3);
    });
    EXPECT_TRUE(throws_error([&] { Model::load(p1); }, ErrorCode::ParseError,
                             {p1, "blk.1.attn_output.weight", "code 3"}));
    std::vector<uint8_t> nan_scale = bytes;
    const float nan = std::nanf("");
    std::memcpy(nan_scale.data() + nan_scale.size() - 64, &nan, 4);
    const std::string p2 = edited([&](gguf::Writer& w) {
        w.remove_tensor("blk.1.attn_output.weight");
        w.add_tensor("blk.1.attn_output.weight", dims, gguf::BITNET_T2, nan_scale);
    });
    EXPECT_TRUE(throws_error([&] { Model::load(p2); }, ErrorCode::ParseError,
                             {p2, "blk.1.attn_output.weight", "scale"}));
}

TEST_F(GgufBadModelTest, EmbeddingInAnUnsupportedTypeIsNamed) {
    const std::string p = edited([](gguf::Writer& w) {
        w.remove_tensor("token_embd.weight");
        std::vector<int8_t> v(512 * 256);
        for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int8_t>(i % 3) - 1;
        w.add_tensor("token_embd.weight", {256, 512}, gguf::GGML_TQ2_0,
                     gguf::encode_ternary(gguf::GGML_TQ2_0, v.data(), 512, 256, 0.5f));
    });
    EXPECT_TRUE(throws_error([&] { Model::load(p); }, ErrorCode::UnsupportedFormat,
                             {p, "token_embd.weight", "TQ2_0"}));
}

}  // namespace
}  // namespace bitnet::test
