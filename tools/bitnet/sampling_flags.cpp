#include "sampling_flags.h"

#include <atomic>
#include <cmath>
#include <csignal>
#include <stdexcept>

#include "bitnet/error.h"

namespace bitnet::cli {

namespace {
std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) {
    g_interrupted.store(true);
}
}  // namespace

void install_interrupt_handler() {
    std::signal(SIGINT, on_sigint);
}
bool interrupted() {
    return g_interrupted.load();
}
void clear_interrupt() {
    g_interrupted.store(false);
}

void GenerationFlags::add_to(CLI::App& app) {
    SamplingParams& s = params.sampling;
    app.add_option("-n,--n-predict", n_predict, "tokens to generate at most")
        ->capture_default_str();
    app.add_option("--temp", s.temperature, "temperature (0: greedy)")->capture_default_str();
    app.add_option("--top-k", s.top_k, "top-k sampling (0: off)")->capture_default_str();
    app.add_option("--top-p", s.top_p, "top-p sampling (1: off)")->capture_default_str();
    app.add_option("--min-p", s.min_p, "min-p sampling (0: off)")->capture_default_str();
    app.add_option("--repeat-penalty", s.repeat_penalty, "repetition penalty (1: off)")
        ->capture_default_str();
    app.add_option("--repeat-last-n", s.repeat_last_n,
                   "tokens the penalties look back at (-1: all)")
        ->capture_default_str();
    app.add_option("--frequency-penalty", s.frequency_penalty, "frequency penalty")
        ->capture_default_str();
    app.add_option("--presence-penalty", s.presence_penalty, "presence penalty")
        ->capture_default_str();
    app.add_option("-s,--seed", s.seed, "random seed")->capture_default_str();
    app.add_option("--stop", stop, "stop string (repeatable)");
    app.add_option("-l,--logit-bias", logit_bias,
                   "TOKEN_ID+BIAS or TOKEN_ID-BIAS added to a token's logit; TOKEN_ID-inf bans it "
                   "(repeatable)");
    app.add_option("--draft", params.draft_tokens,
                   "speculative decoding: tokens drafted by prompt lookup and verified per step, "
                   "same output (0: off)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_flag("--ignore-eos", params.ignore_eos, "keep generating past end-of-sequence tokens");
    app.add_flag("--special", params.show_special, "show special tokens in the output");
}

GenerationParams GenerationFlags::to_params() const {
    GenerationParams p = params;
    p.max_tokens = n_predict;
    p.stop_strings = stop;
    for (const std::string& item : logit_bias) {
        const size_t sign = item.find_first_of("+-", 1);
        size_t used = 0;
        long long id = -1;
        float bias = 0.f;
        try {
            id = std::stoll(item.substr(0, sign), &used);
            if (used != sign) throw std::invalid_argument("id");
            const std::string value = item.substr(sign);
            bias = value == "-inf"   ? -INFINITY
                   : value == "+inf" ? INFINITY
                                     : std::stof(value, &used);
            if (value != "-inf" && value != "+inf" && used != value.size())
                throw std::invalid_argument("bias");
        } catch (const std::exception&) {
            throw Error(ErrorCode::InvalidArgument,
                        "--logit-bias '" + item +
                            "': expected TOKEN_ID+BIAS, TOKEN_ID-BIAS or TOKEN_ID-inf");
        }
        if (sign == std::string::npos || id < 0 || id > INT32_MAX) {
            throw Error(ErrorCode::InvalidArgument,
                        "--logit-bias '" + item + "': expected TOKEN_ID+BIAS");
        }
        p.sampling.logit_bias[static_cast<int32_t>(id)] += bias;
    }
    return p;
}

}  // namespace bitnet::cli
