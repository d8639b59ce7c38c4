// Jinja lexer: see jinja_lexer.h.
#include "chat/jinja_lexer.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>

#include "bitnet/error.h"
#include "chat/jinja_value.h"
#include "tokenizer/unicode.h"

namespace bitnet::jinja {

void syntax_error(int line, int col, const std::string& what) {
    throw Error(ErrorCode::ParseError, "chat template: line " + std::to_string(line) + ", column " +
                                           std::to_string(col) + ": " + what);
}

namespace {

bool is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

class Lexer {
  public:
    explicit Lexer(std::string_view source) {
        // Jinja normalises newlines to "\n" and, without keep_trailing_newline, drops one
        // trailing newline of the template source.
        src_.reserve(source.size());
        for (size_t k = 0; k < source.size(); ++k) {
            if (source[k] == '\r') {
                src_ += '\n';
                if (k + 1 < source.size() && source[k + 1] == '\n') ++k;
            } else {
                src_ += source[k];
            }
        }
        if (!src_.empty() && src_.back() == '\n') src_.pop_back();
        line_starts_.push_back(0);
        for (size_t k = 0; k < src_.size(); ++k) {
            if (src_[k] == '\n') line_starts_.push_back(k + 1);
        }
    }

    std::vector<Token> run() {
        size_t pos = 0;
        while (pos < src_.size()) {
            const size_t open = find_open(pos);
            if (open == std::string::npos) {
                emit_text(pos, src_.substr(pos));
                break;
            }
            const char kind = src_[open + 1];  // '{', '%' or '#'
            size_t after = open + 2;
            const char mod = after < src_.size() ? src_[after] : '\0';
            std::string text = src_.substr(pos, open - pos);
            if (mod == '-') {
                text = py_strip(text, false, true);
                ++after;
            } else if (mod == '+' && kind != '{') {
                ++after;  // `{%+` keeps the indentation lstrip_blocks would remove
            } else if (kind != '{') {
                lstrip_line(text, pos);
            }
            emit_text(pos, std::move(text));
            if (kind == '#') {
                pos = lex_comment(open, after);
            } else {
                pos = lex_tag(open, after, kind);
            }
        }
        Token eof;
        eof.kind = Tok::Eof;
        locate(src_.size(), eof);
        out_.push_back(eof);
        return std::move(out_);
    }

  private:
    void locate(size_t pos, Token& t) const {
        const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos) - 1;
        t.line = static_cast<int>(it - line_starts_.begin()) + 1;
        t.col = static_cast<int>(pos - *it) + 1;
    }
    [[noreturn]] void fail(size_t pos, const std::string& what) const {
        Token t;
        locate(pos, t);
        syntax_error(t.line, t.col, what);
    }

    size_t find_open(size_t pos) const {
        for (size_t k = src_.find('{', pos); k != std::string::npos; k = src_.find('{', k + 1)) {
            if (k + 1 < src_.size() &&
                (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#')) {
                return k;
            }
        }
        return std::string::npos;
    }

    void emit_text(size_t pos, std::string text) {
        if (text.empty()) return;
        Token t;
        t.kind = Tok::Text;
        t.text = std::move(text);
        locate(pos, t);
        out_.push_back(std::move(t));
    }

    // lstrip_blocks: spaces and tabs between the start of a line and a block tag go away.
    void lstrip_line(std::string& text, size_t text_pos) const {
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        const bool line_starting = text_pos == 0 || src_[text_pos - 1] == '\n';
        if (l_pos == 0 && !line_starting) return;
        if (text.find_first_not_of(" \t", l_pos) == std::string::npos) text.resize(l_pos);
    }

    // After a closing delimiter: `-` strips all following whitespace; otherwise block and
    // comment tags drop one newline (trim_blocks) unless written `+%}`.
    size_t after_close(size_t pos, char mod, bool block) const {
        if (mod == '-') {
            size_t len = 0;
            while (pos < src_.size() && is_py_space(src_, pos, len)) pos += len;
        } else if (block && mod != '+' && pos < src_.size() && src_[pos] == '\n') {
            ++pos;
        }
        return pos;
    }

    size_t lex_comment(size_t open, size_t after) {
        const size_t close = src_.find("#}", after);
        if (close == std::string::npos) fail(open, "unclosed comment");
        const char mod = close > after ? src_[close - 1] : '\0';
        return after_close(close + 2, mod, true);
    }

    size_t lex_tag(size_t open, size_t pos, char kind) {
        Token begin;
        begin.kind = kind == '{' ? Tok::VarBegin : Tok::BlockBegin;
        locate(open, begin);
        out_.push_back(begin);
        const std::string close = kind == '{' ? "}}" : "%}";
        int depth = 0;  // like Jinja, a closing delimiter only counts outside brackets
        for (;;) {
            size_t len = 0;
            while (pos < src_.size() && is_py_space(src_, pos, len)) pos += len;
            if (pos >= src_.size()) {
                fail(open, "unexpected end of template: tag opened here is never closed with '" +
                               close + "'");
            }
            if (depth == 0) {
                char mod = '\0';
                size_t at = pos;
                if ((src_[pos] == '-' || (src_[pos] == '+' && kind == '%')) &&
                    src_.compare(pos + 1, 2, close) == 0) {
                    mod = src_[pos];
                    ++at;
                }
                if (src_.compare(at, 2, close) == 0) {
                    Token end;
                    end.kind = kind == '{' ? Tok::VarEnd : Tok::BlockEnd;
                    locate(pos, end);
                    out_.push_back(end);
                    return after_close(at + 2, mod, kind == '%');
                }
            }
            pos = lex_token(pos, depth);
        }
    }

    size_t lex_token(size_t pos, int& depth) {
        Token t;
        locate(pos, t);
        const char c = src_[pos];
        if (is_name_start(c)) {
            size_t end = pos;
            while (end < src_.size() && (is_name_start(src_[end]) || is_digit(src_[end]))) ++end;
            t.kind = Tok::Name;
            t.text = src_.substr(pos, end - pos);
            out_.push_back(std::move(t));
            return end;
        }
        if (is_digit(c)) return lex_number(pos, std::move(t));
        if (c == '\'' || c == '"') return lex_string(pos, std::move(t));
        static const char* const kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "*",
                                           "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                           "]",  "{",  "}",  ".",  ",",  ":",  "|"};
        for (const char* op : kOps) {
            const std::string_view o(op);
            if (src_.compare(pos, o.size(), o) != 0) continue;
            if (o == "(" || o == "[" || o == "{") ++depth;
            if (o == ")" || o == "]" || o == "}") {
                if (depth == 0) fail(pos, "unexpected '" + std::string(o) + "'");
                --depth;
            }
            t.kind = Tok::Op;
            t.text = o;
            out_.push_back(std::move(t));
            return pos + o.size();
        }
        fail(pos, "unexpected character '" + std::string(1, c) + "'");
    }

    // Digits with optional `_` separators, as Jinja's integer and float rules accept.
    size_t digits(size_t pos, std::string& out) const {
        while (pos < src_.size() &&
               (is_digit(src_[pos]) || (src_[pos] == '_' && pos + 1 < src_.size() &&
                                        is_digit(src_[pos + 1]) && !out.empty()))) {
            if (src_[pos] != '_') out += src_[pos];
            ++pos;
        }
        return pos;
    }

    size_t lex_number(size_t pos, Token t) {
        std::string num;
        pos = digits(pos, num);
        bool is_float = false;
        if (pos + 1 < src_.size() && src_[pos] == '.' && is_digit(src_[pos + 1])) {
            is_float = true;
            num += '.';
            pos = digits(pos + 1, num);
        }
        if (pos < src_.size() && (src_[pos] == 'e' || src_[pos] == 'E')) {
            size_t k = pos + 1;
            std::string e = "e";
            if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) e += src_[k++];
            if (k < src_.size() && is_digit(src_[k])) {
                is_float = true;
                num += e;
                pos = digits(k, num);
            }
        }
        if (is_float) {
            t.kind = Tok::Float;
            t.fval = std::strtod(num.c_str(), nullptr);
        } else {
            t.kind = Tok::Integer;
            auto r = std::from_chars(num.data(), num.data() + num.size(), t.ival);
            if (r.ec != std::errc()) syntax_error(t.line, t.col, "integer too large: " + num);
        }
        t.text = num;
        out_.push_back(std::move(t));
        return pos;
    }

    // Python string escapes (Jinja decodes literals with "unicode-escape").
    size_t lex_string(size_t pos, Token t) {
        const char quote = src_[pos];
        const size_t start = pos++;
        std::string out;
        for (;;) {
            if (pos >= src_.size()) fail(start, "unterminated string literal");
            const char c = src_[pos];
            if (c == quote) break;
            if (c != '\\' || pos + 1 >= src_.size()) {
                out += c;
                ++pos;
                continue;
            }
            const char e = src_[pos + 1];
            pos += 2;
            switch (e) {
                case 'n':
                    out += '\n';
                    break;
                case 't':
                    out += '\t';
                    break;
                case 'r':
                    out += '\r';
                    break;
                case 'a':
                    out += '\a';
                    break;
                case 'b':
                    out += '\b';
                    break;
                case 'f':
                    out += '\f';
                    break;
                case 'v':
                    out += '\v';
                    break;
                case '0':
                    out += '\0';
                    break;
                case '\\':
                    out += '\\';
                    break;
                case '\'':
                    out += '\'';
                    break;
                case '"':
                    out += '"';
                    break;
                case '\n':
                    break;  // a backslash-newline continues the line
                case 'x':
                case 'u':
                case 'U': {
                    const size_t n = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
                    uint32_t cp = 0;
                    auto r = std::from_chars(src_.data() + pos,
                                             src_.data() + std::min(pos + n, src_.size()), cp, 16);
                    if (r.ec != std::errc() ||
                        static_cast<size_t>(r.ptr - (src_.data() + pos)) != n || cp > 0x10FFFF) {
                        fail(pos - 2, std::string("invalid \\") + e + " escape in string literal");
                    }
                    tok::utf8_append(out, cp);
                    pos += n;
                    break;
                }
                default:  // unknown escapes stay as written, as in Python
                    out += '\\';
                    out += e;
            }
        }
        t.kind = Tok::String;
        t.text = std::move(out);
        out_.push_back(std::move(t));
        return pos + 1;
    }

    std::string src_;
    std::vector<size_t> line_starts_;
    std::vector<Token> out_;
};

}  // namespace

std::vector<Token> lex(std::string_view source) {
    return Lexer(source).run();
}

}  // namespace bitnet::jinja
