// The private interface of one codec stage and its factory, and what every stage's file shares.
// Each codec lives in its own file, stages/<name>.cpp, which defines its Stage subclass and
// make_<name>_stage(); stages/stage.cpp lists them (make_stage, codec_names). A new codec is a new file,
// one line in that list and one in CMakeLists.txt.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loco/compress/codec.hpp"
#include "loco/core/rng.hpp"
#include "loco/core/spec.hpp"

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
  virtual void decode(const DatasetLookup& get, const Shape& shape, const RandomKey& key,
                      std::span<float> out) const = 0;

  // A transform stage (dct_topk) keeps coefficients, not elements. Over a tensor of this shape: the
  // domain's identity (equal identities: the same coefficients), its size, and the sparsifier that
  // reads this stage's datasets as a sparse vector over the coefficients. nullopt for other stages.
  struct Coefficients {
    std::vector<std::int64_t> identity;
    std::int64_t size = 0;
    StageSpec sparse;
  };
  virtual bool keeps_coefficients() const { return false; }
  virtual std::optional<Coefficients> coefficients(const Shape& shape) const { return std::nullopt; }
  // The tensor of this shape whose coefficients (float32, tile-major, the domain's size) are coef.
  // Throws Error(BadInput) for another size or dtype, Error(Internal) for a stage without coefficients.
  virtual Tensor inverse(Tensor coef, const Shape& shape) const;
  // What SparseLoCo's reference implementation, templar, sends for this encoding (out as encode()
  // wrote it), in bytes: a sparsifier's indices only, a value stage's values and their parameters
  // (detail/templar.hpp). nullopt for stages templar has no counterpart of.
  virtual std::optional<std::int64_t> templar_bytes(const Datasets& /*out*/, const Shape& /*shape*/) const {
    return std::nullopt;
  }
};

// The shape an encoding's attributes record (shape and ndim, which agree; ndim 0 and no shape for a
// scalar); nullopt when they are absent, disagree or give an invalid shape.
std::optional<Shape> recorded_shape(const Attributes& a);

// Returns when every element of x is finite; otherwise throws Error(Numeric) naming the first NaN
// or Inf element ("element 12 is nan; codecs accept finite values only").
void require_finite(std::span<const float> x);

// Builds a stage from its spec; throws Error(Usage) naming the stage and the offending key.
std::unique_ptr<Stage> make_stage(const StageSpec& s);

// The stages, one per file stages/<name>.cpp (make_stage dispatches on the name).
std::unique_ptr<Stage> make_cast_stage(const StageSpec& s);
std::unique_ptr<Stage> make_topk_stage(const StageSpec& s);
std::unique_ptr<Stage> make_randk_stage(const StageSpec& s);
std::unique_ptr<Stage> make_quant_stage(const StageSpec& s);
std::unique_ptr<Stage> make_sign_stage(const StageSpec& s);
std::unique_ptr<Stage> make_qsgd_stage(const StageSpec& s);
std::unique_ptr<Stage> make_dct_topk_stage(const StageSpec& s);
std::unique_ptr<Stage> make_sketch_stage(const StageSpec& s);
std::unique_ptr<Stage> make_powersgd_stage(const StageSpec& s);
std::unique_ptr<Stage> make_terngrad_stage(const StageSpec& s);
// quant:range=templar (stages/quant_templar.cpp), made by make_quant_stage.
std::unique_ptr<Stage> make_quant_templar_stage(const StageSpec& s);

// Exactly-k selection (exposed for tests): writes to idx, in ascending order, the positions of the
// min(k, n) entries of x with the largest magnitude, ties broken towards the lower index.
void topk_indices(std::span<const float> x, std::int64_t k, std::vector<std::int64_t>& idx);

// What the stages' files share (defined in stages/stage.cpp).
namespace detail {

// A stage's key=value parameters for its typed getters (loco::Spec; messages read "codec '<stage>': ...").
// The stage reads what it knows and calls done(), which refuses the other keys.
Spec stage_params(const StageSpec& s);

// A parameter value in canonical spelling ("{}" of the double).
std::string real_text(double v);

// Throws Error(BadInput) unless dataset t has n elements of dtype want.
const Tensor& expect(const DatasetLookup& get, std::string_view name, std::int64_t n, DType want,
                     std::string_view codec);

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return b == 0 ? 0 : (a + b - 1) / b; }

// A generator positioned at word i of stream (seed, stream).
Rng rng_at(std::uint64_t seed, std::uint64_t stream, std::int64_t i);

// Number of kept entries for n elements: k given (capped at n) or max(1, floor(density·n)).
inline std::int64_t kept(std::int64_t n, std::int64_t k, double density) {
  if (n == 0) return 0;
  if (k > 0) return std::min(k, n);
  return std::clamp<std::int64_t>(static_cast<std::int64_t>(std::floor(density * static_cast<double>(n))), 1, n);
}

}  // namespace detail

}  // namespace loco::compress
