// Error feedback for the codecs: per-worker memories (EF14 residual, EF21 estimate, EControl's error and
// estimate, SparseLoCo's decayed accumulator, DGC momentum correction) that choose what a codec
// compresses and keep what it lost.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "loco/compress/codec.hpp"
#include "loco/core/tensor.hpp"

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

}  // namespace loco::compress
