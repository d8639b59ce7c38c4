// ChatTemplate: parses a Jinja chat template once and renders conversations with it.
#include "bitnet/chat_template.h"

#include <cctype>

#include "bitnet/error.h"
#include "chat/jinja_eval.h"
#include "chat/jinja_lexer.h"
#include "chat/jinja_parser.h"

namespace bitnet {

ChatTemplate::ChatTemplate(std::string source) : source_(std::move(source)) {
    body_ = jinja::parse(jinja::lex(source_));
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt, const std::string& bos_token,
                                 const std::string& eos_token,
                                 const std::map<std::string, std::string>& extra) const {
    using jinja::Value;
    jinja::ValueList list;
    list.reserve(messages.size());
    for (const ChatMessage& m : messages) {
        jinja::ValueMap d;
        d.items = {{"role", Value::string(m.role)}, {"content", Value::string(m.content)}};
        list.push_back(Value::make_dict(std::move(d)));
    }
    // Extras first: the standard variables and functions take precedence over them.
    std::vector<std::pair<std::string, Value>> globals;
    for (const auto& [k, v] : extra) globals.emplace_back(k, Value::string(v));
    globals.emplace_back("messages", Value::make_list(std::move(list)));
    globals.emplace_back("add_generation_prompt", Value::boolean(add_generation_prompt));
    globals.emplace_back("bos_token", Value::string(bos_token));
    globals.emplace_back("eos_token", Value::string(eos_token));
    for (const char* f : {"raise_exception", "namespace", "range", "dict"}) {
        globals.emplace_back(f, Value::function(f));
    }
    try {
        return jinja::render(body_, globals, jinja::RenderLimits{});
    } catch (const jinja::TemplateError& e) {
        throw Error(ErrorCode::InvalidArgument, std::string("chat template: ") + e.what());
    }
}

std::string render_default_chat(const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt) {
    // The 2B-4T template: role | capitalize + ': ' + content | trim + '<|eot_id|>' per message.
    std::string out;
    for (const ChatMessage& m : messages) {
        std::string role;
        for (size_t k = 0; k < m.role.size(); ++k) {
            const auto c = static_cast<unsigned char>(m.role[k]);
            if (c >= 0x80) {
                role += static_cast<char>(c);
            } else {
                role += static_cast<char>(k == 0 ? std::toupper(c) : std::tolower(c));
            }
        }
        out += role + ": " + jinja::py_strip(m.content, true, true) + "<|eot_id|>";
    }
    if (add_generation_prompt) out += "Assistant: ";
    return out;
}

}  // namespace bitnet
