// make_gguf_tokenizer: GGUF tokenizer metadata -> the engine's tokenizer pipeline, with the
// defaults and pre-tokenizer names of llama.cpp's llama-vocab.cpp.
#include "tokenizer/gguf_vocab.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string_view>
#include <utility>

#include "bitnet/error.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/unicode.h"

namespace bitnet {

namespace {

using namespace tok;

constexpr const char* kSentencePieceSpace = "\xE2\x96\x81";  // U+2581

// More ids than this is not a vocabulary but a corrupt file; refusing them bounds memory.
constexpr size_t kMaxTokens = size_t{1} << 24;

// How llama.cpp pre-tokenizes a BPE vocabulary of a given tokenizer.ggml.pre name: the split
// patterns, applied in turn (each keeps matches and the text between them as pieces).
struct BpePre {
    std::vector<const char*> patterns;
    bool ignore_merges = false;  // a pre-token that is itself a token is not merged
    bool add_bos = false;        // default of tokenizer.ggml.add_bos_token
};

constexpr const char* kKnownPreNames =
    "default, llama3, llama-v3, llama-bpe, falcon3, dbrx, smaug-bpe, gpt-2, phi-2, mpt, olmo";

std::optional<BpePre> bpe_pre(const std::string& name) {
    const auto is_one_of = [&](std::initializer_list<const char*> names) {
        return std::any_of(names.begin(), names.end(), [&](const char* n) { return name == n; });
    };
    if (name.empty() || name == "default") {
        // llama.cpp's fallback for files converted without a pre name.
        return BpePre{
            {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2SplitPattern, "\\p{N}+", "[0-9][0-9][0-9]"},
            false,
            false};
    }
    if (is_one_of({"llama3", "llama-v3", "llama-bpe", "falcon3"})) {
        return BpePre{{kLlama3SplitPattern}, true, true};
    }
    if (is_one_of({"dbrx", "smaug-bpe"})) return BpePre{{kLlama3SplitPattern}, false, false};
    if (is_one_of({"gpt-2", "phi-2", "mpt", "olmo"})) {
        return BpePre{{kGpt2SplitPattern}, false, false};
    }
    return std::nullopt;
}

constexpr const char* kEomText = "<|eom_id|>";

class GgufTokenizerBuilder {
  public:
    explicit GgufTokenizerBuilder(const GgufVocab& v)
        : v_(v), where_(v.source.empty() ? std::string("GGUF vocabulary") : v.source) {}

    std::shared_ptr<const Tokenizer> build() {
        check_model();
        read_tokens();
        read_types();
        read_special_ids();
        collect_added_tokens();
        if (v_.model == "gpt2") {
            build_byte_level_bpe();
        } else {
            build_sentencepiece();
        }
        apply_add_special();
        parts_.bos = bos_;
        parts_.eos = eos_;
        for (const auto& id : {eos_, eot_, eom_}) {
            if (id && std::find(parts_.stop.begin(), parts_.stop.end(), *id) == parts_.stop.end())
                parts_.stop.push_back(*id);
        }
        parts_.chat_template = v_.chat_template;
        return std::make_shared<HfTokenizer>(std::move(parts_));
    }

  private:
    [[noreturn]] void fail(ErrorCode code, const std::string& key, const std::string& what) const {
        throw Error(code, where_ + ": " + key + ": " + what);
    }
    static std::string indexed(const char* key, size_t i) {
        return std::string(key) + "[" + std::to_string(i) + "]";
    }
    size_t n() const { return pieces_.size(); }

    void check_model() const {
        if (v_.model.empty()) fail(ErrorCode::ParseError, gguf_key::kModel, "missing");
        if (v_.model != "gpt2" && v_.model != "llama") {
            fail(ErrorCode::UnsupportedFormat, gguf_key::kModel,
                 "tokenizer model '" + v_.model +
                     "' is not supported (gpt2: byte-level BPE, llama: SentencePiece BPE)");
        }
    }

    void read_tokens() {
        if (v_.tokens.empty()) fail(ErrorCode::ParseError, gguf_key::kTokens, "missing or empty");
        if (v_.tokens.size() > kMaxTokens) {
            fail(ErrorCode::ParseError, gguf_key::kTokens,
                 std::to_string(v_.tokens.size()) + " tokens (at most 2^24 are accepted)");
        }
        pieces_.reserve(v_.tokens.size());
        ids_.reserve(v_.tokens.size());
        for (size_t i = 0; i < v_.tokens.size(); ++i) {
            // llama.cpp's stand-in for an empty token, which could never be matched.
            std::string text =
                v_.tokens[i].empty() ? "[EMPTY_" + std::to_string(i) + "]" : v_.tokens[i];
            const auto [it, inserted] = ids_.emplace(text, static_cast<int32_t>(i));
            if (!inserted) {
                fail(ErrorCode::ParseError, indexed(gguf_key::kTokens, i),
                     "duplicate token '" + text + "' (also id " + std::to_string(it->second) + ")");
            }
            pieces_.push_back(std::move(text));
        }
        if (!v_.scores.empty()) {
            if (v_.scores.size() != n()) {
                fail(ErrorCode::ParseError, gguf_key::kScores,
                     std::to_string(v_.scores.size()) + " scores for " + std::to_string(n()) +
                         " tokens");
            }
            for (size_t i = 0; i < n(); ++i) {
                if (std::isnan(v_.scores[i]))
                    fail(ErrorCode::ParseError, indexed(gguf_key::kScores, i), "NaN");
            }
        }
    }

    void read_types() {
        types_.assign(n(), static_cast<int32_t>(GgufTokenType::Normal));
        if (v_.token_types.empty()) return;
        if (v_.token_types.size() != n()) {
            fail(ErrorCode::ParseError, gguf_key::kTokenType,
                 std::to_string(v_.token_types.size()) + " types for " + std::to_string(n()) +
                     " tokens");
        }
        for (size_t i = 0; i < n(); ++i) {
            const int32_t t = v_.token_types[i];
            if (t < static_cast<int32_t>(GgufTokenType::Normal) ||
                t > static_cast<int32_t>(GgufTokenType::Byte)) {
                fail(ErrorCode::ParseError, indexed(gguf_key::kTokenType, i),
                     "token type " + std::to_string(t) +
                         " (expected 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, "
                         "6 byte)");
            }
            types_[i] = t;
        }
    }

    std::optional<int32_t> checked_id(const std::optional<int32_t>& id, const char* key) const {
        if (id && (*id < 0 || static_cast<size_t>(*id) >= n())) {
            fail(ErrorCode::ParseError, key,
                 "token id " + std::to_string(*id) + " is outside the vocabulary (" +
                     std::to_string(n()) + " tokens)");
        }
        return id;
    }

    // A default id of llama.cpp's, dropped when the vocabulary is too small for it.
    std::optional<int32_t> default_id(int32_t id) const {
        return static_cast<size_t>(id) < n() ? std::optional<int32_t>(id) : std::nullopt;
    }

    std::optional<int32_t> find_text(std::string_view text) const {
        const auto it = ids_.find(text);
        return it == ids_.end() ? std::nullopt : std::optional<int32_t>(it->second);
    }

    void read_special_ids() {
        bos_ = checked_id(v_.bos, gguf_key::kBos);
        eos_ = checked_id(v_.eos, gguf_key::kEos);
        eot_ = checked_id(v_.eot, gguf_key::kEot);
        eom_ = checked_id(v_.eom, gguf_key::kEom);
        unk_ = checked_id(v_.unk, gguf_key::kUnk);
        checked_id(v_.pad, gguf_key::kPad);
        if (v_.model == "llama") {
            // SentencePiece's layout: <unk> <s> </s>.
            if (!v_.bos) bos_ = default_id(1);
            if (!v_.eos) eos_ = default_id(2);
            if (!v_.unk) unk_ = default_id(0);
        }
        // Files often name no end-of-turn token; llama.cpp finds it by its text and treats
        // it as a control token whatever its type.
        if (!eot_) {
            for (const char* text : kGgufEotTexts) {
                if ((eot_ = find_text(text))) break;
            }
            if (eot_) types_[*eot_] = static_cast<int32_t>(GgufTokenType::Control);
        }
        if (!eom_) {
            eom_ = find_text(kEomText);
            if (eom_) types_[*eom_] = static_cast<int32_t>(GgufTokenType::Control);
        }
    }

    void collect_added_tokens() {
        for (size_t i = 0; i < n(); ++i) {
            const auto type = static_cast<GgufTokenType>(types_[i]);
            if (type != GgufTokenType::Control && type != GgufTokenType::Unknown &&
                type != GgufTokenType::UserDefined) {
                continue;
            }
            AddedToken t;
            t.id = static_cast<int32_t>(i);
            t.content = pieces_[i];
            t.special = type != GgufTokenType::UserDefined;
            parts_.added.push_back(std::move(t));
        }
    }

    void build_byte_level_bpe() {
        const std::optional<BpePre> pre = bpe_pre(v_.pre);
        if (!pre) {
            fail(ErrorCode::UnsupportedFormat, gguf_key::kPre,
                 "pre-tokenizer '" + v_.pre + "' is not supported (known: " + kKnownPreNames + ")");
        }
        for (const char* pattern : pre->patterns) {
            PreTokenizerStep split;
            split.kind = PreTokenizerStep::Kind::Split;
            split.regex = std::make_shared<Regex>(pattern, false, where_ + ": " + gguf_key::kPre);
            split.behavior = SplitBehavior::Isolated;
            parts_.pre_tokenizer.steps.push_back(std::move(split));
        }
        PreTokenizerStep bytes;
        bytes.kind = PreTokenizerStep::Kind::ByteLevel;
        parts_.pre_tokenizer.steps.push_back(std::move(bytes));
        parts_.decoder.present = true;
        parts_.decoder.steps.push_back(DecoderStep{});  // ByteLevel

        if (v_.merges.empty()) {
            fail(ErrorCode::ParseError, gguf_key::kMerges,
                 "missing or empty: a gpt2 vocabulary needs its BPE merges");
        }
        std::vector<std::array<int32_t, 3>> table;
        table.reserve(v_.merges.size());
        for (size_t i = 0; i < v_.merges.size(); ++i) {
            const std::string& m = v_.merges[i];
            // As llama.cpp splits: at the first space after the first byte.
            const size_t sp = m.empty() ? std::string::npos : m.find(' ', 1);
            if (sp == std::string::npos || sp + 1 >= m.size()) {
                fail(ErrorCode::ParseError, indexed(gguf_key::kMerges, i),
                     "expected \"left right\", got \"" + m + "\"");
            }
            const std::string left = m.substr(0, sp), right = m.substr(sp + 1);
            const auto l = find_text(left), r = find_text(right), merged = find_text(left + right);
            for (const auto& [id, text] :
                 {std::pair{l, left}, std::pair{r, right}, std::pair{merged, left + right}}) {
                if (!id) {
                    fail(ErrorCode::ParseError, indexed(gguf_key::kMerges, i),
                         "'" + text + "' is not a token");
                }
            }
            table.push_back({*l, *r, *merged});
        }
        BpeOptions options;
        options.unk_id = unk_;
        options.ignore_merges = pre->ignore_merges;
        parts_.model = std::make_unique<BpeModel>(pieces_, ids_, table, options);
        default_add_bos_ = pre->add_bos;
    }

    // SentencePiece BPE merges the adjacent pair whose concatenation is the token of highest
    // score, leftmost among equal scores. As BPE merges: every split of a token into two
    // tokens, ranked by the dense rank of the token's score.
    void build_sentencepiece() {
        std::vector<float> scores = v_.scores;
        if (scores.empty()) scores.assign(n(), 0.0f);
        std::vector<float> distinct = scores;
        std::sort(distinct.begin(), distinct.end(), std::greater<>());
        distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
        const auto rank_of = [&](float score) {
            return static_cast<int32_t>(
                std::lower_bound(distinct.begin(), distinct.end(), score, std::greater<>()) -
                distinct.begin());
        };
        std::vector<std::array<int32_t, 3>> table;
        std::vector<int32_t> ranks;
        for (size_t id = 0; id < n(); ++id) {
            const std::string_view text = pieces_[id];
            for (size_t k = utf8_seq_len(static_cast<unsigned char>(text[0])); k < text.size();
                 k += utf8_seq_len(static_cast<unsigned char>(text[k]))) {
                const auto l = find_text(text.substr(0, k)), r = find_text(text.substr(k));
                if (!l || !r) continue;
                table.push_back({*l, *r, static_cast<int32_t>(id)});
                ranks.push_back(rank_of(scores[id]));
            }
        }
        BpeOptions options;
        options.unk_id = unk_;
        options.byte_fallback = true;  // <0xNN> tokens for characters that are not tokens
        parts_.model = std::make_unique<BpeModel>(pieces_, ids_, table, options, ranks);

        // Spaces become U+2581, with one prepended to each run of text (llama.cpp adds it at
        // the start and after every special token, which is where runs of text begin).
        const bool space_prefix = v_.add_space_prefix.value_or(true);
        if (space_prefix) {
            parts_.normalizer.steps.push_back(
                NormalizerStep{NormalizerStep::Kind::Prepend, kSentencePieceSpace, {}, nullptr});
        }
        parts_.normalizer.steps.push_back(
            NormalizerStep{NormalizerStep::Kind::Replace, " ", kSentencePieceSpace, nullptr});

        Decoder& d = parts_.decoder;
        d.present = true;
        DecoderStep unescape;
        unescape.kind = DecoderStep::Kind::Replace;
        unescape.pattern = kSentencePieceSpace;
        unescape.content = " ";
        d.steps.push_back(unescape);
        DecoderStep bytes;
        bytes.kind = DecoderStep::Kind::ByteFallback;
        d.steps.push_back(bytes);
        DecoderStep fuse;
        fuse.kind = DecoderStep::Kind::Fuse;
        d.steps.push_back(fuse);
        if (space_prefix) {
            DecoderStep strip;
            strip.kind = DecoderStep::Kind::Strip;
            strip.content = " ";
            strip.start = 1;
            d.steps.push_back(strip);
        }
        default_add_bos_ = true;
    }

    void apply_add_special() {
        if (v_.add_bos.value_or(default_add_bos_)) {
            if (!bos_) {
                fail(ErrorCode::ParseError, gguf_key::kAddBos,
                     std::string("is true but ") + gguf_key::kBos + " is not set");
            }
            parts_.prefix.push_back(*bos_);
        }
        if (v_.add_eos.value_or(false)) {
            if (!eos_) {
                fail(ErrorCode::ParseError, gguf_key::kAddEos,
                     std::string("is true but ") + gguf_key::kEos + " is not set");
            }
            parts_.suffix.push_back(*eos_);
        }
    }

    const GgufVocab& v_;
    std::string where_;
    std::vector<std::string> pieces_;
    StringMap<int32_t> ids_;
    std::vector<int32_t> types_;
    std::optional<int32_t> bos_, eos_, eot_, eom_, unk_;
    bool default_add_bos_ = false;
    TokenizerParts parts_;
};

}  // namespace

std::shared_ptr<const Tokenizer> make_gguf_tokenizer(const GgufVocab& vocab) {
    return GgufTokenizerBuilder(vocab).build();
}

}  // namespace bitnet
