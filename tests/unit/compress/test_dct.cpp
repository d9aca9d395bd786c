// Tests of dct_topk's 2-D tiles (DeMo's transform): the tile-size rule, the domain of 1-D, 2-D and
// higher-rank tensors, Parseval and exact inversion per tile, hand-computed coefficients, a golden
// vector from an independent numpy reference, top-k per tile, the coefficient view and inverse the
// aggregator uses (contributor mean of two encodings against a float64 reference), and the 1-D
// default left unchanged.
#include <boost/test/unit_test.hpp>

#include <tbb/global_control.h>

#include <cfloat>
#include <cmath>
#include <numbers>
#include <vector>

#include "loco/compress/codec.hpp"
#include "loco/compress/dct.hpp"
#include "loco/core/checksum.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"

namespace lc = loco::compress;
using loco::DType;
using loco::ErrorKind;
using loco::Shape;
using loco::Tensor;

namespace {

std::vector<float> normal(std::int64_t n, std::uint64_t seed) {
  std::vector<float> v(static_cast<std::size_t>(n));
  loco::fill_normal(v, 0.0f, 1.0f, seed, 11);
  return v;
}

Tensor tensor(const Shape& shape, const std::vector<float>& v) { return Tensor::from_floats(shape, v); }

bool throws_kind(const std::function<void()>& f, ErrorKind k) {
  try {
    f();
  } catch (const loco::Error& e) {
    return e.kind() == k;
  }
  return false;
}

lc::StageSpec stage(const std::string& spec) { return lc::parse_spec(spec).front(); }

// The orthonormal DCT-II basis in double: C[k][n].
double basis(std::int64_t N, std::int64_t k, std::int64_t n) {
  const double s = k == 0 ? std::sqrt(1.0 / N) : std::sqrt(2.0 / N);
  return s * std::cos(std::numbers::pi * (n + 0.5) * k / N);
}

// Element (r, c) of the matrix whose single tile-(ty, tx) coefficient (a, b) is 1, in double.
double atom(std::int64_t s1, std::int64_t s2, std::int64_t a, std::int64_t b, std::int64_t r, std::int64_t c) {
  return basis(s1, a, r) * basis(s2, b, c);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(dct_2d)

BOOST_AUTO_TEST_CASE(tile_size_is_the_largest_divisor_up_to_chunk) {
  // DeMo's _get_smaller_split: n itself when n ≤ chunk; 1 for a prime above chunk.
  BOOST_TEST(lc::dct_tile_size(384, 64) == 64);
  BOOST_TEST(lc::dct_tile_size(100, 64) == 50);
  BOOST_TEST(lc::dct_tile_size(97, 64) == 1);
  BOOST_TEST(lc::dct_tile_size(96, 64) == 48);
  BOOST_TEST(lc::dct_tile_size(32, 64) == 32);
  BOOST_TEST(lc::dct_tile_size(64, 64) == 64);
  BOOST_TEST(lc::dct_tile_size(1, 64) == 1);
  BOOST_TEST(lc::dct_tile_size(50257, 64) == 29);  // 50257 = 29 · 1733
  BOOST_TEST(throws_kind([] { lc::dct_tile_size(0, 64); }, ErrorKind::Usage));
}

BOOST_AUTO_TEST_CASE(domains_of_each_rank) {
  const auto s = stage("dct_topk:chunk=64,k=32,tile=2d");
  auto d = lc::dct_domain(s, {96, 32});
  BOOST_TEST(d.tile_rows == 48);
  BOOST_TEST(d.tile_cols == 32);
  BOOST_TEST(d.tiles == 2);
  BOOST_TEST(d.tile == 48 * 32);
  BOOST_TEST(d.kept == 32);
  d = lc::dct_domain(s, {100});  // 1-D: pieces of the largest divisor ≤ 64
  BOOST_TEST((d.tile_rows == 1 && d.tile_cols == 50 && d.tiles == 2 && d.kept == 32));
  d = lc::dct_domain(s, {97});  // a prime: tiles of one element, k clamped to 1
  BOOST_TEST((d.tile == 1 && d.tiles == 97 && d.kept == 1));
  d = lc::dct_domain(s, {16});  // k clamped to the tile
  BOOST_TEST((d.tile == 16 && d.tiles == 1 && d.kept == 16));
  d = lc::dct_domain(s, {4, 6, 10});  // rank 3: shape[0] × the rest
  BOOST_TEST((d.rows == 4 && d.cols == 60 && d.tile_rows == 4 && d.tile_cols == 60 && d.tiles == 1));
  d = lc::dct_domain(s, {});  // a scalar is one 1 × 1 tile
  BOOST_TEST((d.tiles == 1 && d.tile == 1 && d.kept == 1));
  const auto one = lc::dct_domain(stage("dct_topk:chunk=64,k=4"), {1000});  // 1d: chunk-padded
  BOOST_TEST((one.tiles == 16 && one.tile == 64 && one.kept == 4 && one.size() == 1024));
  BOOST_TEST(throws_kind([] { lc::dct_domain(stage("topk:k=3"), {10}); }, ErrorKind::Usage));
}

BOOST_AUTO_TEST_CASE(parseval_per_tile_and_exact_with_every_coefficient) {
  // 96 × 128 at chunk 64: 2 × 2 tiles of 48 × 64. With k ≥ the tile every coefficient is kept.
  const Shape shape{96, 128};
  const auto x = normal(96 * 128, 31);
  const auto c = lc::Codec::parse("dct_topk:chunk=64,k=4096,tile=2d");
  const auto e = c.encode(tensor(shape, x), {});
  const auto v = e.get("values").f32();
  const auto ix = e.get("indices").as<std::uint16_t>();
  BOOST_TEST(v.size() == 96u * 128u);
  for (int t = 0; t < 4; ++t) {  // tiles row-major over the 2 × 2 grid
    const int ty = t / 2, tx = t % 2;
    double ex = 0, ec = 0;
    for (int r = 0; r < 48; ++r)
      for (int col = 0; col < 64; ++col) {
        const double xv = x[(ty * 48 + r) * 128 + tx * 64 + col];
        ex += xv * xv;
      }
    for (int j = 0; j < 48 * 64; ++j) {
      BOOST_TEST_REQUIRE(ix[t * 3072 + j] == j);  // k = tile: indices in order
      ec += static_cast<double>(v[t * 3072 + j]) * v[t * 3072 + j];
    }
    // Two 64-term float32 transforms: relative energy error ≤ 2·2·64·ε ≈ 3e-5.
    BOOST_TEST(ec == ex, boost::test_tools::tolerance(4 * 64 * static_cast<double>(FLT_EPSILON)));
  }
  const auto y = lc::decode(e);
  BOOST_TEST((y.shape() == shape));
  // Four 1-D orthonormal passes of ≤ 64 terms: each element within 4·64·ε·‖tile‖ (‖tile‖ ≈ 55).
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(y.f32()[i]) - x[i]));
  BOOST_TEST(worst <= 4 * 64 * FLT_EPSILON * std::sqrt(48.0 * 64.0 * 1.5));
}

BOOST_AUTO_TEST_CASE(hand_computed_coefficients) {
  // A constant 4 × 6 matrix is one tile with only the DC coefficient c·√24.
  std::vector<float> x(24, 2.0f);
  auto e = lc::Codec::parse("dct_topk:chunk=64,k=1,tile=2d").encode(tensor({4, 6}, x), {});
  BOOST_TEST(e.get("indices").as<std::uint16_t>()[0] == 0);
  BOOST_TEST(e.get("values").f32()[0] == 2.0f * std::sqrt(24.0f), boost::test_tools::tolerance(1e-6f));
  // The separable cosine cos(π(r+½)/4)·cos(π(c+½)·2/6) is basis atom (1, 2) scaled by 1/(√(2/4)·√(2/6)):
  // one coefficient, at index 1·6 + 2 = 8, of value √(4/2)·√(6/2) = √6.
  for (int r = 0; r < 4; ++r)
    for (int col = 0; col < 6; ++col)
      x[r * 6 + col] = static_cast<float>(std::cos(std::numbers::pi * (r + 0.5) / 4) *
                                          std::cos(std::numbers::pi * (col + 0.5) * 2 / 6));
  e = lc::Codec::parse("dct_topk:chunk=64,k=1,tile=2d").encode(tensor({4, 6}, x), {});
  BOOST_TEST(e.get("indices").as<std::uint16_t>()[0] == 8);
  BOOST_TEST(e.get("values").f32()[0] == std::sqrt(6.0f), boost::test_tools::tolerance(1e-5f));
  const auto y = lc::decode(e);
  for (int i = 0; i < 24; ++i) BOOST_TEST(y.f32()[i] == x[i], boost::test_tools::tolerance(1e-5f));
  // The spec records the tiling; decoding needs nothing else.
  BOOST_TEST(e.attrs.get_string("spec").value() == "dct_topk:chunk=64,k=1,tile=2d");
  BOOST_TEST(e.attrs.get_string("tile").value() == "2d");
}

BOOST_AUTO_TEST_CASE(golden_vector_against_numpy) {
  // x_i = sin(0.7i) + 0.05i − 0.4·cos(1.9i), i < 60, as 6 × 10 at chunk 4: tiles 3 × 2 (6 → 3,
  // 10 → 2), a 2 × 5 grid, k = 2 per tile. Expected indices and values from an independent float64
  // numpy reference (einsum 'ab,yxbd,cd->yxac' with DeMo's tile order).
  std::vector<float> x(60);
  for (int i = 0; i < 60; ++i) x[i] = static_cast<float>(std::sin(0.7 * i) + 0.05 * i - 0.4 * std::cos(1.9 * i));
  const auto e = lc::Codec::parse("dct_topk:chunk=4,k=2,tile=2d").encode(tensor({6, 10}, x), {});
  const std::vector<std::uint16_t> want_idx = {0, 2, 0, 1, 0, 3, 2, 3, 0, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0, 1};
  const std::vector<float> want_val = {2.7139552f,  -1.6582394f, 2.6268251f,  1.2640465f,   0.92366782f,
                                       0.22581202f, -1.6452144f, 0.48038422f, 3.4549419f,   -2.1056444f,
                                       4.8040561f,  0.1610465f,  2.9528711f,  -0.82678929f, 5.4893107f,
                                       -2.2097287f, 6.9138572f,  -1.5482985f, 7.3224686f,   1.1989181f};
  const auto ix = e.get("indices").as<std::uint16_t>();
  const auto v = e.get("values").f32();
  BOOST_TEST_REQUIRE(ix.size() == want_idx.size());
  for (std::size_t j = 0; j < want_idx.size(); ++j) {
    BOOST_TEST(ix[j] == want_idx[j]);
    // Two 3- and 2-term float32 passes over values ≤ 3.4: error ≤ ~10 ulp of 8.
    BOOST_TEST(std::fabs(v[j] - want_val[j]) <= 10 * 8 * FLT_EPSILON);
  }
}

BOOST_AUTO_TEST_CASE(topk_per_tile_contracts_and_one_d_pieces) {
  // Orthonormal per tile, top-k per tile: ‖C(x) − x‖² ≤ Σ_tiles (1 − kept/tile)‖x_tile‖² — here
  // one ratio for all tiles.
  auto check = [](const Shape& shape, const std::string& spec, double ratio) {
    const auto x = normal(loco::shape_numel(shape), 33);
    const auto c = lc::Codec::parse(spec);
    const auto y = lc::decode(c.encode(tensor(shape, x), {}));
    double err = 0, norm = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      err += (static_cast<double>(y.f32()[i]) - x[i]) * (static_cast<double>(y.f32()[i]) - x[i]);
      norm += static_cast<double>(x[i]) * x[i];
    }
    BOOST_TEST(err <= (1 - ratio) * norm * (1 + 1e-5), spec);
    BOOST_TEST(err > 0.0, spec);
  };
  check({256, 96}, "dct_topk:chunk=64,k=32,tile=2d", 32.0 / (64 * 48));
  check({100}, "dct_topk:chunk=64,k=32,tile=2d", 32.0 / 50);
  check({384, 3, 2}, "dct_topk:chunk=64,k=5,tile=2d", 5.0 / (64 * 6));
  // A prime-length vector: tiles of one element, every element kept exactly.
  const auto x = normal(97, 34);
  const auto y = lc::decode(lc::Codec::parse("dct_topk:chunk=64,k=32,tile=2d").encode(tensor({97}, x), {}));
  for (int i = 0; i < 97; ++i) BOOST_TEST_REQUIRE(y.f32()[i] == x[i]);
}

BOOST_AUTO_TEST_CASE(same_bits_at_any_thread_count) {
  const auto x = normal(384 * 200, 35);
  const auto c = lc::Codec::parse("dct_topk:chunk=64,k=32,tile=2d");
  std::uint64_t one = 0, many = 0, dec1 = 0, decn = 0;
  {
    tbb::global_control g(tbb::global_control::max_allowed_parallelism, 1);
    const auto e = c.encode(tensor({384, 200}, x), {});
    one = loco::xxh64(e.get("values").bytes()) ^ loco::xxh64(e.get("indices").bytes());
    dec1 = loco::xxh64(lc::decode(e).bytes());
  }
  const auto e = c.encode(tensor({384, 200}, x), {});
  many = loco::xxh64(e.get("values").bytes()) ^ loco::xxh64(e.get("indices").bytes());
  decn = loco::xxh64(lc::decode(e).bytes());
  BOOST_TEST(one == many);
  BOOST_TEST(dec1 == decn);
}

BOOST_AUTO_TEST_CASE(contributor_mean_in_the_coefficient_domain) {
  // Two encodings of 8 × 12 tensors at chunk 4 (tiles 4 × 4, a 2 × 3 grid), k = 3: read through the
  // coefficient view, averaged over the encodings that kept each coefficient, and inverted with
  // dct_inverse, against the same arithmetic in float64 from the raw indices and values and the
  // basis formula.
  const Shape shape{8, 12};
  const auto st = stage("dct_topk:chunk=4,k=3,tile=2d");
  const auto codec = lc::Codec::parse("dct_topk:chunk=4,k=3,tile=2d");
  std::vector<lc::Encoded> enc;
  for (std::uint64_t s : {41, 42}) enc.push_back(codec.encode(tensor(shape, normal(96, s)), {}));
  const auto dom = lc::dct_domain(st, shape);
  BOOST_TEST_REQUIRE(dom.size() == 96);
  std::vector<double> sum(96, 0.0), count(96, 0.0);
  std::vector<float> mean(96, 0.0f);
  std::vector<float> fsum(96, 0.0f), fcount(96, 0.0f);
  for (const auto& e : enc) {
    // The coefficient view, as the aggregator reads it: values and the all-ones selection mask.
    lc::Encoded view;
    view.attrs = e.attrs;
    for (const auto& [name, t] : e.datasets) view.datasets.emplace_back(name, t.clone());
    const auto cs = lc::dct_coefficient_stage(st, shape);
    std::string spec = cs.name;
    for (std::size_t i = 0; i < cs.params.size(); ++i)
      spec += (i ? "," : ":") + cs.params[i].first + "=" + cs.params[i].second;
    view.attrs.set("spec", spec);
    view.attrs.set("ndim", std::int64_t{1});
    view.attrs.set("shape", std::vector<std::int64_t>{dom.size()});
    const auto coef = lc::decode(view);
    for (auto& [name, t] : view.datasets)
      if (name == "values") std::fill(t.f32().begin(), t.f32().end(), 1.0f);
    const auto mask = lc::decode(view);
    for (int j = 0; j < 96; ++j) {
      fsum[j] += coef.f32()[j];
      fcount[j] += mask.f32()[j];
    }
    // The float64 reference from the raw datasets: tile t, index i → coefficient t·16 + i.
    const auto ix = e.get("indices").as<std::uint16_t>();
    const auto v = e.get("values").f32();
    for (std::size_t j = 0; j < ix.size(); ++j) {
      sum[(j / 3) * 16 + ix[j]] += v[j];
      count[(j / 3) * 16 + ix[j]] += 1;
    }
  }
  int both = 0;
  for (int j = 0; j < 96; ++j) {
    BOOST_TEST_REQUIRE(fcount[j] == count[j]);
    mean[j] = fcount[j] > 0 ? fsum[j] / fcount[j] : 0.0f;
    both += count[j] == 2;
  }
  BOOST_TEST(both > 0);  // the two selections overlap somewhere, so the mean is over contributors
  const auto y = lc::dct_inverse(Tensor::from_floats({96}, mean), st, shape);
  BOOST_TEST((y.shape() == shape));
  for (int r = 0; r < 8; ++r)
    for (int c = 0; c < 12; ++c) {
      const int ty = r / 4, tx = c / 4, t = ty * 3 + tx;
      double want = 0;
      for (int i = 0; i < 16; ++i)
        if (count[t * 16 + i] > 0) want += sum[t * 16 + i] / count[t * 16 + i] * atom(4, 4, i / 4, i % 4, r % 4, c % 4);
      BOOST_TEST(std::fabs(y.f32()[r * 12 + c] - want) <= 1e-5);
    }
  BOOST_TEST(throws_kind([&] { lc::dct_inverse(Tensor::from_floats({95}, std::vector<float>(95)), st, shape); },
                         ErrorKind::BadInput));
}

BOOST_AUTO_TEST_CASE(one_d_default_unchanged_and_bad_options) {
  // The default spells no tile, so existing files and their checksums are unchanged.
  BOOST_TEST(lc::Codec::parse("dct_topk:chunk=64,k=4").spec() == "dct_topk:chunk=64,k=4");
  BOOST_TEST(lc::Codec::parse("dct_topk:chunk=64,k=4,tile=1d").spec() == "dct_topk:chunk=64,k=4");
  BOOST_TEST(lc::Codec::parse("dct_topk:tile=2d,k=32").spec() == "dct_topk:chunk=64,k=32,tile=2d");
  BOOST_TEST(throws_kind([] { lc::Codec::parse("dct_topk:tile=3d"); }, ErrorKind::Usage));
  BOOST_TEST(throws_kind([] { lc::Codec::parse("dct_topk:chunk=512,tile=2d"); }, ErrorKind::Usage));
  BOOST_TEST(throws_kind([] { lc::Codec::parse("dct_topk:chunk=8,k=65,tile=2d"); }, ErrorKind::Usage));
  BOOST_TEST(lc::Codec::parse("dct_topk:chunk=8,k=64,tile=2d").spec() == "dct_topk:chunk=8,k=64,tile=2d");
  // A chain: 2-D tiles, then 8-bit values.
  const auto x = normal(64 * 32, 36);
  const auto c = lc::Codec::parse("dct_topk:chunk=64,k=32,tile=2d+quant:bits=8");
  const auto y = lc::decode(c.encode(tensor({64, 32}, x), {}));
  BOOST_TEST((y.shape() == Shape{64, 32}));
  // A corrupted index is refused.
  auto e = lc::Codec::parse("dct_topk:chunk=4,k=2,tile=2d").encode(tensor({4, 4}, normal(16, 37)), {});
  for (auto& [name, t] : e.datasets)
    if (name == "indices") t.as<std::uint16_t>()[0] = 16;
  BOOST_TEST(throws_kind([&] { lc::decode(e); }, ErrorKind::BadInput));
}

BOOST_AUTO_TEST_SUITE_END()
