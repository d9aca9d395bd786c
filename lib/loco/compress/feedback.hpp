// Error feedback for the codecs: per-worker memories (EF14 residual, EF21 estimate, EControl's error and
// estimate, SparseLoCo's decayed accumulator, DGC momentum correction) that choose what a codec
// compresses and keep what it lost; and the receiver's copy of the EF21/EControl estimates.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loco/compress/codec.hpp"
#include "loco/core/tensor.hpp"

namespace loco::io {
class TensorSource;
}

namespace loco::compress {

// One error-feedback memory of a worker, applied tensor by tensor around a codec:
//   p = input(Δ, st);  E = codec.encode(p);  D = decode(E);  update(p, D, st);  send E.
// input() and update() are called exactly once each, in this order, per tensor and round. State
// slots (float32, the shape of Δ) live in st; an absent slot is all zeros. All arithmetic is
// float32, element by element, in the order the formulas below are written (bit-exact).
class Feedback {
 public:
  virtual ~Feedback() = default;
  // "ef14", "ef21", "econtrol", "sparseloco", "dgc".
  virtual std::string_view kind() const = 0;
  // The canonical spec, every parameter spelled out ("sparseloco:beta=0.95").
  virtual std::string spec() const = 0;
  // The state slots this memory keeps, each with the shape of the tensor.
  virtual std::vector<std::string> slots() const = 0;
  // The tensor to compress for the worker's delta Δ; may update slots that do not depend on the
  // decoded output (DGC's u). Throws Error(BadInput) naming `what` when a state slot's shape
  // differs from Δ's.
  virtual Tensor input(const Tensor& delta, TensorState& st, std::string_view what) const = 0;
  // Records what was lost: p is what input() returned, decoded the codec's output for it.
  virtual void update(const Tensor& p, const Tensor& decoded, TensorState& st) const = 0;
  // The codec to use in round `round` (0-based) given the user's codec: the same codec except for
  // DGC's warm-up, which lowers the density of a leading topk or randk stage.
  virtual Codec codec_for_round(const Codec& codec, std::int64_t round) const;
  // True when a file sent holds the increment of an estimate that the receiver must keep too to turn
  // it into the worker's delta (ef21, econtrol: ReceiverEstimate below).
  virtual bool receiver_keeps_estimate() const { return false; }
};

// Parses KIND = name[:key=value[,key=value]]:
//   ef14            Seide/Stich EF with residual e (slot "residual"): p = e + Δ; e ← p − D.
//   ef21            EF21 estimate g (slot "ef21_g"): p = Δ − g (the codec compresses c = C(Δ − g));
//                   g ← g + D. The file sent holds c; every receiver keeps g_i too (g_i ← g_i + c_i)
//                   and uses g_i, not c_i, as worker i's delta. Start: g = 0, so round 0 sends C(Δ).
//   econtrol        EControl (Gao, Islamov, Stich, "EControl: Fast Distributed Optimization with Compression
//                   and Error Control", ICLR 2024, arXiv 2311.05645), slots "econtrol_e" (error e) and
//                   "econtrol_h" (estimate h), eta=η (default 0.1, in [0, 1]). Worker i in round t, with
//                   g_t the worker's delta Δ and D = decode(C(p)) the decoded message Δ_t^i:
//                     p = η·e_t + (g_t − h_t)            what is compressed: Δ_t^i = C(η·e_t + g_t − h_t)
//                     e_{t+1} = (e_t + (g_t − h_t)) − D   the paper's e_{t+1} = e_t + g_t − h_t − Δ_t^i
//                     h_{t+1} = h_t + D                   the paper's h_{t+1} = h_t + Δ_t^i
//                   (float32, evaluated in the order the parentheses show). The paper's server steps along
//                   h_t + mean_i Δ_t^i = mean_i h_{t+1}^i, so, as with ef21, the file sent holds the
//                   increment Δ_t^i and a receiver keeps h_i (h_i ← h_i + Δ_t^i) and uses h_i as worker i's
//                   delta. Start: e = h = 0. The paper starts from h_0 = g_0 (one uncompressed exchange);
//                   h = 0 instead makes round 0 send C(g_0) and keeps every file compressed. η = 0 is EF21.
//                   Default η = 0.1 is ours: the paper's theory takes η of the order of the compressor's
//                   contraction δ and its experiments tune η, as one should here.
//   sparseloco      decayed accumulator e (slot "residual"), beta=B (default 0.95, in (0, 1]):
//                   e ← B·e + Δ; p = e; e ← e − D. beta=1 is ef14.
//   dgc             DGC momentum correction (slots "dgc_u", "dgc_v"), momentum=M (default 0.9, in [0, 1)),
//                   warmup=W rounds (default 0): u ← M·u + Δ; v ← v + u; p = v; then at every element
//                   sent (D ≠ 0) u and v are set to 0 (momentum-factor masking); elsewhere they stay.
//                   Warm-up: in round r < W the density of a leading topk/randk stage with density ρ is
//                   ρ^((r+1)/(W+1)) (DGC's exponential schedule; randk or topk given by k are unchanged).
// Throws Error(Usage) naming the kind or key that is wrong.
std::unique_ptr<Feedback> parse_feedback(std::string_view kind);

// The DGC warm-up density of round r < warmup for the final density rho: rho^((r+1)/(warmup+1)),
// computed in double; rho itself for r >= warmup.
double warmup_density(double rho, std::int64_t round, std::int64_t warmup);

// The receiver's half of ef21 and econtrol (Feedback::receiver_keeps_estimate): a file compressed with
// them holds c_i, the increment of worker i's estimate g_i, and only a receiver keeping g_i can turn it
// into the worker's delta g_i ← g_i + decode(c_i) (float32, element by element, the worker's own
// arithmetic, so both sides hold the same bits). The estimates live in a folder DIR as
// DIR/worker-W-round-RRRRRR.h5 (kind state, /tensors float32: g_i after applying worker W's increment of
// round R, root attributes model_config, worker, round, estimate=ef21, feedback). The base of round R is
// the worker's newest file of an earlier round (none: g_i = 0); a file for round R itself is the result of
// an earlier run of this round and is rewritten, identically.
class ReceiverEstimate {
 public:
  // Opens the base estimate of worker `worker`'s increment of round `round` for the tensors given (name and
  // shape, in the order commit() writes them), creating DIR when absent. `what` names the compressed file.
  // Throws Error(BadInput) naming `what` when worker or round is missing, naming the estimate file when one
  // of its tensors is absent or not float32 of the shape; Error(Io) when DIR is not a folder.
  ReceiverEstimate(const std::string& dir, const std::string& what, std::optional<std::int64_t> worker,
                   std::optional<std::int64_t> round, std::string feedback,
                   std::vector<std::pair<std::string, Shape>> tensors);
  ReceiverEstimate(ReceiverEstimate&&) noexcept;
  ReceiverEstimate& operator=(ReceiverEstimate&&) noexcept;
  ~ReceiverEstimate();

  // Turns the decoded increment of tensor `name` into the worker's delta: x ← g_i + x, element by element
  // in float32 (nothing to add without a base). Returns the bytes of g_i read.
  std::uint64_t add_base(std::string_view name, Tensor& x) const;
  // Writes the new estimate atomically, tensor t being next(t) (float32 of its shape; what add_base made),
  // with model_config (when given); then removes the worker's files older than the base, so a rerun
  // of this round still finds its base.
  void commit(const std::function<Tensor(std::size_t)>& next, const std::optional<std::string>& model_config);

 private:
  std::string dir_, out_, feedback_;
  std::int64_t worker_ = 0, round_ = 0;
  std::vector<std::pair<std::string, Shape>> tensors_;
  std::unique_ptr<io::TensorSource> base_;
};

}  // namespace loco::compress
