#include "bitnet/tensor.h"

#include <cstring>

#include "bitnet/error.h"
#include "core/aligned_buffer.h"

namespace bitnet {

const char* dtype_name(DType dtype) noexcept {
    switch (dtype) {
        case DType::F32:
            return "f32";
        case DType::BF16:
            return "bf16";
        case DType::F16:
            return "f16";
        case DType::I8:
            return "i8";
        case DType::I32:
            return "i32";
        case DType::U8:
            return "u8";
        case DType::Ternary2:
            return "ternary2";
    }
    return "?";
}

size_t dtype_size(DType dtype) noexcept {
    switch (dtype) {
        case DType::F32:
        case DType::I32:
            return 4;
        case DType::BF16:
        case DType::F16:
            return 2;
        case DType::I8:
        case DType::U8:
            return 1;
        case DType::Ternary2:
            return 0;
    }
    return 0;
}

const char* device_name(Device device) noexcept {
    switch (device) {
        case Device::Auto:
            return "auto";
        case Device::CPU:
            return "cpu";
        case Device::CUDA:
            return "cuda";
    }
    return "?";
}

namespace {
int64_t checked_numel(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) {
        if (d < 0) throw Error(ErrorCode::InvalidArgument, "tensor dimension is negative");
        if (d != 0 && n > INT64_MAX / d)
            throw Error(ErrorCode::InvalidArgument, "tensor too large");
        n *= d;
    }
    return n;
}
}  // namespace

Tensor::Tensor(DType dtype, std::vector<int64_t> shape, NoFill)
    : dtype_(dtype), shape_(std::move(shape)) {
    if (dtype_size(dtype) == 0) {
        throw Error(
            ErrorCode::InvalidArgument,
            std::string("cannot allocate a plain tensor of packed dtype ") + dtype_name(dtype));
    }
    const auto numel = static_cast<size_t>(checked_numel(shape_));
    if (numel > SIZE_MAX / dtype_size(dtype))
        throw Error(ErrorCode::InvalidArgument, "tensor too large: " + shape_string());
    void* p = aligned_malloc(numel * dtype_size(dtype));
    owner_ = std::shared_ptr<void>(p, AlignedDeleter{});
    data_ = p;
}

Tensor::Tensor(DType dtype, std::vector<int64_t> shape)
    : Tensor(dtype, std::move(shape), NoFill{}) {
    std::memset(data_, 0, nbytes());
}

Tensor Tensor::uninitialized(DType dtype, std::vector<int64_t> shape) {
    return Tensor(dtype, std::move(shape), NoFill{});
}

Tensor Tensor::view(DType dtype, std::vector<int64_t> shape, void* data) {
    Tensor t;
    t.dtype_ = dtype;
    checked_numel(shape);
    t.shape_ = std::move(shape);
    t.data_ = data;
    return t;
}

int64_t Tensor::dim(size_t i) const {
    if (i >= shape_.size()) {
        throw Error(ErrorCode::InvalidArgument, "dimension " + std::to_string(i) +
                                                    " out of range for a tensor of shape " +
                                                    shape_string());
    }
    return shape_[i];
}

int64_t Tensor::numel() const noexcept {
    int64_t n = 1;
    for (int64_t d : shape_) n *= d;
    return n;
}

size_t Tensor::nbytes() const noexcept {
    return static_cast<size_t>(numel()) * dtype_size(dtype_);
}

std::string Tensor::shape_string() const {
    std::string s = "[";
    for (size_t i = 0; i < shape_.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape_[i]);
    }
    return s + "]";
}

template <typename T>
static constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
    return DType::F32;
}
template <>
constexpr DType dtype_of<int32_t>() {
    return DType::I32;
}
template <>
constexpr DType dtype_of<int8_t>() {
    return DType::I8;
}
template <>
constexpr DType dtype_of<uint8_t>() {
    return DType::U8;
}
template <>
constexpr DType dtype_of<uint16_t>() {
    return DType::BF16;
}

template <typename T>
T* Tensor::data_as() {
    return const_cast<T*>(static_cast<const Tensor*>(this)->data_as<T>());
}

template <typename T>
const T* Tensor::data_as() const {
    const bool half_ok =
        std::is_same_v<T, uint16_t> && (dtype_ == DType::BF16 || dtype_ == DType::F16);
    if (!half_ok && dtype_ != dtype_of<T>()) {
        throw Error(ErrorCode::InvalidArgument, std::string("tensor has dtype ") +
                                                    dtype_name(dtype_) + ", not " +
                                                    dtype_name(dtype_of<T>()));
    }
    return static_cast<const T*>(data_);
}

template float* Tensor::data_as<float>();
template const float* Tensor::data_as<float>() const;
template int32_t* Tensor::data_as<int32_t>();
template const int32_t* Tensor::data_as<int32_t>() const;
template int8_t* Tensor::data_as<int8_t>();
template const int8_t* Tensor::data_as<int8_t>() const;
template uint8_t* Tensor::data_as<uint8_t>();
template const uint8_t* Tensor::data_as<uint8_t>() const;
template uint16_t* Tensor::data_as<uint16_t>();
template const uint16_t* Tensor::data_as<uint16_t>() const;

}  // namespace bitnet
