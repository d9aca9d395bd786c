// The private interface of one codec stage (cast, topk, randk, quant, sign, qsgd) and its factory.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loco/compress/codec.hpp"

namespace loco::compress {

using Datasets = std::vector<std::pair<std::string, Tensor>>;
// Looks up a dataset by name; throws Error(BadInput) when it is absent.
using DatasetLookup = std::function<const Tensor&(std::string_view)>;

// One stage over a flat float32 vector of d elements. Sparsifiers write a float32 "values"
// dataset that a following value stage may encode in turn.
class Stage {
 public:
  virtual ~Stage() = default;
  virtual std::string_view name() const = 0;
  // Every parameter with its value, in canonical spelling ("density" → "0.01").
  virtual std::vector<std::pair<std::string, std::string>> canonical() const = 0;
  // Records the parameters as typed attributes, each name prefixed by prefix.
  virtual void record(Attributes& a, const std::string& prefix) const = 0;
  virtual bool sparsifier() const { return false; }
  // True for stages that read and update TensorState.
  virtual bool stateful() const { return false; }
  // True when encode() itself refuses NaN and Inf (calling require_finite when a cheap screen fused
  // into its first pass over x flags a block), so the codec skips its separate scan of the input.
  virtual bool screens_finite() const { return false; }
  // The datasets for a tensor of this shape (value stages of a chain get the 1-D shape {m}).
  virtual std::vector<DatasetLayout> layout(const Shape& shape) const = 0;
  // Encodes x (the tensor of this shape, flattened) into out, exactly as layout(shape) says.
  // key: (seed, stream) pairs for per-worker and shared randomness; state: the tensor's codec
  // state (read and updated by stateful stages; nullptr when the caller keeps none).
  virtual void encode(std::span<const float> x, const Shape& shape, const RandomKey& key, TensorState* state,
                      Datasets& out) const = 0;
  // Decodes into out (numel(shape) elements); validates the datasets' sizes against layout(shape).
  virtual void decode(const DatasetLookup& get, const Shape& shape, const RandomKey& key, std::span<float> out) const = 0;
};

// Returns when every element of x is finite; otherwise throws Error(Numeric) naming the first NaN
// or Inf element ("element 12 is nan; codecs accept finite values only").
void require_finite(std::span<const float> x);

// Builds a stage from its spec; throws Error(Usage) naming the stage and the offending key.
std::unique_ptr<Stage> make_stage(const StageSpec& s);

// Exactly-k selection (exposed for tests): writes to idx, in ascending order, the positions of the
// min(k, n) entries of x with the largest magnitude, ties broken towards the lower index.
void topk_indices(std::span<const float> x, std::int64_t k, std::vector<std::int64_t>& idx);

}  // namespace loco::compress
