// The values a chat template computes with: a small variant modelled on the Python objects that
// Jinja2 hands around (None, bool, int, float, str, list, dict, Namespace, Undefined), with the
// Python semantics templates rely on: truthiness, str()/repr() output, == across int/float/bool,
// ordering, and json.dumps for |tojson. Strings are UTF-8; lengths and indices count code points
// as Python's str does.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bitnet::jinja {

// A render-time failure. `located` is set once a line/column has been added, so the innermost
// expression that was being evaluated names the place.
class TemplateError : public std::runtime_error {
  public:
    explicit TemplateError(const std::string& msg, bool is_located = false)
        : std::runtime_error(msg), located(is_located) {}
    bool located;
};

// Lists and dicts nest at most this deep when built (destroying, printing and comparing them
// recurse); printing, comparing and serialising check it again.
inline constexpr int kMaxValueDepth = 64;

struct Value;
using ValueList = std::vector<Value>;
// Insertion-ordered string-keyed map (Python dicts keep insertion order; templates iterate them).
struct ValueMap {
    std::vector<std::pair<std::string, Value>> items;
    const Value* find(std::string_view key) const;
    void set(const std::string& key, Value v);
};

struct Value {
    enum class Type { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Function };
    Type type = Type::Undefined;
    bool b = false;
    int64_t i = 0;
    double f = 0;
    std::string s;  // String; Undefined: the name that was looked up; Function: builtin name
    // Lists and dicts are immutable once built (the sandbox forbids mutation), so copies share
    // them. A Namespace is the one mutable object: `{% set ns.x = ... %}` must be visible through
    // every reference, so it is shared by design.
    std::shared_ptr<const ValueList> list;
    std::shared_ptr<ValueMap> dict;  // Dict and Namespace
    bool tuple = false;              // a list written (a, b): Python prints it with parentheses
    int depth = 0;  // containers: 1 + the deepest element (a namespace counts as 1)

    static Value undefined(std::string name = {});
    static Value none();
    static Value boolean(bool v);
    static Value integer(int64_t v);
    static Value real(double v);
    static Value string(std::string v);
    static Value make_list(ValueList v, bool is_tuple = false);
    static Value make_dict(ValueMap v);
    static Value make_namespace(ValueMap v);
    static Value function(std::string name);

    bool is_undefined() const { return type == Type::Undefined; }
    bool is_none() const { return type == Type::None; }
    bool is_string() const { return type == Type::String; }
    bool is_list() const { return type == Type::List; }
    bool is_dict() const { return type == Type::Dict; }
    bool is_number() const {
        return type == Type::Int || type == Type::Float || type == Type::Bool;
    }
    bool is_integral() const { return type == Type::Int || type == Type::Bool; }
    int64_t as_int() const { return type == Type::Bool ? int64_t{b} : i; }
    double as_double() const { return type == Type::Float ? f : static_cast<double>(as_int()); }

    bool truthy() const;
    // Python's type name, for error messages ("'<' not supported between 'str' and 'int'").
    const char* type_name() const;
};

// str(): what {{ value }} prints (Undefined prints nothing, None prints "None").
std::string to_str(const Value& v);
// repr(): how a value looks inside a printed list or dict.
std::string repr(const Value& v);
// json.dumps(v, ensure_ascii=False, indent=indent, sort_keys=sort_keys), the |tojson that
// Hugging Face installs; indent < 0 means None (one line, ", " and ": " separators).
std::string to_json(const Value& v, int indent, bool sort_keys);
std::string format_float(double d);  // Python float repr: 1.0, 0.1, 1e+20, 1.5e-07

// Python ==, and <, <=, >, >= (returns false from `ok` when the types cannot be ordered).
bool equals(const Value& a, const Value& b);
int compare(const Value& a, const Value& b, bool& ok);

// UTF-8 helpers: code point boundaries (malformed bytes count as one code point each, so
// arbitrary bytes never cause out-of-range access).
std::vector<size_t> codepoint_offsets(std::string_view s);  // starts, plus s.size() at the end
size_t codepoint_count(std::string_view s);
bool is_py_space(std::string_view s, size_t pos, size_t& len);  // str.isspace() of one char
std::string py_strip(std::string_view s, bool left, bool right);
std::string py_strip_chars(std::string_view s, std::string_view chars, bool left, bool right);

}  // namespace bitnet::jinja
