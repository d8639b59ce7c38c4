#include "tokenizer/gguf_vocab_file.h"

#include <cstdint>
#include <limits>
#include <utility>

#include "bitnet/error.h"
#include "model/format/gguf.h"
#include "model/format/gguf_writer.h"

namespace bitnet {

namespace {

[[noreturn]] void key_error(const gguf::File& f, const std::string& key, const std::string& what) {
    throw Error(ErrorCode::ParseError, f.path() + ": " + key + ": " + what);
}

int32_t to_int32(const gguf::File& f, int64_t v, const std::string& key) {
    if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
        key_error(f, key, std::to_string(v) + " does not fit a 32-bit token id or type");
    }
    return static_cast<int32_t>(v);
}

std::optional<int32_t> id_opt(const gguf::File& f, const char* key) {
    const auto v = f.get_int_opt(key);
    if (!v) return std::nullopt;
    return to_int32(f, *v, key);
}

}  // namespace

GgufVocab gguf_vocab_from_file(const gguf::File& f) {
    GgufVocab v;
    v.source = f.path();
    v.model = f.get_string_opt(gguf_key::kModel).value_or("");
    v.pre = f.get_string_opt(gguf_key::kPre).value_or("");
    v.tokens = f.get_string_array(gguf_key::kTokens);
    for (const double s : f.get_float_array(gguf_key::kScores)) {
        v.scores.push_back(static_cast<float>(s));
    }
    const std::vector<int64_t> types = f.get_int_array(gguf_key::kTokenType);
    v.token_types.reserve(types.size());
    for (size_t i = 0; i < types.size(); ++i) {
        v.token_types.push_back(to_int32(
            f, types[i], std::string(gguf_key::kTokenType) + "[" + std::to_string(i) + "]"));
    }
    v.merges = f.get_string_array(gguf_key::kMerges);
    v.bos = id_opt(f, gguf_key::kBos);
    v.eos = id_opt(f, gguf_key::kEos);
    v.eot = id_opt(f, gguf_key::kEot);
    v.eom = id_opt(f, gguf_key::kEom);
    v.unk = id_opt(f, gguf_key::kUnk);
    v.pad = id_opt(f, gguf_key::kPad);
    v.add_bos = f.get_bool_opt(gguf_key::kAddBos);
    v.add_eos = f.get_bool_opt(gguf_key::kAddEos);
    v.add_space_prefix = f.get_bool_opt(gguf_key::kAddSpacePrefix);
    v.chat_template = f.get_string_opt(gguf_key::kChatTemplate).value_or("");
    return v;
}

void add_gguf_vocab_metadata(const GgufVocab& v, gguf::Writer& w) {
    w.set_string(gguf_key::kModel, v.model);
    if (!v.pre.empty()) w.set_string(gguf_key::kPre, v.pre);
    w.set_string_array(gguf_key::kTokens, v.tokens);
    if (!v.scores.empty()) w.set_f32_array(gguf_key::kScores, v.scores);
    if (!v.token_types.empty()) w.set_i32_array(gguf_key::kTokenType, v.token_types);
    if (!v.merges.empty()) w.set_string_array(gguf_key::kMerges, v.merges);
    const std::pair<const char*, const std::optional<int32_t>*> ids[] = {
        {gguf_key::kBos, &v.bos}, {gguf_key::kEos, &v.eos}, {gguf_key::kEot, &v.eot},
        {gguf_key::kEom, &v.eom}, {gguf_key::kUnk, &v.unk}, {gguf_key::kPad, &v.pad}};
    for (const auto& [key, id] : ids) {
        if (!id->has_value()) continue;
        if (**id < 0) {
            throw Error(ErrorCode::InvalidArgument,
                        std::string("GGUF vocabulary: ") + key + " is negative");
        }
        w.set_u32(key, static_cast<uint32_t>(**id));
    }
    if (v.add_bos) w.set_bool(gguf_key::kAddBos, *v.add_bos);
    if (v.add_eos) w.set_bool(gguf_key::kAddEos, *v.add_eos);
    if (v.add_space_prefix) w.set_bool(gguf_key::kAddSpacePrefix, *v.add_space_prefix);
    if (!v.chat_template.empty()) w.set_string(gguf_key::kChatTemplate, v.chat_template);
}

}  // namespace bitnet
