// DeMo (Peng, Quesnelle, Kingma, "DeMo: Decoupled Momentum Optimization", arXiv 2411.19870) as a
// loco-worker optimizer: one step per call, the worker's decoupled momentum in its state file, and
// the DCT-tile top-k of that momentum as the delta file the aggregator reduces.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "loco/compress/codec.hpp"
#include "loco/compress/feedback.hpp"
#include "loco/train/worker.hpp"

namespace loco::train {

// The options of `--optimizer demo[:lr=LR,beta=B,chunk=C,k=K]`. Defaults are the reference DeMo
// config (OLMo-300M/1B-100BT-demo.yaml: learning_rate 4e-4, compression_decay 0.999,
// compression_topk 32, compression_chunk 64).
struct DemoSpec {
  double lr = 4e-4;         // base learning rate, folded into δ (scheduled by --schedule)
  double beta = 0.999;      // compression_decay: δ ← β·δ + lr·g
  std::int64_t chunk = 64;  // tile side bound: s = largest divisor of the dimension ≤ chunk
  std::int64_t k = 32;      // coefficients kept per tile
};

// The state slot of δ in the worker's state file (/state/demo_delta/<tensor>).
inline constexpr std::string_view kDemoSlot = "demo_delta";

// True for "demo" and "demo:...".
bool is_demo_optimizer(std::string_view spec);
// Parses "demo[:key=value,...]" with keys lr, beta (in (0, 1]), chunk (1..256), k (≥ 1, ≤ chunk²).
// Throws Error(Usage) naming the key or value that is wrong.
DemoSpec parse_demo_spec(std::string_view text);
// "demo:lr=0.0004,beta=0.999,chunk=64,k=32"; parse_demo_spec reads it back to the same spec.
std::string format_demo_spec(const DemoSpec& spec);
// The codec of the momentum: "dct_topk:chunk=C,k=K,tile=2d" (DeMo's 2-D tiles).
std::string demo_codec_spec(const DemoSpec& spec);

// One DeMo step on one tensor, in float32 element by element (the sparseloco feedback of
// compress/feedback.hpp with Δ = lr·g):
//   δ ← β·δ + lr·g;  q = dct_topk(δ);  δ ← δ − IDCT(q)
// where lr·g is rounded to float32 first. δ is read from and written to st's slot "residual"
// (absent: zeros). Returns q, encoded with codec (which must be demo_codec_spec's). Throws
// Error(Numeric) naming `what` on non-finite input, Error(BadInput) when δ's shape differs from g's.
compress::Encoded demo_step(const compress::Codec& codec, const compress::Feedback& memory, const Tensor& grad,
                            double lr, compress::TensorState& st, std::string_view what);

// loco-worker --optimizer demo: requires steps = 1 (DeMo exchanges every step: the next gradient is
// taken at the parameters after the global sign step of this one). Draws the batch at the
// cumulative step of the state (as run_worker), takes g at θ = --model (clipped by --clip), lr_t
// from --schedule, applies demo_step to every tensor with δ from the state (zero at first), and
// writes (1) the compressed delta file: kind compressed, source_kind delta, codec, model_config,
// round, worker, samples, base_checksum, step, inner_steps 1, inner_optimizer, lr (lr_t, the rate the
// aggregator's sign step of this round should use), loss_first/last/mean, raw_bytes, payload_bytes,
// and per tensor q; then (2) the state: kind state, /state/demo_delta/<tensor>, step + 1.
// Throws Error(Usage) for steps ≠ 1 or any streaming, FedProx or SCAFFOLD option; otherwise as
// run_worker (a state of another model, worker or optimizer: Error(BadInput)).
WorkerResult run_demo_worker(const WorkerOptions& opt);

}  // namespace loco::train
