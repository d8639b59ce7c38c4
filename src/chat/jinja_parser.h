// The AST of a chat template and the recursive-descent parser that builds it. Expression
// precedence follows Jinja2's parser: conditional `a if c else b` < or < and < not < comparisons
// (chained, with in / not in) < + - < ~ < * / // % < ** < unary - + < postfix . [] () and then
// filters `|f` and tests `is t`, which bind tighter than every binary operator (so
// `a | capitalize + ': '` is `(a | capitalize) + ': '`).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_lexer.h"
#include "chat/jinja_value.h"

namespace bitnet::jinja {

// Templates nest blocks and expressions at most this deep: the parser and the evaluator
// recurse once per level, so this bounds their stack use on hostile input.
inline constexpr int kMaxNesting = 64;
// Binary operator chains (`a + b + c ...`) build left-deep trees without nesting in the source,
// so expression trees are bounded by height as well.
inline constexpr int kMaxExprHeight = 256;

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
    Literal,  // value
    Name,     // name
    List,     // args (tuple: is_tuple)
    Dict,     // kwargs-like pairs: keys in args[2k], values in args[2k+1]
    GetAttr,  // args[0].name
    GetItem,  // args[0][args[1]]
    Slice,    // args[0][args[1]:args[2]:args[3]], missing parts null
    Call,     // args[0](args[1..], kwargs)
    Filter,   // args[0] | name(args[1..], kwargs)
    Test,     // args[0] is [not] name(args[1..])
    Unary,    // name in {"-", "+", "not"}
    Binary,   // args[0] name args[1]; name in {+ - * / // % ** ~ and or}
    Compare,  // args[0] ops[0] args[1] ops[1] args[2] ...
    Cond,     // args[1] if args[0] else args[2] (args[2] may be null)
};

struct Expr {
    ExprKind kind = ExprKind::Literal;
    int line = 1, col = 1;
    std::string name;
    Value value;
    std::vector<ExprPtr> args;
    std::vector<std::pair<std::string, ExprPtr>> kwargs;
    std::vector<std::string> ops;
    bool negated = false;  // `is not`
    bool is_tuple = false;
    int height = 1;  // 1 + the tallest child
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

enum class NodeKind { Text, Output, If, For, Set, SetBlock, Break, Continue };

struct Node {
    NodeKind kind = NodeKind::Text;
    int line = 1, col = 1;
    std::string text;                                // Text
    ExprPtr expr;                                    // Output, Set value, For iterable
    std::vector<std::pair<ExprPtr, Body>> branches;  // If: condition and body, in order
    Body body;                                       // For, SetBlock
    Body else_body;                                  // If, For
    std::vector<std::string> targets;                // For / Set names (several: unpacking)
    std::string attr;                                // Set ns.attr: targets[0] is ns
    ExprPtr filter;                                  // For ... if filter
};

// Parses a whole template; throws bitnet::Error(ParseError) with line and column.
Body parse(const std::vector<Token>& tokens);

}  // namespace bitnet::jinja
