// Differential privacy for updates at the server: per-update L2 clipping, Gaussian noise on the mean
// (σ = z·C/m, Flower's server-side fixed clipping) and adaptive clipping in the form of Andrew et al.,
// "Differentially Private Learning with Adaptive Clipping" (NeurIPS 2021).
//
// Noise is drawn from Philox keyed by (seed, round, tensor) with element i of a tensor using words
// 2i and 2i+1 of its stream, so it is the same whatever the thread count and the block split.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace loco::robust {

// min(1, C/‖x‖): the factor that clips an update of L2 norm `norm` (over all its tensors) to C.
// 1 for a zero update. Throws Error(Usage) unless C > 0.
double clip_factor(double norm, double clip);

// σ = z·C/m, the standard deviation of the Gaussian noise added to the mean of m clipped updates.
// m is the number of sampled clients, fixed in advance (not the number that replied). Throws
// Error(Usage) unless z ≥ 0, C > 0 and m ≥ 1.
double dp_noise_stddev(double noise_multiplier, double clip, std::int64_t m);

// Adds N(0, σ²) to block, whose first element is element `offset` of tensor `tensor` (an index in
// the model's tensor order) in round `round`. Parallel; the same values for any split.
void add_dp_noise(std::span<float> block, double sigma, std::uint64_t seed, std::int64_t round, std::uint64_t tensor,
                  std::uint64_t offset);

// Adds σ·N(0, 1) to block, whose first element is element `offset` of the stream (seed, stream):
// element e uses words 2e and 2e+1 (the layout of core's fill_normal). Parallel; the same values for
// any thread count and any split into blocks.
void add_normal(std::span<float> block, double sigma, std::uint64_t seed, std::uint64_t stream, std::uint64_t offset);

// Server-side fixed clipping over whole vectors in memory: clips each x_i to C, averages over the
// updates given, and adds noise of σ = z·C/m (tensor index 0). For tests and small callers.
std::vector<float> dp_mean(const std::vector<std::vector<float>>& x, double clip, double noise_multiplier,
                           std::int64_t m, std::uint64_t seed, std::int64_t round);

// Adaptive clipping (Andrew et al., Algorithm 1): each update reports b_i = 1[‖x_i‖ ≤ C]; the
// server forms b̄ = (Σ b_i + N(0, σ_b²))/m and sets C ← C·exp(−η_C(b̄ − γ)). So C shrinks while more
// than a fraction γ of the updates fit under it and grows otherwise, converging to the γ-quantile
// of the norms. (Flower counts clipped updates instead, which drives C the wrong way.)
struct AdaptiveClipOptions {
  double quantile = 0.5;       // γ, the target fraction of unclipped updates
  double learning_rate = 0.2;  // η_C
  double count_stddev = -1;    // σ_b; < 0 means m/20 (the paper's and Flower's default)
};

struct AdaptiveClipStep {
  double clip = 0;                // C used this round
  double unclipped_fraction = 0;  // b̄, noised
  double next_clip = 0;           // C for the next round
};

// One round: norms of the m updates (or fewer when some did not reply; b̄ still divides by m),
// the current C, noise for b̄ from (seed, round). Throws Error(Usage) for C ≤ 0, m < 1, γ ∉ [0, 1],
// η_C < 0.
AdaptiveClipStep adaptive_clip_step(std::span<const double> norms, double clip, std::int64_t m,
                                    const AdaptiveClipOptions& options, std::uint64_t seed, std::int64_t round);

// The noise multiplier left for the updates when the count b̄ spends part of the budget:
// z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2). Throws Error(Usage) unless 0 < z < 2σ_b.
double adaptive_noise_multiplier(double noise_multiplier, double count_stddev);

}  // namespace loco::robust
