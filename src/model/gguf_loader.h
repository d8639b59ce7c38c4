// GGUF files (bitnet.cpp's, llama.cpp's and this engine's own) -> a loaded model.
#pragma once

#include <memory>
#include <string>

#include "bitnet/model.h"

namespace bitnet {

std::unique_ptr<Model::Impl> load_gguf_model(const std::string& path,
                                             WeightMemory memory = WeightMemory::Auto);

}  // namespace bitnet
