// Model merging as mergekit defines it (linear, SLERP, task arithmetic, TIES, DARE, model stock)
// plus variance-corrected averaging: per-tensor float32 kernels, and merge_files(), which streams
// tensor by tensor: it holds one tensor per input (task vectors are formed in place) and writes
// the output in row blocks, so peak memory is inputs × the largest tensor plus a few MiB.
//
// Conventions (design/ref/checkpoints.md §4): δᵢ = θᵢ − θ_base; per-model weights wᵢ (default 1);
// density (default 1), lambda (default 1) and t as mergekit's parameters of the same names; the
// defaults of normalize and rescale are mergekit's per method (method_defaults). Where mergekit
// leaves a choice open, loco decides and says so: ties in TIES' magnitude ranking keep the lower
// flat index; DARE draws its mask from loco::Rng keyed by (seed, tensor name, model index); a
// trim that keeps no element (⌊density·n⌋ = 0, where mergekit stops with an assertion) zeroes δ.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loco::merge {

enum class Method { Linear, Slerp, TaskArithmetic, Ties, DareLinear, DareTies, ModelStock };

// "linear", "slerp", "task_arithmetic", "ties", "dare_linear", "dare_ties", "model_stock".
std::string_view method_name(Method m) noexcept;
std::optional<Method> parse_method(std::string_view name) noexcept;

struct MethodDefaults {
  bool needs_base;     // task vectors are taken against --base
  bool normalize;      // divide by the sum of (masked) weights
  bool rescale;        // L1-rescale sparsified deltas
  bool sparsify;       // density applies
  bool sign_election;  // TIES sign consensus
};
MethodDefaults method_defaults(Method m) noexcept;

// --- kernels: every span has the same length n; out may not alias an input -----------------------

// out = Σ wᵢ xᵢ, divided by Σ wᵢ when normalize. Throws Error(Usage) when normalize and Σ wᵢ = 0.
void linear(std::span<const std::span<const float>> models, std::span<const double> weights, bool normalize,
            std::span<float> out);

// Spherical interpolation from v0 (t = 0) to v1 (t = 1) over the flattened tensors, mergekit's
// formula: directions normalized (norms ≤ 1e-8 left as they are); when |cos Ω| > 0.9995 a
// plain lerp (1−t)v0 + t v1; else sin((1−t)Ω)/sin Ω · v0 + sin(tΩ)/sin Ω · v1 on the
// unnormalized tensors. Dot products and norms are accumulated in double.
void slerp(std::span<const float> v0, std::span<const float> v1, double t, std::span<float> out);
// The coefficients (a, b) of slerp's out = a·v0 + b·v1 over the whole tensors, in float32.
std::pair<float, float> slerp_coefficients(std::span<const float> v0, std::span<const float> v1, double t);

// Variance correction of an average (Tian et al. 2024): with σ_t² the weighted mean of the
// inputs' variances (weights normalized to sum 1), replaces merged by μ + (merged − μ)·σ_t/σ,
// μ and σ the mean and standard deviation of merged; unchanged when σ = 0 or n < 2.
void variance_correct(std::span<const std::span<const float>> models, std::span<const double> weights,
                      std::span<float> merged);
// The same in pieces, for a merged tensor produced block by block: σ_t² from the inputs, then the
// mean and variance of the merged values (each a pass over all of them, in element order), then
// the element-wise correction. variance_correct is these three on one span.
// σ_t² (nullopt when the weights sum to 0: no correction).
std::optional<double> variance_target(std::span<const std::span<const float>> models, std::span<const double> weights);
void variance_apply(double mu, double var, double target, std::span<float> merged);

// TIES trim: keeps the ⌊density·n⌋ entries of largest |δ| (ties: lower index first), zeroes the
// rest; with rescale, scales the kept entries so the L1 norm is that of the input (skipped when
// either norm is below 1e-7). density ≥ 1 keeps all. scratch is reused working memory.
// The k-th largest |δ| is found exactly by two histogram passes over the magnitudes' bits (no copy).
void trim_magnitude(std::span<float> delta, double density, bool rescale);

// DARE drop: keeps each entry independently with probability density, drawing 32-bit words from
// Rng(seed, {stream}) in element order (kept when word < ⌊density·2³²⌋); with rescale, L1 rescale
// as above. density ≥ 1 keeps all and draws nothing.
void drop_random(std::span<float> delta, double density, bool rescale, std::uint64_t seed, std::uint64_t stream);

// mergekit's generalized task arithmetic on already sparsified deltas: uᵢ = wᵢδᵢ. With
// sign_election: s = +1 where Σuᵢ ≥ 0 else −1, mᵢ = [sign uᵢ = s] (zeros never count),
// merged = Σmᵢuᵢ, divisor Σmᵢwᵢ (0 → 1). Without: merged = Σuᵢ, divisor Σwᵢ (|·| < 1e-8 → 1).
// normalize divides merged by the divisor; out = base + lambda · merged.
void combine_deltas(std::span<const float> base, std::span<const std::span<const float>> deltas,
                    std::span<const double> weights, bool sign_election, bool normalize, double lambda,
                    std::span<float> out);

// Model stock (Jang et al. 2024, mergekit's whole-tensor form): cos θ = the mean over pairs of
// cos(δᵢ, δⱼ) (norm products clamped below at 1e-6, cosines to [−1, 1]), t = N cos θ / (1 + (N−1) cos θ),
// out = t · mean θᵢ + (1 − t) · base. Needs N ≥ 2 models. Returns t. Throws Error(Numeric) when
// 1 + (N−1) cos θ = 0.
double model_stock(std::span<const float> base, std::span<const std::span<const float>> models, std::span<float> out);
// Model stock's t alone, over the whole tensors.
double model_stock_t(std::span<const float> base, std::span<const std::span<const float>> models);
// out = t · mean θᵢ + (1 − t) · base on any range of elements.
void model_stock_apply(double t, std::span<const float> base, std::span<const std::span<const float>> models,
                       std::span<float> out);

// --- files ------------------------------------------------------------------------------------------

// A parameter as mergekit reads one: a scalar, a gradient over the layers, or conditions tried in
// order, each with a filter (a substring of the tensor name; empty matches every tensor). A
// gradient g of L values gives, at layer position t in [0, 1], g interpolated linearly at t·(L−1)
// (mergekit's evaluate_setting). The position of layer i of N is i/(N−1) (1 when N = 1); tensors
// outside the layers take 0 before the first layer and 1 after (mergekit: embeddings, then norm
// and head). A layer is a name part "layers.I.", "blocks.I.", "h.I." or "layer.I.".
struct Setting {
  struct Cond {
    std::string filter;
    std::vector<double> values;  // one: a scalar; more: a gradient
  };
  std::vector<Cond> conds;
  Setting() = default;
  Setting(double v) : conds{{"", {v}}} {}  // NOLINT: a scalar converts implicitly, as in mergekit
  // The value for a tensor at layer position t; nullopt when no condition matches it.
  std::optional<double> at(std::string_view tensor, double t) const;
};
// Parses the repeated values of one option: "V", "V1,V2,...", "FILTER:V", "FILTER:V1,V2,..." (the
// last ':' separates the filter). Throws Error(Usage) naming `option` for a bad number.
Setting parse_setting(std::string_view option, const std::vector<std::string>& specs);
// The layer position of every name of a model, in order (see Setting).
std::vector<double> layer_positions(const std::vector<std::string>& names);

struct MergeOptions {
  Method method = Method::Linear;
  std::string base;                        // "" for none
  std::vector<double> weights;             // one per MODEL (not the base); empty: all 1
  std::optional<Setting> density;          // TIES, DARE: in (0, 1]; default 1
  std::optional<Setting> lambda;           // task arithmetic, TIES, DARE; default 1
  std::optional<Setting> t;                // SLERP: required (for every tensor)
  std::uint64_t seed = 0;                  // DARE masks
  std::optional<bool> normalize, rescale;  // default: method_defaults
  bool variance_correct = false;           // linear only
  bool allow_missing = false;              // carry tensors some model lacks through from the reference
  // Bytes of float32 output per row block (whole rows, at least one); does not change the result.
  std::size_t block_bytes = std::size_t{4} << 20;
};

// Merges the models (and base) into out, whose format follows its extension (create_sink).
// Inputs may be any format open_source reads. The reference is the base, or the first model
// without one: its tensors of group "tensors" are the output's, in its order and dtype; the
// arithmetic is float32; integer and bool tensors are copied from the reference. slerp merges
// base → model (t = 0 gives the base) or, without --base, the first model → the second.
// Model configs are compared when both files carry one (safetensors and .pt files carry none).
// Throws Error(Usage) for options the method does not take or lacks (and weights of the wrong
// count), Error(BadInput) naming the files and the tensor when names, shapes or model configs
// disagree (a tensor the reference has and a model lacks is carried through from the reference
// when allow_missing), or an input is not a model, Error(Numeric) when model stock's t is undefined.
void merge_files(const std::vector<std::string>& models, const std::string& out, const MergeOptions& opt);

}  // namespace loco::merge
