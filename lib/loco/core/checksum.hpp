// Content checksums: XXH64 (Collet's xxHash, 64-bit) of tensors and of whole tensor sets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loco/core/dtype.hpp"
#include "loco/core/tensor.hpp"

namespace loco {

// Streaming XXH64; update() in any chunking gives the same digest as one call.
class Xxh64 {
 public:
  explicit Xxh64(std::uint64_t seed = 0) noexcept;
  void update(std::span<const std::byte> data) noexcept;
  void update(std::string_view s) noexcept { update(std::as_bytes(std::span(s.data(), s.size()))); }
  std::uint64_t digest() const noexcept;

 private:
  std::uint64_t v_[4];
  std::uint64_t seed_;
  std::uint64_t total_ = 0;
  unsigned char buf_[32];
  std::size_t buffered_ = 0;
};

std::uint64_t xxh64(std::span<const std::byte> data, std::uint64_t seed = 0) noexcept;

// A tensor's content checksum: XXH64 over its dtype name, shape and little-endian bytes, so equal
// content gives equal checksums whatever the file format. Start with tensor_hasher(), feed the
// bytes (in any chunks), finish with digest().
Xxh64 tensor_hasher(DType dtype, const Shape& shape);
std::uint64_t tensor_checksum(const Tensor& t);

// Combines per-tensor checksums into a set checksum independent of storage order: feed
// (name, checksum) pairs in any order; the result sorts by name.
class SetChecksum {
 public:
  void add(std::string_view name, std::uint64_t checksum);
  std::uint64_t digest() const;

 private:
  std::vector<std::pair<std::string, std::uint64_t>> items_;
};

// "xxh64:0123456789abcdef"
std::string format_checksum(std::uint64_t c);

}  // namespace loco
