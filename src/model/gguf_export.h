// Writing a loaded model as GGUF: the ternary projections in a ggml type (TQ1_0, TQ2_0, I2_S)
// that bitnet.cpp / llama.cpp read, or in this engine's own kernel layout (BITNET_T2 /
// BITNET_T5, 64-byte aligned, loaded with no copy at all); the embedding and output matrices in
// the precision the caller picks.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "bitnet/model.h"
#include "model/format/gguf.h"

namespace bitnet {

struct GgufVocab;

struct GgufExportOptions {
    uint32_t ternary_type = gguf::BITNET_T2;  // TQ1_0, TQ2_0, I2_S, BITNET_T2, BITNET_T5
    // F32, F16, BF16, Q8_0, BITNET_I8R; none: keep the model's. (Not 0 for keep: 0 is F32.)
    std::optional<uint32_t> embedding_type;
    std::optional<uint32_t> output_type;  // untied models only; none: like the embedding
    std::string name;                     // general.name; empty: the source's
    // Called with (bytes written, bytes in all) while the file is written.
    std::function<void(uint64_t, uint64_t)> progress;
};

// Writes `model` with `vocab` (nullptr: no tokenizer metadata) to `path`. Throws bitnet::Error
// on an unsupported type choice or an I/O failure; never leaves a partial file at `path`.
void export_gguf(const Model& model, const GgufVocab* vocab, const std::string& path,
                 const GgufExportOptions& options);

// Parses a type name as `bitnet convert` takes it: "tq1_0", "tq2_0", "i2_s", "t2", "t5" for
// the projections; "f32", "f16", "bf16", "q8_0", "i8" for the embedding / output.
uint32_t parse_ternary_type(const std::string& name);
uint32_t parse_dense_type(const std::string& name);

}  // namespace bitnet
