// Fragment assignment and fragment files of Streaming DiLoCo.
#include "loco/train/fragment.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>

#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"
#include "loco/optim/optimizer.hpp"

namespace loco::train {
namespace {

// The unit index of a parameter name with the given prefix ("blocks." → "blocks.3.ln1.weight" is
// 3), or nullopt when the name has another prefix.
std::optional<std::int64_t> unit_of(const std::string& name, std::string_view prefix) {
  if (name.rfind(prefix, 0) != 0) return std::nullopt;
  const std::size_t dot = std::min(name.find('.', prefix.size()), name.size());
  std::int64_t unit = 0;
  const char* first = name.data() + prefix.size();
  const auto [end, ec] = std::from_chars(first, name.data() + dot, unit);
  if (ec != std::errc() || end != name.data() + dot || end == first) return std::nullopt;
  return unit;
}

// An opened model file with its parsed config; the parameter specs by name.
struct Opened {
  std::unique_ptr<io::TensorSource> src;
  model::ModelConfig config;
  std::string config_json;
  std::vector<model::ParamSpec> specs;
  std::map<std::string, std::size_t, std::less<>> index;  // name → position in specs
};

Opened open_model_file(const std::string& path) {
  Opened o;
  o.src = io::open_source(path);
  io::expect_kind(*o.src, {io::Kind::Model});
  o.config_json = io::model_config(*o.src);
  try {
    o.config = model::ModelConfig::parse(o.config_json);
  } catch (const Error& e) {
    throw_error(ErrorKind::BadInput, "{}: model_config: {}", o.src->path(), e.what());
  }
  o.specs = model::param_specs(o.config);
  for (std::size_t i = 0; i < o.specs.size(); ++i) o.index.emplace(o.specs[i].name, i);
  return o;
}

// Checks a stored tensor against the config: a parameter, its shape, a float type. Returns its
// position in param_specs.
std::size_t check_param(const Opened& o, const io::TensorInfo& t) {
  const auto it = o.index.find(t.name);
  if (it == o.index.end())
    throw_error(ErrorKind::BadInput, "{}: tensor {} is not a parameter of the model_config", o.src->path(), t.name);
  const auto& spec = o.specs[it->second];
  if (t.shape != spec.shape)
    throw_error(ErrorKind::BadInput, "{}: tensor {} has shape {}, the model_config needs {}", o.src->path(), t.name,
                shape_string(t.shape), shape_string(spec.shape));
  if (!is_floating(t.dtype))
    throw_error(ErrorKind::BadInput, "{}: tensor {} is {}, expected a float type", o.src->path(), t.name,
                dtype_name(t.dtype));
  return it->second;
}

Tensor read_finite(const io::TensorSource& src, const io::TensorInfo& t) {
  Tensor v = src.read(t, DType::F32);
  for (float x : v.f32())
    if (!std::isfinite(x)) throw_error(ErrorKind::Numeric, "{}: tensor {} holds NaN or Inf", src.path(), t.name);
  return v;
}

// The slots of the outer state stored in a file (/state/<slot>/...), sorted.
std::set<std::string> state_slots(const io::TensorSource& src) {
  std::set<std::string> slots;
  for (const auto& t : src.tensors())
    if (t.group.rfind("state/", 0) == 0) slots.insert(t.group.substr(6));
  return slots;
}

}  // namespace

std::int64_t fragment_units(const model::ModelConfig& c) {
  switch (c.arch) {
    case model::Arch::LogReg: return 1;
    case model::Arch::Mlp: return static_cast<std::int64_t>(c.sizes.size()) - 1;
    case model::Arch::Gpt: return c.layers;
  }
  return 1;
}

std::vector<int> fragment_assignment(const model::ModelConfig& config, std::int64_t fragments) {
  const std::int64_t units = fragment_units(config);
  if (fragments < 1) throw_error(ErrorKind::Usage, "the number of fragments must be at least 1, not {}", fragments);
  if (fragments > units)
    throw_error(ErrorKind::Usage, "{} fragments of a {} model with {} {}: a fragment would be empty (at most {})",
                fragments, model::arch_name(config.arch), units, config.arch == model::Arch::Gpt ? "blocks" : "layers",
                units);
  const auto specs = model::param_specs(config);
  std::vector<int> out;
  out.reserve(specs.size());
  for (const auto& s : specs) {
    std::int64_t unit = 0;
    if (config.arch == model::Arch::Gpt) {
      if (auto b = unit_of(s.name, "blocks.")) unit = *b;
      else if (s.name.rfind("ln_f.", 0) == 0 || s.name.rfind("head.", 0) == 0) unit = units - 1;
      else unit = 0;  // wte, wpe: the input end
    } else if (config.arch == model::Arch::Mlp) {
      unit = unit_of(s.name, "layers.").value_or(0);
    }
    out.push_back(static_cast<int>(unit % fragments));
  }
  return out;
}

FragmentFile read_fragment(const std::string& path, const model::ModelConfig& config) {
  Opened o = open_model_file(path);
  FragmentFile f;
  f.path = o.src->path();
  if (o.config_json != config.canonical_json())
    throw_error(ErrorKind::BadInput, "{}: fragment of another model (model_config {}), this model is {}", f.path,
                o.config_json, config.canonical_json());
  for (const io::TensorInfo* t : o.src->group("tensors")) {
    check_param(o, *t);
    f.params.add(t->name, read_finite(*o.src, *t));
  }
  if (f.params.empty()) throw_error(ErrorKind::BadInput, "{}: a fragment file without tensors", f.path);
  f.attributes = o.src->attributes();
  f.round = f.attributes.get_int("round").value_or(0);
  f.checksum = io::tensors_checksum(*o.src);
  return f;
}

namespace {
void mix_values(std::span<float> local, std::span<const float> global, double alpha) {
  if (alpha == 0.0) {
    std::copy(global.begin(), global.end(), local.begin());
  } else if (alpha != 1.0) {
    for (std::size_t k = 0; k < local.size(); ++k)
      local[k] =
          static_cast<float>((1.0 - alpha) * static_cast<double>(global[k]) + alpha * static_cast<double>(local[k]));
  }
}
}  // namespace

void mix_fragment(TensorSet& params, const FragmentFile& global, double alpha) {
  for (const auto& e : global.params) mix_values(params.at(e.name).f32(), e.tensor.f32(), alpha);
}

void mix_fragment_file(const std::string& model_path, const std::string& fragment_path, double alpha,
                       const std::string& output) {
  if (!(alpha >= 0.0 && alpha <= 1.0)) throw_error(ErrorKind::Usage, "--mixing must be in [0, 1], not {}", alpha);
  Opened o = open_model_file(model_path);
  const FragmentFile g = read_fragment(fragment_path, o.config);
  std::vector<const io::TensorInfo*> stored(o.specs.size(), nullptr);
  for (const io::TensorInfo* t : o.src->group("tensors")) stored[check_param(o, *t)] = t;
  std::vector<io::TensorInfo> plan;
  for (std::size_t i = 0; i < stored.size(); ++i) {
    if (stored[i] == nullptr)
      throw_error(ErrorKind::BadInput, "{}: tensor {} of the model is missing", o.src->path(), o.specs[i].name);
    plan.push_back({"tensors", o.specs[i].name, o.specs[i].shape, DType::F32, {}});
  }
  Attributes root = o.src->attributes();
  root.set("kind", std::string("model"));
  root.set("model_config", o.config_json);
  auto sink = io::create_sink(output, io::Format::Loco, root, plan);
  for (std::size_t k = 0; k < plan.size(); ++k) {
    Tensor v = read_finite(*o.src, *stored[k]);
    if (g.params.contains(plan[k].name)) mix_values(v.f32(), g.params.at(plan[k].name).f32(), alpha);
    sink->write(k, v);
  }
  sink->commit();
}

void split_fragment(const std::string& model_path, std::int64_t fragments, std::int64_t index,
                    const std::string& output) {
  Opened o = open_model_file(model_path);
  const auto frag = fragment_assignment(o.config, fragments);
  if (index < 0 || index >= fragments)
    throw_error(ErrorKind::Usage, "fragment {} does not exist: fragments are numbered 0 to {}", index, fragments - 1);
  const std::string& path = o.src->path();
  std::vector<const io::TensorInfo*> stored(o.specs.size(), nullptr);
  for (const io::TensorInfo* t : o.src->group("tensors")) stored[check_param(o, *t)] = t;
  for (std::size_t i = 0; i < stored.size(); ++i)
    if (stored[i] == nullptr)
      throw_error(ErrorKind::BadInput, "{}: tensor {} of the model is missing", path, o.specs[i].name);

  // The outer state of the fragment's tensors, when the model carries one.
  const auto slots = state_slots(*o.src);
  std::vector<io::TensorInfo> plan;
  std::vector<const io::TensorInfo*> from;
  for (std::size_t i = 0; i < o.specs.size(); ++i)
    if (frag[i] == index) {
      plan.push_back({"tensors", o.specs[i].name, o.specs[i].shape, DType::F32, {}});
      from.push_back(stored[i]);
    }
  for (const auto& slot : slots)
    for (std::size_t i = 0; i < o.specs.size(); ++i)
      if (frag[i] == index) {
        const std::string group = optim::state_group(slot);
        const io::TensorInfo* s = o.src->find(o.specs[i].name, group);
        if (s == nullptr || s->shape != o.specs[i].shape)
          throw_error(ErrorKind::BadInput, "{}: outer state slot '{}' lacks tensor {} of shape {}", path, slot,
                      o.specs[i].name, shape_string(o.specs[i].shape));
        plan.push_back({group, o.specs[i].name, o.specs[i].shape, DType::F32, {}});
        from.push_back(s);
      }

  Attributes root;
  root.set("kind", std::string("model"));
  root.set("model_config", o.config_json);
  root.set("round", o.src->attributes().get_int("round").value_or(0));
  root.set("fragment", index);
  root.set("fragments", fragments);
  auto sink = io::create_sink(output, io::Format::Loco, root, plan);
  for (std::size_t k = 0; k < plan.size(); ++k) sink->write(k, read_finite(*o.src, *from[k]));
  if (!slots.empty()) {
    const Attributes st = o.src->group_attributes("state");
    for (const auto& e : st) sink->set_group_attribute("state", e.name, e.value);
  }
  sink->commit();
}

bool join_fragments(const std::vector<std::string>& paths, const std::string& output) {
  if (paths.empty()) throw_error(ErrorKind::Usage, "no fragment files to join");
  std::vector<Opened> files;
  for (const auto& p : paths) files.push_back(open_model_file(p));
  const Opened& first = files.front();
  std::vector<std::pair<std::size_t, const io::TensorInfo*>> owner(first.specs.size(), {0, nullptr});
  for (std::size_t f = 0; f < files.size(); ++f) {
    const Opened& o = files[f];
    if (o.config_json != first.config_json)
      throw_error(ErrorKind::BadInput, "{} and {}: fragments of different models (model_config {} and {})",
                  first.src->path(), o.src->path(), first.config_json, o.config_json);
    for (const io::TensorInfo* t : o.src->group("tensors")) {
      const std::size_t i = check_param(o, *t);
      if (owner[i].second != nullptr)
        throw_error(ErrorKind::BadInput, "{} and {}: both hold tensor {}", files[owner[i].first].src->path(),
                    o.src->path(), t->name);
      owner[i] = {f, t};
    }
  }
  for (std::size_t i = 0; i < owner.size(); ++i)
    if (owner[i].second == nullptr)
      throw_error(ErrorKind::BadInput, "tensor {} of the model is in none of the {} fragment files",
                  first.specs[i].name, files.size());

  // The state is carried when every fragment has the same slots and step.
  const auto slots = state_slots(*first.src);
  const auto step = first.src->group_attributes("state").get_int(std::string(optim::kStepAttribute));
  bool with_state = !slots.empty();
  for (const Opened& o : files)
    with_state = with_state && state_slots(*o.src) == slots &&
                 o.src->group_attributes("state").get_int(std::string(optim::kStepAttribute)) == step;
  if (!slots.empty() && !with_state)
    log::info("the fragments' outer states differ in step or slots: {} gets no /state", output);

  std::vector<io::TensorInfo> plan;
  std::vector<std::pair<std::size_t, const io::TensorInfo*>> from;
  for (std::size_t i = 0; i < first.specs.size(); ++i) {
    plan.push_back({"tensors", first.specs[i].name, first.specs[i].shape, DType::F32, {}});
    from.push_back(owner[i]);
  }
  if (with_state)
    for (const auto& slot : slots)
      for (std::size_t i = 0; i < first.specs.size(); ++i) {
        const std::size_t f = owner[i].first;
        const io::TensorInfo* s = files[f].src->find(first.specs[i].name, optim::state_group(slot));
        if (s == nullptr || s->shape != first.specs[i].shape)
          throw_error(ErrorKind::BadInput, "{}: outer state slot '{}' lacks tensor {} of shape {}",
                      files[f].src->path(), slot, first.specs[i].name, shape_string(first.specs[i].shape));
        plan.push_back({optim::state_group(slot), first.specs[i].name, first.specs[i].shape, DType::F32, {}});
        from.emplace_back(f, s);
      }

  Attributes root;
  root.set("kind", std::string("model"));
  root.set("model_config", first.config_json);
  const auto round = first.src->attributes().get_int("round");
  bool same_round = round.has_value();
  for (const Opened& o : files) same_round = same_round && o.src->attributes().get_int("round") == round;
  if (same_round) root.set("round", *round);
  auto sink = io::create_sink(output, io::Format::Loco, root, plan);
  for (std::size_t k = 0; k < plan.size(); ++k) sink->write(k, read_finite(*files[from[k].first].src, *from[k].second));
  if (with_state)
    for (const auto& e : first.src->group_attributes("state")) sink->set_group_attribute("state", e.name, e.value);
  sink->commit();
  return with_state;
}

}  // namespace loco::train
