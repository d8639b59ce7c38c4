// Built-in filters, tests, str/dict methods and global functions: the ones chat templates on
// the Hugging Face hub use. Case mapping (upper, lower, capitalize) covers ASCII letters only;
// other characters pass through unchanged, where Python would also map e.g. 'é' to 'É'.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>

#include "chat/jinja_eval.h"

namespace bitnet::jinja {

void undefined_error(const Value& v) {
    throw TemplateError(v.s.empty() ? std::string("undefined value used")
                                    : "'" + v.s + "' is undefined");
}

namespace {

std::string ascii_map(std::string s, int (*f)(int)) {
    for (char& c : s) {
        if (static_cast<unsigned char>(c) < 0x80) c = static_cast<char>(f(c));
    }
    return s;
}

std::string capitalize(const std::string& s) {
    std::string out = ascii_map(s, [](int c) { return std::tolower(c); });
    if (!out.empty() && static_cast<unsigned char>(out[0]) < 0x80) {
        out[0] = static_cast<char>(std::toupper(out[0]));
    }
    return out;
}

const std::string& need_string(const Value* v, const char* what) {
    if (!v || !v->is_string()) throw TemplateError(std::string(what) + " must be a string");
    return v->s;
}

int64_t need_int(const Value* v, const char* what) {
    if (!v || !v->is_integral()) throw TemplateError(std::string(what) + " must be an integer");
    return v->as_int();
}

// Python's str.split: on runs of whitespace when sep is None, else on each sep.
ValueList split(const std::string& s, const Value* sep, int64_t maxsplit, Budget& budget) {
    ValueList out;
    if (!sep || sep->is_none()) {
        size_t pos = 0, len = 0;
        while (pos < s.size()) {
            while (pos < s.size() && is_py_space(s, pos, len)) pos += len;
            if (pos >= s.size()) break;
            size_t end = pos;
            if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) {
                end = s.size();
                out.push_back(Value::string(py_strip(s.substr(pos), false, true)));
                break;
            }
            while (end < s.size() && !is_py_space(s, end, len)) end += len;
            out.push_back(Value::string(s.substr(pos, end - pos)));
            pos = end;
        }
    } else {
        const std::string& d = need_string(sep, "split separator");
        if (d.empty()) throw TemplateError("split: empty separator");
        size_t pos = 0;
        for (;;) {
            const size_t hit = s.find(d, pos);
            if (hit == std::string::npos ||
                (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit)) {
                out.push_back(Value::string(s.substr(pos)));
                break;
            }
            out.push_back(Value::string(s.substr(pos, hit - pos)));
            pos = hit + d.size();
        }
    }
    budget.iterations(out.size());
    return out;
}

std::string replace(const std::string& s, const std::string& from, const std::string& to,
                    int64_t count, Budget& budget) {
    std::string out;
    int64_t done = 0;
    if (from.empty()) {  // Python inserts `to` around every character
        const std::vector<size_t> cps = codepoint_offsets(s);
        for (size_t k = 0; k + 1 < cps.size(); ++k) {
            if (count < 0 || done++ < count) out += to;
            out.append(s, cps[k], cps[k + 1] - cps[k]);
            budget.bytes(to.size());
        }
        if (count < 0 || done < count) out += to;
    } else {
        size_t pos = 0;
        for (;;) {
            const size_t hit = s.find(from, pos);
            if (hit == std::string::npos || (count >= 0 && done >= count)) break;
            out.append(s, pos, hit - pos);
            out += to;
            budget.bytes(to.size());
            pos = hit + from.size();
            ++done;
        }
        out.append(s, pos);
    }
    budget.bytes(out.size());
    return out;
}

bool prefix_test(const std::string& s, const Value* arg, bool starts) {
    auto one = [&](const Value& p) {
        const std::string& x =
            need_string(&p, starts ? "startswith argument" : "endswith argument");
        if (x.size() > s.size()) return false;
        return starts ? s.compare(0, x.size(), x) == 0
                      : s.compare(s.size() - x.size(), x.size(), x) == 0;
    };
    if (arg && arg->is_list()) {  // a tuple of alternatives, as Python allows
        return std::any_of(arg->list->begin(), arg->list->end(), one);
    }
    if (!arg) throw TemplateError("startswith/endswith needs an argument");
    return one(*arg);
}

std::string strip_with(const std::string& s, const Value* chars, bool left, bool right) {
    if (!chars || chars->is_none()) return py_strip(s, left, right);
    return py_strip_chars(s, need_string(chars, "strip characters"), left, right);
}

std::string join(const ValueList& items, const std::string& sep, Budget& budget) {
    std::string out;
    for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += sep;
        out += to_str(items[k]);
    }
    budget.bytes(out.size());
    return out;
}

Value dict_items(const ValueMap& d, Budget& budget) {
    budget.iterations(d.items.size());
    ValueList out;
    for (const auto& [k, v] : d.items) out.push_back(Value::make_list({Value::string(k), v}, true));
    return Value::make_list(std::move(out));
}

// select / reject / selectattr / rejectattr
Value select(const Value& v, const CallArgs& args, bool by_attr, bool keep, Budget& budget) {
    ValueList out;
    size_t first_test_arg = 0;
    std::string attr;
    if (by_attr) {
        attr = need_string(args.get(0, "attribute"), "selectattr attribute");
        first_test_arg = 1;
    }
    CallArgs test_args;
    std::string test;
    if (args.pos.size() > first_test_arg) {
        test = need_string(&args.pos[first_test_arg], "test name");
        test_args.pos.assign(args.pos.begin() + static_cast<std::ptrdiff_t>(first_test_arg) + 1,
                             args.pos.end());
    }
    for (const Value& item : iterate(v, budget)) {
        const Value x = by_attr ? get_attr(item, attr) : item;
        const bool pass = test.empty() ? x.truthy() : apply_test(test, x, test_args);
        if (pass == keep) out.push_back(item);
    }
    return Value::make_list(std::move(out));
}

}  // namespace

Value get_attr(const Value& obj, const std::string& name) {
    if (obj.type == Value::Type::Dict || obj.type == Value::Type::Namespace) {
        if (const Value* v = obj.dict->find(name)) return *v;
    }
    // Missing attributes, and attributes of undefined values, are undefined (not an error), so
    // `message.tool_calls is defined` works whatever `message` is.
    return Value::undefined(name);
}

Value get_item(const Value& obj, const Value& key) {
    if (key.is_string()) return get_attr(obj, key.s);
    if (!key.is_integral()) return Value::undefined();
    int64_t idx = key.as_int();
    if (obj.is_list()) {
        const auto n = static_cast<int64_t>(obj.list->size());
        if (idx < 0) idx += n;
        if (idx < 0 || idx >= n) return Value::undefined();
        return (*obj.list)[static_cast<size_t>(idx)];
    }
    if (obj.is_string()) {
        const std::vector<size_t> cps = codepoint_offsets(obj.s);
        const auto n = static_cast<int64_t>(cps.size()) - 1;
        if (idx < 0) idx += n;
        if (idx < 0 || idx >= n) return Value::undefined();
        const size_t k = static_cast<size_t>(idx);
        return Value::string(obj.s.substr(cps[k], cps[k + 1] - cps[k]));
    }
    return Value::undefined();
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step,
            Budget& budget) {
    if (obj.is_undefined()) return obj;
    for (const Value* v : {&start, &stop, &step}) {
        if (!v->is_none() && !v->is_integral())
            throw TemplateError("slice indices must be integers");
    }
    std::vector<size_t> cps;
    int64_t n = 0;
    if (obj.is_list()) {
        n = static_cast<int64_t>(obj.list->size());
    } else if (obj.is_string()) {
        cps = codepoint_offsets(obj.s);
        n = static_cast<int64_t>(cps.size()) - 1;
    } else {
        throw TemplateError(std::string("'") + obj.type_name() + "' object is not subscriptable");
    }
    // Python's slice.indices().
    const int64_t st = step.is_none() ? 1 : step.as_int();
    if (st == 0) throw TemplateError("slice step cannot be zero");
    const int64_t lower = st > 0 ? 0 : -1, upper = st > 0 ? n : n - 1;
    auto clamp = [&](const Value& v, int64_t dflt) {
        if (v.is_none()) return dflt;
        int64_t x = v.as_int();
        if (x < 0) x = std::max(x, -n) + n;  // avoids overflow on huge negatives
        return std::clamp(x, lower, upper);
    };
    const int64_t b = clamp(start, st > 0 ? lower : upper);
    const int64_t e = clamp(stop, st > 0 ? upper : lower);
    ValueList items;
    std::string s;
    for (int64_t k = b; st > 0 ? k < e : k > e; k += st) {
        const auto u = static_cast<size_t>(k);
        if (obj.is_list()) {
            items.push_back((*obj.list)[u]);
        } else {
            s.append(obj.s, cps[u], cps[u + 1] - cps[u]);
        }
    }
    if (obj.is_string()) {
        budget.bytes(s.size());
        return Value::string(std::move(s));
    }
    budget.iterations(items.size());
    return Value::make_list(std::move(items), obj.tuple);
}

ValueList iterate(const Value& v, Budget& budget) {
    ValueList out;
    switch (v.type) {
        case Value::Type::Undefined:
            return out;  // Jinja's Undefined iterates as empty
        case Value::Type::List:
            return *v.list;
        case Value::Type::Dict:
            for (const auto& kv : v.dict->items) out.push_back(Value::string(kv.first));
            return out;
        case Value::Type::String: {
            const std::vector<size_t> cps = codepoint_offsets(v.s);
            budget.iterations(cps.size());
            for (size_t k = 0; k + 1 < cps.size(); ++k) {
                out.push_back(Value::string(v.s.substr(cps[k], cps[k + 1] - cps[k])));
            }
            return out;
        }
        default:
            throw TemplateError(std::string("'") + v.type_name() + "' object is not iterable");
    }
}

bool contains(const Value& container, const Value& item) {
    switch (container.type) {
        case Value::Type::Undefined:
            return false;
        case Value::Type::String:
            if (!item.is_string()) {
                throw TemplateError(
                    std::string("'in <string>' requires string as left operand, not ") +
                    item.type_name());
            }
            return container.s.find(item.s) != std::string::npos;
        case Value::Type::List:
            return std::any_of(container.list->begin(), container.list->end(),
                               [&](const Value& x) { return equals(x, item); });
        case Value::Type::Dict:
            return item.is_string() && container.dict->find(item.s) != nullptr;
        default:
            throw TemplateError(std::string("argument of type '") + container.type_name() +
                                "' is not iterable");
    }
}

bool apply_test(const std::string& name, const Value& v, const CallArgs& args) {
    using T = Value::Type;
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "number") return v.is_number();
    if (name == "integer") return v.type == T::Int;
    if (name == "float") return v.type == T::Float;
    if (name == "boolean") return v.type == T::Bool;
    if (name == "true") return v.type == T::Bool && v.b;
    if (name == "false") return v.type == T::Bool && !v.b;
    if (name == "mapping") return v.is_dict();
    if (name == "sequence") return v.is_list() || v.is_string() || v.is_dict();
    if (name == "iterable") return v.is_list() || v.is_string() || v.is_dict() || v.is_undefined();
    if (name == "callable") return v.type == T::Function;
    if (name == "even" || name == "odd") {
        if (!v.is_integral()) throw TemplateError("test '" + name + "' needs an integer");
        return (v.as_int() % 2 == 0) == (name == "even");
    }
    if (name == "divisibleby") {
        const int64_t d = need_int(args.get(0, "num"), "divisibleby argument");
        if (d == 0 || !v.is_integral()) throw TemplateError("divisibleby needs nonzero integers");
        return v.as_int() % d == 0;
    }
    const Value* other = args.get(0, "b");
    auto need_other = [&]() -> const Value& {
        if (!other) throw TemplateError("test '" + name + "' needs an argument");
        return *other;
    };
    if (name == "eq" || name == "equalto" || name == "==") return equals(v, need_other());
    if (name == "ne" || name == "!=") return !equals(v, need_other());
    if (name == "sameas") return equals(v, need_other()) && v.type == need_other().type;
    if (name == "in") return contains(need_other(), v);
    for (const char* op : {"lt", "le", "gt", "ge"}) {
        if (name != op) continue;
        bool ok = false;
        const int c = compare(v, need_other(), ok);
        if (!ok) throw TemplateError("test '" + name + "': values cannot be ordered");
        return name == "lt" ? c < 0 : name == "le" ? c <= 0 : name == "gt" ? c > 0 : c >= 0;
    }
    throw TemplateError("unknown test '" + name + "'");
}

Value apply_filter(const std::string& name, const Value& v, const CallArgs& args, Budget& budget) {
    if (name == "default" || name == "d") {
        const Value* dflt = args.get(0, "default_value");
        const Value* boolean = args.get(1, "boolean");
        const bool use = (boolean && boolean->truthy()) ? !v.truthy() : v.is_undefined();
        return use ? (dflt ? *dflt : Value::string("")) : v;
    }
    if (name == "trim")
        return Value::string(strip_with(to_str(v), args.get(0, "chars"), true, true));
    if (name == "upper")
        return Value::string(ascii_map(to_str(v), [](int c) { return std::toupper(c); }));
    if (name == "lower")
        return Value::string(ascii_map(to_str(v), [](int c) { return std::tolower(c); }));
    if (name == "capitalize") return Value::string(capitalize(to_str(v)));
    if (name == "string") return Value::string(to_str(v));
    if (name == "safe") return v;
    if (name == "length" || name == "count") {
        if (v.is_undefined()) return Value::integer(0);
        if (v.is_string()) return Value::integer(static_cast<int64_t>(codepoint_count(v.s)));
        if (v.is_list()) return Value::integer(static_cast<int64_t>(v.list->size()));
        if (v.is_dict()) return Value::integer(static_cast<int64_t>(v.dict->items.size()));
        throw TemplateError(std::string("object of type '") + v.type_name() + "' has no len()");
    }
    if (name == "tojson") {
        if (v.is_undefined()) undefined_error(v);
        const Value* indent = args.get(0, "indent");
        const Value* sort = args.get(1, "sort_keys");
        const int ind =
            indent && !indent->is_none()
                ? static_cast<int>(std::clamp<int64_t>(need_int(indent, "tojson indent"), 0, 64))
                : -1;
        std::string s = to_json(v, ind, sort && sort->truthy());
        budget.bytes(s.size());
        return Value::string(std::move(s));
    }
    if (name == "join") {
        ValueList items = iterate(v, budget);
        if (const Value* attr = args.get(1, "attribute")) {
            for (Value& x : items) x = get_attr(x, need_string(attr, "join attribute"));
        }
        const Value* sep = args.get(0, "d");
        return Value::string(join(items, sep ? to_str(*sep) : "", budget));
    }
    if (name == "first" || name == "last") {
        if (v.is_undefined()) return v;
        const ValueList items = iterate(v, budget);
        if (items.empty()) return Value::undefined();
        return name == "first" ? items.front() : items.back();
    }
    if (name == "list") return Value::make_list(iterate(v, budget));
    if (name == "reverse") {
        ValueList items = iterate(v, budget);
        std::reverse(items.begin(), items.end());
        if (v.is_string()) return Value::string(join(items, "", budget));
        return Value::make_list(std::move(items));
    }
    if (name == "replace") {
        const Value* count = args.get(2, "count");
        return Value::string(replace(to_str(v), need_string(args.get(0, "old"), "replace argument"),
                                     need_string(args.get(1, "new"), "replace argument"),
                                     count && !count->is_none() ? need_int(count, "count") : -1,
                                     budget));
    }
    if (name == "int") {
        if (v.is_integral()) return Value::integer(v.as_int());
        if (v.type == Value::Type::Float && std::abs(v.f) < 9.2e18)
            return Value::integer(static_cast<int64_t>(v.f));
        if (v.is_string()) {
            try {
                size_t used = 0;
                const std::string t = py_strip(v.s, true, true);
                const long long x = std::stoll(t, &used, 10);
                if (used == t.size()) return Value::integer(x);
            } catch (const std::exception&) {
            }
        }
        const Value* dflt = args.get(0, "default");
        return dflt ? *dflt : Value::integer(0);
    }
    if (name == "abs") {
        if (v.type == Value::Type::Float) return Value::real(std::abs(v.f));
        const int64_t x = need_int(&v, "abs operand");
        if (x == INT64_MIN) throw TemplateError("integer overflow");
        return Value::integer(x < 0 ? -x : x);
    }
    if (name == "items") {
        if (v.is_undefined()) return Value::make_list({});
        if (!v.is_dict()) throw TemplateError("items filter needs a mapping");
        return dict_items(*v.dict, budget);
    }
    if (name == "map") {
        ValueList out;
        const Value* attr = nullptr;
        for (const auto& [k, x] : args.kw) {
            if (k == "attribute") attr = &x;
        }
        CallArgs rest;
        if (!attr) {
            if (args.pos.empty()) throw TemplateError("map needs a filter name or attribute=");
            rest.pos.assign(args.pos.begin() + 1, args.pos.end());
        }
        for (const Value& x : iterate(v, budget)) {
            out.push_back(
                attr ? get_attr(x, need_string(attr, "map attribute"))
                     : apply_filter(need_string(&args.pos[0], "map filter"), x, rest, budget));
        }
        return Value::make_list(std::move(out));
    }
    if (name == "select" || name == "reject")
        return select(v, args, false, name == "select", budget);
    if (name == "selectattr" || name == "rejectattr") {
        return select(v, args, true, name == "selectattr", budget);
    }
    throw TemplateError("unknown filter '" + name + "'");
}

bool call_method(const Value& obj, const std::string& name, const CallArgs& args, Budget& budget,
                 Value& out) {
    if (obj.is_string()) {
        const std::string& s = obj.s;
        if (name == "strip" || name == "lstrip" || name == "rstrip") {
            out = Value::string(
                strip_with(s, args.get(0, "chars"), name != "rstrip", name != "lstrip"));
        } else if (name == "upper" || name == "lower" || name == "capitalize") {
            out = apply_filter(name, obj, {}, budget);
        } else if (name == "startswith" || name == "endswith") {
            out = Value::boolean(prefix_test(s, args.get(0, "prefix"), name == "startswith"));
        } else if (name == "split") {
            const Value* maxsplit = args.get(1, "maxsplit");
            out = Value::make_list(split(s, args.get(0, "sep"),
                                         maxsplit ? need_int(maxsplit, "maxsplit") : -1, budget));
        } else if (name == "replace") {
            out = apply_filter("replace", obj, args, budget);
        } else if (name == "find") {
            const size_t hit = s.find(need_string(args.get(0, "sub"), "find argument"));
            out = Value::integer(hit == std::string::npos
                                     ? -1
                                     : static_cast<int64_t>(codepoint_count(s.substr(0, hit))));
        } else if (name == "join") {
            const Value* items = args.get(0, "iterable");
            if (!items) throw TemplateError("join needs an argument");
            out = Value::string(join(iterate(*items, budget), s, budget));
        } else {
            return false;
        }
        return true;
    }
    if (obj.is_dict()) {
        if (name == "items") {
            out = dict_items(*obj.dict, budget);
        } else if (name == "keys" || name == "values") {
            ValueList items;
            for (const auto& [k, v] : obj.dict->items)
                items.push_back(name == "keys" ? Value::string(k) : v);
            out = Value::make_list(std::move(items));
        } else if (name == "get") {
            const Value* found = obj.dict->find(need_string(args.get(0, "key"), "get key"));
            const Value* dflt = args.get(1, "default");
            out = found ? *found : (dflt ? *dflt : Value::none());
        } else {
            return false;
        }
        return true;
    }
    return false;
}

Value call_function(const std::string& name, const CallArgs& args, Budget& budget) {
    if (name == "raise_exception") {
        const Value* msg = args.get(0, "message");
        throw TemplateError("raise_exception: " + (msg ? to_str(*msg) : std::string()));
    }
    if (name == "namespace" || name == "dict") {
        ValueMap d;
        if (!args.pos.empty()) {
            if (!args.pos[0].is_dict()) throw TemplateError(name + "() takes a mapping");
            d = *args.pos[0].dict;
        }
        for (const auto& [k, v] : args.kw) d.set(k, v);
        return name == "dict" ? Value::make_dict(std::move(d))
                              : Value::make_namespace(std::move(d));
    }
    if (name == "range") {
        int64_t start = 0, stop = 0, step = 1;
        if (args.pos.size() == 1) {
            stop = need_int(&args.pos[0], "range argument");
        } else if (args.pos.size() == 2 || args.pos.size() == 3) {
            start = need_int(&args.pos[0], "range argument");
            stop = need_int(&args.pos[1], "range argument");
            if (args.pos.size() == 3) step = need_int(&args.pos[2], "range argument");
        } else {
            throw TemplateError("range takes 1 to 3 integers");
        }
        if (step == 0) throw TemplateError("range step cannot be zero");
        ValueList out;
        for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
            budget.iterations(1);  // counted as built, so range(10**12) fails fast
            out.push_back(Value::integer(k));
            if ((step > 0 && k > INT64_MAX - step) || (step < 0 && k < INT64_MIN - step)) break;
        }
        return Value::make_list(std::move(out));
    }
    throw TemplateError("'" + name + "' is not callable");
}

}  // namespace bitnet::jinja
