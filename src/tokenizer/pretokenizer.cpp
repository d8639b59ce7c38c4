#include "tokenizer/pretokenizer.h"

#include <utility>

namespace bitnet::tok {

const char* const kGpt2SplitPattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

const char* const kLlama3SplitPattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

namespace {

using Range = std::pair<size_t, size_t>;

// Cuts `piece` at the given matches according to `behavior` (Hugging Face's
// SplitDelimiterBehavior), appending non-empty pieces to `out`.
void split_piece(std::string_view piece, const std::vector<Range>& matches, SplitBehavior behavior,
                 bool invert, std::vector<std::string_view>& out) {
    // Alternate gap / match parts, each flagged with whether it is a delimiter.
    std::vector<std::pair<Range, bool>> parts;
    size_t pos = 0;
    for (const Range& m : matches) {
        if (m.first > pos) parts.push_back({{pos, m.first}, invert});
        parts.push_back({m, !invert});
        pos = m.second;
    }
    if (pos < piece.size()) parts.push_back({{pos, piece.size()}, invert});

    const auto emit = [&](size_t b, size_t e) {
        if (e > b) out.push_back(piece.substr(b, e - b));
    };
    switch (behavior) {
        case SplitBehavior::Removed:
            for (const auto& [r, delim] : parts) {
                if (!delim) emit(r.first, r.second);
            }
            break;
        case SplitBehavior::Isolated:
            for (const auto& [r, delim] : parts) emit(r.first, r.second);
            break;
        case SplitBehavior::MergedWithPrevious: {
            // A delimiter joins the piece before it.
            size_t start = 0;
            for (const auto& [r, delim] : parts) {
                if (delim) {
                    emit(start, r.second);
                    start = r.second;
                }
            }
            emit(start, piece.size());
            break;
        }
        case SplitBehavior::MergedWithNext: {
            // A delimiter starts a new piece that runs to the next delimiter.
            size_t start = 0;
            for (const auto& [r, delim] : parts) {
                if (delim) {
                    emit(start, r.first);
                    start = r.first;
                }
            }
            emit(start, piece.size());
            break;
        }
        case SplitBehavior::Contiguous: {
            // Adjacent delimiters form one piece.
            size_t i = 0;
            while (i < parts.size()) {
                size_t j = i + 1;
                if (parts[i].second) {
                    while (j < parts.size() && parts[j].second) ++j;
                }
                emit(parts[i].first.first, parts[j - 1].first.second);
                i = j;
            }
            break;
        }
    }
}

std::string replace_all(std::string_view s, char from, std::string_view to) {
    std::string out;
    out.reserve(s.size());
    for (const char c : s) {
        if (c == from) {
            out += to;
        } else {
            out += c;
        }
    }
    return out;
}

}  // namespace

bool PreTokenizer::byte_level() const {
    for (const PreTokenizerStep& s : steps) {
        if (s.kind == PreTokenizerStep::Kind::ByteLevel) return true;
    }
    return false;
}

void PreTokenizer::split(std::string_view segment, bool first,
                         std::vector<std::string_view>& pieces,
                         std::deque<std::string>& storage) const {
    std::vector<std::string_view> current{segment};
    std::vector<std::string_view> next;
    std::vector<Range> matches;
    for (const PreTokenizerStep& step : steps) {
        next.clear();
        for (size_t i = 0; i < current.size(); ++i) {
            std::string_view piece = current[i];
            if (step.kind == PreTokenizerStep::Kind::Metaspace) {
                std::string s = replace_all(piece, ' ', step.replacement);
                const bool prepend =
                    step.prepend == PreTokenizerStep::Prepend::Always ||
                    (step.prepend == PreTokenizerStep::Prepend::First && first && i == 0);
                if (prepend && !s.starts_with(step.replacement)) s.insert(0, step.replacement);
                piece = storage.emplace_back(std::move(s));
                if (!step.split) {
                    next.push_back(piece);
                    continue;
                }
                // Every replacement character starts a new piece (MergedWithNext).
                size_t start = 0;
                for (size_t hit = piece.find(step.replacement, 1); hit != std::string_view::npos;
                     hit = piece.find(step.replacement, hit + 1)) {
                    if (hit > start) next.push_back(piece.substr(start, hit - start));
                    start = hit;
                }
                if (start < piece.size()) next.push_back(piece.substr(start));
                continue;
            }
            if (step.kind == PreTokenizerStep::Kind::ByteLevel && step.add_prefix_space &&
                !piece.starts_with(' ')) {
                piece = storage.emplace_back(" " + std::string(piece));
            }
            if (!step.regex) {
                if (!piece.empty()) next.push_back(piece);
                continue;
            }
            matches.clear();
            step.regex->find_all(piece, matches);
            split_piece(piece, matches, step.behavior, step.invert, next);
        }
        current.swap(next);
    }
    pieces.insert(pieces.end(), current.begin(), current.end());
}

}  // namespace bitnet::tok
