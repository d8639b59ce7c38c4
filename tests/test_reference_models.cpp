// The engine against what Hugging Face transformers computed on the reference checkpoints
// (tests/data, copied from ../shared/reference; bounds from its README), at every kernel level
// this CPU supports.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "model/checkpoint.h"
#include "model/format/safetensors.h"
#include "model/forward.h"
#include "model/model_impl.h"
#include "runtime/engine_impl.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

struct Reference {
    std::shared_ptr<const Model> model;
    std::unique_ptr<SafetensorsFile> file;
    std::vector<int> prompts;      // J of every prompt.J
    std::vector<int> generations;  // J of every generate.J

    std::vector<int32_t> ids(const std::string& name) const {
        const StTensor* t = file->find(name);
        if (t == nullptr) throw std::runtime_error("reference has no " + name);
        std::vector<int32_t> out(static_cast<size_t>(t->numel()));
        std::memcpy(out.data(), t->data, t->nbytes);
        return out;
    }
    const float* floats(const std::string& name) const {
        const StTensor* t = file->find(name);
        if (t == nullptr || t->dtype != StDType::F32)
            throw std::runtime_error("reference has no f32 " + name);
        return reinterpret_cast<const float*>(t->data);
    }
};

bool is_gguf(const std::string& name) {
    return name.size() > 5 && name.compare(name.size() - 5, 5, ".gguf") == 0;
}

// A model folder holds its own reference; a GGUF file "<model>.<type>.gguf" is checked against
// the reference of the checkpoint it was made from, tests/data/<model>.
std::string reference_dir(const std::string& name) {
    if (is_gguf(name)) {
        const std::string file = name.substr(name.find_last_of('/') + 1);
        const std::string base = file.substr(0, file.find('.'));
        const std::string shipped = model_dir(base + "-reference");
        return std::filesystem::exists(shipped) ? shipped : model_dir(base);
    }
    if (name.find('/') != std::string::npos) return name;
    const std::string shipped = model_dir(name + "-reference");
    return std::filesystem::exists(shipped) ? shipped : model_dir(name);
}

// Where the weights of a reference model are: tests/data/<name>, the shipped models/<name>, a
// GGUF file or an explicit folder.
std::string model_path(const std::string& name) {
    if (is_gguf(name) || name.find('/') != std::string::npos) return name;
    return std::filesystem::exists(model_dir(name + "-reference")) ? shipped_model_dir(name)
                                                                   : model_dir(name);
}

const Reference& reference(const std::string& name) {
    static std::map<std::string, Reference> cache;
    auto it = cache.find(name);
    if (it != cache.end()) return it->second;
    Reference r;
    const std::string dir = reference_dir(name);
    r.model = Model::load(model_path(name));
    r.file = std::make_unique<SafetensorsFile>(dir + "/reference.safetensors");
    for (int j = 0; j < 64; ++j) {
        if (r.file->find("prompt." + std::to_string(j) + ".ids")) r.prompts.push_back(j);
        if (r.file->find("generate." + std::to_string(j) + ".ids")) r.generations.push_back(j);
    }
    return cache.emplace(name, std::move(r)).first->second;
}

struct Param {
    std::string model;
    cpu::Isa isa;
    bool reference_numerics;  // BitLinear accumulated like PyTorch instead of exact int32
};

// The reference checkpoints in tests/data, plus any directories listed (colon-separated) in
// BITNET_REFERENCE_MODELS: folders made by ../shared/reference/make_reference.py, for shapes too
// large to ship, such as a layer of the real 2B-4T shape.
std::vector<std::string> reference_models() {
    std::vector<std::string> out = {"tiny-packed", "tiny-master"};
    if (const char* extra = std::getenv("BITNET_REFERENCE_MODELS")) {
        std::string list = extra;
        for (size_t i = 0; i < list.size();) {
            size_t end = list.find(':', i);
            if (end == std::string::npos) end = list.size();
            if (end > i) out.push_back(list.substr(i, end - i));
            i = end + 1;
        }
    }
    return out;
}

// GGUF files of the reference models written by bitnet.cpp's tools (arch bitnet-25, the 2B-4T
// design): a few ship in tests/data/gguf, the rest are read from ../shared when it is present.
std::vector<std::string> gguf_reference_files() {
    namespace fs = std::filesystem;
    std::vector<std::string> out;
    std::vector<std::string> names;
    for (const std::string& dir : {model_dir("gguf"), shared_dir() + "/reference/gguf"}) {
        if (!fs::is_directory(dir)) continue;
        for (const auto& e : fs::directory_iterator(dir)) {
            const std::string file = e.path().filename().string();
            // The `.bitnet.` files use upstream's SiLU architecture: a different model.
            if (!is_gguf(file) || file.find(".bitnet.") != std::string::npos) continue;
            if (std::find(names.begin(), names.end(), file) != names.end()) continue;
            names.push_back(file);
            out.push_back(e.path().string());
        }
    }
    std::sort(out.begin(), out.end());
    // The default model as it ships in the engine's own GGUF layout.
    const std::string shipped = shipped_model_dir("debdocs-41m.gguf");
    if (fs::exists(shipped)) out.push_back(shipped);
    return out;
}

std::vector<Param> all_params() {
    std::vector<Param> out;
    for (const std::string& m : reference_models()) {
        for (cpu::Isa isa : cpu::supported_isas()) out.push_back({m, isa, false});
        // Reference numerics has a BitLinear kernel of its own, the same at every level (4-5
        // minutes a model under the sanitizers), so it runs at the scalar level and at the one
        // users get; the levels between differ only in kernels the exact mode covers above.
        out.push_back({m, cpu::Isa::Scalar, true});
        if (cpu::select_isa() != cpu::Isa::Scalar) out.push_back({m, cpu::select_isa(), true});
    }
    // The trained default model is 40x larger: the kernel levels are covered above, so it runs
    // at the best level only, in the exact mode.
    out.push_back({"debdocs-41m", cpu::select_isa(), false});
    // Every kernel level already runs on the checkpoints; a GGUF file only changes how the
    // weights arrive, so one level suffices for each.
    for (const std::string& f : gguf_reference_files())
        out.push_back({f, cpu::select_isa(), false});
    return out;
}

void PrintTo(const Param& p, std::ostream* os) {
    *os << p.model << " at " << cpu::isa_name(p.isa)
        << (p.reference_numerics ? ", reference numerics" : "");
}

std::string param_name(const testing::TestParamInfo<Param>& info) {
    std::string m = info.param.model.substr(info.param.model.find_last_of('/') + 1);
    if (is_gguf(m)) m = "gguf_" + m.substr(0, m.size() - 5);
    for (char& ch : m) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    }
    return m + "_" + cpu::isa_name(info.param.isa) +
           (info.param.reference_numerics ? "_reference_numerics" : "");
}

class ReferenceModelTest : public testing::TestWithParam<Param> {
  protected:
    void SetUp() override {
        ref_ = &reference(GetParam().model);
        engine_ = InferenceEngine::builder()
                      .kernel_level(level_for(GetParam().isa))
                      .reference_numerics(GetParam().reference_numerics)
                      .threads(2)
                      .build();
    }
    const ModelConfig& config() const { return ref_->model->config(); }
    // GGUF block types and F16 store each BitLinear scale as f16: for tiny-master (online
    // ternarisation, alpha = mean|W|) that moves alpha by up to 4.2e-4, so the file is a slightly
    // different model and the int8 rounding of the next layer amplifies the difference. The
    // end-to-end bounds still hold; the teacher-forced median is held to 1e-2 for such files.
    bool scales_rounded() const {
        if (!is_gguf(GetParam().model)) return false;
        const std::string& name = GetParam().model;
        const std::string file = name.substr(name.find_last_of('/') + 1);
        const auto source = Model::load(model_path(file.substr(0, file.find('.'))));
        const auto& a = source->impl().weights.layers;
        const auto& b = ref_->model->impl().weights.layers;
        for (size_t i = 0; i < a.size(); ++i) {
            for (auto m : {&LayerWeights::q, &LayerWeights::k, &LayerWeights::v, &LayerWeights::o,
                           &LayerWeights::gate, &LayerWeights::up, &LayerWeights::down}) {
                if ((a[i].*m).alpha != (b[i].*m).alpha) return true;
            }
        }
        return false;
    }
    // The scalar level's BitLinear runs about ten times slower under the sanitizers than the
    // SIMD levels'. There it keeps the teacher-forced tests (logits, each layer); its decoding and
    // batching go through the same runtime as every other level, and the Release run covers them.
    bool scalar_under_sanitizers() const {
        return kUnderSanitizers && GetParam().isa == cpu::Isa::Scalar &&
               !GetParam().reference_numerics && cpu::select_isa() != cpu::Isa::Scalar;
    }
    static constexpr const char* kScalarUnderSanitizers =
        "the scalar level runs the teacher-forced tests only under the sanitizers";
    const Reference* ref_ = nullptr;
    std::unique_ptr<InferenceEngine> engine_;
};

TEST_P(ReferenceModelTest, EndToEndLogitsMeetTheBounds) {
    std::vector<std::string> names;
    for (int j : ref_->prompts) names.push_back("prompt." + std::to_string(j));
    for (int j : ref_->generations) names.push_back("generate." + std::to_string(j));
    std::vector<std::vector<int32_t>> seqs;
    for (const std::string& n : names) seqs.push_back(ref_->ids(n + ".ids"));
    const InferResult r = engine_->infer(*ref_->model, seqs, {.all_logits = true});
    const int V = config().vocab_size;
    std::vector<double> errs, tops;
    for (size_t i = 0; i < names.size(); ++i) {
        const int T = static_cast<int>(seqs[i].size());
        const float* want = ref_->floats(names[i] + ".logits");
        const float* got = r.logits[i].data_as<float>();
        const double err = rel_l2(got, want, static_cast<size_t>(T) * V);
        const double top = top1_agreement(got, want, T, V);
        EXPECT_LT(err, 0.3) << names[i];
        EXPECT_GE(top, 0.85) << names[i];
        errs.push_back(err);
        tops.push_back(top);
    }
    double mean_top = 0;
    for (double t : tops) mean_top += t / static_cast<double>(tops.size());
    EXPECT_LT(median(errs), 0.05);
    EXPECT_GE(mean_top, 0.95);
    RecordProperty("median_rel_l2", std::to_string(median(errs)));
}

// Teacher forcing: the recorded hidden.I through layer I must give hidden.I+1 (the last layer's
// output is compared after the final norm, as recorded).
TEST_P(ReferenceModelTest, EachLayerReproducesTheRecordedHiddenState) {
    const ModelConfig& c = config();
    const int H = c.hidden_size, L = c.num_layers;
    InferenceEngine::Impl& e = engine_->impl();
    std::vector<double> errs;
    for (int j : ref_->prompts) {
        const std::string p = "prompt." + std::to_string(j);
        const std::vector<int32_t> ids = ref_->ids(p + ".ids");
        const int T = static_cast<int>(ids.size());
        for (int layer = 0; layer < L; ++layer) {
            KVCache cache(c, T, cpu::KvType::F32);
            ForwardItem item{&cache, ids.data(), T, true, nullptr, nullptr};
            std::vector<float> h(
                ref_->floats(p + ".hidden." + std::to_string(layer)),
                ref_->floats(p + ".hidden." + std::to_string(layer)) + static_cast<size_t>(T) * H);
            e.arena.reset();
            ForwardPass pass(ref_->model->impl(), *e.kernels, *e.pool, e.arena,
                             GetParam().reference_numerics);
            pass.run_layers(std::span<ForwardItem>(&item, 1), h.data(), layer, layer + 1);
            if (layer == L - 1) {
                for (int t = 0; t < T; ++t) {
                    float* row = h.data() + static_cast<size_t>(t) * H;
                    e.kernels->rms_norm(row, ref_->model->impl().weights.final_norm.data(), H,
                                        c.rms_norm_eps, row);
                }
            }
            const float* want = ref_->floats(p + ".hidden." + std::to_string(layer + 1));
            const double err = rel_l2(h.data(), want, h.size());
            EXPECT_LT(err, 5e-2) << p << " layer " << layer;
            errs.push_back(err);
        }
    }
    EXPECT_LT(median(errs), scales_rounded() ? 1e-2 : 1e-4);
}

// The margin of the reference's top-1 choice at each position of a sequence.
std::vector<float> reference_margins(const float* logits, size_t rows, int V) {
    std::vector<float> out;
    for (size_t r = 0; r < rows; ++r) {
        std::vector<float> row(logits + r * V, logits + (r + 1) * V);
        std::partial_sort(row.begin(), row.begin() + 2, row.end(), std::greater<float>());
        out.push_back(row[0] - row[1]);
    }
    return out;
}

// Greedy decoding through the KV cache; returns the step (0-based, after the prompt) at which
// it first differs from generate.J.ids, or -1. Stops at the first step whose reference margin
// is below 1e-2 or where `stop` says so.
template <typename Stop>
int first_greedy_mismatch(InferenceEngine& engine, const Reference& ref, int j, Stop stop) {
    const int V = ref.model->config().vocab_size;
    const std::string g = "generate." + std::to_string(j);
    const std::vector<int32_t> full = ref.ids(g + ".ids");
    const std::vector<int32_t> prompt = ref.ids("prompt." + std::to_string(j) + ".ids");
    const std::vector<float> margin = reference_margins(ref.floats(g + ".logits"), full.size(), V);
    auto session = engine.create_session(ref.model, static_cast<int>(full.size()));
    Tensor logits = engine.forward(*session, prompt);
    for (size_t pos = prompt.size(); pos < full.size(); ++pos) {
        if (margin[pos - 1] < 1e-2f || stop(pos - 1))
            break;  // the reference itself is undecided here
        const int32_t next = argmax(logits.data_as<float>(), V);
        if (next != full[pos]) return static_cast<int>(pos - prompt.size());
        logits = engine.forward(*session, std::span<const int32_t>(&next, 1));
    }
    return -1;
}

// The bound of the reference README, verbatim: greedy decoding reproduces transformers'
// generate() up to the first step whose reference top-1 margin is under 1e-2. Exact int32
// BitLinear rounds differently from PyTorch's float GEMM, which now and then moves one int8
// activation across a rounding boundary (about 1e-2 of the logits); so this bound is asserted
// in reference-numerics mode, and in the default mode where the full forward pass agrees.
TEST_P(ReferenceModelTest, GreedyDecodeReproducesGenerate) {
    if (scalar_under_sanitizers()) GTEST_SKIP() << kScalarUnderSanitizers;
    const int V = config().vocab_size;
    for (int j : ref_->generations) {
        const std::string g = "generate." + std::to_string(j);
        if (GetParam().reference_numerics) {
            EXPECT_EQ(first_greedy_mismatch(*engine_, *ref_, j, [](size_t) { return false; }), -1)
                << g;
            continue;
        }
        // Default mode: stop where this engine's own full forward pass over the reference sequence
        // disagrees with transformers by more than the reference margin (a rounding-boundary
        // case); up to there, decoding through the KV cache must give exactly the reference tokens.
        const std::vector<int32_t> full = ref_->ids(g + ".ids");
        const InferResult ours = engine_->infer(*ref_->model, {full}, {.all_logits = true});
        const float* want = ref_->floats(g + ".logits");
        const std::vector<float> margin = reference_margins(want, full.size(), V);
        auto diverged = [&](size_t pos) {
            const float* a = ours.logits[0].data_as<float>() + pos * V;
            const float* b = want + pos * V;
            float worst = 0.f;
            for (int i = 0; i < V; ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
            return 2.f * worst >= margin[pos];
        };
        EXPECT_EQ(first_greedy_mismatch(*engine_, *ref_, j, diverged), -1) << g;
    }
}

// Prefill + one-token decode steps must compute what one pass over the whole sequence computes.
TEST_P(ReferenceModelTest, IncrementalDecodeMatchesFullForward) {
    if (GetParam().reference_numerics)
        GTEST_SKIP() << "cache handling does not depend on the accumulation order";
    const int V = config().vocab_size;
    const std::vector<int32_t> seq =
        ref_->ids("generate." + std::to_string(ref_->generations.front()) + ".ids");
    const int T = static_cast<int>(seq.size());
    const InferResult full = engine_->infer(*ref_->model, {seq}, {.all_logits = true});
    auto session = engine_->create_session(ref_->model, T);
    const int prefill = 7;
    Tensor first = engine_->forward(*session, std::span<const int32_t>(seq.data(), prefill), true);
    EXPECT_LT(rel_l2(first.data_as<float>(), full.logits[0].data_as<float>(),
                     static_cast<size_t>(prefill) * V),
              1e-5);
    for (int t = prefill; t < T; ++t) {
        Tensor step = engine_->forward(*session, std::span<const int32_t>(seq.data() + t, 1));
        ASSERT_LT(rel_l2(step.data_as<float>(),
                         full.logits[0].data_as<float>() + static_cast<size_t>(t) * V, V),
                  1e-5)
            << "position " << t;
    }
    EXPECT_EQ(session->position(), T);
}

// Sequences of different lengths in one batch give what each gives alone.
TEST_P(ReferenceModelTest, BatchOfDifferentLengthsMatchesSingleRuns) {
    if (GetParam().reference_numerics)
        GTEST_SKIP() << "batching does not depend on the accumulation order";
    if (scalar_under_sanitizers()) GTEST_SKIP() << kScalarUnderSanitizers;
    const int V = config().vocab_size;
    std::vector<std::vector<int32_t>> seqs;
    for (int j : ref_->prompts) seqs.push_back(ref_->ids("prompt." + std::to_string(j) + ".ids"));
    const InferResult batched = engine_->infer(*ref_->model, seqs, {.all_logits = true});
    for (size_t i = 0; i < seqs.size(); ++i) {
        const InferResult single = engine_->infer(*ref_->model, {seqs[i]}, {.all_logits = true});
        EXPECT_LT(rel_l2(batched.logits[i].data_as<float>(), single.logits[0].data_as<float>(),
                         seqs[i].size() * V),
                  1e-5)
            << "sequence " << i;
    }
    // Decode steps of several sessions at different positions, batched.
    std::vector<std::unique_ptr<Session>> sessions;
    std::vector<SequenceStep> steps;
    for (size_t i = 0; i < seqs.size(); ++i) {
        sessions.push_back(engine_->create_session(ref_->model, static_cast<int>(seqs[i].size())));
        engine_->forward(*sessions.back(),
                         std::span<const int32_t>(seqs[i].data(), seqs[i].size() - 1));
        steps.push_back(
            {sessions.back().get(), std::span<const int32_t>(&seqs[i].back(), 1), false});
    }
    const std::vector<Tensor> out = engine_->forward(steps);
    for (size_t i = 0; i < seqs.size(); ++i) {
        const InferResult single = engine_->infer(*ref_->model, {seqs[i]});
        EXPECT_LT(rel_l2(out[i].data_as<float>(), single.logits[0].data_as<float>(), V), 1e-5)
            << "session " << i;
    }
}

TEST_P(ReferenceModelTest, HiddenStatesMatchTheRecordedOnes) {
    if (GetParam().reference_numerics) GTEST_SKIP() << "covered by the teacher-forced test";
    const ModelConfig& c = config();
    const int j = ref_->prompts.front();
    const std::string p = "prompt." + std::to_string(j);
    const std::vector<int32_t> ids = ref_->ids(p + ".ids");
    const InferResult r =
        engine_->infer(*ref_->model, {ids}, {.all_logits = true, .hidden_states = true});
    ASSERT_EQ(r.hidden.size(), 1u);
    ASSERT_EQ(r.hidden[0].size(), static_cast<size_t>(c.num_layers + 1));
    for (int l = 0; l <= c.num_layers; ++l) {
        const float* want = ref_->floats(p + ".hidden." + std::to_string(l));
        EXPECT_LT(rel_l2(r.hidden[0][static_cast<size_t>(l)].data_as<float>(), want,
                         ids.size() * c.hidden_size),
                  0.05)
            << "hidden." << l;
    }
}

INSTANTIATE_TEST_SUITE_P(Levels, ReferenceModelTest, testing::ValuesIn(all_params()), param_name);

}  // namespace
}  // namespace bitnet::test
