// loco::aggregate with compressed deltas and the SparseLoCo/DeMo rules, against hand computations:
// contributor-mean over overlapping and disjoint top-k selections (a kept zero still counts),
// median-norm clipping with odd and even counts, DCT top-k reduced over its coefficients, lossless
// compressed deltas giving the dense result bit for bit, payload bytes in the summary, and refusals
// (foreign base, ef21/econtrol feedback, a compressed model, dct_topk mixed with other codecs).
#include <boost/test/unit_test.hpp>

#include "fixtures.hpp"
#include "support.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <map>
#include <numbers>
#include <random>

#include "loco/aggregate/aggregate.hpp"
#include "loco/compress/codec.hpp"
#include "loco/compress/feedback.hpp"
#include "loco/core/error.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/output.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

using namespace loco;
using namespace loco::aggregate;

namespace {

using loco::aggtest::Values;
using loco::aggtest::write_file;
using loco::test::require_error;
using loco::test::TempDir;
const auto& kShapes = loco::aggtest::kSmall;

Values zeros() {
  Values v;
  for (const auto& [name, shape] : kShapes) v[name].assign(static_cast<std::size_t>(shape_numel(shape)), 0.0f);
  return v;
}

// Multiples of 2⁻⁶ in [−4, 4]: exact in float16, so a cast to f16 is lossless on them.
Values dyadic(std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> u(-256, 256);
  Values v = zeros();
  for (auto& [name, x] : v)
    for (float& e : x) e = static_cast<float>(u(gen)) / 64.0f;
  return v;
}

struct Setup {
  TempDir dir{"aggc"};
  std::string g0 = dir / "g0.h5", base;
  explicit Setup(const Values& theta = zeros()) {
    Attributes a;
    a.set("round", std::int64_t{0});
    write_file(g0, "model", theta, a);
    io::forget_inputs();
    base = io::tensors_checksum(*io::open_source(g0));
  }
  // A dense delta of worker k, and optionally its compressed form (codec spec, feedback kind).
  std::string delta(const std::string& name, const Values& v, std::int64_t worker, const std::string& base_cs = "") {
    Attributes a;
    a.set("round", std::int64_t{0});
    a.set("worker", worker);
    a.set("samples", std::int64_t{1});
    a.set("base_checksum", base_cs.empty() ? base : base_cs);
    write_file(dir / name, "delta", v, a);
    return dir / name;
  }
  std::string compressed(const std::string& dense, const std::string& spec, const std::string& ef = "") {
    const std::string out = dense.substr(0, dense.size() - 3) + ".c.h5";
    io::forget_inputs();
    if (ef.empty()) {
      compress::compress_file(dense, out, compress::Codec::parse(spec), 7);
    } else {
      const auto fb = compress::parse_feedback(ef);
      compress::compress_file(dense, out, compress::Codec::parse(spec), 7, "", fb.get(), dense + ".ef.h5");
    }
    return out;
  }
};

AggregateOptions sgd1(Reduction r = Reduction::Mean, Clip c = Clip::None) {
  AggregateOptions o;
  o.outer = optim::parse_outer_spec("sgd:lr=1");
  o.reduce = r;
  o.clip = c;
  return o;
}

AggregateSummary run(const std::string& model, const std::vector<std::string>& deltas, const std::string& out,
                     const AggregateOptions& o) {
  io::forget_inputs();
  return loco::aggregate::aggregate(model, deltas, out, o);
}

// −θ_new: with θ = 0 and outer SGD lr 1 the new model is −Δ̄ exactly.
Values dbar_of(const std::string& path) {
  io::forget_inputs();
  auto src = io::open_source(path);
  Values out;
  for (const auto* t : src->group("tensors")) {
    Tensor x = src->read(*t);
    for (float v : x.f32()) out[t->name].push_back(-v);
  }
  return out;
}

bool same_bits(const Values& a, const Values& b) {
  for (const auto& [k, v] : a)
    if (b.at(k).size() != v.size() || std::memcmp(v.data(), b.at(k).data(), v.size() * 4) != 0) return false;
  return a.size() == b.size();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(compressed)

// topk:k=2 per tensor. b: worker 0 (0,0,5,0,0) keeps {0,2} (index 0 is a zero kept by the tie rule:
// lower index first), worker 1 (4,0,0,0,−2) keeps {0,4}, worker 2 (0,0,0,3,1) keeps {3,4}.
// Contributor-mean: (0+4)/2, nobody, 5/1, 3/1, (−2+1)/2 = (2, 0, 5, 3, −0.5); mean: Σ/3.
// w: disjoint selections, so contributor-mean gives each worker's kept values unchanged.
BOOST_AUTO_TEST_CASE(contributor_mean_over_topk_selections_by_hand) {
  Setup s;
  std::vector<Values> v(3, zeros());
  v[0]["b"] = {0, 0, 5, 0, 0};
  v[1]["b"] = {4, 0, 0, 0, -2};
  v[2]["b"] = {0, 0, 0, 3, 1};
  for (int k = 0; k < 3; ++k) {
    v[k]["w"][static_cast<std::size_t>(k)] = static_cast<float>(k + 1);
    v[k]["w"][static_cast<std::size_t>(10 + k)] = -static_cast<float>(2 * k + 1);
  }
  std::vector<std::string> c;
  for (int k = 0; k < 3; ++k) c.push_back(s.compressed(s.delta(fmt::format("d{}.h5", k), v[k], k), "topk:k=2"));
  const auto sum = run(s.g0, c, s.dir / "cm.h5", sgd1(Reduction::ContributorMean));
  const Values got = dbar_of(s.dir / "cm.h5");
  BOOST_TEST(got.at("b") == (std::vector<float>{2, 0, 5, 3, -0.5f}), boost::test_tools::per_element());
  std::vector<float> w(21, 0.0f);
  for (int k = 0; k < 3; ++k) w[k] = float(k + 1), w[10 + k] = -float(2 * k + 1);
  BOOST_TEST(got.at("w") == w, boost::test_tools::per_element());
  BOOST_TEST(sum.reduce == "contributor-mean");
  BOOST_TEST(sum.compressed_deltas == 3);
  // Payload per delta: two tensors of 2 uint32 indices and 2 float32 values = 32 bytes.
  for (const auto& ct : sum.contributors) {
    BOOST_TEST(ct.payload_bytes == 32);
    BOOST_TEST(ct.codec == "topk:k=2,tile=0");
    BOOST_TEST(ct.weight == 1.0);
  }
  BOOST_TEST(sum.payload_bytes == 96);
  io::forget_inputs();
  const auto attrs = io::open_source(s.dir / "cm.h5")->attributes();
  BOOST_TEST(attrs.get_string("reduction").value() == "contributor-mean");
  BOOST_TEST(attrs.get_string("clip").value() == "none");
  BOOST_TEST(attrs.get_int("payload_bytes").value() == 96);

  // mean over all three: Σ_k (1/3)·x_k in float64, rounded once.
  run(s.g0, c, s.dir / "m.h5", sgd1());
  const Values m = dbar_of(s.dir / "m.h5");
  const double third = 1.0 / 3.0;
  const std::vector<float> want{static_cast<float>(third * 4), 0, static_cast<float>(third * 5),
                                static_cast<float>(third * 3), static_cast<float>(third * -2 + third * 1)};
  BOOST_TEST(m.at("b") == want, boost::test_tools::per_element());
}

// A chain topk + 4-bit values: the selection is the kept indices whatever the values decode to; a
// mixed set (two compressed, one dense) reduces with the dense delta contributing everywhere.
BOOST_AUTO_TEST_CASE(contributor_mean_with_a_value_codec_and_a_dense_delta) {
  Setup s;
  Values a = zeros(), b = zeros(), d = dyadic(5);
  a["b"] = {0, 0, 5, 0, 0};
  b["b"] = {4, 0, 0, 0, -2};
  const auto ca = s.compressed(s.delta("a.h5", a, 0), "topk:k=2+quant:bits=8");
  const auto cb = s.compressed(s.delta("b.h5", b, 1), "topk:k=2+quant:bits=8");
  const auto dd = s.delta("d.h5", d, 2);
  run(s.g0, {ca, cb, dd}, s.dir / "out.h5", sgd1(Reduction::ContributorMean));
  const Values got = dbar_of(s.dir / "out.h5");
  // The values as the codec decodes them (8-bit codes, one block per tensor); the kept zero of a at
  // index 0 decodes to the block's minimum, 0, and still counts as a contribution.
  const auto decoded = [&](const std::string& path) {
    io::forget_inputs();
    auto src = io::open_source(path);
    const Tensor t = compress::decode(compress::read_encoded(*src, "b"));
    return std::vector<float>(t.f32().begin(), t.f32().end());
  };
  const auto xa = decoded(ca), xb = decoded(cb);
  BOOST_TEST(xa[0] == 0.0f);
  // b: index 0 selected by a, b and the dense d; 1 by d only; 2 by a and d; 3 by d; 4 by b and d.
  const auto& x = d["b"];
  const std::vector<float> want{static_cast<float>((double(xa[0]) + double(xb[0]) + double(x[0])) / 3.0), x[1],
                                static_cast<float>((double(xa[2]) + double(x[2])) / 2.0), x[3],
                                static_cast<float>((double(xb[4]) + double(x[4])) / 2.0)};
  BOOST_TEST(got.at("b") == want, boost::test_tools::per_element());
}

// Median-norm clipping, per tensor, c_k = min(1, median/‖x_k‖). Odd: norms 1, 2, 4 → median 2,
// the third scaled by 1/2. Even: norms 1, 2, 4, 8 → median (2+4)/2 = 3, the last two scaled by 3/4
// and 3/8. Each delta is non-zero on its own coordinate, so the mean shows each clipped value; w is
// all zeros (norm 0: factor 1, nothing clipped).
BOOST_AUTO_TEST_CASE(median_norm_clip_odd_and_even_counts) {
  BOOST_TEST(median({4, 1, 2}) == 2.0);
  BOOST_TEST(median({8, 1, 4, 2}) == 3.0);
  BOOST_TEST(median({}) == 0.0);
  for (int n : {3, 4}) {
    BOOST_TEST_CONTEXT("count " << n) {
      Setup s;
      std::vector<std::string> paths;
      for (int k = 0; k < n; ++k) {
        Values v = zeros();
        v["b"][static_cast<std::size_t>(k)] = -std::ldexp(1.0f, k);  // norm 2^k
        paths.push_back(s.delta(fmt::format("d{}.h5", k), v, k));
      }
      const auto sum = run(s.g0, paths, s.dir / "out.h5", sgd1(Reduction::Mean, Clip::MedianNorm));
      const Values got = dbar_of(s.dir / "out.h5");
      const double w = 1.0 / n, med = n == 3 ? 2.0 : 3.0;
      std::vector<float> want(5, 0.0f);
      for (int k = 0; k < n; ++k) {
        const double norm = std::ldexp(1.0, k), c = norm > med ? med / norm : 1.0;
        want[static_cast<std::size_t>(k)] = static_cast<float>((w * c) * -norm);
      }
      BOOST_TEST(got.at("b") == want, boost::test_tools::per_element());
      BOOST_TEST(got.at("w") == std::vector<float>(21, 0.0f), boost::test_tools::per_element());
      BOOST_TEST(sum.clip == "median-norm");
      for (int k = 0; k < n; ++k) BOOST_TEST(sum.contributors[k].clipped_tensors == (std::ldexp(1.0, k) > med ? 1 : 0));
      if (n == 4) BOOST_TEST(got.at("b")[3] == -0.75f);  // 8 · 3/8 / 4
    }
  }
}

// Lossless codec (cast to f16 of f16-representable values): compressed deltas, alone or mixed with
// dense ones, give the dense result bit for bit (the same float64 sums in the same order).
BOOST_AUTO_TEST_CASE(lossless_compressed_equals_dense) {
  Setup s(dyadic(1));
  std::vector<std::string> dense, comp, mixed;
  for (int k = 0; k < 3; ++k) {
    dense.push_back(s.delta(fmt::format("d{}.h5", k), dyadic(10 + k), k));
    comp.push_back(s.compressed(dense.back(), "cast:dtype=f16"));
    mixed.push_back(k == 1 ? dense.back() : comp.back());
  }
  AggregateOptions o = sgd1();
  o.outer = optim::parse_outer_spec("nesterov");
  run(s.g0, dense, s.dir / "dense.h5", o);
  const auto sc = run(s.g0, comp, s.dir / "comp.h5", o);
  run(s.g0, mixed, s.dir / "mixed.h5", o);
  BOOST_TEST(same_bits(dbar_of(s.dir / "dense.h5"), dbar_of(s.dir / "comp.h5")));
  BOOST_TEST(same_bits(dbar_of(s.dir / "dense.h5"), dbar_of(s.dir / "mixed.h5")));
  BOOST_TEST(sc.payload_bytes == 3 * 26 * 2);  // 26 float16 values per delta
  // contributor-mean of codecs without a selection (and of dense deltas) is the mean: Σx/3 here
  // against Σ(x/3), equal up to the final rounding (one float32 ulp).
  run(s.g0, comp, s.dir / "cm.h5", sgd1(Reduction::ContributorMean));
  run(s.g0, dense, s.dir / "m.h5", sgd1());
  const Values cm = dbar_of(s.dir / "cm.h5"), m = dbar_of(s.dir / "m.h5");
  std::int64_t off = 0;
  for (const auto& [name, x] : m)
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float a = x[i], b = cm.at(name)[i];
      off += a != b && std::nextafter(a, b) != b;
    }
  BOOST_TEST(off == 0);
}

// dct_topk (chunk 4, top-1 per chunk) under contributor-mean: the mean over the coefficients the
// workers kept, then the inverse DCT, against a float64 reference of the definition (DCT-II
// orthonormal, chunk-padded). Float32 transforms of values ≤ 4 over 4 terms: error ≲ 1e-6.
BOOST_AUTO_TEST_CASE(dct_topk_contributor_mean_over_coefficients) {
  Setup s;
  constexpr int N = 4;
  // Dyadic values give exact ties between coefficient magnitudes (x0 + x3 = 0 makes |c0| = |c2|),
  // which float32 and the float64 reference may break differently: an irrational offset removes them.
  std::vector<Values> v = {dyadic(21), dyadic(22)};
  for (std::size_t w = 0; w < v.size(); ++w)
    for (auto& [name, x] : v[w])
      for (std::size_t i = 0; i < x.size(); ++i) x[i] += 0.01f * std::sin(1.7f * float(i) + float(w));
  std::vector<std::string> c;
  for (int k = 0; k < 2; ++k)
    c.push_back(s.compressed(s.delta(fmt::format("d{}.h5", k), v[k], k), "dct_topk:chunk=4,k=1"));
  run(s.g0, c, s.dir / "out.h5", sgd1(Reduction::ContributorMean));
  const Values got = dbar_of(s.dir / "out.h5");
  const auto basis = [](int k, int n) {
    return (k == 0 ? std::sqrt(1.0 / N) : std::sqrt(2.0 / N)) * std::cos(std::numbers::pi * (n + 0.5) * k / N);
  };
  double max_err = 0, max_diff_from_spatial = 0;
  for (const auto& [name, shape] : kShapes) {
    const int d = static_cast<int>(shape_numel(shape)), nc = (d + N - 1) / N;
    std::vector<double> sum(nc * N, 0.0), cnt(nc * N, 0.0), spatial(d, 0.0);
    for (const Values& x : v) {
      for (int ch = 0; ch < nc; ++ch) {
        std::vector<double> coef(N, 0.0);
        for (int k = 0; k < N; ++k)
          for (int n = 0; n < N && ch * N + n < d; ++n) coef[k] += basis(k, n) * x.at(name)[ch * N + n];
        int best = 0;
        for (int k = 1; k < N; ++k)
          if (std::abs(coef[k]) > std::abs(coef[best])) best = k;
        sum[ch * N + best] += coef[best];
        cnt[ch * N + best] += 1;
        for (int n = 0; n < N && ch * N + n < d; ++n) spatial[ch * N + n] += basis(best, n) * coef[best] / 2.0;
      }
    }
    for (int j = 0; j < d; ++j) {
      const int ch = j / N, n = j % N;
      double ref = 0;
      for (int k = 0; k < N; ++k)
        if (cnt[ch * N + k] > 0) ref += basis(k, n) * sum[ch * N + k] / cnt[ch * N + k];
      max_err = std::max(max_err, std::abs(got.at(name)[j] - ref));
      max_diff_from_spatial = std::max(max_diff_from_spatial, std::abs(ref - spatial[j]));
    }
  }
  BOOST_TEST(max_err < 1e-5);
  // The rule matters: with these inputs the spatial mean of the decoded tensors differs.
  BOOST_TEST(max_diff_from_spatial > 1e-2);
  // Mixing dct_topk with another codec in one tensor has no common domain.
  const auto other = s.compressed(s.delta("t.h5", dyadic(23), 5), "topk:k=2");
  require_error(
      [&] {
        run(s.g0, {c[0], other}, s.dir / "x.h5", sgd1(Reduction::ContributorMean));
      },
      ErrorKind::BadInput, {"contributor-mean over DCT coefficients", "t.c.h5"});
  // Under mean the decoded tensors are averaged: accepted.
  run(s.g0, {c[0], other}, s.dir / "x.h5", sgd1());
}

BOOST_AUTO_TEST_CASE(refusals) {
  Setup s;
  const auto good = s.compressed(s.delta("good.h5", dyadic(31), 0), "topk:k=3");
  const auto foreign = s.compressed(s.delta("foreign.h5", dyadic(32), 1, "xxh64:0123456789abcdef"), "topk:k=3");
  require_error(
      [&] {
        run(s.g0, {good, foreign}, s.dir / "out.h5", sgd1());
      },
      ErrorKind::BadInput, {"foreign.c.h5", "stale or foreign delta", "xxh64:0123456789abcdef", s.base});
  BOOST_TEST(!std::filesystem::exists(s.dir / "out.h5"));
  for (const char* ef : {"ef21", "econtrol:eta=0.5"}) {
    const auto f =
        s.compressed(s.delta(fmt::format("{}.h5", ef[1] == 'f' ? "ef21" : "ec"), dyadic(33), 2), "topk:k=3", ef);
    require_error(
        [&] {
          run(s.g0, {good, f}, s.dir / "out.h5", sgd1());
        },
        ErrorKind::BadInput, {f, "error feedback", "receiver"});
  }
  // sparseloco feedback: the file holds the worker's contribution itself, accepted.
  const auto sl = s.compressed(s.delta("sl.h5", dyadic(34), 3), "topk:k=3", "sparseloco");
  run(s.g0, {good, sl}, s.dir / "out.h5", sgd1(Reduction::ContributorMean, Clip::MedianNorm));
  // A compressed model is not a delta.
  io::forget_inputs();
  compress::compress_file(s.g0, s.dir / "gm.h5", compress::Codec::parse("topk:k=3"), 7);
  require_error(
      [&] {
        run(s.g0, {good, s.dir / "gm.h5"}, s.dir / "out2.h5", sgd1());
      },
      ErrorKind::BadInput, {"gm.h5", "compressed model file, expected a compressed delta"});
  // Two files of one worker on one base, one dense and one compressed.
  require_error(
      [&] {
        run(s.g0, {good, s.dir / "good.h5"}, s.dir / "out2.h5", sgd1());
      },
      ErrorKind::BadInput, {"two deltas from worker 0"});
}

// A NaN in a dense delta next to compressed ones: dropped and named, the rest reduced.
BOOST_AUTO_TEST_CASE(non_finite_delta_dropped_on_the_tensorwise_pass) {
  Setup s;
  Values bad = dyadic(41);
  bad["w"][4] = std::nanf("");
  const auto c0 = s.compressed(s.delta("d0.h5", dyadic(42), 0), "cast:dtype=f16");
  const auto c1 = s.compressed(s.delta("d1.h5", dyadic(43), 1), "cast:dtype=f16");
  const auto nan = s.delta("nan.h5", bad, 2);
  const auto sum = run(s.g0, {c0, c1, nan}, s.dir / "with.h5", sgd1());
  BOOST_TEST(sum.dropped.size() == 1u);
  BOOST_TEST(sum.dropped[0].path == nan);
  BOOST_TEST(sum.dropped[0].reason.find("tensor w") != std::string::npos);
  BOOST_TEST(sum.passes == 2);
  run(s.g0, {c0, c1}, s.dir / "without.h5", sgd1());
  BOOST_TEST(same_bits(dbar_of(s.dir / "with.h5"), dbar_of(s.dir / "without.h5")));
}

BOOST_AUTO_TEST_CASE(parse_rules) {
  BOOST_TEST((parse_reduction("contributor-mean") == Reduction::ContributorMean));
  BOOST_TEST(reduction_name(Reduction::ContributorMean) == "contributor-mean");
  BOOST_TEST((parse_clip("median-norm") == Clip::MedianNorm));
  BOOST_TEST(clip_name(Clip::None) == "none");
  require_error([] { parse_clip("norm"); }, ErrorKind::Usage, {"median-norm"});
  require_error([] { parse_reduction("median"); }, ErrorKind::Usage, {"contributor-mean"});
}

BOOST_AUTO_TEST_SUITE_END()
