// DeMo's outer sign step: θ ← θ·(1 − lr·wd) − lr·sign(Δ̄), sign(0) = 0, no state; hand-computed
// values, the spec's defaults and round trip, and validation.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "../support.hpp"
#include "helpers.hpp"
#include "loco/optim/optimizer.hpp"

using namespace loco;
using namespace loco::optim;
using namespace loco::optim::test;

BOOST_AUTO_TEST_SUITE(outer_sign)

BOOST_AUTO_TEST_CASE(hand_computed_two_rounds) {
  // lr = 0.25 and wd = 0.5 (powers of two, so every product below is exact): keep = 1 − 0.125 = 0.875.
  auto opt = make_outer_optimizer("sign:lr=0.25,weight_decay=0.5");
  BOOST_TEST(opt->slots().empty());
  TensorSet params = one_tensor("w", {1.0f, -2.0f, 0.5f, 0.0f, 4.0f});
  OptimizerState st = opt->make_state(params);
  opt->step(params, one_tensor("w", {0.3f, 0.0f, -1e-30f, -7.0f, -0.0f}), st);
  // θ·0.875 − 0.25·sign: 0.875 − 0.25, −1.75 − 0, 0.4375 + 0.25, 0 + 0.25, 3.5 − 0.
  const std::vector<float> r1 = {0.625f, -1.75f, 0.6875f, 0.25f, 3.5f};
  for (std::size_t i = 0; i < r1.size(); ++i) BOOST_TEST(params.at("w").f32()[i] == r1[i]);
  BOOST_TEST(st.step == 1);
  // A second round at another lr (the scheduled one): keep = 1 − 0.125·0.5 = 0.9375, lr 0.125.
  opt->step(params, one_tensor("w", {-1.0f, 2.0f, 0.0f, 1.0f, 5.0f}), st, 0.125);
  const std::vector<float> r2 = {0.625f * 0.9375f + 0.125f, -1.75f * 0.9375f - 0.125f, 0.6875f * 0.9375f,
                                 0.25f * 0.9375f - 0.125f, 3.5f * 0.9375f - 0.125f};
  for (std::size_t i = 0; i < r2.size(); ++i) BOOST_TEST(params.at("w").f32()[i] == r2[i]);
}

BOOST_AUTO_TEST_CASE(no_decay_is_plain_signsgd) {
  auto opt = make_outer_optimizer("sign:lr=0.001");
  TensorSet params = one_tensor("w", {0.1f, 0.2f, 0.3f});
  OptimizerState st = opt->make_state(params);
  opt->step(params, one_tensor("w", {5.0f, -1e-20f, 0.0f}), st);
  BOOST_TEST(params.at("w").f32()[0] == 0.1f - 0.001f);
  BOOST_TEST(params.at("w").f32()[1] == 0.2f + 0.001f);
  BOOST_TEST(params.at("w").f32()[2] == 0.3f);
}

BOOST_AUTO_TEST_CASE(spec_defaults_round_trip_and_validation) {
  const OptimizerSpec d = outer_spec_defaults("sign");
  BOOST_TEST((d.kind == OptimizerKind::Sign));
  BOOST_TEST(d.lr == 4e-4);  // DeMo's reference config
  BOOST_TEST(d.weight_decay == 0.0);
  BOOST_TEST(format_spec(d) == "sign:lr=0.0004,weight_decay=0");
  const OptimizerSpec s = parse_outer_spec("sign:lr=3e-4,wd=0.1");
  BOOST_TEST(format_spec(s) == "sign:lr=0.0003,weight_decay=0.1");
  BOOST_TEST(format_spec(parse_outer_spec(format_spec(s))) == format_spec(s));
  BOOST_TEST(parse_outer_spec(format_spec(s)).lr == 3e-4);
  loco::test::require_error([] { parse_outer_spec("sign:momentum=0.9"); }, ErrorKind::Usage, {"momentum"});
  loco::test::require_error([] { parse_outer_spec("sign:weight_decay=-1"); }, ErrorKind::Usage, {"weight_decay"});
  loco::test::require_error([] { parse_inner_spec("sign"); }, ErrorKind::Usage, {"sign"});
}

BOOST_AUTO_TEST_SUITE_END()
