// A read-only memory mapping of a whole file. Weights are used straight from the mapping where
// their layout allows, so loading costs page-ins, and the page cache is shared between processes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace bitnet {

class MappedFile {
  public:
    // Throws bitnet::Error (NotFound / IoError) naming the path.
    explicit MappedFile(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const noexcept { return data_; }
    size_t size() const noexcept { return size_; }
    const std::string& path() const noexcept { return path_; }

  private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace bitnet
