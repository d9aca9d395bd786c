// Tests of the terngrad codec against TernGrad's definition (Wen et al. 2017, §3; reference
// wenwei202/terngrad bingrad_common.py): values in {−s, 0, s}, s = max|clipped g|, clipping to c·σ by
// hand, unbiasedness over many seeds within a bound from the Bernoulli variance, bit-identical reruns.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "loco/compress/codec.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"

namespace lc = loco::compress;
using loco::Tensor;

namespace {

std::vector<float> decoded(const lc::Codec& c, const std::vector<float>& x, const lc::RandomKey& key) {
  const Tensor y = lc::decode(c.encode(Tensor::from_floats({static_cast<std::int64_t>(x.size())}, x), key));
  return {y.f32().begin(), y.f32().end()};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(terngrad)

BOOST_AUTO_TEST_CASE(spec_and_bad_parameters) {
  BOOST_TEST(lc::Codec::parse("terngrad").spec() == "terngrad:clip=2.5");
  BOOST_TEST(lc::Codec::parse("topk:k=4+terngrad:clip=3").spec() == "topk:k=4,tile=0+terngrad:clip=3");
  for (const char* bad : {"terngrad:clip=0", "terngrad:clip=-1", "terngrad:levels=3"})
    BOOST_CHECK_THROW(lc::Codec::parse(bad), loco::Error);
}

BOOST_AUTO_TEST_CASE(clipping_hand_computed) {
  // x = {10, 0 ×8, −10}: mean 0, σ = √(200/10) = √20. clip = 1: both ends clip to ±√20 = s, which
  // Bernoulli(|g|/s = 1) always keeps; clip = 2.5: 2.5·√20 ≈ 11.2 > 10, so s = 10.
  std::vector<float> x(10, 0.0f);
  x[0] = 10, x[9] = -10;
  const float t = static_cast<float>(std::sqrt(20.0));
  std::vector<float> want(10, 0.0f);
  want[0] = t, want[9] = -t;
  BOOST_TEST(decoded(lc::Codec::parse("terngrad:clip=1"), x, {1, 2, 3}) == want, boost::test_tools::per_element());
  BOOST_TEST(decoded(lc::Codec::parse("terngrad"), x, {1, 2, 3}) == x, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(ternary_values_and_unbiased_over_seeds) {
  // x = {3, 1, −1, −3, 0.5}: mean 0.1, σ = √(20.2/5) ≈ 2.01; clip = 1 clips ±3 to ±σ, so s = σ. Each
  // decoded element is s·sign·b with E = the clipped element and variance |g|(s − |g|); the mean of N
  // draws is within 5 standard errors of it.
  const std::vector<float> x = {3, 1, -1, -3, 0.5f};
  const double sigma = std::sqrt(20.2 / 5);
  const float s = lc::Codec::parse("terngrad:clip=1").encode(Tensor::from_floats({5}, x), {}).get("scale").f32()[0];
  BOOST_TEST(std::fabs(s - sigma) <= 1e-6 * sigma);
  std::vector<double> clipped;
  for (float v : x) clipped.push_back(std::clamp<double>(v, -s, s));
  const auto c = lc::Codec::parse("terngrad:clip=1");
  const int n = 20000;
  std::vector<double> avg(x.size(), 0.0);
  bool ternary = true;
  for (int r = 0; r < n; ++r) {
    const auto y = decoded(c, x, lc::random_key(7, r, 0, "w"));
    for (std::size_t i = 0; i < y.size(); ++i) {
      ternary = ternary && (y[i] == 0.0f || y[i] == s || y[i] == -s);
      avg[i] += y[i] / n;
    }
  }
  BOOST_TEST(ternary);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double var = std::fabs(clipped[i]) * (s - std::fabs(clipped[i]));
    BOOST_TEST(std::fabs(avg[i] - clipped[i]) <= 5 * std::sqrt(var / n) + 1e-6, "element " << i);
  }
}

BOOST_AUTO_TEST_CASE(one_seed_gives_the_same_bits) {
  std::vector<float> x(10000);
  loco::fill_normal(x, 0.0f, 1.0f, 9, 4);
  const auto c = lc::Codec::parse("terngrad");
  const Tensor in = Tensor::from_floats({10000}, x);
  const auto key = lc::random_key(3, 1, 2, "layer");
  const auto a = c.encode(in, key), b = c.encode(in, key);
  const auto pa = a.get("packed").bytes(), pb = b.get("packed").bytes();
  BOOST_TEST(std::equal(pa.begin(), pa.end(), pb.begin(), pb.end()));
  const auto other = c.encode(in, lc::random_key(3, 1, 3, "layer")).get("packed").bytes();
  BOOST_TEST(!std::equal(pa.begin(), pa.end(), other.begin(), other.end()));  // another worker draws anew
  BOOST_TEST(a.payload_bytes() == 2500 + 4);
}

BOOST_AUTO_TEST_CASE(zero_and_empty_tensors) {
  const auto c = lc::Codec::parse("terngrad");
  BOOST_TEST(decoded(c, {0, 0, 0}, {}) == (std::vector<float>{0, 0, 0}), boost::test_tools::per_element());
  BOOST_TEST(decoded(c, {}, {}).empty());
}

BOOST_AUTO_TEST_SUITE_END()
