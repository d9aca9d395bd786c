// Samplers on top of loco::Rng that the partitioners need: double-precision normals, gamma
// (Marsaglia–Tsang), Dirichlet, permutations. Never std:: distributions, so every platform draws
// the same numbers for the same seed.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "loco/core/rng.hpp"

namespace loco::data {

// Standard normal in double precision by Box–Muller: u1 = 1 − uniform_double() in (0, 1],
// u2 = uniform_double(), z = √(−2 ln u1)·cos(2π u2). Consumes exactly 4 words of rng.
double normal_double(Rng& rng) noexcept;

// log of a Gamma(alpha, 1) variate, alpha > 0 (finite and positive; checked by callers).
// alpha ≥ 1: Marsaglia & Tsang (2000): d = alpha − 1/3, c = 1/√(9d); repeat x ~ N(0,1),
// v = (1 + c x)³ until v > 0 and, with u ~ U(0,1], u < 1 − 0.0331 x⁴ or ln u < x²/2 + d(1 − v + ln v);
// return ln(d v). alpha < 1: the boost G(alpha) = G(alpha + 1)·U^(1/alpha), returned as
// ln G(alpha + 1) + ln(U)/alpha so that tiny alpha does not underflow to 0.
double log_gamma_variate(Rng& rng, double alpha) noexcept;
// exp(log_gamma_variate(rng, alpha)); may underflow to 0 for alpha ≪ 1.
double gamma_variate(Rng& rng, double alpha) noexcept;

// out = p ~ Dirichlet(alpha): p_i = G_i/ΣG_j with G_i ~ Gamma(alpha_i) drawn in order i = 0..k−1,
// normalized in log space (subtracting the largest log G) so that Σp = 1 even when every G
// underflows. Throws Error(Usage) unless alpha is non-empty, finite and > 0 and out.size() == alpha.size().
void dirichlet(Rng& rng, std::span<const double> alpha, std::span<double> out);
std::vector<double> dirichlet(Rng& rng, std::span<const double> alpha);

// In-place Fisher–Yates: for i = n−1 down to 1, swap v[i] with v[rng.below(i + 1)].
template <typename T>
void shuffle(std::span<T> v, Rng& rng) noexcept {
  for (std::size_t i = v.size(); i > 1; --i) {
    const std::size_t j = static_cast<std::size_t>(rng.below(i));
    if (j != i - 1) std::swap(v[i - 1], v[j]);
  }
}
template <typename T>
void shuffle(std::vector<T>& v, Rng& rng) noexcept {
  shuffle(std::span<T>(v), rng);
}

// 0..n−1 in the order shuffle() puts it.
std::vector<std::int64_t> permutation(std::int64_t n, Rng& rng);

}  // namespace loco::data
