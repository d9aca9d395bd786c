// Tensor (shape, dtype, 64-byte-aligned contiguous bytes) and TensorSet (named, ordered tensors).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "loco/core/dtype.hpp"

namespace loco {

using Shape = std::vector<std::int64_t>;

// Number of elements of a shape; throws Error(BadInput) on a negative dimension or overflow
// past 2^62 elements.
std::int64_t shape_numel(const Shape& shape);
// "[3, 4]"
std::string shape_string(const Shape& shape);

// A dense, row-major tensor that owns its bytes. Move-only: copies are explicit (clone()).
// Compute code works on float32 spans; other dtypes are storage, converted with to().
class Tensor {
 public:
  Tensor() = default;
  // Zero-filled tensor of the given shape and dtype; throws Error(BadInput) on a bad shape
  // (see shape_numel) or more than 2^62 bytes.
  explicit Tensor(Shape shape, DType dtype = DType::F32);
  // A tensor whose bytes are left as allocated, for callers that overwrite all of them.
  static Tensor uninitialized(Shape shape, DType dtype = DType::F32);
  // A moved-from tensor is empty: shape [0], no bytes.
  Tensor(Tensor&& o) noexcept
      : shape_(std::exchange(o.shape_, Shape{0})),
        dtype_(o.dtype_),
        numel_(std::exchange(o.numel_, 0)),
        data_(std::move(o.data_)) {}
  Tensor& operator=(Tensor&& o) noexcept {
    shape_ = std::exchange(o.shape_, Shape{0});
    dtype_ = o.dtype_;
    numel_ = std::exchange(o.numel_, 0);
    data_ = std::move(o.data_);
    return *this;
  }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  // A float32 tensor holding a copy of values; shape's numel must equal values.size().
  static Tensor from_floats(Shape shape, std::span<const float> values);

  const Shape& shape() const noexcept { return shape_; }
  DType dtype() const noexcept { return dtype_; }
  std::int64_t numel() const noexcept { return numel_; }
  std::size_t nbytes() const noexcept { return static_cast<std::size_t>(numel_) * dtype_size(dtype_); }
  int rank() const noexcept { return static_cast<int>(shape_.size()); }

  std::span<std::byte> bytes() noexcept { return {data_.get(), nbytes()}; }
  std::span<const std::byte> bytes() const noexcept { return {data_.get(), nbytes()}; }

  // Typed views; throw Error(Internal) when T does not match dtype().
  template <typename T>
  std::span<T> as();
  template <typename T>
  std::span<const T> as() const;
  std::span<float> f32() { return as<float>(); }
  std::span<const float> f32() const { return as<float>(); }

  // A copy converted to another dtype (a plain copy when the dtype is the same).
  Tensor to(DType dtype) const;
  Tensor clone() const { return to(dtype_); }
  // Same bytes, new shape with the same element count.
  void reshape(Shape shape);

 private:
  struct FreeAligned {
    void operator()(std::byte* p) const noexcept;
  };
  void check_dtype(DType want) const;
  Tensor(Shape shape, DType dtype, bool zero);

  Shape shape_;
  DType dtype_ = DType::F32;
  std::int64_t numel_ = 0;
  std::unique_ptr<std::byte[], FreeAligned> data_;
};

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::F32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::F64;
}
template <>
constexpr DType dtype_of<std::int8_t>() {
  return DType::I8;
}
template <>
constexpr DType dtype_of<std::int16_t>() {
  return DType::I16;
}
template <>
constexpr DType dtype_of<std::int32_t>() {
  return DType::I32;
}
template <>
constexpr DType dtype_of<std::int64_t>() {
  return DType::I64;
}
template <>
constexpr DType dtype_of<std::uint8_t>() {
  return DType::U8;
}
template <>
constexpr DType dtype_of<std::uint16_t>() {
  return DType::U16;
}
template <>
constexpr DType dtype_of<std::uint32_t>() {
  return DType::U32;
}
template <>
constexpr DType dtype_of<std::uint64_t>() {
  return DType::U64;
}

template <typename T>
std::span<T> Tensor::as() {
  check_dtype(dtype_of<std::remove_const_t<T>>());
  return {reinterpret_cast<T*>(data_.get()), static_cast<std::size_t>(numel_)};
}
template <typename T>
std::span<const T> Tensor::as() const {
  check_dtype(dtype_of<std::remove_const_t<T>>());
  return {reinterpret_cast<const T*>(data_.get()), static_cast<std::size_t>(numel_)};
}

// Named tensors in a fixed order (the model's parameter order). Names are unique.
class TensorSet {
 public:
  struct Entry {
    std::string name;
    Tensor tensor;
  };

  // Appends; throws Error(BadInput) on a duplicate name.
  Tensor& add(std::string name, Tensor tensor);
  bool contains(std::string_view name) const;
  // Throw Error(BadInput) naming the tensor when it is absent.
  Tensor& at(std::string_view name);
  const Tensor& at(std::string_view name) const;

  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  std::vector<Entry>::iterator begin() noexcept { return entries_.begin(); }
  std::vector<Entry>::iterator end() noexcept { return entries_.end(); }
  std::vector<Entry>::const_iterator begin() const noexcept { return entries_.begin(); }
  std::vector<Entry>::const_iterator end() const noexcept { return entries_.end(); }
  Entry& operator[](std::size_t i) { return entries_[i]; }
  const Entry& operator[](std::size_t i) const { return entries_[i]; }
  // Total float32-equivalent element count.
  std::int64_t numel() const noexcept;

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
};

}  // namespace loco
