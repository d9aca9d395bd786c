// Double-precision references of the SGD-family and Adam rules, shared by the inner and outer tests.
#pragma once

#include <cmath>

#include "helpers.hpp"

namespace loco::optim::test {

// torch.optim.SGD with dampening 0: coupled (g += wd·p) or decoupled (p *= 1 − lr·wd) decay,
// buf = μ·buf + g, p −= lr·buf (heavy-ball) or lr·(g + μ·buf) (Nesterov); μ = 0: plain SGD.
struct RefSgd : Reference {
  double mu, wd;
  bool nesterov, decoupled;
  RefSgd(const std::vector<float>& p0, double mu_, bool nesterov_, double wd_, bool decoupled_)
      : Reference(p0), mu(mu_), wd(wd_), nesterov(nesterov_), decoupled(decoupled_) {}
  void step(const std::vector<float>& gf, double lr) override {
    ++t;
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double p0 = p[i];
      double g = gf[i], mg = std::abs(g);
      double pd = p0;
      if (wd != 0 && !decoupled) {
        g += wd * p0;
        mg += wd * std::abs(p0);
      }
      if (wd != 0 && decoupled) pd = p0 * (1 - lr * wd);
      double upd = g, mupd = mg;
      if (mu != 0) {
        auto& b = s("momentum");
        auto& mb = ss("momentum");
        b[i] = mu * b[i] + g;
        mb[i] = mu * mb[i] + mg;
        upd = nesterov ? g + mu * b[i] : b[i];
        mupd = nesterov ? mg + mu * mb[i] : mb[i];
      }
      p[i] = pd - lr * upd;
      sp[i] += std::abs(p0) + lr * mupd;
    }
  }
};

// torch.optim.Adam / AdamW: m = lerp(m, g, 1 − β1), v = β2·v + (1 − β2)·g²,
// p −= lr/(1 − β1^t) · m / (√v/√(1 − β2^t) + eps).
struct RefAdam : Reference {
  double b1, b2, eps, wd;
  bool decoupled;
  RefAdam(const std::vector<float>& p0, double b1_, double b2_, double eps_, double wd_, bool decoupled_)
      : Reference(p0), b1(b1_), b2(b2_), eps(eps_), wd(wd_), decoupled(decoupled_) {}
  void step(const std::vector<float>& gf, double lr) override {
    ++t;
    auto& m = s("exp_avg");
    auto& v = s("exp_avg_sq");
    auto& mm = ss("exp_avg");
    auto& mv = ss("exp_avg_sq");
    const double bc1 = 1 - std::pow(b1, static_cast<double>(t));
    const double bc2 = 1 - std::pow(b2, static_cast<double>(t));
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double p0 = p[i];
      double g = gf[i], mg = std::abs(g);
      double pd = p0;
      if (wd != 0 && !decoupled) {
        g += wd * p0;
        mg += wd * std::abs(p0);
      }
      if (wd != 0 && decoupled) pd = p0 * (1 - lr * wd);
      const double w = 1 - b1;
      m[i] = b1 * m[i] + w * g;
      mm[i] = (1 + w) * mm[i] + w * mg;  // bounds |m|, |w·(g − m)| and |g − m| of the lerp
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      mv[i] = b2 * mv[i] + (1 - b2) * mg * mg;
      const double denom = std::sqrt(v[i]) / std::sqrt(bc2) + eps;
      p[i] = pd - lr / bc1 * m[i] / denom;
      sp[i] += std::abs(p0) + lr / bc1 * mm[i] / denom;
    }
  }
};

}  // namespace loco::optim::test
