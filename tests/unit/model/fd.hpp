// Test helpers: central finite differences in double precision with an error bound derived from
// the step, and random fills.
#pragma once

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "loco/core/rng.hpp"

namespace loco::model::test {

// Central difference (f(x+h) − f(x−h))/2h differs from f'(x) by at most
//   h²/6 · max|f'''|        (truncation)   +   ε_f / h     (rounding),
// where ε_f bounds the rounding error of one evaluation of f. With h = 1e-5, third derivatives of
// the small test problems below 10² (inputs and weights O(1)), and ε_f ≤ 10³·u·max(1, |f|)
// (u = 2^-53; at most ~10³ dependent roundings in the evaluations here), the bound is
// 1.7e-9 + 1.1e-8·max(1, |f|).
constexpr double kStep = 1e-5;
constexpr double kThirdDerivativeBound = 1e2;
constexpr double kRoundingGrowth = 1e3;

inline double fd_tolerance(double f_abs) {
  const double u = std::numeric_limits<double>::epsilon() / 2;
  return kThirdDerivativeBound * kStep * kStep / 6 + kRoundingGrowth * u * std::max(1.0, f_abs) / kStep;
}

// Checks every coordinate of x against the analytic gradient g of loss() (which reads x).
// Returns the largest |g| seen, so callers can assert the check was not vacuous.
template <typename Loss>
double check_gradient(std::span<double> x, std::span<const double> g, const Loss& loss, const std::string& what) {
  BOOST_REQUIRE_EQUAL(x.size(), g.size());
  const double f0 = loss();
  const double tol = fd_tolerance(std::abs(f0));
  double max_err = 0.0, max_g = 0.0;
  std::size_t worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + kStep;
    const double fp = loss();
    x[i] = saved - kStep;
    const double fm = loss();
    x[i] = saved;
    const double fd = (fp - fm) / (2 * kStep);
    const double err = std::abs(fd - g[i]);
    if (err > max_err) {
      max_err = err;
      worst = i;
    }
    max_g = std::max(max_g, std::abs(g[i]));
  }
  BOOST_TEST_MESSAGE(what << ": max |fd − g| " << max_err << " (bound " << tol << ", max |g| " << max_g << ")");
  BOOST_CHECK_MESSAGE(max_err <= tol, what << ": largest |finite difference − gradient| = " << max_err << " at element "
                                           << worst << " (gradient " << g[worst] << "), bound " << tol);
  return max_g;
}

// Uniform values in [lo, hi) from a counter-based stream.
inline std::vector<double> random_vector(std::size_t n, double lo, double hi, std::uint64_t stream) {
  Rng rng(12345, {stream});
  std::vector<double> v(n);
  for (auto& e : v) e = lo + (hi - lo) * rng.uniform_double();
  return v;
}

inline double dot(std::span<const double> a, std::span<const double> b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace loco::model::test
