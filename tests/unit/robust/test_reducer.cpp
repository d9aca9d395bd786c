// Robust reducers: golden cases of the brief (even-count median, both Krum counts, the trimmed-mean
// cut, Bulyan's n ≥ 4f+3), hand-computed cases of every rule, sort / Weiszfeld / SVD references,
// mixing matrices, robustness to huge outliers, and the file driver against the in-memory one.
#include <Eigen/Dense>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "loco/core/tensor.hpp"
#include "loco/robust/reducer.hpp"
#include "support.hpp"

using namespace loco;
using namespace loco::robust;
using Vecs = std::vector<std::vector<float>>;

namespace {

std::vector<float> run(const std::string& spec, const Vecs& x, std::span<const float> center = {},
                       PlanInfo* info = nullptr, ReduceContext ctx = {}) {
  return reduce_vectors(parse_reducer_spec(spec), x, ctx, center, info);
}

Vecs random_vecs(std::size_t n, std::size_t d, unsigned seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  Vecs x(n, std::vector<float>(d));
  for (auto& v : x)
    for (auto& e : v) e = nd(g);
  return x;
}

// Per coordinate, sorted values (float64 reference).
std::vector<double> column(const Vecs& x, std::size_t j) {
  std::vector<double> c;
  for (const auto& v : x) c.push_back(v[j]);
  std::sort(c.begin(), c.end());
  return c;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(reducer)

BOOST_AUTO_TEST_CASE(spec_round_trip_and_errors) {
  for (const char* s : {"median", "mean", "trimmed-mean:beta=0.1", "krum:f=2", "multi-krum:f=1,m=3",
                        "krum:f=1,variant=byzfl", "geomedian:iters=5,nu=0.001,tol=1e-08",
                        "centered-clip:tau=0.5,iters=3", "bulyan:f=1", "median-norm", "flag:r=2,iters=3,eps=1e-05",
                        "nnm+krum:f=2", "bucket:s=2+median", "nnm:f=1+bucket:s=3+trimmed-mean:beta=0.2"}) {
    const ReducerSpec a = parse_reducer_spec(s);
    const ReducerSpec b = parse_reducer_spec(format_reducer_spec(a));
    BOOST_TEST(format_reducer_spec(a) == format_reducer_spec(b), s);
  }
  BOOST_TEST(format_reducer_spec(parse_reducer_spec("nnm+krum:f=2")) == "nnm:f=2+krum:f=2");
  BOOST_TEST(format_reducer_spec(parse_reducer_spec("geomedian")) == "geomedian:iters=100,nu=1e-06,tol=1e-10");
  test::require_error([] { parse_reducer_spec("krum"); }, ErrorKind::Usage, {"needs f="});
  test::require_error([] { parse_reducer_spec("nnm:f=1"); }, ErrorKind::Usage, {"pre-aggregator"});
  test::require_error([] { parse_reducer_spec("median+krum:f=1"); }, ErrorKind::Usage, {"only nnm and bucket"});
  test::require_error([] { parse_reducer_spec("nnm+median"); }, ErrorKind::Usage, {"nnm needs f="});
  test::require_error([] { parse_reducer_spec("trimmed-mean:beta=0.7"); }, ErrorKind::Usage, {"beta=0.7"});
  test::require_error([] { parse_reducer_spec("median:x=1"); }, ErrorKind::Usage, {"unknown parameter 'x'"});
  test::require_error([] { parse_reducer_spec("lion"); }, ErrorKind::Usage, {"unknown reducer 'lion'"});
  test::require_error([] { parse_reducer_spec("krum:f=1,variant=x"); }, ErrorKind::Usage, {"variant=x"});
}

// Golden (brief §6): an even count takes the mean of the two middle values.
BOOST_AUTO_TEST_CASE(median_even_count) {
  const Vecs x = {{1, 10}, {4, -1}, {2, 3}, {3, 7}};
  const auto m = run("median", x);
  BOOST_TEST(m[0] == 2.5f);  // (2 + 3)/2
  BOOST_TEST(m[1] == 5.0f);  // (3 + 7)/2
  const auto odd = run("median", {{1}, {7}, {3}});
  BOOST_TEST(odd[0] == 3.0f);
}

// Golden: t = ⌊β·n⌋ values cut at each end.
BOOST_AUTO_TEST_CASE(trimmed_mean_cut) {
  Vecs x;
  for (float v : {9.f, 1.f, 100.f, 3.f, -50.f, 5.f, 7.f, 2.f, 4.f, 6.f}) x.push_back({v});
  // n = 10, β = 0.25: ⌊2.5⌋ = 2 cut each end → {2,3,4,5,6,7} → 4.5.
  BOOST_TEST(run("trimmed-mean:beta=0.25", x)[0] == 4.5f);
  // β = 0.2: 2 cut → same; β = 0.1: 1 cut → {1,2,...,9 without -50,100} = 37/8.
  BOOST_TEST(run("trimmed-mean:beta=0.2", x)[0] == 4.5f);
  BOOST_TEST(run("trimmed-mean:beta=0.1", x)[0] == 37.0f / 8.0f);
  BOOST_TEST(run("trimmed-mean:beta=0", x)[0] == 8.7f);  // the mean: 87/10
  test::require_error([&] { run("trimmed-mean:beta=0.5", x); }, ErrorKind::Usage, {"nothing is left"});
}

// The sorting networks against std::sort for every count up to 40 (median, trimmed mean).
BOOST_AUTO_TEST_CASE(coordinate_rules_match_sort_reference) {
  for (std::size_t n = 1; n <= 40; ++n) {
    const Vecs x = random_vecs(n, 37, static_cast<unsigned>(n));
    const auto med = run("median", x);
    const auto tm = run("trimmed-mean:beta=0.2", x);
    const std::size_t t = static_cast<std::size_t>(std::floor(0.2 * static_cast<double>(n)));
    for (std::size_t j = 0; j < 37; ++j) {
      const auto c = column(x, j);
      const double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
      BOOST_TEST(med[j] == static_cast<float>(m), "n=" << n << " j=" << j);
      double s = 0;
      for (std::size_t i = t; i < n - t; ++i) s += c[i];
      BOOST_TEST(tm[j] == static_cast<float>(s / static_cast<double>(n - 2 * t)), "n=" << n << " j=" << j);
    }
  }
}

// Golden: Blanchard's count (sum over n−f−2) and ByzFL's (mean over n−f−1) pick different inputs.
BOOST_AUTO_TEST_CASE(krum_both_neighbour_counts) {
  const Vecs x = {{0}, {1}, {2}, {4}, {5}};
  // f = 1. Blanchard, 2 nearest: scores 5, 2, 5, 5, 10 → x₁ = 1.
  PlanInfo info;
  BOOST_TEST(run("krum:f=1", x, {}, &info)[0] == 1.0f);
  BOOST_TEST(info.selected == std::vector<std::int64_t>{1});
  // ByzFL, 3 nearest: sums 21, 11, 9, 14, 26 → x₂ = 2.
  BOOST_TEST(run("krum:f=1,variant=byzfl", x, {}, &info)[0] == 2.0f);
  BOOST_TEST(info.selected == std::vector<std::int64_t>{2});
  // Multi-Krum, m = 3 lowest Blanchard scores: x₁ (2), then x₀, x₂ (5, ties to the lower index) → mean 1.
  BOOST_TEST(run("multi-krum:f=1,m=3", x, {}, &info)[0] == 1.0f);
  BOOST_TEST(info.selected == (std::vector<std::int64_t>{1, 0, 2}));
  // Default m = n − f = 4: adds x₃ = 4 → (1+0+2+4)/4.
  BOOST_TEST(run("multi-krum:f=1", x)[0] == 1.75f);
  test::require_error([&] { run("krum:f=2", x); }, ErrorKind::Usage, {"n ≥ 2f+3 = 7", "got 5 inputs"});
}

// Golden: Bulyan needs n ≥ 4f+3; a hand-computed selection and coordinate stage.
BOOST_AUTO_TEST_CASE(bulyan_check_and_hand_case) {
  Vecs x;
  for (float v : {1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 100.f}) x.push_back({v, -v});
  test::require_error([&] { run("bulyan:f=1", Vecs(x.begin(), x.begin() + 6)); }, ErrorKind::Usage,
                      {"n ≥ 4f+3 = 7", "got 6"});
  // f = 1: Krum on 7 (4 nearest) picks 3; on {1,2,4,5,6,100} (3 nearest) 4; on {1,2,5,6,100} 2 (tie
  // with 5, lower index); on {1,5,6,100} 5; on {1,6,100} (max(1, 3−1−2) = 1 nearest: 1 and 6 tie) 1.
  // θ = 5 picked {1,...,5}; β = 3 closest to the median 3 → {2,3,4} → 3.
  PlanInfo info;
  const auto out = run("bulyan:f=1", x, {}, &info);
  BOOST_TEST(info.selected == (std::vector<std::int64_t>{2, 3, 1, 4, 0}));
  BOOST_TEST(out[0] == 3.0f);
  BOOST_TEST(out[1] == -3.0f);
  // f ≤ 1: Bulyan's last Krum (3 left) still scores by max(1, s−f−2) = 1 neighbour, as Flower does.
  // x = (6, 1, 0, 4, 2, 3, 5), squared distances, ties to the lower index:
  //   7 left, 4 nearest: 4 → 1+1+4+4 = 10 ties 3 → 10, picks 4 (index 3);
  //   {6,1,0,2,3,5}, 3 nearest: 1 → 1+1+4 = 6 ties 2 → 6, picks 1 (index 1);
  //   {6,0,2,3,5}, 2 nearest: 2, 3 and 5 → 5, picks 2 (index 4);
  //   {6,0,3,5}, 1 nearest: 6 and 5 → 1, picks 6 (index 0);
  //   {0,3,5}, 1 nearest: 0 → 9, 3 → 4, 5 → 4, picks 3 (index 5). With 0 neighbours every score
  //   would be 0 and the outlier 0 (index 2) would be picked.
  // Picked {1,2,3,4,6}, median 3, β = 3 closest: 3, 2, 4 → 3 (with 0 picked instead of 3: 1).
  Vecs z;
  for (float v : {6.f, 1.f, 0.f, 4.f, 2.f, 3.f, 5.f}) z.push_back({v});
  BOOST_TEST(run("bulyan:f=1", z, {}, &info)[0] == 3.0f);
  BOOST_TEST(info.selected == (std::vector<std::int64_t>{3, 1, 4, 0, 5}));
  // Coordinate stage against ByzFL's form (argsort of |v − median|, stable) on a spread set.
  Vecs y = {{0}, {1}, {1.5}, {10}, {11}, {0.5}, {1.2}};
  const auto o2 = run("bulyan:f=1", y, {}, &info);
  std::vector<double> picked;
  for (auto i : info.selected) picked.push_back(y[static_cast<std::size_t>(i)][0]);
  std::sort(picked.begin(), picked.end());
  const double med = picked[2];
  std::vector<double> byd = picked;
  std::stable_sort(byd.begin(), byd.end(), [&](double a, double b) { return std::abs(a - med) < std::abs(b - med); });
  BOOST_TEST(o2[0] == static_cast<float>((byd[0] + byd[1] + byd[2]) / 3), o2[0]);
}

BOOST_AUTO_TEST_CASE(centered_clip_hand_case) {
  const Vecs x = {{0}, {10}};
  // v₀ = 0, τ = 1: distances 0, 10 → clip factors 1, 0.1 → v = (0 + 0.1·10)/2 = 0.5.
  BOOST_TEST(std::abs(run("centered-clip:tau=1,iters=1", x)[0] - 0.5f) < 1e-7f);
  // second iteration from 0.5: distances 0.5, 9.5 → v = 0.5 + (−0.5 + 1)/2 = 0.75.
  BOOST_TEST(std::abs(run("centered-clip:tau=1,iters=2", x)[0] - 0.75f) < 1e-7f);
  // From a given centre v₀ = 10: distances 10, 0 → v = 10 + (−1 + 0)/2 = 9.5.
  const std::vector<float> c = {10};
  PlanInfo info;
  BOOST_TEST(std::abs(run("centered-clip:tau=1,iters=1", x, c, &info)[0] - 9.5f) < 1e-6f);
  BOOST_TEST(info.coefficients.size() == 3u);  // x₀, x₁, v₀
  // v = 0.45·v₀ + 0.05·x₀ + 0.5·x₁ (1 − (0.1 + 1)/2 on v₀, c_i/2 on x_i).
  BOOST_TEST(std::abs(info.coefficients[0] - 0.05) < 1e-12);
  BOOST_TEST(std::abs(info.coefficients[1] - 0.5) < 1e-12);
  BOOST_TEST(std::abs(info.coefficients[2] - 0.45) < 1e-12);
}

BOOST_AUTO_TEST_CASE(median_norm_hand_case) {
  // Norms 5, 1, 10 → median 5; (0,10) clipped to (0,5); mean of (3,4), (0,1), (0,5) = (1, 10/3).
  const auto out = run("median-norm", {{3, 4}, {0, 1}, {0, 10}});
  BOOST_TEST(std::abs(out[0] - 1.0f) < 1e-6f);
  BOOST_TEST(std::abs(out[1] - 10.0f / 3.0f) < 1e-6f);
}

BOOST_AUTO_TEST_CASE(geomedian_hand_case_and_direct_weiszfeld) {
  // Collinear 0, 1, 10: the geometric median is the median, 1.
  PlanInfo info;
  const auto g = run("geomedian:iters=1000,tol=1e-14,nu=1e-9", {{0}, {1}, {10}}, {}, &info);
  BOOST_TEST(std::abs(g[0] - 1.0f) < 1e-4f, g[0]);
  // Gram space against the same iteration on explicit float64 vectors.
  const Vecs x = random_vecs(9, 50, 7);
  const auto z = run("geomedian:iters=30,nu=1e-6,tol=0", x, {}, &info);
  // tol = 0 stops once the objective no longer decreases in float64, at most 30 iterations.
  BOOST_TEST((info.iterations >= 3 && info.iterations <= 30));
  std::vector<double> v(50, 0.0);
  for (const auto& e : x)
    for (std::size_t j = 0; j < 50; ++j) v[j] += e[j] / 9.0;
  for (std::int64_t t = 0; t < info.iterations; ++t) {
    std::vector<double> num(50, 0.0);
    double den = 0;
    for (const auto& e : x) {
      double d2 = 0;
      for (std::size_t j = 0; j < 50; ++j) d2 += (v[j] - e[j]) * (v[j] - e[j]);
      const double b = 1.0 / std::max(1e-6, std::sqrt(d2));
      den += b;
      for (std::size_t j = 0; j < 50; ++j) num[j] += b * e[j];
    }
    for (std::size_t j = 0; j < 50; ++j) v[j] = num[j] / den;
  }
  // The two differ by float64 rounding of the distances (the Gram form cancels ‖x‖² ≈ 50 against
  // ‖z − x‖² ≈ 50: relative error ~1e-15 each) and the final float32 rounding (|z| < 1: 6e-8).
  for (std::size_t j = 0; j < 50; ++j) BOOST_TEST(std::abs(z[j] - v[j]) < 1e-6, j);
}

BOOST_AUTO_TEST_CASE(mixing_matrices_row_stochastic) {
  const Vecs x = random_vecs(9, 20, 3);
  std::vector<double> gram(81);
  for (int i = 0; i < 9; ++i)
    for (int j = 0; j < 9; ++j)
      for (int t = 0; t < 20; ++t) gram[static_cast<std::size_t>(9 * i + j)] += double(x[i][t]) * x[j][t];
  for (const char* s : {"nnm:f=2+mean", "bucket:s=2+mean", "bucket:s=4+mean", "nnm:f=3+bucket:s=3+mean"}) {
    const auto m = mixing_matrix(parse_reducer_spec(s), 9, {5, 2}, gram);
    for (const auto& row : m) {
      double sum = 0;
      for (double e : row) {
        sum += e;
        BOOST_TEST(e >= 0.0);
      }
      BOOST_TEST(std::abs(sum - 1.0) < 1e-12, s);
    }
  }
  // NNM: each row puts 1/(n−f) on itself and its n−f−1 nearest.
  const auto m = mixing_matrix(parse_reducer_spec("nnm:f=2+mean"), 9, {}, gram);
  BOOST_TEST(m.size() == 9u);
  for (std::size_t i = 0; i < 9; ++i) {
    BOOST_TEST(m[i][i] == 1.0 / 7);
    BOOST_TEST(std::count(m[i].begin(), m[i].end(), 1.0 / 7) == 7);
  }
  // Bucketing: ⌈9/2⌉ = 5 buckets, every input in exactly one, seeded by (seed, round).
  const auto b = mixing_matrix(parse_reducer_spec("bucket:s=2+mean"), 9, {5, 2}, {});
  BOOST_TEST(b.size() == 5u);
  for (std::size_t j = 0; j < 9; ++j) {
    int in = 0;
    for (const auto& row : b) in += row[j] > 0;
    BOOST_TEST(in == 1);
  }
  BOOST_TEST((b == mixing_matrix(parse_reducer_spec("bucket:s=2+mean"), 9, {5, 2}, {})));
  BOOST_TEST((b != mixing_matrix(parse_reducer_spec("bucket:s=2+mean"), 9, {5, 3}, {})));
  // Pre-aggregators compose with coordinate rules: nnm+median of identical inputs is the input.
  const Vecs same(7, std::vector<float>{1.5f, -2.f});
  BOOST_TEST(run("nnm:f=2+median", same) == same[0]);
  BOOST_TEST(run("bucket:s=3+trimmed-mean:beta=0", same) == same[0]);
}

BOOST_AUTO_TEST_CASE(flag_matches_explicit_svd_reference) {
  const Vecs same(5, std::vector<float>{1.f, 2.f, -2.f});
  const auto o = run("flag", same);
  for (int j = 0; j < 3; ++j) BOOST_TEST(std::abs(o[j] - same[0][j]) < 1e-6f);
  const int n = 7, d = 30, r = 2, iters = 3;
  const Vecs x = random_vecs(n, d, 11);
  const auto got = run("flag:r=2,iters=3,eps=1e-06", x);
  Eigen::MatrixXd xh(d, n), xr(d, n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) xr(j, i) = x[i][j];
  for (int i = 0; i < n; ++i) xh.col(i) = xr.col(i) / xr.col(i).norm();
  Eigen::VectorXd w = Eigen::VectorXd::Ones(n);
  Eigen::MatrixXd y;
  for (int t = 0; t <= iters; ++t) {
    if (t > 0)
      for (int i = 0; i < n; ++i) w(i) = std::pow(r - (y.transpose() * xh.col(i)).squaredNorm() + 1e-6, -0.25);
    Eigen::JacobiSVD<Eigen::MatrixXd> svd(xh * w.asDiagonal(), Eigen::ComputeThinU);
    y = svd.matrixU().leftCols(r);
  }
  const Eigen::VectorXd ref = y * (y.transpose() * xr.rowwise().mean());
  for (int j = 0; j < d; ++j) BOOST_TEST(std::abs(got[j] - ref(j)) < 1e-5, j);
}

// With f inputs of huge norm, robust outputs stay with the honest inputs.
BOOST_AUTO_TEST_CASE(robust_to_huge_outliers) {
  const std::size_t h = 8, f = 2, d = 16;
  Vecs x = random_vecs(h, d, 5);
  for (std::size_t k = 0; k < f; ++k) x.push_back(std::vector<float>(d, 1e6f));
  std::vector<double> lo(d, 1e30), hi(d, -1e30), c(d, 0.0);
  for (std::size_t i = 0; i < h; ++i)
    for (std::size_t j = 0; j < d; ++j) {
      lo[j] = std::min(lo[j], double(x[i][j]));
      hi[j] = std::max(hi[j], double(x[i][j]));
      c[j] += x[i][j] / double(h);
    }
  double radius = 0;  // R: the honest points' largest distance from their mean
  for (std::size_t i = 0; i < h; ++i) {
    double s = 0;
    for (std::size_t j = 0; j < d; ++j) s += (x[i][j] - c[j]) * (x[i][j] - c[j]);
    radius = std::max(radius, std::sqrt(s));
  }
  auto dist_c = [&](const std::vector<float>& z) {
    double s = 0;
    for (std::size_t j = 0; j < d; ++j) s += (z[j] - c[j]) * (z[j] - c[j]);
    return std::sqrt(s);
  };
  for (const char* s : {"median", "trimmed-mean:beta=0.2", "krum:f=2", "multi-krum:f=2", "nnm+krum:f=2"}) {
    const auto z = run(s, x);
    for (std::size_t j = 0; j < d; ++j) BOOST_TEST((z[j] >= lo[j] && z[j] <= hi[j]), s << " j=" << j);
  }
  // Geometric median: outside the ball B(c, ρR) the 8 honest unit pulls toward c exceed the 2 outlier
  // pulls unless 8·√(1 − 1/ρ²) ≤ 2, i.e. ρ ≤ 1.033.
  BOOST_TEST(dist_c(run("geomedian", x)) <= 1.04 * radius);
  // Centered clipping: each step is a convex combination of v and honest points plus at most f·τ/n
  // from the outliers, so ‖v_L − c‖ ≤ max(‖v₀ − c‖, R) + L·f·τ/n.
  const double v0 = dist_c(std::vector<float>(d, 0.0f));
  BOOST_TEST(dist_c(run("centered-clip:tau=1,iters=3", x)) <= std::max(v0, radius) + 3 * 2 * 1.0 / 10 + 1e-6);
  // The plain mean is dragged far away.
  BOOST_TEST(dist_c(run("mean", x)) > 1e5);
}

BOOST_AUTO_TEST_CASE(thread_and_block_independence) {
  const Vecs x = random_vecs(6, 100000, 9);
  for (const char* s : {"median", "trimmed-mean:beta=0.2", "krum:f=1", "nnm:f=1+median", "bucket:s=2+median"}) {
    const ReducerSpec spec = parse_reducer_spec(s);
    const auto whole = reduce_vectors(spec, x);
    // Same plan, reduced in uneven blocks.
    Reducer red(spec, 6);
    std::vector<const float*> cols;
    for (const auto& v : x) cols.push_back(v.data());
    if (red.needs_gram()) {
      red.add_gram(cols, 100000);
      red.finish_gram();
    }
    std::vector<float> out(100000);
    for (std::size_t lo = 0; lo < 100000; lo += 7919) {
      std::vector<const float*> p;
      for (auto* c : cols) p.push_back(c + lo);
      red.reduce(p, std::min<std::size_t>(7919, 100000 - lo), out.data() + lo);
    }
    BOOST_TEST((out == whole), s);
  }
}

// The streaming use of Reducer that loco-aggregate makes (its robust pass): the inputs arrive as
// several tensors cut into row blocks, the centre (centered clipping's v₀) as an extra column; a
// Gram pass over every block, then the rule block by block, must give the in-memory result.
BOOST_AUTO_TEST_CASE(streamed_blocks_with_a_centre_match_memory) {
  const std::size_t n = 5, len = 6 * 7 + 3;  // a 6×7 tensor, then a 3-element one
  const Vecs x = random_vecs(n, len, 21);
  const std::vector<float> center(len, 0.25f);
  // Row blocks of two rows of the first tensor, then the second tensor whole: [0,14) [14,28) [28,42) [42,45).
  const std::vector<std::pair<std::size_t, std::size_t>> blocks = {{0, 14}, {14, 14}, {28, 14}, {42, 3}};
  for (const char* s :
       {"median", "krum:f=1", "geomedian", "centered-clip:tau=0.5,iters=2", "nnm:f=1+trimmed-mean:beta=0.2"}) {
    const ReducerSpec spec = parse_reducer_spec(s);
    Reducer red(spec, n);
    BOOST_TEST(red.columns() == (uses_center(spec) ? n + 1 : n), s);
    auto columns = [&](std::size_t e0) {
      std::vector<const float*> c;
      for (const auto& v : x) c.push_back(v.data() + e0);
      if (red.columns() > n) c.push_back(center.data() + e0);
      return c;
    };
    if (red.needs_gram()) {
      for (const auto& [e0, m] : blocks) red.add_gram(columns(e0), m);
      red.finish_gram();
    }
    BOOST_TEST(red.needs_gram() == (std::string(s) != "median"), s);
    std::vector<float> got(len, std::nanf(""));
    for (const auto& [e0, m] : blocks) red.reduce(columns(e0), m, got.data() + e0);
    const auto want = reduce_vectors(spec, x, {}, center);
    // The Gram sums run over other blocks: float64 rounding of order 1e-16, far below float32's.
    for (std::size_t j = 0; j < len; ++j)
      BOOST_TEST(std::abs(got[j] - want[j]) <= 1e-6f * (1 + std::abs(want[j])), s << j);
  }
}

BOOST_AUTO_TEST_SUITE_END()
