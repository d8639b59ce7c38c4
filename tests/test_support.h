// Helpers shared by the tests: where the reference data lives, and how to compare logits.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "bitnet/engine.h"
#include "bitnet/error.h"
#include "kernels/cpu/kernels.h"
#include "runtime/kernel_level.h"

namespace bitnet::test {

// The small reference models ship in tests/data, so the tests run from a bare clone.
inline std::string model_dir(const std::string& name) {
    return std::string(BITNET_TEST_DATA_DIR) + "/" + name;
}

// Models shipped in the repository's models/ folder (the trained default model); their
// transformers reference lives in tests/data/<name>-reference.
inline std::string shipped_model_dir(const std::string& name) {
    return std::string(BITNET_TEST_DATA_DIR) + "/../../models/" + name;
}

// ../shared, present for developers and CI but not for a user who cloned only the repository.
inline std::string shared_dir() {
    return BITNET_SHARED_DIR;
}
inline bool shared_available() {
    return std::filesystem::exists(shared_dir() + "/reference");
}

// The engine format `bitnet info` shows for a 2-bit matrix that stays in cache: where the
// AVX-512 VNNI GEMV runs, it reads a copy in row groups (model/weights.h).
inline std::string with_row_groups(const std::string& format) {
    return cpu::isa_supported(cpu::Isa::AVX512VNNI) ? format + ", + row groups" : format;
}

// Whether this is the sanitizer build (make test-asan), where the model and sampler tests run
// 10-30 times slower. Loops whose length buys only statistical margin or more combinations of
// the same code run shorter there; the Release run (make test) runs them in full.
#ifdef BITNET_TEST_UNDER_SANITIZERS
inline constexpr bool kUnderSanitizers = true;
#else
inline constexpr bool kUnderSanitizers = false;
#endif

inline double rel_l2(const float* a, const float* b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(a[i]) - b[i];
        num += d * d;
        den += static_cast<double>(b[i]) * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

inline int argmax(const float* x, int n) {
    return static_cast<int>(std::max_element(x, x + n) - x);
}

// Fraction of rows whose argmax agrees.
inline double top1_agreement(const float* a, const float* b, int rows, int cols) {
    int same = 0;
    for (int r = 0; r < rows; ++r)
        same += argmax(a + static_cast<size_t>(r) * cols, cols) ==
                argmax(b + static_cast<size_t>(r) * cols, cols);
    return static_cast<double>(same) / rows;
}

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Passes when f throws a bitnet::Error with `code` whose message contains every needle.
template <typename F>
inline testing::AssertionResult throws_error(F&& f, ErrorCode code,
                                             std::initializer_list<std::string> needles) {
    try {
        f();
    } catch (const Error& e) {
        const std::string msg = e.what();
        if (e.code() != code) {
            return testing::AssertionFailure() << "code '" << to_string(e.code()) << "', expected '"
                                               << to_string(code) << "': " << msg;
        }
        for (const std::string& n : needles) {
            if (msg.find(n) == std::string::npos) {
                return testing::AssertionFailure() << "message lacks '" << n << "': " << msg;
            }
        }
        return testing::AssertionSuccess();
    } catch (const std::exception& e) {
        return testing::AssertionFailure() << "not a bitnet::Error: " << e.what();
    }
    return testing::AssertionFailure() << "nothing thrown";
}

inline std::string isa_test_name(const testing::TestParamInfo<cpu::Isa>& info) {
    return cpu::isa_name(info.param);
}

}  // namespace bitnet::test
