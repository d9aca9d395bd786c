// Consensus distance: against a direct two-pass computation, zero for identical models,
// independent of the block size, and its refusals.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "../support.hpp"
#include "helpers.hpp"
#include "loco/core/rng.hpp"
#include "loco/eval/consensus.hpp"

using namespace loco;
using namespace loco::gossip::test;

BOOST_AUTO_TEST_SUITE(consensus)

BOOST_AUTO_TEST_CASE(matches_a_direct_computation) {
  loco::test::TempDir d("consensus");
  const int n = 5;
  std::vector<std::string> paths;
  std::vector<std::vector<float>> a(n), b(n);
  for (int i = 0; i < n; ++i) {
    a[i].resize(64 * 9);
    b[i].resize(5);
    Rng rng(3, {static_cast<std::uint64_t>(i)});
    for (auto& v : a[i]) v = rng.normal() + 10.0f;  // an offset, so the mean matters
    for (auto& v : b[i]) v = rng.uniform();
    paths.push_back(d / ("m" + std::to_string(i) + ".h5"));
    write_model(paths.back(),
                {{"a", {64, 9}, a[i]}, {"b", {5}, b[i]}, {"count", {1}, {static_cast<float>(i)}, DType::I32}}, i);
  }
  // Two passes in double: the mean, then the squared distances.
  double sum = 0, mean_sq = 0;
  for (const auto* x : {&a, &b}) {
    for (std::size_t e = 0; e < (*x)[0].size(); ++e) {
      double m = 0;
      for (int i = 0; i < n; ++i) m += (*x)[i][e];
      m /= n;
      mean_sq += m * m;
      for (int i = 0; i < n; ++i) sum += ((*x)[i][e] - m) * ((*x)[i][e] - m);
    }
  }
  const double want = sum / n;
  for (std::size_t block : {std::size_t{1} << 20, std::size_t{36}, std::size_t{4}}) {
    const auto c = eval::consensus_distance(paths, block);
    BOOST_CHECK_EQUAL(c.models, n);
    BOOST_CHECK_EQUAL(c.parameters, 64 * 9 + 5);  // the int32 tensor is not compared
    // Welford and two passes agree up to a few roundings per element: relative ~ n·eps.
    BOOST_CHECK_CLOSE(c.distance_sq, want, 1e-10);
    BOOST_CHECK_CLOSE(c.distance, std::sqrt(want), 1e-10);
    BOOST_CHECK_CLOSE(c.mean_norm, std::sqrt(mean_sq), 1e-10);
  }
  // Identical models: exactly 0. One model: 0.
  BOOST_CHECK_EQUAL(eval::consensus_distance({paths[0]}).distance_sq, 0.0);
  std::filesystem::copy_file(paths[1], d / "copy.h5");
  BOOST_CHECK_EQUAL(eval::consensus_distance({paths[1], d / "copy.h5"}).distance_sq, 0.0);
  // Two models: Ξ² = ‖θ₁ − θ₂‖² / 4 (each is half the difference from the mean).
  write_model(d / "x.h5", {{"a", {2}, {1, 2}}}, 0);
  write_model(d / "y.h5", {{"a", {2}, {4, -2}}}, 1);
  BOOST_CHECK_EQUAL(eval::consensus_distance({d / "x.h5", d / "y.h5"}).distance_sq, (9.0 + 16.0) / 4);
}

BOOST_AUTO_TEST_CASE(refusals) {
  loco::test::TempDir d("consensus");
  write_model(d / "x.h5", {{"a", {2}, {1, 2}}}, 0);
  write_model(d / "s.h5", {{"a", {3}, {1, 2, 3}}}, 1);
  write_model(d / "c.h5", {{"a", {2}, {1, 2}}}, 1, 3, R"({"arch":"other"})");
  write_model(d / "nan.h5", {{"a", {2}, {1, NAN}}}, 1);
  test::require_error([&] { eval::consensus_distance({}); }, ErrorKind::Usage, {"at least one model"});
  test::require_error([&] { eval::consensus_distance({d / "x.h5", d / "x.h5"}); }, ErrorKind::Usage, {"listed twice"});
  test::require_error(
      [&] {
        eval::consensus_distance({d / "x.h5", d / "s.h5"});
      },
      ErrorKind::BadInput, {"tensor a: shape [3]", "s.h5"});
  test::require_error([&] { eval::consensus_distance({d / "x.h5", d / "c.h5"}); }, ErrorKind::BadInput, {"c.h5"});
  test::require_error(
      [&] {
        eval::consensus_distance({d / "x.h5", d / "nan.h5"});
      },
      ErrorKind::Numeric, {"nan.h5", "element 1"});
}

BOOST_AUTO_TEST_SUITE_END()
