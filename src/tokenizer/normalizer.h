// The tokenizer.json normalizers this engine implements: Prepend and Replace (String or Regex
// pattern), alone or in a Sequence. Llama-2's is Sequence[Prepend("▁"), Replace(" ", "▁")].
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace bitnet::tok {

struct NormalizerStep {
    enum class Kind { Prepend, Replace };
    Kind kind = Kind::Prepend;
    std::string text;                    // Prepend: what to prepend; Replace: the literal pattern
    std::string content;                 // Replace: the replacement
    std::shared_ptr<const Regex> regex;  // Replace with a Regex pattern (text unused)
};

class Normalizer {
  public:
    std::vector<NormalizerStep> steps;
    bool empty() const { return steps.empty(); }
    std::string apply(std::string_view text) const;
};

}  // namespace bitnet::tok
