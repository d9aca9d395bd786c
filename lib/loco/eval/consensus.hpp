// Consensus distance of decentralized training: Ξ² = (1/n) Σ_i ‖θ_i − θ̄‖² over n models, streamed
// row block by row block with a Welford pass over the models per block, so memory is a few blocks
// whatever the model size and n.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace loco::eval {

struct Consensus {
  std::int64_t models = 0;      // n
  std::int64_t parameters = 0;  // floating elements compared
  double distance_sq = 0;       // Ξ² = (1/n) Σ_i ‖θ_i − θ̄‖²
  double distance = 0;          // Ξ = √Ξ²
  double mean_norm = 0;         // ‖θ̄‖, to read Ξ against
};

// Ξ² over the floating tensors of group "tensors" (float buffers included, integer tensors
// skipped), in float64: per block, for k = 1..n, d = x_k − m, m += d/k, M2 += d·(x_k − m), and Ξ² =
// Σ M2 / n. Models are read in the order given; one block of one model is in memory at a time.
// Throws Error(Usage) for fewer than 1 model or a model listed twice; Error(BadInput) naming the
// file when a model is not kind model, has another model_config than the first, other tensor
// names, shapes or a non-floating dtype where the first has a floating one; Error(Numeric) when a
// model holds NaN or Inf.
Consensus consensus_distance(const std::vector<std::string>& models, std::size_t block_bytes = std::size_t{1} << 20);

}  // namespace loco::eval
