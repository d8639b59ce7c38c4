#include "tokenizer/decoder.h"

#include <optional>
#include <utility>

#include "tokenizer/unicode.h"

namespace bitnet::tok {

namespace {

constexpr const char* kReplacementChar = "\xEF\xBF\xBD";

// All tokens -> one string of their bytes. A token whose characters are not all in the
// byte-level table (an added token written in plain text) contributes its own UTF-8 bytes.
std::vector<std::string> byte_level(std::vector<std::string> tokens) {
    std::string bytes;
    for (const std::string& t : tokens) {
        const size_t mark = bytes.size();
        if (!byte_level_to_bytes(t, bytes)) {
            bytes.resize(mark);
            bytes += t;
        }
    }
    return {utf8_lossy(bytes)};
}

std::optional<unsigned char> byte_token(const std::string& t) {
    if (t.size() != 6 || !t.starts_with("<0x") || t[5] != '>') return std::nullopt;
    const auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    const int hi = hex(t[3]), lo = hex(t[4]);
    if (hi < 0 || lo < 0) return std::nullopt;
    return static_cast<unsigned char>(hi * 16 + lo);
}

// Runs of <0xXX> tokens become the text of their bytes; a run that is not valid UTF-8 becomes
// one U+FFFD per byte (Hugging Face's ByteFallback).
std::vector<std::string> byte_fallback(std::vector<std::string> tokens) {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    size_t run_tokens = 0;
    const auto flush = [&] {
        if (run_tokens == 0) return;
        if (utf8_valid(run)) {
            out.push_back(run);
        } else {
            for (size_t i = 0; i < run_tokens; ++i) out.emplace_back(kReplacementChar);
        }
        run.clear();
        run_tokens = 0;
    };
    for (std::string& t : tokens) {
        if (const auto b = byte_token(t)) {
            run += static_cast<char>(*b);
            ++run_tokens;
        } else {
            flush();
            out.push_back(std::move(t));
        }
    }
    flush();
    return out;
}

void strip(std::string& t, const std::string& c, size_t start, size_t stop) {
    if (c.empty()) return;
    for (size_t i = 0; i < start && t.starts_with(c); ++i) t.erase(0, c.size());
    for (size_t i = 0; i < stop && t.ends_with(c); ++i) t.resize(t.size() - c.size());
}

}  // namespace

std::string Decoder::decode(std::vector<std::string> tokens) const {
    if (!present) {
        std::string out;
        for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
        return utf8_lossy(out);
    }
    for (const DecoderStep& step : steps) {
        switch (step.kind) {
            case DecoderStep::Kind::ByteLevel:
                tokens = byte_level(std::move(tokens));
                break;
            case DecoderStep::Kind::ByteFallback:
                tokens = byte_fallback(std::move(tokens));
                break;
            case DecoderStep::Kind::Replace:
                for (std::string& t : tokens) t = replace_literal(t, step.pattern, step.content);
                break;
            case DecoderStep::Kind::Fuse: {
                std::string all;
                for (const std::string& t : tokens) all += t;
                tokens = {std::move(all)};
                break;
            }
            case DecoderStep::Kind::Strip:
                for (std::string& t : tokens) strip(t, step.content, step.start, step.stop);
                break;
            case DecoderStep::Kind::Metaspace:
                for (size_t i = 0; i < tokens.size(); ++i) {
                    tokens[i] = replace_literal(tokens[i], step.pattern, " ");
                    if (i == 0 && step.strip_first_space && tokens[i].starts_with(' ')) {
                        tokens[i].erase(0, 1);
                    }
                }
                break;
        }
    }
    std::string out;
    for (const std::string& t : tokens) out += t;
    // Tokens are valid UTF-8 except where byte tokens were joined without ByteFallback.
    return utf8_valid(out) ? out : utf8_lossy(out);
}

}  // namespace bitnet::tok
