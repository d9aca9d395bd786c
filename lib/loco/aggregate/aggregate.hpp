// One round of the outer loop from files: reduce N delta files (dense, or compressed by loco-compress)
// into Δ̄ and apply the outer optimizer to the global model, streaming tensor by tensor and row block by
// row block.
//
// Sign convention (algorithms.md): a delta is Δ = θ_global − θ_local, Δ̄ = Σ_k w_k·Δ_k and the outer
// step descends along it, θ ← θ − lr·f(Δ̄) (outer SGD with lr 1 is FedAvg).
//
// Reduction. Deltas are taken in a fixed order — by worker id (deltas without one last), then by
// path — and summed in float64: acc = Σ_k w_k·Δ_k, Δ̄ = float32(acc). The result is therefore
// bit-identical whatever order the files are listed in, and for up to thousands of deltas the only
// rounding that matters is the final one to float32 (a float32 running sum would lose up to
// N·2⁻²⁴ relative). The float64 accumulator costs no time: the loop is bound by reading the deltas.
// Weights: mean w_k = g_k / N; weighted-mean w_k = n_k·g_k / Σ_j n_j with n_k the delta's
// `samples`. g_k = 1 for a delta computed from this global model; with allow_stale a delta from an
// older round gets the polynomial staleness weight g_k = (1 + s)^−a, s = round(global) − round(delta)
// (FedAsync's polynomial rule). The denominators do not include g, so stale deltas shrink Δ̄ rather
// than being renormalized away.
//
// Non-finite deltas. Finiteness is checked on every block of Δ̄ as it is rounded to float32 (the
// weights are finite and > 0, so Δ̄ is finite exactly when every delta is), so the common case
// reads each delta once. When a NaN or Inf shows up, the pass is abandoned (nothing has been
// committed), every delta is streamed once to find all the non-finite ones, these are dropped and
// named, and the reduction reruns over the rest: a dropped delta never contaminates the sum.
//
// Compressed deltas (kind compressed made from a delta: loco-compress DELTA) are accepted next to or
// instead of dense ones, with the same checks (model_config, base_checksum, worker, tensor names and
// shapes, non-finite values dropped and named, quorum). Their tensors are decoded one at a time.
// Deltas compressed with ef21 or econtrol feedback need ef21_state (below): such a file holds the
// increment of an estimate g_i that only a receiver keeping g_i can turn into worker i's delta.
//
// Rules (recorded in the output's root attributes `reduction` and `clip`, and in the summary):
//   mean              Δ̄ = Σ_k g_k·x_k / N over the N valid deltas (g_k the staleness weight).
//   weighted-mean     Δ̄ = Σ_k n_k·g_k·x_k / Σ_k n_k.
//   contributor-mean  per element j, Δ̄_j = Σ_{k∈S_j} g_k·x_kj / |S_j| where S_j is the set of deltas that
//                     selected j, and Δ̄_j = 0 where nobody did (DeMo's and SparseLoCo's scatter_reduce
//                     mean with include_self=False). A delta whose codec starts with topk or randk
//                     selects the indices it kept (a kept value that decodes to 0 still counts); a dense
//                     delta, or a codec without a sparsifier (cast, quant, sign, qsgd, powersgd, sketch),
//                     selects every element, so for dense deltas contributor-mean is mean. dct_topk
//                     selects DCT-II coefficients: as DeMo does, the contributor mean is taken over the
//                     coefficients (chunk-padded, chunk by chunk), rounded to float32, then transformed
//                     back with the orthonormal inverse DCT; every delta of such a tensor must then be
//                     dct_topk with the same chunk (Error(BadInput) otherwise).
//   --clip median-norm (SparseLoCo's aggregator): before reducing, per tensor, each delta's values x_k
//                     (decoded; DCT coefficients under contributor-mean with dct_topk) are scaled by
//                     c_k = min(1, m / ‖x_k‖₂) where m is the median of ‖x_1‖…‖x_N‖ over the valid
//                     deltas: the middle value for odd N, the mean of the two middle values for even N
//                     (c_k = 1 when ‖x_k‖ = 0). Norms are computed in float64; the sums use (w_k·c_k)·x.
//
// Robust rules (--reduce median, trimmed-mean:beta=B, krum:f=F, multi-krum:f=F,m=M, geomedian,
// centered-clip:tau=T,iters=L, bulyan:f=F, median-norm, flag, with pre-aggregators nnm[:f=F]+ and
// bucket:s=S+; robust/reducer.hpp gives each rule's exact convention). The inputs are the valid deltas
// in reduction order, each scaled by its staleness weight g_k (1 unless stale): x_k = g_k·Δ_k, whole
// updates (every tensor concatenated). Rules that need distances take a first pass accumulating the
// Gram matrix of the x_k block by block; the second pass reduces block by block and applies the outer
// optimizer to the robust Δ̄ exactly as to the mean. Memory O(N × block) for dense deltas; each
// compressed delta's current tensor is decoded and held while that tensor is reduced (N × the largest
// tensor when all are compressed). Bucketing draws its permutation
// from (seed, round of the model). centered-clip starts from the previous round's Δ̄, kept in the model
// file as /state/robust_center/<name> (zero when absent) and written to the output's. The rule's plan
// (inputs selected, coefficients over the inputs, iterations) goes to the summary and to the output's
// root attributes robust_selected (Krum, Multi-Krum, Bulyan: positions in the contributor order, or
// after pre-aggregators in the mixed rows) and robust_coefficients (linear rules: Δ̄ = Σ a_k x_k, then
// the centre's coefficient for centered-clip). A non-finite delta is dropped and named first, as for
// the mean. A rule that cannot run on the valid deltas (Krum needs n ≥ 2f + 3 …) is Error(Usage).
//
// QFedAvg (--reduce qfedavg[:q=Q,lr=LR], Flower's q_param 0.2 and qffl_learning_rate 0.1, L = 1/LR;
// Li et al., "Fair Resource Allocation in Federated Learning"): F_k is the delta's `loss_first`, the
// worker's loss at the start of local training, i.e. the loss of the global model on its data (the
// paper's F_k(w^t); Flower instead evaluates one server-side loss for all clients). With
// Δw_k = L·x_k, h_k = q·F_k^(q−1)·‖Δw_k‖² + L·F_k^q, Δ̄ = Σ_k F_k^q·Δw_k / Σ_k h_k, a weighted mean
// with w_k = L·F_k^q / Σ_j h_j (norms over the whole update, float64). With --outer sgd (lr 1) the
// step is Flower's x ← x − Δ̄.
//
// Differential privacy (dp.clip > 0; --reduce mean only): each x_k is clipped to L2 norm C over the
// whole update (c_k = min(1, C/‖x_k‖)), Δ̄ = Σ_k c_k·x_k / m with m = dp.clients (0: the number of valid
// deltas), and N(0, σ²) is added to every element of Δ̄ with σ = z·C/m (Flower's server-side fixed
// clipping), drawn from Philox (dp.seed, round of the model, index of the tensor in the model's /tensors order). Adaptive clipping (Andrew et
// al.): C is read from the model's /state attribute dp_clip (dp.clip the first time), this round clips
// with it, and the output's /state@dp_clip is C·exp(−η(b̄ − γ)), b̄ the noised fraction of deltas with
// ‖x_k‖ ≤ C; the noise then uses z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2). The norms take one extra read of
// every delta (also for QFedAvg).
//
// Staleness (allow_stale): a delta s rounds old gets g_k = staleness_gain(rule, s): constant 1,
// polynomial (1 + s)^−a (a = 0.5), hinge 1 for s ≤ b else 1/(a(s − b) + 1) (FedAsync's form; its
// defaults a = 10, b = 4 are recalled from the paper, not checked against it), or fedfix 1 + s
// (FedFix's ⌈τ/Δt⌉ when one round is one period Δt).
//
// EF21 at the aggregator (ef21_state = DIR). A delta compressed with ef21 or econtrol feedback holds
// c_i = C(Δ_i − g_i), the increment of worker i's estimate g_i; the aggregator keeps its own copy,
// DIR/worker-W-round-RRRRRR.h5 (kind state, /tensors float32: g_i after applying worker W's delta of round
// R), and uses g_i ← g_i + decode(c_i) (float32, element by element, the worker's own arithmetic, so both
// hold the same bits) as worker i's delta in every rule. The base is the worker's newest file of an
// earlier round (none: g_i = 0); after the model is committed the new g_i is written atomically and the
// worker's files older than the base are removed, so rerunning a round recomputes the same g_i. Workers
// that did not report keep their files. Needs the deltas' worker and round attributes.
//
// Memory. Dense deltas without clipping take the streaming path below. Otherwise (a compressed delta,
// or --clip) the reduction goes tensor by tensor: for the tensor being reduced it holds a float64
// accumulator, a float32 contributor count, one decoded tensor and its selection mask (float32 each),
// Δ̄, and one delta's encoded datasets (at most its payload for that tensor), about 24 bytes per
// element of the largest tensor (of the padded coefficient domain with dct_topk) plus one encoded
// tensor, whatever the number of deltas. Deltas are read one after the other (twice with --clip:
// once for the norms, once for the sums).
//
// Speed. Contiguous tensors are read with pread at their file offset (io::contiguous_offset) from
// every thread, in pieces that stay in the core's cache between the read and the sum; several
// deltas are added per pass over the float64 accumulator; block b is written while block b + 1 is
// computed. Other storage (chunked, compressed, big-endian) is read with read_rows, one HDF5 call
// at a time. Memory is O(threads · piece · 4 + block · (1 + state slots)), independent of N.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loco/optim/optimizer.hpp"
#include "loco/robust/dp.hpp"
#include "loco/robust/reducer.hpp"

namespace loco::aggregate {

enum class Reduction { Mean, WeightedMean, ContributorMean, Robust, QFedAvg };
// "mean", "weighted-mean", "contributor-mean", "robust" or "qfedavg".
std::string_view reduction_name(Reduction r) noexcept;
// Parses "mean", "weighted-mean" or "contributor-mean"; throws Error(Usage) otherwise.
Reduction parse_reduction(std::string_view text);

enum class Clip { None, MedianNorm };
// "none" or "median-norm".
std::string_view clip_name(Clip c) noexcept;
// Parses "none" or "median-norm"; throws Error(Usage) otherwise.
Clip parse_clip(std::string_view text);

// The median of the values (the mean of the two middle ones for an even count); 0 for none.
double median(std::vector<double> values);

// The polynomial staleness weight (1 + s)^−a for a delta s ≥ 0 rounds old (1 for s = 0).
double staleness_weight(std::int64_t staleness, double exponent);

enum class StalenessRule { Constant, Polynomial, Hinge, FedFix };
struct Staleness {
  StalenessRule rule = StalenessRule::Polynomial;
  double a = 0.5;  // polynomial exponent; hinge slope
  double b = 4;    // hinge: rounds of grace
};
// Parses constant | polynomial[:a=A] | hinge[:a=A,b=B] | fedfix (defaults: polynomial a = 0.5,
// hinge a = 10, b = 4). Throws Error(Usage) for anything else or a negative or non-finite value.
Staleness parse_staleness(std::string_view text);
// "constant", "polynomial:a=0.5", "hinge:a=10,b=4", "fedfix".
std::string format_staleness(const Staleness& s);
// g(s) for a delta s ≥ 0 rounds old (aggregate.hpp, Staleness). Throws Error(Internal) for s < 0.
double staleness_gain(const Staleness& rule, std::int64_t staleness);

struct QfflOptions {
  double q = 0.2;   // Flower's q_param
  double lr = 0.1;  // Flower's qffl_learning_rate; the Lipschitz estimate is L = 1/lr
};

struct DpOptions {
  double clip = 0;              // C; 0 turns DP off. With adaptive: C of the first round
  double noise_multiplier = 0;  // z
  std::uint64_t seed = 0;
  std::int64_t clients = 0;  // m; 0: the number of valid deltas
  bool adaptive = false;
  robust::AdaptiveClipOptions adaptive_options;
};
// Parses "quantile=G,lr=E[,count-stddev=S]" (keys optional, defaults 0.5, 0.2, m/20) into options;
// throws Error(Usage) naming a bad key or value.
robust::AdaptiveClipOptions parse_adaptive_clip(std::string_view text);

// Parses a --reduce value into options.reduce and, for robust rules and qfedavg, options.robust or
// options.qffl: mean, weighted-mean, contributor-mean, qfedavg[:q=Q,lr=LR], or a robust reducer spec
// (robust::parse_reducer_spec; "mean" there is the plain mean). Throws Error(Usage).
struct AggregateOptions;
void parse_reduce(std::string_view text, AggregateOptions& options);
// The names a --reduce spec starts with: the plain reductions, qfedavg, the robust rules.
std::vector<std::string> reduce_names();

struct AggregateOptions {
  Reduction reduce = Reduction::Mean;
  Clip clip = Clip::None;
  // The outer optimizer (optim::parse_outer_spec); DiLoCo's Nesterov lr 0.7, μ 0.9 by default.
  optim::OptimizerSpec outer = optim::outer_spec_defaults("nesterov");
  // Quorum: fewer valid deltas than this (after dropping non-finite ones) fails with Error(Check).
  std::int64_t min_deltas = 1;
  // Accept deltas computed from an older global model of the same model_config, down-weighted.
  bool allow_stale = false;
  // The staleness rule; nullopt: polynomial (1 + s)^−0.5 (FedBuff's 1/√(1 + s)).
  std::optional<Staleness> staleness;
  // Accept several deltas of one worker on one base (asynchronous buffers: a fast worker may push twice
  // before the model changes).
  bool allow_same_worker = false;
  // Robust rule (reduce == Robust) and QFedAvg's parameters (reduce == QFedAvg).
  robust::ReducerSpec robust;
  QfflOptions qffl;
  // Seed of randomized pre-aggregators (bucketing), with the model's round.
  std::uint64_t seed = 0;
  DpOptions dp;
  // Folder of the aggregator's per-worker estimates for deltas compressed with ef21 or econtrol feedback
  // (empty: such deltas are refused). See "EF21 at the aggregator" above.
  std::string ef21_state;
  // Bytes of float32 output per tensor block (whole rows; at least one row): the unit written to the
  // output while the next block is computed. Does not change the result. 1 MiB measured as fast as
  // 256 KiB and faster than 4 MiB, whose double-buffered output blocks also cost 16 MiB more memory.
  std::size_t block_bytes = std::size_t{1} << 20;
};

struct Contributor {
  std::string path;
  std::optional<std::int64_t> worker;
  std::optional<std::int64_t> samples;
  std::optional<std::int64_t> round;
  std::int64_t staleness = 0;
  double weight = 0;  // w_k in Δ̄ = Σ w_k·Δ_k (contributor-mean: g_k, each element then divided by |S_j|)
  std::int64_t payload_bytes = 0;    // bytes that crossed the network: a compressed file's payload_bytes,
                                     // a dense delta's tensor bytes
  std::string codec;                 // the compressed file's codec spec, "dense" for a dense delta
  std::int64_t clipped_tensors = 0;  // tensors whose values --clip scaled down (c_k < 1)
  double norm = -1;                  // ‖x_k‖₂ over the whole update when computed (DP, QFedAvg), else −1
  double dp_factor = 1;              // DP clip factor c_k
  std::optional<double> loss;        // loss_first (QFedAvg)
  bool selected = false;             // picked by Krum, Multi-Krum or Bulyan (without pre-aggregators)
};

struct DpSummary {
  bool enabled = false;
  double clip = 0;                        // C used this round
  double noise_multiplier = 0;            // z given
  double effective_noise_multiplier = 0;  // z (z_Δ with adaptive clipping)
  double sigma = 0;                       // σ = z_eff·C/m
  std::int64_t m = 0;
  std::int64_t clipped = 0;  // deltas with ‖x_k‖ > C
  std::uint64_t seed = 0;
  bool adaptive = false;
  double unclipped_fraction = 0, next_clip = 0;  // adaptive: b̄ and C of the next round
};

struct DroppedDelta {
  std::string path;
  std::optional<std::int64_t> worker;
  std::string reason;
  std::int64_t payload_bytes = 0;
};

struct AggregateSummary {
  std::string model, output;
  std::int64_t round = 0;       // round of the output (input round + 1)
  std::int64_t outer_step = 0;  // the /state step counter after this update
  std::string reduce;           // "mean", "weighted-mean", "contributor-mean", a robust spec, "qfedavg:q=..,lr=.."
  std::vector<double> robust_coefficients;  // linear robust rules: Δ̄ = Σ a_c x_c (then v₀'s for centered-clip)
  std::int64_t robust_iterations = 0;
  std::int64_t robust_passes = 0;  // 1, or 2 with a Gram pass
  DpSummary dp;
  std::string clip;                       // "none" or "median-norm"
  std::string outer;                      // format_spec of the outer optimizer
  std::string staleness_rule;             // "polynomial:a=0.5" with allow_stale, else "none"
  std::vector<Contributor> contributors;  // in reduction order
  std::vector<DroppedDelta> dropped;
  double update_norm = 0;              // ‖Δ̄‖₂ (of the float32 Δ̄)
  double step_norm = 0;                // ‖θ_new − θ‖₂
  std::uint64_t bytes_read = 0;        // every byte of tensor data read (model, state, deltas, checksum)
  std::uint64_t delta_bytes_read = 0;  // the deltas' share
  std::int64_t payload_bytes = 0;      // Σ payload_bytes of every delta given (contributors and dropped)
  std::int64_t compressed_deltas = 0;  // how many of the deltas given were compressed
  std::int64_t passes = 0;             // reduction passes run (1 unless a non-finite delta was found)
  double seconds_open = 0, seconds_reduce = 0, seconds_commit = 0, elapsed_seconds = 0;
};

// Reads the global model at model_path (kind model; its /state holds the outer optimizer state and
// /state's attribute "step" the update count; no /state means zero state, step 0), reduces the dense
// deltas (dense or compressed) and writes the next global model to output_path atomically: kind model,
// the same model_config, round + 1, /tensors the new parameters, /state/<slot>/<name> the new outer
// state with step + 1, and root attributes outer_optimizer (format_spec), reduction, clip, staleness,
// contributors and payload_bytes (of the deltas given). Returns what happened.
//
// Throws Error(BadInput) (exit 4) naming the file when: the model is not a float32 model or its
// /state holds a slot this optimizer does not use or lacks one it needs at step > 0; a delta is
// not kind delta (or compressed from one), has another model_config, other tensor names or shapes, a
// non-float dtype, a base_checksum other than the model's (naming expected and actual; with allow_stale
// a delta from an older round is accepted instead), no `samples` > 0 under weighted-mean, or is a
// second delta from the same worker on the same base; a compressed delta was made with ef21 or
// econtrol feedback without ef21_state, holds a tensor that does not decode, or mixes dct_topk with other codecs in one
// tensor under contributor-mean. Throws Error(Check) (exit 1) when fewer than min_deltas valid deltas
// remain; Error(Numeric) (exit 5) when the new parameters are not finite; Error(Usage) for an output
// that is an input; Error(Io) when reading or writing fails. Nothing is written on error.
AggregateSummary aggregate(const std::string& model_path, const std::vector<std::string>& delta_paths,
                           const std::string& output_path, const AggregateOptions& options);

// The summary as one JSON object (one line).
std::string summary_json(const AggregateSummary& s);

}  // namespace loco::aggregate
