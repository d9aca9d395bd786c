// Gamma, Dirichlet and permutation samplers on loco::Rng.
#include "loco/data/random.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>

#include "loco/core/error.hpp"

namespace loco::data {

double normal_double(Rng& rng) noexcept {
  const double u1 = 1.0 - rng.uniform_double();  // (0, 1]: the logarithm is finite
  const double u2 = rng.uniform_double();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

namespace {

// ln G for G ~ Gamma(a), a ≥ 1 (Marsaglia–Tsang squeeze and acceptance test).
double log_gamma_mt(Rng& rng, double a) noexcept {
  const double d = a - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    const double x = normal_double(rng);
    const double t = 1.0 + c * x;
    if (t <= 0.0) continue;
    const double v = t * t * t;
    const double u = 1.0 - rng.uniform_double();  // (0, 1]
    const double x2 = x * x;
    if (u < 1.0 - 0.0331 * x2 * x2) return std::log(d) + std::log(v);
    if (std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return std::log(d) + std::log(v);
  }
}

}  // namespace

double log_gamma_variate(Rng& rng, double alpha) noexcept {
  if (alpha >= 1.0) return log_gamma_mt(rng, alpha);
  const double boosted = log_gamma_mt(rng, alpha + 1.0);
  const double u = 1.0 - rng.uniform_double();  // (0, 1]
  return boosted + std::log(u) / alpha;
}

double gamma_variate(Rng& rng, double alpha) noexcept { return std::exp(log_gamma_variate(rng, alpha)); }

void dirichlet(Rng& rng, std::span<const double> alpha, std::span<double> out) {
  if (alpha.empty()) throw_error(ErrorKind::Usage, "Dirichlet: no concentration parameters");
  if (out.size() != alpha.size())
    throw_error(ErrorKind::Internal, "Dirichlet: output has {} entries for {} parameters", out.size(), alpha.size());
  for (std::size_t i = 0; i < alpha.size(); ++i)
    if (!(alpha[i] > 0.0) || !std::isfinite(alpha[i]))
      throw_error(ErrorKind::Usage, "Dirichlet: alpha[{}] = {}; every alpha must be finite and > 0", i, alpha[i]);
  double top = -INFINITY;
  for (std::size_t i = 0; i < alpha.size(); ++i) {
    out[i] = log_gamma_variate(rng, alpha[i]);
    top = std::max(top, out[i]);
  }
  double sum = 0.0;
  for (double& v : out) {
    v = std::exp(v - top);
    sum += v;
  }
  for (double& v : out) v /= sum;
}

std::vector<double> dirichlet(Rng& rng, std::span<const double> alpha) {
  std::vector<double> out(alpha.size());
  dirichlet(rng, alpha, out);
  return out;
}

std::vector<std::int64_t> permutation(std::int64_t n, Rng& rng) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)));
  std::iota(v.begin(), v.end(), std::int64_t{0});
  shuffle(v, rng);
  return v;
}

}  // namespace loco::data
