// Optimizer state checks and the option parser: defaults, aliases, canonical text, bad values.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "helpers.hpp"
#include "loco/optim/optimizer.hpp"

using namespace loco;
using namespace loco::optim;
using namespace loco::optim::test;

namespace {

TensorSet two_params() {
  TensorSet p;
  p.add("w", Tensor({2, 3}));
  p.add("b", Tensor({3}));
  return p;
}

TensorSet zero_grads() { return two_params(); }

// True when f throws loco::Error of the kind whose message contains every needle.
template <typename F>
bool throws(F&& f, ErrorKind kind, std::initializer_list<std::string_view> needles) {
  try {
    f();
  } catch (const Error& e) {
    if (e.kind() != kind) {
      BOOST_TEST_MESSAGE("wrong kind: " << e.what());
      return false;
    }
    for (auto n : needles)
      if (std::string_view(e.what()).find(n) == std::string_view::npos) {
        BOOST_TEST_MESSAGE("message lacks '" << n << "': " << e.what());
        return false;
      }
    return true;
  }
  return false;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(state)

BOOST_AUTO_TEST_CASE(zeros_has_every_slot_shaped_like_params) {
  TensorSet p = two_params();
  auto opt = make_inner_optimizer("adamw");
  OptimizerState st = opt->make_state(p);
  BOOST_TEST(st.step == 0);
  BOOST_TEST(st.slots.size() == 2u);
  for (const auto& name : opt->slots()) {
    const TensorSet& s = st.slot(name);
    BOOST_TEST(s.size() == 2u);
    BOOST_TEST(s[0].name == "w");
    BOOST_TEST((s.at("w").shape() == Shape{2, 3}));
    for (float x : s.at("w").f32()) BOOST_TEST(x == 0.0f);
  }
  BOOST_TEST(state_group("exp_avg") == "state/exp_avg");
  BOOST_TEST(kStepAttribute == "step");
  BOOST_TEST(throws([&] { st.slot("momentum"); }, ErrorKind::BadInput, {"momentum"}));
}

BOOST_AUTO_TEST_CASE(mismatched_state_is_bad_input_naming_the_tensor) {
  TensorSet p = two_params();
  TensorSet g = zero_grads();
  auto opt = make_inner_optimizer("momentum");
  {
    OptimizerState st;  // no slot at all
    BOOST_TEST(throws([&] { opt->step(p, g, st); }, ErrorKind::BadInput, {"momentum"}));
  }
  {
    OptimizerState st = opt->make_state(p);
    st.slots["momentum"] = TensorSet();
    st.slots["momentum"].add("w", Tensor({2, 3}));
    BOOST_TEST(throws([&] { opt->step(p, g, st); }, ErrorKind::BadInput, {"momentum", "'b'"}));
  }
  {
    OptimizerState st = opt->make_state(p);
    st.slots["momentum"] = TensorSet();
    st.slots["momentum"].add("w", Tensor({3, 2}));
    st.slots["momentum"].add("b", Tensor({3}));
    BOOST_TEST(throws([&] { opt->step(p, g, st); }, ErrorKind::BadInput, {"'w'", "[3, 2]", "[2, 3]"}));
  }
  {
    OptimizerState st = opt->make_state(p);
    st.slots["momentum"].add("extra", Tensor({1}));
    BOOST_TEST(throws([&] { opt->step(p, g, st); }, ErrorKind::BadInput, {"'extra'"}));
  }
  {
    OptimizerState st = opt->make_state(p);
    st.slots["momentum"] = TensorSet();
    st.slots["momentum"].add("w", Tensor({2, 3}, DType::F16));
    st.slots["momentum"].add("b", Tensor({3}));
    BOOST_TEST(throws([&] { opt->step(p, g, st); }, ErrorKind::BadInput, {"'w'", "float16"}));
  }
  {
    // Slots the optimizer does not use (error feedback in the same file) are ignored.
    OptimizerState st = opt->make_state(p);
    st.slots["residual"] = TensorSet();
    BOOST_CHECK_NO_THROW(opt->step(p, g, st));
    BOOST_TEST(st.step == 1);
  }
}

BOOST_AUTO_TEST_CASE(mismatched_gradients_are_bad_input_naming_the_tensor) {
  TensorSet p = two_params();
  auto opt = make_inner_optimizer("sgd");
  OptimizerState st = opt->make_state(p);
  {
    TensorSet g;
    g.add("w", Tensor({2, 3}));
    BOOST_TEST(throws([&] { opt->step(p, g, st); }, ErrorKind::BadInput, {"'b'"}));
  }
  {
    TensorSet g = zero_grads();
    g.add("c", Tensor({1}));
    BOOST_TEST(throws([&] { opt->step(p, g, st); }, ErrorKind::BadInput, {"'c'"}));
  }
  {
    TensorSet g;
    g.add("w", Tensor({6}));
    g.add("b", Tensor({3}));
    BOOST_TEST(throws([&] { opt->step(p, g, st); }, ErrorKind::BadInput, {"'w'", "[6]"}));
  }
  {
    TensorSet q;
    q.add("w", Tensor({2}, DType::BF16));
    TensorSet g;
    g.add("w", Tensor({2}));
    BOOST_TEST(throws([&] { opt->step(q, g, st); }, ErrorKind::BadInput, {"'w'", "bfloat16"}));
  }
  BOOST_TEST(st.step == 0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(spec)

BOOST_AUTO_TEST_CASE(defaults) {
  const OptimizerSpec adamw = inner_spec_defaults("adamw");
  BOOST_TEST(adamw.lr == 4e-4);
  BOOST_TEST(adamw.beta1 == 0.9);
  BOOST_TEST(adamw.beta2 == 0.95);
  BOOST_TEST(adamw.eps == 1e-8);
  BOOST_TEST(adamw.weight_decay == 0.1);
  BOOST_TEST(adamw.decoupled_weight_decay);
  const OptimizerSpec adam = inner_spec_defaults("adam");
  BOOST_TEST(adam.beta2 == 0.999);
  BOOST_TEST(!adam.decoupled_weight_decay);
  const OptimizerSpec avgm = outer_spec_defaults("fedavgm");
  BOOST_TEST(avgm.lr == 1.0);
  BOOST_TEST(avgm.momentum == 0.0);
  const OptimizerSpec yogi = outer_spec_defaults("fedyogi");
  BOOST_TEST(yogi.beta1 == 0.9);
  BOOST_TEST(yogi.beta2 == 0.99);
  BOOST_TEST(outer_spec_defaults("sgd").lr == 1.0);
  BOOST_TEST(outer_spec_defaults("delayed_nesterov").period == 1);
  BOOST_TEST(throws([] { inner_spec_defaults("fedyogi"); }, ErrorKind::Usage, {"fedyogi", "adamw"}));
  BOOST_TEST(throws([] { outer_spec_defaults("lion"); }, ErrorKind::Usage, {"lion"}));
}

BOOST_AUTO_TEST_CASE(parse_keys_and_aliases) {
  const OptimizerSpec s = parse_inner_spec("adamw:lr=1e-3,beta1=0.9,beta2=0.95,weight_decay=0.1");
  BOOST_TEST((s.kind == OptimizerKind::Adam));
  BOOST_TEST(s.lr == 1e-3);
  BOOST_TEST(s.beta2 == 0.95);
  const OptimizerSpec y = parse_outer_spec(" fedyogi : eta=0.02, eta_l=0.05, beta_1=0.8, beta_2=0.9, tau=1e-4 ");
  BOOST_TEST(y.lr == 0.02);
  BOOST_TEST(y.eta_l == 0.05);
  BOOST_TEST(y.beta1 == 0.8);
  BOOST_TEST(y.beta2 == 0.9);
  BOOST_TEST(y.eps == 1e-4);
  // torch-style spellings are accepted for Flower's keys and the other way round.
  const OptimizerSpec a = parse_outer_spec("fedadam:lr=0.3,beta1=0.5,eps=1e-5,bias_correction=false");
  BOOST_TEST(a.lr == 0.3);
  BOOST_TEST(a.beta1 == 0.5);
  BOOST_TEST(a.eps == 1e-5);
  BOOST_TEST(!a.bias_correction);
  const OptimizerSpec m = parse_outer_spec("fedavgm:lr=0.5,momentum=0.9");
  BOOST_TEST(m.lr == 0.5);
  BOOST_TEST(m.momentum == 0.9);
  BOOST_TEST(parse_outer_spec("delayed_nesterov:period=8").period == 8);
}

BOOST_AUTO_TEST_CASE(canonical_text_round_trips) {
  for (const char* name : {"sgd", "momentum", "nesterov", "adam", "adamw"}) {
    OptimizerSpec s = inner_spec_defaults(name);
    s.lr = 0.30000000000000004;  // a value whose shortest text needs 17 digits
    const OptimizerSpec back = parse_inner_spec(format_spec(s));
    BOOST_TEST(format_spec(back) == format_spec(s), name);
    BOOST_TEST(back.lr == s.lr);
  }
  for (const char* name : {"sgd", "fedavg", "momentum", "nesterov", "adam", "fedavgm", "fedadagrad", "fedadam",
                           "fedyogi", "delayed_nesterov"}) {
    const OptimizerSpec s = outer_spec_defaults(name);
    const OptimizerSpec back = parse_outer_spec(format_spec(s));
    BOOST_TEST(format_spec(back) == format_spec(s), name);
  }
  BOOST_TEST(format_spec(outer_spec_defaults("nesterov")) ==
             "nesterov:lr=0.7,momentum=0.9,weight_decay=0,decoupled=false");
  BOOST_TEST(format_spec(outer_spec_defaults("fedyogi")) ==
             "fedyogi:eta=0.01,eta_l=0.0316,beta_1=0.9,beta_2=0.99,tau=0.001");
  BOOST_TEST(format_spec(outer_spec_defaults("fedavg")) == "fedavg");
}

BOOST_AUTO_TEST_CASE(bad_text_is_usage_error_naming_the_key) {
  BOOST_TEST(throws([] { parse_inner_spec("adamw:lr=abc"); }, ErrorKind::Usage, {"lr=abc"}));
  BOOST_TEST(throws([] { parse_inner_spec("adamw:lr=1e-3x"); }, ErrorKind::Usage, {"lr"}));
  BOOST_TEST(throws([] { parse_inner_spec("adamw:nesterov=1"); }, ErrorKind::Usage, {"nesterov", "beta1"}));
  BOOST_TEST(throws([] { parse_inner_spec("sgd:momentum=0.9"); }, ErrorKind::Usage, {"momentum", "lr"}));
  BOOST_TEST(throws([] { parse_inner_spec("adamw:lr=1,lr=2"); }, ErrorKind::Usage, {"twice"}));
  BOOST_TEST(throws([] { parse_inner_spec("adamw:lr"); }, ErrorKind::Usage, {"key=value"}));
  BOOST_TEST(throws([] { parse_inner_spec("adamw:"); }, ErrorKind::Usage, {"nothing after ':'"}));
  BOOST_TEST(throws([] { parse_outer_spec("fedadam:bias_correction=maybe"); }, ErrorKind::Usage, {"maybe"}));
  BOOST_TEST(throws([] { parse_outer_spec("fedadagrad:beta_1=0.9"); }, ErrorKind::Usage, {"beta_1"}));
  BOOST_TEST(throws([] { parse_outer_spec("delayed_nesterov:period=1.5"); }, ErrorKind::Usage, {"period"}));
}

BOOST_AUTO_TEST_CASE(out_of_range_values_are_usage_errors) {
  BOOST_TEST(throws([] { parse_inner_spec("sgd:lr=-1"); }, ErrorKind::Usage, {"lr"}));
  BOOST_TEST(throws([] { parse_inner_spec("sgd:lr=nan"); }, ErrorKind::Usage, {"lr"}));
  BOOST_TEST(throws([] { parse_inner_spec("sgd:lr=inf"); }, ErrorKind::Usage, {"lr"}));
  BOOST_TEST(throws([] { parse_inner_spec("adamw:beta2=1"); }, ErrorKind::Usage, {"beta2"}));
  BOOST_TEST(throws([] { parse_inner_spec("adamw:beta1=-0.1"); }, ErrorKind::Usage, {"beta1"}));
  BOOST_TEST(throws([] { parse_inner_spec("adamw:eps=-1e-8"); }, ErrorKind::Usage, {"eps"}));
  BOOST_TEST(throws([] { parse_inner_spec("adamw:weight_decay=nan"); }, ErrorKind::Usage, {"weight_decay"}));
  BOOST_TEST(throws([] { parse_inner_spec("momentum:momentum=1"); }, ErrorKind::Usage, {"momentum"}));
  BOOST_TEST(throws([] { parse_outer_spec("fedyogi:tau=-1"); }, ErrorKind::Usage, {"tau"}));
  BOOST_TEST(throws([] { parse_outer_spec("fedavgm:server_momentum=1.5"); }, ErrorKind::Usage, {"server_momentum"}));
  BOOST_TEST(throws([] { parse_outer_spec("delayed_nesterov:period=0"); }, ErrorKind::Usage, {"period"}));
  OptimizerSpec s = inner_spec_defaults("adamw");
  s.lr = std::nan("");
  BOOST_TEST(throws([&] { make_optimizer(s); }, ErrorKind::Usage, {"lr"}));
}

BOOST_AUTO_TEST_SUITE_END()
