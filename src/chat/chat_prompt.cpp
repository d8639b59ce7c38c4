#include "bitnet/chat_template.h"
#include "bitnet/tokenizer.h"

namespace bitnet {

ChatPrompt build_chat_prompt(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                             bool add_generation_prompt) {
    ChatPrompt prompt;
    if (tokenizer.chat_template().empty()) {
        prompt.text = render_default_chat(messages, add_generation_prompt);
        return prompt;
    }
    const std::string bos =
        tokenizer.bos_id() ? tokenizer.piece(*tokenizer.bos_id()) : std::string();
    const std::string eos =
        tokenizer.eos_id() ? tokenizer.piece(*tokenizer.eos_id()) : std::string();
    // Templates are parsed per call: a conversation turn costs far more in the model than here.
    prompt.text =
        ChatTemplate(tokenizer.chat_template()).render(messages, add_generation_prompt, bos, eos);
    prompt.add_special = bos.empty() || prompt.text.compare(0, bos.size(), bos) != 0;
    return prompt;
}

}  // namespace bitnet
