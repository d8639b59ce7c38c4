#include <cstdio>

#include "bitnet/error.h"
#include "commands.h"

int main(int argc, char** argv) {
    CLI::App app{"bitnet: inference for BitNet b1.58 models"};
    app.require_subcommand(1);
    bitnet::cli::add_info_command(app);
    bitnet::cli::add_logits_command(app);
    bitnet::cli::add_tokenize_command(app);
    bitnet::cli::add_generate_command(app);
    bitnet::cli::add_chat_command(app);
    bitnet::cli::add_bench_command(app);
    bitnet::cli::add_perplexity_command(app);
    bitnet::cli::add_convert_command(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const bitnet::Error& e) {
        std::fprintf(stderr, "bitnet: error (%s): %s\n", bitnet::to_string(e.code()), e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bitnet: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
