// What a loaded Model holds. Private to the library; tests and tools reach it via Model::impl().
#pragma once

#include <memory>

#include "bitnet/model.h"
#include "model/weights.h"

namespace bitnet {

struct Model::Impl {
    ModelConfig config;
    ModelInfo info;
    ModelWeights weights;
    RopeFrequencies rope;
    std::shared_ptr<const void> file_owner;  // keeps mapped weight files alive
};

// Wraps weights built in memory (not loaded from a file) as a Model.
std::shared_ptr<const Model> make_model(std::unique_ptr<Model::Impl> impl);

// Loads a Hugging Face checkpoint (directory, .safetensors or index) into kernel layout.
std::unique_ptr<Model::Impl> load_hf_checkpoint(const std::string& path,
                                                WeightMemory memory = WeightMemory::Auto);

}  // namespace bitnet
