// Model files: a model's config and parameters read from (and written to) a loco HDF5 or
// safetensors file, and the check that a data shard fits a model (man 5 loco-format).
#pragma once

#include <cstdint>
#include <string>

#include "loco/core/attributes.hpp"
#include "loco/core/tensor.hpp"
#include "loco/data/file.hpp"
#include "loco/model/model.hpp"

namespace loco::model {

struct ModelFile {
  std::string path;
  ModelConfig config;
  TensorSet params;       // float32, in the model's parameter order
  Attributes attributes;  // root attributes as stored
  std::string checksum;   // checksum of /tensors, as deltas record it in base_checksum
  std::int64_t round = 0;
};

// Reads a model file (loco HDF5 or safetensors with a model_config): kind model, a valid
// model_config, exactly the parameters of that config with their shapes (any float dtype,
// converted to float32), all finite. Throws Error(BadInput) naming the file and tensor.
ModelFile read_model(const std::string& path);

// Writes a model file of kind model with the config, the parameters and extra root attributes.
void write_model(const std::string& path, const ModelConfig& config, const TensorSet& params, const Attributes& extra);

// Throws Error(BadInput) naming both files unless the shard fits the model: a classifier needs
// rows with its feature count and labels below its classes; a GPT needs tokens below its vocab
// and at least ctx + 1 of them (min_tokens overrides that minimum, e.g. 2 for evaluation).
void check_fits(const data::DataFile& data, const ModelFile& model, std::int64_t min_tokens = -1);

}  // namespace loco::model
