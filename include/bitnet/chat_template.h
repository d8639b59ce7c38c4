// Chat templates: the Jinja `chat_template` that models ship in tokenizer_config.json, rendered
// by a small interpreter for the subset of Jinja2 that real templates use (see
// src/chat/jinja_parser.h for the grammar). It renders as Hugging Face transformers does:
// trim_blocks and lstrip_blocks on, `raise_exception(msg)` and `namespace()` available,
// `|tojson` without ASCII escaping.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace bitnet {

struct ChatMessage {
    std::string role;
    std::string content;
};

namespace jinja {
struct Node;
}

class ChatTemplate {
  public:
    // Parses once; throws bitnet::Error(ParseError) naming line and column on a syntax error.
    explicit ChatTemplate(std::string source);
    ~ChatTemplate();
    ChatTemplate(ChatTemplate&&) noexcept;
    ChatTemplate& operator=(ChatTemplate&&) noexcept;

    // Renders with the variables `messages` (a list of {role, content} dicts),
    // `add_generation_prompt`, `bos_token` and `eos_token`, plus `extra` string variables.
    // Failures (raise_exception, an unknown filter, a type error, a limit passed: 16 MiB of
    // output, 10^6 loop iterations) throw bitnet::Error(InvalidArgument) naming the problem.
    std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                       const std::string& bos_token, const std::string& eos_token,
                       const std::map<std::string, std::string>& extra = {}) const;

    const std::string& source() const { return source_; }

  private:
    std::string source_;
    std::vector<std::unique_ptr<jinja::Node>> body_;
};

// The format of microsoft/bitnet-b1.58-2B-4T, for models without a template: "System:
// ...<|eot_id|>" for a system message, "User: ...<|eot_id|>" and "Assistant: ...<|eot_id|>" for
// turns (role capitalised, content trimmed, as that model's template does), then "Assistant: " when
// add_generation_prompt. "<|begin_of_text|>" is not included: the tokenizer adds BOS.
std::string render_default_chat(const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt);

class Tokenizer;

// The prompt text for a conversation with a model: its tokenizer's chat_template when it has one
// (bos_token / eos_token taken from the tokenizer), else render_default_chat.
struct ChatPrompt {
    std::string text;
    // Whether encoding should let the tokenizer add BOS: false when the template already wrote it.
    bool add_special = true;
};
ChatPrompt build_chat_prompt(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                             bool add_generation_prompt = true);

}  // namespace bitnet
