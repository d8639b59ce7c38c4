#include "bitnet/error.h"

namespace bitnet {

const char* to_string(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::InvalidArgument:
            return "invalid argument";
        case ErrorCode::NotFound:
            return "not found";
        case ErrorCode::IoError:
            return "I/O error";
        case ErrorCode::ParseError:
            return "parse error";
        case ErrorCode::UnsupportedFormat:
            return "unsupported";
        case ErrorCode::ShapeMismatch:
            return "shape mismatch";
        case ErrorCode::InvalidConfig:
            return "invalid config";
        case ErrorCode::OutOfMemory:
            return "out of memory";
        case ErrorCode::CapacityExceeded:
            return "capacity exceeded";
        case ErrorCode::Internal:
            return "internal error";
    }
    return "error";
}

Error::Error(ErrorCode code, const std::string& message)
    : std::runtime_error(message), code_(code) {}

}  // namespace bitnet
