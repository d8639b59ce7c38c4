// The `bitnet` command-line tool, run as a user runs it: the real binary (BITNET_CLI_PATH) on the
// reference checkpoints, checking exit codes, what it prints and the files it writes.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "bitnet/tokenizer.h"
#include "model/format/gguf.h"
#include "model/format/safetensors.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

namespace fs = std::filesystem;

struct RunResult {
    int status = -1;  // as returned by std::system
    std::string out;
    std::string err;
    bool exited() const { return status != -1 && WIFEXITED(status); }
    bool signaled() const { return status != -1 && WIFSIGNALED(status); }
    int code() const { return exited() ? WEXITSTATUS(status) : -1; }
};

std::string quote(const std::string& s) {
    std::string q = "'";
    for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    return q + "'";
}

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string join_ids(const std::vector<int32_t>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
    return s;
}

class CliTest : public testing::Test {
  protected:
    void SetUp() override {
        static std::atomic<int> counter{0};
        dir_ = fs::path(testing::TempDir()) /
               ("bitnet_cli_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    // Runs `bitnet ARGS` (arguments quoted one by one), stdout and stderr captured separately.
    // `input` is fed to standard input through a file (a pipe-like, non-terminal stdin).
    RunResult run(const std::vector<std::string>& args, const std::string& input = "") const {
        std::string cmd = quote(BITNET_CLI_PATH);
        for (const std::string& a : args) cmd += " " + quote(a);
        const fs::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt",
                       in = dir_ / "stdin.txt";
        std::ofstream(in, std::ios::binary) << input;
        cmd += " >" + quote(out.string()) + " 2>" + quote(err.string()) + " <" + quote(in.string());
        RunResult r;
        r.status = std::system(cmd.c_str());
        r.out = read_text(out);
        r.err = read_text(err);
        return r;
    }

    // A bad invocation: non-zero exit, no signal, and stderr names the problem.
    void expect_failure(const std::vector<std::string>& args, const std::string& mentioned) const {
        std::string joined;
        for (const std::string& a : args) joined += " " + a;
        SCOPED_TRACE("bitnet" + joined);
        const RunResult r = run(args);
        EXPECT_FALSE(r.signaled()) << "killed by signal " << WTERMSIG(r.status) << "\n" << r.err;
        EXPECT_TRUE(r.exited());
        EXPECT_NE(r.code(), 0);
        EXPECT_LT(r.code(), 128) << "the shell reports a signal as 128 + signal number";
        EXPECT_NE(r.err.find(mentioned), std::string::npos) << "stderr: " << r.err;
    }

    fs::path dir_;
};

struct Reference {
    std::unique_ptr<SafetensorsFile> file;
    std::vector<int32_t> ids(int j) const {
        const StTensor* t = file->find("prompt." + std::to_string(j) + ".ids");
        if (t == nullptr) throw std::runtime_error("no prompt ids");
        std::vector<int32_t> out(static_cast<size_t>(t->numel()));
        std::memcpy(out.data(), t->data, t->nbytes);
        return out;
    }
    const float* logits(int j) const {
        const StTensor* t = file->find("prompt." + std::to_string(j) + ".logits");
        if (t == nullptr || t->dtype != StDType::F32) throw std::runtime_error("no prompt logits");
        return reinterpret_cast<const float*>(t->data);
    }
};

Reference reference(const std::string& name) {
    return {std::make_unique<SafetensorsFile>(model_dir(name) + "/reference.safetensors")};
}

const float* f32_data(const StTensor& t) {
    return reinterpret_cast<const float*>(t.data);
}

// ---------------------------------------------------------------------------------------------
// bitnet info

TEST_F(CliTest, InfoDescribesTheModel) {
    const RunResult r = run({"info", model_dir("tiny-packed")});
    ASSERT_TRUE(r.exited()) << r.err;
    ASSERT_EQ(r.code(), 0) << r.err;
    EXPECT_NE(r.out.find("BitNetForCausalLM"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("hidden 256"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("layers 3"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("vocab 512"), std::string::npos) << r.out;
    // The kernel level the engine picks in this process is the one the tool reports.
    InferenceEngine engine(EngineOptions{.threads = 1});
    EXPECT_NE(r.out.find("kernels " + engine.kernel_level()), std::string::npos) << r.out;
}

TEST_F(CliTest, InfoJsonIsValid) {
    const RunResult r = run({"info", model_dir("tiny-packed"), "--json"});
    ASSERT_EQ(r.code(), 0) << r.err;
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << r.out;
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j.value("vocab_size", 0), 512);
    EXPECT_EQ(j.value("hidden_size", 0), 256);
    EXPECT_EQ(j.value("num_layers", 0), 3);
    EXPECT_EQ(j.value("architecture", ""), "BitNetForCausalLM");
    ASSERT_TRUE(j.contains("kernel_level"));
    ASSERT_TRUE(j["kernel_level"].is_string());
    EXPECT_FALSE(j["kernel_level"].get<std::string>().empty());
    EXPECT_FALSE(j.contains("tensors"));
}

TEST_F(CliTest, InfoListsTensors) {
    RunResult r = run({"info", model_dir("tiny-packed"), "--tensors"});
    ASSERT_EQ(r.code(), 0) << r.err;
    EXPECT_NE(r.out.find("model.layers.0.self_attn.q_proj.weight"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("model.layers.2.mlp.down_proj.weight"), std::string::npos) << r.out;

    r = run({"info", model_dir("tiny-packed"), "--tensors", "--json"});
    ASSERT_EQ(r.code(), 0) << r.err;
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << r.out;
    ASSERT_TRUE(j.contains("tensors"));
    bool found = false;
    for (const auto& t : j["tensors"])
        found = found || t.value("name", "") == "model.layers.0.self_attn.q_proj.weight";
    EXPECT_TRUE(found);
}

// ---------------------------------------------------------------------------------------------
// bitnet logits

TEST_F(CliTest, LogitsWritesAllLogitsAndHiddenStates) {
    const Reference ref = reference("tiny-master");
    const std::vector<int32_t> ids = ref.ids(0);
    const int64_t T = static_cast<int64_t>(ids.size());
    const fs::path out = dir_ / "logits.safetensors";
    const RunResult r = run({"logits", model_dir("tiny-master"), "--tokens", join_ids(ids), "--all",
                             "--hidden", "-o", out.string()});
    ASSERT_TRUE(r.exited()) << r.err;
    ASSERT_EQ(r.code(), 0) << r.err;
    ASSERT_TRUE(fs::exists(out));

    InferenceEngine engine;
    const auto model = engine.load_model(model_dir("tiny-master"));
    const ModelConfig& c = model->config();
    const int64_t V = c.vocab_size;
    const InferResult want =
        engine.infer(*model, {ids}, {.all_logits = true, .hidden_states = true});

    const SafetensorsFile file(out.string());
    const StTensor* logits = file.find("logits");
    ASSERT_NE(logits, nullptr);
    EXPECT_EQ(logits->dtype, StDType::F32);
    ASSERT_EQ(logits->shape, (std::vector<int64_t>{T, V}));
    const size_t n = static_cast<size_t>(T * V);
    EXPECT_LT(rel_l2(f32_data(*logits), want.logits[0].data_as<float>(), n), 1e-6);
    EXPECT_LT(rel_l2(f32_data(*logits), ref.logits(0), n), 0.3);
    EXPECT_GE(
        top1_agreement(f32_data(*logits), ref.logits(0), static_cast<int>(T), static_cast<int>(V)),
        0.85);

    const StTensor* id_tensor = file.find("ids");
    ASSERT_NE(id_tensor, nullptr);
    EXPECT_EQ(id_tensor->dtype, StDType::I32);
    ASSERT_EQ(id_tensor->shape, (std::vector<int64_t>{T}));
    EXPECT_EQ(std::memcmp(id_tensor->data, ids.data(), ids.size() * sizeof(int32_t)), 0);

    for (int l = 0; l <= c.num_layers; ++l) {
        const StTensor* h = file.find("hidden." + std::to_string(l));
        ASSERT_NE(h, nullptr) << "hidden." << l;
        EXPECT_EQ(h->dtype, StDType::F32);
        ASSERT_EQ(h->shape, (std::vector<int64_t>{T, c.hidden_size})) << "hidden." << l;
        EXPECT_LT(rel_l2(f32_data(*h), want.hidden[0][static_cast<size_t>(l)].data_as<float>(),
                         static_cast<size_t>(T * c.hidden_size)),
                  1e-6)
            << "hidden." << l;
    }
    EXPECT_EQ(file.find("hidden." + std::to_string(c.num_layers + 1)), nullptr);
}

TEST_F(CliTest, LogitsWithoutAllGivesTheLastRow) {
    const Reference ref = reference("tiny-master");
    const std::vector<int32_t> ids = ref.ids(0);
    const int64_t T = static_cast<int64_t>(ids.size());
    const fs::path out = dir_ / "last.safetensors";
    const RunResult r =
        run({"logits", model_dir("tiny-master"), "--tokens", join_ids(ids), "-o", out.string()});
    ASSERT_EQ(r.code(), 0) << r.err;
    const SafetensorsFile file(out.string());
    const StTensor* logits = file.find("logits");
    ASSERT_NE(logits, nullptr);
    InferenceEngine engine;
    const auto model = engine.load_model(model_dir("tiny-master"));
    const int64_t V = model->config().vocab_size;
    ASSERT_EQ(logits->shape, (std::vector<int64_t>{1, V}));
    EXPECT_EQ(file.find("hidden.0"), nullptr);
    const Tensor want =
        engine.infer(*model, Tensor::view(DType::I32, {T}, const_cast<int32_t*>(ids.data())));
    EXPECT_LT(rel_l2(f32_data(*logits), want.data_as<float>(), static_cast<size_t>(V)), 1e-6);
    EXPECT_LT(rel_l2(f32_data(*logits), ref.logits(0) + (T - 1) * V, static_cast<size_t>(V)), 0.3);
}

TEST_F(CliTest, LogitsWithScalarKernel) {
    const Reference ref = reference("tiny-master");
    const std::vector<int32_t> ids = ref.ids(0);
    const int64_t T = static_cast<int64_t>(ids.size());
    const fs::path out = dir_ / "scalar.safetensors";
    const RunResult r = run({"logits", model_dir("tiny-master"), "--tokens", join_ids(ids), "--all",
                             "--kernel", "scalar", "-o", out.string()});
    ASSERT_EQ(r.code(), 0) << r.err;
    const SafetensorsFile file(out.string());
    const StTensor* logits = file.find("logits");
    ASSERT_NE(logits, nullptr);
    auto engine = InferenceEngine::builder().kernel_level(CpuKernelLevel::Scalar).build();
    const auto model = engine->load_model(model_dir("tiny-master"));
    const int64_t V = model->config().vocab_size;
    ASSERT_EQ(logits->shape, (std::vector<int64_t>{T, V}));
    const InferResult want = engine->infer(*model, {ids}, {.all_logits = true});
    EXPECT_LT(
        rel_l2(f32_data(*logits), want.logits[0].data_as<float>(), static_cast<size_t>(T * V)),
        1e-6);
    EXPECT_LT(rel_l2(f32_data(*logits), ref.logits(0), static_cast<size_t>(T * V)), 0.3);
    EXPECT_EQ(file.header().metadata.count("kernel_level"), 1u);
    if (file.header().metadata.count("kernel_level")) {
        EXPECT_EQ(file.header().metadata.at("kernel_level"), "scalar");
    }
}

TEST_F(CliTest, LogitsTopPrintsTokens) {
    const Reference ref = reference("tiny-master");
    const std::vector<int32_t> ids = ref.ids(0);
    const RunResult r =
        run({"logits", model_dir("tiny-master"), "--tokens", join_ids(ids), "--top", "3"});
    ASSERT_EQ(r.code(), 0) << r.err;
    const std::regex line(R"(^\s*(\d+)\s+(-?[0-9.eE+-]+)\s*$)");
    std::istringstream in(r.out);
    std::string l;
    std::vector<int> tokens;
    std::vector<double> values;
    while (std::getline(in, l)) {
        std::smatch m;
        if (std::regex_match(l, m, line)) {
            tokens.push_back(std::stoi(m[1].str()));
            values.push_back(std::stod(m[2].str()));
        }
    }
    ASSERT_EQ(tokens.size(), 3u) << r.out;
    EXPECT_GE(values[0], values[1]);
    EXPECT_GE(values[1], values[2]);
    InferenceEngine engine;
    const auto model = engine.load_model(model_dir("tiny-master"));
    const InferResult want = engine.infer(*model, {ids});
    EXPECT_EQ(tokens[0], argmax(want.logits[0].data_as<float>(), model->config().vocab_size));
}

// ---------------------------------------------------------------------------------------------
// Bad use: a non-zero exit and a message, never a crash.

TEST_F(CliTest, MissingModelPath) {
    expect_failure({"info"}, "model");
    expect_failure({"logits", "--tokens", "1,2,3", "--top", "3"}, "model");
}

TEST_F(CliTest, NonexistentModelDir) {
    const std::string missing = (dir_ / "no_such_model").string();
    expect_failure({"info", missing}, missing);
    expect_failure({"logits", missing, "--tokens", "1,2", "--top", "1"}, missing);
}

TEST_F(CliTest, BadTokens) {
    expect_failure({"logits", model_dir("tiny-master"), "--tokens", "1,x,3", "--top", "3"}, "'x'");
    expect_failure({"logits", model_dir("tiny-master"), "--tokens", "99999", "--top", "3"},
                   "99999");
    expect_failure({"logits", model_dir("tiny-master"), "--tokens", "1,-2", "--top", "3"}, "-2");
    expect_failure({"logits", model_dir("tiny-master"), "--tokens", "", "--top", "3"}, "tokens");
    const fs::path out = dir_ / "never.safetensors";
    expect_failure({"logits", model_dir("tiny-master"), "--tokens", "99999", "-o", out.string()},
                   "99999");
    EXPECT_FALSE(fs::exists(out));
}

TEST_F(CliTest, BadKernel) {
    expect_failure({"info", model_dir("tiny-packed"), "--kernel", "bogus"}, "bogus");
    expect_failure(
        {"logits", model_dir("tiny-master"), "--tokens", "1,2", "--top", "1", "--kernel", "bogus"},
        "bogus");
}

TEST_F(CliTest, NoSubcommand) {
    expect_failure({}, "subcommand");
    expect_failure({"frobnicate"}, "subcommand");
}

TEST_F(CliTest, LogitsWithoutOutputOrTop) {
    expect_failure({"logits", model_dir("tiny-master"), "--tokens", "1,2"}, "--top");
}

// ---- generate and chat ----------------------------------------------------------------------

TEST_F(CliTest, GenerateGreedyPrintsWhatTheLibraryGenerates) {
    const std::string model = model_dir("tiny-packed");
    const RunResult r = run(
        {"generate", model, "-p", "Once upon a time", "-n", "12", "--temp", "0", "--ignore-eos"});
    ASSERT_EQ(r.code(), 0) << r.err;
    InferenceEngine engine;
    GenerationParams p;
    p.sampling.temperature = 0.f;
    p.max_tokens = 12;
    p.ignore_eos = true;
    const GenerationResult want =
        engine.generate(engine.load_model(model), *Tokenizer::load(model), "Once upon a time", p);
    EXPECT_EQ(r.out, want.text + "\n");
    EXPECT_NE(r.err.find("tokens/s"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("12 generated"), std::string::npos) << r.err;
}

TEST_F(CliTest, GenerateStreamsTheSameTextAndReadsStdin) {
    const std::string model = model_dir("tiny-master");
    const RunResult plain = run({"generate", model, "-p", "hello", "-n", "10", "--temp", "0"});
    const RunResult streamed =
        run({"generate", model, "-n", "10", "--temp", "0", "--stream"}, "hello");
    ASSERT_EQ(plain.code(), 0) << plain.err;
    ASSERT_EQ(streamed.code(), 0) << streamed.err;
    EXPECT_EQ(streamed.out, plain.out);
}

TEST_F(CliTest, ChatAnswersEveryLineFromAPipe) {
    const RunResult r =
        run({"chat", model_dir("tiny-packed"), "-n", "6", "--temp", "0.7", "-s", "5"},
            "hello there\nand again\n");
    ASSERT_EQ(r.code(), 0) << r.err;
    size_t stats = 0;
    for (size_t at = r.err.find("tokens/s"); at != std::string::npos;
         at = r.err.find("tokens/s", at + 1))
        ++stats;
    EXPECT_EQ(stats, 2u) << r.err;
}

TEST_F(CliTest, LogitBiasForcesAToken) {
    // Token 71 of tiny-packed's vocabulary is "h".
    const RunResult r = run({"generate", model_dir("tiny-packed"), "-p", "x", "-n", "3",
                             "--logit-bias", "71+100", "--ignore-eos"});
    ASSERT_EQ(r.code(), 0) << r.err;
    EXPECT_EQ(r.out, "hhh\n");
}

TEST_F(CliTest, GenerateRejectsBadFlags) {
    expect_failure({"generate", model_dir("tiny-packed"), "-p", "x", "--logit-bias", "4x4+1"},
                   "--logit-bias");
    expect_failure({"generate", model_dir("tiny-packed"), "-p", "x", "--top-p", "0"}, "top_p");
    expect_failure({"generate", model_dir("tiny-packed"), "-p", "x", "-n", "abc"}, "n-predict");
    expect_failure({"generate", "/nonexistent/model", "-p", "x"}, "/nonexistent/model");
}

// ---------------------------------------------------------------------------------------------
// bitnet convert --tokenizer: a synthetic model with a real vocabulary (what a peer engine that
// requires one loads), and a vocabulary that does not fit.

TEST_F(CliTest, ConvertWritesTheGivenTokenizer) {
    const std::string out = (dir_ / "synthetic-1m.gguf").string();
    const RunResult r = run({"convert", "--synthetic", "1m", out, "--type", "i2_s", "--tokenizer",
                             model_dir("tiny-packed"), "-q"});
    ASSERT_EQ(r.code(), 0) << r.err;
    EXPECT_EQ(r.out.find("no tokenizer"), std::string::npos) << r.out;
    const auto from_gguf = Tokenizer::load(out);
    const auto original = Tokenizer::load(model_dir("tiny-packed"));
    const std::string text = "Hello world, the quick brown fox.";
    EXPECT_EQ(from_gguf->encode(text, false), original->encode(text, false));
}

// --embedding f32 writes F32 (ggml type 0, which once also meant "keep the source's type": a bf16
// checkpoint kept bf16).
TEST_F(CliTest, ConvertWritesTheEmbeddingTypeAskedFor) {
    for (const char* type : {"f32", "bf16", "f16", "keep"}) {
        const std::string out = (dir_ / (std::string("embedding-") + type + ".gguf")).string();
        const RunResult r =
            run({"convert", model_dir("tiny-packed"), out, "--embedding", type, "-q"});
        ASSERT_EQ(r.code(), 0) << r.err;
        const gguf::File file(out);
        const gguf::TensorEntry* embd = file.find_tensor("token_embd.weight");
        ASSERT_NE(embd, nullptr);
        const uint32_t want = std::string(type) == "f32"   ? gguf::GGML_F32
                              : std::string(type) == "f16" ? gguf::GGML_F16
                                                           : gguf::GGML_BF16;  // the source's
        EXPECT_EQ(embd->type, want) << type;
    }
}

TEST_F(CliTest, ConvertRejectsATokenizerLargerThanTheModel) {
    const std::string out = (dir_ / "too-small.gguf").string();
    expect_failure({"convert", "--synthetic", "1m", out, "--tokenizer",
                    test::shipped_model_dir("debdocs-41m"), "-q"},
                   "do not fit the model's vocabulary of 512");
    EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace bitnet::test
