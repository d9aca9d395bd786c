// Differential privacy for updates: clipping factors, Gaussian noise on blocks and adaptive clipping.
#include "loco/robust/dp.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <cmath>

#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"

namespace loco::robust {

namespace {
constexpr std::uint64_t kDpStream = 0x64702d6e6f697365ULL;     // "dp-noise"
constexpr std::uint64_t kCountStream = 0x64702d636f756e74ULL;  // "dp-count"
}  // namespace

double clip_factor(double norm, double clip) {
  if (!(clip > 0) || !std::isfinite(clip))
    throw_error(ErrorKind::Usage, "clip norm {} is not a finite number > 0", clip);
  return norm > clip ? clip / norm : 1.0;
}

double dp_noise_stddev(double z, double clip, std::int64_t m) {
  if (!(z >= 0) || !std::isfinite(z))
    throw_error(ErrorKind::Usage, "noise multiplier {} is not a finite number ≥ 0", z);
  if (!(clip > 0) || !std::isfinite(clip))
    throw_error(ErrorKind::Usage, "clip norm {} is not a finite number > 0", clip);
  if (m < 1) throw_error(ErrorKind::Usage, "sampled clients m = {} is not ≥ 1", m);
  return z * clip / static_cast<double>(m);
}

void add_normal(std::span<float> block, double sigma, std::uint64_t seed, std::uint64_t stream, std::uint64_t offset) {
  constexpr std::size_t kGrain = 1 << 14;
  const std::size_t n = block.size();
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, (n + kGrain - 1) / kGrain), [&](const auto& r) {
    for (std::size_t t = r.begin(); t < r.end(); ++t) {
      const std::size_t lo = t * kGrain, hi = std::min(n, lo + kGrain);
      Rng rng(seed, stream);
      const std::uint64_t e0 = offset + lo;
      rng.seek_block(e0 / 2);
      if (e0 % 2) {
        rng.next_u32();
        rng.next_u32();
      }
      for (std::size_t i = lo; i < hi; ++i)
        block[i] = static_cast<float>(static_cast<double>(block[i]) + sigma * static_cast<double>(rng.normal()));
    }
  });
}

void add_dp_noise(std::span<float> block, double sigma, std::uint64_t seed, std::int64_t round, std::uint64_t tensor,
                  std::uint64_t offset) {
  if (sigma == 0) return;
  add_normal(block, sigma, seed, stream_id({kDpStream, static_cast<std::uint64_t>(round), tensor}), offset);
}

std::vector<float> dp_mean(const std::vector<std::vector<float>>& x, double clip, double z, std::int64_t m,
                           std::uint64_t seed, std::int64_t round) {
  const double sigma = dp_noise_stddev(z, clip, m);
  if (x.empty()) throw_error(ErrorKind::Usage, "dp_mean: no updates");
  const std::size_t len = x[0].size();
  std::vector<double> acc(len, 0.0);
  for (const auto& v : x) {
    if (v.size() != len) throw_error(ErrorKind::Usage, "dp_mean: lengths {} and {} differ", len, v.size());
    double sq = 0;
    for (float e : v) sq += static_cast<double>(e) * e;
    const double c = clip_factor(std::sqrt(sq), clip);
    for (std::size_t i = 0; i < len; ++i) acc[i] += c * static_cast<double>(v[i]);
  }
  std::vector<float> out(len);
  for (std::size_t i = 0; i < len; ++i) out[i] = static_cast<float>(acc[i] / static_cast<double>(x.size()));
  add_dp_noise(out, sigma, seed, round, 0, 0);
  return out;
}

AdaptiveClipStep adaptive_clip_step(std::span<const double> norms, double clip, std::int64_t m,
                                    const AdaptiveClipOptions& o, std::uint64_t seed, std::int64_t round) {
  if (!(clip > 0) || !std::isfinite(clip))
    throw_error(ErrorKind::Usage, "clip norm {} is not a finite number > 0", clip);
  if (m < 1) throw_error(ErrorKind::Usage, "sampled clients m = {} is not ≥ 1", m);
  if (!(o.quantile >= 0 && o.quantile <= 1))
    throw_error(ErrorKind::Usage, "target quantile {} is not in [0, 1]", o.quantile);
  if (!(o.learning_rate >= 0) || !std::isfinite(o.learning_rate))
    throw_error(ErrorKind::Usage, "clip learning rate {} is not a finite number ≥ 0", o.learning_rate);
  const double sb = o.count_stddev < 0 ? static_cast<double>(m) / 20.0 : o.count_stddev;
  double unclipped = 0;
  for (double nrm : norms) unclipped += nrm <= clip ? 1.0 : 0.0;
  Rng rng(seed, {kCountStream, static_cast<std::uint64_t>(round)});
  const double noisy = (unclipped + sb * static_cast<double>(rng.normal())) / static_cast<double>(m);
  AdaptiveClipStep s;
  s.clip = clip;
  s.unclipped_fraction = noisy;
  s.next_clip = clip * std::exp(-o.learning_rate * (noisy - o.quantile));
  return s;
}

double adaptive_noise_multiplier(double z, double sb) {
  if (!(z > 0) || !(sb > 0) || !(z < 2 * sb))
    throw_error(ErrorKind::Usage, "adaptive clipping needs 0 < z < 2σ_b (z = {}, σ_b = {})", z, sb);
  return 1.0 / std::sqrt(1.0 / (z * z) - 1.0 / (4 * sb * sb));
}

}  // namespace loco::robust
