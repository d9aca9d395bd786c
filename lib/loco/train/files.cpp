// Model and data files for training and evaluation.
#include "loco/train/files.hpp"

#include <algorithm>
#include <cmath>

#include "loco/core/error.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"
#include "loco/optim/clip.hpp"
#include "loco/optim/optimizer.hpp"

namespace loco::train {

ModelFile read_model(const std::string& path) {
  auto src = io::open_source(path);
  io::expect_kind(*src, {io::Kind::Model});
  ModelFile m;
  m.path = src->path();
  m.attributes = src->attributes();
  const auto cfg = m.attributes.get_string("model_config");
  if (!cfg) throw_error(ErrorKind::BadInput, "{}: no model_config attribute; make models with loco-init", m.path);
  try {
    m.config = model::ModelConfig::parse(*cfg);
  } catch (const Error& e) {
    throw_error(ErrorKind::BadInput, "{}: model_config: {}", m.path, e.what());
  }
  m.round = m.attributes.get_int("round").value_or(0);
  const auto specs = model::param_specs(m.config);
  const auto stored = src->group("tensors");
  for (const auto& spec : specs) {
    const io::TensorInfo* t = src->find(spec.name);
    if (t == nullptr) throw_error(ErrorKind::BadInput, "{}: tensor {} of the model is missing", m.path, spec.name);
    if (t->shape != spec.shape)
      throw_error(ErrorKind::BadInput, "{}: tensor {} has shape {}, the model_config needs {}", m.path, spec.name,
                  shape_string(t->shape), shape_string(spec.shape));
    if (!is_floating(t->dtype))
      throw_error(ErrorKind::BadInput, "{}: tensor {} is {}, expected a float type", m.path, spec.name, dtype_name(t->dtype));
    Tensor v = src->read(*t, DType::F32);
    for (float x : v.f32())
      if (!std::isfinite(x)) throw_error(ErrorKind::Numeric, "{}: tensor {} holds NaN or Inf", m.path, spec.name);
    m.params.add(spec.name, std::move(v));
  }
  if (stored.size() != specs.size())
    for (const io::TensorInfo* t : stored)
      if (!m.params.contains(t->name))
        throw_error(ErrorKind::BadInput, "{}: tensor {} is not a parameter of the model_config", m.path, t->name);
  m.checksum = io::tensors_checksum(*src);
  return m;
}

void write_model(const std::string& path, const model::ModelConfig& config, const TensorSet& params,
                 const Attributes& extra) {
  Attributes root;
  root.set("kind", std::string("model"));
  root.set("model_config", config.canonical_json());
  for (const auto& e : extra) root.set(e.name, e.value);
  io::write_tensor_set(path, root, params);
}

DataFile read_data(const std::string& path) {
  auto src = io::open_source(path);
  io::expect_kind(*src, {io::Kind::Data});
  DataFile d;
  d.path = src->path();
  d.attributes = src->attributes();
  if (const io::TensorInfo* t = src->find("tokens", "data")) {
    if (t->shape.size() != 1) throw_error(ErrorKind::BadInput, "{}: /data/tokens must be 1-D, is {}", d.path, shape_string(t->shape));
    d.tokens = true;
    d.stream.source = d.path;
    d.stream.vocab = static_cast<std::int32_t>(d.attributes.get_int("vocab").value_or(256));
    if (t->dtype == DType::U8) {
      Tensor v = src->read(*t);
      d.stream.tokens.assign(v.as<std::uint8_t>().begin(), v.as<std::uint8_t>().end());
    } else if (t->dtype == DType::U16) {
      Tensor v = src->read(*t);
      for (std::uint16_t x : v.as<std::uint16_t>()) {
        if (x > 255) throw_error(ErrorKind::BadInput, "{}: token {} does not fit byte-level models (vocab 256)", d.path, x);
        d.stream.tokens.push_back(static_cast<std::uint8_t>(x));
      }
    } else {
      throw_error(ErrorKind::BadInput, "{}: /data/tokens is {}, expected uint8 or uint16", d.path, dtype_name(t->dtype));
    }
    return d;
  }
  const io::TensorInfo* tx = src->find("x", "data");
  const io::TensorInfo* ty = src->find("y", "data");
  if (tx == nullptr || ty == nullptr)
    throw_error(ErrorKind::BadInput, "{}: a data file needs /data/tokens or both /data/x and /data/y", d.path);
  if (tx->shape.size() != 2 || ty->shape.size() != 1 || tx->shape[0] != ty->shape[0])
    throw_error(ErrorKind::BadInput, "{}: /data/x {} and /data/y {} do not describe N examples of D features", d.path,
                shape_string(tx->shape), shape_string(ty->shape));
  auto& r = d.rows;
  r.n = tx->shape[0];
  r.d = tx->shape[1];
  r.source = d.path;
  const auto classes = d.attributes.get_int("classes");
  if (!classes || *classes < 1) throw_error(ErrorKind::BadInput, "{}: no positive 'classes' attribute", d.path);
  r.classes = static_cast<std::int32_t>(*classes);
  Tensor x = src->read(*tx, DType::F32);
  if (tx->dtype == DType::U8) {
    const double scale = tx->attrs.get_double("scale").value_or(1.0);
    for (float& v : x.f32()) v = static_cast<float>(v * scale);
  }
  r.x.assign(x.f32().begin(), x.f32().end());
  Tensor y = src->read(*ty, DType::I32);
  r.y.assign(y.as<std::int32_t>().begin(), y.as<std::int32_t>().end());
  data::validate(r);
  return d;
}

void check_fits(const DataFile& data, const ModelFile& m, std::int64_t min_tokens) {
  const auto& c = m.config;
  if (c.is_classifier() == data.tokens)
    throw_error(ErrorKind::BadInput, "{} holds {} but {} is a {} model", data.path, data.tokens ? "tokens" : "labelled rows",
                m.path, model::arch_name(c.arch));
  if (data.tokens) {
    const auto& t = data.stream.tokens;
    const std::int64_t need = min_tokens >= 0 ? min_tokens : c.ctx + 1;
    if (static_cast<std::int64_t>(t.size()) < need)
      throw_error(ErrorKind::BadInput, "{}: {} tokens, the model ({}) needs at least {}", data.path, t.size(), m.path, need);
    const auto mx = t.empty() ? 0 : *std::max_element(t.begin(), t.end());
    if (mx >= c.vocab)
      throw_error(ErrorKind::BadInput, "{}: token id {} is outside the vocabulary of {} ({})", data.path, mx, m.path, c.vocab);
    return;
  }
  if (data.rows.d != c.input_features())
    throw_error(ErrorKind::BadInput, "{}: {} features per example, the model ({}) takes {}", data.path, data.rows.d, m.path,
                c.input_features());
  if (data.rows.classes > c.num_classes())
    throw_error(ErrorKind::BadInput, "{}: {} classes, the model ({}) has {}", data.path, data.rows.classes, m.path,
                c.num_classes());
}

std::unique_ptr<io::TensorSource> open_worker_state(const std::string& path, const ModelFile& m, std::int64_t worker) {
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
    throw_error(ErrorKind::Numeric, "{}: loss is {} at step {} (round {}, worker {}); nothing written", data, loss, step,
                round, worker);
  if (clip > 0) return optim::clip_grad_norm(grads, clip);
  const double gnorm = optim::global_norm(grads);
  if (!std::isfinite(gnorm))
    throw_error(ErrorKind::Numeric, "{}: gradient is not finite at step {}; nothing written", data, step);
  return gnorm;
}

}  // namespace loco::train
