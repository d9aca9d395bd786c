// Outer optimizers on the averaged pseudo-gradient: FedAvg, DiLoCo's Nesterov, heavy-ball, Adam,
// Flower's FedAvgM/FedAdagrad/FedAdam/FedYogi and Async Local-SGD's delayed Nesterov.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "helpers.hpp"
#include "loco/core/rng.hpp"
#include "loco/optim/optimizer.hpp"
#include "references.hpp"

using namespace loco;
using namespace loco::optim;
using namespace loco::optim::test;

namespace {

const std::vector<float> kTheta = {0.5f, -1.25f, 2.0f, 0.0f, 3.0f, -0.0625f};
// Pseudo-gradients Δ̄ = θ − mean(θ_local) of three rounds.
const std::vector<std::vector<float>> kDeltas = {
    {0.25f, -0.5f, 1.5f, 0.0625f, -0.75f, 0.01f},
    {0.125f, 0.75f, -1.0f, 0.09375f, -0.5f, 0.02f},
    {-0.375f, 1.0f, 0.5f, 0.125f, 0.25f, -0.015f},
};

enum class Fed { Adagrad, Adam, Yogi };

// Flower's FedOpt strategies transcribed in their own sign: Δ_F = mean − x with mean = x − Δ̄,
// m_F = β1·m_F + (1 − β1)·Δ_F, v per strategy, x ← x + η_t·m_F/(√v + τ). loco's exp_avg is −m_F.
struct RefFedOpt : Reference {
  Fed kind;
  double b1, b2, tau;
  bool bias;
  std::vector<double> m_flower;
  RefFedOpt(const std::vector<float>& p0, Fed kind_, double b1_, double b2_, double tau_, bool bias_)
      : Reference(p0), kind(kind_), b1(b1_), b2(b2_), tau(tau_), bias(bias_), m_flower(p0.size(), 0.0) {}
  void step(const std::vector<float>& delta, double eta) override {
    ++t;
    const std::int64_t server_round = t;  // Flower's rounds start at 1
    double eta_t = eta;
    if (kind == Fed::Adam && bias)
      eta_t = eta * std::sqrt(1 - std::pow(b2, server_round + 1.0)) / (1 - std::pow(b1, server_round + 1.0));
    auto& v = s("exp_avg_sq");
    auto& mv = ss("exp_avg_sq");
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double x = p[i];
      const double mean = x - static_cast<double>(delta[i]);
      const double d = mean - x;
      const double ad = std::abs(d);
      m_flower[i] = b1 * m_flower[i] + (1 - b1) * d;
      double mm;
      if (kind == Fed::Adagrad) {
        mm = ad;
      } else {
        auto& m = s("exp_avg");
        auto& ms = ss("exp_avg");
        m[i] = -m_flower[i];
        ms[i] = b1 * ms[i] + (1 - b1) * ad;
        mm = ms[i];
      }
      switch (kind) {
        case Fed::Adagrad:
          v[i] = v[i] + d * d;
          mv[i] = v[i];
          break;
        case Fed::Adam:
          v[i] = b2 * v[i] + (1 - b2) * d * d;
          mv[i] = v[i];
          break;
        case Fed::Yogi: {
          const double diff = v[i] - d * d;
          const double sign = (diff > 0) - (diff < 0);
          v[i] = v[i] - (1 - b2) * d * d * sign;
          mv[i] = mv[i] + (1 - b2) * d * d;
          break;
        }
      }
      const double denom = std::sqrt(v[i]) + tau;
      p[i] = x + eta_t * m_flower[i] / denom;
      sp[i] += std::abs(x) + eta_t * mm / denom;
    }
  }
};

// Delayed Nesterov (ref/diloco-family.md §5): b += Δ; θ −= lr·Δ/N; every N-th push
// m = μ·m + b/N, θ −= lr·μ·m, b = 0.
struct RefDelayed : Reference {
  double mu;
  std::int64_t period;
  RefDelayed(const std::vector<float>& p0, double mu_, std::int64_t period_)
      : Reference(p0), mu(mu_), period(period_) {}
  void step(const std::vector<float>& delta, double lr) override {
    ++t;
    auto& m = s("momentum");
    auto& b = s("buffer");
    auto& mm = ss("momentum");
    auto& mb = ss("buffer");
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double x = p[i];
      const double d = delta[i];
      b[i] += d;
      mb[i] += std::abs(d);
      p[i] -= lr * d / period;
      double mag = std::abs(x) + lr * std::abs(d) / period;
      if (t % period == 0) {
        m[i] = mu * m[i] + b[i] / period;
        mm[i] = mu * mm[i] + mb[i] / period;
        p[i] -= lr * mu * m[i];
        mag += lr * mu * mm[i];
        b[i] = 0;
        mb[i] = 0;
      }
      sp[i] += mag;
    }
  }
};

std::vector<double> lrs(double lr) { return {lr, lr, lr}; }

}  // namespace

BOOST_AUTO_TEST_SUITE(outer)

BOOST_AUTO_TEST_CASE(sgd_lr_1_is_theta_minus_delta_exactly) {
  const std::size_t n = 4099;
  std::vector<float> theta(n), delta(n);
  fill_normal(theta, 0.0f, 1.0f, 7, 1);
  fill_normal(delta, 0.0f, 0.01f, 7, 2);
  for (const char* name : {"sgd", "fedavg", "fedavgm"}) {
    auto opt = make_outer_optimizer(name);
    BOOST_TEST(opt->lr() == 1.0);
    BOOST_TEST(opt->slots().empty(), name << " keeps no state");
    TensorSet params = one_tensor("w", theta);
    OptimizerState st = opt->make_state(params);
    opt->step(params, one_tensor("w", delta), st);
    std::vector<float> want(n);
    for (std::size_t i = 0; i < n; ++i) want[i] = theta[i] - delta[i];
    BOOST_TEST(same_bits(params.at("w").f32(), want), name);
    BOOST_TEST(st.step == 1);
  }
}

BOOST_AUTO_TEST_CASE(nesterov_has_diloco_defaults_and_torch_formula) {
  OptimizerSpec spec = outer_spec_defaults("nesterov");
  BOOST_TEST(spec.lr == 0.7);
  BOOST_TEST(spec.momentum == 0.9);
  RefSgd ref(kTheta, 0.9, true, 0, false);
  run_and_compare(spec, ref, kTheta, kDeltas, lrs(0.7), 8);
}

BOOST_AUTO_TEST_CASE(nesterov_first_round_by_hand) {
  // Round 1 with m = 0: m = Δ̄, θ = θ − 0.7·(Δ̄ + 0.9·Δ̄) = θ − 1.33·Δ̄.
  auto opt = make_outer_optimizer("nesterov");
  TensorSet p = one_tensor("w", {1.0f});
  OptimizerState st = opt->make_state(p);
  opt->step(p, one_tensor("w", {0.5f}), st);
  BOOST_TEST(std::abs(p.at("w").f32()[0] - (1.0 - 1.33 * 0.5)) <= 4 * kU * 1.0);
  BOOST_TEST(st.slot("momentum").at("w").f32()[0] == 0.5f);
}

BOOST_AUTO_TEST_CASE(heavy_ball_and_fedavgm) {
  OptimizerSpec spec = outer_spec_defaults("momentum");
  RefSgd ref(kTheta, 0.9, false, 0, false);
  run_and_compare(spec, ref, kTheta, kDeltas, lrs(0.7), 8);
  // FedAvgM: v = μ·v + Δ̄ (v = Δ̄ in round 1), θ ← θ − η_s·v.
  OptimizerSpec avgm = parse_outer_spec("fedavgm:server_learning_rate=0.5,server_momentum=0.8");
  BOOST_TEST(make_optimizer(avgm)->slots() == std::vector<std::string>{"momentum"});
  RefSgd ref_avgm(kTheta, 0.8, false, 0, false);
  run_and_compare(avgm, ref_avgm, kTheta, kDeltas, lrs(0.5), 8);
}

BOOST_AUTO_TEST_CASE(adam_matches_torch_formula) {
  OptimizerSpec spec = parse_outer_spec("adam:lr=0.1,beta1=0.9,beta2=0.99,eps=1e-6");
  RefAdam ref(kTheta, 0.9, 0.99, 1e-6, 0, false);
  run_and_compare(spec, ref, kTheta, kDeltas, lrs(0.1), 16);
}

BOOST_AUTO_TEST_CASE(fedadagrad_matches_flower) {
  OptimizerSpec spec = outer_spec_defaults("fedadagrad");
  BOOST_TEST(spec.lr == 0.1);
  BOOST_TEST(spec.eta_l == 0.1);
  BOOST_TEST(spec.eps == 1e-3);
  BOOST_TEST(make_optimizer(spec)->slots() == std::vector<std::string>{"exp_avg_sq"});
  RefFedOpt ref(kTheta, Fed::Adagrad, 0, 0, 1e-3, false);
  // Δ², the sum, √, +τ, η·m, the division and the difference: 8 ulps of the magnitudes.
  run_and_compare(spec, ref, kTheta, kDeltas, lrs(0.1), 8);
}

BOOST_AUTO_TEST_CASE(fedadam_matches_flower_with_its_bias_correction) {
  OptimizerSpec spec = outer_spec_defaults("fedadam");
  BOOST_TEST(spec.lr == 0.1);
  BOOST_TEST(spec.beta1 == 0.9);
  BOOST_TEST(spec.beta2 == 0.99);
  BOOST_TEST(spec.eps == 1e-3);
  BOOST_TEST(spec.bias_correction);
  RefFedOpt ref(kTheta, Fed::Adam, 0.9, 0.99, 1e-3, true);
  run_and_compare(spec, ref, kTheta, kDeltas, lrs(0.1), 16);
  spec.bias_correction = false;
  RefFedOpt plain(kTheta, Fed::Adam, 0.9, 0.99, 1e-3, false);
  run_and_compare(spec, plain, kTheta, kDeltas, lrs(0.1), 16);
}

BOOST_AUTO_TEST_CASE(fedadam_round_1_uses_exponent_2) {
  // Flower: η_t = η·√(1 − β2^(t+1))/(1 − β1^(t+1)) with t = server_round = 1.
  // Δ̄ = 1: m = 0.1, v = 0.01, θ = 1 − η_1·0.1/(0.1 + τ).
  auto opt = make_outer_optimizer("fedadam:eta=0.1,beta_1=0.9,beta_2=0.99,tau=0.001");
  TensorSet p = one_tensor("w", {1.0f});
  OptimizerState st = opt->make_state(p);
  opt->step(p, one_tensor("w", {1.0f}), st);
  const double eta1 = 0.1 * std::sqrt(1 - 0.99 * 0.99) / (1 - 0.9 * 0.9);
  const double want = 1.0 - eta1 * 0.1 / (0.1 + 0.001);
  BOOST_TEST(std::abs(p.at("w").f32()[0] - want) <= 8 * kU * 1.0);
  // Kingma–Ba's step-1 correction (exponent 1) would move by η·1 = 0.1·0.1/0.1: a different value.
  BOOST_TEST(std::abs(p.at("w").f32()[0] - (1.0 - 0.1 * 0.1 / (0.1 * 1 + 0.001 * 1))) > 1e-3);
}

BOOST_AUTO_TEST_CASE(fedyogi_matches_flower) {
  OptimizerSpec spec = outer_spec_defaults("fedyogi");
  BOOST_TEST(spec.lr == 0.01);
  BOOST_TEST(spec.eta_l == 0.0316);
  BOOST_TEST(spec.eps == 1e-3);
  RefFedOpt ref(kTheta, Fed::Yogi, 0.9, 0.99, 1e-3, false);
  run_and_compare(spec, ref, kTheta, kDeltas, lrs(0.01), 16);
}

BOOST_AUTO_TEST_CASE(fedyogi_sign_term) {
  // v − (1 − β2)·Δ²·sign(v − Δ²): v shrinks when v > Δ², grows when v < Δ², stays when equal.
  // Δ = 0.5 (Δ² = 0.25) against v = 1, 0.0625, 0.25; and v = 0 (first round) grows to (1 − β2)·Δ².
  auto opt = make_outer_optimizer("fedyogi:beta_2=0.75");
  TensorSet p = one_tensor("w", {0, 0, 0, 0});
  OptimizerState st = opt->make_state(p);
  auto v = st.slot("exp_avg_sq").at("w").f32();
  v[0] = 1.0f;
  v[1] = 0.0625f;
  v[2] = 0.25f;
  v[3] = 0.0f;
  opt->step(p, one_tensor("w", {0.5f, 0.5f, 0.5f, 0.5f}), st);
  // (1 − β2)·Δ² = 0.0625; every value here is exact in float.
  BOOST_TEST(v[0] == 1.0f - 0.0625f);
  BOOST_TEST(v[1] == 0.0625f + 0.0625f);
  BOOST_TEST(v[2] == 0.25f);
  BOOST_TEST(v[3] == 0.0625f);
  // Adam's β2·v + (1 − β2)·Δ² moves v by a fraction of v − Δ² instead: 0.8125 and 0.109375.
  BOOST_TEST(v[0] != 0.75f * 1.0f + 0.0625f);
  BOOST_TEST(v[1] != 0.75f * 0.0625f + 0.0625f);
}

BOOST_AUTO_TEST_CASE(delayed_nesterov_matches_its_rule) {
  OptimizerSpec spec = parse_outer_spec("delayed_nesterov:lr=0.7,momentum=0.9,period=2");
  RefDelayed ref(kTheta, 0.9, 2);
  std::vector<std::vector<float>> pushes = kDeltas;
  pushes.push_back({0.5f, -0.25f, 0.125f, 1.0f, -2.0f, 0.03f});
  run_and_compare(spec, ref, kTheta, pushes, {0.7, 0.7, 0.7, 0.7}, 8);
}

BOOST_AUTO_TEST_CASE(delayed_nesterov_period_1_is_nesterov) {
  // Same rule as Nesterov in exact arithmetic; the float paths round differently (θ is updated in
  // two subtractions), so compare within the Nesterov reference's bound.
  OptimizerSpec spec = parse_outer_spec("delayed_nesterov:lr=0.7,momentum=0.9,period=1");
  RefSgd ref(kTheta, 0.9, true, 0, false);
  auto opt = make_optimizer(spec);
  TensorSet params = one_tensor("w", kTheta);
  OptimizerState st = opt->make_state(params);
  for (const auto& d : kDeltas) {
    opt->step(params, one_tensor("w", d), st);
    ref.step(d, 0.7);
    check_close(params.at("w").f32(), ref.p, ref.sp, 8, "delayed_nesterov N=1");
    check_close(st.slot("momentum").at("w").f32(), ref.s("momentum"), ref.ss("momentum"), 8, "momentum");
  }
}

BOOST_AUTO_TEST_SUITE_END()
