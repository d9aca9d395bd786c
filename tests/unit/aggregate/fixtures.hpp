// Small model, delta and reading helpers shared by the aggregate tests of robust rules, differential
// privacy, QFedAvg and the asynchronous loop (a model of named float32 tensors of chosen shapes).
#pragma once

#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "loco/aggregate/aggregate.hpp"
#include "loco/core/attributes.hpp"
#include "loco/core/tensor.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/output.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::aggtest {

using Values = std::map<std::string, std::vector<float>>;
using Shapes = std::vector<std::pair<std::string, Shape>>;
inline const std::string kConfig = R"({"type":"mlp","hidden":[4]})";
inline const Shapes kSmall = {{"w", {7, 3}}, {"b", {5}}};

inline Values random_values(std::uint32_t seed, float scale = 1.0f, const Shapes& shapes = kSmall) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Values v;
  for (const auto& [name, shape] : shapes) {
    auto& x = v[name];
    x.resize(static_cast<std::size_t>(shape_numel(shape)));
    for (float& e : x) e = scale * u(gen);
  }
  return v;
}

inline Values scaled(Values v, float s) {
  for (auto& [_, x] : v)
    for (float& e : x) e *= s;
  return v;
}

// Writes a loco file of the given kind: /tensors from v (shapes from `shapes`), extra root attributes,
// more groups of the same tensors (e.g. "state/m"), and optionally the /state group's `step`.
inline void write_file(const std::string& path, const std::string& kind, const Values& v, Attributes root,
                       const Shapes& shapes = kSmall, const std::map<std::string, Values>& groups = {},
                       std::optional<std::int64_t> state_step = {}) {
  root.set("kind", kind);
  root.set("model_config", kConfig);
  std::vector<io::TensorInfo> plan;
  auto add = [&](const std::string& group) {
    for (const auto& [name, shape] : shapes) {
      io::TensorInfo t;
      t.group = group;
      t.name = name;
      t.shape = shape;
      plan.push_back(t);
    }
  };
  add("tensors");
  for (const auto& [g, _] : groups) add(g);
  io::forget_inputs();
  auto sink = io::create_sink(path, io::Format::Loco, root, plan);
  std::size_t i = 0;
  auto put = [&](const Values& vals) {
    for (const auto& [name, shape] : shapes) {
      const auto& x = vals.at(name);
      sink->write_rows(i++, 0, shape.empty() ? 1 : shape[0], std::as_bytes(std::span(x)));
    }
  };
  put(v);
  for (const auto& [_, vals] : groups) put(vals);
  if (state_step) sink->set_group_attribute("state", "step", *state_step);
  sink->commit();
}

inline void write_model(const std::string& path, const Values& v, std::int64_t round = 0,
                        const Shapes& shapes = kSmall) {
  Attributes a;
  a.set("round", round);
  write_file(path, "model", v, a, shapes);
}

inline std::string checksum_of(const std::string& path) {
  io::forget_inputs();
  return io::tensors_checksum(*io::open_source(path));
}

inline void write_delta(const std::string& path, const Values& v, const std::string& base, std::int64_t worker,
                        std::int64_t round = 0, std::optional<double> loss_first = {}, const Shapes& shapes = kSmall) {
  Attributes a;
  a.set("round", round);
  a.set("worker", worker);
  a.set("samples", std::int64_t{10});
  a.set("base_checksum", base);
  if (loss_first) a.set("loss_first", *loss_first);
  write_file(path, "delta", v, a, shapes);
}

inline Values read_group(const std::string& path, const std::string& group = "tensors") {
  io::forget_inputs();
  auto src = io::open_source(path);
  Values out;
  for (const auto* t : src->group(group)) {
    Tensor x = src->read(*t);
    out[t->name].assign(x.f32().begin(), x.f32().end());
  }
  return out;
}

inline Attributes root_attributes(const std::string& path) {
  io::forget_inputs();
  return io::open_source(path)->attributes();
}

inline Attributes state_attributes(const std::string& path) {
  io::forget_inputs();
  return io::open_source(path)->group_attributes("state");
}

inline aggregate::AggregateOptions options(const std::string& reduce, const std::string& outer = "sgd") {
  aggregate::AggregateOptions o;
  aggregate::parse_reduce(reduce, o);
  o.outer = optim::parse_outer_spec(outer);
  return o;
}

inline aggregate::AggregateSummary run(const std::string& model, const std::vector<std::string>& deltas,
                                       const std::string& out, const aggregate::AggregateOptions& o) {
  io::forget_inputs();
  return aggregate::aggregate(model, deltas, out, o);
}

inline bool same_bits(const Values& a, const Values& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end() || it->second.size() != v.size()) return false;
    if (std::memcmp(v.data(), it->second.data(), v.size() * 4) != 0) return false;
  }
  return true;
}

// The tensors of a set in the model's order (kSmall: w then b), concatenated.
inline std::vector<float> flat(const Values& v, const Shapes& shapes = kSmall) {
  std::vector<float> out;
  for (const auto& [name, _] : shapes) out.insert(out.end(), v.at(name).begin(), v.at(name).end());
  return out;
}

}  // namespace loco::aggtest
