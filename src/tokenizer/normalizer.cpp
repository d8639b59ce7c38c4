#include "tokenizer/normalizer.h"

#include <utility>

#include "tokenizer/unicode.h"

namespace bitnet::tok {

namespace {

std::string replace_regex(const std::string& s, const Regex& re, std::string_view content) {
    std::vector<std::pair<size_t, size_t>> matches;
    re.find_all(s, matches);
    std::string out;
    out.reserve(s.size());
    size_t pos = 0;
    for (const auto& [b, e] : matches) {
        out.append(s, pos, b - pos);
        out += content;
        pos = e;
    }
    out.append(s, pos, std::string::npos);
    return out;
}

}  // namespace

std::string Normalizer::apply(std::string_view text) const {
    std::string s(text);
    for (const NormalizerStep& step : steps) {
        switch (step.kind) {
            case NormalizerStep::Kind::Prepend:
                // Hugging Face prepends only to non-empty text.
                if (!s.empty()) s.insert(0, step.text);
                break;
            case NormalizerStep::Kind::Replace:
                s = step.regex ? replace_regex(s, *step.regex, step.content)
                               : replace_literal(s, step.text, step.content);
                break;
        }
    }
    return s;
}

}  // namespace bitnet::tok
