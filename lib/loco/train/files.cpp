// The files of a training step besides models and data: worker state, and the step's checks.
#include "loco/train/files.hpp"

#include <cmath>

#include "loco/core/error.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"
#include "loco/optim/clip.hpp"
#include "loco/optim/optimizer.hpp"

namespace loco::train {

std::unique_ptr<io::TensorSource> open_worker_state(const std::string& path, const model::ModelFile& m,
                                                    std::int64_t worker) {
  auto src = io::open_source(path, /*register_input=*/false);
  io::expect_kind(*src, {io::Kind::State});
  const std::string cfg = io::model_config(*src);
  if (cfg != m.config.canonical_json())
    throw_error(ErrorKind::BadInput, "{}: state made for another model (model_config {}), this model is {}", path, cfg,
                m.config.canonical_json());
  const auto w = src->attributes().get_int("worker");
  if (!w || *w != worker)
    throw_error(ErrorKind::BadInput, "{}: state of worker {}, this is worker {}", path,
                w ? std::to_string(*w) : std::string("?"), worker);
  return src;
}

Tensor read_state_slot(const io::TensorSource& src, const std::string& path, std::string_view slot,
                       const std::string& name, const Shape& shape) {
  const io::TensorInfo* t = src.find(name, optim::state_group(slot));
  if (t == nullptr) throw_error(ErrorKind::BadInput, "{}: state slot {} lacks tensor {}", path, slot, name);
  if (t->shape != shape)
    throw_error(ErrorKind::BadInput, "{}: state {}/{} has shape {}, expected {}", path, slot, name,
                shape_string(t->shape), shape_string(shape));
  return src.read(*t, DType::F32);
}

double check_step(double loss, TensorSet& grads, double clip, const std::string& data, std::int64_t step,
                  std::int64_t round, std::int64_t worker) {
  if (!std::isfinite(loss))
    throw_error(ErrorKind::Numeric, "{}: loss is {} at step {} (round {}, worker {}); nothing written", data, loss,
                step, round, worker);
  if (clip > 0) return optim::clip_grad_norm(grads, clip);
  const double gnorm = optim::global_norm(grads);
  if (!std::isfinite(gnorm))
    throw_error(ErrorKind::Numeric, "{}: gradient is not finite at step {}; nothing written", data, step);
  return gnorm;
}

}  // namespace loco::train
