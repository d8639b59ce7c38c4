// Tokenizers from GGUF metadata: the shipped tiny models' vocabularies (converted from their
// tokenizer.json by gguf_vocab_from_tokenizer and by hand), the real Llama-3 and Llama-2
// vocabularies in ../shared, the GGUF files bitnet.cpp and llama.cpp wrote in ../shared, a small
// SentencePiece vocabulary built here, and bad metadata.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bitnet/tokenizer.h"
#include "model/format/gguf.h"
#include "model/format/gguf_writer.h"
#include "test_support.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/gguf_vocab_file.h"

namespace bitnet::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int32_t kControl = static_cast<int32_t>(GgufTokenType::Control);
constexpr int32_t kUserDefined = static_cast<int32_t>(GgufTokenType::UserDefined);

json read_json(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return json::parse(ss.str());
}

std::string show(const std::string& s) {
    return json(s).dump(-1, ' ', true, json::error_handler_t::replace);
}
std::string show(const std::vector<int32_t>& ids) {
    return json(ids).dump();
}

std::string shared_tokenizer_dir(const std::string& name) {
    return shared_dir() + "/reference/" + name;
}

// Loading the 9 MB Llama-3 file takes a moment: each tokenizer is loaded once per run.
std::shared_ptr<const Tokenizer> load_hf(const std::string& path) {
    static std::mutex mu;
    static std::map<std::string, std::shared_ptr<const Tokenizer>> cache;
    std::lock_guard<std::mutex> lock(mu);
    auto& t = cache[path];
    if (!t) t = Tokenizer::load(path);
    return t;
}

// Random text: ASCII words, digits, punctuation, whitespace runs, multi-byte UTF-8 and emoji.
// '<' and U+2581 are left out (a special token's text, SentencePiece's space).
std::string random_text(std::mt19937& rng, size_t max_pieces) {
    static const std::vector<std::string> pool = {"a",
                                                  "b",
                                                  "e",
                                                  "t",
                                                  "Z",
                                                  "Q",
                                                  "0",
                                                  "7",
                                                  "9",
                                                  ".",
                                                  ",",
                                                  "!",
                                                  "'",
                                                  "\"",
                                                  "-",
                                                  "(",
                                                  ")",
                                                  "{",
                                                  "#",
                                                  "/",
                                                  "\\",
                                                  "_",
                                                  "'s",
                                                  "'ll",
                                                  "'T",
                                                  " ",
                                                  "  ",
                                                  "   ",
                                                  "\t",
                                                  "\n",
                                                  "\n\n",
                                                  "\r\n",
                                                  "\r",
                                                  "\xC3\xA9",
                                                  "\xC3\xBC",
                                                  "\xD0\x96",
                                                  "\xCE\xB1",
                                                  "\xE6\x97\xA5",
                                                  "\xED\x95\x9C",
                                                  "\xE0\xA4\xA8",
                                                  "\xE2\x82\xAC",
                                                  "\xC2\xA0",
                                                  "\xE3\x80\x80",
                                                  "\xC2\x85",
                                                  "\xCC\x81",
                                                  "\xF0\x9F\x98\x80",
                                                  "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x92\xBB",
                                                  "hello",
                                                  " world",
                                                  "the",
                                                  " The",
                                                  "123456",
                                                  "\xF0\x90\x8D\x88"};
    std::uniform_int_distribution<size_t> len(0, max_pieces), pick(0, pool.size() - 1);
    std::string s;
    for (size_t n = len(rng), i = 0; i < n; ++i) s += pool[pick(rng)];
    return s;
}

// The vocabulary of a tiny model written from its tokenizer.json the way bitnet.cpp's
// converter wrote ../shared/reference/gguf (see its README), without the engine's tokenizer.
GgufVocab tiny_vocab_by_hand(const std::string& dir) {
    const json tj = read_json(fs::path(dir) / "tokenizer.json");
    GgufVocab v;
    v.source = dir + " (by hand)";
    v.model = "gpt2";
    v.pre = "llama-bpe";
    size_t n = tj.at("model").at("vocab").size();
    for (const json& a : tj.at("added_tokens")) n = std::max(n, a.at("id").get<size_t>() + 1);
    v.tokens.assign(n, "");
    v.token_types.assign(n, 1);
    for (const auto& [piece, id] : tj.at("model").at("vocab").items()) {
        v.tokens[id.get<size_t>()] = piece;
    }
    for (const json& a : tj.at("added_tokens")) {
        const auto id = a.at("id").get<size_t>();
        v.tokens[id] = a.at("content").get<std::string>();
        v.token_types[id] = a.at("special").get<bool>() ? kControl : kUserDefined;
    }
    for (const json& m : tj.at("model").at("merges")) {
        v.merges.push_back(m.is_string() ? m.get<std::string>()
                                         : m[0].get<std::string>() + " " + m[1].get<std::string>());
    }
    const auto id_of = [&](const std::string& text) {
        return static_cast<int32_t>(std::find(v.tokens.begin(), v.tokens.end(), text) -
                                    v.tokens.begin());
    };
    v.bos = id_of("<|begin_of_text|>");
    v.eos = id_of("<|end_of_text|>");
    v.eot = id_of("<|eot_id|>");
    v.add_bos = true;
    return v;
}

// Every text of the model's reference.json (8 prompts + tokenizer_cases) encodes to its ids
// (BOS first) and those ids decode back.
void expect_reference_texts(const Tokenizer& tok, const std::string& model_dir_path,
                            const std::string& what) {
    const json ref = read_json(fs::path(model_dir_path) / "reference.json");
    size_t checked = 0;
    for (const char* key : {"texts", "tokenizer_cases"}) {
        for (const json& c : ref.at(key)) {
            const std::string text = c.at("text").get<std::string>();
            const auto ids = c.at("ids").get<std::vector<int32_t>>();
            EXPECT_EQ(show(tok.encode(text)), show(ids)) << what << " " << key << " " << show(text);
            EXPECT_EQ(show(tok.decode(ids)), show(c.value("decoded", text)))
                << what << " " << key << " " << show(text);
            ++checked;
        }
    }
    EXPECT_EQ(checked, 23u) << what;
}

// ---- the shipped tiny models ------------------------------------------------------------------

class GgufTokenizerTiny : public testing::TestWithParam<std::string> {};

TEST_P(GgufTokenizerTiny, FromTokenizerGivesBitnetCppsMetadata) {
    const std::string dir = model_dir(GetParam());
    const auto hf = load_hf(dir);
    const GgufVocab v = gguf_vocab_from_tokenizer(*hf);
    const GgufVocab hand = tiny_vocab_by_hand(dir);
    EXPECT_EQ(v.model, "gpt2");
    EXPECT_EQ(v.pre, "llama-bpe");
    ASSERT_EQ(v.tokens.size(), static_cast<size_t>(hf->vocab_size()));
    EXPECT_EQ(v.tokens, hand.tokens);
    EXPECT_EQ(v.token_types, hand.token_types);
    EXPECT_EQ(v.merges, hand.merges);
    EXPECT_TRUE(v.scores.empty());
    EXPECT_EQ(v.bos, hand.bos);
    EXPECT_EQ(v.eos, hand.eos);
    EXPECT_EQ(v.eot, hand.eot);
    EXPECT_FALSE(v.unk.has_value());
    EXPECT_EQ(v.add_bos, std::optional<bool>(true));
    EXPECT_EQ(v.add_eos, std::optional<bool>(false));
    EXPECT_FALSE(v.add_space_prefix.has_value());
    EXPECT_TRUE(v.chat_template.empty());
}

TEST_P(GgufTokenizerTiny, ReferenceTextsFromBothVocabularies) {
    const std::string dir = model_dir(GetParam());
    const auto hf = load_hf(dir);
    const auto from_tokenizer = make_gguf_tokenizer(gguf_vocab_from_tokenizer(*hf));
    const auto by_hand = make_gguf_tokenizer(tiny_vocab_by_hand(dir));
    expect_reference_texts(*from_tokenizer, dir, "gguf_vocab_from_tokenizer");
    expect_reference_texts(*by_hand, dir, "by hand");
}

TEST_P(GgufTokenizerTiny, SpecialTokensAndMetadata) {
    const auto hf = load_hf(model_dir(GetParam()));
    const auto tok = make_gguf_tokenizer(gguf_vocab_from_tokenizer(*hf));
    const auto bos = hf->bos_id(), eos = hf->eos_id(), eot = hf->token_id("<|eot_id|>");
    ASSERT_TRUE(bos && eos && eot);
    EXPECT_EQ(tok->vocab_size(), hf->vocab_size());
    EXPECT_EQ(tok->bos_id(), bos);
    EXPECT_EQ(tok->eos_id(), eos);
    auto stop = tok->stop_ids();
    std::sort(stop.begin(), stop.end());
    EXPECT_EQ(stop, (std::vector<int32_t>{*eos, *eot}));
    for (const int32_t id : {*bos, *eos, *eot}) EXPECT_TRUE(tok->is_special(id)) << id;
    EXPECT_FALSE(tok->is_special(0));
    EXPECT_EQ(tok->piece(220), "\xC4\xA0");
    EXPECT_EQ(tok->token_id("<|eot_id|>"), eot);
    // Control tokens in the text are matched whole (parse_special); decode drops them when
    // skipping special tokens.
    const auto ids = tok->encode("a<|eot_id|>b", false);
    ASSERT_EQ(ids.size(), 3u);
    EXPECT_EQ(ids[1], *eot);
    EXPECT_EQ(tok->decode(ids, false), "a<|eot_id|>b");
    EXPECT_EQ(tok->decode(ids, true), "ab");
    EXPECT_EQ(tok->encode("", true), std::vector<int32_t>{*bos});
    EXPECT_TRUE(tok->encode("", false).empty());
}

// On random text the GGUF tokenizer gives the Hugging Face tokenizer's ids. (llama-bpe turns on
// ignore_merges, which these tokenizer.json files leave off; in these small vocabularies no
// pre-token that is a token merges differently.)
TEST_P(GgufTokenizerTiny, RandomTextMatchesHfAndRoundTrips) {
    const auto hf = load_hf(model_dir(GetParam()));
    const auto tok = make_gguf_tokenizer(gguf_vocab_from_tokenizer(*hf));
    std::mt19937 rng(4242);
    for (int i = 0; i < 400; ++i) {
        const std::string s = random_text(rng, 37);
        const auto ids = tok->encode(s, true);
        ASSERT_EQ(show(ids), show(hf->encode(s, true))) << show(s);
        ASSERT_EQ(show(tok->decode(ids)), show(s));
    }
}

// Embedding rows past the tokenizer become unused "[PAD<id>]" tokens, as the converter writes.
TEST_P(GgufTokenizerTiny, PaddedToTheModelsVocabulary) {
    const auto hf = load_hf(model_dir(GetParam()));
    const size_t n = static_cast<size_t>(hf->vocab_size());
    const GgufVocab v = gguf_vocab_from_tokenizer(*hf, n + 3);
    ASSERT_EQ(v.tokens.size(), n + 3);
    EXPECT_EQ(v.tokens[n + 2], "[PAD" + std::to_string(n + 2) + "]");
    EXPECT_EQ(v.token_types[n + 1], static_cast<int32_t>(GgufTokenType::Unused));
    const auto tok = make_gguf_tokenizer(v);
    EXPECT_EQ(tok->vocab_size(), static_cast<int>(n + 3));
    EXPECT_EQ(tok->encode("Hello [PAD513] world"), hf->encode("Hello [PAD513] world"));
}

INSTANTIATE_TEST_SUITE_P(TokenizerData, GgufTokenizerTiny,
                         testing::Values("tiny-packed", "tiny-master"));

// ---- the real Llama-3 and Llama-2 vocabularies -----------------------------------------------

struct SharedVocab {
    const char* dir;
    int32_t bos;
};

class GgufTokenizerShared : public testing::TestWithParam<SharedVocab> {
  protected:
    void SetUp() override {
        if (!shared_available()) {
            GTEST_SKIP() << "../shared/reference is absent (it holds the Llama vocabularies, "
                            "which are not redistributed with the repository)";
        }
        hf_ = load_hf(shared_tokenizer_dir(GetParam().dir));
        // One conversion per vocabulary: the Llama-3 one has 280k merges.
        static std::mutex mu;
        static std::map<std::string, std::shared_ptr<const Tokenizer>> converted;
        std::lock_guard<std::mutex> lock(mu);
        auto& t = converted[GetParam().dir];
        if (!t) t = make_gguf_tokenizer(gguf_vocab_from_tokenizer(*hf_));
        tok_ = t;
    }
    std::shared_ptr<const Tokenizer> hf_, tok_;
};

// cases.json: every text encodes to `ids` (no BOS) and decodes to `decoded`;
// known-deviations.json: Hugging Face's ids, which llama.cpp's tokenizer also gives.
TEST_P(GgufTokenizerShared, EveryCase) {
    size_t n = 0;
    for (const char* file : {"cases.json", "known-deviations.json"}) {
        for (const json& c : read_json(shared_tokenizer_dir(GetParam().dir) + "/" + file)) {
            const std::string text = c.at("text").get<std::string>();
            const auto ids = c.at("ids").get<std::vector<int32_t>>();
            EXPECT_EQ(show(tok_->encode(text, false)), show(ids)) << file << " " << show(text);
            EXPECT_EQ(show(tok_->decode(ids, false)), show(c.at("decoded").get<std::string>()))
                << file << " " << show(text);
            const auto with_bos = tok_->encode(text, true);
            ASSERT_FALSE(with_bos.empty());
            EXPECT_EQ(with_bos[0], GetParam().bos);
            EXPECT_EQ(with_bos.size(), ids.size() + 1);
            ++n;
        }
    }
    EXPECT_GT(n, 120u);
}

TEST_P(GgufTokenizerShared, RandomTextMatchesHfAndRoundTrips) {
    std::mt19937 rng(77);
    for (int i = 0; i < 300; ++i) {
        const std::string s = random_text(rng, 45);
        const auto ids = tok_->encode(s, true);
        ASSERT_EQ(show(ids), show(hf_->encode(s, true))) << show(s);
        ASSERT_EQ(show(tok_->decode(ids)), show(s));
    }
}

INSTANTIATE_TEST_SUITE_P(TokenizerLlama, GgufTokenizerShared,
                         testing::Values(SharedVocab{"llama3-tokenizer", 128000},
                                         SharedVocab{"llama2-tokenizer", 1}),
                         [](const auto& param_info) {
                             return std::string(param_info.param.dir).substr(0, 6);
                         });

TEST(GgufTokenizerSharedMetadata, Llama3) {
    if (!shared_available()) GTEST_SKIP() << "../shared/reference is absent";
    const auto hf = load_hf(shared_tokenizer_dir("llama3-tokenizer"));
    const GgufVocab v = gguf_vocab_from_tokenizer(*hf);
    EXPECT_EQ(v.model, "gpt2");
    EXPECT_EQ(v.pre, "llama-bpe");
    ASSERT_EQ(v.tokens.size(), 128256u);
    EXPECT_EQ(v.merges.size(), 280147u);
    EXPECT_EQ(v.tokens[279], "\xC4\xA0the");
    for (size_t id = 128000; id < 128256; ++id) EXPECT_EQ(v.token_types[id], kControl) << id;
    EXPECT_EQ(v.token_types[279], 1);
    EXPECT_EQ(v.bos, 128000);
    EXPECT_EQ(v.eos, 128001);
    EXPECT_EQ(v.eot, 128009);
    EXPECT_EQ(v.add_bos, std::optional<bool>(true));
    EXPECT_EQ(v.chat_template, hf->chat_template());
    EXPECT_FALSE(v.chat_template.empty());

    const auto tok = make_gguf_tokenizer(v);
    auto stop = tok->stop_ids();
    std::sort(stop.begin(), stop.end());
    // llama.cpp also ends a generation on <|eom_id|>, which it finds by its text.
    EXPECT_EQ(stop, (std::vector<int32_t>{128001, 128008, 128009}));
    EXPECT_EQ(tok->chat_template(), hf->chat_template());
}

TEST(GgufTokenizerSharedMetadata, Llama2) {
    if (!shared_available()) GTEST_SKIP() << "../shared/reference is absent";
    const auto hf = load_hf(shared_tokenizer_dir("llama2-tokenizer"));
    const GgufVocab v = gguf_vocab_from_tokenizer(*hf);
    EXPECT_EQ(v.model, "llama");
    ASSERT_EQ(v.tokens.size(), 32000u);
    EXPECT_TRUE(v.merges.empty());
    ASSERT_EQ(v.scores.size(), 32000u);
    EXPECT_EQ(v.token_types[0], static_cast<int32_t>(GgufTokenType::Unknown));
    EXPECT_EQ(v.token_types[1], kControl);
    EXPECT_EQ(v.token_types[2], kControl);
    for (size_t id = 3; id < 259; ++id) {
        EXPECT_EQ(v.token_types[id], static_cast<int32_t>(GgufTokenType::Byte)) << id;
    }
    EXPECT_EQ(v.tokens[3], "<0x00>");
    EXPECT_EQ(v.tokens[15043], "\xE2\x96\x81Hello");
    EXPECT_EQ(v.token_types[15043], 1);
    EXPECT_EQ(v.bos, 1);
    EXPECT_EQ(v.eos, 2);
    EXPECT_EQ(v.unk, 0);
    EXPECT_FALSE(v.eot.has_value());
    EXPECT_EQ(v.add_bos, std::optional<bool>(true));
    EXPECT_EQ(v.add_space_prefix, std::optional<bool>(true));
    // A merged piece outranks the characters it is made of.
    EXPECT_GT(v.scores[15043], v.scores[hf->token_id("H").value()]);

    const auto tok = make_gguf_tokenizer(v);
    EXPECT_EQ(tok->stop_ids(), std::vector<int32_t>{2});
    EXPECT_TRUE(tok->is_special(0));
    EXPECT_EQ(tok->decode(tok->encode("\xF0\x9F\xA6\x99 ok")), "\xF0\x9F\xA6\x99 ok");  // bytes
}

// ---- the GGUF files in ../shared/reference/gguf -----------------------------------------------

TEST(GgufTokenizerFiles, EveryReferenceTextOfEveryFile) {
    if (!shared_available()) GTEST_SKIP() << "../shared/reference is absent";
    size_t files = 0;
    for (const auto& entry : fs::directory_iterator(shared_dir() + "/reference/gguf")) {
        if (entry.path().extension() != ".gguf") continue;
        const std::string name = entry.path().filename().string();
        const std::string model = name.substr(0, name.find('.'));
        SCOPED_TRACE(name);
        const gguf::File file(entry.path().string());
        const GgufVocab v = gguf_vocab_from_file(file);
        EXPECT_EQ(v.source, entry.path().string());
        EXPECT_EQ(v.model, "gpt2");
        EXPECT_EQ(v.pre, "llama-bpe");
        // What bitnet.cpp's converter wrote is what gguf_vocab_from_tokenizer writes.
        const GgufVocab ours = gguf_vocab_from_tokenizer(*load_hf(model_dir(model)));
        EXPECT_EQ(v.tokens, ours.tokens);
        EXPECT_EQ(v.token_types, ours.token_types);
        EXPECT_EQ(v.merges, ours.merges);
        EXPECT_EQ(v.bos, ours.bos);
        EXPECT_EQ(v.eos, ours.eos);
        EXPECT_EQ(v.eot, ours.eot);
        EXPECT_EQ(v.add_bos, std::optional<bool>(true));
        expect_reference_texts(*make_gguf_tokenizer(v), model_dir(model), name);
        ++files;
    }
    EXPECT_EQ(files, 10u);
}

// A temporary file, removed afterwards.
class TempFile {
  public:
    TempFile() {
        static std::atomic<int> counter{0};
        path_ = (fs::path(testing::TempDir()) / ("bitnet_gguf_vocab_" + std::to_string(::getpid()) +
                                                 "_" + std::to_string(counter++) + ".gguf"))
                    .string();
    }
    ~TempFile() {
        std::error_code ec;
        fs::remove(path_, ec);
    }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

// HF -> GgufVocab -> GGUF metadata -> file -> GgufVocab: every field comes back.
TEST(GgufTokenizerFiles, WrittenMetadataReadsBack) {
    const auto hf = load_hf(model_dir("tiny-master"));
    GgufVocab v = gguf_vocab_from_tokenizer(*hf);
    v.chat_template = "{{ messages }}";
    v.pad = 3;
    gguf::Writer w;
    add_gguf_vocab_metadata(v, w);
    EXPECT_EQ(w.find(gguf_key::kBos)->type, gguf::ValueType::U32);
    TempFile tmp;
    w.write(tmp.path());
    const GgufVocab back = gguf_vocab_from_file(gguf::File(tmp.path()));
    EXPECT_EQ(back.model, v.model);
    EXPECT_EQ(back.pre, v.pre);
    EXPECT_EQ(back.tokens, v.tokens);
    EXPECT_EQ(back.token_types, v.token_types);
    EXPECT_EQ(back.merges, v.merges);
    EXPECT_EQ(back.bos, v.bos);
    EXPECT_EQ(back.eos, v.eos);
    EXPECT_EQ(back.eot, v.eot);
    EXPECT_EQ(back.pad, 3);
    EXPECT_EQ(back.add_bos, v.add_bos);
    EXPECT_EQ(back.add_eos, v.add_eos);
    EXPECT_EQ(back.chat_template, "{{ messages }}");
    expect_reference_texts(*make_gguf_tokenizer(back), model_dir("tiny-master"), "read back");

    // A key of the wrong type is an error naming the file and the key.
    w.set_string(gguf_key::kBos, "one");
    w.write(tmp.path());
    EXPECT_TRUE(throws_error([&] { gguf_vocab_from_file(gguf::File(tmp.path())); },
                             ErrorCode::ParseError, {tmp.path(), gguf_key::kBos}));
    w.set_i64(gguf_key::kEos, int64_t{1} << 40);
    w.set_u32(gguf_key::kBos, 1);
    w.write(tmp.path());
    EXPECT_TRUE(throws_error([&] { gguf_vocab_from_file(gguf::File(tmp.path())); },
                             ErrorCode::ParseError, {tmp.path(), gguf_key::kEos}));
}

// ---- SentencePiece ("llama") behaviour on a small vocabulary ---------------------------------

const std::string kSp = "\xE2\x96\x81";  // ▁

// <unk> <s> </s>, the 256 byte tokens, characters, and merged pieces whose scores set the
// merge order, plus a user-defined token.
GgufVocab small_sentencepiece() {
    GgufVocab v;
    v.source = "small-spm";
    v.model = "llama";
    const auto add = [&](const std::string& text, float score, GgufTokenType type) {
        v.tokens.push_back(text);
        v.scores.push_back(score);
        v.token_types.push_back(static_cast<int32_t>(type));
        return static_cast<int32_t>(v.tokens.size() - 1);
    };
    add("<unk>", 0, GgufTokenType::Unknown);
    add("<s>", 0, GgufTokenType::Control);
    add("</s>", 0, GgufTokenType::Control);
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        add(name, 0, GgufTokenType::Byte);
    }
    for (const std::string& c : {kSp, std::string("a"), std::string("b"), std::string("c"),
                                 std::string("d"), std::string("h"), std::string("i")}) {
        add(c, -100, GgufTokenType::Normal);
    }
    add("ab", -1, GgufTokenType::Normal);   // 266
    add("bc", -2, GgufTokenType::Normal);   // 267
    add("abc", -3, GgufTokenType::Normal);  // 268
    add(kSp + "a", -4, GgufTokenType::Normal);
    add("cd", -5, GgufTokenType::Normal);
    add("dd", -5, GgufTokenType::Normal);  // ties with "cd": leftmost first
    add("hi", -6, GgufTokenType::Normal);
    add(kSp + "hi", -7, GgufTokenType::Normal);
    add("<tool>", 0, GgufTokenType::UserDefined);
    return v;
}

std::vector<std::string> pieces_of(const Tokenizer& t, const std::vector<int32_t>& ids) {
    std::vector<std::string> out;
    for (const int32_t id : ids) out.push_back(t.piece(id));
    return out;
}

TEST(GgufTokenizerSentencePiece, ScoresOrderTheMerges) {
    const auto tok = make_gguf_tokenizer(small_sentencepiece());
    using P = std::vector<std::string>;
    // "abc": "ab" (-1) beats "bc" (-2), then "ab"+"c" makes "abc"; the space prefix joins "a".
    EXPECT_EQ(pieces_of(*tok, tok->encode("abc", false)), (P{kSp, "abc"}));
    EXPECT_EQ(pieces_of(*tok, tok->encode("bc", false)), (P{kSp, "bc"}));
    // "cdd": "cd" and "dd" score the same; the leftmost pair merges first.
    EXPECT_EQ(pieces_of(*tok, tok->encode("cdd", false)), (P{kSp, "cd", "d"}));
    EXPECT_EQ(pieces_of(*tok, tok->encode("ddd", false)), (P{kSp, "dd", "d"}));
    EXPECT_EQ(pieces_of(*tok, tok->encode("hi a", false)), (P{kSp + "hi", kSp + "a"}));
    // Add BOS by default; byte tokens for characters that are not tokens.
    EXPECT_EQ(pieces_of(*tok, tok->encode("\xC3\xA9", true)), (P{"<s>", kSp, "<0xC3>", "<0xA9>"}));
    EXPECT_EQ(tok->decode(tok->encode("\xC3\xA9 hi", true)), "\xC3\xA9 hi");
    // Special tokens in the text; the text after one gets its own space prefix, as llama.cpp
    // does.
    EXPECT_EQ(pieces_of(*tok, tok->encode("a</s>hi", false)), (P{kSp + "a", "</s>", kSp + "hi"}));
    // User-defined tokens are matched whole and decoded; control and unknown tokens are
    // dropped when skipping special tokens.
    const auto ids = tok->encode("hi<tool><unk>", false);
    EXPECT_EQ(pieces_of(*tok, ids), (P{kSp + "hi", "<tool>", "<unk>"}));
    EXPECT_FALSE(tok->is_special(ids[1]));
    EXPECT_TRUE(tok->is_special(ids[2]));
    EXPECT_EQ(tok->decode(ids, true), "hi<tool>");
    EXPECT_EQ(tok->decode(ids, false), "hi<tool><unk>");
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
    EXPECT_EQ(tok->stop_ids(), std::vector<int32_t>{2});
}

TEST(GgufTokenizerSentencePiece, OptionsFromTheMetadata) {
    GgufVocab v = small_sentencepiece();
    v.add_space_prefix = false;
    v.add_bos = false;
    v.add_eos = true;
    const auto tok = make_gguf_tokenizer(v);
    using P = std::vector<std::string>;
    EXPECT_EQ(pieces_of(*tok, tok->encode("abc hi", true)), (P{"abc", kSp + "hi", "</s>"}));
    EXPECT_EQ(tok->decode(tok->encode(" abc", true)), " abc");
    // Without scores every merge ties, so pairs merge left to right.
    v.scores.clear();
    const auto flat = make_gguf_tokenizer(v);
    EXPECT_EQ(pieces_of(*flat, flat->encode("abc", false)), (P{"abc"}));
    EXPECT_EQ(pieces_of(*flat, flat->encode("bcd", false)), (P{"bc", "d"}));
}

// ---- bad metadata ------------------------------------------------------------------------------

GgufVocab tiny_vocab() {
    static const GgufVocab v = [] {
        GgufVocab g = gguf_vocab_from_tokenizer(*load_hf(model_dir("tiny-packed")));
        g.source = "bad.gguf";
        return g;
    }();
    return v;
}

testing::AssertionResult fails(const GgufVocab& v, ErrorCode code,
                               std::initializer_list<std::string> needles) {
    std::vector<std::string> all{v.source};
    all.insert(all.end(), needles.begin(), needles.end());
    try {
        make_gguf_tokenizer(v);
    } catch (const Error& e) {
        const std::string msg = e.what();
        if (e.code() != code) return testing::AssertionFailure() << "code: " << msg;
        for (const std::string& n : all) {
            if (msg.find(n) == std::string::npos)
                return testing::AssertionFailure() << "message lacks '" << n << "': " << msg;
        }
        return testing::AssertionSuccess();
    }
    return testing::AssertionFailure() << "nothing thrown";
}

TEST(GgufTokenizerErrors, BadMetadataNamesTheKey) {
    const GgufVocab good = tiny_vocab();
    ASSERT_NO_THROW(make_gguf_tokenizer(good));
    const int32_t n = static_cast<int32_t>(good.tokens.size());
    std::mt19937 rng(9);
    const auto some_index = [&](size_t size) {
        return std::uniform_int_distribution<size_t>(1, size - 2)(rng);
    };

    GgufVocab v = good;
    v.model = "bert";
    EXPECT_TRUE(fails(v, ErrorCode::UnsupportedFormat, {"tokenizer.ggml.model", "'bert'"}));
    v.model = "";
    EXPECT_TRUE(fails(v, ErrorCode::ParseError, {"tokenizer.ggml.model", "missing"}));

    v = good;
    v.pre = "qwen2-unknown";
    EXPECT_TRUE(fails(v, ErrorCode::UnsupportedFormat, {"tokenizer.ggml.pre", "'qwen2-unknown'"}));

    v = good;
    v.tokens.clear();
    EXPECT_TRUE(fails(v, ErrorCode::ParseError, {"tokenizer.ggml.tokens", "empty"}));

    v = good;
    const size_t dup = some_index(v.tokens.size());
    v.tokens[dup] = v.tokens[dup - 1];
    EXPECT_TRUE(fails(v, ErrorCode::ParseError,
                      {"tokenizer.ggml.tokens[" + std::to_string(dup) + "]", "duplicate"}));

    v = good;
    v.token_types.pop_back();
    EXPECT_TRUE(fails(v, ErrorCode::ParseError, {"tokenizer.ggml.token_type"}));
    for (const int32_t bad : {0, 7, -3}) {
        v = good;
        const size_t at = some_index(v.token_types.size());
        v.token_types[at] = bad;
        EXPECT_TRUE(
            fails(v, ErrorCode::ParseError,
                  {"tokenizer.ggml.token_type[" + std::to_string(at) + "]", std::to_string(bad)}));
    }

    v = good;
    v.scores.assign(good.tokens.size() + 1, 0.5f);
    EXPECT_TRUE(fails(v, ErrorCode::ParseError, {"tokenizer.ggml.scores"}));
    v.scores.assign(good.tokens.size(), -1.25f);
    v.scores[5] = std::nanf("");
    EXPECT_TRUE(fails(v, ErrorCode::ParseError, {"tokenizer.ggml.scores[5]", "NaN"}));

    v = good;
    const size_t m = some_index(v.merges.size());
    v.merges[m] = v.merges[m] + "zq\xC3\xA9";
    EXPECT_TRUE(fails(v, ErrorCode::ParseError,
                      {"tokenizer.ggml.merges[" + std::to_string(m) + "]", "is not a token"}));
    v.merges[m] = "nospace";
    EXPECT_TRUE(fails(v, ErrorCode::ParseError,
                      {"tokenizer.ggml.merges[" + std::to_string(m) + "]", "left right"}));
    v.merges.clear();
    EXPECT_TRUE(fails(v, ErrorCode::ParseError, {"tokenizer.ggml.merges", "empty"}));

    for (const auto& [field, key] :
         {std::pair{&GgufVocab::bos, "tokenizer.ggml.bos_token_id"},
          std::pair{&GgufVocab::eos, "tokenizer.ggml.eos_token_id"},
          std::pair{&GgufVocab::eot, "tokenizer.ggml.eot_token_id"},
          std::pair{&GgufVocab::eom, "tokenizer.ggml.eom_token_id"},
          std::pair{&GgufVocab::unk, "tokenizer.ggml.unknown_token_id"},
          std::pair{&GgufVocab::pad, "tokenizer.ggml.padding_token_id"}}) {
        for (const int32_t bad : {n, n + 17, -1}) {
            v = good;
            v.*field = bad;
            EXPECT_TRUE(fails(v, ErrorCode::ParseError, {key, std::to_string(bad)})) << key;
        }
    }

    v = good;
    v.bos.reset();
    EXPECT_TRUE(fails(v, ErrorCode::ParseError,
                      {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.bos_token_id"}));
    v.add_bos = false;
    EXPECT_NO_THROW(make_gguf_tokenizer(v));
    v = good;
    v.eos.reset();
    v.add_eos = true;
    EXPECT_TRUE(fails(v, ErrorCode::ParseError,
                      {"tokenizer.ggml.add_eos_token", "tokenizer.ggml.eos_token_id"}));

    // The same checks hold for SentencePiece vocabularies.
    v = small_sentencepiece();
    v.token_types[40] = 9;
    EXPECT_TRUE(fails(v, ErrorCode::ParseError, {"tokenizer.ggml.token_type[40]"}));
    v = small_sentencepiece();
    v.scores.pop_back();
    EXPECT_TRUE(fails(v, ErrorCode::ParseError, {"tokenizer.ggml.scores"}));
}

// gpt2 files name their split regex; the known names and the default all tokenize.
TEST(GgufTokenizerErrors, PreTokenizerNames) {
    const GgufVocab good = tiny_vocab();
    const auto hf = load_hf(model_dir("tiny-packed"));
    for (const char* pre : {"", "default", "llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx",
                            "smaug-bpe", "gpt-2", "phi-2", "mpt", "olmo"}) {
        GgufVocab v = good;
        v.pre = pre;
        const auto tok = make_gguf_tokenizer(v);
        const std::string text = "Hello, world! It's 2024: 12345 apples.\n\n  x";
        EXPECT_EQ(tok->decode(tok->encode(text)), text) << pre;
    }
    // Llama-3's regex keeps ".com" one pre-token (which a merge joins); GPT-2's splits it.
    GgufVocab gpt2 = good;
    gpt2.pre = "gpt-2";
    const auto a = make_gguf_tokenizer(gpt2)->encode("github.com", false);
    const auto b = make_gguf_tokenizer(good)->encode("github.com", false);
    EXPECT_EQ(a.size(), b.size() + 1);
    EXPECT_EQ(b, hf->encode("github.com", false));
}

TEST(GgufTokenizerErrors, TokenizersGgufCannotExpress) {
    const std::string dir = model_dir("tiny-packed");
    json base = read_json(fs::path(dir) / "tokenizer.json");
    const fs::path tmp = fs::path(testing::TempDir()) /
                         ("bitnet_gguf_vocab_json_" + std::to_string(::getpid()) + ".json");
    const auto convert = [&](const json& j) {
        std::ofstream(tmp, std::ios::binary) << j.dump();
        const auto tok = Tokenizer::load(tmp.string());
        return gguf_vocab_from_tokenizer(*tok);
    };
    ASSERT_NO_THROW(convert(base));

    json other_regex = base;
    other_regex["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\p{L}+|\\p{N}";
    EXPECT_TRUE(throws_error([&] { convert(other_regex); }, ErrorCode::UnsupportedFormat,
                             {"tokenizer.ggml.pre"}));

    json prefix_space = base;
    prefix_space["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true;
    EXPECT_TRUE(throws_error([&] { convert(prefix_space); }, ErrorCode::UnsupportedFormat,
                             {"pre-tokenizer"}));

    json two_before = base;
    two_before["post_processor"]["single"].insert(two_before["post_processor"]["single"].begin(),
                                                  two_before["post_processor"]["single"][0]);
    EXPECT_TRUE(throws_error([&] { convert(two_before); }, ErrorCode::UnsupportedFormat,
                             {"post-processor", "2 token(s)"}));

    json gpt2 = base;
    gpt2["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}};
    gpt2["post_processor"] = nullptr;
    const GgufVocab g = convert(gpt2);
    EXPECT_EQ(g.pre, "gpt-2");
    EXPECT_EQ(g.add_bos, std::optional<bool>(false));

    json no_fallback = base;
    no_fallback["pre_tokenizer"] = nullptr;
    no_fallback["normalizer"] = {
        {"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSp}};
    EXPECT_TRUE(throws_error([&] { convert(no_fallback); }, ErrorCode::UnsupportedFormat,
                             {"byte_fallback"}));
    no_fallback["model"]["byte_fallback"] = true;
    const GgufVocab spm = convert(no_fallback);
    EXPECT_EQ(spm.model, "llama");
    EXPECT_EQ(spm.add_space_prefix, std::optional<bool>(false));

    json lowercase = no_fallback;
    lowercase["normalizer"] = {{"type", "Prepend"}, {"prepend", "x"}};
    EXPECT_TRUE(
        throws_error([&] { convert(lowercase); }, ErrorCode::UnsupportedFormat, {"SentencePiece"}));
    std::error_code ec;
    fs::remove(tmp, ec);
}

}  // namespace
}  // namespace bitnet::test
