// Python semantics of template values: see jinja_value.h.
#include "chat/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace bitnet::jinja {

const Value* ValueMap::find(std::string_view key) const {
    for (const auto& [k, v] : items) {
        if (k == key) return &v;
    }
    return nullptr;
}

void ValueMap::set(const std::string& key, Value v) {
    for (auto& [k, old] : items) {
        if (k == key) {
            old = std::move(v);
            return;
        }
    }
    items.emplace_back(key, std::move(v));
}

Value Value::undefined(std::string name) {
    Value v;
    v.s = std::move(name);
    return v;
}
Value Value::none() {
    Value v;
    v.type = Type::None;
    return v;
}
Value Value::boolean(bool x) {
    Value v;
    v.type = Type::Bool;
    v.b = x;
    return v;
}
Value Value::integer(int64_t x) {
    Value v;
    v.type = Type::Int;
    v.i = x;
    return v;
}
Value Value::real(double x) {
    Value v;
    v.type = Type::Float;
    v.f = x;
    return v;
}
Value Value::string(std::string x) {
    Value v;
    v.type = Type::String;
    v.s = std::move(x);
    return v;
}
namespace {

int container_depth(const Value& v) {
    return v.type == Value::Type::Namespace ? 1 : v.depth;
}

void check_built_depth(int depth) {
    if (depth > kMaxValueDepth) {
        throw TemplateError("value nests more than " + std::to_string(kMaxValueDepth) +
                            " levels deep");
    }
}

}  // namespace

Value Value::make_list(ValueList x, bool is_tuple) {
    Value v;
    v.type = Type::List;
    v.depth = 1;
    for (const Value& e : x) v.depth = std::max(v.depth, 1 + container_depth(e));
    check_built_depth(v.depth);
    v.list = std::make_shared<const ValueList>(std::move(x));
    v.tuple = is_tuple;
    return v;
}
Value Value::make_dict(ValueMap x) {
    Value v;
    v.type = Type::Dict;
    v.depth = 1;
    for (const auto& kv : x.items) v.depth = std::max(v.depth, 1 + container_depth(kv.second));
    check_built_depth(v.depth);
    v.dict = std::make_shared<ValueMap>(std::move(x));
    return v;
}
Value Value::make_namespace(ValueMap x) {
    Value v = make_dict(std::move(x));
    v.type = Type::Namespace;
    return v;
}
Value Value::function(std::string name) {
    Value v;
    v.type = Type::Function;
    v.s = std::move(name);
    return v;
}

bool Value::truthy() const {
    switch (type) {
        case Type::Undefined:
        case Type::None:
            return false;
        case Type::Bool:
            return b;
        case Type::Int:
            return i != 0;
        case Type::Float:
            return f != 0;
        case Type::String:
            return !s.empty();
        case Type::List:
            return !list->empty();
        case Type::Dict:
            return !dict->items.empty();
        case Type::Namespace:
        case Type::Function:
            return true;
    }
    return false;
}

const char* Value::type_name() const {
    switch (type) {
        case Type::Undefined:
            return "Undefined";
        case Type::None:
            return "NoneType";
        case Type::Bool:
            return "bool";
        case Type::Int:
            return "int";
        case Type::Float:
            return "float";
        case Type::String:
            return "str";
        case Type::List:
            return tuple ? "tuple" : "list";
        case Type::Dict:
            return "dict";
        case Type::Namespace:
            return "Namespace";
        case Type::Function:
            return "function";
    }
    return "object";
}

std::string format_float(double d) {
    if (std::isnan(d)) return "nan";
    if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
    // Shortest round-trip digits (what Python's repr uses), then Python's layout: positional
    // notation for exponents in [-4, 16), scientific otherwise.
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
    std::string sci(buf, res.ptr);
    const size_t e = sci.find('e');
    std::string mant = sci.substr(0, e);
    const int exp = std::stoi(sci.substr(e + 1));
    std::string sign;
    if (!mant.empty() && mant[0] == '-') {
        sign = "-";
        mant.erase(0, 1);
    }
    std::string digits;
    for (char c : mant) {
        if (c != '.') digits += c;
    }
    if (exp >= -4 && exp < 16) {
        std::string out;
        if (exp < 0) {
            out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
        } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
            out = digits + std::string(static_cast<size_t>(exp) + 1 - digits.size(), '0') + ".0";
        } else {
            out = digits.substr(0, static_cast<size_t>(exp) + 1) + "." +
                  digits.substr(static_cast<size_t>(exp) + 1);
        }
        return sign + out;
    }
    std::string out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char ebuf[16];
    std::snprintf(ebuf, sizeof(ebuf), "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    return sign + out + ebuf;
}

namespace {

void check_depth(int depth) {
    if (depth > kMaxValueDepth) {
        throw TemplateError("value nests more than " + std::to_string(kMaxValueDepth) +
                            " levels deep");
    }
}

std::string repr_string(const std::string& s) {
    // Python picks double quotes only when the text has a ' and no ".
    const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
    const char q = dq ? '"' : '\'';
    std::string out(1, q);
    for (unsigned char c : s) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == static_cast<unsigned char>(q)) {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\x%02x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    out += q;
    return out;
}

std::string repr_at(const Value& v, int depth);

std::string repr_dict(const ValueMap& d, int depth) {
    std::string out = "{";
    bool first = true;
    for (const auto& [k, x] : d.items) {
        if (!first) out += ", ";
        first = false;
        out += repr_string(k) + ": " + repr_at(x, depth + 1);
    }
    return out + "}";
}

std::string repr_at(const Value& v, int depth) {
    check_depth(depth);
    switch (v.type) {
        case Value::Type::String:
            return repr_string(v.s);
        case Value::Type::Undefined:
            return "";
        case Value::Type::List: {
            std::string out = v.tuple ? "(" : "[";
            for (size_t k = 0; k < v.list->size(); ++k) {
                if (k) out += ", ";
                out += repr_at((*v.list)[k], depth + 1);
            }
            if (v.tuple && v.list->size() == 1) out += ",";
            return out + (v.tuple ? ")" : "]");
        }
        case Value::Type::Dict:
            return repr_dict(*v.dict, depth);
        case Value::Type::Namespace:
            return "<Namespace " + repr_dict(*v.dict, depth) + ">";
        default:
            return to_str(v);
    }
}

void json_string(const std::string& s, std::string& out) {
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof(buf), "\\u%04x", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);  // ensure_ascii=False: UTF-8 passes through
                }
        }
    }
    out += '"';
}

void json_at(const Value& v, int indent, bool sort_keys, int depth, std::string& out) {
    check_depth(depth);
    // With an indent, Python puts each item on its own line and uses "," between items.
    auto newline = [&](int level) {
        if (indent >= 0) {
            out += '\n';
            out.append(static_cast<size_t>(indent) * static_cast<size_t>(level), ' ');
        }
    };
    const char* sep = indent >= 0 ? "," : ", ";
    switch (v.type) {
        case Value::Type::None:
            out += "null";
            return;
        case Value::Type::Bool:
            out += v.b ? "true" : "false";
            return;
        case Value::Type::Int:
            out += std::to_string(v.i);
            return;
        case Value::Type::Float:
            if (std::isnan(v.f)) {
                out += "NaN";
            } else if (std::isinf(v.f)) {
                out += v.f < 0 ? "-Infinity" : "Infinity";
            } else {
                out += format_float(v.f);
            }
            return;
        case Value::Type::String:
            json_string(v.s, out);
            return;
        case Value::Type::List: {
            if (v.list->empty()) {
                out += "[]";
                return;
            }
            out += '[';
            for (size_t k = 0; k < v.list->size(); ++k) {
                if (k) out += sep;
                newline(depth + 1);
                json_at((*v.list)[k], indent, sort_keys, depth + 1, out);
            }
            newline(depth);
            out += ']';
            return;
        }
        case Value::Type::Dict: {
            if (v.dict->items.empty()) {
                out += "{}";
                return;
            }
            std::vector<const std::pair<std::string, Value>*> items;
            for (const auto& kv : v.dict->items) items.push_back(&kv);
            if (sort_keys) {
                std::stable_sort(items.begin(), items.end(),
                                 [](auto* a, auto* b) { return a->first < b->first; });
            }
            out += '{';
            for (size_t k = 0; k < items.size(); ++k) {
                if (k) out += sep;
                newline(depth + 1);
                json_string(items[k]->first, out);
                out += ": ";
                json_at(items[k]->second, indent, sort_keys, depth + 1, out);
            }
            newline(depth);
            out += '}';
            return;
        }
        default:
            throw TemplateError(std::string("tojson: object of type '") + v.type_name() +
                                "' is not JSON serializable");
    }
}

bool equals_at(const Value& a, const Value& b, int depth) {
    check_depth(depth);
    if (a.is_number() && b.is_number()) {
        if (a.is_integral() && b.is_integral()) return a.as_int() == b.as_int();
        return a.as_double() == b.as_double();
    }
    if (a.type != b.type) return false;
    switch (a.type) {
        case Value::Type::Undefined:
        case Value::Type::None:
            return true;
        case Value::Type::String:
        case Value::Type::Function:
            return a.s == b.s;
        case Value::Type::List:
            if (a.list->size() != b.list->size() || a.tuple != b.tuple) return false;
            for (size_t k = 0; k < a.list->size(); ++k) {
                if (!equals_at((*a.list)[k], (*b.list)[k], depth + 1)) return false;
            }
            return true;
        case Value::Type::Dict:
            if (a.dict->items.size() != b.dict->items.size()) return false;
            for (const auto& [k, v] : a.dict->items) {
                const Value* o = b.dict->find(k);
                if (!o || !equals_at(v, *o, depth + 1)) return false;
            }
            return true;
        case Value::Type::Namespace:
            return a.dict == b.dict;  // identity, as for Python objects without __eq__
        default:
            return false;
    }
}

int compare_at(const Value& a, const Value& b, bool& ok, int depth) {
    check_depth(depth);
    ok = true;
    if (a.is_number() && b.is_number()) {
        if (a.is_integral() && b.is_integral()) {
            return a.as_int() < b.as_int() ? -1 : (a.as_int() > b.as_int() ? 1 : 0);
        }
        const double x = a.as_double(), y = b.as_double();
        return x < y ? -1 : (x > y ? 1 : 0);
    }
    if (a.is_string() && b.is_string()) {
        // Byte order of UTF-8 is code point order, which is what Python compares.
        const int c = a.s.compare(b.s);
        return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    if (a.is_list() && b.is_list() && a.tuple == b.tuple) {
        const size_t n = std::min(a.list->size(), b.list->size());
        for (size_t k = 0; k < n; ++k) {
            if (equals_at((*a.list)[k], (*b.list)[k], depth + 1)) continue;
            return compare_at((*a.list)[k], (*b.list)[k], ok, depth + 1);
        }
        return a.list->size() < b.list->size() ? -1 : (a.list->size() > b.list->size() ? 1 : 0);
    }
    ok = false;
    return 0;
}

size_t utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

// Length of the code point at `pos`; a truncated or malformed sequence counts as one byte.
size_t cp_len(std::string_view s, size_t pos) {
    const size_t n = utf8_len(static_cast<unsigned char>(s[pos]));
    if (pos + n > s.size()) return 1;
    for (size_t k = 1; k < n; ++k) {
        if ((static_cast<unsigned char>(s[pos + k]) & 0xC0) != 0x80) return 1;
    }
    return n;
}

}  // namespace

std::string to_str(const Value& v) {
    switch (v.type) {
        case Value::Type::Undefined:
            return "";
        case Value::Type::None:
            return "None";
        case Value::Type::Bool:
            return v.b ? "True" : "False";
        case Value::Type::Int:
            return std::to_string(v.i);
        case Value::Type::Float:
            return format_float(v.f);
        case Value::Type::String:
            return v.s;
        case Value::Type::Function:
            return "<built-in function " + v.s + ">";
        default:
            return repr_at(v, 0);
    }
}

std::string repr(const Value& v) {
    return repr_at(v, 0);
}

std::string to_json(const Value& v, int indent, bool sort_keys) {
    std::string out;
    json_at(v, indent, sort_keys, 0, out);
    return out;
}

bool equals(const Value& a, const Value& b) {
    return equals_at(a, b, 0);
}

int compare(const Value& a, const Value& b, bool& ok) {
    return compare_at(a, b, ok, 0);
}

std::vector<size_t> codepoint_offsets(std::string_view s) {
    std::vector<size_t> out;
    for (size_t pos = 0; pos < s.size(); pos += cp_len(s, pos)) out.push_back(pos);
    out.push_back(s.size());
    return out;
}

size_t codepoint_count(std::string_view s) {
    size_t n = 0;
    for (size_t pos = 0; pos < s.size(); pos += cp_len(s, pos)) ++n;
    return n;
}

bool is_py_space(std::string_view s, size_t pos, size_t& len) {
    len = cp_len(s, pos);
    const auto c = static_cast<unsigned char>(s[pos]);
    if (len == 1) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
    // The non-ASCII characters for which Python's str.isspace() is true.
    uint32_t cp = c & (0xFF >> (len + 1));
    for (size_t k = 1; k < len; ++k)
        cp = (cp << 6) | (static_cast<unsigned char>(s[pos + k]) & 0x3F);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::string py_strip(std::string_view s, bool left, bool right) {
    size_t begin = 0, end = s.size(), len = 0;
    if (left) {
        while (begin < end && is_py_space(s, begin, len)) begin += len;
    }
    if (right) {
        // Walk forward, remembering where the trailing run of whitespace starts.
        size_t pos = begin, run = end;
        bool in_run = false;
        while (pos < end) {
            const bool sp = is_py_space(s, pos, len);
            if (sp && !in_run) run = pos;
            in_run = sp;
            pos += len;
        }
        if (in_run) end = run;
    }
    return std::string(s.substr(begin, end - begin));
}

std::string py_strip_chars(std::string_view s, std::string_view chars, bool left, bool right) {
    const std::vector<size_t> cps = codepoint_offsets(s);
    auto in_set = [&](size_t k) {
        const std::string_view ch = s.substr(cps[k], cps[k + 1] - cps[k]);
        const std::vector<size_t> set = codepoint_offsets(chars);
        for (size_t j = 0; j + 1 < set.size(); ++j) {
            if (chars.substr(set[j], set[j + 1] - set[j]) == ch) return true;
        }
        return false;
    };
    size_t b = 0, e = cps.size() - 1;
    if (left) {
        while (b < e && in_set(b)) ++b;
    }
    if (right) {
        while (e > b && in_set(e - 1)) --e;
    }
    return std::string(s.substr(cps[b], cps[e] - cps[b]));
}

}  // namespace bitnet::jinja
