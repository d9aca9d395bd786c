// Partitioners that split a dataset among clients (iid, Dirichlet label skew in both conventions,
// pathological k classes, McMahan shards, quantity skew), the held-out test split taken before
// them, and the split of a token stream among workers. Definitions follow flwr-datasets and the
// single-merge paper (design/ref/federated-decentralized.md §2) with loco's own RNG.
//
// Indices: `labels` is indexed by dataset index; `pool` lists the dataset indices to partition
// (the non-test part) in the order the partitioner reads them. split_holdout() returns the pool in
// a seeded random order, which plays the role of the shuffle flwr's FederatedDataset applies
// before partitioning; every partitioner is a deterministic function of (labels, pool, options,
// seed). Randomness: each call draws from one stream Rng(seed, {tag}) in a fixed order, where tag is
// the scheme's name in ASCII packed big-endian into 64 bits ("holdout", "iid", "dirichle",
// "classdir", "patholog", "shards", "quantity").
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loco/data/dataset.hpp"

namespace loco::data {

using IndexList = std::vector<std::int64_t>;

// The outcome of a partitioner.
struct Partition {
  std::vector<IndexList> clients;  // dataset indices of each client
  // Pool indices no client received (pathological classes nobody holds, shard remainders, the
  // leftover of class-Dirichlet sampling); empty for iid, Dirichlet and quantity skew.
  IndexList unused;
  // Class mixture drawn for each client (class-Dirichlet only; clients × classes).
  std::vector<std::vector<double>> class_weights;
  int attempts = 1;         // draws made before the minimum size held (Dirichlet schemes)
  std::string description;  // JSON object: scheme, its parameters, clients, seed (the `partition` attribute)
};

// ---- Held-out test split ---------------------------------------------------------------------
struct Holdout {
  IndexList pool;  // the other n − test_count indices, in seeded random order
  IndexList test;  // test_count indices, ascending
};
// ⌊fraction·n⌋; throws Error(Usage) unless 0 ≤ fraction < 1.
std::int64_t holdout_count(std::int64_t n, double fraction);
// π = permutation of 0..n−1 (Fisher–Yates on Rng(seed, {"holdout"})); test = the first test_count
// of π sorted, pool = the rest of π in order. Throws Error(Usage) unless 0 ≤ test_count < n.
Holdout split_holdout(std::int64_t n, std::int64_t test_count, std::uint64_t seed);

// ---- IID -------------------------------------------------------------------------------------
// flwr IidPartitioner: client j gets a contiguous run of the pool, the first (m mod P) clients
// one example more than ⌊m/P⌋. No randomness (the pool is already in random order); seed is
// recorded only. Throws Error(Usage) unless 1 ≤ clients ≤ m.
Partition partition_iid(std::span<const std::int64_t> pool, int clients, std::uint64_t seed);

// ---- Dirichlet label skew over clients (flwr DirichletPartitioner; NIID-Bench) ----------------
struct DirichletOptions {
  std::vector<double> alpha{0.5};  // one value for every client, or one per client
  std::int64_t min_partition_size = 10;
  int max_retries = 10;  // redraws after the first (flwr: raise after 11 draws)
  bool self_balancing = false;
  bool shuffle = true;  // shuffle each client's list at the end
};
// For each class k present in the pool (ascending), with I_k its pool indices in pool order and
// n_k = |I_k|: draw p ~ Dir(alpha) over clients; with self_balancing set p_j = 0 for every client
// already holding more than m/P examples and renormalize; cut I_k at ⌊cumsum(p)_j·n_k⌋ and
// append piece j to client j, except that a client with p_j = 0 gets an empty piece and the last
// client with p_j > 0 takes the rest (flwr gives the rest to client P−1, which can hand a client
// that self-balancing excluded the one example lost to rounding). When some client ends below
// min_partition_size, redraw everything (continuing the stream); after max_retries redraws throw
// Error(Usage).
Partition partition_dirichlet(std::span<const std::int32_t> labels, std::int32_t classes,
                              std::span<const std::int64_t> pool, int clients, const DirichletOptions& options,
                              std::uint64_t seed);

// ---- Dirichlet over classes per client (the single-merge paper, "fixed" mode; flwr InnerDirichlet)
struct ClassDirichletOptions {
  double alpha = 0.1;
  // Examples per client: one value for all, one per client, or empty for ⌊m/P⌋ each.
  std::vector<std::int64_t> sizes{};
  // false (the paper): each client samples from the whole pool, so clients may share examples;
  // true: clients draw in turn from what is left, so no example is given twice (InnerDirichlet).
  bool disjoint = false;
};
// For each client i in order: w_i ~ Dir(alpha·1_C) over all C classes; then sizes[i] examples drawn
// one by one without replacement (within the client; across clients too when disjoint), each
// remaining example having probability ∝ w_i[class] + 1e-12 (the paper's floor, so a client can
// always be filled): a class c is chosen with probability ∝ (w_i[c] + 1e-12)·remaining_c, then a
// uniform remaining example of it. Records w_i in class_weights. Throws Error(Usage) when a size
// exceeds what is available.
Partition partition_class_dirichlet(std::span<const std::int32_t> labels, std::int32_t classes,
                                    std::span<const std::int64_t> pool, int clients,
                                    const ClassDirichletOptions& options, std::uint64_t seed);

// ---- Pathological: k classes per client (flwr PathologicalPartitioner) -----------------------
enum class ClassAssignment {
  Random,              // k distinct classes drawn uniformly per client
  Deterministic,       // classes (p + i) mod U for i < k
  FirstDeterministic,  // class p mod U, then distinct random ones (the original paper)
};
struct PathologicalOptions {
  std::int32_t classes_per_client = 2;
  ClassAssignment assignment = ClassAssignment::Random;
  bool shuffle = true;
};
// With the U classes present in the pool (ascending), assign each client k of them; each class's
// pool indices (pool order) are cut into as many near-equal pieces as clients hold it (the first
// n mod s pieces one longer) and handed out in client order. Classes no client holds go to unused.
// Throws Error(Usage) when k > U or a class is held by more clients than it has examples.
Partition partition_pathological(std::span<const std::int32_t> labels, std::int32_t classes,
                                 std::span<const std::int64_t> pool, int clients, const PathologicalOptions& options,
                                 std::uint64_t seed);

// ---- McMahan's sort-and-shard split (flwr ShardPartitioner) ----------------------------------
struct ShardOptions {
  int shards_per_client = 2;
  std::int64_t shard_size = 0;  // 0: ⌊m/(P·shards_per_client)⌋
  bool shuffle = true;
};
// Sort the pool by label (stable: ties keep pool order); shard t is sorted[t·S, (t+1)·S). Of the
// ⌊m/S⌋ whole shards, a random permutation's first P·s go s to each client (client p gets
// permutation entries p·s .. p·s+s−1); the rest go to unused. Throws Error(Usage) when
// P·s·S > m or S < 1.
Partition partition_shards(std::span<const std::int32_t> labels, std::span<const std::int64_t> pool, int clients,
                           const ShardOptions& options, std::uint64_t seed);

// ---- Quantity skew ---------------------------------------------------------------------------
enum class QuantityShape {
  Power,        // size_i ∝ i^exponent, i = 1..P (exponent 1: flwr Linear, 2: Square, 0: equal)
  Exponential,  // size_i ∝ e^i (flwr Exponential)
  Dirichlet,    // (size_i/m) ~ Dir(alpha·1_P), redrawn while some size < min_partition_size
};
struct QuantityOptions {
  QuantityShape shape = QuantityShape::Power;
  double exponent = 1.0;
  double alpha = 1.0;
  std::int64_t min_partition_size = 1;
  int max_retries = 10;
};
// sizes_i = ⌊f_i/Σf·m⌋ with the remainder added to the last client (flwr SizePartitioner); client
// i gets the next sizes_i pool entries. Throws Error(Usage) when a size is below
// min_partition_size (after max_retries redraws for Dirichlet).
Partition partition_quantity(std::span<const std::int64_t> pool, int clients, const QuantityOptions& options,
                             std::uint64_t seed);

// ---- One entry point for tools: a scheme and its options from a short spec -------------------
// "iid" | "dirichlet[:alpha=A|A1/A2/...,min-size=N,retries=N,self-balancing=0|1,shuffle=0|1]" |
// "class-dirichlet[:alpha=A,size=N|N1/N2/...,disjoint=0|1]" |
// "pathological[:k=N,assign=random|deterministic|first-deterministic,shuffle=0|1]" |
// "shards[:per-client=N,size=N,shuffle=0|1]" |
// "quantity[:shape=linear|square|exponential|power|dirichlet,exponent=E,alpha=A,min-size=N,retries=N]".
struct PartitionSpec {
  enum class Scheme { Iid, Dirichlet, ClassDirichlet, Pathological, Shards, Quantity };
  Scheme scheme = Scheme::Iid;
  DirichletOptions dirichlet;
  ClassDirichletOptions class_dirichlet;
  PathologicalOptions pathological;
  ShardOptions shards;
  QuantityOptions quantity;
};
// Throws Error(Usage) naming the unknown scheme or key, or the value that does not parse.
PartitionSpec parse_partition_spec(std::string_view spec);
// The scheme names parse_partition_spec takes.
std::vector<std::string> partition_names();
// Runs the scheme of spec.
Partition partition(const PartitionSpec& spec, std::span<const std::int32_t> labels, std::int32_t classes,
                    std::span<const std::int64_t> pool, int clients, std::uint64_t seed);

// ---- Token streams ---------------------------------------------------------------------------
struct TokenRange {
  std::int64_t begin = 0, end = 0;  // [begin, end)
};
enum class TextLayout {
  Contiguous,   // worker j gets one run of the training part (the first T mod W runs one longer)
  Interleaved,  // the training part in blocks of `block` tokens, block b to worker b mod W
};
struct TextSplit {
  std::vector<std::vector<TokenRange>> workers;  // each worker's ranges in stream order
  TokenRange test;                               // the held-out tail
  std::string description;                       // JSON, as Partition::description
};
// The last ⌊test_fraction·length⌋ tokens are the test tail; the first T = length − tail are split as
// layout says. Throws Error(Usage) unless 0 ≤ test_fraction < 1, workers ≥ 1, block ≥ 1 when
// interleaved, and every worker gets at least min_tokens tokens.
TextSplit split_text(std::int64_t length, int workers, double test_fraction, TextLayout layout, std::int64_t block = 0,
                     std::int64_t min_tokens = 1);
// The tokens of the ranges concatenated (a worker's shard, or the test tail).
TokenData gather(const TokenData& data, std::span<const TokenRange> ranges);

}  // namespace loco::data
