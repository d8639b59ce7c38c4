// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON
// header (name -> dtype, shape, data_offsets) and the raw data. The reader validates everything
// a corrupt or hostile file could lie about before any byte of data is used.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bitnet/tensor.h"
#include "core/mapped_file.h"

namespace bitnet {

enum class StDType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };
const char* st_dtype_name(StDType dtype);
size_t st_dtype_size(StDType dtype);

struct StTensor {
    std::string name;
    StDType dtype = StDType::F32;
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;
    size_t nbytes = 0;
    int64_t numel() const;
};

struct StHeader {
    std::map<std::string, std::string> metadata;
    std::vector<StTensor> tensors;  // in file order of data offsets
};

// Parses a complete safetensors image held in memory. `origin` names the file in errors.
StHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& origin);

// A memory-mapped safetensors file.
class SafetensorsFile {
  public:
    explicit SafetensorsFile(const std::string& path);
    const std::string& path() const { return file_->path(); }
    size_t file_size() const { return file_->size(); }
    const StHeader& header() const { return header_; }
    const StTensor* find(const std::string& name) const;

  private:
    std::unique_ptr<MappedFile> file_;
    StHeader header_;
    std::map<std::string, size_t> index_;
};

// A tensor to write: name, dtype and shape; bytes are copied from `data`.
struct StWriteTensor {
    std::string name;
    StDType dtype;
    std::vector<int64_t> shape;
    const void* data;
};

void write_safetensors(const std::string& path, const std::vector<StWriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace bitnet
