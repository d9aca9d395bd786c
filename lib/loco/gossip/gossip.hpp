// One decentralized mixing step from files: node i replaces its model by θ_i ← Σ_j W_ij θ_j over
// itself and its neighbours' models of the same round, streaming tensor by tensor and row block by
// row block (memory: a few blocks, whatever the model size and the number of neighbours).
//
// Which file is which node. A model's root attribute `node` names its node (loco-gossip writes it).
// The neighbours' files either all carry one — then they may come in any order, and a file from a
// node that is not a neighbour at this round, or two files from one node, are refused — or none
// does, and they are taken in the order of the node's neighbour list (ascending ids, as
// `loco-gossip --describe` prints). The own model's `node`, when present, must be i.
//
// Optimizer state stays local. /state of the own model (an outer optimizer's slots) and the
// worker's inner optimizer state file are not mixed: D-SGD and its local-update variants gossip
// parameters only, Adam's second moments are not linear in the parameters (their average is no
// node's state), and mixing them would multiply the traffic. /state is copied from the own model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loco/gossip/topology.hpp"

namespace loco::gossip {

struct GossipOptions {
  Topology topology;
  std::int64_t node = 0;                           // i, in [0, nodes)
  std::int64_t nodes = 0;                          // N
  std::optional<std::int64_t> round;               // the topology's round t; default: the models' `round` (0 if absent)
  std::uint64_t seed = 0;                          // random graphs
  std::size_t block_bytes = std::size_t{1} << 20;  // float32 bytes per row block; does not change the result
};

struct GossipSummary {
  std::string output, topology;
  std::int64_t node = 0, nodes = 0, round = 0;  // round: the topology's t
  std::optional<std::int64_t> model_round;      // the models' `round` attribute
  std::vector<Weight> weights;                  // W_ij, ascending j, self included
  std::vector<std::string> inputs;              // the file of each weights entry
  std::uint64_t bytes_received = 0;             // bytes of the neighbours' floating /tensors read
  std::int64_t parameters = 0;                  // floating elements mixed
  double seconds = 0;
};

// Mixes model (node i's) with neighbour_models into output (atomic; any format create_sink
// writes): floating tensors of /tensors become Σ_j W_ij θ_j, summed in float64 in ascending j,
// rounded to float32 (then to the own model's dtype when that is 16-bit); integer tensors and
// every other group are copied from the own model; root attributes are the own model's with node = i and
// gossip_topology, gossip_round, gossip_degree, gossip_self_weight added.
// Throws Error(Usage) for a node outside [0, N), the wrong number of neighbour files for the node's
// degree (naming the neighbours), a file given twice; Error(BadInput) naming the file when a
// model is not kind model, has another model_config, another `round`, other tensor names or
// shapes, a non-floating dtype where the own model has a floating one, or a `node` that is not
// a neighbour (or not i for the own model); Error(Numeric) when the mix is not finite. Nothing is
// written on error.
GossipSummary gossip_files(const std::string& model, const std::vector<std::string>& neighbour_models,
                           const std::string& output, const GossipOptions& options);

// The summary as one JSON object (one line).
std::string summary_json(const GossipSummary& s);

}  // namespace loco::gossip
