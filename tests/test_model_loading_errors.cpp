// Model::load on broken model directories built from the small reference checkpoints: every
// broken config, missing or malformed tensor and bad shard index must be a bitnet::Error with
// the right code and a message naming the file, field or tensor at fault. A valid sharded split
// and a file whose tensors are unaligned must load and compute what the original computes.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bitnet/engine.h"
#include "bitnet/error.h"
#include "bitnet/model.h"
#include "core/half.h"
#include "model/format/safetensors.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

testing::AssertionResult load_fails(const std::string& path, ErrorCode code,
                                    std::initializer_list<std::string> needles) {
    return throws_error([&] { Model::load(path); }, code, needles);
}

// A tensor held in memory, to be edited and written back.
struct OwnedTensor {
    std::string name;
    StDType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
};
using Tensors = std::vector<OwnedTensor>;

Tensors read_tensors(const std::string& path) {
    SafetensorsFile file(path);
    Tensors out;
    for (const StTensor& t : file.header().tensors) {
        out.push_back({t.name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
    }
    return out;
}

void write_tensors(const std::string& path, const Tensors& tensors) {
    std::vector<StWriteTensor> w;
    for (const OwnedTensor& t : tensors) w.push_back({t.name, t.dtype, t.shape, t.bytes.data()});
    write_safetensors(path, w, {{"format", "pt"}});
}

OwnedTensor& find(Tensors& tensors, const std::string& name) {
    for (OwnedTensor& t : tensors) {
        if (t.name == name) return t;
    }
    throw std::runtime_error("test data has no tensor " + name);
}

// A scratch model directory, optionally seeded with a copy of a reference checkpoint.
class ModelDir {
  public:
    explicit ModelDir(const std::string& source = "") {
        static int counter = 0;
        path_ = (fs::temp_directory_path() /
                 ("bitnet-load-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)))
                    .string();
        fs::remove_all(path_);
        fs::create_directories(path_);
        if (!source.empty()) {
            fs::copy_file(model_dir(source) + "/config.json", file("config.json"));
            fs::copy_file(model_dir(source) + "/model.safetensors", file("model.safetensors"));
        }
    }
    ~ModelDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

    void write_text(const std::string& name, const std::string& text) const {
        std::ofstream out(file(name), std::ios::binary | std::ios::trunc);
        out << text;
    }
    json config() const {
        std::ifstream in(file("config.json"));
        return json::parse(in);
    }
    void edit_config(const std::function<void(json&)>& edit) const {
        json c = config();
        edit(c);
        write_text("config.json", c.dump(2));
    }
    void edit_weights(const std::function<void(Tensors&)>& edit) const {
        Tensors t = read_tensors(file("model.safetensors"));
        edit(t);
        write_tensors(file("model.safetensors"), t);
    }

  private:
    std::string path_;
};

std::vector<float> logits_of(const Model& model) {
    EngineOptions options;
    options.threads = 2;
    InferenceEngine engine(options);
    Tensor ids(DType::I32, {5});
    const int32_t tokens[] = {1, 7, 42, 3, 99};
    std::memcpy(ids.data_as<int32_t>(), tokens, sizeof tokens);
    const Tensor out = engine.infer(model, ids);
    return std::vector<float>(out.data_as<float>(), out.data_as<float>() + out.numel());
}

// ---- paths and files --------------------------------------------------------------------

TEST(ModelLoadingErrorsTest, PathThatDoesNotExist) {
    const std::string path = "/nonexistent/bitnet/model-dir";
    EXPECT_TRUE(load_fails(path, ErrorCode::NotFound, {path}));
    EXPECT_TRUE(load_fails(path + "/model.safetensors", ErrorCode::NotFound, {"/nonexistent"}));
}

TEST(ModelLoadingErrorsTest, DirectoryWithoutWeights) {
    ModelDir empty;
    EXPECT_TRUE(load_fails(empty.path(), ErrorCode::NotFound, {empty.path(), "model.safetensors"}));
    ModelDir config_only;
    fs::copy_file(model_dir("tiny-packed") + "/config.json", config_only.file("config.json"));
    EXPECT_TRUE(load_fails(config_only.path(), ErrorCode::NotFound, {config_only.path()}));
}

TEST(ModelLoadingErrorsTest, NotAModelFile) {
    ModelDir dir("tiny-packed");
    EXPECT_TRUE(load_fails(dir.file("config.json"), ErrorCode::UnsupportedFormat, {"config.json"}));
    // The weights file itself is a valid way to name the model.
    EXPECT_NO_THROW(Model::load(dir.file("model.safetensors")));
}

TEST(ModelLoadingErrorsTest, MissingConfig) {
    ModelDir dir("tiny-packed");
    fs::remove(dir.file("config.json"));
    EXPECT_TRUE(load_fails(dir.path(), ErrorCode::NotFound, {dir.file("config.json")}));
}

TEST(ModelLoadingErrorsTest, ConfigNotJson) {
    ModelDir dir("tiny-packed");
    dir.write_text("config.json", "{\"hidden_size\": 256,");
    EXPECT_TRUE(load_fails(dir.path(), ErrorCode::ParseError, {dir.file("config.json")}));
    dir.write_text("config.json", "[\"BitNetForCausalLM\"]");
    EXPECT_TRUE(load_fails(dir.path(), ErrorCode::ParseError, {dir.file("config.json")}));
}

// ---- config.json ------------------------------------------------------------------------

testing::AssertionResult config_fails(const char* model, const std::function<void(json&)>& edit,
                                      ErrorCode code, std::initializer_list<std::string> needles) {
    ModelDir dir(model);
    dir.edit_config(edit);
    return throws_error([&] { Model::load(dir.path()); }, code, needles);
}

TEST(ModelLoadingErrorsTest, HeadsMustDivideHiddenSize) {
    EXPECT_TRUE(config_fails("tiny-packed", [](json& c) { c["num_attention_heads"] = 3; },
                             ErrorCode::InvalidConfig, {"config.json", "num_attention_heads"}));
}

TEST(ModelLoadingErrorsTest, KvHeadsMustDivideHeads) {
    EXPECT_TRUE(config_fails("tiny-packed", [](json& c) { c["num_key_value_heads"] = 3; },
                             ErrorCode::InvalidConfig, {"config.json", "num_key_value_heads"}));
}

TEST(ModelLoadingErrorsTest, MissingRequiredField) {
    for (const char* field : {"hidden_size", "intermediate_size", "num_hidden_layers",
                              "num_attention_heads", "vocab_size", "architectures"}) {
        EXPECT_TRUE(config_fails("tiny-packed", [&](json& c) { c.erase(field); },
                                 ErrorCode::InvalidConfig, {"config.json", field}))
            << field;
    }
}

TEST(ModelLoadingErrorsTest, NegativeOrZeroSizes) {
    const std::pair<const char*, int> cases[] = {
        {"hidden_size", -256},         {"intermediate_size", -768}, {"num_hidden_layers", 0},
        {"num_attention_heads", -4},   {"num_key_value_heads", -2}, {"vocab_size", -512},
        {"max_position_embeddings", 0}};
    for (const auto& item : cases) {
        EXPECT_TRUE(config_fails("tiny-packed", [&](json& c) { c[item.first] = item.second; },
                                 ErrorCode::InvalidConfig, {"config.json", item.first}))
            << item.first << " = " << item.second;
    }
}

TEST(ModelLoadingErrorsTest, SizesOfTheWrongType) {
    for (const json& value :
         {json("256"), json(256.5), json(1e12), json(10000000000LL), json::array({256})}) {
        EXPECT_TRUE(config_fails("tiny-packed", [&](json& c) { c["hidden_size"] = value; },
                                 ErrorCode::InvalidConfig, {"config.json", "hidden_size"}))
            << value.dump();
    }
}

TEST(ModelLoadingErrorsTest, UnsupportedArchitecture) {
    EXPECT_TRUE(config_fails("tiny-packed",
                             [](json& c) { c["architectures"] = json::array({"GPT2LMHeadModel"}); },
                             ErrorCode::UnsupportedFormat, {"architectures", "GPT2LMHeadModel"}));
}

TEST(ModelLoadingErrorsTest, UnsupportedHiddenAct) {
    EXPECT_TRUE(config_fails("tiny-packed", [](json& c) { c["hidden_act"] = "gelu"; },
                             ErrorCode::UnsupportedFormat, {"config.json", "hidden_act", "gelu"}));
}

TEST(ModelLoadingErrorsTest, UnknownQuantizationMode) {
    EXPECT_TRUE(config_fails(
        "tiny-packed", [](json& c) { c["quantization_config"]["quantization_mode"] = "semi"; },
        ErrorCode::UnsupportedFormat, {"config.json", "quantization_mode", "semi"}));
}

// Fields read as booleans or strings must be checked like the others, not leak a JSON
// library exception.
TEST(ModelLoadingErrorsTest, FlagsOfTheWrongType) {
    EXPECT_TRUE(config_fails("tiny-packed", [](json& c) { c["tie_word_embeddings"] = "yes"; },
                             ErrorCode::InvalidConfig, {"config.json", "tie_word_embeddings"}));
    EXPECT_TRUE(config_fails("tiny-packed",
                             [](json& c) { c["quantization_config"]["use_rms_norm"] = 1; },
                             ErrorCode::InvalidConfig, {"config.json", "use_rms_norm"}));
    EXPECT_TRUE(config_fails("tiny-packed",
                             [](json& c) {
                                 c["rope_scaling"] = {{"rope_type", 3}};
                             },
                             ErrorCode::InvalidConfig, {"config.json", "rope_scaling"}));
}

// ---- tensors ----------------------------------------------------------------------------

testing::AssertionResult weights_fail(const char* model, const std::function<void(Tensors&)>& edit,
                                      ErrorCode code, std::initializer_list<std::string> needles) {
    ModelDir dir(model);
    dir.edit_weights(edit);
    return throws_error([&] { Model::load(dir.path()); }, code, needles);
}

TEST(ModelLoadingErrorsTest, MissingTensor) {
    for (const char* name :
         {"model.layers.1.self_attn.k_proj.weight_scale", "model.layers.2.mlp.down_proj.weight",
          "model.norm.weight", "model.embed_tokens.weight"}) {
        EXPECT_TRUE(weights_fail("tiny-packed",
                                 [&](Tensors& t) {
                                     std::erase_if(
                                         t, [&](const OwnedTensor& x) { return x.name == name; });
                                 },
                                 ErrorCode::NotFound, {name, "model.safetensors"}))
            << name;
    }
    EXPECT_TRUE(weights_fail("tiny-master",
                             [](Tensors& t) {
                                 std::erase_if(t, [](const OwnedTensor& x) {
                                     return x.name == "lm_head.weight";
                                 });
                             },
                             ErrorCode::NotFound, {"lm_head.weight"}));
}

TEST(ModelLoadingErrorsTest, TensorWithTheWrongShape) {
    EXPECT_TRUE(weights_fail("tiny-packed",
                             [](Tensors& t) {
                                 OwnedTensor& n = find(t, "model.norm.weight");
                                 n.shape = {128};
                                 n.bytes.resize(256);
                             },
                             ErrorCode::ShapeMismatch,
                             {"model.safetensors", "'model.norm.weight'", "[128]", "[256]"}));
    EXPECT_TRUE(weights_fail(
        "tiny-packed",
        [](Tensors& t) {
            find(t, "model.layers.0.self_attn.q_proj.weight").shape = {256, 64};
        },
        ErrorCode::ShapeMismatch, {"'model.layers.0.self_attn.q_proj.weight'", "[256, 64]"}));
    EXPECT_TRUE(weights_fail("tiny-master",
                             [](Tensors& t) {
                                 find(t, "model.layers.1.mlp.down_proj.weight").shape = {768, 256};
                             },
                             ErrorCode::ShapeMismatch,
                             {"'model.layers.1.mlp.down_proj.weight'", "[256, 768]"}));
    EXPECT_TRUE(weights_fail("tiny-packed",
                             [](Tensors& t) {
                                 find(t, "model.embed_tokens.weight").shape = {256, 512};
                             },
                             ErrorCode::ShapeMismatch, {"'model.embed_tokens.weight'"}));
}

TEST(ModelLoadingErrorsTest, TensorWithTheWrongDtype) {
    // A packed weight stored as F32 of the right shape, for an offline (packed) model.
    EXPECT_TRUE(weights_fail("tiny-packed",
                             [](Tensors& t) {
                                 OwnedTensor& w = find(t, "model.layers.0.self_attn.q_proj.weight");
                                 w.dtype = StDType::F32;
                                 w.bytes.assign(w.bytes.size() * 4, 0);
                             },
                             ErrorCode::ShapeMismatch,
                             {"'model.layers.0.self_attn.q_proj.weight'", "F32", "U8"}));
    // A norm stored as U8.
    EXPECT_TRUE(weights_fail("tiny-packed",
                             [](Tensors& t) {
                                 OwnedTensor& n = find(t, "model.layers.1.input_layernorm.weight");
                                 n.dtype = StDType::U8;
                                 n.bytes.resize(256);
                             },
                             ErrorCode::ShapeMismatch,
                             {"'model.layers.1.input_layernorm.weight'", "U8"}));
    // A weight scale stored as an integer.
    EXPECT_TRUE(
        weights_fail("tiny-packed",
                     [](Tensors& t) {
                         OwnedTensor& s = find(t, "model.layers.0.mlp.up_proj.weight_scale");
                         s.dtype = StDType::U8;
                         s.bytes.resize(1);
                     },
                     ErrorCode::ShapeMismatch, {"'model.layers.0.mlp.up_proj.weight_scale'"}));
    // The embedding as I32.
    EXPECT_TRUE(weights_fail("tiny-packed",
                             [](Tensors& t) {
                                 OwnedTensor& e = find(t, "model.embed_tokens.weight");
                                 e.dtype = StDType::I32;
                                 e.bytes.resize(e.bytes.size() * 2);
                             },
                             ErrorCode::ShapeMismatch, {"'model.embed_tokens.weight'", "I32"}));
    // Master weights (online model) stored as packed U8 of the master shape.
    EXPECT_TRUE(weights_fail("tiny-master",
                             [](Tensors& t) {
                                 OwnedTensor& w = find(t, "model.layers.0.self_attn.k_proj.weight");
                                 w.dtype = StDType::U8;
                                 w.bytes.resize(w.bytes.size() / 2);
                             },
                             ErrorCode::ShapeMismatch,
                             {"'model.layers.0.self_attn.k_proj.weight'", "U8"}));
}

TEST(ModelLoadingErrorsTest, InvalidTernaryCode) {
    // Code 3 in the low bits (rows 0..R-1) and in the high bits (the last quarter of rows).
    for (const uint8_t bad : {uint8_t{0x03}, uint8_t{0xc0}}) {
        EXPECT_TRUE(weights_fail(
            "tiny-packed",
            [&](Tensors& t) {
                OwnedTensor& w = find(t, "model.layers.1.mlp.gate_proj.weight");
                w.bytes[1000] = static_cast<uint8_t>((w.bytes[1000] & ~bad) | bad);
            },
            ErrorCode::ShapeMismatch, {"'model.layers.1.mlp.gate_proj.weight'", "code 3"}))
            << int{bad};
    }
}

TEST(ModelLoadingErrorsTest, BadWeightScale) {
    // bf16 bit patterns: 0, -0, NaN, +inf, -1.
    for (const uint16_t bits : {0x0000, 0x8000, 0x7fc0, 0x7f80, 0xbf80}) {
        EXPECT_TRUE(weights_fail(
            "tiny-packed",
            [&](Tensors& t) {
                OwnedTensor& s = find(t, "model.layers.2.self_attn.o_proj.weight_scale");
                std::memcpy(s.bytes.data(), &bits, 2);
            },
            ErrorCode::ShapeMismatch, {"'model.layers.2.self_attn.o_proj.weight_scale'"}))
            << std::hex << bits;
    }
}

TEST(ModelLoadingErrorsTest, NonFiniteMasterWeights) {
    for (const uint16_t bits : {0x7fc0, 0xff80}) {
        EXPECT_TRUE(
            weights_fail("tiny-master",
                         [&](Tensors& t) {
                             OwnedTensor& w = find(t, "model.layers.1.self_attn.v_proj.weight");
                             std::memcpy(w.bytes.data() + 2 * 777, &bits, 2);
                         },
                         ErrorCode::ShapeMismatch, {"'model.layers.1.self_attn.v_proj.weight'"}))
            << std::hex << bits;
    }
}

// A file whose tensors start at odd offsets is valid safetensors: it must load and compute
// exactly what the aligned original computes (and read the mapping without misaligned loads).
TEST(ModelLoadingErrorsTest, UnalignedTensorsGiveTheSameLogits) {
    for (const char* model : {"tiny-packed", "tiny-master"}) {
        SCOPED_TRACE(model);
        ModelDir dir(model);
        dir.edit_weights([](Tensors& t) {
            t.insert(t.begin(), OwnedTensor{"zz.padding", StDType::U8, {1}, {0x5a}});
        });
        const auto shifted = Model::load(dir.path());
        const auto original = Model::load(model_dir(model));
        EXPECT_EQ(logits_of(*shifted), logits_of(*original));
    }
}

// ---- sharded checkpoints ----------------------------------------------------------------

// Splits tiny-packed into two shards plus an index; `index_edit` may then break the index.
void write_sharded(const ModelDir& dir, const std::string& shard_prefix = "") {
    Tensors all = read_tensors(model_dir("tiny-packed") + "/model.safetensors");
    const size_t half = all.size() / 2;
    const Tensors first(all.begin(), all.begin() + static_cast<ptrdiff_t>(half));
    const Tensors second(all.begin() + static_cast<ptrdiff_t>(half), all.end());
    const std::string names[] = {"model-00001-of-00002.safetensors",
                                 "model-00002-of-00002.safetensors"};
    write_tensors(dir.file(names[0]), first);
    write_tensors(dir.file(names[1]), second);
    json map = json::object();
    for (const OwnedTensor& t : first) map[t.name] = shard_prefix + names[0];
    for (const OwnedTensor& t : second) map[t.name] = shard_prefix + names[1];
    json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", map}};
    dir.write_text("model.safetensors.index.json", index.dump(2));
}

TEST(ModelLoadingErrorsTest, ShardedCheckpointMatchesSingleFile) {
    ModelDir dir;
    fs::copy_file(model_dir("tiny-packed") + "/config.json", dir.file("config.json"));
    write_sharded(dir);
    const auto single = Model::load(model_dir("tiny-packed"));
    const std::vector<float> expected = logits_of(*single);
    for (const std::string& path : {dir.path(), dir.file("model.safetensors.index.json")}) {
        SCOPED_TRACE(path);
        std::shared_ptr<const Model> sharded;
        ASSERT_NO_THROW(sharded = Model::load(path));
        EXPECT_EQ(sharded->info().tensors.size(), single->info().tensors.size());
        EXPECT_EQ(logits_of(*sharded), expected);
    }
    // One shard alone lacks half of the tensors.
    EXPECT_TRUE(load_fails(dir.file("model-00001-of-00002.safetensors"), ErrorCode::NotFound,
                           {"missing tensor"}));
}

TEST(ModelLoadingErrorsTest, IndexNamingAMissingShard) {
    ModelDir dir;
    fs::copy_file(model_dir("tiny-packed") + "/config.json", dir.file("config.json"));
    write_sharded(dir);
    fs::remove(dir.file("model-00002-of-00002.safetensors"));
    EXPECT_TRUE(load_fails(dir.path(), ErrorCode::NotFound,
                           {dir.file("model-00002-of-00002.safetensors")}));
}

TEST(ModelLoadingErrorsTest, TensorDuplicatedAcrossShards) {
    ModelDir dir;
    fs::copy_file(model_dir("tiny-packed") + "/config.json", dir.file("config.json"));
    write_sharded(dir);
    // Shard 2 also holds the first tensor of shard 1.
    Tensors second = read_tensors(dir.file("model-00002-of-00002.safetensors"));
    const Tensors first = read_tensors(dir.file("model-00001-of-00002.safetensors"));
    second.push_back(first.front());
    write_tensors(dir.file("model-00002-of-00002.safetensors"), second);
    EXPECT_TRUE(load_fails(dir.path(), ErrorCode::ParseError,
                           {"'" + first.front().name + "'", "model-00001-of-00002.safetensors",
                            "model-00002-of-00002.safetensors"}));
}

TEST(ModelLoadingErrorsTest, IndexPathsOutsideTheModelDirectory) {
    // The shards exist one level up, so only the path check stops the load.
    ModelDir outer;
    write_sharded(outer);
    const std::string inner = outer.file("model");
    fs::create_directories(inner);
    fs::copy_file(model_dir("tiny-packed") + "/config.json", inner + "/config.json");
    // Rewrites the index with every shard name passed through `rename`.
    auto rewrite = [&](const std::function<std::string(const std::string&)>& rename) {
        std::ifstream in(outer.file("model.safetensors.index.json"));
        json index = json::parse(in);
        json& map = index["weight_map"];
        for (auto it = map.begin(); it != map.end(); ++it) it.value() = rename(it.value());
        std::ofstream(inner + "/model.safetensors.index.json") << index.dump();
    };
    rewrite([](const std::string& f) { return "../" + f; });
    EXPECT_TRUE(load_fails(inner, ErrorCode::ParseError,
                           {"model.safetensors.index.json", "../model-0000"}));
    rewrite([&](const std::string& f) { return outer.path() + "/" + f; });
    EXPECT_TRUE(load_fails(inner, ErrorCode::ParseError, {"model.safetensors.index.json"}));
}

TEST(ModelLoadingErrorsTest, MalformedIndex) {
    ModelDir dir;
    fs::copy_file(model_dir("tiny-packed") + "/config.json", dir.file("config.json"));
    write_sharded(dir);
    const std::string index = dir.file("model.safetensors.index.json");
    for (const char* text : {"{\"weight_map\": ", "[]", "{\"metadata\": {}}",
                             "{\"weight_map\": {}}", "{\"weight_map\": {\"a\": 3}}",
                             "{\"weight_map\": [\"model-00001-of-00002.safetensors\"]}"}) {
        dir.write_text("model.safetensors.index.json", text);
        EXPECT_TRUE(load_fails(dir.path(), ErrorCode::ParseError, {index})) << text;
    }
}

}  // namespace
}  // namespace bitnet::test

// ---- the same model in other layouts computes the same thing ----------------------------------

namespace bitnet::test {
namespace {

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    return rel_l2(a.data(), b.data(), std::min(a.size(), b.size())) +
           (a.size() != b.size() ? 1.0 : 0.0);
}

void rename(Tensors& tensors, const std::string& from, const std::string& to) {
    for (OwnedTensor& t : tensors) {
        const size_t at = t.name.find(from);
        if (at != std::string::npos) t.name.replace(at, from.size(), to);
    }
}

// 1bitLLM's BitnetForCausalLM names its sub-norms inner_attn_ln / ffn_layernorm and carries no
// quantization_config (master weights, ternarised at load): the same weights under those names
// must give exactly tiny-master's logits.
TEST(ModelLayoutTest, OneBitLlmNamesGiveTheSameLogits) {
    const std::vector<float> want = logits_of(*Model::load(model_dir("tiny-master")));
    ModelDir dir("tiny-master");
    dir.edit_config([](json& c) {
        c["architectures"] = {"BitnetForCausalLM"};
        c["model_type"] = "llama";
        c.erase("quantization_config");
    });
    dir.edit_weights([](Tensors& t) {
        rename(t, ".self_attn.attn_sub_norm.", ".self_attn.inner_attn_ln.");
        rename(t, ".mlp.ffn_sub_norm.", ".mlp.ffn_layernorm.");
    });
    const auto model = Model::load(dir.path());
    EXPECT_EQ(model->config().architecture, "BitnetForCausalLM");
    EXPECT_EQ(logits_of(*model), want);
}

// linear_class "bitlinear" divides by weight_scale where "autobitlinear" multiplies: storing the
// reciprocal scales must give the same logits (up to the rounding of 1 / (1 / s)).
TEST(ModelLayoutTest, BitLinearDivideConventionMatchesMultiply) {
    const std::vector<float> want = logits_of(*Model::load(model_dir("tiny-packed")));
    ModelDir dir("tiny-packed");
    dir.edit_config([](json& c) { c["quantization_config"]["linear_class"] = "bitlinear"; });
    dir.edit_weights([](Tensors& tensors) {
        for (OwnedTensor& t : tensors) {
            if (t.name.find("weight_scale") == std::string::npos) continue;
            uint16_t h;
            std::memcpy(&h, t.bytes.data(), 2);
            const float inverse = 1.f / bf16_to_f32(h);
            t.dtype = StDType::F32;
            t.bytes.resize(4);
            std::memcpy(t.bytes.data(), &inverse, 4);
        }
    });
    EXPECT_LT(max_rel_diff(logits_of(*Model::load(dir.path())), want), 1e-5);
}

// The same values stored as F32 instead of BF16 give bit-identical logits.
TEST(ModelLayoutTest, Float32TensorsGiveTheSameLogits) {
    for (const char* name : {"tiny-packed", "tiny-master"}) {
        const std::vector<float> want = logits_of(*Model::load(model_dir(name)));
        ModelDir dir(name);
        dir.edit_weights([](Tensors& tensors) {
            for (OwnedTensor& t : tensors) {
                if (t.dtype != StDType::BF16) continue;
                std::vector<uint8_t> wide(t.bytes.size() * 2);
                for (size_t i = 0; i < t.bytes.size() / 2; ++i) {
                    uint16_t h;
                    std::memcpy(&h, t.bytes.data() + 2 * i, 2);
                    const float f = bf16_to_f32(h);
                    std::memcpy(wide.data() + 4 * i, &f, 4);
                }
                t.dtype = StDType::F32;
                t.bytes = std::move(wide);
            }
        });
        EXPECT_EQ(logits_of(*Model::load(dir.path())), want) << name;
    }
}

}  // namespace
}  // namespace bitnet::test
