// Reading and writing the files a training step works on: models (config + parameters) and
// data shards, with the checks that a model and a shard fit each other.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "loco/core/attributes.hpp"
#include "loco/core/tensor.hpp"
#include "loco/data/dataset.hpp"
#include "loco/model/model.hpp"

namespace loco::io {
class TensorSource;
}

namespace loco::train {

struct ModelFile {
  std::string path;
  model::ModelConfig config;
  TensorSet params;       // float32, in the model's parameter order
  Attributes attributes;  // root attributes as stored
  std::string checksum;   // checksum of /tensors, as deltas record it in base_checksum
  std::int64_t round = 0;
};

// Opens a worker state file (loco-worker --state) and checks that it belongs to this model and
// worker: kind state, m's model_config, a `worker` attribute equal to worker. The caller checks
// the optimizer (attribute inner_optimizer). Throws Error(BadInput) naming the file.
std::unique_ptr<io::TensorSource> open_worker_state(const std::string& path, const ModelFile& m, std::int64_t worker);
// Reads /state/<slot>/<name> of an opened state file as float32, shaped like the parameter.
// Throws Error(BadInput) naming the file, slot and tensor when it is absent or of another shape.
Tensor read_state_slot(const io::TensorSource& src, const std::string& path, std::string_view slot,
                       const std::string& name, const Shape& shape);

// The checks of one training step, before anything is applied: the batch's mean loss must be
// finite; the gradient is then clipped to global norm `clip` (0: not clipped, and its norm must be
// finite). Returns the gradient's global norm before clipping. Throws Error(Numeric) naming the
// data file, step, round and worker ("nothing written": callers write only after every step).
double check_step(double loss, TensorSet& grads, double clip, const std::string& data, std::int64_t step,
                  std::int64_t round, std::int64_t worker);

// Reads a model file (loco HDF5 or safetensors with a model_config): kind model, a valid
// model_config, exactly the parameters of that config with their shapes (any float dtype,
// converted to float32), all finite. Throws Error(BadInput) naming the file and tensor.
ModelFile read_model(const std::string& path);

// Writes a model file of kind model with the config, the parameters and extra root attributes.
void write_model(const std::string& path, const model::ModelConfig& config, const TensorSet& params,
                 const Attributes& extra);

// A data shard (format.md, kind data): either labelled feature rows or a token stream.
struct DataFile {
  std::string path;
  bool tokens = false;
  data::ClassificationData rows;  // when !tokens: x as float32 (uint8 storage scaled by `scale`)
  data::TokenData stream;         // when tokens
  Attributes attributes;
  std::int64_t examples() const { return tokens ? static_cast<std::int64_t>(stream.tokens.size()) : rows.n; }
};

// Reads /data/x + /data/y or /data/tokens. Throws Error(BadInput) naming the file for a missing
// or malformed dataset, labels outside [0, classes), non-finite features.
DataFile read_data(const std::string& path);

// Throws Error(BadInput) naming both files unless the shard fits the model: a classifier needs
// rows with its feature count and labels below its classes; a GPT needs tokens below its vocab
// and at least ctx + 1 of them (min_tokens overrides that minimum, e.g. 2 for evaluation).
void check_fits(const DataFile& data, const ModelFile& model, std::int64_t min_tokens = -1);

}  // namespace loco::train
