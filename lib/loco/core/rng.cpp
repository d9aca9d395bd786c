// Philox4x32-10 and the samplers built on it.
#include "loco/core/rng.hpp"

#include <cmath>
#include <numbers>

#include <tbb/parallel_for.h>

namespace loco {
__extension__ typedef unsigned __int128 u128;

std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> c, std::array<std::uint32_t, 2> k) noexcept {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t{kM0} * c[0];
    const std::uint64_t p1 = std::uint64_t{kM1} * c[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kW0;
    k[1] += kW1;
  }
  return c;
}

std::uint64_t stream_id(std::initializer_list<std::uint64_t> ids) noexcept {
  std::uint64_t h = 0x243F6A8885A308D3ull;  // π's fraction: any fixed start works
  for (std::uint64_t id : ids) {
    h += id + 0x9E3779B97F4A7C15ull;
    std::uint64_t z = h;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    h = z ^ (z >> 31);
  }
  return h;
}

Rng::Rng(std::uint64_t seed, std::initializer_list<std::uint64_t> streams) noexcept
    : Rng(seed, streams.size() == 0 ? 0 : stream_id(streams)) {}

Rng::Rng(std::uint64_t seed, std::uint64_t stream) noexcept
    : key_{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)}, stream_(stream) {}

void Rng::refill() noexcept {
  buf_ = philox4x32_10({static_cast<std::uint32_t>(block_), static_cast<std::uint32_t>(block_ >> 32),
                        static_cast<std::uint32_t>(stream_), static_cast<std::uint32_t>(stream_ >> 32)},
                       key_);
  ++block_;
  pos_ = 0;
}

void Rng::seek_block(std::uint64_t b) noexcept {
  block_ = b;
  pos_ = 4;
}

std::uint32_t Rng::next_u32() noexcept {
  if (pos_ == 4) refill();
  return buf_[pos_++];
}

std::uint64_t Rng::next_u64() noexcept {
  const std::uint64_t lo = next_u32();
  return lo | (std::uint64_t{next_u32()} << 32);
}

float Rng::uniform() noexcept { return static_cast<float>(next_u32() >> 8) * 0x1.0p-24f; }

double Rng::uniform_double() noexcept { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

namespace {
// Box–Muller on two words: u1 in (0, 1] so the logarithm is finite.
inline float box_muller(std::uint32_t a, std::uint32_t b) noexcept {
  const double u1 = (static_cast<double>(a) + 1.0) * 0x1.0p-32;
  const double u2 = static_cast<double>(b) * 0x1.0p-32;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
}
}  // namespace

float Rng::normal() noexcept {
  const std::uint32_t a = next_u32();
  return box_muller(a, next_u32());
}

std::uint64_t Rng::below(std::uint64_t n) noexcept {
  // Lemire: multiply a 64-bit word by n and keep the high half, rejecting the biased low range.
  for (;;) {
    const u128 m = static_cast<u128>(next_u64()) * n;
    const auto low = static_cast<std::uint64_t>(m);
    if (low >= n || low >= (-n) % n) return static_cast<std::uint64_t>(m >> 64);
  }
}

void fill_normal(std::span<float> out, float mean, float stddev, std::uint64_t seed, std::uint64_t stream) {
  // Two normals per Philox block (4 words): element i uses block i/2, words 2(i%2), 2(i%2)+1.
  const std::size_t blocks = (out.size() + 1) / 2;
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, blocks, 4096), [&](const tbb::blocked_range<std::size_t>& r) {
    Rng rng(seed, stream);
    rng.seek_block(r.begin());
    for (std::size_t b = r.begin(); b < r.end(); ++b) {
      const std::uint32_t w0 = rng.next_u32(), w1 = rng.next_u32(), w2 = rng.next_u32(), w3 = rng.next_u32();
      out[2 * b] = mean + stddev * box_muller(w0, w1);
      if (2 * b + 1 < out.size()) out[2 * b + 1] = mean + stddev * box_muller(w2, w3);
    }
  });
}

void fill_uniform(std::span<float> out, float lo, float hi, std::uint64_t seed, std::uint64_t stream) {
  const std::size_t blocks = (out.size() + 3) / 4;
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, blocks, 4096), [&](const tbb::blocked_range<std::size_t>& r) {
    Rng rng(seed, stream);
    rng.seek_block(r.begin());
    for (std::size_t i = 4 * r.begin(); i < std::min(out.size(), 4 * r.end()); ++i)
      out[i] = lo + (hi - lo) * rng.uniform();
  });
}

}  // namespace loco
