// gguf_vocab_from_tokenizer: a tokenizer.json pipeline -> the GGUF tokenizer metadata that
// llama.cpp's convert_hf_to_gguf.py writes for it.
#include <algorithm>
#include <string_view>

#include "bitnet/error.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/unicode.h"

namespace bitnet {

namespace {

using namespace tok;

constexpr const char* kSentencePieceSpace = "\xE2\x96\x81";  // U+2581

[[noreturn]] void unsupported(const std::string& what) {
    throw Error(ErrorCode::UnsupportedFormat, "GGUF vocabulary of a tokenizer.json: " + what);
}

// convert_hf_to_gguf.py's does_token_look_special: added tokens it writes as control tokens
// even where tokenizer.json does not mark them special.
bool looks_special(std::string_view t) {
    if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
    if (t.starts_with("<|") && t.ends_with("|>")) return true;
    if (t.starts_with("<\xEF\xBD\x9C") && t.ends_with("\xEF\xBD\x9C>")) return true;  // <｜…｜>
    return t.starts_with("<unused") && t.ends_with(">");
}

bool is_byte_token(std::string_view t) {
    const auto hex = [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
    };
    return t.size() == 6 && t.starts_with("<0x") && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

// The tokenizer.ggml.pre name of a byte-level pre-tokenizer, as convert_hf_to_gguf.py
// recognises it: Llama-3's split regex, or GPT-2's ByteLevel regex alone.
std::string byte_level_pre_name(const PreTokenizer& pre) {
    const auto is_split = [](const PreTokenizerStep& s, const char* pattern) {
        return s.kind == PreTokenizerStep::Kind::Split && s.regex && !s.regex->literal() &&
               s.regex->pattern() == pattern && s.behavior == SplitBehavior::Isolated && !s.invert;
    };
    const auto is_byte_level = [](const PreTokenizerStep& s, const char* pattern) {
        return s.kind == PreTokenizerStep::Kind::ByteLevel && !s.add_prefix_space &&
               (pattern == nullptr ? !s.regex : s.regex && s.regex->pattern() == pattern);
    };
    const auto& steps = pre.steps;
    if (steps.size() == 2 && is_split(steps[0], kLlama3SplitPattern) &&
        is_byte_level(steps[1], nullptr)) {
        return "llama-bpe";
    }
    if (steps.size() == 1 && is_byte_level(steps[0], kGpt2SplitPattern)) return "gpt-2";
    unsupported(
        "the byte-level pre-tokenizer is neither Llama-3's (split regex, then ByteLevel without "
        "prefix space) nor GPT-2's (ByteLevel with its regex, without prefix space), so it has "
        "no tokenizer.ggml.pre name that llama.cpp reads the same way");
}

// Whether a SentencePiece-style pipeline prepends U+2581 to the text (add_space_prefix).
bool sentencepiece_space_prefix(const TokenizerParts& p) {
    const auto& norm = p.normalizer.steps;
    const auto is_prepend = [](const NormalizerStep& s) {
        return s.kind == NormalizerStep::Kind::Prepend && s.text == kSentencePieceSpace;
    };
    const auto is_escape = [](const NormalizerStep& s) {
        return s.kind == NormalizerStep::Kind::Replace && !s.regex && s.text == " " &&
               s.content == kSentencePieceSpace;
    };
    const auto& pre = p.pre_tokenizer.steps;
    if (pre.empty()) {
        if (norm.size() == 2 && is_prepend(norm[0]) && is_escape(norm[1])) return true;
        if (norm.size() == 1 && is_escape(norm[0])) return false;
    } else if (norm.empty() && pre.size() == 1 &&
               pre[0].kind == PreTokenizerStep::Kind::Metaspace &&
               pre[0].replacement == kSentencePieceSpace) {
        return pre[0].prepend != PreTokenizerStep::Prepend::Never;
    }
    unsupported(
        "a BPE tokenizer that is not byte-level must be SentencePiece's layout (normalizer "
        "[Prepend(U+2581)], Replace(' ' -> U+2581) or a Metaspace pre-tokenizer)");
}

// One special token before / after the text, or none.
bool adds_token(const std::vector<int32_t>& ids, const std::optional<int32_t>& id,
                const char* where) {
    if (ids.empty()) return false;
    if (ids.size() == 1 && id && ids[0] == *id) return true;
    unsupported(std::string("the post-processor puts ") + std::to_string(ids.size()) +
                " token(s) " + where + " the text, which GGUF cannot express");
}

}  // namespace

GgufVocab gguf_vocab_from_tokenizer(const Tokenizer& tokenizer, size_t model_vocab_size) {
    const auto* hf = dynamic_cast<const HfTokenizer*>(&tokenizer);
    if (hf == nullptr) {
        throw Error(ErrorCode::InvalidArgument,
                    "gguf_vocab_from_tokenizer: only a tokenizer loaded from tokenizer.json can "
                    "be written as GGUF metadata");
    }
    const TokenizerParts& p = hf->parts();
    const BpeModel& bpe = *p.model;
    const bool byte_level = p.pre_tokenizer.byte_level();

    GgufVocab v;
    v.source = "tokenizer.json";
    if (byte_level) {
        if (!p.normalizer.empty()) unsupported("a byte-level tokenizer with a normalizer");
        v.model = "gpt2";
        v.pre = byte_level_pre_name(p.pre_tokenizer);
    } else {
        if (!bpe.options().byte_fallback) {
            unsupported(
                "SentencePiece-style BPE without byte_fallback (llama.cpp always falls "
                "back to <0xNN> tokens)");
        }
        v.model = "llama";
        v.add_space_prefix = sentencepiece_space_prefix(p);
    }

    const size_t n_tokenizer = static_cast<size_t>(tokenizer.vocab_size());
    const size_t n = std::max(n_tokenizer, model_vocab_size);
    std::vector<const AddedToken*> added(n, nullptr);
    for (const AddedToken& t : p.added) added[t.id] = &t;
    const std::optional<int32_t> unk = bpe.options().unk_id;

    v.tokens.reserve(n);
    v.token_types.reserve(n);
    for (size_t id = 0; id < n; ++id) {
        std::string text = id < n_tokenizer ? tokenizer.piece(static_cast<int32_t>(id)) : "";
        GgufTokenType type = GgufTokenType::Normal;
        if (text.empty()) {
            // Ids no token uses (or embedding rows past the tokenizer), named as the converter
            // names them.
            text = "[PAD" + std::to_string(id) + "]";
            type = GgufTokenType::Unused;
        } else if (!byte_level && unk && static_cast<size_t>(*unk) == id) {
            type = GgufTokenType::Unknown;
        } else if (!byte_level && !added[id] && is_byte_token(text)) {
            type = GgufTokenType::Byte;
        } else if (added[id] != nullptr) {
            if (added[id]->special || looks_special(text)) {
                type = GgufTokenType::Control;
            } else {
                // llama.cpp matches user-defined tokens in the raw text, before U+2581
                // replaces spaces, so the converter writes them with spaces.
                type = GgufTokenType::UserDefined;
                text = replace_literal(text, kSentencePieceSpace, " ");
            }
        }
        v.tokens.push_back(std::move(text));
        v.token_types.push_back(static_cast<int32_t>(type));
    }

    const auto merges = bpe.merges();
    const auto& pieces = bpe.pieces();
    if (byte_level) {
        v.merges.reserve(merges.size());
        for (const auto& [left, right, merged] : merges) {
            if (pieces[left].find(' ') != std::string::npos ||
                pieces[right].find(' ') != std::string::npos) {
                unsupported("the merge of '" + pieces[left] + "' and '" + pieces[right] +
                            "' has a space, which the \"a b\" form of GGUF merges cannot hold");
            }
            v.merges.push_back(pieces[left] + " " + pieces[right]);
        }
    } else {
        // SentencePiece merges the pair whose merged token scores highest, so a token's score
        // is minus the rank of its first merge: the merges then happen in tokenizer.json's
        // order. Tokens no merge makes score below all of those; the others (control, byte,
        // unknown) score 0, as in SentencePiece models.
        v.scores.assign(n, 0.0f);
        std::vector<bool> scored(n, false);
        for (size_t rank = 0; rank < merges.size(); ++rank) {
            const auto merged = static_cast<size_t>(merges[rank][2]);
            if (scored[merged]) continue;
            scored[merged] = true;
            v.scores[merged] = -static_cast<float>(rank);
        }
        for (size_t id = 0; id < n; ++id) {
            if (!scored[id] && v.token_types[id] == static_cast<int32_t>(GgufTokenType::Normal))
                v.scores[id] = -static_cast<float>(merges.size() + id);
        }
    }

    v.bos = p.bos;
    v.eos = p.eos;
    v.unk = unk;
    // The end-of-turn token: the first stop token, other than EOS, that llama.cpp would take
    // for it by its text.
    for (const char* text : kGgufEotTexts) {
        const auto id = tokenizer.token_id(text);
        if (id && id != p.eos && std::find(p.stop.begin(), p.stop.end(), *id) != p.stop.end()) {
            v.eot = id;
            break;
        }
    }
    v.add_bos = adds_token(p.prefix, p.bos, "before");
    v.add_eos = adds_token(p.suffix, p.eos, "after");
    v.chat_template = tokenizer.chat_template();
    return v;
}

}  // namespace bitnet
