#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>

#include "bitnet/error.h"
#include "tokenizer/unicode.h"

namespace bitnet::tok {

namespace {

// Unicode White_Space, the set Oniguruma's and Rust's \s match.
constexpr std::string_view kWhiteSpace =
    "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

pcre2_code* as_code(void* p) {
    return static_cast<pcre2_code*>(p);
}

struct MatchDataDeleter {
    void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

}  // namespace

std::string translate_whitespace_classes(std::string_view p) {
    std::string out;
    out.reserve(p.size() + 64);
    bool in_class = false;
    size_t class_start = 0;  // index in p just after '[' or '[^'
    for (size_t i = 0; i < p.size(); ++i) {
        const char c = p[i];
        if (c == '\\' && i + 1 < p.size()) {
            const char n = p[i + 1];
            ++i;
            if (n == 's') {
                out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
            } else if (n == 'S' && !in_class) {
                out += "[^" + std::string(kWhiteSpace) + "]";
            } else {
                out += '\\';
                out += n;
            }
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            class_start = i + 1;
            if (class_start < p.size() && p[class_start] == '^') ++class_start;
        } else if (in_class && c == ']' && i != class_start) {
            in_class = false;
        }
        out += c;
    }
    return out;
}

Regex::Regex(std::string_view pattern, bool literal, const std::string& where)
    : pattern_(pattern), literal_(literal) {
    int err = 0;
    PCRE2_SIZE offset = 0;
    const uint32_t options = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    const std::string translated =
        literal ? std::string(pattern) : translate_whitespace_classes(pattern);
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()),
                                     translated.size(), options, &err, &offset, nullptr);
    if (code == nullptr) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        throw Error(ErrorCode::ParseError,
                    where + ": cannot compile the regex '" + std::string(pattern) + "' at offset " +
                        std::to_string(offset) + ": " + reinterpret_cast<const char*>(msg));
    }
    code_ = code;
    // JIT makes the split several times faster; without it (no JIT support on this CPU or
    // build) the interpreter gives the same matches.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
}

Regex::~Regex() {
    pcre2_code_free(as_code(code_));
}

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
    pcre2_code* code = as_code(code_);
    std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
        pcre2_match_data_create_from_pattern(code, nullptr));
    if (!md) throw Error(ErrorCode::OutOfMemory, "tokenizer: cannot allocate regex match data");
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t pos = 0;
    while (pos <= text.size()) {
        // The text was validated once on entry to encode(); skip PCRE2's per-call UTF check.
        int rc =
            pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
            // Very long runs can exhaust the JIT stack; the interpreter keeps its
            // backtracking state on the heap instead.
            rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                             md.get(), nullptr);
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            throw Error(ErrorCode::Internal, std::string("tokenizer: regex match failed: ") +
                                                 reinterpret_cast<const char*>(msg));
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        const size_t b = ov[0], e = ov[1];
        if (e > b) {
            out.emplace_back(b, e);
            pos = e;
        } else {
            // An empty match: step over one character so the scan always progresses.
            if (b >= text.size()) break;
            pos = b + utf8_seq_len(static_cast<unsigned char>(text[b]));
        }
    }
}

}  // namespace bitnet::tok
