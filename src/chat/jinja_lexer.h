// Lexer for the Jinja2 subset that chat templates use. It produces one flat token stream, as
// Jinja's own lexer does: text between tags, tag delimiters, and the expression tokens inside
// tags. Whitespace control is resolved here, so the parser sees final text: `{%-` / `-%}` (and
// the {{ }} and {# #} forms) strip whitespace, and the options Hugging Face renders chat
// templates with, trim_blocks (drop the newline after a block or comment tag) and lstrip_blocks
// (drop spaces and tabs before a block or comment tag that starts its line), are always on.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bitnet::jinja {

enum class Tok {
    Text,
    VarBegin,
    VarEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Integer,
    Float,
    Op,
    Eof
};

struct Token {
    Tok kind = Tok::Eof;
    std::string text;  // Text content, name, unescaped string, operator
    int64_t ival = 0;
    double fval = 0;
    int line = 1;
    int col = 1;
};

// Throws bitnet::Error(ParseError) naming line and column.
[[noreturn]] void syntax_error(int line, int col, const std::string& what);

std::vector<Token> lex(std::string_view source);

}  // namespace bitnet::jinja
