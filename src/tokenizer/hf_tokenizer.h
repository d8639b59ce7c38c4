// The Tokenizer implementation: Hugging Face's pipeline (added tokens -> normalizer ->
// pre-tokenizer -> BPE -> post-processor, and the decoder chain back), configured from
// tokenizer.json by tokenizer_json.cpp. Byte-level BPE and SentencePiece-style BPE are the same
// pipeline with different components.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bitnet/tokenizer.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pretokenizer.h"

namespace bitnet::tok {

// Everything the loader reads, handed to HfTokenizer in one piece.
struct TokenizerParts {
    std::unique_ptr<BpeModel> model;
    std::vector<AddedToken> added;
    Normalizer normalizer;
    PreTokenizer pre_tokenizer;
    Decoder decoder;
    // The post-processor's single-sequence template: ids around $A.
    std::vector<int32_t> prefix;
    std::vector<int32_t> suffix;
    std::optional<int32_t> bos;
    std::optional<int32_t> eos;
    std::vector<int32_t> stop;
    std::string chat_template;
};

class HfTokenizer final : public Tokenizer {
  public:
    explicit HfTokenizer(TokenizerParts parts);

    std::vector<int32_t> encode(std::string_view text, bool add_special) const override;
    std::string decode(std::span<const int32_t> ids, bool skip_special) const override;
    int vocab_size() const override { return vocab_size_; }
    std::string piece(int32_t id) const override;
    std::optional<int32_t> token_id(std::string_view piece) const override;
    bool is_special(int32_t id) const override;
    std::optional<int32_t> bos_id() const override { return p_.bos; }
    std::optional<int32_t> eos_id() const override { return p_.eos; }
    std::vector<int32_t> stop_ids() const override { return p_.stop; }
    const std::string& chat_template() const override { return p_.chat_template; }
    // The components, for writing this vocabulary to another format (GGUF).
    const TokenizerParts& parts() const { return p_; }

  private:
    TokenizerParts p_;
    AddedTokenMatcher matcher_;
    bool byte_level_ = false;
    int vocab_size_ = 0;
    std::vector<const AddedToken*> added_by_id_;  // id -> its added token, or null
    StringMap<int32_t> added_ids_;                // content -> id
};

}  // namespace bitnet::tok
