// bitnet convert IN OUT: any readable model (Hugging Face checkpoint or GGUF) -> a GGUF in the
// ternary type and head precision the user picks.
#include <cstdio>
#include <memory>

#include "bitnet/model.h"
#include "bitnet/tokenizer.h"
#include "commands.h"
#include "model/format/gguf.h"
#include "model/gguf_export.h"
#include "model/synthetic_model.h"
#include "progress_bar.h"
#include "tokenizer/gguf_vocab_file.h"

namespace bitnet::cli {

namespace {

struct ConvertArgs {
    std::string input;
    std::string output;
    std::string type = "t2";
    std::string embedding = "keep";
    std::string output_head = "keep";
    std::string name;
    std::string synthetic;
    std::string tokenizer;
    bool quiet = false;
};

// What is written: the model, its tokenizer metadata (none for a synthetic model) and a name.
struct Source {
    std::shared_ptr<const Model> model;
    std::unique_ptr<GgufVocab> vocab;
    std::string name;
};

// --tokenizer: the vocabulary of a tokenizer.json (or a directory holding one) instead of the
// source's, e.g. so that a peer engine that requires a tokenizer loads a synthetic model.
std::unique_ptr<GgufVocab> vocab_from(const std::string& path, const Model& model) {
    const auto tokenizer = Tokenizer::load(path);
    const int64_t model_vocab = model.config().vocab_size;
    if (tokenizer->vocab_size() > model_vocab) {
        throw Error(
            ErrorCode::InvalidArgument,
            "convert --tokenizer " + path + ": its " + std::to_string(tokenizer->vocab_size()) +
                " tokens do not fit the model's vocabulary of " + std::to_string(model_vocab));
    }
    return std::make_unique<GgufVocab>(
        gguf_vocab_from_tokenizer(*tokenizer, static_cast<size_t>(model_vocab)));
}

Source open_source(const ConvertArgs& a) {
    Source src;
    if (!a.synthetic.empty()) {
        // Random weights of a named shape, e.g. a 2B-shaped file to benchmark a peer engine on.
        src.model = make_synthetic_model({.shape = a.synthetic});
        src.name = "synthetic-" + a.synthetic;
        if (!a.tokenizer.empty()) src.vocab = vocab_from(a.tokenizer, *src.model);
        return src;
    }
    // Read once to be written out: copying the weights into huge pages would only cost.
    src.model = Model::load(a.input, {.weight_memory = WeightMemory::Mapped});
    if (!a.tokenizer.empty()) {
        src.vocab = vocab_from(a.tokenizer, *src.model);
        if (gguf::is_gguf_file(a.input))
            src.name = gguf::File(a.input).get_string_opt("general.name").value_or("");
        return src;
    }
    // A GGUF source keeps its tokenizer metadata as written; a checkpoint's tokenizer.json is
    // translated the way llama.cpp's converter does.
    if (gguf::is_gguf_file(a.input)) {
        const gguf::File file(a.input);
        src.vocab = std::make_unique<GgufVocab>(gguf_vocab_from_file(file));
        src.name = file.get_string_opt("general.name").value_or("");
        return src;
    }
    try {
        const auto tokenizer = Tokenizer::load(a.input);
        src.vocab = std::make_unique<GgufVocab>(gguf_vocab_from_tokenizer(
            *tokenizer, static_cast<size_t>(src.model->config().vocab_size)));
    } catch (const Error& e) {
        if (e.code() != ErrorCode::NotFound) throw;
        std::fprintf(stderr, "bitnet convert: no tokenizer found beside %s; writing none\n",
                     a.input.c_str());
    }
    return src;
}

void run_convert(ConvertArgs a) {
    // With --synthetic the one positional argument is the output file.
    if (!a.synthetic.empty() && a.output.empty()) a.output = a.input;
    if (a.output.empty()) throw Error(ErrorCode::InvalidArgument, "convert: no output file given");
    GgufExportOptions o;
    o.ternary_type = parse_ternary_type(a.type);
    if (a.embedding != "keep") o.embedding_type = parse_dense_type(a.embedding);
    if (a.output_head != "keep") o.output_type = parse_dense_type(a.output_head);
    const Source src = open_source(a);
    o.name = a.name.empty() ? src.name : a.name;
    ProgressBar bar("writing " + a.output, !a.quiet);
    o.progress = [&](uint64_t done, uint64_t total) { bar.update(done, total); };
    export_gguf(*src.model, src.vocab.get(), a.output, o);
    bar.finish();
    std::printf("wrote %s (%s projections%s) from %s\n", a.output.c_str(),
                gguf::tensor_type_name(o.ternary_type).c_str(), src.vocab ? "" : ", no tokenizer",
                src.model->info().format.c_str());
}

}  // namespace

void add_convert_command(CLI::App& app) {
    auto args = std::make_shared<ConvertArgs>();
    CLI::App* cmd = app.add_subcommand(
        "convert", "Write a model (HF checkpoint or GGUF) as GGUF in a chosen ternary type");
    cmd->add_option("input", args->input, "Model directory, .safetensors or .gguf")->required();
    cmd->add_option("output", args->output, "GGUF file to write");
    cmd->add_option("--synthetic", args->synthetic,
                    "Write a random-weight model of this shape (2b, 1m) instead; the one "
                    "positional argument is then the output file");
    cmd->add_option("--type", args->type,
                    "Ternary projections: t2 (engine, 2-bit, zero-copy), t5 (engine, 1.6-bit, "
                    "zero-copy), tq2_0, tq1_0 (llama.cpp), i2_s (bitnet.cpp)")
        ->capture_default_str();
    cmd->add_option("--embedding", args->embedding,
                    "Embedding (and tied head) precision: keep, f32, f16, bf16, q8_0, i8")
        ->capture_default_str();
    cmd->add_option("--output-head", args->output_head,
                    "Untied output head precision: keep (= embedding), f32, f16, bf16, q8_0, i8")
        ->capture_default_str();
    cmd->add_option("--tokenizer", args->tokenizer,
                    "Write this tokenizer.json's vocabulary (file or directory) instead of the "
                    "source's; with --synthetic, instead of none");
    cmd->add_option("--name", args->name, "general.name to write");
    cmd->add_flag("-q,--quiet", args->quiet, "No progress bar");
    cmd->callback([args] { run_convert(*args); });
}

}  // namespace bitnet::cli
