// Tensor storage, shape arithmetic and TensorSet lookup.
#include "loco/core/tensor.hpp"

#include <malloc.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include <fmt/ranges.h>

#include "loco/core/error.hpp"

namespace loco {

namespace {
// Allocations of 4 MiB and more are mapped and unmapped by glibc, whatever their history. By
// default glibc raises its mmap threshold (up to 32 MiB) each time a mapped block is freed, after
// which tensors of 4-32 MiB come from the heap, which fragments and keeps the pages: merging three
// 1 GiB checkpoints (tensors of 4-128 MiB) peaked at 844 MB instead of 410 MB (3 x 128 MiB + 25)
// and ran 4.6x slower. Training steps measured the same either way.
[[maybe_unused]] const int kMmapThreshold = mallopt(M_MMAP_THRESHOLD, 4 << 20);
}  // namespace

std::int64_t shape_numel(const Shape& shape) {
  constexpr std::int64_t kMax = std::int64_t{1} << 62;
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) throw_error(ErrorKind::BadInput, "negative dimension in shape {}", shape_string(shape));
    if (d != 0 && n > kMax / d) throw_error(ErrorKind::BadInput, "shape {} has too many elements", shape_string(shape));
    n *= d;
  }
  return n;
}

std::string shape_string(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

void Tensor::FreeAligned::operator()(std::byte* p) const noexcept { std::free(p); }

Tensor::Tensor(Shape shape, DType dtype) : Tensor(std::move(shape), dtype, true) {}

Tensor Tensor::uninitialized(Shape shape, DType dtype) { return Tensor(std::move(shape), dtype, false); }

Tensor::Tensor(Shape shape, DType dtype, bool zero)
    : shape_(std::move(shape)), dtype_(dtype), numel_(shape_numel(shape_)) {
  // numel ≤ 2^62 but numel · element size could still wrap size_t; cap the bytes at 2^62 too.
  constexpr std::int64_t kMaxBytes = std::int64_t{1} << 62;
  if (numel_ > kMaxBytes / static_cast<std::int64_t>(dtype_size(dtype_)))
    throw_error(ErrorKind::BadInput, "tensor of shape {} and dtype {} needs more than 2^62 bytes", shape_string(shape_),
                dtype_name(dtype_));
  const std::size_t n = nbytes();
  // Large tensors (≥ 4 MiB) are placed on 2 MiB boundaries and backed by transparent huge pages
  // where the kernel offers them (THP "madvise" mode, Debian's default): the first touch of a
  // 100 MB tensor then costs 50 page faults instead of 25,000, which was most of the time of
  // decoding into a fresh tensor (bench/compress.sh). Small tensors keep 64-byte alignment.
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  const bool huge = n >= 2 * kHuge;
  const std::size_t align = huge ? kHuge : 64;
  const std::size_t rounded = n == 0 ? 64 : (n + align - 1) / align * align;
  auto* p = static_cast<std::byte*>(std::aligned_alloc(align, rounded));
  if (p == nullptr) throw std::bad_alloc();
  if (huge) ::madvise(p, rounded, MADV_HUGEPAGE);  // advice only: without THP, ordinary pages
  if (zero) std::memset(p, 0, rounded);
  data_.reset(p);
}

Tensor Tensor::from_floats(Shape shape, std::span<const float> values) {
  Tensor t = uninitialized(std::move(shape), DType::F32);
  if (static_cast<std::size_t>(t.numel()) != values.size())
    throw_error(ErrorKind::Internal, "from_floats: shape {} needs {} values, got {}", shape_string(t.shape()),
                t.numel(), values.size());
  std::memcpy(t.data_.get(), values.data(), values.size_bytes());
  return t;
}

void Tensor::check_dtype(DType want) const {
  if (want != dtype_)
    throw_error(ErrorKind::Internal, "tensor of dtype {} accessed as {}", dtype_name(dtype_), dtype_name(want));
}

Tensor Tensor::to(DType dtype) const {
  Tensor out = uninitialized(shape_, dtype);
  convert_elements(dtype_, data_.get(), dtype, out.data_.get(), static_cast<std::size_t>(numel_));
  return out;
}

void Tensor::reshape(Shape shape) {
  if (shape_numel(shape) != numel_)
    throw_error(ErrorKind::Internal, "cannot reshape {} to {}", shape_string(shape_), shape_string(shape));
  shape_ = std::move(shape);
}

Tensor& TensorSet::add(std::string name, Tensor tensor) {
  if (index_.contains(name)) throw_error(ErrorKind::BadInput, "duplicate tensor name '{}'", name);
  index_.emplace(name, entries_.size());
  entries_.push_back({std::move(name), std::move(tensor)});
  return entries_.back().tensor;
}

bool TensorSet::contains(std::string_view name) const { return index_.contains(std::string(name)); }

Tensor& TensorSet::at(std::string_view name) {
  auto it = index_.find(std::string(name));
  if (it == index_.end()) throw_error(ErrorKind::BadInput, "no tensor named '{}'", name);
  return entries_[it->second].tensor;
}

const Tensor& TensorSet::at(std::string_view name) const { return const_cast<TensorSet*>(this)->at(name); }

std::int64_t TensorSet::numel() const noexcept {
  std::int64_t n = 0;
  for (const auto& e : entries_) n += e.tensor.numel();
  return n;
}

}  // namespace loco
