#include "model/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bitnet/error.h"
#include "model/config.h"

namespace bitnet {

namespace fs = std::filesystem;

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw Error(fs::exists(path) ? ErrorCode::IoError : ErrorCode::NotFound,
                    path + ": cannot open");
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The shard files an index names, in first-seen order.
std::vector<std::string> shards_from_index(const std::string& index_path) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(read_text_file(index_path));
    } catch (const nlohmann::json::exception& e) {
        throw Error(ErrorCode::ParseError, index_path + ": not valid JSON: " + e.what());
    }
    const auto map = j.find("weight_map");
    if (map == j.end() || !map->is_object()) {
        throw Error(ErrorCode::ParseError, index_path + ": missing object field 'weight_map'");
    }
    std::vector<std::string> files;
    for (auto it = map->begin(); it != map->end(); ++it) {
        if (!it.value().is_string()) {
            throw Error(ErrorCode::ParseError,
                        index_path + ": weight_map entry '" + it.key() + "' is not a string");
        }
        const std::string f = it.value().get<std::string>();
        if (f.find('/') != std::string::npos || f.find("..") != std::string::npos) {
            throw Error(ErrorCode::ParseError,
                        index_path + ": weight_map names '" + f + "', outside the model directory");
        }
        if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(f);
    }
    if (files.empty()) throw Error(ErrorCode::ParseError, index_path + ": weight_map is empty");
    return files;
}

}  // namespace

HfCheckpoint::HfCheckpoint(const std::string& path) {
    std::vector<std::string> shard_paths;
    if (fs::is_directory(path)) {
        dir_ = path;
        const fs::path single = fs::path(path) / "model.safetensors";
        const fs::path index = fs::path(path) / "model.safetensors.index.json";
        if (fs::exists(single)) {
            shard_paths.push_back(single.string());
        } else if (fs::exists(index)) {
            for (const std::string& f : shards_from_index(index.string()))
                shard_paths.push_back((fs::path(path) / f).string());
        } else {
            throw Error(
                ErrorCode::NotFound,
                path + ": no model.safetensors or model.safetensors.index.json in this directory");
        }
    } else if (ends_with(path, ".safetensors.index.json")) {
        dir_ = fs::path(path).parent_path().string();
        for (const std::string& f : shards_from_index(path))
            shard_paths.push_back((fs::path(dir_) / f).string());
    } else if (ends_with(path, ".safetensors")) {
        dir_ = fs::path(path).parent_path().string();
        shard_paths.push_back(path);
    } else if (!fs::exists(path)) {
        throw Error(ErrorCode::NotFound, path + ": no such file or directory");
    } else {
        throw Error(ErrorCode::UnsupportedFormat,
                    path + ": not a model directory, .safetensors or .safetensors.index.json file");
    }
    if (dir_.empty()) dir_ = ".";

    config_path_ = (fs::path(dir_) / "config.json").string();
    config_ = parse_model_config(read_text_file(config_path_), config_path_);

    for (const std::string& p : shard_paths) {
        auto shard = std::make_shared<SafetensorsFile>(p);
        for (const StTensor& t : shard->header().tensors) {
            if (!tensor_shard_.emplace(t.name, shards_.size()).second) {
                throw Error(ErrorCode::ParseError, p + ": tensor '" + t.name +
                                                       "' also appears in " +
                                                       shards_[tensor_shard_[t.name]]->path());
            }
        }
        shards_.push_back(std::move(shard));
    }
}

const StTensor* HfCheckpoint::find(const std::string& name) const {
    const auto it = tensor_shard_.find(name);
    return it == tensor_shard_.end() ? nullptr : shards_[it->second]->find(name);
}

const StTensor& HfCheckpoint::get(const std::string& name) const {
    if (const StTensor* t = find(name)) return *t;
    std::string files;
    for (const auto& s : shards_) files += (files.empty() ? "" : ", ") + s->path();
    throw Error(ErrorCode::NotFound, "missing tensor '" + name + "' in " + files);
}

const std::string& HfCheckpoint::file_of(const std::string& name) const {
    const auto it = tensor_shard_.find(name);
    if (it == tensor_shard_.end()) get(name);  // throws
    return shards_[it->second]->path();
}

size_t HfCheckpoint::file_bytes() const {
    size_t n = 0;
    for (const auto& s : shards_) n += s->file_size();
    return n;
}

}  // namespace bitnet
