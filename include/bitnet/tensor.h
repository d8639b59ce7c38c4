// A plain tensor: dtype, shape, device and a buffer it may or may not own. This is the
// currency of the public tensor API (token ids in, logits out) and of the file writers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace bitnet {

enum class DType : uint8_t {
    F32,
    BF16,
    F16,
    I8,
    I32,
    U8,
    Ternary2,  // packed ternary weights, 2 bits per weight in the CPU kernel layout
};

const char* dtype_name(DType dtype) noexcept;
// Bytes per element; 0 for packed types, whose size depends on the layout.
size_t dtype_size(DType dtype) noexcept;

enum class Device { Auto, CPU, CUDA };
const char* device_name(Device device) noexcept;

class Tensor {
  public:
    Tensor() = default;
    // Allocates a zero-filled, 64-byte aligned host buffer.
    Tensor(DType dtype, std::vector<int64_t> shape);
    // The same buffer left unfilled, for an output the caller writes in full.
    static Tensor uninitialized(DType dtype, std::vector<int64_t> shape);
    // Wraps memory the caller owns; the caller keeps it alive while the tensor is used.
    static Tensor view(DType dtype, std::vector<int64_t> shape, void* data);

    DType dtype() const noexcept { return dtype_; }
    Device device() const noexcept { return device_; }
    const std::vector<int64_t>& shape() const noexcept { return shape_; }
    int64_t dim(size_t i) const;
    size_t rank() const noexcept { return shape_.size(); }
    int64_t numel() const noexcept;
    size_t nbytes() const noexcept;
    bool empty() const noexcept { return data_ == nullptr; }
    std::string shape_string() const;

    void* data() noexcept { return data_; }
    const void* data() const noexcept { return data_; }
    // Typed access; throws bitnet::Error when T does not match the dtype.
    template <typename T>
    T* data_as();
    template <typename T>
    const T* data_as() const;

  private:
    struct NoFill {};
    Tensor(DType dtype, std::vector<int64_t> shape, NoFill);

    DType dtype_ = DType::F32;
    Device device_ = Device::CPU;
    std::vector<int64_t> shape_;
    std::shared_ptr<void> owner_;
    void* data_ = nullptr;
};

}  // namespace bitnet
