// Chat templates: the Jinja subset interpreter against real Jinja2 (expected.json, written by
// tests/data/chat_templates/make_expected.py), its error reporting and limits, and the default
// 2B-4T chat format.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bitnet/chat_template.h"
#include "bitnet/error.h"
#include "bitnet/tokenizer.h"
#include "test_support.h"

namespace bitnet {
namespace {

using nlohmann::json;
using test::throws_error;

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string data_dir() {
    return test::model_dir("chat_templates");
}

const json& expected() {
    static const json j = json::parse(read_file(data_dir() + "/expected.json"));
    return j;
}

std::vector<ChatMessage> conversation(const std::string& name) {
    std::vector<ChatMessage> out;
    for (const json& m : expected().at("conversations").at(name)) {
        out.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
    }
    return out;
}

// Renders every case of `cases` whose template is `name` and compares with Jinja2.
int check_cases(const ChatTemplate& tmpl, const json& cases, const std::string& name) {
    int checked = 0;
    for (const json& c : cases) {
        if (c.at("template") != name) continue;
        const std::string conv = c.at("conversation");
        const bool gen = c.at("add_generation_prompt");
        SCOPED_TRACE(name + " / " + conv + (gen ? " / add_generation_prompt" : ""));
        auto render = [&] {
            return tmpl.render(conversation(conv), gen, c.at("bos_token"), c.at("eos_token"));
        };
        if (c.contains("error")) {
            EXPECT_TRUE(throws_error(render, ErrorCode::InvalidArgument,
                                     {c.at("error").get<std::string>()}));
        } else {
            EXPECT_EQ(render(), c.at("output").get<std::string>());
        }
        ++checked;
    }
    return checked;
}

class ChatTemplateGolden : public testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateGolden, MatchesJinja2) {
    const std::string name = GetParam();
    const ChatTemplate tmpl(read_file(data_dir() + "/" + name + ".jinja"));
    EXPECT_GE(check_cases(tmpl, expected().at("cases"), name), 10);
}

INSTANTIATE_TEST_SUITE_P(ChatTemplate, ChatTemplateGolden,
                         testing::Values("llama3", "bitnet-2b4t", "llama2", "chatml", "mistral",
                                         "zephyr", "gemma", "falcon3", "namespace", "whitespace",
                                         "expressions"),
                         [](const testing::TestParamInfo<std::string>& p) {
                             std::string n = p.param;
                             for (char& c : n) {
                                 if (c == '-') c = '_';
                             }
                             return n;
                         });

TEST(ChatTemplateGoldenFiles, EveryTemplateIsTested) {
    // A template added to the directory without a test parameter would go unchecked.
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(data_dir())) {
        n += e.path().extension() == ".jinja";
    }
    EXPECT_EQ(n, 11);
}

// The real template of the Llama-3-tokenizer reference (the 2B-4T format), never copied here.
TEST(ChatTemplateReal, Llama3TokenizerConfig) {
    const std::string path =
        test::shared_dir() + "/reference/llama3-tokenizer/tokenizer_config.json";
    if (!test::shared_available() || !std::filesystem::exists(path)) {
        GTEST_SKIP() << "no " << path;
    }
    if (!expected().contains("llama3-real")) {
        GTEST_SKIP() << "expected.json was generated without the shared reference";
    }
    const json config = json::parse(read_file(path));
    const ChatTemplate tmpl(config.at("chat_template").get<std::string>());
    EXPECT_EQ(check_cases(tmpl, expected().at("llama3-real"), "llama3-real"), 10);
    // It is the format render_default_chat falls back to.
    for (const auto& [name, conv] : expected().at("conversations").items()) {
        SCOPED_TRACE(name);
        for (bool gen : {false, true}) {
            EXPECT_EQ(tmpl.render(conversation(name), gen, "", ""),
                      render_default_chat(conversation(name), gen));
        }
    }
}

TEST(ChatTemplateDefault, MatchesBitnet2B4TFormat) {
    const std::vector<ChatMessage> msgs = {
        {"system", "Be brief."}, {"user", "Hi "}, {"assistant", "Hello."}, {"user", "2+2?"}};
    EXPECT_EQ(render_default_chat(msgs, true),
              "System: Be brief.<|eot_id|>User: Hi<|eot_id|>Assistant: Hello.<|eot_id|>"
              "User: 2+2?<|eot_id|>Assistant: ");
    EXPECT_EQ(render_default_chat({{"user", "x"}}, false), "User: x<|eot_id|>");
    EXPECT_EQ(render_default_chat({}, true), "Assistant: ");
    const ChatTemplate tmpl(read_file(data_dir() + "/bitnet-2b4t.jinja"));
    for (const auto& [name, conv] : expected().at("conversations").items()) {
        SCOPED_TRACE(name);
        for (bool gen : {false, true}) {
            EXPECT_EQ(render_default_chat(conversation(name), gen),
                      tmpl.render(conversation(name), gen, "", ""));
        }
    }
}

std::string render(const std::string& src, const std::map<std::string, std::string>& extra = {}) {
    return ChatTemplate(src).render({{"user", "hi"}}, false, "<s>", "</s>", extra);
}

TEST(ChatTemplateSemantics, VariablesAndScoping) {
    EXPECT_EQ(render("{{ who }}-{{ bos_token }}{{ eos_token }}", {{"who", "me"}}), "me-<s></s>");
    EXPECT_EQ(render("{{ messages[0].role }} {{ add_generation_prompt }}"), "user False");
    // Undefined renders as nothing; attributes of undefined values are undefined too.
    EXPECT_EQ(render("[{{ nope }}{{ nope.attr }}{{ nope['k'] }}{{ nope.a is defined }}]"),
              "[False]");
    // `set` in a loop body stays there, and does not survive to the next iteration.
    EXPECT_EQ(render("{% for i in [1, 2] %}[{{ x }}]{% set x = i %}{% endfor %}[{{ x }}]"),
              "[][][]");
    EXPECT_EQ(render("{% if true %}{% set x = 5 %}{% endif %}{{ x }}"), "5");
    EXPECT_EQ(render("{{ 'a' }}\r\n{{ 'b' }}\r\n"), "a\nb");  // newlines normalised, last dropped
}

TEST(ChatTemplateErrors, SyntaxErrorsNameLineAndColumn) {
    EXPECT_TRUE(throws_error([] { ChatTemplate("ok\n{% if x %}\n  {{ 1 + }}\n{% endif %}"); },
                             ErrorCode::ParseError,
                             {"line 3", "column 10", "expected an expression"}));
    EXPECT_TRUE(throws_error([] { ChatTemplate("{% for m in messages %}x"); },
                             ErrorCode::ParseError, {"line 1", "'endfor'"}));
    EXPECT_TRUE(throws_error([] { ChatTemplate("a\n{% macro f() %}{% endmacro %}"); },
                             ErrorCode::ParseError, {"line 2", "column 4", "'macro'"}));
    EXPECT_TRUE(throws_error([] { ChatTemplate("{% endif %}"); }, ErrorCode::ParseError,
                             {"unexpected 'endif'"}));
    EXPECT_TRUE(throws_error([] { ChatTemplate("{{ 'abc }}"); }, ErrorCode::ParseError,
                             {"unterminated string"}));
    EXPECT_TRUE(throws_error([] { ChatTemplate("{# never closed"); }, ErrorCode::ParseError,
                             {"unclosed comment"}));
    EXPECT_TRUE(
        throws_error([] { ChatTemplate("{{ x "); }, ErrorCode::ParseError, {"never closed"}));
    EXPECT_TRUE(throws_error([] { ChatTemplate("{% break %}"); }, ErrorCode::ParseError,
                             {"outside a loop"}));
}

TEST(ChatTemplateErrors, RenderErrorsNameTheProblem) {
    EXPECT_TRUE(throws_error([] { render("{{ raise_exception('Roles must alternate') }}"); },
                             ErrorCode::InvalidArgument, {"Roles must alternate"}));
    EXPECT_TRUE(throws_error([] { render("\n  {{ 'x' | nope }}"); }, ErrorCode::InvalidArgument,
                             {"unknown filter 'nope'", "line 2"}));
    EXPECT_TRUE(throws_error([] { render("{{ 1 is frobnicated }}"); }, ErrorCode::InvalidArgument,
                             {"unknown test 'frobnicated'"}));
    EXPECT_TRUE(throws_error([] { render("{{ 'a' + 1 }}"); }, ErrorCode::InvalidArgument,
                             {"unsupported operand", "'str' and 'int'"}));
    EXPECT_TRUE(throws_error([] { render("{{ 'a' < 1 }}"); }, ErrorCode::InvalidArgument,
                             {"'<' not supported"}));
    EXPECT_TRUE(throws_error([] { render("{{ missing + 1 }}"); }, ErrorCode::InvalidArgument,
                             {"'missing' is undefined"}));
    EXPECT_TRUE(
        throws_error([] { render("{{ 1 // 0 }}"); }, ErrorCode::InvalidArgument, {"by zero"}));
    EXPECT_TRUE(throws_error([] { render("{{ 'abc'.nomethod() }}"); }, ErrorCode::InvalidArgument,
                             {"no method 'nomethod'"}));
    EXPECT_TRUE(throws_error([] { render("{% set x = 1 %}{% set x.a = 2 %}"); },
                             ErrorCode::InvalidArgument, {"not a namespace"}));
    EXPECT_TRUE(throws_error([] { render("{% for a, b in [1] %}{% endfor %}"); },
                             ErrorCode::InvalidArgument, {"cannot unpack"}));
    EXPECT_TRUE(throws_error([] { render("{{ none | tojson }}{{ nope | tojson }}"); },
                             ErrorCode::InvalidArgument, {"'nope' is undefined"}));
}

TEST(ChatTemplateLimits, DeepNestingIsRejected) {
    std::string deep;
    for (int k = 0; k < 100; ++k) deep += "{% if true %}";
    for (int k = 0; k < 100; ++k) deep += "{% endif %}";
    EXPECT_TRUE(
        throws_error([&] { ChatTemplate t(deep); }, ErrorCode::ParseError, {"deeper than 64"}));
    EXPECT_TRUE(throws_error(
        [] {
            ChatTemplate t("{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') +
                           " }}");
        },
        ErrorCode::ParseError, {"deeper than"}));
    EXPECT_TRUE(throws_error([] { ChatTemplate t("{{ " + std::string(100000, '-') + "1 }}"); },
                             ErrorCode::ParseError, {"deeper than"}));
    std::string chain = "{{ 1";
    for (int k = 0; k < 100000; ++k) chain += " + 1";
    EXPECT_TRUE(throws_error([&] { ChatTemplate t(chain + " }}"); }, ErrorCode::ParseError,
                             {"deeper than"}));
    std::string ok;
    for (int k = 0; k < 30; ++k) ok += "{% for i in [1] %}";
    ok += "x";
    for (int k = 0; k < 30; ++k) ok += "{% endfor %}";
    EXPECT_EQ(render(ok), "x");
}

TEST(ChatTemplateLimits, RunawayLoopsAndOutputStop) {
    EXPECT_TRUE(throws_error(
        [] {
            render(
                "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}"
                "{% endfor %}{% endfor %}{% endfor %}");
        },
        ErrorCode::InvalidArgument, {"loop iterations"}));
    EXPECT_TRUE(throws_error([] { render("{{ range(1000000000000) | length }}"); },
                             ErrorCode::InvalidArgument, {"loop iterations"}));
    EXPECT_TRUE(
        throws_error([] { render("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}"); },
                     ErrorCode::InvalidArgument, {"output exceeds"}));
    EXPECT_TRUE(throws_error([] { render("{{ 'x' * 1000000000000 }}"); },
                             ErrorCode::InvalidArgument, {"exceed"}));
    // Quadratic string building is bounded by bytes built, not only bytes output.
    EXPECT_TRUE(throws_error(
        [] {
            render(
                "{% set ns = namespace(s='') %}{% for i in range(200000) %}"
                "{% set ns.s = ns.s ~ 'xxxxxxxxxx' %}{% endfor %}");
        },
        ErrorCode::InvalidArgument, {"bytes of strings"}));
    EXPECT_TRUE(throws_error([] { render("{% set ns = namespace() %}{% set ns.x = ns %}"); },
                             ErrorCode::InvalidArgument, {"cannot store a namespace"}));
    EXPECT_TRUE(throws_error(
        [] {
            render("{% set a = namespace() %}{% set b = namespace() %}{% set a.x = {'k': [b]} %}");
        },
        ErrorCode::InvalidArgument, {"cannot store a namespace"}));
    EXPECT_TRUE(throws_error(
        [] {
            render(
                "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
                "{% set ns.l = [ns.l] %}{% endfor %}");
        },
        ErrorCode::InvalidArgument, {"nests more than 64 levels"}));
    EXPECT_EQ(render("{% set ns = namespace(l=[]) %}{% for i in range(3) %}{% set ns.l = [ns.l] %}"
                     "{% endfor %}{{ ns.l }} {{ [ns] | length }}"),
              "[[[[]]]] 1");
}

// Mangled templates fail with bitnet::Error or render; they never crash (run under ASan).
TEST(ChatTemplateRobustness, MutatedTemplatesNeverCrash) {
    std::mt19937 rng(1234);
    const std::string alphabet = "{}%#-+()[]'\".|:,=~ \nabcx01";
    const std::vector<ChatMessage> msgs = conversation("multi_turn");
    for (const char* name : {"llama3", "llama2", "zephyr", "whitespace", "expressions"}) {
        const std::string src = read_file(data_dir() + "/" + name + ".jinja");
        for (int trial = 0; trial < 300; ++trial) {
            std::string s = src;
            const int edits = 1 + static_cast<int>(rng() % 4);
            for (int e = 0; e < edits && !s.empty(); ++e) {
                const size_t pos = rng() % s.size();
                const char c = alphabet[rng() % alphabet.size()];
                switch (rng() % 3) {
                    case 0:
                        s[pos] = c;
                        break;
                    case 1:
                        s.insert(pos, 1, c);
                        break;
                    default:
                        s.erase(pos, 1 + rng() % 8);
                }
            }
            try {
                ChatTemplate(s).render(msgs, trial % 2 == 0, "<s>", "</s>");
            } catch (const Error&) {
            }
        }
    }
}

// ---- the prompt for a model: its tokenizer's template, or the 2B-4T format -----------------

// A copy of tiny-packed's tokenizer with a chat_template in its tokenizer_config.json.
class TemplatedTokenizerDir {
  public:
    explicit TemplatedTokenizerDir(const std::string& chat_template) {
        static int counter = 0;
        dir_ = std::filesystem::temp_directory_path() /
               ("bitnet-chat-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
        std::filesystem::create_directories(dir_);
        std::filesystem::copy_file(test::model_dir("tiny-packed") + "/tokenizer.json",
                                   dir_ / "tokenizer.json");
        std::ifstream in(test::model_dir("tiny-packed") + "/tokenizer_config.json");
        nlohmann::json config = nlohmann::json::parse(in);
        config["chat_template"] = chat_template;
        std::ofstream(dir_ / "tokenizer_config.json") << config.dump();
    }
    ~TemplatedTokenizerDir() {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    std::string path() const { return dir_.string(); }

  private:
    std::filesystem::path dir_;
};

const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief."}, {"user", "Hi!"}, {"assistant", "Hello."}, {"user", "Bye?"}};

TEST(ChatPromptTest, UsesTheTokenizersTemplate) {
    TemplatedTokenizerDir dir(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
    const auto tokenizer = Tokenizer::load(dir.path());
    const ChatPrompt p = build_chat_prompt(*tokenizer, kConversation);
    EXPECT_EQ(p.text,
              "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
              "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye?<|im_end|>\n"
              "<|im_start|>assistant\n");
    EXPECT_TRUE(p.add_special);
}

// A template that writes bos_token itself must not get a second BOS from the tokenizer.
TEST(ChatPromptTest, TemplateWithBosTokenIsEncodedWithoutAnotherBos) {
    TemplatedTokenizerDir dir(
        "{{ bos_token }}{% for m in messages %}{{ m.role | capitalize }}: {{ m.content }}{{ "
        "eos_token }}"
        "{% endfor %}{% if add_generation_prompt %}Assistant: {% endif %}");
    const auto tokenizer = Tokenizer::load(dir.path());
    const ChatPrompt p = build_chat_prompt(*tokenizer, kConversation);
    ASSERT_TRUE(tokenizer->bos_id().has_value());
    EXPECT_EQ(p.text.rfind(tokenizer->piece(*tokenizer->bos_id()), 0), 0u) << p.text;
    EXPECT_FALSE(p.add_special);
    const std::vector<int32_t> ids = tokenizer->encode(p.text, p.add_special);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), *tokenizer->bos_id()), 1);
    EXPECT_EQ(ids.front(), *tokenizer->bos_id());
}

TEST(ChatPromptTest, WithoutATemplateUsesThe2B4TFormat) {
    const auto tokenizer = Tokenizer::load(test::model_dir("tiny-packed"));
    ASSERT_TRUE(tokenizer->chat_template().empty());
    const ChatPrompt p = build_chat_prompt(*tokenizer, {{"user", "Hi!"}});
    EXPECT_EQ(p.text, "User: Hi!<|eot_id|>Assistant: ");
    EXPECT_TRUE(p.add_special);
}

TEST(ChatPromptTest, ATemplateThatFailsIsAnError) {
    TemplatedTokenizerDir dir("{{ raise_exception('roles must alternate') }}");
    const auto tokenizer = Tokenizer::load(dir.path());
    EXPECT_TRUE(test::throws_error([&] { build_chat_prompt(*tokenizer, kConversation); },
                                   ErrorCode::InvalidArgument, {"roles must alternate"}));
}

}  // namespace
}  // namespace bitnet
