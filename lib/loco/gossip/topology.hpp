// Decentralized topologies and their mixing matrices (design/ref/federated-decentralized.md §3.1):
// ring, 2-D torus, static exponential, one-peer exponential, complete, random d-regular and
// Erdős–Rényi graphs, Metropolis–Hastings weights, and the spectral gap of W.
//
// Nodes are numbered 0..N−1. Every static graph is undirected and weighted by Metropolis–Hastings,
// W_ij = 1/(1 + max(d_i, d_j)) on an edge, W_ii = 1 − Σ_{j≠i} W_ij, so W is symmetric and doubly
// stochastic. The one-peer exponential graph is time-varying and directed: at round t node i
// averages ½/½ with node (i + 2^(t mod K)) mod N, K = ⌊log₂(N−1)⌋ + 1 (the number of powers of two
// below N), so W_t is a circulant permutation average, doubly stochastic but not symmetric.
// Random graphs are drawn from loco::Rng keyed by (seed, round) when redrawn every round, by the
// seed alone otherwise; every draw is the same on any machine.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loco::gossip {

enum class TopologyKind { Ring, Torus, Exponential, OnePeerExponential, Complete, RandomRegular, ErdosRenyi };

struct Topology {
  TopologyKind kind = TopologyKind::Ring;
  std::int64_t degree = 0;  // random-regular: d
  double p = 0;             // erdos-renyi: edge probability in (0, 1]
  std::int64_t rows = 0;    // torus: rows (0: the largest divisor of N that is at most √N)
  bool redraw = false;      // random graphs: a new graph every round, keyed by (seed, round)
};

// Parses "ring", "torus[:rows=R]", "exponential", "one-peer-exponential", "complete",
// "random-regular:d=D[,redraw=0|1]", "erdos-renyi:p=P[,redraw=0|1]". Throws Error(Usage) naming
// the text and what is expected.
Topology parse_topology(std::string_view text);
// The topology names parse_topology takes.
std::vector<std::string> topology_names();
// The canonical text of a topology (parse_topology(format_topology(t)) == t).
std::string format_topology(const Topology& t);
// True when W changes with the round (one-peer exponential; random graphs with redraw).
bool time_varying(const Topology& t) noexcept;
// True when W is symmetric (every topology but the one-peer exponential graph).
bool symmetric(const Topology& t) noexcept;

// Torus rows × columns for N nodes: rows as given (it must divide N), else the largest divisor of
// N not above √N (so 12 → 3 × 4, a prime N → 1 × N, which is a ring). Throws Error(Usage).
std::pair<std::int64_t, std::int64_t> torus_shape(const Topology& t, std::int64_t nodes);

// The nodes whose models node i mixes with at round `round`, for every i: ascending, without i.
// Undirected graphs list each edge at both ends. Random graphs are redrawn until connected (at
// most 1000 draws; random d-regular graphs by pairing random half-edges (the configuration model), a pairing that gets stuck on
// a self-loop or a repeated edge starting over). Throws Error(Usage) for N < 1, more than 2^26 edges
// (or, for the random graphs, node pairs), a topology that
// does not exist on N nodes (d ≥ N, N·d odd, torus rows that do not divide N) or random graphs
// that stay disconnected for 1000 draws.
std::vector<std::vector<std::int64_t>> neighbours(const Topology& t, std::int64_t nodes, std::uint64_t seed,
                                                  std::int64_t round);

// One nonzero entry W_ij of a row of the mixing matrix.
struct Weight {
  std::int64_t node = 0;
  double w = 0;
};

// A sparse mixing matrix: rows[i] holds the nonzero W_ij, ascending j, the diagonal included.
struct MixingMatrix {
  std::int64_t n = 0;
  std::vector<std::vector<Weight>> rows;
  // W_ij (0 when absent).
  double at(std::int64_t i, std::int64_t j) const;
  // Row-major dense N × N copy.
  std::vector<double> dense() const;
};

// Metropolis–Hastings weights on an undirected graph given by its neighbour lists (each edge at
// both ends). Throws Error(Internal) for lists that are not symmetric.
MixingMatrix metropolis_hastings(const std::vector<std::vector<std::int64_t>>& adjacency);

// The mixing matrix of a topology at a round: Metropolis–Hastings on neighbours(), and ½ on the
// diagonal and on the one peer for the one-peer exponential graph.
MixingMatrix mixing_matrix(const Topology& t, std::int64_t nodes, std::uint64_t seed, std::int64_t round);

// True when the undirected graph is connected (a single node is).
bool connected(const std::vector<std::vector<std::int64_t>>& adjacency);

// ρ = ‖W − 11ᵀ/N‖₂, the factor by which one mixing step contracts the distance to consensus at
// worst. For a symmetric doubly stochastic W it is max(|λ₂|, |λ_N|), so the spectral gap is
// 1 − ρ = 1 − |λ₂| in the usual sense; for the (normal, circulant) one-peer matrices it is the
// second largest eigenvalue modulus too. Dense eigen/singular value decomposition: O(N³), so at
// most kMaxSpectralNodes nodes (check_spectral_nodes throws Error(Usage) above, before any work).
inline constexpr std::int64_t kMaxSpectralNodes = 2048;
void check_spectral_nodes(std::int64_t nodes);
double mixing_rho(const MixingMatrix& w);
inline double spectral_gap(const MixingMatrix& w) { return 1.0 - mixing_rho(w); }

}  // namespace loco::gossip
