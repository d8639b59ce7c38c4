// The tree-walking evaluator and the built-in filters, tests, methods and functions, with the
// limits that keep a hostile template from hanging or exhausting memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_parser.h"
#include "chat/jinja_value.h"

namespace bitnet::jinja {

struct RenderLimits {
    size_t max_output = size_t{16} << 20;  // bytes of rendered text (and of any one string)
    uint64_t max_iterations = 1'000'000;   // loop iterations and list elements built, in all
    uint64_t max_work_bytes = uint64_t{256} << 20;  // bytes of strings built, in all
};

// Counts the work a render does; throws TemplateError when a limit is passed. String
// concatenation in a loop is quadratic, so bytes built are bounded, not only bytes output.
class Budget {
  public:
    explicit Budget(const RenderLimits& limits) : limits_(limits) {}
    void bytes(size_t n);
    void iterations(uint64_t n);
    const RenderLimits& limits() const { return limits_; }

  private:
    RenderLimits limits_;
    uint64_t bytes_ = 0;
    uint64_t iterations_ = 0;
};

struct CallArgs {
    std::vector<Value> pos;
    std::vector<std::pair<std::string, Value>> kw;
    // Positional argument `index`, else keyword `name`, else nullptr.
    const Value* get(size_t index, const char* name) const;
};

// Renders a parsed template with the given global variables. Throws TemplateError whose
// message names the line and column of the failing expression.
std::string render(const Body& body, const std::vector<std::pair<std::string, Value>>& globals,
                   const RenderLimits& limits);

// ---- built-ins (jinja_builtins.cpp) -----------------------------------------------------------
[[noreturn]] void undefined_error(const Value& v);
Value get_attr(const Value& obj, const std::string& name);
Value get_item(const Value& obj, const Value& key);
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step,
            Budget& budget);
ValueList iterate(const Value& v, Budget& budget);  // what `for x in v` visits
Value apply_filter(const std::string& name, const Value& v, const CallArgs& args, Budget& budget);
bool apply_test(const std::string& name, const Value& v, const CallArgs& args);
// Calls a method of a str or dict (`s.strip()`, `d.items()`); false when there is none.
bool call_method(const Value& obj, const std::string& name, const CallArgs& args, Budget& budget,
                 Value& out);
Value call_function(const std::string& name, const CallArgs& args, Budget& budget);
bool contains(const Value& container, const Value& item);

}  // namespace bitnet::jinja
