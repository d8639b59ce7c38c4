// StreamDecoder: text piece by piece during generation.
//
// pending_ holds a few already emitted tokens (the context) followed by the tokens not yet
// emitted; emitted_ is the decode of the context. Each push decodes pending_ and emits what
// the decode adds beyond emitted_. The context makes decoders that look at neighbours see what
// they see in a full decode: Llama-2's Strip removes the leading space of the first token
// only, and its ByteFallback joins a run of <0xXX> tokens before checking it is UTF-8.
// A decode ending in U+FFFD is held back: its last character is most likely a UTF-8
// sequence still missing bytes.
#include <algorithm>

#include "bitnet/tokenizer.h"

namespace bitnet {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
// A UTF-8 character has at most 4 bytes, one token each, plus the context: beyond this many
// pending tokens a trailing U+FFFD is real and is emitted.
constexpr size_t kMaxPending = 16;
constexpr size_t kMaxContext = 8;

// A byte-fallback token "<0xXX>" carrying a UTF-8 continuation byte: a decode that starts there
// would see a broken run of bytes.
bool is_continuation_byte_token(const std::string& piece) {
    if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>') return false;
    const char hi = piece[3];
    return hi == '8' || hi == '9' || hi == 'A' || hi == 'B' || hi == 'a' || hi == 'b';
}

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
    pending_.push_back(id);
    const std::string text = tokenizer_.decode(pending_, skip_special_);
    if (text.ends_with(kReplacement) && pending_.size() < kMaxPending) return {};
    std::string out = text.starts_with(emitted_) ? text.substr(emitted_.size()) : text;

    // New context: back to the latest token that starts text of its own (not a skipped special
    // token, not the middle of a byte run), at most kMaxContext tokens.
    size_t k = pending_.size();
    const size_t lowest = pending_.size() > kMaxContext ? pending_.size() - kMaxContext : 0;
    while (k > lowest) {
        --k;
        const int32_t t = pending_[k];
        if (skip_special_ && tokenizer_.is_special(t)) continue;
        if (is_continuation_byte_token(tokenizer_.piece(t))) continue;
        break;
    }
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(k));
    emitted_ = tokenizer_.decode(pending_, skip_special_);
    return out;
}

std::string StreamDecoder::flush() {
    if (pending_.empty()) return {};
    const std::string text = tokenizer_.decode(pending_, skip_special_);
    std::string out = text.starts_with(emitted_) ? text.substr(emitted_.size()) : text;
    // Keep the last token as context, so pushing more after a flush still decodes correctly.
    pending_.erase(pending_.begin(), pending_.end() - 1);
    emitted_ = tokenizer_.decode(pending_, skip_special_);
    return out;
}

}  // namespace bitnet
