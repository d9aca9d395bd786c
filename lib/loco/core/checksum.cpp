// XXH64 (xxHash specification, 64-bit variant) and the tensor/set checksums built on it.
#include "loco/core/checksum.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include <fmt/format.h>

namespace loco {
namespace {

constexpr std::uint64_t P1 = 0x9E3779B185EBCA87ull, P2 = 0xC2B2AE3D27D4EB4Full, P3 = 0x165667B19E3779F9ull,
                        P4 = 0x85EBCA77C2B2AE63ull, P5 = 0x27D4EB2F165667C5ull;

inline std::uint64_t read64(const unsigned char* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}
inline std::uint32_t read32(const unsigned char* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  return v;
}
inline std::uint64_t round(std::uint64_t acc, std::uint64_t input) noexcept {
  acc += input * P2;
  acc = std::rotl(acc, 31);
  return acc * P1;
}
inline std::uint64_t merge_round(std::uint64_t acc, std::uint64_t val) noexcept {
  acc ^= round(0, val);
  return acc * P1 + P4;
}

}  // namespace

Xxh64::Xxh64(std::uint64_t seed) noexcept : v_{seed + P1 + P2, seed + P2, seed, seed - P1}, seed_(seed) {}

void Xxh64::update(std::span<const std::byte> data) noexcept {
  if (data.empty()) return;  // an empty span may carry a null pointer, which memcpy must not see
  auto p = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t n = data.size();
  total_ += n;
  if (buffered_ + n < 32) {
    std::memcpy(buf_ + buffered_, p, n);
    buffered_ += n;
    return;
  }
  if (buffered_ > 0) {
    const std::size_t fill = 32 - buffered_;
    std::memcpy(buf_ + buffered_, p, fill);
    for (int i = 0; i < 4; ++i) v_[i] = round(v_[i], read64(buf_ + 8 * i));
    p += fill;
    n -= fill;
    buffered_ = 0;
  }
  std::uint64_t v0 = v_[0], v1 = v_[1], v2 = v_[2], v3 = v_[3];
  while (n >= 32) {
    v0 = round(v0, read64(p));
    v1 = round(v1, read64(p + 8));
    v2 = round(v2, read64(p + 16));
    v3 = round(v3, read64(p + 24));
    p += 32;
    n -= 32;
  }
  v_[0] = v0, v_[1] = v1, v_[2] = v2, v_[3] = v3;
  std::memcpy(buf_, p, n);
  buffered_ = n;
}

std::uint64_t Xxh64::digest() const noexcept {
  std::uint64_t h;
  if (total_ >= 32) {
    h = std::rotl(v_[0], 1) + std::rotl(v_[1], 7) + std::rotl(v_[2], 12) + std::rotl(v_[3], 18);
    for (int i = 0; i < 4; ++i) h = merge_round(h, v_[i]);
  } else {
    h = seed_ + P5;
  }
  h += total_;
  const unsigned char* p = buf_;
  std::size_t n = buffered_;
  while (n >= 8) {
    h ^= round(0, read64(p));
    h = std::rotl(h, 27) * P1 + P4;
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    h ^= std::uint64_t{read32(p)} * P1;
    h = std::rotl(h, 23) * P2 + P3;
    p += 4;
    n -= 4;
  }
  while (n > 0) {
    h ^= std::uint64_t{*p} * P5;
    h = std::rotl(h, 11) * P1;
    ++p;
    --n;
  }
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

std::uint64_t xxh64(std::span<const std::byte> data, std::uint64_t seed) noexcept {
  Xxh64 h(seed);
  h.update(data);
  return h.digest();
}

Xxh64 tensor_hasher(DType dtype, const Shape& shape) {
  Xxh64 h;
  h.update(dtype_name(dtype));
  h.update(std::string_view("\0", 1));
  const std::uint64_t rank = shape.size();
  h.update(std::as_bytes(std::span(&rank, 1)));
  for (std::int64_t d : shape) {
    const std::uint64_t le = static_cast<std::uint64_t>(d);
    h.update(std::as_bytes(std::span(&le, 1)));
  }
  return h;
}

std::uint64_t tensor_checksum(const Tensor& t) {
  Xxh64 h = tensor_hasher(t.dtype(), t.shape());
  h.update(t.bytes());
  return h.digest();
}

void SetChecksum::add(std::string_view name, std::uint64_t checksum) { items_.emplace_back(name, checksum); }

std::uint64_t SetChecksum::digest() const {
  auto sorted = items_;
  std::sort(sorted.begin(), sorted.end());
  Xxh64 h;
  for (const auto& [name, c] : sorted) {
    h.update(name);
    h.update(std::string_view("\0", 1));
    h.update(std::as_bytes(std::span(&c, 1)));
  }
  return h.digest();
}

std::string format_checksum(std::uint64_t c) { return fmt::format("xxh64:{:016x}", c); }

}  // namespace loco
