// Inner and outer optimizers: options, named state slots, element-wise kernels and whole-set steps.
//
// Sign convention (algorithms.md): every optimizer descends along its input, θ ← θ − lr·f(g).
// Inner optimizers get a gradient g; outer optimizers get the averaged pseudo-gradient
// Δ̄ = θ_global − mean(θ_local), so the outer SGD step with lr 1 is FedAvg.
//
// Update rules (float32 arithmetic; scalar coefficients computed in double, then rounded once):
//
//   sgd       g' = g + wd·p (coupled decay) or p ← p·(1 − lr·wd) first (decoupled=true);
//             p ← p − lr·g'                                            (torch.optim.SGD)
//   momentum  buf ← μ·buf + g'; p ← p − lr·buf                         (torch SGD, dampening 0)
//   nesterov  buf ← μ·buf + g'; p ← p − lr·(g' + μ·buf)                (torch SGD nesterov=True)
//             With μ = 0 these two keep no state and equal sgd.
//   adam      g' = g + wd·p (coupled);  adamw: p ← p·(1 − lr·wd) first (decoupled);
//             m ← lerp(m, g', 1 − β1); v ← β2·v + (1 − β2)·g'²;
//             p ← p − (lr / (1 − β1^t))·m / (√v / √(1 − β2^t) + eps)   (torch.optim.Adam/AdamW)
//             lerp(a, b, w) = a + w·(b − a) for w < 0.5, else b − (b − a)·(1 − w), as torch.
//   fedavgm   heavy-ball with Flower's FedAvgM names and defaults (server_learning_rate η_s = 1,
//             server_momentum μ = 0): v ← μ·v + Δ̄ (v = Δ̄ in round 1); θ ← θ − η_s·v.
//   fedadagrad, fedadam, fedyogi — Flower's FedOpt family (Reddi et al. 2020) rewritten in loco's
//             sign (Flower's Δ_t = mean − x = −Δ̄, so its m_t is −exp_avg here; v is unchanged):
//             m ← β1·m + (1 − β1)·Δ̄           (fedadagrad: β1 = 0, m = Δ̄, no exp_avg slot)
//             fedadagrad v ← v + Δ̄²
//             fedadam    v ← β2·v + (1 − β2)·Δ̄²
//             fedyogi    v ← v − (1 − β2)·Δ̄²·sign(v − Δ̄²)   (sign(0) = 0, as numpy)
//             θ ← θ − η_t·m / (√v + τ)
//             η_t = η for fedadagrad and fedyogi (no bias correction: Flower has none there).
//             fedadam: η_t = η·√(1 − β2^(t+1)) / (1 − β1^(t+1)) where t is the 1-based round,
//             exactly as written in ref/federated-decentralized.md §1.2 and in Flower's current
//             FedAdam (server_round + 1, so round 1 already uses exponent 2). Older Flower
//             releases had no bias correction; bias_correction=false reproduces them (η_t = η).
//             Slots start at zero, as Flower's. eta_l (Flower's client learning rate) is
//             recorded with the options and never used by the server step.
//   delayed_nesterov (Async Local-SGD, ref/diloco-family.md §5): per push t (1-based),
//             b ← b + Δ; θ ← θ − lr·Δ/N; when t mod N = 0: m ← μ·m + b/N; θ ← θ − lr·μ·m;
//             b ← 0. N = period; N = 1 is outer Nesterov.
//   sign      DeMo's outer step (Peng et al. 2024, signSGD with decoupled weight decay), no state:
//             θ ← θ·(1 − lr·wd) − lr·sign(Δ̄), sign(0) = 0 (as torch.sign); in float32 with
//             1 − lr·wd and lr each rounded once.
//
// Step numbering: OptimizerState::step counts completed updates; update number t = step + 1
// is what the kernels take, and bias corrections use it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loco/core/tensor.hpp"

namespace loco::optim {

// Optimizer state: one TensorSet per named slot ("exp_avg", "exp_avg_sq", "momentum", ...),
// each with the parameters' names and shapes, plus the update counter. On disk a slot is
// /state/<slot>/<param name> and step is the int64 attribute "step" of /state (man 5 loco-format).
struct OptimizerState {
  std::int64_t step = 0;
  std::map<std::string, TensorSet, std::less<>> slots;

  // Zero-filled float32 slots shaped like params, step 0.
  static OptimizerState zeros(const TensorSet& params, const std::vector<std::string>& slot_names);
  // The slot's tensors; throws Error(BadInput) naming the slot when it is absent.
  TensorSet& slot(std::string_view name);
  const TensorSet& slot(std::string_view name) const;
};

// The HDF5 group of a slot ("state/<slot>") and the attribute of /state holding the counter.
std::string state_group(std::string_view slot);
inline constexpr std::string_view kStepAttribute = "step";

enum class OptimizerKind {
  Sgd,
  Momentum,  // heavy-ball (also Flower's FedAvgM)
  Nesterov,
  Adam,  // also AdamW (decoupled weight decay)
  FedAdagrad,
  FedAdam,
  FedYogi,
  DelayedNesterov,
  Sign,  // DeMo's outer sign step
};

// Options of one optimizer. Fields an optimizer does not use keep their defaults and are not
// printed by format_spec(). Build one with parse_inner_spec/parse_outer_spec or
// inner_spec_defaults/outer_spec_defaults, then adjust fields.
struct OptimizerSpec {
  std::string name;  // as parsed: "sgd", "adamw", "fedavgm", ...
  OptimizerKind kind = OptimizerKind::Sgd;
  double lr = 0.01;       // lr; eta for fed*; server_learning_rate for fedavgm
  double momentum = 0.0;  // μ; server_momentum for fedavgm
  double beta1 = 0.9;     // beta_1 for fed*
  double beta2 = 0.999;   // beta_2 for fed*
  double eps = 1e-8;      // tau for fed*
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // p ← p·(1 − lr·wd) instead of g += wd·p (adamw: true)
  double eta_l = 0.0;                   // fed*: Flower's client learning rate, recorded only
  bool bias_correction = true;          // fedadam only
  std::int64_t period = 1;              // delayed_nesterov: N, pushes per momentum step
};

// Defaults of a named inner optimizer: sgd (lr 0.01), momentum and nesterov (lr 0.01, μ 0.9),
// adamw (DiLoCo's: lr 4e-4, β 0.9/0.95, eps 1e-8, weight_decay 0.1, decoupled), adam
// (torch's: lr 1e-3, β 0.9/0.999, eps 1e-8, weight_decay 0, coupled).
// Throws Error(Usage) for an unknown name, listing the known ones.
OptimizerSpec inner_spec_defaults(std::string_view name);
// The names of the inner (outer: the outer) optimizers, in the order of their table.
std::vector<std::string> optimizer_names(bool outer);
// Defaults of a named outer optimizer: sgd (lr 1: FedAvg), momentum (lr 0.7, μ 0.9), nesterov
// (DiLoCo: lr 0.7, μ 0.9), adam (torch's: lr 1e-3, β 0.9/0.999, eps 1e-8), fedavgm (η_s 1, μ 0),
// fedadagrad (η 0.1, η_l 0.1, τ 1e-3), fedadam (η 0.1, η_l 0.1, β 0.9/0.99, τ 1e-3), fedyogi
// (η 0.01, η_l 0.0316, β 0.9/0.99, τ 1e-3), delayed_nesterov (lr 0.7, μ 0.9, period 1),
// sign (DeMo's reference config: lr 4e-4, weight_decay 0; keys lr, weight_decay).
// The τ defaults are Flower's current ones (its older API used 1e-9).
// Throws Error(Usage) for an unknown name.
OptimizerSpec outer_spec_defaults(std::string_view name);

// Parses "name" or "name:key=value,key=value" over the defaults above, e.g.
// "adamw:lr=1e-3,beta1=0.9,beta2=0.95,weight_decay=0.1" or "fedyogi:eta=0.01,tau=1e-3".
// Keys: lr (alias eta, server_learning_rate), momentum (alias mu, server_momentum),
// beta1 (beta_1), beta2 (beta_2), eps (tau), weight_decay (wd), decoupled (true/false/1/0),
// eta_l, bias_correction (true/false), period; each optimizer takes only the keys it uses.
// Then validates (validate_spec). Throws Error(Usage) naming the key or value that is wrong.
OptimizerSpec parse_inner_spec(std::string_view text);
OptimizerSpec parse_outer_spec(std::string_view text);
// The canonical text of a spec: its name and every key it uses, with values printed so they
// parse back to the same doubles ("nesterov:lr=0.7,momentum=0.9,weight_decay=0,decoupled=false").
std::string format_spec(const OptimizerSpec& spec);
// Throws Error(Usage) when a value is out of range: lr, eps, weight_decay, eta_l not finite or
// negative; momentum, beta1, beta2 not in [0, 1); period < 1.
void validate_spec(const OptimizerSpec& spec);

// The kernels take their state slots as spans, in the order of Optimizer::slots().
using SlotSpans = std::span<const std::span<float>>;

// An optimizer: a stateless rule over float32 spans plus named state slots. Thread-safe: all
// members are const, so one instance may update different ranges concurrently.
class Optimizer {
 public:
  explicit Optimizer(OptimizerSpec spec) : spec_(std::move(spec)) {}
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  const OptimizerSpec& spec() const noexcept { return spec_; }
  // The configured (base) learning rate.
  double lr() const noexcept { return spec_.lr; }
  // Names of the state slots, in the order apply() takes them; may be empty.
  virtual std::vector<std::string> slots() const = 0;

  // The element-wise update of update number t (1-based, = state.step + 1) on any range of
  // elements: param, grad and each slot span cover the same elements. Applying it to
  // consecutive sub-ranges gives bit-identical results to applying it to the whole tensor.
  // Does not touch any step counter. Throws Error(Usage) when lr is not finite or negative or
  // t < 1, Error(Internal) when the span sizes or slot count disagree.
  void apply(std::span<float> param, std::span<const float> grad, SlotSpans slots, std::int64_t t, double lr) const;

  // One update of every parameter with its gradient (same names and shapes; order may differ),
  // using and updating state, then state.step += 1. Parallel over tensors and blocks (TBB);
  // the result does not depend on the thread count. Throws Error(Usage) for a bad lr,
  // Error(BadInput) naming the tensor when grads or a state slot lack a parameter, have an
  // extra tensor, another shape, or a dtype other than float32.
  void step(TensorSet& params, const TensorSet& grads, OptimizerState& state, double lr) const;
  // The same with the configured learning rate.
  void step(TensorSet& params, const TensorSet& grads, OptimizerState& state) const {
    step(params, grads, state, spec_.lr);
  }

  // Fresh zero state for params.
  OptimizerState make_state(const TensorSet& params) const { return OptimizerState::zeros(params, slots()); }
  // Throws Error(BadInput) naming slot and tensor when state does not fit params: a slot of
  // slots() missing, or a slot whose tensors are not exactly params' names and shapes in float32.
  // Slots the optimizer does not use are ignored (a state file may also hold error feedback).
  void check_state(const OptimizerState& state, const TensorSet& params) const;

 protected:
  // The update with validated arguments: every span has n = param.size() elements.
  virtual void kernel(float* param, const float* grad, float* const* slots, std::size_t n, std::int64_t t,
                      double lr) const = 0;

 private:
  OptimizerSpec spec_;
};

// The optimizer for a validated spec. Throws Error(Usage) when validate_spec does.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerSpec& spec);
// Parse (parse_inner_spec / parse_outer_spec) and build.
std::unique_ptr<Optimizer> make_inner_optimizer(std::string_view text);
std::unique_ptr<Optimizer> make_outer_optimizer(std::string_view text);

}  // namespace loco::optim
