// templar's accounting of its index payload (detail/templar.hpp), computed from the kept indices
// without building the bit stream: every field of bits.py's format has a size known from the counts.
#include <cmath>
#include <vector>

#include "loco/compress/detail/templar.hpp"

namespace loco::compress::detail {

namespace {

// Bits of one row's code (tplr-ai/templar src/tplr/compress/bits.py: the per-row choice of
// _estimate_best_params_per_row, which encode_batch_rows then writes exactly).
std::int64_t row_bits(const std::uint16_t* idx, std::int64_t k, std::int64_t c,
                      const std::vector<std::int64_t>& choices, std::vector<std::int64_t>& counts) {
  std::int64_t best = -1;
  for (const std::int64_t b : choices) {
    const std::int64_t n_sub = c / b;
    const auto lb = static_cast<std::int64_t>(std::log2(static_cast<double>(b)));  // b is a power of two
    // _rice_k_from_mean: Python's round() of log2(λ), λ = k/c·B (halves to even, as nearbyint).
    const double lambda = static_cast<double>(k) / static_cast<double>(c) * static_cast<double>(b);
    const std::int64_t kappa =
        lambda <= 0
            ? 0
            : std::max<std::int64_t>(0, static_cast<std::int64_t>(std::nearbyint(std::log2(std::max(lambda, 1e-9)))));
    counts.assign(static_cast<std::size_t>(n_sub), 0);
    for (std::int64_t j = 0; j < k; ++j) ++counts[static_cast<std::size_t>(idx[j] / b)];
    std::int64_t rice = 0, nonzero = 0;
    for (const std::int64_t n : counts) {
      rice += (n >> kappa) + 1 + kappa;
      nonzero += n > 0;
    }
    const std::int64_t bits = 10 + rice + std::min(lb * k, b * nonzero);
    if (best < 0 || bits < best) best = bits;
  }
  return best;
}

}  // namespace

std::int64_t templar_index_bytes(std::span<const std::uint16_t> idx, std::int64_t rows, std::int64_t k,
                                 std::int64_t c) {
  if (c > 4096) return -1;
  std::vector<std::int64_t> choices;
  for (const std::int64_t b : {64, 128})
    if (c % b == 0) choices.push_back(b);
  if (choices.empty())
    for (std::int64_t b = 1; b <= c; b <<= 1)
      if (c % b == 0) choices.push_back(b);
  std::vector<std::int64_t> counts;
  std::int64_t bytes = 0, bits = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    if (r % 65535 == 0) {  // a payload's header; the previous payload padded to whole bytes
      bytes += (bits + 7) / 8;
      bits = 29;
    }
    bits += 16 + 8 * ((row_bits(idx.data() + r * k, k, c, choices, counts) + 7) / 8);
  }
  return bytes + (bits + 7) / 8;
}

}  // namespace loco::compress::detail
