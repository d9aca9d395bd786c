// Tests of the samplers under the partitioners: double normals, gamma (Marsaglia–Tsang and the
// alpha < 1 boost), Dirichlet, Fisher–Yates. Each moment is checked against its exact value with a
// tolerance of 5 standard errors, the standard error computed from the exact higher moments.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <numbers>
#include <numeric>
#include <vector>

#include "helpers.hpp"
#include "loco/core/rng.hpp"
#include "loco/data/random.hpp"

namespace {

namespace ld = loco::data;
using loco::Rng;

// Sample mean of f over draws, and the check |mean − exact| ≤ 5·√(var/N).
struct Moment {
  double sum = 0.0;
  std::int64_t n = 0;
  void add(double v) {
    sum += v;
    ++n;
  }
  double mean() const { return sum / static_cast<double>(n); }
};

void check_moment(const Moment& m, double exact, double variance, const char* what) {
  const double tol = 5.0 * std::sqrt(variance / static_cast<double>(m.n));
  BOOST_TEST_INFO(what << ": sample " << m.mean() << ", exact " << exact << ", tolerance " << tol);
  BOOST_CHECK(std::fabs(m.mean() - exact) <= tol);
}

// Rising factorial a(a+1)…(a+k−1).
double rising(double a, int k) {
  double r = 1.0;
  for (int i = 0; i < k; ++i) r *= a + i;
  return r;
}

// Digamma ψ and trigamma ψ' by recurrence up to x ≥ 10, then their asymptotic series
// (error below 1e-12 there).
double digamma(double x) {
  double r = 0.0;
  while (x < 10.0) {
    r -= 1.0 / x;
    x += 1.0;
  }
  const double f = 1.0 / (x * x);
  return r + std::log(x) - 0.5 / x - f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f / 132))));
}
double trigamma(double x) {
  double r = 0.0;
  while (x < 10.0) {
    r += 1.0 / (x * x);
    x += 1.0;
  }
  const double f = 1.0 / (x * x);
  return r + 1.0 / x + f / 2 + (1.0 / (x * x * x)) * (1.0 / 6 - f * (1.0 / 30 - f * (1.0 / 42 - f / 30)));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(random_samplers)

BOOST_AUTO_TEST_CASE(normal_double_has_unit_moments) {
  Rng rng(11, {1});
  Moment m1, m2;
  constexpr int kN = 200000;
  for (int i = 0; i < kN; ++i) {
    const double z = ld::normal_double(rng);
    m1.add(z);
    m2.add(z * z);
  }
  check_moment(m1, 0.0, 1.0, "E[z]");
  check_moment(m2, 1.0, 2.0, "E[z^2]");  // Var z² = E z⁴ − 1 = 2
}

BOOST_AUTO_TEST_CASE(gamma_moments_match_for_small_and_large_shape) {
  constexpr int kN = 200000;
  for (double a : {0.05, 0.3, 1.0, 2.5, 10.0}) {
    Rng rng(2024, {static_cast<std::uint64_t>(a * 1000)});
    Moment m1, m2;
    for (int i = 0; i < kN; ++i) {
      const double g = ld::gamma_variate(rng, a);
      BOOST_REQUIRE(g >= 0.0 && std::isfinite(g));
      m1.add(g);
      m2.add(g * g);
    }
    BOOST_TEST_CONTEXT("alpha " << a) {
      // E G = a, Var G = a; E G² = a(a+1), Var G² = E G⁴ − (E G²)².
      check_moment(m1, a, a, "E[G]");
      check_moment(m2, rising(a, 2), rising(a, 4) - rising(a, 2) * rising(a, 2), "E[G^2]");
      const double var = m2.mean() - m1.mean() * m1.mean();
      // |Δ var| ≤ |Δ E G²| + |Δ (E G)²| ≤ t2 + t1(2a + t1) with t_k the tolerances above.
      const double t1 = 5.0 * std::sqrt(a / kN);
      const double t2 = 5.0 * std::sqrt((rising(a, 4) - rising(a, 2) * rising(a, 2)) / kN);
      BOOST_TEST(std::fabs(var - a) <= t2 + t1 * (2 * a + t1));
    }
  }
}

BOOST_AUTO_TEST_CASE(log_gamma_is_right_where_gamma_underflows) {
  // E ln G = ψ(a), Var ln G = ψ'(a). For a = 1e-3, G underflows to 0 often; ln G must not.
  constexpr int kN = 100000;
  for (double a : {1e-3, 0.05, 0.5, 3.0}) {
    Rng rng(77, {static_cast<std::uint64_t>(a * 1e6)});
    Moment m;
    for (int i = 0; i < kN; ++i) {
      const double lg = ld::log_gamma_variate(rng, a);
      BOOST_REQUIRE(std::isfinite(lg));
      m.add(lg);
    }
    BOOST_TEST_CONTEXT("alpha " << a) { check_moment(m, digamma(a), trigamma(a), "E[ln G]"); }
  }
  // The reference functions themselves: ψ(1) = −γ, ψ'(1) = π²/6.
  BOOST_TEST(std::fabs(digamma(1.0) + 0.57721566490153286) < 1e-10);
  BOOST_TEST(std::fabs(trigamma(1.0) - std::numbers::pi * std::numbers::pi / 6) < 1e-10);
}

BOOST_AUTO_TEST_CASE(dirichlet_moments_match) {
  const std::array<double, 4> alpha{0.1, 0.5, 2.0, 4.0};
  const double a0 = std::accumulate(alpha.begin(), alpha.end(), 0.0);
  constexpr int kN = 100000;
  Rng rng(5, {9});
  std::array<Moment, 4> m1, m2;
  Moment cross;  // p0·p3
  std::array<double, 4> p{};
  for (int i = 0; i < kN; ++i) {
    ld::dirichlet(rng, alpha, p);
    double s = 0.0;
    for (int k = 0; k < 4; ++k) {
      BOOST_REQUIRE(p[static_cast<std::size_t>(k)] >= 0.0);
      s += p[static_cast<std::size_t>(k)];
      m1[static_cast<std::size_t>(k)].add(p[static_cast<std::size_t>(k)]);
      m2[static_cast<std::size_t>(k)].add(p[static_cast<std::size_t>(k)] * p[static_cast<std::size_t>(k)]);
    }
    BOOST_REQUIRE(std::fabs(s - 1.0) <= 2 * 4 * DBL_EPSILON);  // k quotients and two k-term sums
    cross.add(p[0] * p[3]);
  }
  for (std::size_t k = 0; k < 4; ++k) {
    const double a = alpha[k];
    // Marginal p_k ~ Beta(a, a0 − a): E p^j = rising(a, j)/rising(a0, j).
    const double e1 = a / a0, e2 = rising(a, 2) / rising(a0, 2), e4 = rising(a, 4) / rising(a0, 4);
    const double var = a * (a0 - a) / (a0 * a0 * (a0 + 1));
    BOOST_TEST_CONTEXT("component " << k) {
      check_moment(m1[k], e1, var, "E[p]");
      check_moment(m2[k], e2, e4 - e2 * e2, "E[p^2]");
      const double t1 = 5.0 * std::sqrt(var / kN), t2 = 5.0 * std::sqrt((e4 - e2 * e2) / kN);
      const double sample_var = m2[k].mean() - m1[k].mean() * m1[k].mean();
      BOOST_TEST(std::fabs(sample_var - var) <= t2 + t1 * (2 * e1 + t1));
    }
  }
  // E p0 p3 = a0·a3/(α0(α0+1)); E (p0 p3)² = rising(a0,2)·rising(a3,2)/rising(α0,4).
  const double ec = alpha[0] * alpha[3] / rising(a0, 2);
  const double ec2 = rising(alpha[0], 2) * rising(alpha[3], 2) / rising(a0, 4);
  check_moment(cross, ec, ec2 - ec * ec, "E[p0 p3]");
}

BOOST_AUTO_TEST_CASE(tiny_alpha_dirichlet_is_normalized_and_unbiased) {
  const std::vector<double> alpha(20, 1e-4);
  Rng rng(1, {2});
  constexpr int kN = 20000;
  Moment first;
  for (int i = 0; i < kN; ++i) {
    const std::vector<double> p = ld::dirichlet(rng, alpha);
    double s = 0.0;
    for (double v : p) {
      BOOST_REQUIRE(std::isfinite(v) && v >= 0.0);
      s += v;
    }
    BOOST_REQUIRE(std::fabs(s - 1.0) <= 2 * 20 * DBL_EPSILON);
    first.add(p[0]);
  }
  const double a0 = 20 * 1e-4;
  check_moment(first, 1.0 / 20, 1e-4 * (a0 - 1e-4) / (a0 * a0 * (a0 + 1)), "E[p0]");
}

BOOST_AUTO_TEST_CASE(dirichlet_rejects_bad_parameters) {
  Rng rng(1);
  using loco_test::require_error;
  require_error([&] { ld::dirichlet(rng, std::vector<double>{1.0, 0.0}); }, loco::ErrorKind::Usage, {"alpha[1]"});
  require_error([&] { ld::dirichlet(rng, std::vector<double>{NAN}); }, loco::ErrorKind::Usage, {"alpha[0]"});
  require_error([&] { ld::dirichlet(rng, std::vector<double>{}); }, loco::ErrorKind::Usage, {"no concentration"});
}

BOOST_AUTO_TEST_CASE(same_seed_same_draws) {
  Rng a(42, {3, 4}), b(42, {3, 4}), c(43, {3, 4});
  const std::vector<double> alpha{0.3, 0.3, 0.3};
  const auto pa = ld::dirichlet(a, alpha), pb = ld::dirichlet(b, alpha), pc = ld::dirichlet(c, alpha);
  BOOST_TEST(pa == pb);
  BOOST_TEST(pa != pc);
}

BOOST_AUTO_TEST_CASE(fisher_yates_is_a_uniform_permutation) {
  Rng rng(8, {8});
  // All 3! orders equally likely: each count ~ Binomial(N, 1/6), checked within 5σ.
  constexpr int kN = 60000;
  std::array<int, 6> counts{};
  for (int i = 0; i < kN; ++i) {
    std::vector<int> v{0, 1, 2};
    ld::shuffle(v, rng);
    const int code = v[0] * 2 + (v[1] > v[2] ? 1 : 0);  // first element and the order of the other two
    ++counts[static_cast<std::size_t>(code)];
  }
  const double expected = kN / 6.0, sigma = std::sqrt(kN * (1.0 / 6) * (5.0 / 6));
  for (int c : counts) BOOST_TEST(std::fabs(c - expected) <= 5 * sigma);
  Rng r1(3), r2(3);
  const auto p = ld::permutation(1000, r1);
  BOOST_TEST(p == ld::permutation(1000, r2));
  std::vector<std::int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (std::int64_t i = 0; i < 1000; ++i) BOOST_TEST(sorted[static_cast<std::size_t>(i)] == i);
}

BOOST_AUTO_TEST_SUITE_END()
