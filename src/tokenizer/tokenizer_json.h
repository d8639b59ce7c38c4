// Parsing of tokenizer.json's components (normalizer, pre-tokenizer, decoder), shared by the
// loader. Every error names the file and the JSON field at fault.
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "bitnet/error.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pretokenizer.h"

namespace bitnet::tok {

using nlohmann::json;

// The file being read, for error messages, and checked accessors.
struct JsonCtx {
    std::string file;
    [[noreturn]] void fail(ErrorCode code, const std::string& field,
                           const std::string& what) const {
        throw Error(code, file + ": field '" + field + "': " + what);
    }
    const json& get(const json& obj, const std::string& key, const std::string& field) const {
        if (!obj.is_object() || !obj.contains(key)) fail(ErrorCode::ParseError, field, "missing");
        return obj.at(key);
    }
    std::string str(const json& v, const std::string& field) const {
        if (!v.is_string()) fail(ErrorCode::ParseError, field, "expected a string");
        return v.get<std::string>();
    }
    // obj[key] as a boolean, `fallback` when absent or null.
    bool flag(const json& obj, const std::string& key, bool fallback,
              const std::string& field) const {
        if (!obj.is_object() || !obj.contains(key) || obj.at(key).is_null()) return fallback;
        if (!obj.at(key).is_boolean())
            fail(ErrorCode::ParseError, field + "." + key, "expected a boolean");
        return obj.at(key).get<bool>();
    }
    std::string type_of(const json& obj, const std::string& field) const {
        return str(get(obj, "type", field + ".type"), field + ".type");
    }
};

// Reads and parses a JSON file (IoError / ParseError naming it).
json read_json_file(const std::filesystem::path& path);

void parse_normalizer(const JsonCtx& c, const json& n, const std::string& field, Normalizer& out);
void parse_pre_tokenizer(const JsonCtx& c, const json& p, const std::string& field,
                         PreTokenizer& out);
void parse_decoder(const JsonCtx& c, const json& d, const std::string& field, Decoder& out);

}  // namespace bitnet::tok
