// Tokenizer::load: finds tokenizer.json (+ tokenizer_config.json beside it), reads the BPE
// model, added tokens and post-processor, and assembles an HfTokenizer.
#include <algorithm>
#include <array>
#include <filesystem>

#include "bitnet/tokenizer.h"
#include "model/format/gguf.h"
#include "tokenizer/gguf_vocab_file.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer_json.h"

namespace bitnet {

namespace {

namespace fs = std::filesystem;
using namespace tok;

// Ids above this are not a real vocabulary but a corrupt file; refusing them bounds memory.
constexpr int64_t kMaxVocab = 1 << 24;

int32_t parse_id(const JsonCtx& c, const json& v, const std::string& field) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= kMaxVocab) {
        c.fail(ErrorCode::ParseError, field, "expected a token id in [0, 2^24)");
    }
    return static_cast<int32_t>(v.get<int64_t>());
}

std::vector<AddedToken> parse_added_tokens(const JsonCtx& c, const json& root) {
    std::vector<AddedToken> out;
    if (!root.contains("added_tokens") || root.at("added_tokens").is_null()) return out;
    const json& list = root.at("added_tokens");
    if (!list.is_array()) c.fail(ErrorCode::ParseError, "added_tokens", "expected a list");
    for (size_t i = 0; i < list.size(); ++i) {
        const std::string f = "added_tokens[" + std::to_string(i) + "]";
        const json& t = list[i];
        AddedToken a;
        a.id = parse_id(c, c.get(t, "id", f + ".id"), f + ".id");
        a.content = c.str(c.get(t, "content", f + ".content"), f + ".content");
        a.special = c.flag(t, "special", false, f);
        a.lstrip = c.flag(t, "lstrip", false, f);
        a.rstrip = c.flag(t, "rstrip", false, f);
        a.single_word = c.flag(t, "single_word", false, f);
        out.push_back(std::move(a));
    }
    return out;
}

// A merge as "a b" or ["a", "b"].
std::pair<std::string, std::string> parse_merge(const JsonCtx& c, const json& m,
                                                const std::string& field) {
    if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size()) {
            c.fail(ErrorCode::ParseError, field, "expected \"left right\", got \"" + s + "\"");
        }
        return {s.substr(0, sp), s.substr(sp + 1)};
    }
    if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        return {m[0].get<std::string>(), m[1].get<std::string>()};
    }
    c.fail(ErrorCode::ParseError, field, "expected \"left right\" or [\"left\", \"right\"]");
}

std::unique_ptr<BpeModel> parse_model(const JsonCtx& c, const json& root,
                                      const std::vector<AddedToken>& added) {
    const json& m = c.get(root, "model", "model");
    if (!m.is_object()) c.fail(ErrorCode::ParseError, "model", "expected an object");
    // Old files have no "type"; Hugging Face then recognises BPE by its fields.
    const std::string type = m.contains("type") ? c.str(m.at("type"), "model.type") : "BPE";
    if (type != "BPE") {
        c.fail(ErrorCode::UnsupportedFormat, "model.type",
               "model type '" + type + "' is not supported (only BPE is)");
    }
    const json& vocab = c.get(m, "vocab", "model.vocab");
    if (!vocab.is_object()) c.fail(ErrorCode::ParseError, "model.vocab", "expected an object");
    if (vocab.empty()) c.fail(ErrorCode::ParseError, "model.vocab", "empty");
    StringMap<int32_t> ids;
    ids.reserve(vocab.size());
    std::vector<std::string> pieces;
    for (const auto& [piece, v] : vocab.items()) {
        const int32_t id = parse_id(c, v, "model.vocab[\"" + piece + "\"]");
        if (static_cast<size_t>(id) >= pieces.size()) pieces.resize(id + 1);
        pieces[id] = piece;
        ids[piece] = id;
    }

    const json& merges = c.get(m, "merges", "model.merges");
    if (!merges.is_array()) c.fail(ErrorCode::ParseError, "model.merges", "expected a list");
    if (merges.empty()) c.fail(ErrorCode::ParseError, "model.merges", "empty: BPE needs merges");
    std::vector<std::array<int32_t, 3>> table;
    table.reserve(merges.size());
    std::string joined;
    for (size_t i = 0; i < merges.size(); ++i) {
        const std::string f = "model.merges[" + std::to_string(i) + "]";
        const auto [a, b] = parse_merge(c, merges[i], f);
        const auto ia = ids.find(a), ib = ids.find(b);
        joined = a + b;
        const auto ij = ids.find(joined);
        if (ia == ids.end() || ib == ids.end() || ij == ids.end()) {
            c.fail(ErrorCode::ParseError, f,
                   "'" + a + "', '" + b + "' or their merge is not in model.vocab");
        }
        table.push_back({ia->second, ib->second, ij->second});
    }

    BpeOptions opt;
    opt.byte_fallback = c.flag(m, "byte_fallback", false, "model");
    opt.fuse_unk = c.flag(m, "fuse_unk", false, "model");
    opt.ignore_merges = c.flag(m, "ignore_merges", false, "model");
    if (m.contains("unk_token") && !m.at("unk_token").is_null()) {
        const std::string unk = c.str(m.at("unk_token"), "model.unk_token");
        if (const auto it = ids.find(unk); it != ids.end()) {
            opt.unk_id = it->second;
        } else {
            for (const AddedToken& t : added) {
                if (t.content == unk) opt.unk_id = t.id;
            }
        }
        if (!opt.unk_id)
            c.fail(ErrorCode::ParseError, "model.unk_token", "'" + unk + "' is not a token");
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        if (m.contains(key) && !m.at(key).is_null() &&
            !(m.at(key).is_string() && m.at(key).get<std::string>().empty())) {
            c.fail(ErrorCode::UnsupportedFormat, std::string("model.") + key, "not supported");
        }
    }
    // `dropout` is a training-time option; inference encodes deterministically.
    return std::make_unique<BpeModel>(std::move(pieces), std::move(ids), table, opt);
}

std::optional<int32_t> lookup(const TokenizerParts& p, std::string_view piece) {
    for (const AddedToken& t : p.added) {
        if (t.content == piece) return t.id;
    }
    return p.model->find(piece);
}

// The single-sequence part of the post-processor: ids before and after the text.
void parse_post_processor(const JsonCtx& c, const json& pp, const std::string& field,
                          TokenizerParts& p) {
    if (pp.is_null()) return;
    const std::string type = c.type_of(pp, field);
    if (type == "Sequence") {
        const json& list = c.get(pp, "processors", field + ".processors");
        if (!list.is_array())
            c.fail(ErrorCode::ParseError, field + ".processors", "expected a list");
        for (size_t i = 0; i < list.size(); ++i) {
            parse_post_processor(c, list[i], field + ".processors[" + std::to_string(i) + "]", p);
        }
    } else if (type == "ByteLevel") {
        // Only adjusts offsets, which this engine does not report.
    } else if (type == "TemplateProcessing") {
        const json& single = c.get(pp, "single", field + ".single");
        if (!single.is_array()) c.fail(ErrorCode::ParseError, field + ".single", "expected a list");
        bool after = false;
        for (size_t i = 0; i < single.size(); ++i) {
            const std::string f = field + ".single[" + std::to_string(i) + "]";
            const json& item = single[i];
            if (item.is_object() && item.contains("Sequence")) {
                after = true;
                continue;
            }
            const std::string name =
                c.str(c.get(c.get(item, "SpecialToken", f), "id", f + ".SpecialToken.id"),
                      f + ".SpecialToken.id");
            std::vector<int32_t> ids;
            const json& specials = pp.contains("special_tokens") ? pp.at("special_tokens") : json();
            if (specials.is_object() && specials.contains(name)) {
                const std::string sf = field + ".special_tokens[\"" + name + "\"].ids";
                const json& list = c.get(specials.at(name), "ids", sf);
                if (!list.is_array()) c.fail(ErrorCode::ParseError, sf, "expected a list");
                for (const json& id : list) ids.push_back(parse_id(c, id, sf));
            } else if (const auto id = lookup(p, name)) {
                ids.push_back(*id);
            } else {
                c.fail(ErrorCode::ParseError, f, "special token '" + name + "' is not defined");
            }
            auto& dst = after ? p.suffix : p.prefix;
            dst.insert(dst.end(), ids.begin(), ids.end());
        }
    } else if (type == "BertProcessing" || type == "RobertaProcessing") {
        // {"cls": ["[CLS]", 101], "sep": ["[SEP]", 102]}: [CLS] text [SEP].
        for (const char* key : {"cls", "sep"}) {
            const json& v = c.get(pp, key, field + "." + key);
            if (!v.is_array() || v.size() != 2)
                c.fail(ErrorCode::ParseError, field + "." + key, "expected [token, id]");
            (std::string(key) == "cls" ? p.prefix : p.suffix)
                .push_back(parse_id(c, v[1], field + "." + key));
        }
    } else {
        c.fail(ErrorCode::UnsupportedFormat, field + ".type",
               "post-processor '" + type +
                   "' is not supported (Sequence, TemplateProcessing, ByteLevel, BertProcessing, "
                   "RobertaProcessing are)");
    }
}

// bos_token / eos_token in tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_token(const json& cfg, const char* key) {
    if (!cfg.is_object() || !cfg.contains(key)) return std::nullopt;
    const json& v = cfg.at(key);
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v.at("content").is_string()) {
        return v.at("content").get<std::string>();
    }
    return std::nullopt;
}

void apply_config(const JsonCtx& c, const json& cfg, TokenizerParts& p) {
    // BOS is what the template puts first; the config names it where there is no template.
    if (!p.prefix.empty()) p.bos = p.prefix.front();
    if (const auto name = config_token(cfg, "bos_token"); name && !p.bos) p.bos = lookup(p, *name);
    if (const auto name = config_token(cfg, "eos_token")) p.eos = lookup(p, *name);
    if (!p.eos) {
        for (const char* name : {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"}) {
            if ((p.eos = lookup(p, name))) break;
        }
    }
    if (p.eos) p.stop.push_back(*p.eos);
    for (const char* name :
         {"<|eot_id|>", "<|end_of_text|>", "</s>", "<|endoftext|>", "<|im_end|>"}) {
        for (const AddedToken& t : p.added) {
            if (t.special && t.content == name &&
                std::find(p.stop.begin(), p.stop.end(), t.id) == p.stop.end()) {
                p.stop.push_back(t.id);
            }
        }
    }
    if (cfg.is_object() && cfg.contains("chat_template")) {
        const json& t = cfg.at("chat_template");
        if (t.is_string()) {
            p.chat_template = t.get<std::string>();
        } else if (t.is_array()) {
            // Named templates: [{"name": "default", "template": "..."}, ...]
            for (const json& named : t) {
                if (named.is_object() && named.value("name", "") == "default") {
                    p.chat_template =
                        c.str(c.get(named, "template", "chat_template[default].template"),
                              "chat_template[default].template");
                }
            }
        } else if (!t.is_null()) {
            c.fail(ErrorCode::ParseError, "chat_template",
                   "expected a string or a list of named templates");
        }
    }
}

}  // namespace

std::shared_ptr<const Tokenizer> Tokenizer::load(const std::string& path) {
    // A GGUF file carries its tokenizer in its metadata.
    if (gguf::is_gguf_file(path))
        return make_gguf_tokenizer(gguf_vocab_from_file(gguf::File(path)));
    fs::path file = path;
    std::error_code ec;
    if (fs::is_directory(file, ec)) file /= "tokenizer.json";
    if (!fs::exists(file, ec)) {
        throw Error(ErrorCode::NotFound,
                    file.string() + ": no such file (a tokenizer.json or a directory holding one)");
    }
    JsonCtx c{file.string()};
    TokenizerParts p;
    try {
        const json root = read_json_file(file);
        if (!root.is_object()) c.fail(ErrorCode::ParseError, "(root)", "expected an object");
        p.added = parse_added_tokens(c, root);
        p.model = parse_model(c, root, p.added);
        parse_normalizer(c, root.value("normalizer", json()), "normalizer", p.normalizer);
        parse_pre_tokenizer(c, root.value("pre_tokenizer", json()), "pre_tokenizer",
                            p.pre_tokenizer);
        parse_decoder(c, root.value("decoder", json()), "decoder", p.decoder);
        parse_post_processor(c, root.value("post_processor", json()), "post_processor", p);
    } catch (const json::exception& e) {
        // A field of an unexpected JSON type that the checks above did not anticipate.
        throw Error(ErrorCode::ParseError, c.file + ": " + e.what());
    }
    const fs::path config_file = file.parent_path() / "tokenizer_config.json";
    json cfg;
    if (fs::exists(config_file, ec)) {
        const JsonCtx cc{config_file.string()};
        try {
            cfg = read_json_file(config_file);
            apply_config(cc, cfg, p);
        } catch (const json::exception& e) {
            throw Error(ErrorCode::ParseError, cc.file + ": " + e.what());
        }
    } else {
        apply_config(c, cfg, p);
    }
    return std::make_shared<HfTokenizer>(std::move(p));
}

}  // namespace bitnet
