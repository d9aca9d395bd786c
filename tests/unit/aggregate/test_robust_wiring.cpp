// Robust rules in loco::aggregate: the coordinate median and trimmed mean against per-coordinate sorts,
// Krum's selection, a Byzantine delta that pulls the mean but not the median, centered clipping's
// centre carried across two rounds (hand-computed), non-finite deltas dropped before the robust pass,
// block-size independence, the plan in the output and the summary, and refusals.
#include <boost/test/unit_test.hpp>

#include "fixtures.hpp"
#include "support.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "loco/core/error.hpp"
#include "loco/robust/reducer.hpp"

using namespace loco;
using namespace loco::aggtest;
using loco::test::TempDir;

namespace {

// The delta files d0..d{n-1} (workers 0..n-1) of random values around a common direction, on g0.h5.
struct Round {
  TempDir dir{"robust-wiring"};
  Values theta = random_values(1);
  std::vector<Values> deltas;
  std::vector<std::string> paths;
  std::string model = dir / "g0.h5";
  std::string base;

  explicit Round(int n) {
    write_model(model, theta);
    base = checksum_of(model);
    for (int k = 0; k < n; ++k) add(random_values(100 + static_cast<std::uint32_t>(k), 0.1f));
  }
  void add(const Values& v) {
    const auto k = static_cast<std::int64_t>(deltas.size());
    deltas.push_back(v);
    paths.push_back(dir / ("d" + std::to_string(k) + ".h5"));
    write_delta(paths.back(), v, base, k);
  }
};

// Per coordinate: the sorted values of the deltas.
std::vector<float> sorted_at(const std::vector<Values>& ds, const std::string& name, std::size_t j) {
  std::vector<float> v;
  for (const auto& d : ds) v.push_back(d.at(name)[j]);
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(robust_wiring)

BOOST_AUTO_TEST_CASE(median_and_trimmed_mean_match_sorted_coordinates) {
  Round r(5);
  const std::string out = r.dir / "g1.h5";
  // Outer SGD lr 1: θ₁ = θ₀ − Δ̄ (one float32 subtraction of the float32 Δ̄).
  run(r.model, r.paths, out, options("median"));
  Values got = read_group(out);
  for (const auto& [name, x] : r.theta)
    for (std::size_t j = 0; j < x.size(); ++j) BOOST_TEST(got[name][j] == x[j] - sorted_at(r.deltas, name, j)[2]);
  BOOST_TEST(root_attributes(out).get_string("reduction").value() == "median");

  // trimmed-mean:beta=0.2 on 5: one value cut at each end, the mean of the middle three in float64.
  run(r.model, r.paths, out, options("trimmed-mean:beta=0.2"));
  got = read_group(out);
  for (const auto& [name, x] : r.theta)
    for (std::size_t j = 0; j < x.size(); ++j) {
      const auto s = sorted_at(r.deltas, name, j);
      // (the reducer multiplies by 1/3: up to one float32 rounding apart, values ≤ 1.1: 2⁻²³·1.1 < 3e-7)
      const float mid = static_cast<float>((static_cast<double>(s[1]) + s[2] + s[3]) / 3.0);
      BOOST_TEST(std::abs(got[name][j] - (x[j] - mid)) < 3e-7f);
    }
}

BOOST_AUTO_TEST_CASE(even_count_median_is_the_mean_of_the_middle_two) {
  Round r(4);
  const std::string out = r.dir / "g1.h5";
  run(r.model, r.paths, out, options("median"));
  const Values got = read_group(out);
  for (const auto& [name, x] : r.theta)
    for (std::size_t j = 0; j < x.size(); ++j) {
      const auto s = sorted_at(r.deltas, name, j);
      const float m = static_cast<float>(0.5 * (static_cast<double>(s[1]) + static_cast<double>(s[2])));
      BOOST_TEST(got.at(name)[j] == x[j] - m);
    }
}

BOOST_AUTO_TEST_CASE(a_byzantine_delta_pulls_the_mean_but_not_the_median) {
  Round r(4);
  r.add(scaled(random_values(7), -1000.0f));  // worker 4: huge, opposite
  const std::string mean_out = r.dir / "mean.h5", med_out = r.dir / "median.h5";
  run(r.model, r.paths, mean_out, options("mean"));
  run(r.model, r.paths, med_out, options("median"));
  const Values m = read_group(mean_out), md = read_group(med_out);
  double mean_shift = 0;
  for (const auto& [name, x] : r.theta)
    for (std::size_t j = 0; j < x.size(); ++j) {
      mean_shift = std::max(mean_shift, std::abs(static_cast<double>(m.at(name)[j]) - x[j]));
      // The median of 4 honest values and one outlier lies between the honest extremes.
      std::vector<float> honest;
      for (int k = 0; k < 4; ++k) honest.push_back(r.deltas[static_cast<std::size_t>(k)].at(name)[j]);
      const float step = x[j] - md.at(name)[j];
      const auto [lo, hi] = std::minmax_element(honest.begin(), honest.end());
      BOOST_TEST(step >= *lo - 1e-6f);
      BOOST_TEST(step <= *hi + 1e-6f);
    }
  BOOST_TEST(mean_shift > 10.0);  // the honest deltas are ≤ 0.1; the mean moves by ~ 1000/5 · |u|
}

BOOST_AUTO_TEST_CASE(krum_selects_an_honest_delta_and_records_its_plan) {
  Round r(6);
  r.add(scaled(random_values(9), 50.0f));  // worker 6, far away
  const std::string out = r.dir / "g1.h5";
  const auto s = run(r.model, r.paths, out, options("krum:f=2"));
  // n = 7 ≥ 2f + 3; Krum outputs one input exactly: θ₁ = θ₀ − x_sel.
  std::int64_t picked = -1;
  for (std::size_t k = 0; k < s.contributors.size(); ++k)
    if (s.contributors[k].selected) {
      BOOST_TEST(picked == -1);
      picked = static_cast<std::int64_t>(k);
    }
  BOOST_REQUIRE(picked >= 0);
  BOOST_TEST(picked != 6);
  const Values got = read_group(out);
  for (const auto& [name, x] : r.theta)
    for (std::size_t j = 0; j < x.size(); ++j)
      BOOST_TEST(got.at(name)[j] == x[j] - r.deltas[static_cast<std::size_t>(picked)].at(name)[j]);
  const Attributes a = root_attributes(out);
  const auto* sel = a.find("robust_selected");
  BOOST_REQUIRE(sel);
  BOOST_TEST((std::get<std::vector<std::int64_t>>(*sel) == std::vector<std::int64_t>{picked}));
  BOOST_TEST(a.get_string("reduction").value() == "krum:f=2");
  BOOST_TEST(s.robust_passes == 2);
  BOOST_TEST(s.robust_coefficients.size() == 7u);
  BOOST_TEST(s.robust_coefficients[static_cast<std::size_t>(picked)] == 1.0);
  // Krum's choice against the sum of squared distances to the n − f − 2 = 3 nearest, by hand.
  std::vector<std::vector<float>> x;
  for (const auto& d : r.deltas) x.push_back(flat(d));
  std::vector<double> score;
  for (std::size_t i = 0; i < x.size(); ++i) {
    std::vector<double> dist;
    for (std::size_t j = 0; j < x.size(); ++j) {
      if (j == i) continue;
      double d2 = 0;
      for (std::size_t e = 0; e < x[i].size(); ++e) d2 += std::pow(static_cast<double>(x[i][e]) - x[j][e], 2);
      dist.push_back(d2);
    }
    std::sort(dist.begin(), dist.end());
    score.push_back(dist[0] + dist[1] + dist[2]);
  }
  const auto best = std::min_element(score.begin(), score.end()) - score.begin();
  BOOST_TEST(best == picked);
}

BOOST_AUTO_TEST_CASE(pre_aggregators_compose_and_are_recorded) {
  Round r(7);
  const std::string out = r.dir / "g1.h5";
  const auto s = run(r.model, r.paths, out, options("nnm+krum:f=2"));
  BOOST_TEST(s.reduce == "nnm:f=2+krum:f=2");
  BOOST_TEST(root_attributes(out).get_string("reduction").value() == "nnm:f=2+krum:f=2");
  // Linear plan: Δ̄ = Σ a_k x_k with a row of NNM's mixing (n − f = 5 inputs of 1/5 each).
  double sum = 0;
  int nonzero = 0;
  for (double c : s.robust_coefficients) sum += c, nonzero += c != 0 ? 1 : 0;
  BOOST_TEST(std::abs(sum - 1.0) < 1e-12);
  BOOST_TEST(nonzero == 5);
  const Values got = read_group(out);
  for (const auto& [name, x] : r.theta)
    for (std::size_t j = 0; j < x.size(); ++j) {
      double d = 0;
      for (std::size_t k = 0; k < 7; ++k) d += s.robust_coefficients[k] * r.deltas[k].at(name)[j];
      BOOST_TEST(std::abs(got.at(name)[j] - (x[j] - d)) < 1e-6);
    }
  // Bucketing draws from (seed, round): the same seed gives the same bits, and the plan is recorded.
  auto o = options("bucket:s=2+median");
  o.seed = 5;
  run(r.model, r.paths, r.dir / "a.h5", o);
  run(r.model, r.paths, r.dir / "b.h5", o);
  BOOST_TEST(same_bits(read_group(r.dir / "a.h5"), read_group(r.dir / "b.h5")));
}

BOOST_AUTO_TEST_CASE(block_size_does_not_change_a_bit) {
  Round r(7);
  for (const std::string rule : {"median", "krum:f=1", "geomedian", "bulyan:f=1", "centered-clip:tau=0.2,iters=2"}) {
    auto o = options(rule, "nesterov");
    run(r.model, r.paths, r.dir / "a.h5", o);
    o.block_bytes = 12;  // one row of w per block
    run(r.model, r.paths, r.dir / "b.h5", o);
    BOOST_TEST_INFO(rule);
    BOOST_TEST(same_bits(read_group(r.dir / "a.h5"), read_group(r.dir / "b.h5")));
    BOOST_TEST(same_bits(read_group(r.dir / "a.h5", "state/momentum"), read_group(r.dir / "b.h5", "state/momentum")));
  }
}

BOOST_AUTO_TEST_CASE(centered_clipping_carries_its_centre_across_rounds) {
  Round r(3);
  const std::string g1 = r.dir / "g1.h5", g2 = r.dir / "g2.h5";
  // Round 1, no centre: v₀ = 0; tau large, one iteration: v₁ = mean(x).
  run(r.model, r.paths, g1, options("centered-clip:tau=100,iters=1"));
  const Values c1 = read_group(g1, "state/robust_center"), t1 = read_group(g1);
  for (const auto& [name, x] : r.theta)
    for (std::size_t j = 0; j < x.size(); ++j) {
      const double mean =
          (static_cast<double>(r.deltas[0].at(name)[j]) + r.deltas[1].at(name)[j] + r.deltas[2].at(name)[j]) / 3.0;
      BOOST_TEST(std::abs(c1.at(name)[j] - mean) < 1e-7);
      BOOST_TEST(t1.at(name)[j] == x[j] - c1.at(name)[j]);  // the outer step used the centre as Δ̄
    }
  // Round 2 from g1 with new deltas and a small tau: v₂ = v₁ + (1/3) Σ (x_i − v₁)·min(1, τ/‖x_i − v₁‖).
  const std::string base1 = checksum_of(g1);
  std::vector<Values> d2;
  std::vector<std::string> p2;
  for (int k = 0; k < 3; ++k) {
    d2.push_back(random_values(300 + static_cast<std::uint32_t>(k), 0.5f));
    p2.push_back(r.dir / ("e" + std::to_string(k) + ".h5"));
    write_delta(p2.back(), d2.back(), base1, k, 1);
  }
  const double tau = 0.3;
  run(g1, p2, g2, options("centered-clip:tau=0.3,iters=1"));
  const Values c2 = read_group(g2, "state/robust_center");
  std::vector<double> factor;
  for (const auto& d : d2) {
    double sq = 0;
    for (const auto& [name, x] : d)
      for (std::size_t j = 0; j < x.size(); ++j) sq += std::pow(static_cast<double>(x[j]) - c1.at(name)[j], 2);
    factor.push_back(std::min(1.0, tau / std::sqrt(sq)));
  }
  BOOST_TEST(*std::min_element(factor.begin(), factor.end()) < 1.0);  // the radius bites
  for (const auto& [name, v] : c1)
    for (std::size_t j = 0; j < v.size(); ++j) {
      double want = v[j];
      for (std::size_t k = 0; k < 3; ++k) want += factor[k] * (static_cast<double>(d2[k].at(name)[j]) - v[j]) / 3.0;
      BOOST_TEST(std::abs(c2.at(name)[j] - want) < 1e-6);
    }
}

BOOST_AUTO_TEST_CASE(non_finite_deltas_are_dropped_before_the_robust_pass) {
  Round r(3);
  Values bad = random_values(50, 0.1f);
  bad["w"][4] = std::numeric_limits<float>::infinity();
  r.add(bad);
  auto s = run(r.model, r.paths, r.dir / "with.h5", options("median"));
  BOOST_REQUIRE(s.dropped.size() == 1u);
  BOOST_TEST(s.dropped[0].path == r.paths[3]);
  BOOST_TEST(s.dropped[0].reason.find("non-finite") != std::string::npos);
  run(r.model, {r.paths[0], r.paths[1], r.paths[2]}, r.dir / "without.h5", options("median"));
  BOOST_TEST(same_bits(read_group(r.dir / "with.h5"), read_group(r.dir / "without.h5")));
  // With a Gram pass too (geomedian).
  s = run(r.model, r.paths, r.dir / "with.h5", options("geomedian"));
  BOOST_TEST(s.dropped.size() == 1u);
  run(r.model, {r.paths[0], r.paths[1], r.paths[2]}, r.dir / "without.h5", options("geomedian"));
  BOOST_TEST(same_bits(read_group(r.dir / "with.h5"), read_group(r.dir / "without.h5")));
}

BOOST_AUTO_TEST_CASE(refusals) {
  Round r(3);
  // Krum needs n ≥ 2f + 3.
  test::require_error([&] { run(r.model, r.paths, r.dir / "x.h5", options("krum:f=1")); }, ErrorKind::Usage,
                      {"krum:f=1 needs n ≥ 2f+3 = 5"});
  test::require_error([&] { options("medain"); }, ErrorKind::Usage, {"unknown reducer 'medain'"});
  auto o = options("median");
  o.clip = aggregate::Clip::MedianNorm;
  test::require_error([&] { run(r.model, r.paths, r.dir / "x.h5", o); }, ErrorKind::Usage, {"--clip median-norm"});
  BOOST_TEST(!std::filesystem::exists(r.dir / "x.h5"));
}

BOOST_AUTO_TEST_SUITE_END()
