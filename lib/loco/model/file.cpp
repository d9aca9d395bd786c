// Model files: reading and writing a model's config and parameters, and the fit of a data shard.
#include "loco/model/file.hpp"

#include <algorithm>
#include <cmath>

#include "loco/core/error.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::model {

ModelFile read_model(const std::string& path) {
  auto src = io::open_source(path);
  io::expect_kind(*src, {io::Kind::Model});
  ModelFile m;
  m.path = src->path();
  m.attributes = src->attributes();
  const auto cfg = m.attributes.get_string("model_config");
  if (!cfg) throw_error(ErrorKind::BadInput, "{}: no model_config attribute; make models with loco-init", m.path);
  try {
    m.config = ModelConfig::parse(*cfg);
  } catch (const Error& e) {
    throw_error(ErrorKind::BadInput, "{}: model_config: {}", m.path, e.what());
  }
  m.round = m.attributes.get_int("round").value_or(0);
  const auto specs = param_specs(m.config);
  const auto stored = src->group("tensors");
  for (const auto& spec : specs) {
    const io::TensorInfo* t = src->find(spec.name);
    if (t == nullptr) throw_error(ErrorKind::BadInput, "{}: tensor {} of the model is missing", m.path, spec.name);
    if (t->shape != spec.shape)
      throw_error(ErrorKind::BadInput, "{}: tensor {} has shape {}, the model_config needs {}", m.path, spec.name,
                  shape_string(t->shape), shape_string(spec.shape));
    if (!is_floating(t->dtype))
      throw_error(ErrorKind::BadInput, "{}: tensor {} is {}, expected a float type", m.path, spec.name,
                  dtype_name(t->dtype));
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

void write_model(const std::string& path, const ModelConfig& config, const TensorSet& params, const Attributes& extra) {
  Attributes root;
  root.set("kind", std::string("model"));
  root.set("model_config", config.canonical_json());
  for (const auto& e : extra) root.set(e.name, e.value);
  io::write_tensor_set(path, root, params);
}

void check_fits(const data::DataFile& data, const ModelFile& m, std::int64_t min_tokens) {
  const auto& c = m.config;
  if (c.is_classifier() == data.tokens)
    throw_error(ErrorKind::BadInput, "{} holds {} but {} is a {} model", data.path,
                data.tokens ? "tokens" : "labelled rows", m.path, arch_name(c.arch));
  if (data.tokens) {
    const auto& t = data.stream.tokens;
    const std::int64_t need = min_tokens >= 0 ? min_tokens : c.ctx + 1;
    if (static_cast<std::int64_t>(t.size()) < need)
      throw_error(ErrorKind::BadInput, "{}: {} tokens, the model ({}) needs at least {}", data.path, t.size(), m.path,
                  need);
    const auto mx = t.empty() ? 0 : *std::max_element(t.begin(), t.end());
    if (mx >= c.vocab)
      throw_error(ErrorKind::BadInput, "{}: token id {} is outside the vocabulary of {} ({})", data.path, mx, m.path,
                  c.vocab);
    return;
  }
  if (data.rows.d != c.input_features())
    throw_error(ErrorKind::BadInput, "{}: {} features per example, the model ({}) takes {}", data.path, data.rows.d,
                m.path, c.input_features());
  if (data.rows.classes > c.num_classes())
    throw_error(ErrorKind::BadInput, "{}: {} classes, the model ({}) has {}", data.path, data.rows.classes, m.path,
                c.num_classes());
}

}  // namespace loco::model
