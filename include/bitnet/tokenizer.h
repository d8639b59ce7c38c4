// Text <-> token ids, loaded from a Hugging Face tokenizer.json (+ tokenizer_config.json).
// Byte-level BPE (GPT-2 / Llama-3) and SentencePiece-style BPE with byte fallback (Llama-2).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bitnet {

class Tokenizer {
  public:
    // `path`: a model directory holding tokenizer.json (and optionally tokenizer_config.json),
    // or the path of a tokenizer.json. Throws bitnet::Error naming the file and field at fault.
    static std::shared_ptr<const Tokenizer> load(const std::string& path);
    virtual ~Tokenizer() = default;

    // Encodes UTF-8 text (invalid UTF-8 is an InvalidArgument error). With add_special, the
    // post-processor's tokens (e.g. BOS) are added as transformers does.
    virtual std::vector<int32_t> encode(std::string_view text, bool add_special = true) const = 0;
    // Decodes ids to text; special tokens are dropped when skip_special.
    virtual std::string decode(std::span<const int32_t> ids, bool skip_special = true) const = 0;

    virtual int vocab_size() const = 0;
    // The token's string as stored in the vocabulary (e.g. "Ġthe"), or empty when out of range.
    virtual std::string piece(int32_t id) const = 0;
    virtual std::optional<int32_t> token_id(std::string_view piece) const = 0;
    virtual bool is_special(int32_t id) const = 0;

    virtual std::optional<int32_t> bos_id() const = 0;
    virtual std::optional<int32_t> eos_id() const = 0;
    // Ids that end a generation: EOS plus end-of-turn tokens such as <|eot_id|>.
    virtual std::vector<int32_t> stop_ids() const = 0;
    // tokenizer_config.json's chat_template, or empty.
    virtual const std::string& chat_template() const = 0;
};

// Turns ids into text piece by piece while they are generated: bytes of a UTF-8 character split
// across tokens are held back until the character is complete.
class StreamDecoder {
  public:
    explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
    // The text that became complete with this token (possibly empty).
    std::string push(int32_t id);
    // Whatever is still held back (an incomplete character is emitted as U+FFFD).
    std::string flush();

  private:
    const Tokenizer& tokenizer_;
    bool skip_special_;
    std::vector<int32_t> pending_;
    std::string emitted_;
};

}  // namespace bitnet
