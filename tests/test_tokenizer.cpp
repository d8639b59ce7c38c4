// Tokenizers: the shipped tiny models' reference encodings, the real Llama-3 and Llama-2
// vocabularies in ../shared (when present), round trips and streaming on random text, bad
// files and inputs, the `bitnet tokenize` command, and encoding throughput.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bitnet/tokenizer.h"
#include "test_support.h"
#include "tokenizer/unicode.h"

namespace bitnet::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json read_json(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return json::parse(ss.str());
}

std::string shared_tokenizer_dir(const std::string& name) {
    return shared_dir() + "/reference/" + name;
}

// Loading the 9 MB Llama-3 file takes a moment: each tokenizer is loaded once per run.
std::shared_ptr<const Tokenizer> load_cached(const std::string& path) {
    static std::mutex mu;
    static std::map<std::string, std::shared_ptr<const Tokenizer>> cache;
    std::lock_guard<std::mutex> lock(mu);
    auto& t = cache[path];
    if (!t) t = Tokenizer::load(path);
    return t;
}

std::string show(const std::string& s) {
    return json(s).dump(-1, ' ', true, json::error_handler_t::replace);
}

std::string show(const std::vector<int32_t>& ids) {
    return json(ids).dump();
}

// A scratch directory per test, removed afterwards.
class TempDir {
  public:
    TempDir() {
        static std::atomic<int> counter{0};
        path_ = fs::path(testing::TempDir()) /
                ("bitnet_tok_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    fs::path write(const std::string& name, const std::string& text) const {
        std::ofstream(path_ / name, std::ios::binary) << text;
        return path_ / name;
    }
    const fs::path& path() const { return path_; }

  private:
    fs::path path_;
};

// A small SentencePiece-style tokenizer (the Llama-2 layout) so that this kind is tested
// without ../shared: <unk> <s> </s>, the 256 byte pieces, ASCII letters and a few merges.
json tiny_sentencepiece_json() {
    json vocab = json::object();
    int id = 0;
    vocab["<unk>"] = id++;
    vocab["<s>"] = id++;
    vocab["</s>"] = id++;
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        vocab[name] = id++;
    }
    const std::string u = "\xE2\x96\x81";  // ▁
    vocab[u] = id++;
    for (char c = 'a'; c <= 'z'; ++c) vocab[std::string(1, c)] = id++;
    for (const char* c : {".", ",", "!", "é"}) vocab[c] = id++;
    json merges = json::array();
    for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{{"l", "l"},
                                                                               {"ll", "o"},
                                                                               {"e", "llo"},
                                                                               {"h", "ello"},
                                                                               {u, "hello"},
                                                                               {u, "w"},
                                                                               {"o", "r"},
                                                                               {u + "w", "or"},
                                                                               {"l", "d"},
                                                                               {u + "wor", "ld"},
                                                                               {u, "t"},
                                                                               {"h", "e"},
                                                                               {u + "t", "he"}}) {
        if (!vocab.contains(a + b)) vocab[a + b] = id++;
        merges.push_back(a + " " + b);
    }
    return json{
        {"version", "1.0"},
        {"added_tokens",
         {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
          {{"id", 1}, {"content", "<s>"}, {"special", true}},
          {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
        {"normalizer",
         {{"type", "Sequence"},
          {"normalizers",
           {{{"type", "Prepend"}, {"prepend", u}},
            {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", u}}}}}},
        {"pre_tokenizer", nullptr},
        {"post_processor",
         {{"type", "TemplateProcessing"},
          {"single",
           {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
            {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
          {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
        {"decoder",
         {{"type", "Sequence"},
          {"decoders",
           {{{"type", "Replace"}, {"pattern", {{"String", u}}}, {"content", " "}},
            {{"type", "ByteFallback"}},
            {{"type", "Fuse"}},
            {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
        {"model",
         {{"type", "BPE"},
          {"unk_token", "<unk>"},
          {"byte_fallback", true},
          {"fuse_unk", true},
          {"vocab", vocab},
          {"merges", merges}}}};
}

// Random text: ASCII, multi-byte UTF-8 (Latin, Cyrillic, CJK), emoji (with ZWJ and skin
// tones), whitespace runs and newlines. '<' and U+2581 are left out: "<s>" would be an added
// token and '▁' is a space to SentencePiece, neither of which round-trips.
std::string random_text(std::mt19937& rng, size_t max_chars) {
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
                                                  "\xC3\x9F",
                                                  "\xD0\x96",
                                                  "\xD0\xBC",
                                                  "\xCE\xB1",
                                                  "\xE6\x97\xA5",
                                                  "\xE6\x9C\xAC",
                                                  "\xED\x95\x9C",
                                                  "\xE0\xA4\xA8",
                                                  "\xE2\x82\xAC",
                                                  "\xE2\x80\x94",
                                                  "\xC2\xA0",
                                                  "\xE3\x80\x80",
                                                  "\xC2\x85",
                                                  "\xEF\xBB\xBF",
                                                  "\xCC\x81",
                                                  "\xF0\x9F\x98\x80",
                                                  "\xF0\x9F\x9A\x80",
                                                  "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
                                                  "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x92\xBB",
                                                  "\xF0\x9F\x87\xAB\xF0\x9F\x87\xB7",
                                                  "hello",
                                                  " world",
                                                  "the",
                                                  " The",
                                                  "123456",
                                                  "\xF0\x90\x8D\x88"};
    std::uniform_int_distribution<size_t> len(0, max_chars), pick(0, pool.size() - 1);
    std::string s;
    for (size_t n = len(rng), i = 0; i < n; ++i) s += pool[pick(rng)];
    return s;
}

void expect_stream_matches_decode(const Tokenizer& t, const std::vector<int32_t>& ids,
                                  bool skip_special, const std::string& what) {
    StreamDecoder stream(t, skip_special);
    std::string joined;
    for (const int32_t id : ids) {
        const std::string piece = stream.push(id);
        // No piece may end or start inside a UTF-8 character: each is valid on its own.
        EXPECT_TRUE(tok::utf8_valid(piece)) << what << ": piece " << show(piece);
        joined += piece;
    }
    joined += stream.flush();
    EXPECT_EQ(joined, t.decode(ids, skip_special)) << what;
}

// ---- (a) the shipped tiny models ------------------------------------------------------------

class TokenizerTiny : public testing::TestWithParam<std::string> {};

TEST_P(TokenizerTiny, ReferenceTextsAndCases) {
    const std::string dir = model_dir(GetParam());
    const auto tok = load_cached(dir);
    const json ref = read_json(fs::path(dir) / "reference.json");
    size_t checked = 0;
    for (const char* key : {"texts", "tokenizer_cases"}) {
        for (const json& c : ref.at(key)) {
            const std::string text = c.at("text").get<std::string>();
            const auto ids = c.at("ids").get<std::vector<int32_t>>();
            EXPECT_EQ(show(tok->encode(text)), show(ids)) << key << " " << show(text);
            const std::string decoded = c.value("decoded", text);
            EXPECT_EQ(tok->decode(ids), decoded) << key << " " << show(text);
            ++checked;
        }
    }
    EXPECT_GT(checked, 10u);
}

TEST_P(TokenizerTiny, SpecialTokensAndMetadata) {
    const auto tok = load_cached(model_dir(GetParam()));
    const auto bos = tok->token_id("<|begin_of_text|>");
    const auto eos = tok->token_id("<|end_of_text|>");
    const auto eot = tok->token_id("<|eot_id|>");
    ASSERT_TRUE(bos && eos && eot);
    EXPECT_EQ(tok->bos_id(), bos);
    EXPECT_EQ(tok->eos_id(), eos);
    EXPECT_TRUE(tok->is_special(*bos));
    EXPECT_FALSE(tok->is_special(0));
    EXPECT_EQ(tok->vocab_size(), *eot + 1);
    const auto stop = tok->stop_ids();
    EXPECT_NE(std::find(stop.begin(), stop.end(), *eos), stop.end());
    EXPECT_NE(std::find(stop.begin(), stop.end(), *eot), stop.end());
    EXPECT_TRUE(tok->chat_template().empty());
    EXPECT_EQ(tok->piece(220), "\xC4\xA0");  // "Ġ", a space
    EXPECT_EQ(tok->piece(-1), "");
    EXPECT_EQ(tok->piece(tok->vocab_size()), "");
    // Special tokens in the text are matched whole; decode keeps them unless told to skip.
    const auto ids = tok->encode("a<|eot_id|>b", false);
    ASSERT_EQ(ids.size(), 3u);
    EXPECT_EQ(ids[1], *eot);
    EXPECT_EQ(tok->decode(ids, false), "a<|eot_id|>b");
    EXPECT_EQ(tok->decode(ids, true), "ab");
    EXPECT_EQ(tok->encode("", true), std::vector<int32_t>{*bos});
    EXPECT_TRUE(tok->encode("", false).empty());
}

INSTANTIATE_TEST_SUITE_P(TokenizerData, TokenizerTiny,
                         testing::Values("tiny-packed", "tiny-master"));

// ---- (b) the real Llama-3 and Llama-2 vocabularies -----------------------------------------

struct SharedVocab {
    const char* dir;
    int32_t bos;
    const char* ids_key_of_package;  // the field with the npm package's ids in known-deviations
};

class TokenizerShared : public testing::TestWithParam<SharedVocab> {
  protected:
    void SetUp() override {
        if (!shared_available()) {
            GTEST_SKIP() << "../shared/reference is absent (it holds the Llama vocabularies, "
                            "which are not redistributed with the repository)";
        }
        tok_ = load_cached(shared_tokenizer_dir(GetParam().dir));
    }
    std::shared_ptr<const Tokenizer> tok_;
};

// cases.json: every text encodes to `ids` (no BOS) and decodes to `decoded`.
TEST_P(TokenizerShared, Cases) {
    const json cases = read_json(shared_tokenizer_dir(GetParam().dir) + "/cases.json");
    size_t pass = 0, n = 0;
    for (const json& c : cases) {
        const std::string text = c.at("text").get<std::string>();
        const auto ids = c.at("ids").get<std::vector<int32_t>>();
        const auto got = tok_->encode(text, false);
        const std::string decoded = tok_->decode(ids, false);
        const bool ok = got == ids && decoded == c.at("decoded").get<std::string>();
        EXPECT_EQ(show(got), show(ids)) << show(text);
        EXPECT_EQ(show(decoded), show(c.at("decoded").get<std::string>())) << show(text);
        pass += ok;
        ++n;
        // With add_special the template's BOS comes first.
        const auto with_bos = tok_->encode(text, true);
        ASSERT_FALSE(with_bos.empty());
        EXPECT_EQ(with_bos[0], GetParam().bos);
        EXPECT_EQ(with_bos.size(), ids.size() + 1);
    }
    std::printf("[ %s ] cases.json: %zu / %zu pass\n", GetParam().dir, pass, n);
    EXPECT_GT(n, 100u);
}

// known-deviations.json: texts where the npm package that produced cases.json disagrees with
// Hugging Face tokenizers; `ids` there are Hugging Face's, which this engine follows.
TEST_P(TokenizerShared, KnownDeviationsFollowHuggingFace) {
    const json cases = read_json(shared_tokenizer_dir(GetParam().dir) + "/known-deviations.json");
    size_t pass = 0;
    for (const json& c : cases) {
        const std::string text = c.at("text").get<std::string>();
        const auto ids = c.at("ids").get<std::vector<int32_t>>();
        const auto got = tok_->encode(text, false);
        EXPECT_EQ(show(got), show(ids)) << show(text) << " (" << c.value("note", "") << ")";
        EXPECT_NE(show(got), show(c.at(GetParam().ids_key_of_package).get<std::vector<int32_t>>()));
        EXPECT_EQ(show(tok_->decode(ids, false)), show(c.at("decoded").get<std::string>()));
        pass += got == ids;
    }
    std::printf("[ %s ] known-deviations.json: %zu / %zu follow Hugging Face\n", GetParam().dir,
                pass, cases.size());
}

TEST_P(TokenizerShared, RoundTripAndStreamOnRandomText) {
    std::mt19937 rng(1234);
    for (int i = 0; i < 300; ++i) {
        const std::string s = random_text(rng, 40);
        const auto ids = tok_->encode(s, true);
        ASSERT_EQ(show(tok_->decode(ids)), show(s));
        expect_stream_matches_decode(*tok_, ids, true, show(s));
        if (HasFailure()) return;
    }
}

TEST_P(TokenizerShared, StreamOnCases) {
    const json cases = read_json(shared_tokenizer_dir(GetParam().dir) + "/cases.json");
    for (const json& c : cases) {
        const auto ids = c.at("ids").get<std::vector<int32_t>>();
        expect_stream_matches_decode(*tok_, ids, false, show(c.at("text").get<std::string>()));
        if (HasFailure()) return;
    }
}

INSTANTIATE_TEST_SUITE_P(
    TokenizerLlama, TokenizerShared,
    testing::Values(SharedVocab{"llama3-tokenizer", 128000, "ids_llama3_tokenizer_js"},
                    SharedVocab{"llama2-tokenizer", 1, "ids_llama_tokenizer_js"}),
    [](const auto& param_info) { return std::string(param_info.param.dir).substr(0, 6); });

TEST(TokenizerSharedMetadata, Llama3AndLlama2) {
    if (!shared_available()) GTEST_SKIP() << "../shared/reference is absent";
    const auto l3 = load_cached(shared_tokenizer_dir("llama3-tokenizer"));
    EXPECT_EQ(l3->vocab_size(), 128256);
    EXPECT_EQ(l3->bos_id(), 128000);
    EXPECT_EQ(l3->eos_id(), 128001);
    auto stop = l3->stop_ids();
    std::sort(stop.begin(), stop.end());
    EXPECT_EQ(stop, (std::vector<int32_t>{128001, 128009}));
    EXPECT_NE(l3->chat_template().find("<|eot_id|>"), std::string::npos);
    EXPECT_EQ(l3->token_id("\xC4\xA0the"), 279);  // "Ġthe"
    EXPECT_EQ(l3->piece(279), "\xC4\xA0the");

    const auto l2 = load_cached(shared_tokenizer_dir("llama2-tokenizer"));
    EXPECT_EQ(l2->vocab_size(), 32000);
    EXPECT_EQ(l2->bos_id(), 1);
    EXPECT_EQ(l2->eos_id(), 2);
    EXPECT_EQ(l2->stop_ids(), std::vector<int32_t>{2});
    EXPECT_TRUE(l2->chat_template().empty());
    // A character that is not a piece falls back to its bytes, which decode back.
    const auto ids = l2->encode("\xF0\x9F\xA6\x99", false);  // 🦙
    EXPECT_EQ(l2->decode(ids), "\xF0\x9F\xA6\x99");
    EXPECT_EQ(l2->piece(ids.back()).substr(0, 3), "<0x");
}

// ---- (c, d) round trips and streaming without ../shared -------------------------------------

TEST(TokenizerRoundTrip, ByteLevelRandomText) {
    const auto tok = load_cached(model_dir("tiny-packed"));
    std::mt19937 rng(42);
    for (int i = 0; i < 500; ++i) {
        const std::string s = random_text(rng, 30);
        const auto ids = tok->encode(s, true);
        ASSERT_EQ(show(tok->decode(ids)), show(s));
        expect_stream_matches_decode(*tok, ids, true, show(s));
        expect_stream_matches_decode(*tok, ids, false, show(s));
        if (HasFailure()) return;
    }
}

TEST(TokenizerRoundTrip, SentencePieceRandomText) {
    TempDir dir;
    const auto tok = Tokenizer::load(dir.write("tokenizer.json", tiny_sentencepiece_json().dump()));
    // The normalizer prepends "▁" and the decoder strips one leading space: " hello" -> ids
    // of "▁▁hello" -> " hello".
    EXPECT_EQ(tok->decode(tok->encode(" hello")), " hello");
    const auto hello = tok->encode("hello world", false);
    EXPECT_EQ(tok->piece(hello[0]), "\xE2\x96\x81hello");
    EXPECT_EQ(tok->piece(hello[1]), "\xE2\x96\x81world");
    EXPECT_EQ(tok->encode("hello", true).front(), 1);
    // Unknown characters become byte tokens.
    const auto ids = tok->encode("\xE6\x97\xA5", false);
    ASSERT_EQ(ids.size(), 4u);  // ▁ + 3 bytes
    EXPECT_EQ(tok->piece(ids[1]), "<0xE6>");
    std::mt19937 rng(7);
    for (int i = 0; i < 500; ++i) {
        const std::string s = random_text(rng, 30);
        const auto enc = tok->encode(s, true);
        ASSERT_EQ(show(tok->decode(enc)), show(s));
        expect_stream_matches_decode(*tok, enc, true, show(s));
        if (HasFailure()) return;
    }
}

TEST(TokenizerStream, HoldsBackIncompleteCharacters) {
    const auto tok = load_cached(model_dir("tiny-packed"));
    // "ü" is two byte tokens in this vocabulary (see reference.json).
    const auto ids = tok->encode("\xC3\xBC!", false);
    ASSERT_EQ(ids.size(), 3u);
    StreamDecoder stream(*tok);
    EXPECT_EQ(stream.push(ids[0]), "");
    EXPECT_EQ(stream.push(ids[1]), "\xC3\xBC");
    EXPECT_EQ(stream.push(ids[2]), "!");
    EXPECT_EQ(stream.flush(), "");
    // An incomplete character left at the end comes out as U+FFFD.
    StreamDecoder cut(*tok);
    EXPECT_EQ(cut.push(ids[0]), "");
    EXPECT_EQ(cut.flush(), "\xEF\xBF\xBD");
}

// One Tokenizer shared by several threads (the pre-token cache is shared): same ids as alone.
TEST(TokenizerThreads, ConcurrentEncodeMatchesSerial) {
    const auto tok = Tokenizer::load(model_dir("tiny-packed"));
    std::mt19937 rng(99);
    std::vector<std::string> texts;
    for (int i = 0; i < 200; ++i) texts.push_back(random_text(rng, 40));
    std::vector<std::vector<int32_t>> expected;
    for (const std::string& t : texts)
        expected.push_back(load_cached(model_dir("tiny-packed"))->encode(t));
    std::atomic<int> mismatches{0};
    std::vector<std::thread> threads;
    for (int k = 0; k < 4; ++k) {
        threads.emplace_back([&, k] {
            for (int rep = 0; rep < 5; ++rep) {
                for (size_t i = 0; i < texts.size(); ++i) {
                    const size_t j = (i * 7 + static_cast<size_t>(k)) % texts.size();
                    if (tok->encode(texts[j]) != expected[j]) ++mismatches;
                }
            }
        });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(mismatches.load(), 0);
}

// ---- (e) bad files and inputs -----------------------------------------------------------------

TEST(TokenizerErrors, BadFiles) {
    TempDir dir;
    json good = tiny_sentencepiece_json();
    const auto write_variant = [&](const std::string& name, const json& j) {
        return dir.write(name, j.dump()).string();
    };

    json unigram = good;
    unigram["model"]["type"] = "Unigram";
    const std::string f1 = write_variant("unigram.json", unigram);
    EXPECT_TRUE(throws_error([&] { Tokenizer::load(f1); }, ErrorCode::UnsupportedFormat,
                             {"unigram.json", "model.type", "Unigram"}));

    json wordpiece = good;
    wordpiece["model"]["type"] = "WordPiece";
    const std::string f2 = write_variant("wordpiece.json", wordpiece);
    EXPECT_TRUE(throws_error([&] { Tokenizer::load(f2); }, ErrorCode::UnsupportedFormat,
                             {"model.type", "WordPiece"}));

    json empty_merges = good;
    empty_merges["model"]["merges"] = json::array();
    const std::string f3 = write_variant("empty_merges.json", empty_merges);
    EXPECT_TRUE(throws_error([&] { Tokenizer::load(f3); }, ErrorCode::ParseError,
                             {"empty_merges.json", "model.merges", "empty"}));

    json no_vocab = good;
    no_vocab["model"].erase("vocab");
    const std::string f4 = write_variant("no_vocab.json", no_vocab);
    EXPECT_TRUE(throws_error([&] { Tokenizer::load(f4); }, ErrorCode::ParseError,
                             {"no_vocab.json", "model.vocab", "missing"}));

    json bad_merge = good;
    bad_merge["model"]["merges"].push_back("x zzz");
    const std::string f5 = write_variant("bad_merge.json", bad_merge);
    EXPECT_TRUE(throws_error([&] { Tokenizer::load(f5); }, ErrorCode::ParseError,
                             {"model.merges[", "zzz"}));

    json bad_decoder = good;
    bad_decoder["decoder"] = {{"type", "WordPiece"}};
    const std::string f6 = write_variant("bad_decoder.json", bad_decoder);
    EXPECT_TRUE(throws_error([&] { Tokenizer::load(f6); }, ErrorCode::UnsupportedFormat,
                             {"decoder.type", "WordPiece"}));

    json bad_regex = good;
    bad_regex["pre_tokenizer"] = {
        {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
    const std::string f7 = write_variant("bad_regex.json", bad_regex);
    EXPECT_TRUE(throws_error([&] { Tokenizer::load(f7); }, ErrorCode::ParseError,
                             {"pre_tokenizer.pattern", "regex"}));

    json wrong_type = good;
    wrong_type["model"]["vocab"]["a"] = "seven";
    const std::string f8 = write_variant("wrong_type.json", wrong_type);
    EXPECT_TRUE(
        throws_error([&] { Tokenizer::load(f8); }, ErrorCode::ParseError, {"model.vocab[\"a\"]"}));

    const std::string malformed =
        dir.write("malformed.json", "{\"model\": {\"type\": \"BPE\",").string();
    EXPECT_TRUE(throws_error([&] { Tokenizer::load(malformed); }, ErrorCode::ParseError,
                             {"malformed.json", "JSON"}));
    const std::string not_object = dir.write("array.json", "[1, 2, 3]").string();
    EXPECT_TRUE(
        throws_error([&] { Tokenizer::load(not_object); }, ErrorCode::ParseError, {"array.json"}));
    EXPECT_TRUE(throws_error([&] { Tokenizer::load((dir.path() / "missing.json").string()); },
                             ErrorCode::NotFound, {"missing.json"}));
    // A directory without tokenizer.json.
    EXPECT_TRUE(throws_error([&] { Tokenizer::load(dir.path().string()); }, ErrorCode::NotFound,
                             {"tokenizer.json"}));

    // Malformed tokenizer_config.json beside a good tokenizer.json.
    TempDir cfg_dir;
    cfg_dir.write("tokenizer.json", good.dump());
    cfg_dir.write("tokenizer_config.json", "{\"eos_token\": ");
    EXPECT_TRUE(throws_error([&] { Tokenizer::load(cfg_dir.path().string()); },
                             ErrorCode::ParseError, {"tokenizer_config.json"}));
}

TEST(TokenizerErrors, BadInputs) {
    const auto tok = load_cached(model_dir("tiny-packed"));
    for (const std::string& bad :
         {std::string("abc\xFF"), std::string("\xC3"), std::string("\xED\xA0\x80"),
          std::string("\xC0\xAF"), std::string("a\0\xF5", 3)}) {
        EXPECT_TRUE(throws_error([&] { tok->encode(bad); }, ErrorCode::InvalidArgument, {"UTF-8"}))
            << show(bad);
    }
    // A NUL byte is valid UTF-8 and round-trips.
    const std::string nul("a\0b", 3);
    EXPECT_EQ(tok->decode(tok->encode(nul)), nul);
    const std::vector<int32_t> out_of_range{1, tok->vocab_size()};
    EXPECT_TRUE(throws_error([&] { tok->decode(out_of_range); }, ErrorCode::InvalidArgument,
                             {"outside the vocabulary"}));
    const std::vector<int32_t> negative{-3};
    EXPECT_TRUE(throws_error([&] { tok->decode(negative); }, ErrorCode::InvalidArgument, {"-3"}));
}

TEST(TokenizerConfig, NamedChatTemplatesAndAlternateMergeForm) {
    TempDir dir;
    json j = tiny_sentencepiece_json();
    // Merges as ["a", "b"] pairs, as newer tokenizer.json files write them.
    json pairs = json::array();
    for (const json& m : j["model"]["merges"]) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        pairs.push_back({s.substr(0, sp), s.substr(sp + 1)});
    }
    j["model"]["merges"] = pairs;
    dir.write("tokenizer.json", j.dump());
    dir.write("tokenizer_config.json", json{{"eos_token", {{"content", "</s>"}}},
                                            {"chat_template",
                                             {{{"name", "tool_use"}, {"template", "T"}},
                                              {{"name", "default"}, {"template", "D"}}}}}
                                           .dump());
    const auto tok = Tokenizer::load(dir.path().string());
    EXPECT_EQ(tok->chat_template(), "D");
    EXPECT_EQ(tok->eos_id(), 2);
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->piece(tok->encode("hello", false).at(0)), "\xE2\x96\x81hello");
}

// Older and alternative layouts: the legacy Metaspace pre-tokenizer / decoder for
// SentencePiece, GPT-2's plain ByteLevel pre-tokenizer, and added tokens with lstrip/rstrip.
TEST(TokenizerConfig, LegacyAndAlternativeLayouts) {
    TempDir dir;
    const json sp = tiny_sentencepiece_json();
    json meta = sp;
    meta["normalizer"] = nullptr;
    meta["pre_tokenizer"] = {{"type", "Metaspace"},
                             {"replacement", "\xE2\x96\x81"},
                             {"prepend_scheme", "first"},
                             {"split", false}};
    meta["decoder"] = {
        {"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}};
    const auto a = Tokenizer::load(dir.write("sp.json", sp.dump()).string());
    const auto b = Tokenizer::load(dir.write("meta.json", meta.dump()).string());
    for (const std::string text : {"hello world", "the world, hello!", "x", ""}) {
        EXPECT_EQ(show(b->encode(text)), show(a->encode(text))) << text;
        EXPECT_EQ(b->decode(b->encode(text)), text);
    }

    json tiny = read_json(fs::path(model_dir("tiny-packed")) / "tokenizer.json");
    const auto reference = load_cached(model_dir("tiny-packed"));
    json gpt2 = tiny;
    gpt2["pre_tokenizer"] = {
        {"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
    gpt2["post_processor"] = {{"type", "ByteLevel"}, {"trim_offsets", true}};
    const auto g = Tokenizer::load(dir.write("gpt2.json", gpt2.dump()).string());
    EXPECT_EQ(g->encode("hello world"), reference->encode("hello world", false));
    EXPECT_EQ(g->bos_id(), std::nullopt);
    EXPECT_EQ(g->decode(g->encode("  tabs\tand 12345 ")), "  tabs\tand 12345 ");

    json strip = tiny;
    for (json& t : strip["added_tokens"]) {
        t["lstrip"] = true;
        t["rstrip"] = true;
    }
    const auto st = Tokenizer::load(dir.write("strip.json", strip.dump()).string());
    const auto eot = *st->token_id("<|eot_id|>");
    EXPECT_EQ(st->encode("a  <|eot_id|>\n b", false),
              (std::vector<int32_t>{*st->token_id("a"), eot, *st->token_id("b")}));
}

// ---- the `bitnet tokenize` command ------------------------------------------------------------

std::string run_cli(const std::string& args, int* status) {
    std::string out;
    FILE* p = ::popen((std::string(BITNET_CLI_PATH) + " " + args).c_str(), "r");
    if (p == nullptr) return out;
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    *status = ::pclose(p);
    return out;
}

TEST(TokenizerCli, TokenizeCommand) {
    const std::string dir = model_dir("tiny-packed");
    const json ref = read_json(fs::path(dir) / "reference.json");
    const json& c = ref.at("tokenizer_cases").at(3);  // "hello world"
    ASSERT_EQ(c.at("text"), "hello world");
    std::string expected;
    for (const json& id : c.at("ids")) expected += (expected.empty() ? "" : " ") + id.dump();
    int status = -1;
    EXPECT_EQ(run_cli("tokenize '" + dir + "' -p 'hello world'", &status), expected + "\n");
    EXPECT_EQ(status, 0);
    // Text from stdin, byte for byte.
    EXPECT_EQ(run_cli("tokenize '" + dir + "/tokenizer.json' < /dev/null --no-special", &status),
              "\n");
    const std::string from_stdin =
        run_cli("tokenize '" + dir + "' <<'EOF'\nhello world\nEOF", &status);
    EXPECT_EQ(status, 0);
    EXPECT_EQ(from_stdin, expected + " 198\n");  // the here-document's newline is "Ċ" (198)
    // --json: ids and pieces.
    const std::string out =
        run_cli("tokenize '" + dir + "' --json --no-special -p 'hello world'", &status);
    EXPECT_EQ(status, 0);
    const json j = json::parse(out);
    auto ids = c.at("ids").get<std::vector<int32_t>>();
    ids.erase(ids.begin());
    EXPECT_EQ(j.at("ids").get<std::vector<int32_t>>(), ids);
    ASSERT_EQ(j.at("pieces").size(), ids.size());
    EXPECT_EQ(j.at("pieces")[0], "h");
    // A bad path fails with a message, not a crash.
    run_cli("tokenize /nonexistent/dir -p x 2>/dev/null", &status);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1);
}

// ---- (f) throughput -------------------------------------------------------------------------

// About 1 MB of English-like text: words drawn from a fixed list with punctuation, numbers and
// paragraph breaks, so the pre-token cache sees a realistic mix of repeats and new words.
std::string english_megabyte() {
    static const char* words[] = {"the",
                                  "of",
                                  "and",
                                  "to",
                                  "in",
                                  "a",
                                  "is",
                                  "that",
                                  "for",
                                  "it",
                                  "as",
                                  "was",
                                  "with",
                                  "be",
                                  "by",
                                  "on",
                                  "not",
                                  "he",
                                  "this",
                                  "are",
                                  "or",
                                  "his",
                                  "from",
                                  "at",
                                  "which",
                                  "but",
                                  "have",
                                  "an",
                                  "had",
                                  "they",
                                  "you",
                                  "were",
                                  "their",
                                  "one",
                                  "all",
                                  "we",
                                  "can",
                                  "her",
                                  "has",
                                  "there",
                                  "been",
                                  "if",
                                  "more",
                                  "when",
                                  "will",
                                  "would",
                                  "who",
                                  "so",
                                  "no",
                                  "engine",
                                  "inference",
                                  "model",
                                  "weights",
                                  "ternary",
                                  "activation",
                                  "quantisation",
                                  "throughput",
                                  "latency",
                                  "memory",
                                  "bandwidth",
                                  "kernel",
                                  "matrix",
                                  "vector",
                                  "tokenizer",
                                  "vocabulary",
                                  "sentence",
                                  "paragraph",
                                  "language",
                                  "generation",
                                  "however",
                                  "therefore",
                                  "nevertheless",
                                  "understanding",
                                  "extraordinary",
                                  "Wikipedia",
                                  "London",
                                  "September",
                                  "government",
                                  "university",
                                  "population",
                                  "approximately",
                                  "significant",
                                  "development",
                                  "international",
                                  "performance"};
    std::mt19937 rng(2024);
    std::uniform_int_distribution<size_t> w(0, std::size(words) - 1);
    std::uniform_int_distribution<int> r(0, 99);
    std::string s;
    s.reserve(1 << 20);
    bool capital = true;
    while (s.size() < (1u << 20)) {
        std::string word = words[w(rng)];
        if (capital) word[0] = static_cast<char>(std::toupper(word[0]));
        capital = false;
        s += word;
        const int x = r(rng);
        if (x < 6) {
            s += ".";
            capital = true;
        } else if (x < 10) {
            s += ",";
        } else if (x < 11) {
            s += " " + std::to_string(r(rng) * 37 + 1900);
        } else if (x < 12) {
            s += "'s";
        }
        s += x == 0 ? "\n\n" : " ";
    }
    return s;
}

void report_throughput(const Tokenizer& t, const std::string& name) {
    const std::string text = english_megabyte();
    double best = 1e9;
    size_t n = 0;
    for (int rep = 0; rep < 3; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        n = t.encode(text, false).size();
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::min(best, s);
    }
    std::printf(
        "[ %s ] encode %.2f MB: %zu tokens, %.3f s, %.1f MB/s (best of 3; cache warm after the "
        "first)\n",
        name.c_str(), text.size() / 1e6, n, best, text.size() / 1e6 / best);
}

TEST(TokenizerThroughput, EncodeOneMegabyte) {
    if (kUnderSanitizers) GTEST_SKIP() << "a throughput figure means nothing under the sanitizers";
    report_throughput(*Tokenizer::load(model_dir("tiny-packed")), "tiny-packed");
    if (!shared_available()) {
        std::printf("(../shared absent: Llama-3 / Llama-2 throughput not measured)\n");
        return;
    }
    // A fresh load, so the first repetition starts with an empty cache.
    const auto t0 = std::chrono::steady_clock::now();
    const auto l3 = Tokenizer::load(shared_tokenizer_dir("llama3-tokenizer"));
    std::printf("[ llama3-tokenizer ] load %.3f s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    {
        const std::string text = english_megabyte();
        const auto t1 = std::chrono::steady_clock::now();
        const size_t n = l3->encode(text, false).size();
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
        std::printf("[ llama3-tokenizer ] encode 1 MB, cold cache: %zu tokens, %.3f s, %.1f MB/s\n",
                    n, s, text.size() / 1e6 / s);
    }
    report_throughput(*l3, "llama3-tokenizer");
    report_throughput(*load_cached(shared_tokenizer_dir("llama2-tokenizer")), "llama2-tokenizer");
}

}  // namespace
}  // namespace bitnet::test
