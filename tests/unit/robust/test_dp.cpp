// Differential privacy: σ = zC/m (golden), clipping, noise statistics and determinism, adaptive
// clipping converging to the target quantile of a fixed norm distribution.
#include <boost/test/unit_test.hpp>
#include <tbb/global_control.h>

#include <cmath>
#include <random>

#include "loco/core/rng.hpp"
#include "loco/robust/dp.hpp"
#include "support.hpp"

using namespace loco;
using namespace loco::robust;

BOOST_AUTO_TEST_SUITE(dp)

// Golden (brief §6): σ = z·C/m.
BOOST_AUTO_TEST_CASE(noise_stddev_golden) {
  BOOST_TEST(dp_noise_stddev(1.1, 0.5, 10) == 1.1 * 0.5 / 10);
  BOOST_TEST(dp_noise_stddev(0.0, 2.0, 3) == 0.0);
  test::require_error([] { dp_noise_stddev(1, 0, 10); }, ErrorKind::Usage, {"clip norm"});
  test::require_error([] { dp_noise_stddev(1, 1, 0); }, ErrorKind::Usage, {"m = 0"});
}

BOOST_AUTO_TEST_CASE(clipping_and_mean) {
  BOOST_TEST(clip_factor(5.0, 1.0) == 0.2);
  BOOST_TEST(clip_factor(0.5, 1.0) == 1.0);
  BOOST_TEST(clip_factor(0.0, 1.0) == 1.0);
  // (3,4) clipped to (0.6,0.8), (0,1) kept: mean (0.3, 0.9); z = 0 adds nothing.
  const auto m = dp_mean({{3, 4}, {0, 1}}, 1.0, 0.0, 2, 1, 0);
  BOOST_TEST(std::abs(m[0] - 0.3f) < 1e-7f);
  BOOST_TEST(std::abs(m[1] - 0.9f) < 1e-7f);
}

BOOST_AUTO_TEST_CASE(noise_statistics_and_determinism) {
  const std::size_t n = 400000;
  const auto m = dp_mean({std::vector<float>(n, 0.0f)}, 1.0, 1.0, 10, 42, 3);  // σ = 0.1
  double s = 0, s2 = 0;
  for (float v : m) s += v, s2 += double(v) * v;
  const double mean = s / n, sd = std::sqrt(s2 / n - mean * mean);
  // Standard errors: mean σ/√n = 1.6e-4, sd σ/√(2n) = 1.1e-4; 5 of each.
  BOOST_TEST(std::abs(mean) < 5 * 0.1 / std::sqrt(double(n)));
  BOOST_TEST(std::abs(sd - 0.1) < 5 * 0.1 / std::sqrt(2.0 * n));
  // The same values with one thread, and block by block from any offset.
  std::vector<float> one(n, 0.0f), split(n, 0.0f);
  {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 1);
    add_dp_noise(one, 0.1, 42, 3, 0, 0);
  }
  add_dp_noise(std::span<float>(split.data(), 33333), 0.1, 42, 3, 0, 0);
  add_dp_noise(std::span<float>(split.data() + 33333, n - 33333), 0.1, 42, 3, 0, 33333);
  BOOST_TEST((one == m));
  BOOST_TEST((split == m));
  // Another round or tensor draws other noise.
  std::vector<float> other(16, 0.0f);
  add_dp_noise(other, 0.1, 42, 4, 0, 0);
  BOOST_TEST(other[0] != m[0]);
}

// Andrew et al.: C converges to the γ-quantile of the norms (here log-normal, fresh norms each round).
BOOST_AUTO_TEST_CASE(adaptive_clip_converges_to_quantile) {
  for (double gamma : {0.5, 0.9, 0.2}) {
    std::mt19937 g(7);
    std::lognormal_distribution<double> dist(0.0, 1.0);
    const std::int64_t m = 100;
    AdaptiveClipOptions o;
    o.quantile = gamma;
    double clip = 0.1, sum_log = 0;
    const int rounds = 600, tail = 300;
    for (int t = 0; t < rounds; ++t) {
      std::vector<double> norms(m);
      for (auto& x : norms) x = dist(g);
      const auto step = adaptive_clip_step(norms, clip, m, o, 5, t);
      clip = step.next_clip;
      if (t >= rounds - tail) sum_log += std::log(step.clip);
    }
    // The γ-quantile of log-normal(0,1) is exp(Φ⁻¹(γ)). Each step moves log C by η(b̄ − γ), b̄ having
    // sd √(γ(1−γ)/m + (σ_b/m)²) ≤ 0.071: ±0.014 per step around the fixed point; the tail mean of
    // log C is within a few hundredths of log q (the slope of the norm CDF at q sets the restoring force).
    const double q = gamma == 0.5 ? 0.0 : gamma == 0.9 ? 1.2815515655446004 : -0.8416212335729143;
    BOOST_TEST(std::abs(sum_log / tail - q) < 0.1, "gamma " << gamma << ": " << sum_log / tail << " vs " << q);
  }
  test::require_error([] { adaptive_clip_step({}, 0, 10, {}, 0, 0); }, ErrorKind::Usage, {"clip norm"});
}

BOOST_AUTO_TEST_CASE(adaptive_noise_multiplier_formula) {
  // z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2): z = 1, σ_b = 5 → (1 − 1/100)^(−1/2).
  BOOST_TEST(std::abs(adaptive_noise_multiplier(1.0, 5.0) - 1.0 / std::sqrt(0.99)) < 1e-15);
  test::require_error([] { adaptive_noise_multiplier(10.0, 5.0); }, ErrorKind::Usage, {"0 < z < 2σ_b"});
}

BOOST_AUTO_TEST_SUITE_END()
