// Differential privacy and QFedAvg in loco::aggregate: clip factors and clipped norms by hand, σ = zC/m,
// the noise equal to robust::add_dp_noise's stream and of the right spread, reproducible by seed;
// adaptive clipping's C stored in /state and updated by Andrew et al.'s rule over two rounds; QFedAvg
// against a hand computation and against its definition; refusals.
#include <boost/test/unit_test.hpp>

#include "fixtures.hpp"
#include "support.hpp"

#include <cmath>

#include "loco/core/error.hpp"
#include "loco/robust/dp.hpp"

using namespace loco;
using namespace loco::aggtest;
using loco::test::TempDir;

namespace {

double norm_of(const Values& v) {
  double s = 0;
  for (const auto& [_, x] : v)
    for (float e : x) s += static_cast<double>(e) * e;
  return std::sqrt(s);
}

struct DpRound {
  TempDir dir{"aggregate-dp"};
  Shapes shapes;
  Values theta;
  std::vector<Values> deltas;
  std::vector<std::string> paths;
  std::string model = dir / "g0.h5";

  DpRound(const Shapes& s, bool zero_model) : shapes(s) {
    theta = random_values(1, zero_model ? 0.0f : 1.0f, shapes);
    write_model(model, theta, 0, shapes);
    const std::string base = checksum_of(model);
    const float scale[] = {0.1f, 1.0f, 3.0f};
    for (int k = 0; k < 3; ++k) {
      deltas.push_back(random_values(10 + static_cast<std::uint32_t>(k), scale[k] / 0.5f, shapes));
      paths.push_back(dir / ("d" + std::to_string(k) + ".h5"));
      write_delta(paths.back(), deltas.back(), base, k, 0, {}, shapes);
    }
  }
};

const Shapes kBig = {{"w", {100, 50}}, {"b", {50}}};

}  // namespace

BOOST_AUTO_TEST_SUITE(aggregate_dp)

BOOST_AUTO_TEST_CASE(clipping_without_noise_by_hand) {
  DpRound r(kSmall, false);
  auto o = options("mean");
  o.dp.clip = 1.0;
  const auto s = run(r.model, r.paths, r.dir / "g1.h5", o);
  BOOST_TEST(s.dp.enabled);
  BOOST_TEST(s.dp.sigma == 0.0);
  BOOST_TEST(s.dp.m == 3);
  std::vector<double> c;
  for (std::size_t k = 0; k < 3; ++k) {
    const double n = norm_of(r.deltas[k]);
    c.push_back(std::min(1.0, 1.0 / n));
    BOOST_TEST(std::abs(s.contributors[k].norm - n) < 1e-12 * n);
    BOOST_TEST(std::abs(s.contributors[k].dp_factor - c[k]) < 1e-12);
    // A clipped delta has norm C after clipping.
    if (c[k] < 1) BOOST_TEST(std::abs(s.contributors[k].dp_factor * s.contributors[k].norm - 1.0) < 1e-12);
  }
  BOOST_TEST(c[0] == 1.0);  // norms ≈ 0.6, 6, 18 against C = 1: the last two are clipped
  BOOST_TEST(s.dp.clipped == 2);
  const Values got = read_group(r.dir / "g1.h5");
  for (const auto& [name, x] : r.theta)
    for (std::size_t j = 0; j < x.size(); ++j) {
      double d = 0;
      for (std::size_t k = 0; k < 3; ++k) d += c[k] * r.deltas[k].at(name)[j] / 3.0;
      BOOST_TEST(std::abs(got.at(name)[j] - (x[j] - d)) < 1e-6);
    }
  const Attributes a = root_attributes(r.dir / "g1.h5");
  BOOST_TEST(a.get_double("dp_clip").value() == 1.0);
  BOOST_TEST(a.get_int("dp_clients").value() == 3);
}

BOOST_AUTO_TEST_CASE(noise_is_the_seeded_stream_with_sigma_zc_over_m) {
  DpRound r(kBig, true);  // θ = 0, outer SGD lr 1: θ₁ = −Δ̄ exactly
  auto o = options("mean");
  o.dp.clip = 1.0;
  o.dp.noise_multiplier = 0.8;
  o.dp.seed = 7;
  const auto s = run(r.model, r.paths, r.dir / "g1.h5", o);
  const double sigma = 0.8 * 1.0 / 3.0;
  BOOST_TEST(std::abs(s.dp.sigma - sigma) < 1e-15);
  BOOST_TEST(std::abs(root_attributes(r.dir / "g1.h5").get_double("dp_sigma").value() - sigma) < 1e-15);
  const Values got = read_group(r.dir / "g1.h5");
  io::forget_inputs();
  const auto order = io::open_source(r.model)->group("tensors");  // tensor index of the noise stream
  double sq = 0;
  std::size_t count = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::string& name = order[i]->name;
    const std::size_t len = got.at(name).size();
    std::vector<float> clean(len), noisy;
    for (std::size_t j = 0; j < len; ++j) {
      double d = 0;
      for (std::size_t k = 0; k < 3; ++k)
        d += std::min(1.0, 1.0 / norm_of(r.deltas[k])) * r.deltas[k].at(name)[j] / 3.0;
      clean[j] = static_cast<float>(d);
    }
    noisy = clean;
    robust::add_dp_noise(noisy, sigma, 7, 0, i, 0);
    for (std::size_t j = 0; j < len; ++j) {
      // float32 roundings of values ≲ 1.5: a few 1e-7.
      BOOST_TEST(std::abs(-got.at(name)[j] - noisy[j]) < 1e-6);
      const double e = -static_cast<double>(got.at(name)[j]) - clean[j];
      sq += e * e;
      ++count;
    }
  }
  // 5050 draws: the sample standard deviation is within 5% of σ (its own spread is σ/√(2n) ≈ 1%).
  const double sd = std::sqrt(sq / static_cast<double>(count));
  BOOST_TEST(std::abs(sd - sigma) < 0.05 * sigma);
  // Reproducible by seed, different with another.
  run(r.model, r.paths, r.dir / "again.h5", o);
  BOOST_TEST(same_bits(got, read_group(r.dir / "again.h5")));
  o.dp.seed = 8;
  run(r.model, r.paths, r.dir / "other.h5", o);
  BOOST_TEST(!same_bits(got, read_group(r.dir / "other.h5")));
}

BOOST_AUTO_TEST_CASE(adaptive_clip_is_stored_and_updated_by_the_paper_rule) {
  DpRound r(kSmall, false);
  auto o = options("mean");
  o.dp.clip = 1.0;
  o.dp.adaptive = true;
  o.dp.adaptive_options = aggregate::parse_adaptive_clip("quantile=0.5,lr=0.2,count-stddev=0");
  const auto s1 = run(r.model, r.paths, r.dir / "g1.h5", o);
  // Norms ≈ 0.6, 6, 18 against C = 1: one of m = 3 unclipped, b̄ = 1/3, C₁ = exp(−0.2·(1/3 − 0.5)).
  const double c1 = std::exp(-0.2 * (1.0 / 3.0 - 0.5));
  BOOST_TEST(s1.dp.clip == 1.0);
  BOOST_TEST(std::abs(s1.dp.unclipped_fraction - 1.0 / 3.0) < 1e-15);
  BOOST_TEST(std::abs(s1.dp.next_clip - c1) < 1e-15);
  BOOST_TEST(std::abs(state_attributes(r.dir / "g1.h5").get_double("dp_clip").value() - c1) < 1e-15);
  // Round 2 reads C₁ from the model: deltas of norms ≈ 0.1, 0.2, 5 → two unclipped, b̄ = 2/3.
  const std::string base = checksum_of(r.dir / "g1.h5");
  std::vector<std::string> p2;
  const float scale[] = {0.1f, 0.2f, 5.0f};
  for (int k = 0; k < 3; ++k) {
    Values v = random_values(40 + static_cast<std::uint32_t>(k), 1.0f);
    v = scaled(v, static_cast<float>(scale[k] / norm_of(v)));
    p2.push_back(r.dir / ("e" + std::to_string(k) + ".h5"));
    write_delta(p2.back(), v, base, k, 1);
  }
  const auto s2 = run(r.dir / "g1.h5", p2, r.dir / "g2.h5", o);
  BOOST_TEST(std::abs(s2.dp.clip - c1) < 1e-15);
  const double c2 = c1 * std::exp(-0.2 * (2.0 / 3.0 - 0.5));
  BOOST_TEST(std::abs(state_attributes(r.dir / "g2.h5").get_double("dp_clip").value() - c2) < 1e-15);
  BOOST_TEST(s2.dp.clipped == 1);
}

BOOST_AUTO_TEST_CASE(dp_refusals) {
  DpRound r(kSmall, false);
  auto o = options("median");
  o.dp.clip = 1.0;
  test::require_error([&] { run(r.model, r.paths, r.dir / "x.h5", o); }, ErrorKind::Usage,
                      {"differential privacy needs --reduce mean"});
  o = options("mean");
  o.dp.noise_multiplier = 1.0;
  test::require_error([&] { run(r.model, r.paths, r.dir / "x.h5", o); }, ErrorKind::Usage, {"need --dp-clip"});
  test::require_error([] { aggregate::parse_adaptive_clip("quantile=2"); }, ErrorKind::Usage, {"quantile=2"});
  BOOST_TEST(!std::filesystem::exists(r.dir / "x.h5"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(aggregate_qffl)

BOOST_AUTO_TEST_CASE(qfedavg_by_hand) {
  // One tensor v of 2 elements, θ = 0, F = 1 for both: F^q = F^(q−1) = 1, q = 0.2, L = 1/0.1 = 10.
  // Δ₁ = (0.3, 0.4): ‖Δw₁‖² = 100·0.25 = 25, h₁ = 0.2·25 + 10 = 15.
  // Δ₂ = (0, 0.1):   ‖Δw₂‖² = 100·0.01 = 1,  h₂ = 0.2·1 + 10 = 10.2.
  // step = (10·Δ₁ + 10·Δ₂)/25.2 = (3, 5)/25.2.
  TempDir dir("aggregate-qffl");
  const Shapes one = {{"v", {2}}};
  write_model(dir / "g0.h5", {{"v", {0.0f, 0.0f}}}, 0, one);
  const std::string base = checksum_of(dir / "g0.h5");
  write_delta(dir / "a.h5", {{"v", {0.3f, 0.4f}}}, base, 0, 0, 1.0, one);
  write_delta(dir / "b.h5", {{"v", {0.0f, 0.1f}}}, base, 1, 0, 1.0, one);
  const auto s = run(dir / "g0.h5", {dir / "a.h5", dir / "b.h5"}, dir / "g1.h5", options("qfedavg"));
  const Values got = read_group(dir / "g1.h5");
  // float32 inputs (0.3f, 0.4f, 0.1f are within 3e-8 of the decimals): 1e-6 covers them and the roundings.
  BOOST_TEST(std::abs(got.at("v")[0] - (-3.0 / 25.2)) < 1e-6);
  BOOST_TEST(std::abs(got.at("v")[1] - (-5.0 / 25.2)) < 1e-6);
  BOOST_TEST(std::abs(s.contributors[0].weight - 10.0 / 25.2) < 1e-6);
  BOOST_TEST(s.reduce == "qfedavg:q=0.2,lr=0.1");
  const Attributes a = root_attributes(dir / "g1.h5");
  BOOST_TEST(a.get_double("qffl_lipschitz").value() == 10.0);
}

BOOST_AUTO_TEST_CASE(qfedavg_against_its_definition) {
  TempDir dir("aggregate-qffl");
  const Values theta = random_values(1);
  write_model(dir / "g0.h5", theta);
  const std::string base = checksum_of(dir / "g0.h5");
  const double F[] = {0.7, 2.5, 1.3}, q = 1.5, lr = 0.05, L = 1 / lr;
  std::vector<Values> d;
  std::vector<std::string> p;
  for (int k = 0; k < 3; ++k) {
    d.push_back(random_values(60 + static_cast<std::uint32_t>(k), 0.2f));
    p.push_back(dir / ("d" + std::to_string(k) + ".h5"));
    write_delta(p.back(), d.back(), base, k, 0, F[k]);
  }
  run(dir / "g0.h5", p, dir / "g1.h5", options("qfedavg:q=1.5,lr=0.05"));
  double hsum = 0;
  for (int k = 0; k < 3; ++k) {
    const double nw = L * norm_of(d[static_cast<std::size_t>(k)]);
    hsum += q * std::pow(F[k], q - 1) * nw * nw + L * std::pow(F[k], q);
  }
  const Values got = read_group(dir / "g1.h5");
  for (const auto& [name, x] : theta)
    for (std::size_t j = 0; j < x.size(); ++j) {
      double step = 0;
      for (int k = 0; k < 3; ++k) step += std::pow(F[k], q) * L * d[static_cast<std::size_t>(k)].at(name)[j] / hsum;
      BOOST_TEST(std::abs(got.at(name)[j] - (x[j] - step)) < 1e-6);
    }
}

BOOST_AUTO_TEST_CASE(qfedavg_needs_loss_first) {
  TempDir dir("aggregate-qffl");
  write_model(dir / "g0.h5", random_values(1));
  write_delta(dir / "d.h5", random_values(2), checksum_of(dir / "g0.h5"), 0);
  test::require_error([&] { run(dir / "g0.h5", {dir / "d.h5"}, dir / "g1.h5", options("qfedavg")); },
                      ErrorKind::BadInput, {"d.h5", "loss_first"});
  BOOST_TEST(!std::filesystem::exists(dir / "g1.h5"));
}

BOOST_AUTO_TEST_SUITE_END()
