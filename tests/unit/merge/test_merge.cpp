// Merge methods against hand-computed cases and their defining properties, and merge_files end to end.
#include <unistd.h>

#include <bit>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <tbb/global_control.h>

#include "support.hpp"
#include <fmt/format.h>

#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"
#include "loco/core/tensor.hpp"
#include "loco/io/output.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"
#include "loco/merge/merge.hpp"

namespace fs = std::filesystem;
namespace mg = loco::merge;
using loco::Error;
using loco::ErrorKind;
using Vec = std::vector<float>;
using Spans = std::vector<std::span<const float>>;

namespace {

double norm(std::span<const float> x) {
  double s = 0;
  for (float v : x) s += double(v) * v;
  return std::sqrt(s);
}

using loco::test::require_error;
using loco::test::TempDir;

void write_model(const std::string& path, const std::vector<std::pair<std::string, Vec>>& tensors,
                 const std::string& config = "") {
  loco::TensorSet set;
  for (const auto& [name, v] : tensors)
    set.add(name, loco::Tensor::from_floats({static_cast<std::int64_t>(v.size())}, v));
  loco::Attributes root;
  root.set("kind", std::string("model"));
  if (!config.empty()) root.set("model_config", config);
  loco::io::write_tensor_set(path, root, set);
  loco::io::forget_inputs();
}

Vec read(const std::string& path, const std::string& name) {
  auto src = loco::io::open_source(path, false);
  const loco::Tensor t = src->read(src->get(name), loco::DType::F32);
  return {t.f32().begin(), t.f32().end()};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(merge_kernels)

BOOST_AUTO_TEST_CASE(linear_weighted_average) {
  const Vec a = {1, 2}, b = {3, 6};
  Vec out(2);
  const double w[] = {1, 3};
  mg::linear(Spans{a, b}, w, true, out);
  BOOST_TEST(out[0] == 2.5f);  // (1 + 9) / 4
  BOOST_TEST(out[1] == 5.0f);  // (2 + 18) / 4
  mg::linear(Spans{a, b}, w, false, out);
  BOOST_TEST(out[0] == 10.0f);
  BOOST_TEST(out[1] == 20.0f);
  const double zero[] = {1, -1};
  require_error([&] { mg::linear(Spans{a, b}, zero, true, out); }, ErrorKind::Usage, {"sum to 0"});
}

BOOST_AUTO_TEST_CASE(slerp_endpoints_norm_and_lerp_fallback) {
  const Vec v0 = {3, 0, 0, 4}, v1 = {0, 5, 0, 0};  // both of norm 5, orthogonal
  Vec out(4);
  mg::slerp(v0, v1, 0.0, out);
  BOOST_TEST(out == v0, boost::test_tools::per_element());
  mg::slerp(v0, v1, 1.0, out);
  for (int i = 0; i < 4; ++i) BOOST_TEST(out[i] == v1[i], boost::test_tools::tolerance(1e-6f));
  // Equal norms stay equal all along the arc; halfway is the normalized bisector.
  for (double t : {0.1, 0.25, 0.5, 0.9}) {
    mg::slerp(v0, v1, t, out);
    BOOST_TEST(norm(out) == 5.0, boost::test_tools::tolerance(1e-6));
  }
  mg::slerp(v0, v1, 0.5, out);
  const float h = static_cast<float>(std::sqrt(0.5));
  BOOST_TEST(out[0] == 3 * h, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(out[1] == 5 * h, boost::test_tools::tolerance(1e-6f));
  // Parallel directions (|cos| > 0.9995): a plain lerp.
  const Vec p0 = {1, 1}, p1 = {2, 2};
  Vec o2(2);
  mg::slerp(p0, p1, 0.25, o2);
  BOOST_TEST(o2[0] == 1.25f);
  BOOST_TEST(o2[1] == 1.25f);
}

BOOST_AUTO_TEST_CASE(ties_trim_keeps_the_largest_magnitudes) {
  Vec d = {1, -5, 3, -3, 0.1f};
  mg::trim_magnitude(d, 0.6, false);  // k = 3
  BOOST_TEST(d == (Vec{0, -5, 3, -3, 0}), boost::test_tools::per_element());
  Vec tie = {2, -2, 2};
  mg::trim_magnitude(tie, 0.34, false);  // k = 1: the first of equal magnitudes
  BOOST_TEST(tie == (Vec{2, 0, 0}), boost::test_tools::per_element());
  Vec r = {1, -5, 3, -3, 0.1f};
  mg::trim_magnitude(r, 0.2, true);  // k = 1, rescaled to L1 12.1
  BOOST_TEST(r[1] == -12.1f, boost::test_tools::tolerance(1e-6f));
  Vec none = {1, 2};
  mg::trim_magnitude(none, 0.4, false);  // k = 0
  BOOST_TEST(none == (Vec{0, 0}), boost::test_tools::per_element());
  Vec all = {1, 2};
  mg::trim_magnitude(all, 1.0, false);
  BOOST_TEST(all == (Vec{1, 2}), boost::test_tools::per_element());
}

// TIES's trim by its definition: the k = ⌊density·n⌋ largest magnitudes, ties to the lower index.
Vec trimmed_by_sorting(const Vec& d, double density) {
  const std::size_t n = d.size(), k = static_cast<std::size_t>(std::floor(density * double(n)));
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return std::fabs(d[a]) > std::fabs(d[b]); });
  Vec want(n, 0.0f);
  for (std::size_t j = 0; j < k; ++j) want[order[j]] = d[order[j]];
  return want;
}

// The histogram selection against a sort: k largest magnitudes, ties to the lower index, across
// exponents (both histogram levels), with ±0, denormals and many equal values.
BOOST_AUTO_TEST_CASE(ties_trim_equals_a_sort_based_reference) {
  loco::Rng rng(11, 0);
  for (int trial = 0; trial < 40; ++trial) {
    const std::size_t n = 1 + rng.below(3000);
    Vec d(n);
    for (auto& v : d) {
      const int kind = static_cast<int>(rng.below(6));
      const float u = rng.uniform() - 0.5f;
      v = kind == 0   ? 0.0f
          : kind == 1 ? -0.0f
          : kind == 2 ? std::ldexp(u, -130)
          : kind == 3 ? std::round(u * 8) / 8
                      : std::ldexp(u, static_cast<int>(rng.below(40)) - 20);
    }
    const double density = (1 + static_cast<double>(rng.below(99))) / 100;
    const Vec want = trimmed_by_sorting(d, density);
    Vec got = d;
    mg::trim_magnitude(got, density, false);
    for (std::size_t i = 0; i < n; ++i)
      BOOST_TEST_REQUIRE(std::bit_cast<std::uint32_t>(got[i]) == std::bit_cast<std::uint32_t>(want[i]));
  }
}

// Several parallel chunks (2^16 elements each) with many equal magnitudes, so the first (k − above)
// of those equal to the threshold are kept across chunk boundaries in index order: the sort-based
// reference's bits, and the same bits at 1 and 3 threads.
BOOST_AUTO_TEST_CASE(ties_trim_across_chunks_is_the_reference_at_any_thread_count) {
  loco::Rng rng(5, 0);
  const std::size_t n = 200003;
  Vec d(n);
  for (auto& v : d) v = std::round((rng.uniform() - 0.5f) * 16) / 8;  // 17 magnitudes: ties everywhere
  for (const double density : {0.3, 0.61, 0.97}) {
    const Vec want = trimmed_by_sorting(d, density);
    for (const std::size_t threads : {1, 3}) {
      tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
      Vec got = d;
      mg::trim_magnitude(got, density, false);
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < n; ++i)
        wrong += std::bit_cast<std::uint32_t>(got[i]) != std::bit_cast<std::uint32_t>(want[i]);
      BOOST_TEST(wrong == 0u, "density " << density << ", " << threads << " threads");
    }
  }
}

BOOST_AUTO_TEST_CASE(ties_sign_election_and_disjoint_mean) {
  const Vec base = {10, 10, 10, 10};
  const Vec d1 = {1, -2, 3, 0.5f}, d2 = {-3, 1, 1, 0.5f};
  const double w[] = {1, 1};
  Vec out(4);
  // Column sums -2, -1, 4, 1 elect -, -, +, +; only agreeing entries are averaged.
  mg::combine_deltas(base, Spans{d1, d2}, w, true, true, 1.0, out);
  BOOST_TEST(out == (Vec{7, 8, 12, 10.5f}), boost::test_tools::per_element());
  mg::combine_deltas(base, Spans{d1, d2}, w, true, false, 2.0, out);
  BOOST_TEST(out == (Vec{4, 6, 18, 12}), boost::test_tools::per_element());
  // Weights enter the election: w = (3, 1) turns column 0 positive (3 - 3 = 0 counts as +).
  const double w2[] = {3, 1};
  mg::combine_deltas(base, Spans{d1, d2}, w2, true, true, 1.0, out);
  BOOST_TEST(out[0] == 11.0f);  // u = 3 kept, divisor 3
  // Property on random deltas: each kept contribution has the elected sign, so the merged delta has it too.
  loco::Rng rng(7);
  Vec a(1000), b(1000), c(1000), z(1000, 0.0f), o(1000);
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = rng.normal();
    b[i] = rng.normal();
    c[i] = rng.normal();
  }
  const double w3[] = {1, 1, 1};
  mg::combine_deltas(z, Spans{a, b, c}, w3, true, false, 1.0, o);
  for (std::size_t i = 0; i < a.size(); ++i) {
    const float sum = a[i] + b[i] + c[i];
    BOOST_TEST((sum >= 0 ? o[i] >= 0 : o[i] <= 0));
    BOOST_TEST(std::fabs(o[i]) >= std::fabs(sum) - 1e-5f);  // dropping the minority only adds magnitude
  }
}

BOOST_AUTO_TEST_CASE(task_arithmetic_is_base_plus_scaled_sum) {
  const Vec base = {1, 2}, d1 = {1, 0}, d2 = {0.5f, -1};
  const double w[] = {2, 1};
  Vec out(2);
  mg::combine_deltas(base, Spans{d1, d2}, w, false, false, 0.5, out);
  BOOST_TEST(out[0] == 1 + 0.5f * 2.5f);
  BOOST_TEST(out[1] == 2 - 0.5f);
  mg::combine_deltas(base, Spans{d1, d2}, w, false, true, 1.0, out);  // ÷ Σw = 3
  BOOST_TEST(out[0] == 1 + 2.5f / 3, boost::test_tools::tolerance(1e-6f));
}

BOOST_AUTO_TEST_CASE(dare_mask_rate_l1_and_expected_value) {
  const std::size_t n = 100000;
  const double p = 0.3;
  Vec d(n, 1.0f);
  mg::drop_random(d, p, false, 42, 1);
  const double kept = std::count(d.begin(), d.end(), 1.0f);
  // Binomial(n, p): within 5 standard deviations.
  BOOST_TEST(std::fabs(kept - p * n) < 5 * std::sqrt(n * p * (1 - p)));
  Vec again(n, 1.0f), other(n, 1.0f);
  mg::drop_random(again, p, false, 42, 1);
  mg::drop_random(other, p, false, 42, 2);
  BOOST_TEST((again == d));
  BOOST_TEST((other != d));
  // L1 rescale keeps the L1 norm.
  Vec x(1000);
  loco::Rng rng(3);
  for (float& v : x) v = rng.normal();
  const double before = std::accumulate(x.begin(), x.end(), 0.0, [](double s, float v) { return s + std::fabs(v); });
  mg::drop_random(x, 0.5, true, 9, 0);
  const double after = std::accumulate(x.begin(), x.end(), 0.0, [](double s, float v) { return s + std::fabs(v); });
  BOOST_TEST(after == before, boost::test_tools::tolerance(1e-5));
  // Expected value: averaged over many masks each entry returns to δ. The rescale factor is
  // L1(δ)/L1(kept) ≈ 1/p; per entry the mean of K draws has standard deviation |δ|·sqrt((1−p)/p/K).
  const std::size_t m = 64, draws = 4000;
  Vec delta(m), mean(m, 0.0f), work(m);
  for (std::size_t i = 0; i < m; ++i) delta[i] = static_cast<float>(i % 7) - 3.0f + 0.25f;
  std::vector<double> acc(m, 0.0);
  for (std::size_t k = 0; k < draws; ++k) {
    work = delta;
    mg::drop_random(work, 0.5, true, 11, k);
    for (std::size_t i = 0; i < m; ++i) acc[i] += work[i];
  }
  for (std::size_t i = 0; i < m; ++i) {
    const double sd = std::fabs(delta[i]) * std::sqrt(1.0 / draws);
    BOOST_TEST(std::fabs(acc[i] / draws - delta[i]) < 5 * sd + 0.02 * std::fabs(delta[i]));
  }
}

BOOST_AUTO_TEST_CASE(model_stock_interpolation_factor) {
  const Vec base = {0, 0};
  Vec out(2);
  BOOST_TEST(mg::model_stock(base, Spans{Vec{1, 0}, Vec{0, 1}}, out) == 0.0);  // orthogonal: t = 0
  BOOST_TEST(out == (Vec{0, 0}), boost::test_tools::per_element());
  const Vec a = {1, 0}, b = {1, 0};
  BOOST_TEST(mg::model_stock(base, Spans{a, b}, out) == 1.0);  // identical: t = 1, the mean
  BOOST_TEST(out == (Vec{1, 0}), boost::test_tools::per_element());
  const Vec c = {1, 1};
  const double cs = 1 / std::sqrt(2.0), t = 2 * cs / (1 + cs);
  BOOST_TEST(mg::model_stock(base, Spans{a, c}, out) == t, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(out[0] == static_cast<float>(t), boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(out[1] == static_cast<float>(t * 0.5), boost::test_tools::tolerance(1e-6f));
  const Vec neg = {-1, 0};  // cos = -1 with N = 2: 1 + cos = 0
  require_error([&] { mg::model_stock(base, Spans{a, neg}, out); }, ErrorKind::Numeric, {"undefined"});
}

BOOST_AUTO_TEST_CASE(variance_correction_restores_the_mean_variance) {
  const std::size_t n = 4096;
  Vec a(n), b(n), avg(n);
  loco::fill_normal(a, 0.5f, 2.0f, 1, 1);
  loco::fill_normal(b, 0.5f, 2.0f, 1, 2);
  const double w[] = {1, 1};
  mg::linear(Spans{a, b}, w, true, avg);
  auto var = [n](const Vec& x) {
    double m = std::accumulate(x.begin(), x.end(), 0.0) / n, s = 0;
    for (float v : x) s += (v - m) * (v - m);
    return std::pair{m, s / n};
  };
  const double target = (var(a).second + var(b).second) / 2;
  const auto [mu0, v0] = var(avg);
  BOOST_TEST(v0 < 0.6 * target);  // averaging uncorrelated models shrinks the variance
  mg::variance_correct(Spans{a, b}, w, avg);
  const auto [mu1, v1] = var(avg);
  BOOST_TEST(v1 == target, boost::test_tools::tolerance(1e-5));
  BOOST_TEST(mu1 == mu0, boost::test_tools::tolerance(1e-5));
  // Identical models: a no-op.
  Vec same(n);
  mg::linear(Spans{a, a}, w, true, same);
  const Vec before = same;
  mg::variance_correct(Spans{a, a}, w, same);
  for (std::size_t i = 0; i < n; ++i) BOOST_TEST(same[i] == before[i], boost::test_tools::tolerance(1e-5f));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(mergekit_settings)

BOOST_AUTO_TEST_CASE(gradients_filters_and_layer_positions) {
  // mergekit's evaluate_setting: at t = 0.6 a 5-value gradient sits at 2.4: 0.6*g[2] + 0.4*g[3].
  const mg::Setting s = mg::parse_setting("--t", {"self_attn:0,0.5,0.3,0.7,1", "mlp:1,0.7", "0.25"});
  BOOST_TEST(*s.at("model.layers.3.self_attn.q_proj.weight", 0.6) == 0.6 * 0.3 + 0.4 * 0.7,
             boost::test_tools::tolerance(1e-15));
  BOOST_TEST(*s.at("x.self_attn.y", 0.0) == 0.0);
  BOOST_TEST(*s.at("x.self_attn.y", 1.0) == 1.0);
  BOOST_TEST(*s.at("blocks.0.mlp.fc.weight", 0.5) == 0.85, boost::test_tools::tolerance(1e-15));
  BOOST_TEST(*s.at("wte.weight", 0.3) == 0.25);  // no filter matches: the unconditioned value
  BOOST_TEST(!mg::parse_setting("--t", {"mlp:1"}).at("wte.weight", 0).has_value());
  BOOST_TEST(*mg::Setting(0.7).at("anything", 0.2) == 0.7);
  require_error([] { mg::parse_setting("--t", {"mlp:1,x"}); }, ErrorKind::Usage,
                {"--t 'mlp:1,x'", "'x' is not a number"});
  require_error([] { mg::parse_setting("--t", {":1"}); }, ErrorKind::Usage, {"empty filter"});
  // Positions: layer i of N at i/(N-1); before the first layer 0, after the last 1.
  const std::vector<std::string> names = {"wte.weight",          "blocks.0.ln1.weight",
                                          "blocks.1.ln1.weight", "blocks.2.attn.qkv.weight",
                                          "ln_f.weight",         "head.weight"};
  BOOST_TEST(mg::layer_positions(names) == (std::vector<double>{0, 0, 0.5, 1, 1, 1}), boost::test_tools::per_element());
  BOOST_TEST(mg::layer_positions({"model.layers.0.x", "lm_head.weight"}) == (std::vector<double>{1, 1}),
             boost::test_tools::per_element());  // one layer: t = 1, as mergekit
  BOOST_TEST(mg::layer_positions({"subblocks.3.w", "h.2.w", "h.0.w"}) == (std::vector<double>{0, 1, 0}),
             boost::test_tools::per_element());  // "subblocks." is not a layer part
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(merge_files)

// A SLERP with a layer gradient and a filter: each tensor is the kernel at its own t.
BOOST_AUTO_TEST_CASE(slerp_follows_a_layer_gradient) {
  TempDir tmp;
  const std::vector<std::string> names = {"wte", "blocks.0.attn.w", "blocks.1.attn.w", "blocks.2.attn.w",
                                          "blocks.2.mlp.w"};
  std::vector<std::pair<std::string, Vec>> a, b;
  for (std::size_t i = 0; i < names.size(); ++i) {
    a.push_back({names[i], Vec{1.0f + float(i), 0.5f, -1.0f}});
    b.push_back({names[i], Vec{-0.5f, 2.0f, 0.25f * float(i)}});
  }
  write_model(tmp / "a.h5", a);
  write_model(tmp / "b.h5", b);
  mg::MergeOptions opt;
  opt.method = mg::Method::Slerp;
  opt.base = tmp / "a.h5";
  opt.t = mg::parse_setting("--t", {"mlp:0.9", "0,0.2,1"});
  mg::merge_files({tmp / "b.h5"}, tmp / "s.h5", opt);
  loco::io::forget_inputs();
  // positions 0, 0, 0.5, 1, 1; gradient 0,0.2,1 at 0.5 = 0.2; mlp: 0.9
  const double ts[] = {0, 0, 0.2, 1, 0.9};
  for (std::size_t i = 0; i < names.size(); ++i) {
    Vec want(3);
    mg::slerp(a[i].second, b[i].second, ts[i], want);
    BOOST_TEST(read(tmp / "s.h5", names[i]) == want, boost::test_tools::per_element());
  }
  opt.t = mg::parse_setting("--t", {"mlp:0.9"});  // no value for the other tensors
  require_error([&] { mg::merge_files({tmp / "b.h5"}, tmp / "s2.h5", opt); }, ErrorKind::Usage,
                {"--t gives no value for tensor wte"});
  BOOST_TEST(!fs::exists(tmp / "s2.h5"));
}

// merge_files computes per-tensor statistics on whole tensors and writes row blocks: any block
// size gives the bytes of the whole-tensor kernels (one row per block against the default).
BOOST_AUTO_TEST_CASE(row_blocks_give_the_whole_tensor_kernels_result) {
  TempDir tmp;
  const std::int64_t rows = 37, cols = 5, n = rows * cols;
  std::vector<Vec> vals;
  for (int m = 0; m < 4; ++m) {
    Vec v(static_cast<std::size_t>(n));
    loco::fill_normal(v, m == 0 ? 0.0f : 0.1f, 1.0f, 3, static_cast<std::uint64_t>(m));
    vals.push_back(v);
    std::vector<loco::io::TensorInfo> plan(1);
    plan[0].name = "w";
    plan[0].shape = {rows, cols};
    loco::Attributes root;
    root.set("kind", std::string("model"));
    auto sink = loco::io::create_sink(tmp / fmt::format("m{}.h5", m), root, plan);
    sink->write(0, loco::Tensor::from_floats({rows, cols}, v));
    sink->commit();
  }
  const Spans models{vals[1], vals[2], vals[3]};
  const std::vector<double> w{1, 2, 1};
  struct Case {
    mg::Method method;
    bool base;
  };
  for (const Case c :
       {Case{mg::Method::Linear, false}, Case{mg::Method::Slerp, true}, Case{mg::Method::Ties, true},
        Case{mg::Method::DareTies, true}, Case{mg::Method::ModelStock, true}, Case{mg::Method::TaskArithmetic, true}}) {
    mg::MergeOptions opt;
    opt.method = c.method;
    if (c.base) opt.base = tmp / "m0.h5";
    std::vector<std::string> paths{tmp / "m1.h5"};
    if (c.method != mg::Method::Slerp) paths = {tmp / "m1.h5", tmp / "m2.h5", tmp / "m3.h5"};
    if (c.method == mg::Method::Slerp) opt.t = 0.3;
    if (c.method == mg::Method::Ties || c.method == mg::Method::DareTies) opt.density = 0.4;
    if (c.method != mg::Method::Slerp && c.method != mg::Method::ModelStock) opt.weights = w;
    if (c.method == mg::Method::Linear) opt.variance_correct = true;
    const std::string name(mg::method_name(c.method));
    mg::merge_files(paths, tmp / (name + "-whole.h5"), opt);
    loco::io::forget_inputs();
    opt.block_bytes = 1;  // one row per block
    mg::merge_files(paths, tmp / (name + "-rows.h5"), opt);
    loco::io::forget_inputs();
    const Vec whole = read(tmp / (name + "-whole.h5"), "w"), by_rows = read(tmp / (name + "-rows.h5"), "w");
    BOOST_TEST(whole == by_rows, boost::test_tools::per_element());
    // The kernels on whole tensors give the same bits.
    Vec want(static_cast<std::size_t>(n));
    switch (c.method) {
      case mg::Method::Linear:
        mg::linear(models, w, true, want);
        mg::variance_correct(models, w, want);
        break;
      case mg::Method::Slerp: mg::slerp(vals[0], vals[1], 0.3, want); break;
      case mg::Method::ModelStock: mg::model_stock(vals[0], models, want); break;
      case mg::Method::Ties:
      case mg::Method::TaskArithmetic: {
        std::vector<Vec> d(3, Vec(static_cast<std::size_t>(n)));
        for (int m = 0; m < 3; ++m) {
          for (std::int64_t i = 0; i < n; ++i) d[m][i] = vals[m + 1][i] - vals[0][i];
          if (c.method == mg::Method::Ties) mg::trim_magnitude(d[m], 0.4, false);
        }
        mg::combine_deltas(vals[0], Spans{d[0], d[1], d[2]}, w, c.method == mg::Method::Ties,
                           c.method == mg::Method::Ties, 1.0, want);
        break;
      }
      default: continue;  // DARE's mask stream is checked by the block comparison above
    }
    BOOST_TEST(whole == want, boost::test_tools::per_element());
  }
}

BOOST_AUTO_TEST_CASE(streams_every_method_and_checks_inputs) {
  TempDir tmp;
  const std::string base = (tmp / "base.h5"), a = (tmp / "a.h5"), b = (tmp / "b.safetensors");
  write_model(base, {{"w", {0, 0, 0}}, {"b", {1, 1}}}, R"({"type":"mlp"})");
  write_model(a, {{"w", {1, -2, 3}}, {"b", {1, 2}}}, R"({"type":"mlp"})");
  {
    loco::TensorSet set;
    set.add("w", loco::Tensor::from_floats({3}, Vec{-3, 1, 1}));
    set.add("b", loco::Tensor::from_floats({2}, Vec{3, 1}));
    std::vector<loco::io::TensorInfo> plan(2);
    plan[0].name = "w";
    plan[0].shape = {3};
    plan[1].name = "b";
    plan[1].shape = {2};
    auto sink = loco::io::create_sink(b, loco::Attributes{}, plan);
    sink->write(0, set.at("w"));
    sink->write(1, set.at("b"));
    sink->commit();
  }
  mg::MergeOptions opt;
  opt.method = mg::Method::Linear;
  mg::merge_files({a, b}, (tmp / "lin.h5"), opt);
  loco::io::forget_inputs();
  BOOST_TEST(read((tmp / "lin.h5"), "w") == (Vec{-1, -0.5f, 2}), boost::test_tools::per_element());
  BOOST_TEST(read((tmp / "lin.h5"), "b") == (Vec{2, 1.5f}), boost::test_tools::per_element());

  opt.method = mg::Method::Ties;
  opt.base = base;
  mg::merge_files({a, b}, (tmp / "ties.safetensors"), opt);
  loco::io::forget_inputs();
  BOOST_TEST(read((tmp / "ties.safetensors"), "w") == (Vec{-3, -2, 2}), boost::test_tools::per_element());

  opt.method = mg::Method::DareTies;
  opt.density = 0.5;
  opt.seed = 5;
  mg::merge_files({a, b}, (tmp / "dare1.h5"), opt);
  loco::io::forget_inputs();
  mg::merge_files({a, b}, (tmp / "dare2.h5"), opt);
  loco::io::forget_inputs();
  BOOST_TEST(read((tmp / "dare1.h5"), "w") == read((tmp / "dare2.h5"), "w"), boost::test_tools::per_element());

  opt = {};
  opt.method = mg::Method::Slerp;
  opt.t = 0.0;
  opt.base = base;
  mg::merge_files({a}, (tmp / "slerp.h5"), opt);
  loco::io::forget_inputs();
  BOOST_TEST(read((tmp / "slerp.h5"), "b") == (Vec{1, 1}), boost::test_tools::per_element());

  // Disagreements are named.
  const std::string c = (tmp / "c.h5"), d = (tmp / "d.h5"), e = (tmp / "e.h5");
  write_model(c, {{"w", {1, 2}}, {"b", {1, 2}}}, R"({"type":"mlp"})");
  write_model(d, {{"w", {1, 2, 3}}}, R"({"type":"mlp"})");
  write_model(e, {{"w", {1, 2, 3}}, {"b", {1, 2}}}, R"({"type":"gpt"})");
  opt = {};
  require_error([&] { mg::merge_files({a, c}, (tmp / "x.h5"), opt); }, ErrorKind::BadInput, {"tensor w", "[2]", "[3]"});
  loco::io::forget_inputs();
  require_error([&] { mg::merge_files({a, d}, (tmp / "x.h5"), opt); }, ErrorKind::BadInput, {"no tensor b", "d.h5"});
  loco::io::forget_inputs();
  require_error([&] { mg::merge_files({d, a}, (tmp / "x.h5"), opt); }, ErrorKind::BadInput, {"tensor b is not in"});
  loco::io::forget_inputs();
  require_error([&] { mg::merge_files({a, e}, (tmp / "x.h5"), opt); }, ErrorKind::BadInput, {"e.h5"});
  loco::io::forget_inputs();
  BOOST_TEST(!fs::exists((tmp / "x.h5")));
  // --allow-missing carries b through from the reference.
  opt.allow_missing = true;
  mg::merge_files({a, d}, (tmp / "carry.h5"), opt);
  loco::io::forget_inputs();
  BOOST_TEST(read((tmp / "carry.h5"), "b") == (Vec{1, 2}), boost::test_tools::per_element());
  BOOST_TEST(read((tmp / "carry.h5"), "w") == (Vec{1, 0, 3}), boost::test_tools::per_element());

  // Usage errors.
  opt = {};
  opt.method = mg::Method::Ties;
  require_error([&] { mg::merge_files({a}, (tmp / "x.h5"), opt); }, ErrorKind::Usage, {"--base"});
  opt.base = base;
  opt.weights = {1, 2, 3};
  require_error([&] { mg::merge_files({a, b}, (tmp / "x.h5"), opt); }, ErrorKind::Usage, {"3 values for 2 models"});
  opt = {};
  opt.method = mg::Method::Slerp;
  require_error([&] { mg::merge_files({a, b}, (tmp / "x.h5"), opt); }, ErrorKind::Usage, {"--t"});
  opt = {};
  opt.density = 0.5;
  require_error([&] { mg::merge_files({a, b}, (tmp / "x.h5"), opt); }, ErrorKind::Usage, {"--density"});
  loco::io::forget_inputs();
}

BOOST_AUTO_TEST_CASE(pytorch_checkpoints_merge_with_other_formats) {
  TempDir tmp;
  const std::string pt = std::string(LOCO_TEST_DATA) + "/torch/nested.pt";
  mg::MergeOptions opt;
  opt.method = mg::Method::TaskArithmetic;
  opt.base = pt;
  opt.lambda = 3.0;
  // A model equal to the base: every task vector is zero, so the result is the base exactly.
  mg::merge_files({pt}, (tmp / "out.h5"), opt);
  loco::io::forget_inputs();
  auto src = loco::io::open_source((tmp / "out.h5"), false);
  BOOST_TEST(src->tensors().size() == 3u);
  BOOST_TEST(read((tmp / "out.h5"), "model.layer.b") == (Vec{1, 2}), boost::test_tools::per_element());
  BOOST_TEST(read((tmp / "out.h5"), "model.layer.w") == (Vec{-3, -2.5f, 0, 0.5f}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
