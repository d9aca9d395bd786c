// loco::aggregate against hand computations: mean and weighted mean, FedAvg, Nesterov over two
// chained rounds, Adam, staleness weights; bit-identical results whatever the input order or block
// size; refusal of stale, foreign and mismatched deltas; non-finite deltas dropped; quorum; the
// streaming pass against its definition for any block size, thread count and storage of the deltas.
#include <boost/test/unit_test.hpp>

#include "fixtures.hpp"
#include "support.hpp"

#include <fmt/format.h>
#include <hdf5.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "loco/aggregate/aggregate.hpp"
#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/output.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace fs = std::filesystem;
using namespace loco;
using namespace loco::aggregate;

namespace {

using loco::aggtest::checksum_of;
using loco::aggtest::kConfig;
using loco::aggtest::random_values;
using loco::aggtest::read_group;
using loco::aggtest::run;
using loco::aggtest::same_bits;
using loco::aggtest::Values;
using loco::aggtest::write_file;
using loco::test::TempDir;

// The test model: a 2-D tensor of several rows (so small blocks split it) and a 1-D one.
const auto& kShapes = loco::aggtest::kSmall;

void write_model(const std::string& path, const Values& v, std::int64_t round,
                 const std::map<std::string, Values>& state = {}, std::optional<std::int64_t> step = {}) {
  Attributes a;
  a.set("round", round);
  std::map<std::string, Values> groups;
  for (const auto& [slot, vals] : state) groups["state/" + slot] = vals;
  write_file(path, "model", v, a, kShapes, groups, step);
}

void write_delta(const std::string& path, const Values& v, const std::string& base, std::int64_t worker,
                 std::int64_t samples = 1, std::int64_t round = 0) {
  Attributes a;
  a.set("round", round);
  a.set("worker", worker);
  a.set("samples", samples);
  a.set("base_checksum", base);
  write_file(path, "delta", v, a);
}

std::int64_t state_step(const std::string& path) {
  io::forget_inputs();
  return *io::open_source(path)->group_attributes("state").get_int("step");
}

AggregateOptions outer(const std::string& spec, Reduction r = Reduction::Mean) {
  AggregateOptions o;
  o.outer = optim::parse_outer_spec(spec);
  o.reduce = r;
  return o;
}

template <typename Fn>
void expect_error(ErrorKind kind, const std::vector<std::string>& needles, Fn&& fn) {
  try {
    fn();
    BOOST_ERROR("no error thrown");
  } catch (const Error& e) {
    BOOST_TEST((e.kind() == kind), "kind " << static_cast<int>(e.kind()) << " for: " << e.what());
    for (const auto& n : needles)
      BOOST_TEST(std::string(e.what()).find(n) != std::string::npos, "'" << n << "' not in: " << e.what());
  }
}

// A fixture: model g0 (round 0, no state) and its checksum.
struct Setup {
  TempDir dir;
  Values theta = random_values(1);
  std::string g0 = dir / "g0.h5", base;
  Setup() {
    write_model(g0, theta, 0);
    base = checksum_of(g0);
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(mean_of_three_is_the_correctly_rounded_mean) {
  Setup s;
  Values zero = s.theta;
  for (auto& [k, v] : zero) std::fill(v.begin(), v.end(), 0.0f);
  write_model(s.dir / "z.h5", zero, 0);
  const std::string base = checksum_of(s.dir / "z.h5");
  std::vector<Values> d = {random_values(11), random_values(12), random_values(13)};
  std::vector<std::string> paths;
  for (int k = 0; k < 3; ++k) {
    paths.push_back(s.dir / ("d" + std::to_string(k) + ".h5"));
    write_delta(paths.back(), d[k], base, k);
  }
  // sgd lr 1 from θ = 0: θ_new = −Δ̄ exactly, so the file shows Δ̄ itself.
  const auto sum = run(s.dir / "z.h5", paths, s.dir / "out.h5", outer("sgd:lr=1"));
  const Values got = read_group(s.dir / "out.h5");
  for (const auto& [name, v] : got)
    for (std::size_t i = 0; i < v.size(); ++i) {
      // float64 sum of three float32 values with weights 1/3 is within ~1e-16 relative of the
      // exact mean, so its float32 rounding is the correctly rounded mean or one ulp beside it.
      const double exact = (double(d[0][name][i]) + d[1][name][i] + d[2][name][i]) / 3.0;
      const float ref = static_cast<float>(exact);
      const float ulp = std::nextafter(std::fabs(ref), INFINITY) - std::fabs(ref);
      BOOST_TEST(std::fabs(-v[i] - ref) <= ulp, name << "[" << i << "] " << -v[i] << " vs " << ref);
    }
  BOOST_TEST(sum.contributors.size() == 3u);
  BOOST_TEST(sum.contributors[0].weight == 1.0 / 3.0);
  BOOST_TEST(sum.passes == 1);
  BOOST_TEST(sum.round == 1);
}

BOOST_AUTO_TEST_CASE(weighted_mean_by_samples_hand_case) {
  Setup s;
  // Δ₁ = 1, Δ₂ = 3 everywhere, samples 1 and 3: Δ̄ = (1·1 + 3·3)/4 = 2.5 (exact in binary).
  Values d1 = s.theta, d2 = s.theta;
  for (auto& [k, v] : d1) std::fill(v.begin(), v.end(), 1.0f);
  for (auto& [k, v] : d2) std::fill(v.begin(), v.end(), 3.0f);
  write_delta(s.dir / "a.h5", d1, s.base, 0, 1);
  write_delta(s.dir / "b.h5", d2, s.base, 1, 3);
  const auto sum =
      run(s.g0, {s.dir / "a.h5", s.dir / "b.h5"}, s.dir / "out.h5", outer("sgd:lr=1", Reduction::WeightedMean));
  const Values got = read_group(s.dir / "out.h5");
  for (const auto& [name, v] : got)
    for (std::size_t i = 0; i < v.size(); ++i) BOOST_TEST(v[i] == s.theta[name][i] - 2.5f);
  BOOST_TEST(sum.contributors[0].weight == 0.25);
  BOOST_TEST(sum.contributors[1].weight == 0.75);
  // ‖Δ̄‖ = 2.5·√26 (26 elements).
  BOOST_TEST(std::fabs(sum.update_norm - 2.5 * std::sqrt(26.0)) < 1e-12);
  // The same deltas under the plain mean: Δ̄ = 2.
  run(s.g0, {s.dir / "a.h5", s.dir / "b.h5"}, s.dir / "out2.h5", outer("sgd:lr=1"));
  for (const auto& [name, v] : read_group(s.dir / "out2.h5"))
    for (std::size_t i = 0; i < v.size(); ++i) BOOST_TEST(v[i] == s.theta[name][i] - 2.0f);
}

BOOST_AUTO_TEST_CASE(fedavg_one_delta_gives_exactly_theta_minus_delta) {
  Setup s;
  const Values d = random_values(5, 3.0f);
  write_delta(s.dir / "d.h5", d, s.base, 7);
  const auto sum = run(s.g0, {s.dir / "d.h5"}, s.dir / "g1.h5", outer("sgd:lr=1"));
  const Values got = read_group(s.dir / "g1.h5");
  for (const auto& [name, v] : got)
    for (std::size_t i = 0; i < v.size(); ++i) BOOST_TEST(v[i] == s.theta[name][i] - d.at(name)[i]);
  BOOST_TEST(state_step(s.dir / "g1.h5") == 1);
  io::forget_inputs();
  auto out = io::open_source(s.dir / "g1.h5");
  BOOST_TEST(*out->attributes().get_int("round") == 1);
  BOOST_TEST(*out->attributes().get_string("kind") == "model");
  BOOST_TEST(*out->attributes().get_string("reduction") == "mean");
  BOOST_TEST(out->attributes().get_string("outer_optimizer")->rfind("sgd:lr=1", 0) == 0);
  BOOST_TEST(io::model_config(*out) == io::canonical_json(kConfig, "test"));
  BOOST_TEST(out->group("state/momentum").empty());
  BOOST_TEST(sum.step_norm > 0);
}

BOOST_AUTO_TEST_CASE(order_of_inputs_does_not_change_a_bit) {
  Setup s;
  std::vector<std::string> paths;
  for (int k = 0; k < 6; ++k) {
    // Workers 5..0 written under names in the other order, so path order ≠ worker order.
    paths.push_back(s.dir / ("d" + std::to_string(k) + ".h5"));
    write_delta(paths.back(), random_values(100 + k, 1e3f * static_cast<float>(k + 1)), s.base, 5 - k, 10 + k);
  }
  const auto o = outer("nesterov:lr=0.7,momentum=0.9", Reduction::WeightedMean);
  run(s.g0, paths, s.dir / "a.h5", o);
  std::vector<std::string> shuffled = paths;
  std::mt19937 gen(3);
  std::vector<Values> results;
  for (int trial = 0; trial < 3; ++trial) {
    std::shuffle(shuffled.begin(), shuffled.end(), gen);
    run(s.g0, shuffled, s.dir / "b.h5", o);
    BOOST_TEST(same_bits(read_group(s.dir / "a.h5"), read_group(s.dir / "b.h5")));
    BOOST_TEST(same_bits(read_group(s.dir / "a.h5", "state/momentum"), read_group(s.dir / "b.h5", "state/momentum")));
  }
}

BOOST_AUTO_TEST_CASE(block_size_does_not_change_the_result) {
  Setup s;
  std::vector<std::string> paths;
  for (int k = 0; k < 4; ++k) {
    paths.push_back(s.dir / ("d" + std::to_string(k) + ".h5"));
    write_delta(paths.back(), random_values(200 + k), s.base, k, 3 + k);
  }
  for (const std::string spec : {"nesterov", "adam:lr=0.01", "fedyogi"}) {
    auto o = outer(spec, Reduction::WeightedMean);
    run(s.g0, paths, s.dir / "big.h5", o);
    o.block_bytes = 1;  // one row per block
    run(s.g0, paths, s.dir / "tiny.h5", o);
    BOOST_TEST(same_bits(read_group(s.dir / "big.h5"), read_group(s.dir / "tiny.h5")), spec);
  }
}

BOOST_AUTO_TEST_CASE(nesterov_two_rounds_chained_through_the_file) {
  Setup s;
  const double lr = 0.7, mu = 0.9;
  const Values a1 = random_values(21), b1 = random_values(22), a2 = random_values(23), b2 = random_values(24);
  write_delta(s.dir / "a1.h5", a1, s.base, 0);
  write_delta(s.dir / "b1.h5", b1, s.base, 1);
  const auto o = outer("nesterov:lr=0.7,momentum=0.9");
  run(s.g0, {s.dir / "a1.h5", s.dir / "b1.h5"}, s.dir / "g1.h5", o);
  const std::string base1 = checksum_of(s.dir / "g1.h5");
  write_delta(s.dir / "a2.h5", a2, base1, 0, 1, 1);
  write_delta(s.dir / "b2.h5", b2, base1, 1, 1, 1);
  const auto sum = run(s.dir / "g1.h5", {s.dir / "a2.h5", s.dir / "b2.h5"}, s.dir / "g2.h5", o);
  BOOST_TEST(sum.round == 2);
  BOOST_TEST(sum.outer_step == 2);
  BOOST_TEST(state_step(s.dir / "g2.h5") == 2);
  const Values got = read_group(s.dir / "g2.h5"), mom = read_group(s.dir / "g2.h5", "state/momentum");
  for (const auto& [name, v] : got)
    for (std::size_t i = 0; i < v.size(); ++i) {
      // By hand in float64: m₁ = Δ̄₁; θ₁ = θ₀ − lr(Δ̄₁ + μm₁); m₂ = μm₁ + Δ̄₂; θ₂ = θ₁ − lr(Δ̄₂ + μm₂).
      const double d1 = (double(a1.at(name)[i]) + b1.at(name)[i]) / 2,
                   d2 = (double(a2.at(name)[i]) + b2.at(name)[i]) / 2;
      const double m1 = d1, t1 = s.theta[name][i] - lr * (d1 + mu * m1);
      const double m2 = mu * m1 + d2, t2 = t1 - lr * (d2 + mu * m2);
      // |values| ≤ 1 and |m| ≤ 2: about a dozen float32 roundings, each ≤ 2⁻²⁴·4 absolute, so 4e-6 bounds them.
      BOOST_TEST(std::fabs(v[i] - t2) <= 4e-6, name << "[" << i << "] " << v[i] << " vs " << t2);
      BOOST_TEST(std::fabs(mom.at(name)[i] - m2) <= 4e-6);
    }
}

BOOST_AUTO_TEST_CASE(adam_first_step_hand_computed) {
  Setup s;
  const Values d = random_values(31);
  write_delta(s.dir / "d.h5", d, s.base, 0);
  run(s.g0, {s.dir / "d.h5"}, s.dir / "g1.h5", outer("adam:lr=0.01"));
  const Values got = read_group(s.dir / "g1.h5");
  for (const auto& [name, v] : got)
    for (std::size_t i = 0; i < v.size(); ++i) {
      // t = 1: m̂ = Δ, v̂ = Δ², θ₁ = θ₀ − lr·Δ/(|Δ| + eps).
      const double x = d.at(name)[i], ref = s.theta[name][i] - 0.01 * x / (std::fabs(x) + 1e-8);
      BOOST_TEST(std::fabs(v[i] - ref) <= 1e-6, name << "[" << i << "] " << v[i] << " vs " << ref);
    }
  BOOST_TEST(read_group(s.dir / "g1.h5", "state/exp_avg").size() == 2u);
  BOOST_TEST(read_group(s.dir / "g1.h5", "state/exp_avg_sq").size() == 2u);
}

BOOST_AUTO_TEST_CASE(stale_and_foreign_deltas_are_refused) {
  Setup s;
  write_delta(s.dir / "good.h5", random_values(41), s.base, 0);
  write_delta(s.dir / "stale.h5", random_values(42), "xxh64:0123456789abcdef", 1);
  expect_error(ErrorKind::BadInput, {"stale.h5", "xxh64:0123456789abcdef", s.base}, [&] {
    run(s.g0, {s.dir / "good.h5", s.dir / "stale.h5"}, s.dir / "out.h5", outer("nesterov"));
  });
  BOOST_TEST(!fs::exists(s.dir / "out.h5"));
  // --allow-stale does not accept a delta of the same round on another base: it is foreign.
  auto o = outer("nesterov");
  o.allow_stale = true;
  expect_error(ErrorKind::BadInput, {"stale.h5", "foreign"}, [&] {
    run(s.g0, {s.dir / "good.h5", s.dir / "stale.h5"}, s.dir / "out.h5", o);
  });
  // A model where a delta is expected.
  expect_error(ErrorKind::BadInput, {"g0.h5", "expected delta"},
               [&] { run(s.g0, {s.g0}, s.dir / "out.h5", outer("nesterov")); });
}

BOOST_AUTO_TEST_CASE(allow_stale_weights_by_polynomial_staleness) {
  Setup s;
  // The old model of round 1 and the current one of round 3 (s = 2).
  write_model(s.dir / "old.h5", random_values(50), 1);
  const std::string old_base = checksum_of(s.dir / "old.h5");
  write_model(s.dir / "g3.h5", s.theta, 3);
  const std::string base = checksum_of(s.dir / "g3.h5");
  const Values fresh = random_values(51), stale = random_values(52);
  write_delta(s.dir / "fresh.h5", fresh, base, 0, 1, 3);
  write_delta(s.dir / "stale.h5", stale, old_base, 1, 1, 1);
  auto o = outer("sgd:lr=1");
  o.allow_stale = true;
  const auto sum = run(s.dir / "g3.h5", {s.dir / "stale.h5", s.dir / "fresh.h5"}, s.dir / "g4.h5", o);
  const double g = 1.0 / std::sqrt(3.0);  // (1 + 2)^−0.5
  BOOST_TEST(sum.contributors[1].staleness == 2);
  BOOST_TEST(std::fabs(sum.contributors[1].weight - g / 2) < 1e-15);
  BOOST_TEST(sum.staleness_rule == "polynomial:a=0.5");
  for (const auto& [name, v] : read_group(s.dir / "g4.h5"))
    for (std::size_t i = 0; i < v.size(); ++i) {
      const double ref = s.theta[name][i] - (double(fresh.at(name)[i]) + g * stale.at(name)[i]) / 2;
      // Δ̄ rounded once to float32 (|Δ̄| < 1) and one float32 subtraction (|θ| < 2): ≤ 2⁻²⁴ + 2⁻²³.
      BOOST_TEST(std::fabs(v[i] - ref) <= 2e-7, name << "[" << i << "]");
    }
  io::forget_inputs();
  BOOST_TEST(*io::open_source(s.dir / "g4.h5")->attributes().get_string("staleness") == "polynomial:a=0.5");
}

BOOST_AUTO_TEST_CASE(non_finite_delta_is_dropped_and_named) {
  Setup s;
  std::vector<std::string> good;
  for (int k = 0; k < 3; ++k) {
    good.push_back(s.dir / ("d" + std::to_string(k) + ".h5"));
    write_delta(good.back(), random_values(60 + k), s.base, k * 2);
  }
  // Worker 1 sorts between the good ones; its NaN sits in the last row of the first tensor and an
  // Inf in the second, so with one-row blocks the earlier blocks were already accumulated.
  Values bad = random_values(70);
  bad["w"][20] = NAN;
  bad["b"][0] = INFINITY;
  write_delta(s.dir / "bad.h5", bad, s.base, 1);
  auto o = outer("nesterov");
  o.block_bytes = 1;
  std::vector<std::string> all = good;
  all.push_back(s.dir / "bad.h5");
  const auto sum = run(s.g0, all, s.dir / "with.h5", o);
  run(s.g0, good, s.dir / "without.h5", o);
  BOOST_TEST(same_bits(read_group(s.dir / "with.h5"), read_group(s.dir / "without.h5")));
  BOOST_TEST(sum.passes == 2);
  BOOST_TEST(sum.contributors.size() == 3u);
  BOOST_REQUIRE(sum.dropped.size() == 1u);
  BOOST_TEST(sum.dropped[0].path == s.dir / "bad.h5");
  BOOST_TEST(*sum.dropped[0].worker == 1);
  BOOST_TEST(sum.dropped[0].reason.find("tensor w") != std::string::npos);
  const std::string j = summary_json(sum);
  BOOST_TEST(j.find("bad.h5") != std::string::npos);
  BOOST_TEST(j.find("non-finite") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(quorum_failure_writes_nothing) {
  Setup s;
  write_delta(s.dir / "a.h5", random_values(80), s.base, 0);
  Values bad = random_values(81);
  bad["b"][4] = NAN;
  write_delta(s.dir / "b.h5", bad, s.base, 1);
  auto o = outer("nesterov");
  o.min_deltas = 2;
  expect_error(ErrorKind::Check, {"quorum", "1 valid"}, [&] {
    run(s.g0, {s.dir / "a.h5", s.dir / "b.h5"}, s.dir / "out.h5", o);
  });
  o.min_deltas = 3;
  expect_error(ErrorKind::Check, {"quorum"}, [&] { run(s.g0, {s.dir / "a.h5", s.dir / "b.h5"}, s.dir / "out.h5", o); });
  // Only the two files, the model and nothing else (no temporary left behind).
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(s.dir.path)) files += e.path().filename() != "g0.h5";
  BOOST_TEST(files == 2u);
  // All deltas non-finite with the default quorum of one: also a quorum failure.
  o.min_deltas = 1;
  expect_error(ErrorKind::Check, {"quorum"}, [&] { run(s.g0, {s.dir / "b.h5"}, s.dir / "out.h5", o); });
  BOOST_TEST(!fs::exists(s.dir / "out.h5"));
}

BOOST_AUTO_TEST_CASE(state_for_another_optimizer_is_refused) {
  Setup s;
  const Values zeros = [&] {
    Values z = s.theta;
    for (auto& [k, v] : z) std::fill(v.begin(), v.end(), 0.0f);
    return z;
  }();
  write_model(s.dir / "adam.h5", s.theta, 0, {{"exp_avg", zeros}, {"exp_avg_sq", zeros}}, 3);
  const std::string base = checksum_of(s.dir / "adam.h5");
  write_delta(s.dir / "d.h5", random_values(90), base, 0);
  expect_error(ErrorKind::BadInput, {"adam.h5", "exp_avg"},
               [&] { run(s.dir / "adam.h5", {s.dir / "d.h5"}, s.dir / "out.h5", outer("nesterov")); });
  // A state without the slot the optimizer needs, past step 0.
  write_model(s.dir / "sgd5.h5", s.theta, 0, {}, 5);
  write_delta(s.dir / "d5.h5", random_values(91), checksum_of(s.dir / "sgd5.h5"), 0);
  expect_error(ErrorKind::BadInput, {"sgd5.h5", "'momentum'"},
               [&] { run(s.dir / "sgd5.h5", {s.dir / "d5.h5"}, s.dir / "out.h5", outer("nesterov")); });
  // The adam state is carried: one more adam step reads it (step 3 → 4).
  const auto sum = run(s.dir / "adam.h5", {s.dir / "d.h5"}, s.dir / "out.h5", outer("adam"));
  BOOST_TEST(sum.outer_step == 4);
}

BOOST_AUTO_TEST_CASE(mismatched_deltas_are_refused) {
  Setup s;
  // Deltas with another model_config, a transposed tensor, a missing tensor.
  auto custom = [&](const std::string& name, const std::string& config,
                    std::vector<std::pair<std::string, Shape>> shapes) {
    Attributes a;
    a.set("kind", std::string("delta"));
    a.set("model_config", config);
    a.set("base_checksum", s.base);
    std::vector<io::TensorInfo> plan;
    for (const auto& [n, sh] : shapes) {
      io::TensorInfo t;
      t.name = n;
      t.shape = sh;
      plan.push_back(t);
    }
    io::forget_inputs();
    auto sink = io::create_sink(s.dir / name, io::Format::Loco, a, plan);
    for (std::size_t i = 0; i < plan.size(); ++i) {
      std::vector<float> zero(static_cast<std::size_t>(shape_numel(plan[i].shape)));
      sink->write_rows(i, 0, plan[i].rows(), std::as_bytes(std::span(zero)));
    }
    sink->commit();
  };
  custom("cfg.h5", R"({"type":"mlp","hidden":[8]})", kShapes);
  custom("shape.h5", kConfig, {{"w", {3, 7}}, {"b", {5}}});
  custom("missing.h5", kConfig, {{"w", {7, 3}}, {"c", {5}}});
  expect_error(ErrorKind::BadInput, {"shape.h5", "[3, 7]"},
               [&] { run(s.g0, {s.dir / "shape.h5"}, s.dir / "out.h5", outer("nesterov")); });
  expect_error(ErrorKind::BadInput, {"missing.h5", "no tensor b"},
               [&] { run(s.g0, {s.dir / "missing.h5"}, s.dir / "out.h5", outer("nesterov")); });
  expect_error(ErrorKind::BadInput, {"cfg.h5", "hidden"},
               [&] { run(s.g0, {s.dir / "cfg.h5"}, s.dir / "out.h5", outer("nesterov")); });
  // Two deltas from one worker on the same base.
  write_delta(s.dir / "a.h5", random_values(1), s.base, 4);
  write_delta(s.dir / "b.h5", random_values(2), s.base, 4);
  expect_error(ErrorKind::BadInput, {"worker 4"}, [&] {
    run(s.g0, {s.dir / "a.h5", s.dir / "b.h5"}, s.dir / "out.h5", outer("nesterov"));
  });
  // Weighted mean without samples.
  {
    Attributes a;
    a.set("base_checksum", s.base);
    write_file(s.dir / "nos.h5", "delta", random_values(3), a);
  }
  expect_error(ErrorKind::BadInput, {"nos.h5", "samples"},
               [&] { run(s.g0, {s.dir / "nos.h5"}, s.dir / "out.h5", outer("sgd", Reduction::WeightedMean)); });
  // The output may not be an input.
  expect_error(ErrorKind::Usage, {}, [&] { run(s.g0, {s.dir / "a.h5"}, s.g0, outer("nesterov")); });
}

namespace {

// A larger file for the streaming pass: "big" has more elements than one piece and rows that
// pieces cut in the middle; "b" is small. Written as float32 or float16 (contiguous, through the
// loco sink) or as a chunked float32 dataset through the HDF5 C API, which only read_rows reads.
const std::vector<std::pair<std::string, Shape>> kBigShapes = {{"big", {300, 257}}, {"b", {5}}};
enum class Storage { F32, F16, Chunked };

Values big_values(std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Values v;
  for (const auto& [name, shape] : kBigShapes) {
    auto& x = v[name];
    x.resize(static_cast<std::size_t>(shape_numel(shape)));
    for (float& e : x) e = u(gen);
  }
  return v;
}

void write_big(const std::string& path, const Attributes& root, const Values& v, Storage storage,
               const Values* momentum = nullptr) {
  io::forget_inputs();
  if (storage == Storage::Chunked) {
    hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    for (const auto& e : root) {
      hid_t sp = H5Screate(H5S_SCALAR);
      if (const auto* s = std::get_if<std::string>(&e.value)) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, s->size() + 1);
        hid_t a = H5Acreate2(f, e.name.c_str(), t, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, s->c_str());
        H5Aclose(a), H5Tclose(t);
      } else {
        const long long x = std::get<std::int64_t>(e.value);
        hid_t a = H5Acreate2(f, e.name.c_str(), H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_LLONG, &x);
        H5Aclose(a);
      }
      H5Sclose(sp);
    }
    hid_t g = H5Gcreate2(f, "tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    for (const auto& [name, shape] : kBigShapes) {
      std::vector<hsize_t> dims(shape.begin(), shape.end()), chunk(dims);
      chunk[0] = std::min<hsize_t>(7, dims[0]);
      hid_t sp = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
      hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
      H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
      hid_t ds = H5Dcreate2(g, name.c_str(), H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
      H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.at(name).data());
      H5Dclose(ds), H5Pclose(dcpl), H5Sclose(sp);
    }
    H5Gclose(g), H5Fclose(f);
    return;
  }
  Attributes a = root;
  a.set("loco_format", std::string("loco"));
  const DType dt = storage == Storage::F16 ? DType::F16 : DType::F32;
  std::vector<io::TensorInfo> plan;
  for (const auto& [name, shape] : kBigShapes) plan.push_back({"tensors", name, shape, dt, {}});
  if (momentum)
    for (const auto& [name, shape] : kBigShapes) plan.push_back({"state/momentum", name, shape, DType::F32, {}});
  auto sink = io::create_sink(path, io::Format::Loco, a, plan);
  std::size_t i = 0;
  for (const auto& [name, shape] : kBigShapes) {
    const auto& x = v.at(name);
    std::vector<std::byte> bytes(x.size() * dtype_size(dt));
    convert_elements(DType::F32, reinterpret_cast<const std::byte*>(x.data()), dt, bytes.data(), x.size());
    sink->write_rows(i++, 0, shape[0], bytes);
  }
  if (momentum)
    for (const auto& [name, shape] : kBigShapes)
      sink->write_rows(i++, 0, shape[0], std::as_bytes(std::span(momentum->at(name))));
  if (momentum) sink->set_group_attribute("state", "step", std::int64_t{3});
  sink->commit();
}

// The stored values of a file as float32 (float16 deltas round).
Values stored(const std::string& path) {
  io::forget_inputs();
  auto src = io::open_source(path);
  Values out;
  for (const auto* t : src->group("tensors")) {
    Tensor x = src->read(*t, DType::F32);
    out[t->name].assign(x.f32().begin(), x.f32().end());
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(streaming_pass_is_bit_identical_for_any_block_thread_count_and_storage) {
  TempDir dir;
  Attributes model_root;
  model_root.set("kind", std::string("model"));
  model_root.set("model_config", kConfig);
  model_root.set("round", std::int64_t{0});
  const Values theta = big_values(1), mom = big_values(2);
  write_big(dir / "g0.h5", model_root, theta, Storage::F32, &mom);
  const std::string base = checksum_of(dir / "g0.h5");
  // Seven deltas (more than one group of deltas per accumulator pass), one float16, one chunked.
  std::vector<std::string> raw_paths, all_paths;
  for (int k = 0; k < 7; ++k) {
    Attributes a;
    a.set("kind", std::string("delta"));
    a.set("model_config", kConfig);
    a.set("loco_format", std::string("loco"));
    a.set("loco_version", std::int64_t{1});
    a.set("round", std::int64_t{0});
    a.set("worker", std::int64_t{k});
    a.set("samples", std::int64_t{10 + 7 * k});
    a.set("base_checksum", base);
    const Storage st = k == 6 ? Storage::Chunked : k == 2 ? Storage::F16 : Storage::F32;
    const std::string p = dir / ("d" + std::to_string(k) + ".h5");
    write_big(p, a, big_values(100 + k), st);
    all_paths.push_back(p);
    if (st != Storage::Chunked) raw_paths.push_back(p);
  }
  const auto o = outer("nesterov:lr=0.7,momentum=0.9", Reduction::WeightedMean);
  // The definition: Δ̄ = float32(Σ w_k Δ_k) summed in float64 in worker order, then the optimizer
  // on whole tensors.
  auto expected = [&](const std::vector<std::string>& paths, Values& th, Values& m) {
    double denom = 0;
    for (std::size_t k = 0; k < paths.size(); ++k) denom += 10 + 7 * static_cast<double>(k);
    std::vector<Values> d;
    for (const auto& p : paths) d.push_back(stored(p));
    th = theta;
    m = mom;
    const auto opt = optim::make_optimizer(o.outer);
    for (const auto& [name, shape] : kBigShapes) {
      const std::size_t n = th[name].size();
      std::vector<float> dbar(n);
      for (std::size_t j = 0; j < n; ++j) {
        double acc = 0;
        for (std::size_t k = 0; k < paths.size(); ++k) {
          const double w = (10 + 7 * static_cast<double>(k)) / denom;
          acc = k == 0 ? w * double(d[k].at(name)[j]) : acc + w * double(d[k].at(name)[j]);
        }
        dbar[j] = static_cast<float>(acc);
      }
      const std::span<float> slot(m[name]);
      opt->apply(th[name], dbar, std::span<const std::span<float>>(&slot, 1), 4, opt->lr());
    }
  };
  for (const auto* paths : {&raw_paths, &all_paths}) {
    Values th, m;
    expected(*paths, th, m);
    for (std::size_t block : {std::size_t{1} << 20, std::size_t{1}, std::size_t{5000}})
      for (int threads : {1, 2}) {
        tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
        auto oo = o;
        oo.block_bytes = block;
        const auto sum = run(dir / "g0.h5", *paths, dir / "g1.h5", oo);
        const std::string what = fmt::format("{} deltas, block {}, {} threads", paths->size(), block, threads);
        BOOST_TEST(same_bits(read_group(dir / "g1.h5"), th), what);
        BOOST_TEST(same_bits(read_group(dir / "g1.h5", "state/momentum"), m), what);
        BOOST_TEST(sum.outer_step == 4);
        std::uint64_t delta_bytes = 0;
        for (const auto& p : *paths) delta_bytes += (300 * 257 + 5) * (p == dir / "d2.h5" ? 2 : 4);
        BOOST_TEST(sum.delta_bytes_read == delta_bytes, what);
      }
  }
}
