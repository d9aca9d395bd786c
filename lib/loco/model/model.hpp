// The built-in models (logreg, mlp, gpt of models.md): configuration, parameter layout, seeded
// initialization, and loss with gradient over a minibatch.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loco/core/tensor.hpp"

namespace loco::model {

enum class Arch { LogReg, Mlp, Gpt };

// "logreg", "mlp", "gpt".
std::string_view arch_name(Arch arch) noexcept;

// A model's architecture, exactly the keys of models.md. Only the fields of `arch` are
// meaningful; the others keep their defaults and are neither read nor written.
struct ModelConfig {
  Arch arch = Arch::LogReg;
  // logreg
  std::int64_t features = 0;
  std::int64_t classes = 0;
  // mlp: layer widths, input first, classes last (at least two entries)
  std::vector<std::int64_t> sizes;
  // gpt
  std::int64_t vocab = 256;
  std::int64_t ctx = 0;
  std::int64_t d_model = 0;
  std::int64_t layers = 0;
  std::int64_t heads = 0;
  std::int64_t mlp_ratio = 4;
  bool tie_embeddings = false;

  // Parses and validates a JSON object with exactly the keys of the architecture (`arch` plus
  // the required keys; optional keys take their defaults). Throws Error(BadInput) naming the key
  // on malformed JSON, an unknown or missing key, a value of the wrong type or out of range.
  static ModelConfig parse(std::string_view json_text);
  static ModelConfig from_json(const nlohmann::json& j);

  // Throws Error(BadInput) naming the key when a field is out of range (for configs built in
  // code): every size ≥ 1 and ≤ 2^30, vocab ≤ 65536 (tokens are stored as uint8/uint16),
  // heads dividing d_model, at most 2^40 parameters.
  void validate() const;

  // The config as a JSON object with every key of its arch, defaults filled in.
  nlohmann::json to_json() const;
  // Compact JSON with sorted keys and defaults filled in: two configs describe the same model
  // exactly when their canonical strings are equal. This is the `model_config` file attribute.
  std::string canonical_json() const;

  // logreg and mlp classify feature rows; gpt predicts the next token.
  bool is_classifier() const noexcept { return arch != Arch::Gpt; }
  // Features per example (classifiers) and number of classes (classes or vocab).
  std::int64_t input_features() const noexcept;
  std::int64_t num_classes() const noexcept;

  bool operator==(const ModelConfig&) const = default;
};

// What a parameter is, for optimizers that treat kinds differently (weight decay).
enum class ParamRole { Weight, Bias, Embedding, NormWeight, NormBias };

struct ParamSpec {
  std::string name;  // PyTorch-style dotted name of models.md
  Shape shape;
  ParamRole role;
};

// The parameters of a config, in models.md order. Throws as validate().
std::vector<ParamSpec> param_specs(const ModelConfig& config);

// A view of one minibatch; the caller owns the memory, which must stay valid during the call.
struct Batch {
  enum class Kind { Classification, Tokens };
  Kind kind = Kind::Classification;
  // Classification: labels.size() rows of features floats each, row-major, in x.
  std::span<const float> x;
  std::span<const std::int32_t> labels;
  // Tokens: windows of seq_len + 1 consecutive token ids, back to back, in exactly one of
  // tokens8, tokens16 or tokens32 (the others empty). Window w predicts t[w][1..seq_len] from
  // t[w][0..seq_len-1].
  std::span<const std::uint8_t> tokens8;
  std::span<const std::uint16_t> tokens16;
  std::span<const std::int32_t> tokens32;
  std::int64_t seq_len = 0;

  static Batch classification(std::span<const float> x, std::span<const std::int32_t> labels);
  static Batch tokens(std::span<const std::uint8_t> windows, std::int64_t seq_len);
  static Batch tokens(std::span<const std::uint16_t> windows, std::int64_t seq_len);
  static Batch tokens(std::span<const std::int32_t> windows, std::int64_t seq_len);

  // Examples (classification) or windows (tokens); 0 when the token span is not a whole number
  // of windows (the model rejects such a batch).
  std::int64_t rows() const noexcept;
  // Predictions the loss averages over: rows, or rows · seq_len.
  std::int64_t predictions() const noexcept;
};

// Loss statistics over a set of predictions (natural-log cross-entropy).
struct LossStats {
  double loss_sum = 0.0;     // sum of per-prediction cross-entropy, nats
  std::int64_t count = 0;    // predictions
  std::int64_t correct = 0;  // predictions whose first arg-max logit is the target
  double mean_loss() const noexcept { return count > 0 ? loss_sum / static_cast<double>(count) : 0.0; }
  double accuracy() const noexcept {
    return count > 0 ? static_cast<double>(correct) / static_cast<double>(count) : 0.0;
  }
  LossStats& operator+=(const LossStats& o) noexcept {
    loss_sum += o.loss_sum;
    count += o.count;
    correct += o.correct;
    return *this;
  }
};

// A model: its config and parameter layout, and the forward and backward passes. Parameters
// live outside (a TensorSet in param_specs order, float32 for training, or float64 for reference
// computations such as gradient checks); the model holds only a workspace of activations that
// grows to the largest batch seen and is reused, so steps after the first allocate nothing.
// GPT training keeps about (8 + 2·mlp_ratio)·d_model floats of activations per token and block
// (134 MB for d_model 128, 4 blocks, 32 × 128 tokens); evaluation keeps one block's worth.
// Not thread-safe: one Model per thread of control (each call uses all TBB threads inside).
// Results are bit-identical for any TBB thread count.
class Model {
 public:
  // Throws Error(BadInput) when the config is invalid.
  explicit Model(ModelConfig config);
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  const ModelConfig& config() const noexcept;
  const std::vector<ParamSpec>& params() const noexcept;
  std::int64_t num_parameters() const noexcept;

  // Zero tensors of the given dtype (F32 or F64) in param_specs order; also the shape of grads.
  TensorSet make_params(DType dtype = DType::F32) const;
  // Fills params (F32 or F64, laid out as make_params) with the models.md initialization. Each
  // tensor draws from its own Rng stream, stream_id({"init" tag, xxh64(name)}) under `seed`, so
  // a tensor's values depend only on (seed, name, shape, init rule).
  void init(TensorSet& params, std::uint64_t seed) const;
  // Throws Error(BadInput) naming the tensor unless params holds exactly the model's tensors
  // (any order) with the right shapes, all F32 or all F64.
  void check_params(const TensorSet& params) const;

  // Mean cross-entropy over the batch's predictions and, when grads is not null, its gradient:
  // grads (laid out as params, same dtype) is overwritten with d(mean loss)/d(params). Returns
  // the summed loss, count and correct predictions. Throws Error(BadInput) on a batch of the
  // wrong kind or shape, a label outside [0, classes), a token outside [0, vocab), seq_len outside
  // [1, ctx], an empty batch, or params/grads that fail check_params; Error(Usage) when grads is
  // &params. A non-finite loss is returned as is.
  LossStats forward_backward(const TensorSet& params, const Batch& batch, TensorSet* grads);
  // The same loss statistics without gradients.
  LossStats evaluate(const TensorSet& params, const Batch& batch);

  // GPT only: logits (vocab floats) predicting the token after `prefix`; only the last ctx
  // tokens of a longer prefix are used. Throws Error(Usage) for a classifier, Error(BadInput) on
  // an empty prefix, a token ≥ vocab or out.size() ≠ vocab.
  void next_token_logits(const TensorSet& params, std::span<const std::int32_t> prefix, std::span<float> out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Convenience: a heap-allocated model for a config (throws as Model's constructor).
std::unique_ptr<Model> make_model(const ModelConfig& config);

}  // namespace loco::model
