// Inner optimizers (SGD, heavy-ball, Nesterov, Adam, AdamW) against their torch formulas in double.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "helpers.hpp"
#include "references.hpp"
#include "loco/optim/optimizer.hpp"

using namespace loco;
using namespace loco::optim;
using namespace loco::optim::test;

namespace {

const std::vector<float> kP0 = {0.5f, -1.25f, 2.0f, 0.0f, 3.0f};
const std::vector<std::vector<float>> kGrads = {
    {0.25f, -0.5f, 1.5f, 2.0f, -0.75f},
    {0.125f, 0.75f, -1.0f, 2.5f, -0.5f},
    {-0.375f, 1.0f, 0.5f, 3.0f, 0.25f},
};

std::vector<double> lrs(double lr) { return {lr, lr, lr}; }

}  // namespace

BOOST_AUTO_TEST_SUITE(inner)

// Each step rounds a handful of float operations (weight decay, momentum, product, difference),
// each at most u relative to the magnitudes the references accumulate: 8 ulps covers the chain.
constexpr double kUlps = 8;

BOOST_AUTO_TEST_CASE(sgd_matches_formula) {
  OptimizerSpec spec = inner_spec_defaults("sgd");
  spec.lr = 0.1;
  RefSgd ref(kP0, 0, false, 0, false);
  run_and_compare(spec, ref, kP0, kGrads, {0.1, 0.05, 0.2}, kUlps);
}

BOOST_AUTO_TEST_CASE(sgd_coupled_and_decoupled_weight_decay) {
  OptimizerSpec spec = parse_inner_spec("sgd:lr=0.1,weight_decay=0.01");
  RefSgd coupled(kP0, 0, false, 0.01, false);
  run_and_compare(spec, coupled, kP0, kGrads, lrs(0.1), kUlps);
  spec.decoupled_weight_decay = true;
  RefSgd decoupled(kP0, 0, false, 0.01, true);
  run_and_compare(spec, decoupled, kP0, kGrads, lrs(0.1), kUlps);
}

BOOST_AUTO_TEST_CASE(heavy_ball_matches_formula) {
  OptimizerSpec spec = parse_inner_spec("momentum:lr=0.1,momentum=0.9");
  RefSgd ref(kP0, 0.9, false, 0, false);
  run_and_compare(spec, ref, kP0, kGrads, lrs(0.1), kUlps);
  OptimizerSpec wd = parse_inner_spec("momentum:lr=0.1,momentum=0.9,weight_decay=0.05");
  RefSgd ref_wd(kP0, 0.9, false, 0.05, false);
  run_and_compare(wd, ref_wd, kP0, kGrads, lrs(0.1), kUlps);
}

BOOST_AUTO_TEST_CASE(nesterov_matches_formula) {
  OptimizerSpec spec = parse_inner_spec("nesterov:lr=0.1,momentum=0.9");
  RefSgd ref(kP0, 0.9, true, 0, false);
  run_and_compare(spec, ref, kP0, kGrads, lrs(0.1), kUlps);
  OptimizerSpec wd = parse_inner_spec("nesterov:lr=0.1,momentum=0.9,weight_decay=0.05,decoupled=true");
  RefSgd ref_wd(kP0, 0.9, true, 0.05, true);
  run_and_compare(wd, ref_wd, kP0, kGrads, lrs(0.1), kUlps);
}

BOOST_AUTO_TEST_CASE(nesterov_differs_from_heavy_ball_by_lr_mu_buf) {
  // With the same buffer history, Nesterov's step minus heavy-ball's is −lr·(g + μ·buf) + lr·buf.
  // Step 1 (buf = g): heavy-ball equals SGD bit for bit; Nesterov moves by lr·(1 + μ)·g.
  auto heavy = make_inner_optimizer("momentum:lr=0.5,momentum=0.5");
  auto nest = make_inner_optimizer("nesterov:lr=0.5,momentum=0.5");
  auto sgd = make_inner_optimizer("sgd:lr=0.5");
  TensorSet ph = one_tensor("w", kP0), pn = one_tensor("w", kP0), ps = one_tensor("w", kP0);
  OptimizerState sh = heavy->make_state(ph), sn = nest->make_state(pn), s0 = sgd->make_state(ps);
  TensorSet g1 = one_tensor("w", kGrads[0]);
  heavy->step(ph, g1, sh);
  nest->step(pn, g1, sn);
  sgd->step(ps, g1, s0);
  BOOST_TEST(same_bits(ph.at("w").f32(), ps.at("w").f32()));
  // Values chosen so every product here is exact in float: compare exactly.
  for (std::size_t i = 0; i < kP0.size(); ++i) {
    BOOST_TEST(ph.at("w").f32()[i] == kP0[i] - 0.5f * kGrads[0][i]);
    BOOST_TEST(pn.at("w").f32()[i] == kP0[i] - 0.5f * (kGrads[0][i] + 0.5f * kGrads[0][i]));
  }
  TensorSet g2 = one_tensor("w", kGrads[1]);
  heavy->step(ph, g2, sh);
  nest->step(pn, g2, sn);
  for (std::size_t i = 0; i < kP0.size(); ++i) {
    const float buf2 = 0.5f * kGrads[0][i] + kGrads[1][i];
    BOOST_TEST(sh.slot("momentum").at("w").f32()[i] == buf2);
    BOOST_TEST(sn.slot("momentum").at("w").f32()[i] == buf2);
    const float h = (kP0[i] - 0.5f * kGrads[0][i]) - 0.5f * buf2;
    const float n = (kP0[i] - 0.5f * (1.5f * kGrads[0][i])) - 0.5f * (kGrads[1][i] + 0.5f * buf2);
    BOOST_TEST(ph.at("w").f32()[i] == h);
    BOOST_TEST(pn.at("w").f32()[i] == n);
  }
}

BOOST_AUTO_TEST_CASE(adamw_matches_torch_formula) {
  OptimizerSpec spec = parse_inner_spec("adamw:lr=1e-3,beta1=0.9,beta2=0.95,weight_decay=0.1");
  RefAdam ref(kP0, 0.9, 0.95, 1e-8, 0.1, true);
  // Adam adds √, a division by the denominator and the bias-corrected step size: 16 ulps.
  run_and_compare(spec, ref, kP0, kGrads, {1e-3, 2e-3, 5e-4}, 16);
}

BOOST_AUTO_TEST_CASE(adam_coupled_weight_decay_matches_torch_formula) {
  OptimizerSpec spec = parse_inner_spec("adam:lr=0.01,beta1=0.8,beta2=0.99,eps=1e-6,weight_decay=0.05");
  RefAdam ref(kP0, 0.8, 0.99, 1e-6, 0.05, false);
  run_and_compare(spec, ref, kP0, kGrads, lrs(0.01), 16);
}

BOOST_AUTO_TEST_CASE(adam_with_small_beta1_uses_the_other_lerp_branch) {
  // 1 − β1 ≥ 0.5 switches torch's lerp to g − (g − m)·β1: the value is the same formula.
  OptimizerSpec spec = parse_inner_spec("adam:lr=0.01,beta1=0.3,beta2=0.9");
  RefAdam ref(kP0, 0.3, 0.9, 1e-8, 0, false);
  run_and_compare(spec, ref, kP0, kGrads, lrs(0.01), 16);
}

BOOST_AUTO_TEST_CASE(adamw_first_step_moves_by_lr) {
  // Step 1: m̂ = g, v̂ = g², so with eps = 0 every coordinate moves by exactly lr·sign(g) in
  // exact arithmetic. The float result carries the roundings of lr, 1 − β1, m, 1 − β2, two
  // products in v, √v (half), √(1 − β2), the division by it, m/denom, the step size and the
  // product: first-order bound 8.5u relative, so 10u.
  OptimizerSpec spec = parse_inner_spec("adamw:lr=0.001,beta1=0.9,beta2=0.999,eps=0,weight_decay=0");
  auto opt = make_optimizer(spec);
  const std::vector<float> g = {1e-3f, -2.5f, 7e2f, -3e-5f, 1.0f};
  TensorSet p = one_tensor("w", {0, 0, 0, 0, 0});
  OptimizerState st = opt->make_state(p);
  opt->step(p, one_tensor("w", g), st);
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double moved = p.at("w").f32()[i];
    BOOST_TEST(std::abs(moved + 0.001 * (g[i] > 0 ? 1 : -1)) <= 10 * kU * 0.001,
               "coordinate " << i << " moved " << moved);
  }
  // Weight decay 0.1 with decoupling shrinks the parameter first: p·(1 − lr·wd) − lr.
  spec.weight_decay = 0.1;
  auto decayed = make_optimizer(spec);
  TensorSet q = one_tensor("w", {2.0f});
  OptimizerState sq = decayed->make_state(q);
  decayed->step(q, one_tensor("w", {0.5f}), sq);
  BOOST_TEST(std::abs(q.at("w").f32()[0] - (2.0 * (1 - 1e-4) - 0.001)) <= 10 * kU * 2.0);
}

BOOST_AUTO_TEST_CASE(learning_rate_is_validated) {
  auto opt = make_inner_optimizer("sgd:lr=0.1");
  TensorSet p = one_tensor("w", kP0);
  TensorSet g = one_tensor("w", kGrads[0]);
  OptimizerState st = opt->make_state(p);
  for (double bad : {std::nan(""), HUGE_VAL, -1.0}) {
    BOOST_CHECK_EXCEPTION(opt->step(p, g, st, bad), Error, [](const Error& e) { return e.kind() == ErrorKind::Usage; });
  }
  BOOST_TEST(st.step == 0);
  BOOST_TEST(same_bits(p.at("w").f32(), kP0));
}

BOOST_AUTO_TEST_SUITE_END()
