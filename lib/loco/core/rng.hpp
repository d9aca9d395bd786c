// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11) keyed by (seed, stream ids),
// so any machine, standard library and thread count draws the same numbers.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>

namespace loco {

// One Philox4x32-10 block: 4 words of output from a 128-bit counter and a 64-bit key.
std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> counter,
                                           std::array<std::uint32_t, 2> key) noexcept;

// Folds stream ids (round, worker, tensor, ...) into one 64-bit stream id (splitmix64 chain).
// Different id lists give different streams except with probability ~2^-64.
std::uint64_t stream_id(std::initializer_list<std::uint64_t> ids) noexcept;

// A stream of random numbers: key = seed, counter = (block index, stream id).
// Element j of the stream is word j%4 of block j/4, so a stream can be split across threads by
// seeking to block boundaries and every split draws the same numbers.
class Rng {
 public:
  explicit Rng(std::uint64_t seed, std::initializer_list<std::uint64_t> streams = {}) noexcept;
  Rng(std::uint64_t seed, std::uint64_t stream) noexcept;

  std::uint32_t next_u32() noexcept;
  std::uint64_t next_u64() noexcept;
  // Uniform in [0, 1) with 24 random bits (float) or 53 (double).
  float uniform() noexcept;
  double uniform_double() noexcept;
  // Standard normal (Box–Muller on two 32-bit uniforms in (0, 1]); consumes exactly 2 words,
  // no cached spare, so the position in the stream is a simple function of the call count.
  float normal() noexcept;
  // Uniform integer in [0, n) without modulo bias (Lemire's method); n > 0.
  std::uint64_t below(std::uint64_t n) noexcept;
  // Moves to the start of block b (word 4·b of the stream).
  void seek_block(std::uint64_t b) noexcept;

 private:
  void refill() noexcept;
  std::array<std::uint32_t, 2> key_;
  std::uint64_t stream_;
  std::uint64_t block_ = 0;
  std::array<std::uint32_t, 4> buf_{};
  int pos_ = 4;
};

// Fill out[i] with N(mean, std²) / U[lo, hi) drawn from the stream (seed, stream): element i uses
// words 2i and 2i+1 of the stream (normal) or word i (uniform), in parallel, identical for any
// thread count.
void fill_normal(std::span<float> out, float mean, float stddev, std::uint64_t seed, std::uint64_t stream);
void fill_uniform(std::span<float> out, float lo, float hi, std::uint64_t seed, std::uint64_t stream);

}  // namespace loco
