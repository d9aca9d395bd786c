// The gossip step on files: validation of the node's and its neighbours' models, then the
// row-block weighted sum Σ_j W_ij θ_j in float64.
#include "loco/gossip/gossip.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::gossip {

namespace {

struct Input {
  std::string path;
  std::unique_ptr<io::TensorSource> src;
  std::int64_t node = 0;
  double w = 0;
  std::vector<const io::TensorInfo*> tensors;  // per plan entry of group "tensors" (nullptr for others)
};

std::string opt_text(const std::optional<std::int64_t>& v) { return v ? std::to_string(*v) : std::string("none"); }

}  // namespace

GossipSummary gossip_files(const std::string& model, const std::vector<std::string>& neighbour_models,
                           const std::string& output, const GossipOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string topo = format_topology(opt.topology);
  if (opt.nodes < 1) throw_error(ErrorKind::Usage, "--nodes must be at least 1, got {}", opt.nodes);
  if (opt.node < 0 || opt.node >= opt.nodes)
    throw_error(ErrorKind::Usage, "--node {} is outside 0..{} (nodes are numbered from 0)", opt.node, opt.nodes - 1);
  {
    std::set<std::string> seen{model};
    for (const auto& p : neighbour_models)
      if (!seen.insert(p).second) throw_error(ErrorKind::Usage, "{}: model listed twice", p);
  }

  std::vector<Input> inputs;
  inputs.push_back({model, io::open_source(model), opt.node, 0, {}});
  for (const auto& p : neighbour_models) inputs.push_back({p, io::open_source(p), -1, 0, {}});
  for (const auto& in : inputs) io::expect_kind(*in.src, {io::Kind::Model});
  const io::TensorSource& own = *inputs[0].src;

  // The round: every model carries the same `round`, or none does.
  const std::optional<std::int64_t> model_round = own.attributes().get_int("round");
  for (std::size_t k = 1; k < inputs.size(); ++k) {
    const auto r = inputs[k].src->attributes().get_int("round");
    if (r != model_round)
      throw_error(ErrorKind::BadInput,
                  "{} is of round {} but {} (node {}'s own model) of round {}: gossip mixes models "
                  "of the same round",
                  inputs[k].path, opt_text(r), model, opt.node, opt_text(model_round));
  }
  const std::int64_t round = opt.round.value_or(model_round.value_or(0));
  const MixingMatrix w = mixing_matrix(opt.topology, opt.nodes, opt.seed, round);
  const auto& row = w.rows[opt.node];
  std::vector<std::int64_t> nbrs;
  for (const auto& e : row)
    if (e.node != opt.node) nbrs.push_back(e.node);

  if (neighbour_models.size() != nbrs.size())
    throw_error(ErrorKind::Usage,
                "node {} of {} on {} nodes (round {}) has {} neighbour{} ({}), {} neighbour model{} given", opt.node,
                topo, opt.nodes, round, nbrs.size(), nbrs.size() == 1 ? "" : "s", fmt::join(nbrs, ", "),
                neighbour_models.size(), neighbour_models.size() == 1 ? "" : "s");

  // Which file is which node: by `node` attributes, all or none.
  if (const auto own_node = own.attributes().get_int("node"); own_node && *own_node != opt.node)
    throw_error(ErrorKind::BadInput, "{} is node {}'s model, expected node {}'s (--node)", model, *own_node, opt.node);
  std::size_t tagged = 0;
  for (std::size_t k = 1; k < inputs.size(); ++k) tagged += inputs[k].src->attributes().get_int("node") ? 1 : 0;
  if (tagged != 0 && tagged != nbrs.size())
    throw_error(ErrorKind::BadInput,
                "{} of the {} neighbour models carry a 'node' attribute: either all do (any order) "
                "or none does (given in the order {})",
                tagged, nbrs.size(), fmt::join(nbrs, ", "));
  for (std::size_t k = 1; k < inputs.size(); ++k) {
    if (tagged == 0) {
      inputs[k].node = nbrs[k - 1];
      continue;
    }
    const std::int64_t j = *inputs[k].src->attributes().get_int("node");
    if (std::find(nbrs.begin(), nbrs.end(), j) == nbrs.end())
      throw_error(ErrorKind::BadInput,
                  "{} is node {}'s model, which is not a neighbour of node {} in {} at round {} "
                  "(neighbours {})",
                  inputs[k].path, j, opt.node, topo, round, fmt::join(nbrs, ", "));
    for (std::size_t m = 1; m < k; ++m)
      if (inputs[m].node == j)
        throw_error(ErrorKind::BadInput, "{} and {} are both node {}'s model", inputs[m].path, inputs[k].path, j);
    inputs[k].node = j;
  }
  for (auto& in : inputs) in.w = w.at(opt.node, in.node);
  // Sum in ascending node order, whatever the order on the command line.
  std::sort(inputs.begin(), inputs.end(), [](const Input& a, const Input& b) { return a.node < b.node; });
  const auto own_it = std::find_if(inputs.begin(), inputs.end(), [&](const Input& in) { return in.node == opt.node; });
  const io::TensorSource& ref = *own_it->src;

  const std::string ref_config = io::model_config(ref);
  for (const auto& in : inputs)
    if (in.src.get() != &ref && (!ref_config.empty() || !io::model_config(*in.src).empty()))
      io::check_same_config(ref, *in.src);

  // The plan: every tensor of the own model; floating /tensors are mixed, the rest copied.
  std::vector<io::TensorInfo> plan(ref.tensors().begin(), ref.tensors().end());
  if (ref.group("tensors").empty()) throw_error(ErrorKind::BadInput, "{}: no tensors to mix", own_it->path);
  std::vector<char> mixed(plan.size(), 0);
  for (std::size_t k = 0; k < plan.size(); ++k) mixed[k] = plan[k].group == "tensors" && is_floating(plan[k].dtype);
  for (auto& in : inputs) {
    in.tensors.assign(plan.size(), nullptr);
    if (in.src.get() == &ref) {
      for (std::size_t k = 0; k < plan.size(); ++k) in.tensors[k] = &ref.tensors()[k];
      continue;
    }
    for (std::size_t k = 0; k < plan.size(); ++k) {
      if (!mixed[k]) continue;
      const io::TensorInfo* t = in.src->find(plan[k].name);
      if (!t) throw_error(ErrorKind::BadInput, "{}: no tensor {}, which {} has", in.path, plan[k].name, own_it->path);
      if (t->shape != plan[k].shape)
        throw_error(ErrorKind::BadInput, "tensor {}: shape {} in {} but {} in {}", plan[k].name, shape_string(t->shape),
                    in.path, shape_string(plan[k].shape), own_it->path);
      if (!is_floating(t->dtype))
        throw_error(ErrorKind::BadInput, "tensor {}: {} in {} but {} in {}", plan[k].name, dtype_name(t->dtype),
                    in.path, dtype_name(plan[k].dtype), own_it->path);
      in.tensors[k] = t;
    }
    for (const auto* t : in.src->group("tensors"))
      if (!ref.find(t->name))
        throw_error(ErrorKind::BadInput, "{}: tensor {} is not in {}", in.path, t->name, own_it->path);
  }

  GossipSummary s;
  s.output = output;
  s.topology = topo;
  s.node = opt.node;
  s.nodes = opt.nodes;
  s.round = round;
  s.model_round = model_round;
  for (const auto& in : inputs) {
    s.weights.push_back({in.node, in.w});
    s.inputs.push_back(in.path);
  }

  Attributes root;
  for (const auto& e : ref.attributes()) {
    static constexpr std::string_view skip[] = {"loco_format", "loco_version", "producer", "created"};
    if (std::find(std::begin(skip), std::end(skip), e.name) == std::end(skip)) root.set(e.name, e.value);
  }
  root.set("kind", std::string("model"));
  root.set("node", opt.node);
  root.set("gossip_topology", topo);
  root.set("gossip_round", round);
  root.set("gossip_nodes", opt.nodes);
  root.set("gossip_degree", static_cast<std::int64_t>(nbrs.size()));
  root.set("gossip_self_weight", own_it->w);
  auto sink = io::create_sink(output, root, plan);
  std::set<std::string> groups;
  for (const auto& t : plan)
    if (t.group != "tensors") groups.insert(t.group);
  for (const auto& g : groups)
    for (const auto& e : ref.group_attributes(g)) sink->set_group_attribute(g, e.name, e.value);

  std::vector<std::byte> raw, outbuf;
  std::vector<float> x;
  std::vector<double> acc;
  for (std::size_t k = 0; k < plan.size(); ++k) {
    const io::TensorInfo& info = plan[k];
    const std::int64_t rows = info.rows(), re = info.row_elements();
    const std::int64_t block =
        io::rows_per_block(io::TensorInfo{info.group, info.name, info.shape, DType::F32, {}}, opt.block_bytes);
    for (std::int64_t r0 = 0; r0 < rows; r0 += block) {
      const std::int64_t nr = std::min(block, rows - r0);
      const auto n = static_cast<std::size_t>(nr * re);
      if (!mixed[k]) {  // copied from the own model
        raw.resize(n * dtype_size(info.dtype));
        ref.read_rows(*own_it->tensors[k], r0, nr, raw);
        sink->write_rows(k, r0, nr, raw);
        continue;
      }
      acc.assign(n, 0.0);
      x.resize(n);
      for (const auto& in : inputs) {
        const io::TensorInfo& t = *in.tensors[k];
        raw.resize(n * dtype_size(t.dtype));
        in.src->read_rows(t, r0, nr, raw);
        if (in.src.get() != &ref) s.bytes_received += raw.size();
        convert_elements(t.dtype, raw.data(), DType::F32, reinterpret_cast<std::byte*>(x.data()), n);
        const double wj = in.w;
        for (std::size_t e = 0; e < n; ++e) acc[e] += wj * static_cast<double>(x[e]);
      }
      for (std::size_t e = 0; e < n; ++e) {
        x[e] = static_cast<float>(acc[e]);
        if (!std::isfinite(x[e]))
          throw_error(ErrorKind::Numeric,
                      "tensor {}: the mix is not finite at element {} (a model holds NaN or Inf, "
                      "or values overflow float32); nothing written",
                      info.name, r0 * re + static_cast<std::int64_t>(e));
      }
      s.parameters += static_cast<std::int64_t>(n);
      if (info.dtype == DType::F32) {
        sink->write_rows(k, r0, nr, std::as_bytes(std::span<const float>(x.data(), n)));
      } else {
        outbuf.resize(n * dtype_size(info.dtype));
        convert_elements(DType::F32, reinterpret_cast<const std::byte*>(x.data()), info.dtype, outbuf.data(), n);
        sink->write_rows(k, r0, nr, outbuf);
      }
    }
  }
  sink->commit();
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

std::string summary_json(const GossipSummary& s) {
  nlohmann::json weights = nlohmann::json::array();
  for (std::size_t k = 0; k < s.weights.size(); ++k)
    weights.push_back({{"node", s.weights[k].node}, {"weight", s.weights[k].w}, {"model", s.inputs[k]}});
  nlohmann::json j = {{"output", s.output},
                      {"topology", s.topology},
                      {"node", s.node},
                      {"nodes", s.nodes},
                      {"round", s.round},
                      {"model_round", s.model_round ? nlohmann::json(*s.model_round) : nlohmann::json()},
                      {"degree", s.weights.size() - 1},
                      {"weights", weights},
                      {"parameters", s.parameters},
                      {"bytes_received", s.bytes_received},
                      {"seconds", s.seconds}};
  return j.dump();
}

}  // namespace loco::gossip
