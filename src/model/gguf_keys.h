// Metadata keys this engine writes into its own GGUF files and reads back.
#pragma once

#include <cstdint>

namespace bitnet {

// Present (u32 version) in files whose ternary tensors are in the engine's kernel layout
// (BITNET_T2 / BITNET_T5): such files are loaded with no copy and no repacking.
inline constexpr const char* kEngineFormatKey = "bitnet_engine.format_version";
inline constexpr uint32_t kEngineFormatVersion = 1;
// "relu2" or "silu": the FFN activation, which the architecture name alone does not fix for
// upstream llama.cpp's `bitnet` (SiLU) versus bitnet.cpp's `bitnet-25` (relu2).
inline constexpr const char* kEngineActivationKey = "bitnet_engine.activation";

}  // namespace bitnet
