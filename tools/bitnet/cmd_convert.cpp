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
    bool quiet = false;
};

void run_convert(ConvertArgs a) {
    if (!a.synthetic.empty()) {
        // Random weights of a named shape, e.g. a 2B-shaped file to benchmark a peer engine on.
        if (a.output.empty()) a.output = a.input;
        const auto model = make_synthetic_model({.shape = a.synthetic});
        GgufExportOptions o;
        o.ternary_type = parse_ternary_type(a.type);
        o.embedding_type = a.embedding == "keep" ? 0 : parse_dense_type(a.embedding);
        o.name = "synthetic-" + a.synthetic;
        ProgressBar bar("writing " + a.output, !a.quiet);
        o.progress = [&](uint64_t done, uint64_t total) { bar.update(done, total); };
        export_gguf(*model, nullptr, a.output, o);
        bar.finish();
        std::printf("wrote %s (synthetic %s, %s projections, no tokenizer)\n", a.output.c_str(),
                    a.synthetic.c_str(), gguf::tensor_type_name(o.ternary_type).c_str());
        return;
    }
    if (a.output.empty()) throw Error(ErrorCode::InvalidArgument, "convert: no output file given");
    const auto model = Model::load(a.input);
    std::shared_ptr<const Tokenizer> tokenizer;
    if (!gguf::is_gguf_file(a.input)) {
        try {
            tokenizer = Tokenizer::load(a.input);
        } catch (const Error& e) {
            if (e.code() != ErrorCode::NotFound) throw;
            std::fprintf(stderr, "bitnet convert: no tokenizer found beside %s; writing none\n",
                         a.input.c_str());
        }
    }
    GgufExportOptions o;
    o.ternary_type = parse_ternary_type(a.type);
    o.embedding_type = a.embedding == "keep" ? 0 : parse_dense_type(a.embedding);
    o.output_type = a.output_head == "keep" ? 0 : parse_dense_type(a.output_head);
    o.name = a.name;
    ProgressBar bar("writing " + a.output, !a.quiet);
    o.progress = [&](uint64_t done, uint64_t total) { bar.update(done, total); };
    // A GGUF source keeps its tokenizer metadata as written; a checkpoint's tokenizer.json is
    // translated the way llama.cpp's converter does.
    std::unique_ptr<GgufVocab> vocab;
    if (gguf::is_gguf_file(a.input)) {
        const gguf::File source(a.input);
        vocab = std::make_unique<GgufVocab>(gguf_vocab_from_file(source));
        if (o.name.empty()) o.name = source.get_string_opt("general.name").value_or("");
    } else if (tokenizer) {
        vocab = std::make_unique<GgufVocab>(
            gguf_vocab_from_tokenizer(*tokenizer, static_cast<size_t>(model->config().vocab_size)));
    }
    export_gguf(*model, vocab.get(), a.output, o);
    bar.finish();
    std::printf("wrote %s (%s projections) from %s\n", a.output.c_str(),
                gguf::tensor_type_name(o.ternary_type).c_str(), model->info().format.c_str());
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
    cmd->add_option("--name", args->name, "general.name to write");
    cmd->add_flag("-q,--quiet", args->quiet, "No progress bar");
    cmd->callback([args] { run_convert(*args); });
}

}  // namespace bitnet::cli
