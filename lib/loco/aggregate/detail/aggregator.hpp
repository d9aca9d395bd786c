// The aggregator behind aggregate() (aggregate.hpp): one round from files. Private to lib/loco/aggregate;
// its members are defined by what they do: opening and planning (open.cpp), the round and what it
// records (round.cpp), the reduction passes and the outer step (passes.cpp).
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "loco/aggregate/aggregate.hpp"
#include "loco/compress/codec.hpp"
#include "loco/compress/encoded_file.hpp"
#include "loco/compress/feedback.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::aggregate::detail {

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr std::uint32_t kExpMask = 0x7f800000u;
constexpr std::string_view kCenterGroup = "state/robust_center";  // centered clipping's centre
constexpr std::string_view kClipAttribute = "dp_clip";            // /state: adaptive clipping's C

struct Delta {
  std::string path;
  bool compressed = false;
  std::int64_t payload_bytes = 0;
  std::string codec = "dense";
  // Per model tensor, compressed deltas only: what it selects (contributor-mean; All for ef21/econtrol,
  // whose delta is the dense estimate) and what the reader records of it (its coefficient domain).
  std::vector<compress::Selection> selections;
  std::vector<const compress::EncodedTensorInfo*> encoded;
  std::int64_t clipped_tensors = 0;
  std::unique_ptr<io::TensorSource> src;
  std::unique_ptr<compress::EncodedReader> reader;  // compressed deltas (reads src)
  std::optional<std::int64_t> worker, samples, round;
  std::string base;
  std::int64_t staleness = 0;
  double gain = 1;                                    // staleness weight g_k
  std::vector<const io::TensorInfo*> tensors;         // the delta's tensor for each model tensor
  std::vector<std::optional<std::uint64_t>> offsets;  // io::contiguous_offset of each, when raw-readable
  std::string bad_tensor;                             // set when a non-finite value was found
  std::optional<double> loss;                         // loss_first
  double sq_norm = -1;     // ‖Δ_k‖² over the whole update (validation_pass), −1 before
  double dp_factor = 1;    // c_k of differential privacy
  double qffl_weight = 0;  // QFedAvg's w_k
  // ef21/econtrol feedback (with ef21_state): the receiver's estimate g_i of the worker.
  bool ef21 = false;
  std::unique_ptr<compress::ReceiverEstimate> estimate;
};

// Largest biased exponent field of the float32 values: kExpMask exactly when one is NaN or Inf.
// An integer max reduction, so the compiler vectorizes it (a float one it may not reorder).
inline std::uint32_t max_exponent(const float* x, std::size_t n) {
  std::uint32_t m = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t b;
    std::memcpy(&b, x + i, 4);
    m = std::max(m, b & kExpMask);
  }
  return m;
}

// Deltas summed per pass over a piece's accumulator, and elements per piece of a block: kGroup
// pieces of float32 input plus the float64 accumulator (384 KiB) stay in a core's L2 cache
// between the read that fills them and the sum that uses them.
constexpr std::size_t kGroup = 4;
constexpr std::size_t kPieceElements = std::size_t{1} << 14;

// One delta's tensor as the reduction sees it: values x in the reduction domain (the tensor, or the
// chunk-padded DCT coefficients) and, for selecting codecs under contributor-mean, the selection mask
// (1 where selected, 0 elsewhere; empty: every element).
struct Loaded {
  Tensor x, mask;
};

inline bool all_finite(std::span<const float> x) { return max_exponent(x.data(), x.size()) != kExpMask; }

inline double squared_norm(std::span<const float> x) {
  double s = 0;
  for (float v : x) s += static_cast<double>(v) * static_cast<double>(v);
  return s;
}

class Aggregator {
 public:
  Aggregator(const std::string& model_path, const std::vector<std::string>& delta_paths, const std::string& output,
             const AggregateOptions& opt);
  AggregateSummary run(Clock::time_point t0);

 private:
  // Where a tensor of one file is read from during the pass: raw reads of its stored bytes
  // (pread, from any thread) when it is contiguous, else read_rows under hdf5_mutex_.
  struct Feed {
    const io::TensorSource* src = nullptr;
    const io::TensorInfo* t = nullptr;
    std::optional<std::uint64_t> offset;
  };

  // Per-thread buffers of the pass, sized for the largest piece and block; allocated once per pass.
  struct Scratch {
    std::array<std::vector<float>, kGroup> x;
    std::vector<std::byte> raw;  // stored bytes of a non-float32 delta before conversion
    std::vector<double> acc;
    std::vector<float> dbar, old;
    std::vector<float> theta;               // the thread's output block: new θ
    std::vector<std::vector<float>> slots;  // and new state
  };

  // open.cpp: opening the model and the deltas, checking them and planning the round
  void check_rule_options(const AggregateOptions& o) const;
  void open_model(const std::string& path);
  void open_center(const std::string& path);
  void open_delta(const std::string& path);
  void open_compressed_tensors(Delta& d);
  void open_estimate(Delta& d);
  void plan_domains();
  void order_deltas();

  // round.cpp: the round (passes until no delta is non-finite), weights, output, reading deltas
  bool drop_bad(std::vector<Delta*>& active);
  void prepare_round(const std::vector<Delta*>& active);
  void write_estimates(const std::vector<Delta*>& active);
  void check_quorum(const std::vector<Delta*>& active) const;
  void make_sink(const std::vector<Delta*>& active);
  std::vector<double> weights(const std::vector<Delta*>& active);
  Shape domain_shape(std::size_t i) const;
  void load(Delta& d, std::size_t i, bool want_mask, Loaded& l);
  bool non_finite(Delta& d, const io::TensorInfo& p);
  void validation_pass(const std::vector<Delta*>& active);

  // passes.cpp: the reduction passes (streaming, tensor-wise, robust) and the outer step
  void fetch(const Feed& f, std::size_t e0, std::size_t n, float* dst, Scratch& s) const;
  bool reduce_pass(const std::vector<Delta*>& active);
  std::size_t piece_elements(std::size_t i, const std::vector<Delta*>& active) const;
  void write_block(std::size_t i, std::int64_t r0, std::int64_t nrows, const float* theta,
                   const std::vector<std::vector<float>>& slot_buf, std::size_t n);
  bool tensor_pass(const std::vector<Delta*>& active);
  bool robust_pass(const std::vector<Delta*>& active);
  void outer_step(std::size_t i, std::span<const float> dbar, Scratch& sc, std::int64_t t, double lr, double& update_sq,
                  double& step_sq);
  void outer_block(std::size_t i, std::int64_t r0, std::int64_t nrows, const float* dbar_rows, Scratch& sc,
                   std::int64_t t, double lr, double& update_sq, double& step_sq);
  bool finish_pass(double update_sq, double step_sq);

  AggregateOptions opt_;
  std::string output_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::vector<std::string> slots_;
  std::unique_ptr<io::TensorSource> model_;
  std::vector<const io::TensorInfo*> params_;
  std::vector<std::vector<const io::TensorInfo*>> state_;                 // per slot, per param (empty: zero state)
  std::vector<std::optional<std::uint64_t>> param_offsets_;               // io::contiguous_offset per param
  std::vector<std::vector<std::optional<std::uint64_t>>> state_offsets_;  // per slot, per param
  mutable std::mutex hdf5_mutex_;  // HDF5 calls of the pass (read_rows, the sink), one at a time
  std::int64_t round_ = 0, step_ = 0;
  std::string checksum_;
  std::vector<Delta> deltas_;
  std::size_t max_delta_dtype_ = 4;
  bool tensorwise_ = false;  // the tensor-wise pass (compressed deltas or --clip)
  // Per tensor: the coefficient domain of a reduction over coefficients (plan_domains), else nullopt.
  std::vector<std::optional<compress::CoefficientDomain>> coef_domain_;
  bool any_converted_ = false;
  Staleness staleness_;
  bool needs_norms_ = false;                   // DP or QFedAvg: whole-update norms before the reduction
  bool center_out_ = false;                    // centered clipping: the output keeps Δ̄ as the next centre
  std::vector<const io::TensorInfo*> center_;  // per param: the model's previous centre, or null
  std::vector<std::optional<std::uint64_t>> center_offsets_;
  std::optional<double> state_clip_;  // the model's /state@dp_clip
  double sigma_ = 0;                  // DP noise σ on Δ̄ (0: none)
  std::vector<Delta*> active_final_;  // the deltas of the pass that succeeded
  std::unique_ptr<io::TensorSink> sink_;
  AggregateSummary summary_;
};

}  // namespace loco::aggregate::detail
