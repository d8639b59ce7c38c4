// libFuzzer target for the model-file parsers and the loader behind them.
//
// Input layout: 2 bytes little-endian N, then N bytes of config.json text, then the rest as a
// safetensors image (N is clamped to what is there). Both parsers run on their part; when both
// accept it, the pair is written to a per-process scratch directory and loaded with
// bitnet::Model::load, and a model that loads and is small runs one forward pass on token 0.
// bitnet::Error is the only acceptable failure: any other exception, crash or sanitizer report
// is a finding.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "bitnet/engine.h"
#include "bitnet/error.h"
#include "bitnet/model.h"
#include "model/config.h"
#include "model/format/safetensors.h"

namespace {

namespace fs = std::filesystem;

const std::string& scratch_dir() {
    static const std::string dir = [] {
        const fs::path p =
            fs::temp_directory_path() / ("bitnet-fuzz-" + std::to_string(::getpid()));
        fs::create_directories(p);
        return p.string();
    }();
    return dir;
}

void write_file(const std::string& path, const uint8_t* data, size_t size) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) std::abort();  // the scratch directory itself failed: not a finding in the library
}

// Small enough for one forward pass to be cheap.
bool small_model(const bitnet::ModelConfig& c) {
    const int64_t qd = static_cast<int64_t>(c.num_heads) * c.head_dim;
    return c.hidden_size <= 512 && c.intermediate_size <= 2048 && c.num_layers <= 4 &&
           c.vocab_size <= 4096 && qd <= 1024 && c.num_kv_heads * c.head_dim <= 1024;
}

bitnet::InferenceEngine& engine() {
    static const std::unique_ptr<bitnet::InferenceEngine> e = [] {
        bitnet::EngineOptions options;
        options.threads = 1;
        options.max_batch_size = 1;
        return std::make_unique<bitnet::InferenceEngine>(options);
    }();
    return *e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const size_t config_len =
        std::min<size_t>(data[0] | (static_cast<size_t>(data[1]) << 8), size - 2);
    const std::string config_text(reinterpret_cast<const char*>(data + 2), config_len);
    const uint8_t* st = data + 2 + config_len;
    const size_t st_size = size - 2 - config_len;

    bool config_ok = false;
    bitnet::ModelConfig config;
    try {
        config = bitnet::parse_model_config(config_text, "fuzz/config.json");
        config_ok = true;
    } catch (const bitnet::Error&) {
    }
    bool weights_ok = false;
    try {
        // A copy of exactly st_size bytes, so a read past the end is an ASan report.
        const std::vector<uint8_t> image(st, st + st_size);
        bitnet::parse_safetensors(image.data(), image.size(), "fuzz/model.safetensors");
        weights_ok = true;
    } catch (const bitnet::Error&) {
    }
    if (!config_ok || !weights_ok) return 0;

    const std::string& dir = scratch_dir();
    write_file(dir + "/config.json", reinterpret_cast<const uint8_t*>(config_text.data()),
               config_text.size());
    write_file(dir + "/model.safetensors", st, st_size);
    try {
        const std::shared_ptr<const bitnet::Model> model = bitnet::Model::load(dir);
        if (small_model(model->config())) {
            const bitnet::InferResult r = engine().infer(*model, {{0}});
            if (r.logits.size() != 1 || r.logits[0].numel() != model->config().vocab_size) {
                std::fprintf(stderr, "infer returned %zu logits tensors\n", r.logits.size());
                std::abort();
            }
        }
        if (std::getenv("BITNET_FUZZ_VERBOSE")) std::fprintf(stderr, "loaded %s\n", dir.c_str());
    } catch (const bitnet::Error& e) {
        if (std::getenv("BITNET_FUZZ_VERBOSE")) std::fprintf(stderr, "error: %s\n", e.what());
    }
    return 0;
}
