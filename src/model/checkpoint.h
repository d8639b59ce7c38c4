// A Hugging Face checkpoint on disk: config.json plus one or more memory-mapped safetensors
// shards, with every tensor findable by name.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bitnet/model.h"
#include "model/format/safetensors.h"

namespace bitnet {

class HfCheckpoint {
  public:
    // `path`: a model directory, a .safetensors file or a .safetensors.index.json (config.json is
    // looked for beside it). Throws bitnet::Error naming the missing or malformed file.
    explicit HfCheckpoint(const std::string& path);

    const std::string& directory() const { return dir_; }
    const ModelConfig& config() const { return config_; }
    const std::string& config_path() const { return config_path_; }

    const StTensor* find(const std::string& name) const;
    // Throws NotFound naming the tensor and the files searched.
    const StTensor& get(const std::string& name) const;
    // The file a tensor came from.
    const std::string& file_of(const std::string& name) const;
    size_t file_bytes() const;
    const std::vector<std::shared_ptr<SafetensorsFile>>& shards() const { return shards_; }

  private:
    std::string dir_;
    std::string config_path_;
    ModelConfig config_;
    std::vector<std::shared_ptr<SafetensorsFile>> shards_;
    std::map<std::string, size_t> tensor_shard_;
};

std::string read_text_file(const std::string& path);

}  // namespace bitnet
