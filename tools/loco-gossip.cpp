// loco-gossip: one decentralized mixing step (Metropolis–Hastings weights); describes topologies and schedules.
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "loco/cli/tool.hpp"
#include "loco/core/error.hpp"
#include "loco/gossip/gossip.hpp"
#include "loco/gossip/schedule.hpp"
#include "loco/gossip/topology.hpp"

namespace {

namespace g = loco::gossip;

int describe(const g::Topology& t, std::int64_t n, std::uint64_t seed, std::int64_t round, bool json) {
  g::check_spectral_nodes(n);
  const auto w = g::mixing_matrix(t, n, seed, round);
  const double rho = g::mixing_rho(w);
  nlohmann::json j = {{"topology", g::format_topology(t)},
                      {"nodes", n},
                      {"round", round},
                      {"seed", seed},
                      {"symmetric", g::symmetric(t)},
                      {"time_varying", g::time_varying(t)},
                      {"rho", rho},
                      {"spectral_gap", 1.0 - rho}};
  if (t.kind == g::TopologyKind::Torus) {
    const auto [r, c] = g::torus_shape(t, n);
    j["torus"] = {r, c};
  }
  nlohmann::json rows = nlohmann::json::array();
  for (std::int64_t i = 0; i < n; ++i) {
    nlohmann::json nb = nlohmann::json::array(), ws = nlohmann::json::array();
    for (const auto& e : w.rows[i])
      if (e.node != i) nb.push_back(e.node), ws.push_back(e.w);
    rows.push_back({{"node", i}, {"neighbours", nb}, {"weights", ws}, {"self_weight", w.at(i, i)}});
  }
  j["rows"] = rows;
  if (json) {
    fmt::print("{}\n", j.dump());
    return 0;
  }
  fmt::print("topology      {}\nnodes         {}\n", g::format_topology(t), n);
  if (t.kind == g::TopologyKind::Torus)
    fmt::print("torus         {} x {}\n", j["torus"][0].get<std::int64_t>(), j["torus"][1].get<std::int64_t>());
  fmt::print("round         {}{}\nrho           {:.10g}\nspectral_gap  {:.10g}\n", round,
             g::time_varying(t) ? " (the graph changes with the round)" : "", rho, 1.0 - rho);
  for (std::int64_t i = 0; i < n; ++i) {
    std::vector<std::string> items;
    for (const auto& e : w.rows[i])
      if (e.node != i) items.push_back(fmt::format("{}:{:.6g}", e.node, e.w));
    fmt::print("node {:<4} self {:.6g}  neighbours {}\n", i, w.at(i, i),
               items.empty() ? "-" : fmt::format("{}", fmt::join(items, " ")));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  loco::cli::Tool tool("loco-gossip", "One decentralized mixing step: mix a node's model with its neighbours' models");
  tool.set_description(
      "Node I replaces its model by sum_j W_ij theta_j over itself and its neighbours, W the Metropolis-Hastings "
      "mixing matrix of the topology (W_ij = 1/(1 + max(d_i, d_j)) on an edge, W_ii = 1 - sum of the others; the "
      "one-peer exponential graph averages 1/2-1/2 with node I + 2^(t mod K), K the number of powers of two below N). "
      "Nodes are numbered 0..N-1. Topologies: ring; torus (N = rows x cols, rows the largest divisor of N not above "
      "sqrt(N) unless torus:rows=R); exponential (neighbours I +- 2^k); one-peer-exponential; complete; "
      "random-regular:d=D and erdos-renyi:p=P (drawn from --seed, redrawn until connected; redraw=1 draws a new graph "
      "every round). MODEL is node I's model; the NEIGHBOUR models are identified by their 'node' attribute (which "
      "loco-gossip writes), in any order, or, when none carries one, taken in the order --describe lists the "
      "neighbours. All models must be of the same round and model config; a model from a node that is not a neighbour "
      "is refused. Tensors stream in row blocks summed in float64 in ascending node order, so the result does not "
      "depend on the order of the files. Optimizer state is not mixed: /state is copied from MODEL. --round selects "
      "the round t of a time-varying graph (default: the models' 'round' attribute). --describe prints the "
      "neighbours, weights and spectral gap 1 - rho, rho = ||W - 11^T/N||_2 (for symmetric W, max(|lambda_2|, "
      "|lambda_N|)). --schedule lists the rounds in 1..--rounds that gossip under a communication schedule: "
      "every[:period=P], late:from=F[,period=P,dense_period=Q] (sparse, then every Q rounds after fraction F), "
      "window:start=S,length=L[,period=P,dense_period=Q], or none.");
  tool.add_example("loco-gossip --topology ring --node 2 --nodes 8 -o mixed-2.h5 local-2.h5 local-1.h5 local-3.h5",
                   "Node 2 of a ring of 8 averages 1/3 each with nodes 1 and 3.");
  tool.add_example("loco-gossip --topology exponential --nodes 16 --describe", "Neighbours, weights and spectral gap.");
  tool.add_example("loco-gossip --schedule late:from=0.9,period=5 --rounds 100", "The rounds that gossip.");
  auto& app = tool.app();
  std::string topology = "ring", out, schedule;
  std::vector<std::string> models;
  std::int64_t node = -1, nodes = 0, rounds = 0;
  std::optional<std::int64_t> round;
  std::uint64_t seed = 0;
  bool describe_flag = false, json = false;
  app.add_option("--topology", topology,
                 "ring, torus[:rows=R], exponential, one-peer-exponential, complete, random-regular:d=D[,redraw=1] "
                 "or erdos-renyi:p=P[,redraw=1]")
      ->capture_default_str();
  app.add_option("--node", node, "This node's id I, in 0..N-1")->check(CLI::NonNegativeNumber);
  app.add_option("--nodes", nodes, "Number of nodes N")->check(CLI::PositiveNumber);
  app.add_option("--round", round, "Round t of a time-varying topology (default: the models' round attribute)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", seed, "Seed of the random graphs")->capture_default_str();
  app.add_flag("--describe", describe_flag, "Print the topology's neighbours, weights and spectral gap, and exit");
  app.add_option("--schedule", schedule,
                 "Print the rounds a communication schedule gossips in (needs --rounds), and exit");
  app.add_option("--rounds", rounds, "Number of rounds, for --schedule")->check(CLI::PositiveNumber);
  app.add_flag("--json", json, "--describe, --schedule, mixing: print JSON (one line)");
  loco::cli::output_path(
      app.add_option("-o,--output", out, "Mixed model of node I (.h5 or .safetensors; '-' for stdout)")
          ->type_name("FILE"));
  app.add_option("MODEL", models, "Node I's model, then its neighbours' models of the same round");
  tool.group(loco::cli::Group::Outputs, {"--json"});
  tool.complete_words("--topology", loco::gossip::topology_names());
  return tool.run(argc, argv, [&] {
    using loco::ErrorKind;
    if (!schedule.empty()) {
      if (rounds < 1) throw loco::Error(ErrorKind::Usage, "--schedule needs --rounds R");
      if (describe_flag || !models.empty() || !out.empty())
        throw loco::Error(ErrorKind::Usage, "--schedule takes only --rounds (and --json)");
      const auto s = g::parse_schedule(schedule);
      const auto r = g::communicating_rounds(s, rounds);
      if (json)
        fmt::print(
            "{}\n",
            nlohmann::json{{"schedule", g::format_schedule(s)}, {"rounds", rounds}, {"gossip_rounds", r}}.dump());
      else fmt::print("{}\n", fmt::join(r, " "));
      return 0;
    }
    if (rounds > 0) throw loco::Error(ErrorKind::Usage, "--rounds applies to --schedule only");
    const auto t = g::parse_topology(topology);
    if (nodes < 1) throw loco::Error(ErrorKind::Usage, "--nodes N is required");
    if (describe_flag) {
      if (!models.empty() || !out.empty())
        throw loco::Error(ErrorKind::Usage, "--describe takes no models and no --output");
      return describe(t, nodes, seed, round.value_or(0), json);
    }
    if (node < 0) throw loco::Error(ErrorKind::Usage, "--node I is required to mix");
    if (out.empty()) throw loco::Error(ErrorKind::Usage, "--output is required to mix");
    if (models.empty()) throw loco::Error(ErrorKind::Usage, "give MODEL (node I's model) and its neighbours' models");
    if (json && out == "-") throw loco::Error(ErrorKind::Usage, "--json and -o - would both write to stdout");
    g::GossipOptions o;
    o.topology = t;
    o.node = node;
    o.nodes = nodes;
    o.round = round;
    o.seed = seed;
    const std::vector<std::string> nbrs(models.begin() + 1, models.end());
    const auto s = g::gossip_files(models[0], nbrs, out, o);
    if (json) fmt::print("{}\n", g::summary_json(s));
    return 0;
  });
}
