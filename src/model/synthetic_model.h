// Random-weight models of real shapes, built in memory for benchmarks and tests: no file, no
// download. Speed does not depend on the weight values, so a synthetic 2B-4T-shaped model runs
// exactly the work the real one does, in any weight format the engine supports.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bitnet/model.h"

namespace bitnet {

struct SyntheticSpec {
    std::string shape = "1m";    // one of synthetic_shapes()
    std::string weights = "t2";  // ternary layout: "t2" (2-bit), "t5" (1.6-bit, 5 trits a byte)
    std::string head = "bf16";   // embedding / tied lm_head: "f32", "bf16", "f16", "q8_0", "i8"
    uint64_t seed = 1;
    int threads = 0;  // threads that generate the weights; 0: every available core
};

// "2b": microsoft/bitnet-b1.58-2B-4T (hidden 2560, ffn 6912, 30 layers, 20 heads, 5 kv heads,
// vocab 128256, relu2, sub-norms, tied); "1m": hidden 128, ffn 512, 4 layers, 4 heads, vocab 512
// (about 1 M ternary weights).
std::vector<std::string> synthetic_shapes();
// The config of a named shape; throws bitnet::Error (InvalidArgument) naming the known shapes.
ModelConfig synthetic_config(const std::string& shape);

// Builds the model: ternary weights uniform over {-1, 0, +1} (a third zeros, as trained BitNet
// weights roughly are), alpha chosen so each BitLinear keeps its input's scale, norm weights
// near 1 and small random embeddings. Deterministic for a given spec, whatever the thread count.
// Throws bitnet::Error (InvalidArgument / UnsupportedFormat) for an unknown shape or format.
std::shared_ptr<const Model> make_synthetic_model(const SyntheticSpec& spec);

}  // namespace bitnet
