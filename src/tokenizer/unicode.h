// UTF-8 helpers and the GPT-2 byte <-> unicode mapping used by byte-level BPE.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace bitnet::tok {

// Length of the longest valid UTF-8 prefix of `s` (== s.size() when all of it is valid).
// Strict: rejects overlong forms, surrogates and code points above U+10FFFF.
size_t utf8_valid_prefix(std::string_view s);
inline bool utf8_valid(std::string_view s) {
    return utf8_valid_prefix(s) == s.size();
}

// Byte length of the UTF-8 sequence that starts with `lead` (1 for a stray continuation byte,
// so that iteration over already validated text never stalls).
inline size_t utf8_seq_len(unsigned char lead) {
    if (lead < 0x80) return 1;
    if ((lead & 0xE0) == 0xC0) return 2;
    if ((lead & 0xF0) == 0xE0) return 3;
    if ((lead & 0xF8) == 0xF0) return 4;
    return 1;
}

// Decodes the code point at s[pos] (valid UTF-8 assumed) and advances pos.
uint32_t utf8_next(std::string_view s, size_t& pos);
void utf8_append(std::string& out, uint32_t cp);

// Replaces every invalid sequence by U+FFFD, the way String::from_utf8_lossy (Rust) and the
// Hugging Face decoders do: a maximal invalid prefix of a sequence becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// GPT-2's reversible byte -> printable code point table: printable Latin-1 bytes map to
// themselves, the other 68 to U+0100.. in byte order, so every byte string is a visible string.
struct ByteLevelTable {
    std::array<uint32_t, 256> byte_to_cp{};
    std::array<std::string, 256> byte_to_utf8{};  // the same, UTF-8 encoded
    // code point -> byte, -1 for code points outside the table (all of them are < 0x144)
    std::array<int16_t, 0x144> cp_to_byte{};
};
const ByteLevelTable& byte_level_table();

// Maps raw bytes to their byte-level string ("Ġthe" for " the").
std::string bytes_to_byte_level(std::string_view bytes);
// The inverse; false (and `out` unspecified) when a character is not in the table.
bool byte_level_to_bytes(std::string_view text, std::string& out);

// Every occurrence of `pattern` (non-empty) in `s` replaced by `content`; an empty pattern
// returns `s` unchanged.
std::string replace_literal(const std::string& s, std::string_view pattern,
                            std::string_view content);

}  // namespace bitnet::tok
