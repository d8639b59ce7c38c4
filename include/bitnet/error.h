// Typed errors: every failure the library reports is a bitnet::Error carrying a code and a
// message that names the file, tensor or field at fault. The library never aborts.
#pragma once

#include <stdexcept>
#include <string>

namespace bitnet {

enum class ErrorCode {
    InvalidArgument,    // a caller passed something unusable (bad token id, empty batch, ...)
    NotFound,           // a file or tensor that must exist does not
    IoError,            // the OS refused to open, map or read a file
    ParseError,         // a file's bytes do not follow its format
    UnsupportedFormat,  // well-formed, but a type/architecture/option we do not implement
    ShapeMismatch,      // a tensor's shape or dtype disagrees with the config
    InvalidConfig,      // config.json values that cannot describe a model
    OutOfMemory,        // a buffer, KV cache or pool could not be allocated
    CapacityExceeded,   // a sequence grew past its KV cache
    Internal,           // a bug in the engine
};

const char* to_string(ErrorCode code) noexcept;

class Error : public std::runtime_error {
  public:
    Error(ErrorCode code, const std::string& message);
    ErrorCode code() const noexcept { return code_; }

  private:
    ErrorCode code_;
};

}  // namespace bitnet
