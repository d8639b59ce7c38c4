// Tree-walking evaluator: see jinja_eval.h. Scoping follows Jinja2: `set` at the top level or
// inside `if` assigns template-wide, while each iteration of a `for` body gets a fresh scope
// (assignments neither leak out of the loop nor carry over to the next iteration). Namespace
// objects are the sanctioned way out, and they work because they are shared by reference.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <unordered_map>
#include <unordered_set>

#include "chat/jinja_eval.h"

namespace bitnet::jinja {

void Budget::bytes(size_t n) {
    bytes_ += n;
    if (n > limits_.max_output) {
        throw TemplateError("a string would exceed " + std::to_string(limits_.max_output) +
                            " bytes");
    }
    if (bytes_ > limits_.max_work_bytes) {
        throw TemplateError("template built more than " + std::to_string(limits_.max_work_bytes) +
                            " bytes of strings");
    }
}

void Budget::iterations(uint64_t n) {
    iterations_ += n;
    if (iterations_ > limits_.max_iterations) {
        throw TemplateError("template ran more than " + std::to_string(limits_.max_iterations) +
                            " loop iterations");
    }
}

const Value* CallArgs::get(size_t index, const char* name) const {
    if (index < pos.size()) return &pos[index];
    for (const auto& [k, v] : kw) {
        if (k == name) return &v;
    }
    return nullptr;
}

namespace {

std::string type_pair(const Value& a, const Value& b) {
    return std::string("'") + a.type_name() + "' and '" + b.type_name() + "'";
}

template <typename F>
Value checked_int(F op, int64_t a, int64_t b) {
    int64_t r = 0;
    if (op(a, b, &r)) throw TemplateError("integer overflow");
    return Value::integer(r);
}
bool add(int64_t a, int64_t b, int64_t* r) {
    return __builtin_add_overflow(a, b, r);
}
bool sub(int64_t a, int64_t b, int64_t* r) {
    return __builtin_sub_overflow(a, b, r);
}
bool mul(int64_t a, int64_t b, int64_t* r) {
    return __builtin_mul_overflow(a, b, r);
}

Value arithmetic(const std::string& op, const Value& a, const Value& b, Budget& budget) {
    if (op == "~") {
        std::string s = to_str(a) + to_str(b);
        budget.bytes(s.size());
        return Value::string(std::move(s));
    }
    // Jinja's default Undefined refuses arithmetic: `x + 1` with x unset names x.
    if (a.is_undefined()) undefined_error(a);
    if (b.is_undefined()) undefined_error(b);
    const bool ints = a.is_integral() && b.is_integral();
    const bool nums = a.is_number() && b.is_number();
    if (op == "+") {
        if (ints) return checked_int(add, a.as_int(), b.as_int());
        if (nums) return Value::real(a.as_double() + b.as_double());
        if (a.is_string() && b.is_string()) {
            budget.bytes(a.s.size() + b.s.size());
            return Value::string(a.s + b.s);
        }
        if (a.is_list() && b.is_list() && a.tuple == b.tuple) {
            budget.iterations(a.list->size() + b.list->size());
            ValueList out = *a.list;
            out.insert(out.end(), b.list->begin(), b.list->end());
            return Value::make_list(std::move(out), a.tuple);
        }
    } else if (op == "-") {
        if (ints) return checked_int(sub, a.as_int(), b.as_int());
        if (nums) return Value::real(a.as_double() - b.as_double());
    } else if (op == "*") {
        if (ints) return checked_int(mul, a.as_int(), b.as_int());
        if (nums) return Value::real(a.as_double() * b.as_double());
        const Value& seq = a.is_integral() ? b : a;
        const Value& count = a.is_integral() ? a : b;
        if (count.is_integral() && (seq.is_string() || seq.is_list())) {
            const int64_t n = std::max<int64_t>(count.as_int(), 0);
            if (seq.is_string()) {
                // Checked before building, so "x" * 10**12 fails instead of allocating.
                if (!seq.s.empty() &&
                    static_cast<uint64_t>(n) > budget.limits().max_output / seq.s.size()) {
                    budget.bytes(budget.limits().max_output + 1);
                }
                std::string out;
                for (int64_t k = 0; k < n; ++k) out += seq.s;
                budget.bytes(out.size());
                return Value::string(std::move(out));
            }
            if (!seq.list->empty() && static_cast<uint64_t>(n) > budget.limits().max_iterations) {
                budget.iterations(budget.limits().max_iterations + 1);
            }
            budget.iterations(static_cast<uint64_t>(n) * seq.list->size());
            ValueList out;
            for (int64_t k = 0; k < n; ++k)
                out.insert(out.end(), seq.list->begin(), seq.list->end());
            return Value::make_list(std::move(out), seq.tuple);
        }
    } else if (op == "/") {
        if (nums) {
            if (b.as_double() == 0) throw TemplateError("division by zero");
            return Value::real(a.as_double() / b.as_double());
        }
    } else if (op == "//" || op == "%") {
        if (nums && b.as_double() == 0) throw TemplateError("integer division or modulo by zero");
        if (ints) {
            const int64_t x = a.as_int(), y = b.as_int();
            if (x == INT64_MIN && y == -1) throw TemplateError("integer overflow");
            int64_t q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) {  // Python rounds the quotient down
                --q;
                m += y;
            }
            return Value::integer(op == "//" ? q : m);
        }
        if (nums) {
            const double x = a.as_double(), y = b.as_double();
            const double q = std::floor(x / y);
            return Value::real(op == "//" ? q : x - q * y);
        }
        if (op == "%" && a.is_string()) {
            throw TemplateError("printf-style string formatting with '%' is not supported");
        }
    } else if (op == "**") {
        if (ints && b.as_int() >= 0) {
            int64_t base = a.as_int(), e = b.as_int(), acc = 1;
            for (; e > 0; --e) {
                if (__builtin_mul_overflow(acc, base, &acc))
                    throw TemplateError("integer overflow");
                if (acc == 0 || acc == 1) break;
            }
            return Value::integer(acc);
        }
        if (nums) return Value::real(std::pow(a.as_double(), b.as_double()));
    }
    throw TemplateError("unsupported operand types for " + op + ": " + type_pair(a, b));
}

bool compare_op(const std::string& op, const Value& a, const Value& b) {
    if (op == "==") return equals(a, b);
    if (op == "!=") return !equals(a, b);
    if (op == "in") return contains(b, a);
    if (op == "not in") return !contains(b, a);
    if (a.is_undefined()) undefined_error(a);
    if (b.is_undefined()) undefined_error(b);
    bool ok = false;
    const int c = compare(a, b, ok);
    if (!ok) {
        throw TemplateError("'" + op + "' not supported between instances of " + type_pair(a, b));
    }
    if (op == "<") return c < 0;
    if (op == "<=") return c <= 0;
    if (op == ">") return c > 0;
    return c >= 0;
}

// Whether `v` holds a namespace, at any depth; `seen` keeps shared sub-values from being walked
// twice.
bool holds_namespace(const Value& v, std::unordered_set<const void*>& seen) {
    if (v.type == Value::Type::Namespace) return true;
    if (v.is_list()) {
        if (!seen.insert(v.list.get()).second) return false;
        for (const Value& x : *v.list) {
            if (holds_namespace(x, seen)) return true;
        }
    } else if (v.is_dict()) {
        if (!seen.insert(v.dict.get()).second) return false;
        for (const auto& kv : v.dict->items) {
            if (holds_namespace(kv.second, seen)) return true;
        }
    }
    return false;
}

class Evaluator {
  public:
    Evaluator(const std::vector<std::pair<std::string, Value>>& globals, const RenderLimits& limits)
        : budget_(limits), max_output_(limits.max_output) {
        scopes_.emplace_back();
        for (const auto& [k, v] : globals) scopes_.back()[k] = v;
    }

    std::string run(const Body& body) {
        std::string out;
        out_ = &out;
        exec(body);
        return out;
    }

  private:
    enum class Flow { Normal, Break, Continue };

    Flow exec(const Body& body) {
        for (const NodePtr& n : body) {
            const Flow f = exec_node(*n);
            if (f != Flow::Normal) return f;
        }
        return Flow::Normal;
    }

    void write(const std::string& s) {
        written_ += s.size();
        if (written_ > max_output_) {
            throw TemplateError("rendered output exceeds " + std::to_string(max_output_) +
                                " bytes");
        }
        *out_ += s;
    }

    Flow exec_node(const Node& n) {
        switch (n.kind) {
            case NodeKind::Text:
                write(n.text);
                return Flow::Normal;
            case NodeKind::Output:
                write(to_str(eval(*n.expr)));
                return Flow::Normal;
            case NodeKind::If:
                for (const auto& [cond, body] : n.branches) {
                    if (eval(*cond).truthy()) return exec(body);
                }
                return exec(n.else_body);
            case NodeKind::For:
                return exec_for(n);
            case NodeKind::Set:
                assign(n, eval(*n.expr));
                return Flow::Normal;
            case NodeKind::SetBlock: {
                std::string captured;
                std::string* saved = out_;
                out_ = &captured;
                exec(n.body);
                out_ = saved;
                assign(n, Value::string(std::move(captured)));
                return Flow::Normal;
            }
            case NodeKind::Break:
                return Flow::Break;
            case NodeKind::Continue:
                return Flow::Continue;
        }
        return Flow::Normal;
    }

    [[noreturn]] static void fail_at(int line, int col, const std::string& msg) {
        throw TemplateError(
            "line " + std::to_string(line) + ", column " + std::to_string(col) + ": " + msg, true);
    }

    void bind(const Node& n, const std::vector<std::string>& targets, const Value& v) {
        if (targets.size() == 1) {
            scopes_.back()[targets[0]] = v;
            return;
        }
        if (!v.is_list() || v.list->size() != targets.size()) {
            fail_at(n.line, n.col,
                    "cannot unpack " + std::string(v.type_name()) + " into " +
                        std::to_string(targets.size()) + " names");
        }
        for (size_t k = 0; k < targets.size(); ++k) scopes_.back()[targets[k]] = (*v.list)[k];
    }

    void assign(const Node& n, Value v) {
        if (n.attr.empty()) {
            bind(n, n.targets, v);
            return;
        }
        Value ns = lookup(n.targets[0]);
        if (ns.type != Value::Type::Namespace) {
            fail_at(n.line, n.col,
                    "cannot assign attribute '" + n.attr + "' on '" + n.targets[0] +
                        "', which is not a namespace()");
        }
        // Namespaces may not hold namespaces. Otherwise `{% set ns.x = ns %}` would make a cycle
        // (reference counting never frees it, printing it never ends) and chains of namespaces
        // could nest values arbitrarily deep; lists and dicts are bounded when built.
        std::unordered_set<const void*> seen;
        if (holds_namespace(v, seen)) {
            fail_at(n.line, n.col,
                    "cannot store a namespace inside namespace '" + n.targets[0] + "'");
        }
        ns.dict->set(n.attr, std::move(v));
    }

    Flow exec_for(const Node& n) {
        const Value seq = eval(*n.expr);
        ValueList items;
        try {
            items = iterate(seq, budget_);
        } catch (const TemplateError& e) {
            if (e.located) throw;
            fail_at(n.expr->line, n.expr->col, e.what());
        }
        if (n.filter) {  // `for x in xs if cond`: loop.* counts only the items kept
            ValueList kept;
            for (Value& item : items) {
                budget_.iterations(1);
                scopes_.emplace_back();
                bind(n, n.targets, item);
                const bool keep = eval(*n.filter).truthy();
                scopes_.pop_back();
                if (keep) kept.push_back(std::move(item));
            }
            items = std::move(kept);
        }
        if (items.empty()) return exec(n.else_body);
        const auto len = static_cast<int64_t>(items.size());
        for (int64_t k = 0; k < len; ++k) {
            budget_.iterations(1);
            ValueMap loop;
            loop.items = {{"index", Value::integer(k + 1)},
                          {"index0", Value::integer(k)},
                          {"revindex", Value::integer(len - k)},
                          {"revindex0", Value::integer(len - k - 1)},
                          {"first", Value::boolean(k == 0)},
                          {"last", Value::boolean(k == len - 1)},
                          {"length", Value::integer(len)},
                          {"depth", Value::integer(1)},
                          {"depth0", Value::integer(0)},
                          {"previtem", k > 0 ? items[k - 1] : Value::undefined("previtem")},
                          {"nextitem", k + 1 < len ? items[k + 1] : Value::undefined("nextitem")}};
            scopes_.emplace_back();
            scopes_.back()["loop"] = Value::make_dict(std::move(loop));
            bind(n, n.targets, items[k]);
            const Flow f = exec(n.body);
            scopes_.pop_back();
            if (f == Flow::Break) break;
        }
        return Flow::Normal;
    }

    Value lookup(const std::string& name) const {
        for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
            const auto found = it->find(name);
            if (found != it->end()) return found->second;
        }
        return Value::undefined(name);
    }

    // Errors from the built-ins carry no position; the innermost expression adds its own.
    Value eval(const Expr& e) {
        try {
            return eval_inner(e);
        } catch (const TemplateError& err) {
            if (err.located) throw;
            fail_at(e.line, e.col, err.what());
        }
    }

    CallArgs eval_args(const Expr& e, size_t first) {
        CallArgs args;
        for (size_t k = first; k < e.args.size(); ++k) args.pos.push_back(eval(*e.args[k]));
        for (const auto& [key, x] : e.kwargs) args.kw.emplace_back(key, eval(*x));
        return args;
    }

    Value eval_inner(const Expr& e) {
        switch (e.kind) {
            case ExprKind::Literal:
                return e.value;
            case ExprKind::Name:
                return lookup(e.name);
            case ExprKind::List: {
                ValueList items;
                for (const ExprPtr& a : e.args) items.push_back(eval(*a));
                return Value::make_list(std::move(items), e.is_tuple);
            }
            case ExprKind::Dict: {
                ValueMap d;
                for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
                    Value key = eval(*e.args[k]);
                    if (!key.is_string()) throw TemplateError("dict keys must be strings");
                    d.set(key.s, eval(*e.args[k + 1]));
                }
                return Value::make_dict(std::move(d));
            }
            case ExprKind::GetAttr:
                return get_attr(eval(*e.args[0]), e.name);
            case ExprKind::GetItem:
                return get_item(eval(*e.args[0]), eval(*e.args[1]));
            case ExprKind::Slice: {
                auto part = [&](size_t k) { return e.args[k] ? eval(*e.args[k]) : Value::none(); };
                return slice(eval(*e.args[0]), part(1), part(2), part(3), budget_);
            }
            case ExprKind::Call:
                return eval_call(e);
            case ExprKind::Filter: {
                const Value v = eval(*e.args[0]);
                return apply_filter(e.name, v, eval_args(e, 1), budget_);
            }
            case ExprKind::Test: {
                const Value v = eval(*e.args[0]);
                return Value::boolean(apply_test(e.name, v, eval_args(e, 1)) != e.negated);
            }
            case ExprKind::Unary: {
                const Value v = eval(*e.args[0]);
                if (e.name == "not") return Value::boolean(!v.truthy());
                if (v.is_undefined()) undefined_error(v);
                if (!v.is_number()) {
                    throw TemplateError("bad operand type for unary " + e.name + ": '" +
                                        v.type_name() + "'");
                }
                if (e.name == "+")
                    return v.type == Value::Type::Float ? v : Value::integer(v.as_int());
                if (v.type == Value::Type::Float) return Value::real(-v.f);
                if (v.as_int() == INT64_MIN) throw TemplateError("integer overflow");
                return Value::integer(-v.as_int());
            }
            case ExprKind::Binary: {
                Value a = eval(*e.args[0]);
                if (e.name == "and") return a.truthy() ? eval(*e.args[1]) : a;
                if (e.name == "or") return a.truthy() ? a : eval(*e.args[1]);
                return arithmetic(e.name, a, eval(*e.args[1]), budget_);
            }
            case ExprKind::Compare: {
                Value left = eval(*e.args[0]);
                for (size_t k = 0; k < e.ops.size(); ++k) {
                    Value right = eval(*e.args[k + 1]);
                    if (!compare_op(e.ops[k], left, right)) return Value::boolean(false);
                    left = std::move(right);
                }
                return Value::boolean(true);
            }
            case ExprKind::Cond:
                if (eval(*e.args[0]).truthy()) return eval(*e.args[1]);
                return e.args[2] ? eval(*e.args[2]) : Value::undefined();
        }
        return Value::undefined();
    }

    Value eval_call(const Expr& e) {
        const Expr& callee = *e.args[0];
        if (callee.kind == ExprKind::GetAttr) {  // obj.method(...)
            const Value obj = eval(*callee.args[0]);
            const CallArgs args = eval_args(e, 1);
            Value out;
            if (call_method(obj, callee.name, args, budget_, out)) return out;
            const Value attr = get_attr(obj, callee.name);
            if (attr.type == Value::Type::Function) return call_function(attr.s, args, budget_);
            throw TemplateError("'" + std::string(obj.type_name()) + "' object has no method '" +
                                callee.name + "'");
        }
        const Value f = eval(callee);
        if (f.is_undefined()) undefined_error(f);
        if (f.type != Value::Type::Function) {
            throw TemplateError("'" + std::string(f.type_name()) + "' object is not callable");
        }
        return call_function(f.s, eval_args(e, 1), budget_);
    }

    std::vector<std::unordered_map<std::string, Value>> scopes_;
    std::string* out_ = nullptr;
    Budget budget_;
    size_t max_output_;
    size_t written_ = 0;
};

}  // namespace

std::string render(const Body& body, const std::vector<std::pair<std::string, Value>>& globals,
                   const RenderLimits& limits) {
    return Evaluator(globals, limits).run(body);
}

}  // namespace bitnet::jinja
