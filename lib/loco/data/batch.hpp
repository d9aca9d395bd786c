// Minibatch samplers for the worker: example indices for classification and window offsets for
// token streams, drawn from Rng keyed by (seed, worker, round, step) so that a run is reproducible,
// two workers never share a stream, and any step can be drawn directly (resuming needs only the
// step count, which the worker's state file records).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "loco/data/dataset.hpp"

namespace loco::data {

enum class SampleMode {
  Shuffle,      // epochs: every run of n consecutive draws (from draw 0) is a permutation of 0..n−1
  Replacement,  // every index uniform in [0, n), independently
};

// Example indices of batch `step` (0-based) for one worker in one round.
//
// Stream keys (the 64-bit ids passed to Rng(seed, {...})):
//   Replacement: batch s uses Rng(seed, {"batch", worker, round, s}) and draws its b indices with
//     below(n) in order.
//   Shuffle: draw number t = s·b + i (i < b) is π_e[t mod n] with e = ⌊t/n⌋ and π_e the
//     Fisher–Yates permutation of 0..n−1 from Rng(seed, {"epoch", worker, round, e}); batches run on
//     across epoch boundaries, so every batch is full.
// ("batch"/"epoch" are those ASCII bytes packed big-endian.) Pass the outer round for a fresh stream
// each round, or a fixed round and a step count that keeps growing across rounds to continue the
// epochs (record the step in the worker state).
class BatchSampler {
 public:
  // Throws Error(Usage) unless examples ≥ 1 and batch ≥ 1.
  BatchSampler(std::int64_t examples, std::int64_t batch, SampleMode mode, std::uint64_t seed, std::uint64_t worker,
               std::uint64_t round);

  // Fills out (size batch) with the indices of batch `step` ≥ 0. Same step, same indices, whatever
  // was drawn before. Not thread-safe (keeps the current epoch's permutation).
  void indices(std::int64_t step, std::span<std::int64_t> out);
  std::vector<std::int64_t> indices(std::int64_t step);

  std::int64_t examples() const { return n_; }
  std::int64_t batch() const { return b_; }

 private:
  const std::vector<std::int64_t>& epoch(std::int64_t e);
  std::int64_t n_, b_;
  SampleMode mode_;
  std::uint64_t seed_, worker_, round_;
  std::int64_t cached_epoch_ = -1;
  std::vector<std::int64_t> perm_;
};

// Window offsets for next-token training: batch `step` has `batch` offsets o uniform in
// [0, tokens − ctx − 1], so that the window tokens[o, o + ctx + 1) (ctx inputs and their ctx
// targets) fits. Batch s draws with below(tokens − ctx) in order from
// Rng(seed, {"window", worker, round, s}).
class WindowSampler {
 public:
  // Throws Error(Usage) unless ctx ≥ 1, batch ≥ 1 and tokens ≥ ctx + 1.
  WindowSampler(std::int64_t tokens, std::int64_t ctx, std::int64_t batch, std::uint64_t seed, std::uint64_t worker,
                std::uint64_t round);

  void offsets(std::int64_t step, std::span<std::int64_t> out) const;
  std::vector<std::int64_t> offsets(std::int64_t step) const;

  std::int64_t max_offset() const { return tokens_ - ctx_ - 1; }
  std::int64_t batch() const { return b_; }
  std::int64_t ctx() const { return ctx_; }

 private:
  std::int64_t tokens_, ctx_, b_;
  std::uint64_t seed_, worker_, round_;
};

// Copies the rows and labels of the given examples into x (indices.size()·d floats) and y.
// Throws Error(Usage) on a size mismatch or an index outside [0, n).
void gather_batch(const ClassificationData& data, std::span<const std::int64_t> indices, std::span<float> x,
                  std::span<std::int32_t> y);

// Copies the windows tokens[o, o + ctx + 1) for each offset into out (offsets.size()·(ctx + 1)
// token ids, row-major). Throws Error(Usage) on a size mismatch or a window past the end.
void gather_windows(const TokenData& data, std::span<const std::int64_t> offsets, std::int64_t ctx,
                    std::span<std::int32_t> out);

}  // namespace loco::data
