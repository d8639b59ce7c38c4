// Recursive-descent parser for the chat-template subset of Jinja2: see jinja_parser.h.
#include "chat/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

namespace bitnet::jinja {

namespace {

bool one_of(const std::string& s, std::initializer_list<const char*> set) {
    return std::any_of(set.begin(), set.end(), [&](const char* x) { return s == x; });
}

class Parser {
  public:
    explicit Parser(const std::vector<Token>& tokens) : t_(tokens) {}

    Body parse_template() {
        std::string tag;
        Body body = parse_body({}, tag);
        return body;
    }

  private:
    // Counts one level of nesting for as long as it lives.
    struct Nest {
        Nest(Parser& p, const Token& at) : parser(p) {
            if (++parser.depth_ > kMaxNesting) {
                syntax_error(
                    at.line, at.col,
                    "template nests deeper than " + std::to_string(kMaxNesting) + " levels");
            }
        }
        ~Nest() { --parser.depth_; }
        Nest(const Nest&) = delete;
        Nest& operator=(const Nest&) = delete;
        Parser& parser;
    };

    const Token& cur() const { return t_[p_]; }
    const Token& peek(size_t n = 1) const { return t_[std::min(p_ + n, t_.size() - 1)]; }
    const Token& next() {
        const Token& t = t_[p_];
        if (p_ + 1 < t_.size()) ++p_;
        return t;
    }
    bool is_op(const char* op) const { return cur().kind == Tok::Op && cur().text == op; }
    bool is_name(const char* n) const { return cur().kind == Tok::Name && cur().text == n; }

    static std::string describe(const Token& t) {
        switch (t.kind) {
            case Tok::Text:
                return "text";
            case Tok::VarBegin:
                return "'{{'";
            case Tok::VarEnd:
                return "'}}'";
            case Tok::BlockBegin:
                return "'{%'";
            case Tok::BlockEnd:
                return "'%}'";
            case Tok::String:
                return "string literal";
            case Tok::Eof:
                return "end of template";
            default:
                return "'" + t.text + "'";
        }
    }
    [[noreturn]] void fail_here(const std::string& what) const {
        syntax_error(cur().line, cur().col, what + ", found " + describe(cur()));
    }
    void expect_op(const char* op) {
        if (!is_op(op)) fail_here(std::string("expected '") + op + "'");
        next();
    }
    void expect_block_end() {
        if (cur().kind != Tok::BlockEnd) fail_here("expected '%}'");
        next();
    }
    std::string expect_name(const char* what) {
        if (cur().kind != Tok::Name) fail_here(std::string("expected ") + what);
        return next().text;
    }

    ExprPtr make(ExprKind kind, const Token& at) {
        auto e = std::make_unique<Expr>();
        e->kind = kind;
        e->line = at.line;
        e->col = at.col;
        return e;
    }
    // Records the height of a finished node; rejects trees the evaluator should not recurse on.
    ExprPtr seal(ExprPtr e) {
        int h = 0;
        for (const auto& a : e->args) {
            if (a) h = std::max(h, a->height);
        }
        for (const auto& [k, v] : e->kwargs) h = std::max(h, v->height);
        e->height = h + 1;
        if (e->height > kMaxExprHeight) {
            syntax_error(
                e->line, e->col,
                "expression nests deeper than " + std::to_string(kMaxExprHeight) + " levels");
        }
        return e;
    }
    ExprPtr binary(ExprKind kind, const Token& at, std::string op, ExprPtr a, ExprPtr b) {
        ExprPtr e = make(kind, at);
        e->name = std::move(op);
        e->args.push_back(std::move(a));
        e->args.push_back(std::move(b));
        return seal(std::move(e));
    }

    // ---- statements -------------------------------------------------------------------------

    // Parses nodes until a block tag named in `ends` (consumed up to its name, returned in
    // `tag`) or, when `ends` is empty, the end of the template.
    Body parse_body(std::initializer_list<const char*> ends, std::string& tag) {
        Body body;
        for (;;) {
            const Token& t = cur();
            if (t.kind == Tok::Eof) {
                if (ends.size() == 0) return body;
                std::string want;
                for (const char* e : ends)
                    want += std::string(want.empty() ? "'" : " or '") + e + "'";
                syntax_error(t.line, t.col, "unexpected end of template, expected " + want);
            }
            if (t.kind == Tok::BlockBegin && peek().kind == Tok::Name &&
                one_of(peek().text, ends)) {
                next();
                tag = next().text;
                return body;
            }
            body.push_back(parse_node());
        }
    }

    NodePtr parse_node() {
        const Token& t = next();
        auto n = std::make_unique<Node>();
        n->line = t.line;
        n->col = t.col;
        if (t.kind == Tok::Text) {
            n->text = t.text;
            return n;
        }
        if (t.kind == Tok::VarBegin) {
            n->kind = NodeKind::Output;
            n->expr = parse_tuple(true);
            if (cur().kind != Tok::VarEnd) fail_here("expected '}}'");
            next();
            return n;
        }
        if (t.kind != Tok::BlockBegin) syntax_error(t.line, t.col, "unexpected " + describe(t));
        const Token& name = cur();
        const std::string tag = expect_name("a tag name");
        if (tag == "if") return parse_if(std::move(n), name);
        if (tag == "for") return parse_for(std::move(n), name);
        if (tag == "set") return parse_set(std::move(n), name);
        if (tag == "break" || tag == "continue") {
            if (loops_ == 0) syntax_error(name.line, name.col, "'" + tag + "' outside a loop");
            n->kind = tag == "break" ? NodeKind::Break : NodeKind::Continue;
            expect_block_end();
            return n;
        }
        if (one_of(tag, {"elif", "else", "endif", "endfor", "endset"})) {
            syntax_error(name.line, name.col, "unexpected '" + tag + "'");
        }
        syntax_error(name.line, name.col, "unknown or unsupported tag '" + tag + "'");
    }

    NodePtr parse_if(NodePtr n, const Token& at) {
        Nest nest(*this, at);
        n->kind = NodeKind::If;
        std::string tag = "if";
        while (tag == "if" || tag == "elif") {
            ExprPtr cond = parse_tuple(false);
            expect_block_end();
            Body body = parse_body({"elif", "else", "endif"}, tag);
            n->branches.emplace_back(std::move(cond), std::move(body));
        }
        if (tag == "else") {
            expect_block_end();
            n->else_body = parse_body({"endif"}, tag);
        }
        expect_block_end();
        return n;
    }

    NodePtr parse_for(NodePtr n, const Token& at) {
        Nest nest(*this, at);
        n->kind = NodeKind::For;
        n->targets.push_back(expect_name("a loop variable"));
        while (is_op(",")) {
            next();
            n->targets.push_back(expect_name("a loop variable"));
        }
        if (!is_name("in")) fail_here("expected 'in'");
        next();
        n->expr = parse_tuple(false);
        if (is_name("if")) {
            next();
            n->filter = parse_expression(true);
        }
        if (is_name("recursive")) fail_here("recursive loops are not supported");
        expect_block_end();
        ++loops_;
        std::string tag;
        n->body = parse_body({"endfor", "else"}, tag);
        --loops_;
        if (tag == "else") {
            expect_block_end();
            n->else_body = parse_body({"endfor"}, tag);
        }
        expect_block_end();
        return n;
    }

    NodePtr parse_set(NodePtr n, const Token& at) {
        n->kind = NodeKind::Set;
        n->targets.push_back(expect_name("a variable name"));
        if (is_op(".")) {
            next();
            n->attr = expect_name("an attribute name");
        } else {
            while (is_op(",")) {
                next();
                n->targets.push_back(expect_name("a variable name"));
            }
        }
        if (is_op("=")) {
            next();
            n->expr = parse_tuple(true);
            expect_block_end();
            return n;
        }
        if (cur().kind != Tok::BlockEnd || n->targets.size() != 1) fail_here("expected '='");
        // {% set x %}...{% endset %} captures the rendered body.
        next();
        Nest nest(*this, at);
        n->kind = NodeKind::SetBlock;
        std::string tag;
        n->body = parse_body({"endset"}, tag);
        expect_block_end();
        return n;
    }

    // ---- expressions --------------------------------------------------------------------

    // `a, b` without brackets is a tuple in {{ }}, set values and for iterables.
    ExprPtr parse_tuple(bool with_cond) {
        const Token& at = cur();
        ExprPtr first = parse_expression(with_cond);
        if (!is_op(",")) return first;
        ExprPtr t = make(ExprKind::List, at);
        t->is_tuple = true;
        t->args.push_back(std::move(first));
        while (is_op(",")) {
            next();
            if (cur().kind == Tok::VarEnd || cur().kind == Tok::BlockEnd || is_op(")")) break;
            t->args.push_back(parse_expression(with_cond));
        }
        return seal(std::move(t));
    }

    ExprPtr parse_expression(bool with_cond) { return with_cond ? parse_cond() : parse_or(); }

    ExprPtr parse_cond() {
        const Token& at = cur();
        ExprPtr e = parse_or();
        while (is_name("if")) {
            next();
            ExprPtr c = make(ExprKind::Cond, at);
            c->args.push_back(parse_or());
            c->args.push_back(std::move(e));
            if (is_name("else")) {
                next();
                Nest nest(*this, at);
                c->args.push_back(parse_cond());
            } else {
                c->args.push_back(nullptr);  // Jinja: undefined when the condition is false
            }
            e = seal(std::move(c));
        }
        return e;
    }

    ExprPtr parse_or() {
        ExprPtr e = parse_and();
        while (is_name("or")) {
            const Token& at = next();
            e = binary(ExprKind::Binary, at, "or", std::move(e), parse_and());
        }
        return e;
    }

    ExprPtr parse_and() {
        ExprPtr e = parse_not();
        while (is_name("and")) {
            const Token& at = next();
            e = binary(ExprKind::Binary, at, "and", std::move(e), parse_not());
        }
        return e;
    }

    ExprPtr parse_not() {
        if (!is_name("not")) return parse_compare();
        const Token& at = next();
        Nest nest(*this, at);
        ExprPtr e = make(ExprKind::Unary, at);
        e->name = "not";
        e->args.push_back(parse_not());
        return seal(std::move(e));
    }

    ExprPtr parse_compare() {
        const Token& at = cur();
        ExprPtr first = parse_math1();
        ExprPtr e;
        for (;;) {
            std::string op;
            if (cur().kind == Tok::Op && one_of(cur().text, {"==", "!=", "<", ">", "<=", ">="})) {
                op = next().text;
            } else if (is_name("in")) {
                next();
                op = "in";
            } else if (is_name("not") && peek().kind == Tok::Name && peek().text == "in") {
                next();
                next();
                op = "not in";
            } else {
                break;
            }
            if (!e) {
                e = make(ExprKind::Compare, at);
                e->args.push_back(std::move(first));
            }
            e->ops.push_back(op);
            e->args.push_back(parse_math1());
        }
        return e ? seal(std::move(e)) : std::move(first);
    }

    ExprPtr parse_math1() {
        ExprPtr e = parse_concat();
        while (is_op("+") || is_op("-")) {
            const Token& at = next();
            e = binary(ExprKind::Binary, at, at.text, std::move(e), parse_concat());
        }
        return e;
    }

    ExprPtr parse_concat() {
        ExprPtr e = parse_math2();
        while (is_op("~")) {
            const Token& at = next();
            e = binary(ExprKind::Binary, at, "~", std::move(e), parse_math2());
        }
        return e;
    }

    ExprPtr parse_math2() {
        ExprPtr e = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            const Token& at = next();
            e = binary(ExprKind::Binary, at, at.text, std::move(e), parse_pow());
        }
        return e;
    }

    ExprPtr parse_pow() {
        ExprPtr e = parse_unary(true);
        while (is_op("**")) {
            const Token& at = next();
            e = binary(ExprKind::Binary, at, "**", std::move(e), parse_unary(true));
        }
        return e;
    }

    ExprPtr parse_unary(bool with_filter) {
        const Token& at = cur();
        Nest nest(*this, at);
        ExprPtr e;
        if (is_op("-") || is_op("+")) {
            next();
            e = make(ExprKind::Unary, at);
            e->name = at.text;
            e->args.push_back(parse_unary(false));
            e = seal(std::move(e));
        } else {
            e = parse_primary();
        }
        e = parse_postfix(std::move(e));
        return with_filter ? parse_filters(std::move(e)) : std::move(e);
    }

    ExprPtr parse_primary() {
        const Token& t = cur();
        if (t.kind == Tok::Name) {
            next();
            ExprPtr e = make(ExprKind::Literal, t);
            if (t.text == "true" || t.text == "True") {
                e->value = Value::boolean(true);
            } else if (t.text == "false" || t.text == "False") {
                e->value = Value::boolean(false);
            } else if (t.text == "none" || t.text == "None") {
                e->value = Value::none();
            } else {
                e->kind = ExprKind::Name;
                e->name = t.text;
            }
            return e;
        }
        if (t.kind == Tok::String) {
            std::string s;  // adjacent literals concatenate, as in Python
            while (cur().kind == Tok::String) s += next().text;
            ExprPtr e = make(ExprKind::Literal, t);
            e->value = Value::string(std::move(s));
            return e;
        }
        if (t.kind == Tok::Integer || t.kind == Tok::Float) {
            next();
            ExprPtr e = make(ExprKind::Literal, t);
            e->value = t.kind == Tok::Integer ? Value::integer(t.ival) : Value::real(t.fval);
            return e;
        }
        if (is_op("(")) {
            next();
            if (is_op(")")) {
                next();
                ExprPtr e = make(ExprKind::List, t);
                e->is_tuple = true;
                return e;
            }
            ExprPtr e = parse_tuple(true);
            expect_op(")");
            return e;
        }
        if (is_op("[") || is_op("{")) {
            const bool dict = is_op("{");
            next();
            ExprPtr e = make(dict ? ExprKind::Dict : ExprKind::List, t);
            const char* close = dict ? "}" : "]";
            while (!is_op(close)) {
                if (!e->args.empty()) expect_op(",");
                if (is_op(close)) break;  // trailing comma
                e->args.push_back(parse_expression(true));
                if (dict) {
                    expect_op(":");
                    e->args.push_back(parse_expression(true));
                }
            }
            next();
            return seal(std::move(e));
        }
        fail_here("expected an expression");
    }

    ExprPtr parse_postfix(ExprPtr e) {
        for (;;) {
            const Token& at = cur();
            if (is_op(".")) {
                next();
                if (cur().kind == Tok::Integer) {  // foo.0 is foo[0]
                    ExprPtr idx = make(ExprKind::Literal, cur());
                    idx->value = Value::integer(next().ival);
                    e = binary(ExprKind::GetItem, at, "", std::move(e), std::move(idx));
                    continue;
                }
                ExprPtr g = make(ExprKind::GetAttr, at);
                g->name = expect_name("an attribute name");
                g->args.push_back(std::move(e));
                e = seal(std::move(g));
            } else if (is_op("[")) {
                next();
                e = parse_subscript(std::move(e), at);
            } else if (is_op("(")) {
                e = parse_call(make(ExprKind::Call, at), std::move(e));
            } else {
                return e;
            }
        }
    }

    ExprPtr parse_subscript(ExprPtr obj, const Token& at) {
        ExprPtr parts[3];
        bool slice = false;
        for (int k = 0; k < 3; ++k) {
            if (!is_op(":") && !is_op("]")) parts[k] = parse_expression(true);
            if (k == 0 && !is_op(":")) break;
            if (!is_op(":")) break;
            slice = true;
            next();
        }
        expect_op("]");
        if (!slice) {
            if (!parts[0]) syntax_error(at.line, at.col, "empty subscript");
            return binary(ExprKind::GetItem, at, "", std::move(obj), std::move(parts[0]));
        }
        ExprPtr e = make(ExprKind::Slice, at);
        e->args.push_back(std::move(obj));
        for (auto& p : parts) e->args.push_back(std::move(p));
        return seal(std::move(e));
    }

    // Arguments `(a, b, key=c)`, appended after whatever `e` already holds in args[0].
    ExprPtr parse_call(ExprPtr e, ExprPtr callee) {
        if (callee) e->args.push_back(std::move(callee));
        expect_op("(");
        bool first = true;
        while (!is_op(")")) {
            if (!first) expect_op(",");
            first = false;
            if (is_op(")")) break;
            if (cur().kind == Tok::Name && peek().kind == Tok::Op && peek().text == "=") {
                std::string key = next().text;
                next();
                e->kwargs.emplace_back(std::move(key), parse_expression(true));
            } else {
                if (!e->kwargs.empty()) fail_here("positional argument after keyword argument");
                e->args.push_back(parse_expression(true));
            }
        }
        next();
        return seal(std::move(e));
    }

    ExprPtr parse_filters(ExprPtr e) {
        for (;;) {
            const Token& at = cur();
            if (is_op("|")) {
                next();
                ExprPtr f = make(ExprKind::Filter, at);
                f->name = expect_name("a filter name");
                f->args.push_back(std::move(e));
                if (is_op("(")) {
                    e = parse_call(std::move(f), nullptr);
                } else {
                    e = seal(std::move(f));
                }
            } else if (is_name("is")) {
                next();
                ExprPtr f = make(ExprKind::Test, at);
                if (is_name("not")) {
                    next();
                    f->negated = true;
                }
                f->name = expect_name("a test name");
                f->args.push_back(std::move(e));
                if (is_op("(")) {
                    e = parse_call(std::move(f), nullptr);
                    continue;
                }
                // `x is divisibleby 3`: one argument without parentheses, as Jinja allows.
                const Tok k = cur().kind;
                if ((k == Tok::Name || k == Tok::String || k == Tok::Integer || k == Tok::Float ||
                     is_op("(") || is_op("[") || is_op("{")) &&
                    !is_name("else") && !is_name("or") && !is_name("and")) {
                    if (is_name("is")) fail_here("tests cannot be chained with 'is'");
                    f->args.push_back(parse_postfix(parse_primary()));
                }
                e = seal(std::move(f));
            } else if (is_op("(")) {
                e = parse_call(make(ExprKind::Call, at), std::move(e));
            } else {
                return e;
            }
        }
    }

    const std::vector<Token>& t_;
    size_t p_ = 0;
    int depth_ = 0;
    int loops_ = 0;
};

}  // namespace

Body parse(const std::vector<Token>& tokens) {
    return Parser(tokens).parse_template();
}

}  // namespace bitnet::jinja
