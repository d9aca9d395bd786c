// Byzantine-robust reducers over N update vectors x_1..x_N (each the concatenation of every tensor of
// a delta), computed in at most two streaming passes with memory O(N × block).
//
// How a rule runs. Rules that depend on distances (Krum, Multi-Krum, Bulyan's selection, NNM,
// geometric median, centered clipping, median-norm clipping, Flag) need only the N×N Gram matrix
// G = XᵀX: ‖x_i − x_j‖² = G_ii − 2G_ij + G_jj, and for z = Σ_j w_j x_j, ‖z − x_i‖² = wᵀGw − 2(Gw)_i + G_ii.
// A first pass accumulates G in float64 block by block (plus centered clipping's previous centre v₀
// as an extra column); the rule then becomes a plan on the columns: either one coefficient vector
// (out = Σ_c a_c col_c) or a set of rows y_r = Σ_c M_rc col_c to which a coordinate-wise rule
// (median, trimmed mean, Bulyan's coordinate stage) is applied block by block in the second pass.
// Pre-aggregators (NNM, bucketing) are mixing matrices on the inputs, composed with any rule.
//
// Conventions (recorded so results can be compared with other implementations):
//  - median: per coordinate; an even count takes the mean of the two middle values.
//  - trimmed-mean:beta=B: t = ⌊B·n⌋ values cut at each end (Flower's FedTrimmedAvg), needs 2t < n.
//  - krum:f=F scores x_i by the SUM of squared distances to its n−f−2 nearest others (Blanchard et
//    al. 2017, Flower); variant=byzfl uses the mean over n−f−1 nearest (ByzFL). Needs n ≥ 2f+3.
//    Ties in score go to the lower index. multi-krum:f=F,m=M averages the M lowest scores (default
//    M = n−f, unweighted).
//  - bulyan:f=F needs n ≥ 4f+3; picks θ = n−2f inputs by repeated Krum, each on the remaining set
//    of s inputs with max(1, s−f−2) neighbours (Flower's aggregate_bulyan over aggregate_krum), then per coordinate averages the β = θ−2f picked values closest to their median (growing the
//    window from the median outwards, the lower value first on a tie).
//  - geomedian: smoothed Weiszfeld from the mean, z ← Σβ_i x_i/Σβ_i, β_i = 1/max(ν, ‖z − x_i‖),
//    stopping when the objective Σ‖z − x_i‖ decreases by at most tol relative, or after iters.
//  - centered-clip:tau=T,iters=L: v ← v + (1/n)Σ(x_i − v)·min(1, τ/‖x_i − v‖), L times, from the
//    previous centre v₀ (zero when none is given). The caller carries v (the aggregate) across rounds.
//  - median-norm: each x_i clipped to the median of the norms, then the mean.
//  - flag:r=R,iters=T,eps=E (Flag Aggregator, Almasi et al. ICLR'24): x̂_i = x_i/‖x_i‖; IRLS for an
//    r-dimensional subspace Y = top-r left singular vectors of [w_i x̂_i], w_i = (r − ‖Yᵀx̂_i‖² + ε)^(−1/4)
//    (w = 1 for the first fit); output YYᵀ·mean(x_i). ByzFL outputs (1/r)Σ_i YYᵀx_i, n/r times this:
//    loco keeps the mean's scale so the outer learning rate means the same for every reducer.
//  - nnm[:f=F]: x_i ← mean of its n−f nearest inputs (itself included; ties to the lower index);
//    f defaults to the rule's f. bucket:s=S: a permutation drawn from (seed, round) and groups of s
//    consecutive inputs averaged (⌈n/s⌉ buckets, the last one smaller when s ∤ n); the rule then
//    sees ⌈n/s⌉ inputs, and its f and checks refer to that count.
// Inputs must be finite (drop non-finite deltas first).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace loco::robust {

enum class Rule { Mean, Median, TrimmedMean, Krum, MultiKrum, GeoMedian, CenteredClip, Bulyan, MedianNorm, Flag };
enum class PreKind { Nnm, Bucket };

struct PreSpec {
  PreKind kind = PreKind::Nnm;
  std::int64_t f = -1;  // nnm: −1 takes the rule's f
  std::int64_t s = 2;   // bucket size
};

struct ReducerSpec {
  std::vector<PreSpec> pre;  // applied left to right before the rule
  Rule rule = Rule::Median;
  std::int64_t f = 0;       // krum, multi-krum, bulyan
  std::int64_t m = 0;       // multi-krum: inputs averaged (0 = n − f)
  bool krum_byzfl = false;  // krum/multi-krum: ByzFL's neighbour count (n−f−1) instead of n−f−2
  double beta = 0.2;        // trimmed-mean
  std::int64_t iters = 0;   // geomedian (default 100), centered-clip (1), flag (1); 0 = rule default
  double nu = 1e-6;         // geomedian smoothing ν
  double tol = 1e-10;       // geomedian relative stopping tolerance
  double tau = 100;         // centered-clip radius
  std::int64_t r = 1;       // flag subspace dimension
  double eps = 1e-6;        // flag ε
};

// Parses "[PRE+]...RULE" where PRE is nnm[:f=F] or bucket:s=S and RULE one of mean, median,
// trimmed-mean[:beta=B], krum:f=F[,variant=byzfl], multi-krum:f=F[,m=M][,variant=byzfl],
// geomedian[:iters=T,nu=V,tol=E], centered-clip[:tau=T,iters=L], bulyan:f=F, median-norm,
// flag[:r=R,iters=T,eps=E]. Throws Error(Usage) naming the offending part.
ReducerSpec parse_reducer_spec(std::string_view text);
// The rule names and then the pre-aggregator names (nnm, bucket) parse_reducer_spec takes.
std::vector<std::string> reducer_names();
// The canonical text of a spec (every parameter written), parseable by parse_reducer_spec.
std::string format_reducer_spec(const ReducerSpec& spec);
// True for rules that want centered clipping's previous centre.
bool uses_center(const ReducerSpec& spec) noexcept;

// Seed and round of randomized pre-aggregators (bucketing): the permutation is drawn from
// Rng(seed, {bucket stream, round}), so every rerun of a round buckets alike.
struct ReduceContext {
  std::uint64_t seed = 0;
  std::int64_t round = 0;
};

// What the Gram-space stage decided, for summaries.
struct PlanInfo {
  std::vector<double> coefficients;    // out = Σ a_c col_c when the rule is linear (else empty);
                                       // one per input, then v₀'s when a centre column is used
  std::vector<std::int64_t> selected;  // inputs picked by Krum / Multi-Krum / Bulyan (input indices)
  std::int64_t iterations = 0;         // geomedian / centered-clip / flag iterations run
};

std::vector<std::vector<double>> mixing_matrix(const ReducerSpec& spec, std::size_t n, const ReduceContext& ctx,
                                               std::span<const double> gram);

// One reduction of n inputs. Use: construct; if needs_gram(), call add_gram() for every block of the
// vectors (any split, in any order) and then finish_gram(); then reduce() every block. reduce()
// is const and safe to call from several threads at once on different blocks.
class Reducer {
 public:
  // Throws Error(Usage) when the rule cannot run on n inputs (Krum n ≥ 2f+3, Bulyan n ≥ 4f+3,
  // trimmed mean 2⌊βn⌋ < n, NNM f < n, multi-krum m ≤ n …), naming the rule and the counts.
  Reducer(const ReducerSpec& spec, std::size_t n, const ReduceContext& ctx = {});
  ~Reducer();
  Reducer(Reducer&&) noexcept;
  Reducer& operator=(Reducer&&) noexcept;

  std::size_t inputs() const noexcept;
  bool needs_gram() const noexcept;
  // Columns the block functions take: n, or n + 1 when centered clipping uses v₀ (last column).
  std::size_t columns() const noexcept;
  // Accumulates G += Bᵀ B for one block, cols[c] pointing at len floats of column c.
  void add_gram(std::span<const float* const> cols, std::size_t len);
  // Runs the Gram-space part of the rule. Throws Error(Numeric) when G is not finite.
  void finish_gram();
  // The accumulated Gram matrix, row-major columns() × columns().
  const std::vector<double>& gram() const noexcept;
  const PlanInfo& plan() const;

  // out[0..len) = the rule applied to one block of every column (after finish_gram() when
  // needs_gram()). Deterministic whatever the thread count and the block split.
  void reduce(std::span<const float* const> cols, std::size_t len, float* out) const;

 private:
  friend std::vector<std::vector<double>> mixing_matrix(const ReducerSpec&, std::size_t, const ReduceContext&,
                                                        std::span<const double>);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The pre-aggregators' mixing matrix (rows × n, row-major; rows = n after NNM, ⌈n/s⌉ after
// bucketing) for n inputs with Gram matrix gram (n × n, row-major; may be empty when no NNM is
// used). Each row is a mean of inputs, so the matrix is row-stochastic. For tests and summaries.
std::vector<std::vector<double>> mixing_matrix(const ReducerSpec& spec, std::size_t n, const ReduceContext& ctx,
                                               std::span<const double> gram);

// The rule over n whole vectors in memory (each of the same length; center may be empty: v₀ = 0).
// For tests and small callers. Throws Error(Usage) on length mismatch.
std::vector<float> reduce_vectors(const ReducerSpec& spec, const std::vector<std::vector<float>>& x,
                                  const ReduceContext& ctx = {}, std::span<const float> center = {},
                                  PlanInfo* info = nullptr);

}  // namespace loco::robust
