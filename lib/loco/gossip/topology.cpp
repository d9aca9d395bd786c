// Topologies, Metropolis–Hastings mixing matrices, seeded random graphs and the spectral gap.
#include "loco/gossip/topology.hpp"
#include "loco/core/detail/eigen.hpp"  // pins Eigen's product blocking

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "loco/core/error.hpp"
#include "loco/core/spec.hpp"
#include "loco/core/rng.hpp"

namespace loco::gossip {

namespace {

constexpr std::int64_t kMaxDraws = 1000;
// The whole graph is built (and, for the random graphs, every node pair visited): a bound on the
// node pairs or edges it holds keeps a hostile --nodes from exhausting memory or time (2^26
// edges: about 1 GiB of adjacency lists).
constexpr std::int64_t kMaxEdges = std::int64_t{1} << 26;
constexpr std::uint64_t kRegularStream = 0x7265672d67726170;  // "reg-grap"
constexpr std::uint64_t kErdosStream = 0x6572646f732d7265;    // "erdos-re"

constexpr std::pair<TopologyKind, std::string_view> kNames[] = {
    {TopologyKind::Ring, "ring"},
    {TopologyKind::Torus, "torus"},
    {TopologyKind::Exponential, "exponential"},
    {TopologyKind::OnePeerExponential, "one-peer-exponential"},
    {TopologyKind::Complete, "complete"},
    {TopologyKind::RandomRegular, "random-regular"},
    {TopologyKind::ErdosRenyi, "erdos-renyi"}};

std::string_view kind_name(TopologyKind k) {
  for (const auto& [kind, name] : kNames)
    if (kind == k) return name;
  return "?";
}

// Number of powers of two below n: K = ⌊log₂(n−1)⌋ + 1 for n ≥ 2, 0 for n = 1.
std::int64_t powers_below(std::int64_t n) {
  std::int64_t k = 0;
  for (std::int64_t p = 1; p < n; p *= 2) ++k;
  return k;
}

void add_edge(std::vector<std::vector<std::int64_t>>& adj, std::int64_t i, std::int64_t j) {
  if (i == j) return;
  adj[i].push_back(j);
  adj[j].push_back(i);
}

void normalize(std::vector<std::vector<std::int64_t>>& adj) {
  for (auto& a : adj) {
    std::sort(a.begin(), a.end());
    a.erase(std::unique(a.begin(), a.end()), a.end());
  }
}

bool adjacent(const std::vector<std::vector<std::int64_t>>& adj, std::int64_t i, std::int64_t j) {
  return std::find(adj[i].begin(), adj[i].end(), j) != adj[i].end();
}

// One pairing of d half-edges per node, choosing random pairs of them and rejecting self-loops and
// repeated edges; false when no valid pair is left before every half-edge is paired.
bool pair_half_edges(std::int64_t n, std::int64_t d, Rng& rng, std::vector<std::vector<std::int64_t>>& adj) {
  adj.assign(n, {});
  std::vector<std::int64_t> ends;
  ends.reserve(n * d);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t k = 0; k < d; ++k) ends.push_back(i);
  while (!ends.empty()) {
    bool paired = false;
    for (int attempt = 0; attempt < 64 && !paired; ++attempt) {
      const auto a = rng.below(ends.size()), b = rng.below(ends.size());
      const std::int64_t u = ends[a], v = ends[b];
      if (u == v || adjacent(adj, u, v)) continue;
      add_edge(adj, u, v);
      // Remove both ends, the larger index first so the smaller stays valid.
      const auto hi = std::max(a, b), lo = std::min(a, b);
      ends[hi] = ends.back();
      ends.pop_back();
      ends[lo] = ends.back();
      ends.pop_back();
      paired = true;
    }
    if (paired) continue;
    // Random picks keep failing: go on only if some valid pair is left at all.
    bool any = false;
    for (std::size_t a = 0; a < ends.size() && !any; ++a)
      for (std::size_t b = a + 1; b < ends.size() && !any; ++b)
        any = ends[a] != ends[b] && !adjacent(adj, ends[a], ends[b]);
    if (!any) return false;
  }
  return true;
}

}  // namespace

std::vector<std::string> topology_names() {
  std::vector<std::string> names;
  for (const auto& [kind, name] : kNames) names.emplace_back(name);
  return names;
}

Topology parse_topology(std::string_view text) {
  Spec s(text, "topology");
  Topology t;
  bool found = false;
  for (const auto& [kind, name] : kNames)
    if (s.name() == name) t.kind = kind, found = true;
  if (!found)
    throw_error(ErrorKind::Usage,
                "topology '{}': unknown; expected ring, torus[:rows=R], exponential, one-peer-exponential, complete, "
                "random-regular:d=D or erdos-renyi:p=P",
                text);
  switch (t.kind) {
    case TopologyKind::Torus: t.rows = s.integer("rows", t.rows, 1); break;
    case TopologyKind::RandomRegular:
      s.require("d", "D (the degree)");
      t.degree = *s.take_integer("d", 1);
      t.redraw = s.boolean("redraw", t.redraw);
      break;
    case TopologyKind::ErdosRenyi:
      s.require("p", "P (the edge probability)");
      t.p = *s.take_real("p", Range::between(0, 1, true));
      t.redraw = s.boolean("redraw", t.redraw);
      break;
    default: break;
  }
  s.done();
  return t;
}

std::string format_topology(const Topology& t) {
  std::string s(kind_name(t.kind));
  switch (t.kind) {
    case TopologyKind::Torus:
      if (t.rows > 0) s += fmt::format(":rows={}", t.rows);
      break;
    case TopologyKind::RandomRegular: s += fmt::format(":d={}", t.degree); break;
    case TopologyKind::ErdosRenyi: s += fmt::format(":p={}", t.p); break;
    default: break;
  }
  if (t.redraw) s += ",redraw=1";
  return s;
}

bool time_varying(const Topology& t) noexcept { return t.kind == TopologyKind::OnePeerExponential || t.redraw; }
bool symmetric(const Topology& t) noexcept { return t.kind != TopologyKind::OnePeerExponential; }

std::pair<std::int64_t, std::int64_t> torus_shape(const Topology& t, std::int64_t nodes) {
  if (t.rows > 0) {
    if (nodes % t.rows != 0)
      throw_error(ErrorKind::Usage, "topology {}: {} rows do not divide {} nodes", format_topology(t), t.rows, nodes);
    return {t.rows, nodes / t.rows};
  }
  std::int64_t r = 1;
  for (std::int64_t a = 1; a * a <= nodes; ++a)
    if (nodes % a == 0) r = a;
  return {r, nodes / r};
}

std::vector<std::vector<std::int64_t>> neighbours(const Topology& t, std::int64_t n, std::uint64_t seed,
                                                  std::int64_t round) {
  if (n < 1) throw_error(ErrorKind::Usage, "topology {}: needs at least 1 node, got {}", format_topology(t), n);
  if (round < 0)
    throw_error(ErrorKind::Usage, "topology {}: round must be at least 0, got {}", format_topology(t), round);
  // What building the graph costs: its edges, or the node pairs a random graph draws from.
  const double pairs = 0.5 * static_cast<double>(n) * static_cast<double>(n - 1);
  double cost = 2.0 * static_cast<double>(n);
  if (t.kind == TopologyKind::Exponential)
    cost = static_cast<double>(n) * std::ceil(std::log2(static_cast<double>(n) + 1));
  if (t.kind == TopologyKind::Complete || t.kind == TopologyKind::ErdosRenyi) cost = pairs;
  if (t.kind == TopologyKind::RandomRegular) cost = 0.5 * static_cast<double>(n) * static_cast<double>(t.degree);
  if (cost > static_cast<double>(kMaxEdges))
    throw_error(ErrorKind::Usage,
                "topology {} on {} nodes: about {:.3g} edges or node pairs, more than loco builds ({})",
                format_topology(t), n, cost, kMaxEdges);
  std::vector<std::vector<std::int64_t>> adj(n);
  switch (t.kind) {
    case TopologyKind::Ring:
      for (std::int64_t i = 0; i < n; ++i) add_edge(adj, i, (i + 1) % n);
      break;
    case TopologyKind::Torus: {
      const auto [rows, cols] = torus_shape(t, n);
      for (std::int64_t a = 0; a < rows; ++a)
        for (std::int64_t b = 0; b < cols; ++b) {
          const std::int64_t i = a * cols + b;
          add_edge(adj, i, ((a + 1) % rows) * cols + b);
          add_edge(adj, i, a * cols + (b + 1) % cols);
        }
      break;
    }
    case TopologyKind::Exponential:
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t p = 1; p < n; p *= 2) add_edge(adj, i, (i + p) % n);
      break;
    case TopologyKind::OnePeerExponential: {
      const std::int64_t k = powers_below(n);
      if (k > 0) {
        const std::int64_t shift = std::int64_t{1} << (round % k);
        for (std::int64_t i = 0; i < n; ++i) adj[i].push_back((i + shift) % n);
      }
      return adj;  // directed: node i reads node i + 2^(t mod K) only
    }
    case TopologyKind::Complete:
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = i + 1; j < n; ++j) add_edge(adj, i, j);
      break;
    case TopologyKind::RandomRegular:
    case TopologyKind::ErdosRenyi: {
      const bool regular = t.kind == TopologyKind::RandomRegular;
      if (regular && (t.degree >= n || (n * t.degree) % 2 != 0))
        throw_error(ErrorKind::Usage, "topology {}: no {}-regular graph on {} nodes (needs d < N and N·d even)",
                    format_topology(t), t.degree, n);
      const std::uint64_t key = t.redraw ? static_cast<std::uint64_t>(round) : 0;
      for (std::int64_t draw = 0; draw < kMaxDraws; ++draw) {
        Rng rng(seed, {regular ? kRegularStream : kErdosStream, key, static_cast<std::uint64_t>(draw)});
        if (regular) {
          if (!pair_half_edges(n, t.degree, rng, adj)) continue;
        } else {
          adj.assign(n, {});
          for (std::int64_t i = 0; i < n; ++i)
            for (std::int64_t j = i + 1; j < n; ++j)
              if (rng.uniform_double() < t.p) add_edge(adj, i, j);
        }
        normalize(adj);
        if (connected(adj)) return adj;
      }
      throw_error(ErrorKind::Usage, "topology {}: no connected graph on {} nodes in {} draws (seed {}){}",
                  format_topology(t), n, kMaxDraws, seed, regular ? "" : "; raise p");
    }
  }
  normalize(adj);
  return adj;
}

double MixingMatrix::at(std::int64_t i, std::int64_t j) const {
  for (const auto& e : rows.at(i))
    if (e.node == j) return e.w;
  return 0.0;
}

std::vector<double> MixingMatrix::dense() const {
  std::vector<double> d(static_cast<std::size_t>(n * n), 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (const auto& e : rows[i]) d[i * n + e.node] = e.w;
  return d;
}

MixingMatrix metropolis_hastings(const std::vector<std::vector<std::int64_t>>& adj) {
  const auto n = static_cast<std::int64_t>(adj.size());
  // neighbours() sorts every list: the symmetry check is then a binary search (O(E log d), not O(E d)).
  const bool sorted =
      std::all_of(adj.begin(), adj.end(), [](const auto& a) { return std::is_sorted(a.begin(), a.end()); });
  MixingMatrix m;
  m.n = n;
  m.rows.resize(n);
  for (std::int64_t i = 0; i < n; ++i) {
    double off = 0;
    const auto di = static_cast<double>(adj[i].size());
    for (std::int64_t j : adj[i]) {
      if (!(sorted ? std::binary_search(adj[j].begin(), adj[j].end(), i) : adjacent(adj, j, i)))
        throw_error(ErrorKind::Internal, "metropolis_hastings: edge {}-{} listed at one end only", i, j);
      const double w = 1.0 / (1.0 + std::max(di, static_cast<double>(adj[j].size())));
      m.rows[i].push_back({j, w});
      off += w;
    }
    m.rows[i].push_back({i, 1.0 - off});
    std::sort(m.rows[i].begin(), m.rows[i].end(), [](const Weight& a, const Weight& b) { return a.node < b.node; });
  }
  return m;
}

MixingMatrix mixing_matrix(const Topology& t, std::int64_t nodes, std::uint64_t seed, std::int64_t round) {
  const auto adj = neighbours(t, nodes, seed, round);
  if (t.kind != TopologyKind::OnePeerExponential) return metropolis_hastings(adj);
  MixingMatrix m;
  m.n = nodes;
  m.rows.resize(nodes);
  for (std::int64_t i = 0; i < nodes; ++i) {
    if (adj[i].empty()) {
      m.rows[i].push_back({i, 1.0});
      continue;
    }
    m.rows[i].push_back({i, 0.5});
    m.rows[i].push_back({adj[i][0], 0.5});
    std::sort(m.rows[i].begin(), m.rows[i].end(), [](const Weight& a, const Weight& b) { return a.node < b.node; });
  }
  return m;
}

bool connected(const std::vector<std::vector<std::int64_t>>& adj) {
  if (adj.empty()) return true;
  std::vector<char> seen(adj.size(), 0);
  std::vector<std::int64_t> stack{0};
  seen[0] = 1;
  std::size_t count = 1;
  while (!stack.empty()) {
    const auto i = stack.back();
    stack.pop_back();
    for (auto j : adj[i])
      if (!seen[j]) seen[j] = 1, ++count, stack.push_back(j);
  }
  return count == adj.size();
}

void check_spectral_nodes(std::int64_t nodes) {
  if (nodes > kMaxSpectralNodes)
    throw_error(ErrorKind::Usage,
                "the spectral gap of {} nodes: loco computes it on the dense N×N matrix, for at most {} nodes", nodes,
                kMaxSpectralNodes);
}

double mixing_rho(const MixingMatrix& w) {
  const auto n = static_cast<Eigen::Index>(w.n);
  if (n <= 1) return 0.0;
  check_spectral_nodes(w.n);
  Eigen::MatrixXd m = Eigen::MatrixXd::Constant(n, n, -1.0 / static_cast<double>(n));
  bool sym = true;
  for (Eigen::Index i = 0; i < n; ++i)
    for (const auto& e : w.rows[i]) m(i, e.node) += e.w;
  for (Eigen::Index i = 0; i < n && sym; ++i)
    for (Eigen::Index j = i + 1; j < n && sym; ++j) sym = m(i, j) == m(j, i);
  if (sym) {
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(m, Eigen::EigenvaluesOnly);
    return es.eigenvalues().cwiseAbs().maxCoeff();
  }
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(m);
  return svd.singularValues()(0);
}

}  // namespace loco::gossip
