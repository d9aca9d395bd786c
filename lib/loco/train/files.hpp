// The files of a training step besides models and data shards (model/file.hpp, data/file.hpp):
// the worker's state file, and the checks of one step.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "loco/core/tensor.hpp"
#include "loco/model/file.hpp"

namespace loco::io {
class TensorSource;
}

namespace loco::train {

// Opens a worker state file (loco-worker --state) and checks that it belongs to this model and
// worker: kind state, m's model_config, a `worker` attribute equal to worker. The caller checks
// the optimizer (attribute inner_optimizer). Throws Error(BadInput) naming the file.
std::unique_ptr<io::TensorSource> open_worker_state(const std::string& path, const model::ModelFile& m,
                                                    std::int64_t worker);
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

}  // namespace loco::train
