#include "tokenizer/unicode.h"

#include <algorithm>

namespace bitnet::tok {

namespace {

// Length of the valid sequence at s[i], or 0 when it is not valid. Follows the table of
// well-formed byte sequences in the Unicode standard (ch. 3, table 3-7).
size_t valid_seq_at(std::string_view s, size_t i) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    const size_t left = s.size() - i;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return left >= 2 && (b(i + 1) & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3) return 0;
        const unsigned char c1 = b(i + 1);
        const unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;
        const unsigned char hi = c == 0xED ? 0x9F : 0xBF;  // ED A0..BF would be surrogates
        if (c1 < lo || c1 > hi) return 0;
        return (b(i + 2) & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4) return 0;
        const unsigned char c1 = b(i + 1);
        const unsigned char lo = c == 0xF0 ? 0x90 : 0x80;
        const unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
        if (c1 < lo || c1 > hi) return 0;
        return (b(i + 2) & 0xC0) == 0x80 && (b(i + 3) & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

// How many bytes at s[i] form the maximal prefix of a valid sequence (at least 1): the unit
// that from_utf8_lossy turns into one U+FFFD.
size_t invalid_prefix_at(std::string_view s, size_t i) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 1;
    }
    size_t n = 1;
    for (size_t k = 0; k < need && i + n < s.size(); ++k) {
        const unsigned char x = b(i + n);
        if (k == 0 ? (x < lo || x > hi) : (x & 0xC0) != 0x80) break;
        ++n;
    }
    return n;
}

ByteLevelTable make_table() {
    ByteLevelTable t;
    t.cp_to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
        t.byte_to_cp[b] = cp;
        utf8_append(t.byte_to_utf8[b], cp);
        t.cp_to_byte[cp] = static_cast<int16_t>(b);
    }
    return t;
}

}  // namespace

size_t utf8_valid_prefix(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        // Fast path over ASCII, which most text is.
        if (static_cast<unsigned char>(s[i]) < 0x80) {
            ++i;
            continue;
        }
        const size_t n = valid_seq_at(s, i);
        if (n == 0) return i;
        i += n;
    }
    return i;
}

uint32_t utf8_next(std::string_view s, size_t& pos) {
    const unsigned char c = static_cast<unsigned char>(s[pos]);
    const size_t n = std::min(utf8_seq_len(c), s.size() - pos);
    uint32_t cp = n == 1 ? c : c & (0xFF >> (n + 1));
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[pos + k]) & 0x3F);
    pos += n;
    return cp;
}

void utf8_append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

std::string utf8_lossy(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    size_t i = 0;
    while (i < bytes.size()) {
        const size_t n = valid_seq_at(bytes, i);
        if (n > 0) {
            out.append(bytes.substr(i, n));
            i += n;
        } else {
            out += "\xEF\xBF\xBD";
            i += invalid_prefix_at(bytes, i);
        }
    }
    return out;
}

const ByteLevelTable& byte_level_table() {
    static const ByteLevelTable table = make_table();
    return table;
}

std::string bytes_to_byte_level(std::string_view bytes) {
    const ByteLevelTable& t = byte_level_table();
    std::string out;
    out.reserve(bytes.size() * 2);
    for (const char c : bytes) out += t.byte_to_utf8[static_cast<unsigned char>(c)];
    return out;
}

bool byte_level_to_bytes(std::string_view text, std::string& out) {
    const ByteLevelTable& t = byte_level_table();
    size_t pos = 0;
    while (pos < text.size()) {
        const uint32_t cp = utf8_next(text, pos);
        if (cp >= t.cp_to_byte.size() || t.cp_to_byte[cp] < 0) return false;
        out += static_cast<char>(t.cp_to_byte[cp]);
    }
    return true;
}

std::string replace_literal(const std::string& s, std::string_view pattern,
                            std::string_view content) {
    if (pattern.empty()) return s;
    std::string out;
    out.reserve(s.size());
    size_t pos = 0;
    for (size_t hit; (hit = s.find(pattern, pos)) != std::string::npos;
         pos = hit + pattern.size()) {
        out.append(s, pos, hit - pos);
        out += content;
    }
    out.append(s, pos, std::string::npos);
    return out;
}

}  // namespace bitnet::tok
