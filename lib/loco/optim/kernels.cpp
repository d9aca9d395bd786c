// The element-wise update kernels of every optimizer (rules in optimizer.hpp) and the factory.
//
// Built with -fno-math-errno (so √ vectorizes) and -ffp-contract=off (so no fused multiply-add
// changes the rounding between machines or between a vectorized body and its scalar tail): a
// kernel run over any split of a range gives the same bits as one run over the whole range.
#include <cmath>
#include <cstddef>
#include <memory>

#include "loco/core/error.hpp"
#include "loco/optim/optimizer.hpp"

namespace loco::optim {

namespace {

// Weight decay applied the torch way: coupled (g' = g + wd·p) or decoupled (p ← p·(1 − lr·wd)
// before the update). Hoisted out of the loops by templating the loops on the mode.
enum class Decay { None, Coupled, Decoupled };

Decay decay_mode(const OptimizerSpec& s) {
  if (s.weight_decay == 0) return Decay::None;
  return s.decoupled_weight_decay ? Decay::Decoupled : Decay::Coupled;
}

struct DecayScalars {
  float wd;    // coupled factor
  float keep;  // decoupled factor 1 − lr·wd
};

DecayScalars decay_scalars(const OptimizerSpec& s, double lr) {
  return {static_cast<float>(s.weight_decay), static_cast<float>(1.0 - lr * s.weight_decay)};
}

// ---- SGD, heavy-ball and Nesterov momentum -------------------------------------------------

class SgdOptimizer final : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::vector<std::string> slots() const override {
    if (spec().kind == OptimizerKind::Sgd || spec().momentum == 0) return {};
    return {"momentum"};
  }

 protected:
  void kernel(float* param, const float* grad, float* const* slot, std::size_t n, std::int64_t,
              double lr) const override {
    const DecayScalars d = decay_scalars(spec(), lr);
    const float lr_f = static_cast<float>(lr);
    const bool use_momentum = spec().kind != OptimizerKind::Sgd && spec().momentum != 0;
    const bool nesterov = spec().kind == OptimizerKind::Nesterov;
    const float mu = static_cast<float>(spec().momentum);
    auto run = [&]<Decay mode>() {
      float* __restrict p = param;
      const float* __restrict g = grad;
      if (!use_momentum) {
        for (std::size_t i = 0; i < n; ++i) {
          float gi = g[i];
          float pi = p[i];
          if constexpr (mode == Decay::Coupled) gi = gi + d.wd * pi;
          if constexpr (mode == Decay::Decoupled) pi = pi * d.keep;
          p[i] = pi - lr_f * gi;
        }
        return;
      }
      float* __restrict buf = slot[0];
      if (nesterov) {
        for (std::size_t i = 0; i < n; ++i) {
          float gi = g[i];
          float pi = p[i];
          if constexpr (mode == Decay::Coupled) gi = gi + d.wd * pi;
          if constexpr (mode == Decay::Decoupled) pi = pi * d.keep;
          const float b = mu * buf[i] + gi;
          buf[i] = b;
          p[i] = pi - lr_f * (gi + mu * b);
        }
      } else {
        for (std::size_t i = 0; i < n; ++i) {
          float gi = g[i];
          float pi = p[i];
          if constexpr (mode == Decay::Coupled) gi = gi + d.wd * pi;
          if constexpr (mode == Decay::Decoupled) pi = pi * d.keep;
          const float b = mu * buf[i] + gi;
          buf[i] = b;
          p[i] = pi - lr_f * b;
        }
      }
    };
    switch (decay_mode(spec())) {
      case Decay::None: run.template operator()<Decay::None>(); break;
      case Decay::Coupled: run.template operator()<Decay::Coupled>(); break;
      case Decay::Decoupled: run.template operator()<Decay::Decoupled>(); break;
    }
  }
};

// ---- Adam / AdamW (torch.optim.Adam, torch.optim.AdamW) --------------------------------------

class AdamOptimizer final : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::vector<std::string> slots() const override { return {"exp_avg", "exp_avg_sq"}; }

 protected:
  void kernel(float* param, const float* grad, float* const* slot, std::size_t n, std::int64_t t,
              double lr) const override {
    const OptimizerSpec& s = spec();
    const DecayScalars d = decay_scalars(s, lr);
    const double bc1 = 1.0 - std::pow(s.beta1, static_cast<double>(t));
    const double bc2 = 1.0 - std::pow(s.beta2, static_cast<double>(t));
    const float step_size = static_cast<float>(lr / bc1);
    const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
    const float eps = static_cast<float>(s.eps);
    const float w1 = static_cast<float>(1.0 - s.beta1);  // torch's lerp weight
    const float w1_rest = 1.0f - w1;                     // computed in float, as torch's lerp does
    const float b2 = static_cast<float>(s.beta2);
    const float c2 = static_cast<float>(1.0 - s.beta2);
    auto run = [&]<Decay mode, bool small_weight>() {
      float* __restrict p = param;
      const float* __restrict g = grad;
      float* __restrict m = slot[0];
      float* __restrict v = slot[1];
      for (std::size_t i = 0; i < n; ++i) {
        float gi = g[i];
        float pi = p[i];
        if constexpr (mode == Decay::Coupled) gi = gi + d.wd * pi;
        if constexpr (mode == Decay::Decoupled) pi = pi * d.keep;
        float mi = m[i];
        if constexpr (small_weight) mi = mi + w1 * (gi - mi);
        else mi = gi - (gi - mi) * w1_rest;
        const float vi = v[i] * b2 + c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const float denom = std::sqrt(vi) / bc2_sqrt + eps;
        p[i] = pi - step_size * (mi / denom);
      }
    };
    const bool small = w1 < 0.5f;
    switch (decay_mode(s)) {
      case Decay::None:
        small ? run.template operator()<Decay::None, true>() : run.template operator()<Decay::None, false>();
        break;
      case Decay::Coupled:
        small ? run.template operator()<Decay::Coupled, true>() : run.template operator()<Decay::Coupled, false>();
        break;
      case Decay::Decoupled:
        small ? run.template operator()<Decay::Decoupled, true>() : run.template operator()<Decay::Decoupled, false>();
        break;
    }
  }
};

// ---- Flower's FedAdagrad, FedAdam, FedYogi ----------------------------------------------------

class FedOptOptimizer final : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::vector<std::string> slots() const override {
    if (spec().kind == OptimizerKind::FedAdagrad) return {"exp_avg_sq"};
    return {"exp_avg", "exp_avg_sq"};
  }

 protected:
  void kernel(float* param, const float* grad, float* const* slot, std::size_t n, std::int64_t t,
              double lr) const override {
    const OptimizerSpec& s = spec();
    double eta = lr;
    if (s.kind == OptimizerKind::FedAdam && s.bias_correction) {
      const double e = static_cast<double>(t) + 1.0;  // Flower: server_round + 1
      eta = lr * std::sqrt(1.0 - std::pow(s.beta2, e)) / (1.0 - std::pow(s.beta1, e));
    }
    const float eta_f = static_cast<float>(eta);
    const float tau = static_cast<float>(s.eps);
    const float b1 = static_cast<float>(s.beta1);
    const float c1 = static_cast<float>(1.0 - s.beta1);
    const float b2 = static_cast<float>(s.beta2);
    const float c2 = static_cast<float>(1.0 - s.beta2);
    float* __restrict p = param;
    const float* __restrict g = grad;
    switch (s.kind) {
      case OptimizerKind::FedAdagrad: {
        float* __restrict v = slot[0];
        for (std::size_t i = 0; i < n; ++i) {
          const float gi = g[i];
          const float vi = v[i] + gi * gi;
          v[i] = vi;
          p[i] = p[i] - (eta_f * gi) / (std::sqrt(vi) + tau);
        }
        break;
      }
      case OptimizerKind::FedAdam: {
        float* __restrict m = slot[0];
        float* __restrict v = slot[1];
        for (std::size_t i = 0; i < n; ++i) {
          const float gi = g[i];
          const float mi = b1 * m[i] + c1 * gi;
          const float vi = b2 * v[i] + c2 * (gi * gi);
          m[i] = mi;
          v[i] = vi;
          p[i] = p[i] - (eta_f * mi) / (std::sqrt(vi) + tau);
        }
        break;
      }
      case OptimizerKind::FedYogi: {
        float* __restrict m = slot[0];
        float* __restrict v = slot[1];
        for (std::size_t i = 0; i < n; ++i) {
          const float gi = g[i];
          const float g2 = gi * gi;
          const float mi = b1 * m[i] + c1 * gi;
          const float diff = v[i] - g2;
          const float sign = static_cast<float>((diff > 0.0f) - (diff < 0.0f));
          const float vi = v[i] - (c2 * g2) * sign;
          m[i] = mi;
          v[i] = vi;
          p[i] = p[i] - (eta_f * mi) / (std::sqrt(vi) + tau);
        }
        break;
      }
      default: throw_error(ErrorKind::Internal, "{}: not a FedOpt optimizer", s.name);
    }
  }
};

// ---- Delayed Nesterov (Async Local-SGD) -------------------------------------------------------

class DelayedNesterovOptimizer final : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::vector<std::string> slots() const override { return {"momentum", "buffer"}; }

 protected:
  void kernel(float* param, const float* grad, float* const* slot, std::size_t n, std::int64_t t,
              double lr) const override {
    const OptimizerSpec& s = spec();
    const double period = static_cast<double>(s.period);
    const float direct = static_cast<float>(lr / period);
    const float inv_n = static_cast<float>(1.0 / period);
    const float mu = static_cast<float>(s.momentum);
    const float lr_mu = static_cast<float>(lr * s.momentum);
    float* __restrict p = param;
    const float* __restrict g = grad;
    float* __restrict m = slot[0];
    float* __restrict b = slot[1];
    if (t % s.period != 0) {
      for (std::size_t i = 0; i < n; ++i) {
        b[i] = b[i] + g[i];
        p[i] = p[i] - direct * g[i];
      }
      return;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const float bi = b[i] + g[i];
      const float pi = p[i] - direct * g[i];
      const float mi = mu * m[i] + bi * inv_n;
      m[i] = mi;
      b[i] = 0.0f;
      p[i] = pi - lr_mu * mi;
    }
  }
};

// ---- Sign (DeMo's outer step) ---------------------------------------------------------------

class SignOptimizer final : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::vector<std::string> slots() const override { return {}; }

 protected:
  void kernel(float* param, const float* grad, float* const*, std::size_t n, std::int64_t, double lr) const override {
    const float keep = static_cast<float>(1.0 - lr * spec().weight_decay);
    const float lr_f = static_cast<float>(lr);
    const bool decay = spec().weight_decay != 0;
    float* __restrict p = param;
    const float* __restrict g = grad;
    for (std::size_t i = 0; i < n; ++i) {
      const float s = g[i] > 0.0f ? 1.0f : g[i] < 0.0f ? -1.0f : 0.0f;
      const float pi = decay ? p[i] * keep : p[i];
      p[i] = pi - lr_f * s;
    }
  }
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const OptimizerSpec& spec) {
  validate_spec(spec);
  switch (spec.kind) {
    case OptimizerKind::Sgd:
    case OptimizerKind::Momentum:
    case OptimizerKind::Nesterov: return std::make_unique<SgdOptimizer>(spec);
    case OptimizerKind::Adam: return std::make_unique<AdamOptimizer>(spec);
    case OptimizerKind::FedAdagrad:
    case OptimizerKind::FedAdam:
    case OptimizerKind::FedYogi: return std::make_unique<FedOptOptimizer>(spec);
    case OptimizerKind::DelayedNesterov: return std::make_unique<DelayedNesterovOptimizer>(spec);
    case OptimizerKind::Sign: return std::make_unique<SignOptimizer>(spec);
  }
  throw_error(ErrorKind::Internal, "unknown optimizer kind for '{}'", spec.name);
}

std::unique_ptr<Optimizer> make_inner_optimizer(std::string_view text) {
  return make_optimizer(parse_inner_spec(text));
}
std::unique_ptr<Optimizer> make_outer_optimizer(std::string_view text) {
  return make_optimizer(parse_outer_spec(text));
}

}  // namespace loco::optim
