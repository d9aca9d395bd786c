// FedProx and SCAFFOLD on the client: the proximal gradient, the corrected gradient and the
// control-variate update on hand-computed values (exact in binary floating point), and the
// worker's --prox-mu / --scaffold-control against their definitions rebuilt from the libraries.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "helpers.hpp"
#include "loco/train/federated.hpp"
#include "loco/train/worker.hpp"

using namespace loco;
using namespace loco::train;
using namespace loco::train::test;
using std::int64_t;

namespace {

TensorSet set1(std::vector<float> v) {
  TensorSet s;
  s.add("w", Tensor::from_floats({static_cast<int64_t>(v.size())}, v));
  return s;
}
std::vector<float> values(const TensorSet& s) {
  const auto v = s.at("w").f32();
  return {v.begin(), v.end()};
}

const char* kLogreg = R"({"arch":"logreg","features":4,"classes":3})";

// A logreg model (round 0, weights shifted so the gradient is not trivial) and a 29-row shard.
void write_inputs(const Scratch& s) {
  const auto cfg = config(kLogreg);
  write_init_model(s.file("g.h5"), cfg, 3, 0, 1.0f, 0.25f);
  write_rows(s.file("shard.h5"), 29, 4, 3, 7, 1.0f, /*shard=*/2);
}

WorkerOptions sgd_options(const Scratch& s, const std::string& out, const std::string& state, int64_t steps) {
  WorkerOptions o;
  o.model = s.file("g.h5");
  o.data = s.file("shard.h5");
  o.output = s.file(out);
  o.state = state.empty() ? "" : s.file(state);
  o.steps = steps;
  o.batch = 5;
  o.optimizer = "sgd:lr=0.5";
  o.seed = 9;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(federated)

BOOST_AUTO_TEST_CASE(proximal_gradient_adds_mu_times_the_distance_to_the_global_model) {
  // g = [0.5, 0.125], w = [1.5, -0.25], w_g = [1, 0.25], μ = 0.5: g + μ(w − w_g) = [0.75, -0.125].
  TensorSet g = set1({0.5f, 0.125f});
  add_proximal_gradient(g, set1({1.5f, -0.25f}), set1({1.0f, 0.25f}), 0.5);
  BOOST_TEST(values(g) == (std::vector<float>{0.75f, -0.125f}), boost::test_tools::per_element());
  // μ = 0 leaves the gradient untouched, even where w − w_g is not finite.
  TensorSet h = set1({0.5f, -0.0f});
  add_proximal_gradient(h, set1({INFINITY, 1.0f}), set1({0.0f, 2.0f}), 0.0);
  BOOST_TEST(values(h)[0] == 0.5f);
  BOOST_TEST(std::signbit(values(h)[1]));
  require_error([&] { add_proximal_gradient(h, set1({1, 1}), set1({1, 1}), -0.1); }, ErrorKind::Usage, {"--prox-mu"});
}

BOOST_AUTO_TEST_CASE(control_correction_is_g_minus_ci_plus_c) {
  // g = [0.5, -1], c_i = [0.25, 0.5], c = [1, -0.5]: g − c_i + c = [1.25, -2].
  TensorSet g = set1({0.5f, -1.0f});
  add_control_correction(g, set1({0.25f, 0.5f}), set1({1.0f, -0.5f}));
  BOOST_TEST(values(g) == (std::vector<float>{1.25f, -2.0f}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(client_control_update_is_option_two) {
  // c_i = [0.25, 0.5], c = [1, -0.5], x = [2, 0], y = [1, 0.5], K·η = 0.5:
  // c_i⁺ = c_i − c + (x − y)/(K·η) = [0.25 − 1 + 2, 0.5 + 0.5 − 1] = [1.25, 0]; Δc = c_i − c_i⁺ = [-1, 0.5].
  TensorSet ci = set1({0.25f, 0.5f});
  const TensorSet dc = update_client_control(ci, set1({1.0f, -0.5f}), set1({2.0f, 0.0f}), set1({1.0f, 0.5f}), 0.5);
  BOOST_TEST(values(ci) == (std::vector<float>{1.25f, 0.0f}), boost::test_tools::per_element());
  BOOST_TEST(values(dc) == (std::vector<float>{-1.0f, 0.5f}), boost::test_tools::per_element());
  require_error([&] { update_client_control(ci, ci, ci, ci, 0.0); }, ErrorKind::Usage, {"sum to 0"});
}

BOOST_AUTO_TEST_CASE(two_sgd_steps_with_prox_differ_by_lr_mu_times_the_first_steps_distance) {
  Scratch s("prox");
  write_inputs(s);
  const double lr = 0.5, mu = 0.25;
  auto o = sgd_options(s, "d1.h5", "", 1);
  run_worker(o);  // w1 = w_g − Δ1
  o = sgd_options(s, "d1p.h5", "", 1);
  o.prox_mu = mu;
  run_worker(o);
  io::forget_inputs();
  // At the first step w = w_g, so the proximal term is exactly zero.
  require_bitwise_equal(read_group(s.file("d1p.h5")), read_group(s.file("d1.h5")), "first step");

  o = sgd_options(s, "d2.h5", "", 2);
  run_worker(o);
  o = sgd_options(s, "d2p.h5", "", 2);
  o.prox_mu = mu;
  run_worker(o);
  io::forget_inputs();
  // w2' = w1 − lr(g(w1) + μ(w1 − w_g)) = w2 − lr·μ(w1 − w_g), so Δ2' − Δ2 = −lr·μ·Δ1 (Δ1 = w_g − w1).
  // float32: w1, w2, w2', Δ2, Δ2', g + μ(w1 − w_g) and μ(w1 − w_g) are each rounded once (≤ ½ ulp of
  // values at most M = max|w_g|, |w1|, |w2|, |w2'| in size, lr·g included), so |error| ≤ 8·2⁻²⁴·M.
  const TensorSet g = read_group(s.file("g.h5"));
  const TensorSet d1 = read_group(s.file("d1.h5")), d2 = read_group(s.file("d2.h5")),
                  d2p = read_group(s.file("d2p.h5"));
  int64_t moved = 0;
  for (const auto& e : g) {
    const auto wg = e.tensor.f32();
    const auto a = d1.at(e.name).f32(), b = d2.at(e.name).f32(), c = d2p.at(e.name).f32();
    for (std::size_t k = 0; k < wg.size(); ++k) {
      const double w1 = wg[k] - a[k], w2 = wg[k] - b[k], w2p = wg[k] - c[k];
      const double m = std::max({std::fabs(static_cast<double>(wg[k])), std::fabs(w1), std::fabs(w2), std::fabs(w2p)});
      const double want = -lr * mu * a[k];
      BOOST_TEST_INFO(e.name << "[" << k << "]");
      BOOST_TEST(std::fabs((static_cast<double>(c[k]) - b[k]) - want) <= 8 * std::ldexp(m, -24));
      moved += a[k] != 0.0f;
    }
  }
  BOOST_TEST(moved > 0);  // the identity is not vacuous
  BOOST_TEST(read_attributes(s.file("d2p.h5")).get_double("prox_mu").value_or(-1) == mu);
}

BOOST_AUTO_TEST_CASE(prox_mu_zero_is_bit_identical_to_no_prox) {
  Scratch s("prox0");
  write_inputs(s);
  auto o = sgd_options(s, "a.h5", "sa.h5", 4);
  o.optimizer = "momentum:lr=0.1";
  run_worker(o);
  o = sgd_options(s, "b.h5", "sb.h5", 4);
  o.optimizer = "momentum:lr=0.1";
  o.prox_mu = 0.0;
  run_worker(o);
  io::forget_inputs();
  require_bitwise_equal(read_group(s.file("a.h5")), read_group(s.file("b.h5")), "delta");
  require_bitwise_equal(read_group(s.file("sa.h5"), "state/momentum"), read_group(s.file("sb.h5"), "state/momentum"),
                        "state");
}

BOOST_AUTO_TEST_CASE(scaffold_steps_and_control_update_follow_the_definition) {
  Scratch s("scaffold");
  write_inputs(s);
  const auto cfg = config(kLogreg);
  // The server's c: a nonzero model-shaped file (round 4, so the control delta must carry round 4).
  write_init_model(s.file("c.h5"), cfg, 8, 4, 0.5f, -0.125f);
  const double lr = 0.5;
  const int64_t K = 2;
  const model::ModelFile global = model::read_model(s.file("g.h5"));
  const model::ModelFile control = model::read_model(s.file("c.h5"));
  const data::DataFile shard = data::read_data(s.file("shard.h5"));
  io::forget_inputs();

  // The definition, rebuilt: y ← y − η(g(y) − c_i + c) for K steps; c_i⁺ = c_i − c + (x − y)/(Kη).
  model::Model net(cfg);
  TensorSet y;
  for (const auto& e : global.params) y.add(e.name, e.tensor.clone());
  TensorSet ci = zero_control(global.params);
  TensorSet grads = net.make_params();
  int64_t cumulative = 0;
  auto reference_round = [&](TensorSet& params) {
    for (int64_t k = 0; k < K; ++k, ++cumulative) {
      std::vector<int64_t> idx(5);
      data::BatchSampler bs(shard.rows.n, 5, data::SampleMode::Shuffle, 9, 2, 0);
      bs.indices(cumulative, idx);
      std::vector<float> x(5 * 4);
      std::vector<std::int32_t> lab(5);
      data::gather_batch(shard.rows, idx, x, lab);
      net.forward_backward(params, model::Batch::classification(x, lab), &grads);
      for (auto& e : params) {
        auto p = e.tensor.f32();
        const std::span<const float> g = grads.at(e.name).f32(), a = ci.at(e.name).f32(),
                                     c = control.params.at(e.name).f32();
        for (std::size_t j = 0; j < p.size(); ++j) p[j] -= static_cast<float>(lr) * (g[j] + (c[j] - a[j]));
      }
    }
  };

  for (int round = 0; round < 2; ++round) {  // the second round starts from the c_i the first one stored
    BOOST_TEST_CONTEXT("round " << round) {
      TensorSet start;
      for (const auto& e : y) start.add(e.name, e.tensor.clone());
      if (round == 1) {  // the global model moved: the worker starts round 2 from the file we write
        write_params_model(s.file("g.h5"), cfg, y, 1);
      }
      const model::ModelFile x = model::read_model(s.file("g.h5"));
      io::forget_inputs();
      reference_round(y);
      auto o = sgd_options(s, "d.h5", "state.h5", K);
      o.scaffold_control = s.file("c.h5");
      o.control_delta = s.file("dc.h5");
      run_worker(o);
      io::forget_inputs();
      // The model delta: x − y, bit for bit (the same float32 operations in the same order).
      require_bitwise_equal(read_group(s.file("d.h5")), difference(x.params, y), "delta");
      // c_i⁺ and Δc from the definition (double, rounded once).
      const TensorSet stored = read_group(s.file("state.h5"), "state/scaffold_control");
      const TensorSet dc = read_group(s.file("dc.h5"));
      for (auto& e : ci) {
        auto a = e.tensor.f32();
        const std::span<const float> c = control.params.at(e.name).f32(), xv = x.params.at(e.name).f32(),
                                     yv = y.at(e.name).f32();
        const std::span<const float> got = stored.at(e.name).f32(), d = dc.at(e.name).f32();
        for (std::size_t j = 0; j < a.size(); ++j) {
          const float want =
              static_cast<float>(static_cast<double>(a[j]) - c[j] + (static_cast<double>(xv[j]) - yv[j]) / (K * lr));
          BOOST_TEST(got[j] == want);
          BOOST_TEST(d[j] == static_cast<float>(static_cast<double>(a[j]) - want));
          a[j] = want;
        }
      }
      const Attributes at = read_attributes(s.file("dc.h5"));
      BOOST_TEST(at.get_string("kind").value_or("") == "delta");
      BOOST_TEST(at.get_int("round").value_or(-1) == 4);
      BOOST_TEST(at.get_string("base_checksum").value_or("") == control.checksum);
      BOOST_TEST(at.get_int("samples").value_or(-1) == K * 5);
      BOOST_TEST(at.get_double("lr_sum").value_or(0) == K * lr);
    }
  }
}

BOOST_AUTO_TEST_CASE(refusals_write_nothing) {
  Scratch s("refuse");
  write_inputs(s);
  write_init_model(s.file("c.h5"), config(kLogreg), 8);
  auto o = sgd_options(s, "d.h5", "state.h5", 1);
  o.scaffold_control = s.file("c.h5");
  o.control_delta = s.file("dc.h5");
  o.optimizer = "adamw";
  require_error([&] { run_worker(o); }, ErrorKind::Usage, {"sgd", "adamw"});
  o.optimizer = "sgd";
  o.control_delta.clear();
  require_error([&] { run_worker(o); }, ErrorKind::Usage, {"--control-delta"});
  o.control_delta = s.file("dc.h5");
  o.state.clear();
  require_error([&] { run_worker(o); }, ErrorKind::Usage, {"--state"});
  // A state made without SCAFFOLD has no c_i.
  auto plain = sgd_options(s, "p.h5", "state.h5", 1);
  run_worker(plain);
  io::forget_inputs();
  o.state = s.file("state.h5");
  require_error([&] { run_worker(o); }, ErrorKind::BadInput, {"state.h5", "scaffold_control"});
  // A c file of another model.
  io::forget_inputs();
  write_init_model(s.file("c.h5"), config(R"({"arch":"logreg","features":4,"classes":2})"), 8);
  std::filesystem::remove(s.file("state.h5"));
  require_error([&] { run_worker(o); }, ErrorKind::BadInput, {"c.h5", "another model"});
  auto p = sgd_options(s, "q.h5", "", 2);
  p.prox_mu = 0.1;
  p.overlap = 1;
  require_error([&] { run_worker(p); }, ErrorKind::Usage, {"streaming"});
  for (const char* f : {"d.h5", "dc.h5", "q.h5", "state.h5"}) BOOST_TEST(!std::filesystem::exists(s.file(f)), f);
}

BOOST_AUTO_TEST_SUITE_END()
