// bitnet tokenize MODEL_OR_TOKENIZER [-p TEXT] [--json] [--no-special]: text -> token ids.
// Without -p the text is all of stdin, byte for byte (a trailing newline is part of it).
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "bitnet/tokenizer.h"
#include "commands.h"

namespace bitnet::cli {

namespace {

struct TokenizeArgs {
    std::string model;
    std::optional<std::string> prompt;
    bool json = false;
    bool no_special = false;
};

void run_tokenize(const TokenizeArgs& a) {
    const auto tokenizer = Tokenizer::load(a.model);
    std::string text;
    if (a.prompt) {
        text = *a.prompt;
    } else {
        text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    }
    const std::vector<int32_t> ids = tokenizer->encode(text, !a.no_special);
    if (a.json) {
        nlohmann::json pieces = nlohmann::json::array();
        for (const int32_t id : ids) pieces.push_back(tokenizer->piece(id));
        const nlohmann::json j = {{"ids", ids}, {"pieces", pieces}};
        std::printf("%s\n",
                    j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        return;
    }
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    std::printf("%s\n", line.c_str());
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
    auto args = std::make_shared<TokenizeArgs>();
    CLI::App* cmd =
        app.add_subcommand("tokenize", "Encode text to token ids (text from stdin without -p)");
    cmd->add_option("model", args->model, "model directory or tokenizer.json")->required();
    cmd->add_option("-p,--prompt", args->prompt, "the text to encode");
    cmd->add_flag("--json", args->json, "print {\"ids\": [...], \"pieces\": [...]}");
    cmd->add_flag("--no-special", args->no_special, "do not add the post-processor's tokens (BOS)");
    cmd->callback([args] { run_tokenize(*args); });
}

}  // namespace bitnet::cli
