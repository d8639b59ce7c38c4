#include "tokenizer/tokenizer_json.h"

#include <fstream>
#include <sstream>

namespace bitnet::tok {

json read_json_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCode::IoError, path.string() + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    try {
        return json::parse(ss.str());
    } catch (const json::exception& e) {
        throw Error(ErrorCode::ParseError, path.string() + ": not valid JSON: " + e.what());
    }
}

namespace {

// A `{"String": "..."}` or `{"Regex": "..."}` pattern.
std::shared_ptr<const Regex> parse_pattern(const JsonCtx& c, const json& p,
                                           const std::string& field, std::string* literal) {
    if (p.is_object() && p.contains("String")) {
        const std::string s = c.str(p.at("String"), field + ".String");
        if (literal != nullptr) {
            *literal = s;
            return nullptr;
        }
        return std::make_shared<Regex>(s, true, c.file + ": field '" + field + "'");
    }
    if (p.is_object() && p.contains("Regex")) {
        return std::make_shared<Regex>(c.str(p.at("Regex"), field + ".Regex"), false,
                                       c.file + ": field '" + field + "'");
    }
    c.fail(ErrorCode::ParseError, field, "expected {\"String\": ...} or {\"Regex\": ...}");
}

PreTokenizerStep::Prepend parse_prepend_scheme(const JsonCtx& c, const json& p,
                                               const std::string& field) {
    if (p.contains("prepend_scheme")) {
        const std::string s = c.str(p.at("prepend_scheme"), field + ".prepend_scheme");
        if (s == "always") return PreTokenizerStep::Prepend::Always;
        if (s == "first") return PreTokenizerStep::Prepend::First;
        if (s == "never") return PreTokenizerStep::Prepend::Never;
        c.fail(ErrorCode::UnsupportedFormat, field + ".prepend_scheme",
               "unknown value '" + s + "'");
    }
    // Older files: add_prefix_space (default true).
    return c.flag(p, "add_prefix_space", true, field) ? PreTokenizerStep::Prepend::Always
                                                      : PreTokenizerStep::Prepend::Never;
}

}  // namespace

void parse_normalizer(const JsonCtx& c, const json& n, const std::string& field, Normalizer& out) {
    if (n.is_null()) return;
    const std::string type = c.type_of(n, field);
    if (type == "Sequence") {
        const json& list = c.get(n, "normalizers", field + ".normalizers");
        if (!list.is_array())
            c.fail(ErrorCode::ParseError, field + ".normalizers", "expected a list");
        for (size_t i = 0; i < list.size(); ++i) {
            parse_normalizer(c, list[i], field + ".normalizers[" + std::to_string(i) + "]", out);
        }
    } else if (type == "Prepend") {
        out.steps.push_back({NormalizerStep::Kind::Prepend,
                             c.str(c.get(n, "prepend", field + ".prepend"), field + ".prepend"),
                             {},
                             nullptr});
    } else if (type == "Replace") {
        NormalizerStep s{NormalizerStep::Kind::Replace, {}, {}, nullptr};
        s.regex =
            parse_pattern(c, c.get(n, "pattern", field + ".pattern"), field + ".pattern", &s.text);
        s.content = c.str(c.get(n, "content", field + ".content"), field + ".content");
        out.steps.push_back(std::move(s));
    } else {
        c.fail(ErrorCode::UnsupportedFormat, field + ".type",
               "normalizer '" + type + "' is not supported (Sequence, Prepend, Replace are)");
    }
}

void parse_pre_tokenizer(const JsonCtx& c, const json& p, const std::string& field,
                         PreTokenizer& out) {
    if (p.is_null()) return;
    const std::string type = c.type_of(p, field);
    PreTokenizerStep s;
    if (type == "Sequence") {
        const json& list = c.get(p, "pretokenizers", field + ".pretokenizers");
        if (!list.is_array())
            c.fail(ErrorCode::ParseError, field + ".pretokenizers", "expected a list");
        for (size_t i = 0; i < list.size(); ++i) {
            parse_pre_tokenizer(c, list[i], field + ".pretokenizers[" + std::to_string(i) + "]",
                                out);
        }
        return;
    } else if (type == "Split") {
        s.kind = PreTokenizerStep::Kind::Split;
        s.regex =
            parse_pattern(c, c.get(p, "pattern", field + ".pattern"), field + ".pattern", nullptr);
        const std::string b = c.str(c.get(p, "behavior", field + ".behavior"), field + ".behavior");
        if (b == "Removed")
            s.behavior = SplitBehavior::Removed;
        else if (b == "Isolated")
            s.behavior = SplitBehavior::Isolated;
        else if (b == "MergedWithPrevious")
            s.behavior = SplitBehavior::MergedWithPrevious;
        else if (b == "MergedWithNext")
            s.behavior = SplitBehavior::MergedWithNext;
        else if (b == "Contiguous")
            s.behavior = SplitBehavior::Contiguous;
        else
            c.fail(ErrorCode::UnsupportedFormat, field + ".behavior",
                   "unknown behavior '" + b + "'");
        s.invert = c.flag(p, "invert", false, field);
    } else if (type == "ByteLevel") {
        s.kind = PreTokenizerStep::Kind::ByteLevel;
        s.add_prefix_space = c.flag(p, "add_prefix_space", true, field);
        if (c.flag(p, "use_regex", true, field)) {
            s.regex = std::make_shared<Regex>(kGpt2SplitPattern, false, c.file + ": " + field);
        }
    } else if (type == "Metaspace") {
        s.kind = PreTokenizerStep::Kind::Metaspace;
        if (p.contains("replacement"))
            s.replacement = c.str(p.at("replacement"), field + ".replacement");
        s.prepend = parse_prepend_scheme(c, p, field);
        s.split = c.flag(p, "split", true, field);
    } else if (type == "Digits") {
        s.kind = PreTokenizerStep::Kind::Split;
        const bool individual = c.flag(p, "individual_digits", false, field);
        s.regex = std::make_shared<Regex>(individual ? "\\p{N}" : "\\p{N}+", false,
                                          c.file + ": " + field);
    } else {
        c.fail(ErrorCode::UnsupportedFormat, field + ".type",
               "pre-tokenizer '" + type +
                   "' is not supported (Sequence, Split, ByteLevel, Metaspace, Digits are)");
    }
    out.steps.push_back(std::move(s));
}

void parse_decoder(const JsonCtx& c, const json& d, const std::string& field, Decoder& out) {
    if (d.is_null()) return;
    out.present = true;
    const std::string type = c.type_of(d, field);
    DecoderStep s;
    if (type == "Sequence") {
        const json& list = c.get(d, "decoders", field + ".decoders");
        if (!list.is_array()) c.fail(ErrorCode::ParseError, field + ".decoders", "expected a list");
        for (size_t i = 0; i < list.size(); ++i) {
            parse_decoder(c, list[i], field + ".decoders[" + std::to_string(i) + "]", out);
        }
        return;
    } else if (type == "ByteLevel") {
        s.kind = DecoderStep::Kind::ByteLevel;
    } else if (type == "ByteFallback") {
        s.kind = DecoderStep::Kind::ByteFallback;
    } else if (type == "Fuse") {
        s.kind = DecoderStep::Kind::Fuse;
    } else if (type == "Replace") {
        s.kind = DecoderStep::Kind::Replace;
        const json& pat = c.get(d, "pattern", field + ".pattern");
        if (!pat.contains("String"))
            c.fail(ErrorCode::UnsupportedFormat, field + ".pattern",
                   "only String patterns are supported in decoders");
        s.pattern = c.str(pat.at("String"), field + ".pattern.String");
        s.content = c.str(c.get(d, "content", field + ".content"), field + ".content");
    } else if (type == "Strip") {
        s.kind = DecoderStep::Kind::Strip;
        s.content = c.str(c.get(d, "content", field + ".content"), field + ".content");
        const json& start = c.get(d, "start", field + ".start");
        const json& stop = c.get(d, "stop", field + ".stop");
        if (!start.is_number_unsigned() || !stop.is_number_unsigned())
            c.fail(ErrorCode::ParseError, field, "start/stop must be non-negative integers");
        s.start = start.get<size_t>();
        s.stop = stop.get<size_t>();
    } else if (type == "Metaspace") {
        s.kind = DecoderStep::Kind::Metaspace;
        s.pattern = d.contains("replacement") ? c.str(d.at("replacement"), field + ".replacement")
                                              : "\xE2\x96\x81";
        s.strip_first_space = parse_prepend_scheme(c, d, field) != PreTokenizerStep::Prepend::Never;
    } else {
        c.fail(ErrorCode::UnsupportedFormat, field + ".type",
               "decoder '" + type +
                   "' is not supported (Sequence, ByteLevel, ByteFallback, Fuse, Replace, Strip, "
                   "Metaspace are)");
    }
    out.steps.push_back(std::move(s));
}

}  // namespace bitnet::tok
