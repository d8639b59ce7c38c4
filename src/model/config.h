// config.json -> ModelConfig, with every value checked so that later code can trust it.
#pragma once

#include <string>

#include "bitnet/model.h"

namespace bitnet {

// `origin` names the file in error messages.
ModelConfig parse_model_config(const std::string& json_text, const std::string& origin);

// Throws InvalidConfig naming the first field that cannot describe a runnable model.
void validate_model_config(const ModelConfig& config, const std::string& origin);

}  // namespace bitnet
