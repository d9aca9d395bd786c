// Small model files for the gossip tests, written through io::create_sink.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loco/core/attributes.hpp"
#include "loco/core/dtype.hpp"
#include "loco/core/tensor.hpp"
#include "loco/io/output.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::gossip::test {

struct T {
  std::string name;
  Shape shape;
  std::vector<float> values;  // converted to dtype
  DType dtype = DType::F32;
  std::string group = "tensors";
};

inline void write_model(const std::string& path, const std::vector<T>& tensors, std::optional<std::int64_t> node,
                        std::optional<std::int64_t> round = 3, const std::string& config = R"({"arch":"test"})") {
  Attributes root;
  root.set("kind", std::string("model"));
  root.set("model_config", config);
  if (round) root.set("round", *round);
  if (node) root.set("node", *node);
  std::vector<io::TensorInfo> plan;
  for (const auto& t : tensors) plan.push_back({t.group, t.name, t.shape, t.dtype, {}});
  auto sink = io::create_sink(path, root, plan);
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    std::vector<std::byte> b(tensors[k].values.size() * dtype_size(tensors[k].dtype));
    convert_elements(DType::F32, reinterpret_cast<const std::byte*>(tensors[k].values.data()), tensors[k].dtype,
                     b.data(), tensors[k].values.size());
    sink->write_rows(k, 0, plan[k].rows(), b);
  }
  for (const auto& t : tensors)
    if (t.group != "tensors") sink->set_group_attribute(t.group, "step", std::int64_t{7});
  sink->commit();
  io::forget_inputs();
}

// The values of a tensor as float32.
inline std::vector<float> read_values(const std::string& path, const std::string& name,
                                      const std::string& group = "tensors") {
  auto src = io::open_source(path, false);
  const Tensor t = src->read(src->get(name, group), DType::F32);
  const auto v = t.f32();
  return {v.begin(), v.end()};
}

}  // namespace loco::gossip::test
