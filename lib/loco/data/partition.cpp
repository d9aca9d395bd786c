// Partitioners, the held-out split and the token-stream split (definitions in partition.hpp).
#include "loco/data/partition.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

#include <nlohmann/json.hpp>

#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/core/rng.hpp"
#include "loco/core/spec.hpp"
#include "loco/data/random.hpp"

namespace loco::data {

namespace {

// The scheme's name in ASCII, packed big-endian: the stream id of its Rng.
constexpr std::uint64_t tag(std::string_view name) {
  std::uint64_t v = 0;
  for (char c : name.substr(0, 8)) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

void check_clients(int clients, std::size_t m, const char* scheme) {
  if (clients < 1) throw_error(ErrorKind::Usage, "{}: {} clients; need at least 1", scheme, clients);
  if (static_cast<std::size_t>(clients) > m)
    throw_error(ErrorKind::Usage, "{}: {} clients but only {} examples to share", scheme, clients, m);
}

// Checks that every pool entry is a distinct valid index with a label in [0, classes) (labels may
// be empty for label-free schemes, then only n bounds are checked).
void check_pool(std::span<const std::int32_t> labels, std::int32_t classes, std::span<const std::int64_t> pool,
                const char* scheme) {
  const auto n = static_cast<std::int64_t>(labels.size());
  std::vector<char> seen(labels.size(), 0);
  for (std::int64_t i : pool) {
    if (i < 0 || i >= n) throw_error(ErrorKind::Usage, "{}: pool index {} outside [0, {})", scheme, i, n);
    if (seen[static_cast<std::size_t>(i)]++) throw_error(ErrorKind::Usage, "{}: pool lists index {} twice", scheme, i);
    const std::int32_t y = labels[static_cast<std::size_t>(i)];
    if (y < 0 || y >= classes)
      throw_error(ErrorKind::BadInput, "{}: example {} has label {}, outside [0, {})", scheme, i, y, classes);
  }
}

// Pool entries of each class, in pool order.
std::vector<IndexList> group_by_class(std::span<const std::int32_t> labels, std::int32_t classes,
                                      std::span<const std::int64_t> pool) {
  std::vector<IndexList> by_class(static_cast<std::size_t>(classes));
  for (std::int64_t i : pool) by_class[static_cast<std::size_t>(labels[static_cast<std::size_t>(i)])].push_back(i);
  return by_class;
}

void shuffle_clients(Partition& p, Rng& rng) {
  for (IndexList& c : p.clients) shuffle(c, rng);
}

std::string describe(nlohmann::json j, int clients, std::uint64_t seed) {
  j["clients"] = clients;
  j["seed"] = seed;
  return j.dump();
}

}  // namespace

// ---- Held-out split --------------------------------------------------------------------------

std::int64_t holdout_count(std::int64_t n, double fraction) {
  if (!(fraction >= 0.0 && fraction < 1.0)) throw_error(ErrorKind::Usage, "test fraction {} outside [0, 1)", fraction);
  return static_cast<std::int64_t>(std::floor(fraction * static_cast<double>(n)));
}

Holdout split_holdout(std::int64_t n, std::int64_t test_count, std::uint64_t seed) {
  if (n < 1) throw_error(ErrorKind::Usage, "held-out split of an empty dataset");
  if (test_count < 0 || test_count >= n)
    throw_error(ErrorKind::Usage, "{} test examples asked of {}; need 0 ≤ test < {}", test_count, n, n);
  Rng rng(seed, {tag("holdout")});
  IndexList perm = permutation(n, rng);
  Holdout h;
  h.test.assign(perm.begin(), perm.begin() + test_count);
  std::sort(h.test.begin(), h.test.end());
  h.pool.assign(perm.begin() + test_count, perm.end());
  return h;
}

// ---- IID -------------------------------------------------------------------------------------

Partition partition_iid(std::span<const std::int64_t> pool, int clients, std::uint64_t seed) {
  check_clients(clients, pool.size(), "iid");
  Partition p;
  p.clients.resize(static_cast<std::size_t>(clients));
  const std::size_t base = pool.size() / static_cast<std::size_t>(clients);
  const std::size_t extra = pool.size() % static_cast<std::size_t>(clients);
  std::size_t at = 0;
  for (std::size_t j = 0; j < p.clients.size(); ++j) {
    const std::size_t len = base + (j < extra ? 1 : 0);
    p.clients[j].assign(pool.begin() + static_cast<std::ptrdiff_t>(at),
                        pool.begin() + static_cast<std::ptrdiff_t>(at + len));
    at += len;
  }
  p.description = describe({{"scheme", "iid"}}, clients, seed);
  return p;
}

// ---- Dirichlet over clients ------------------------------------------------------------------

Partition partition_dirichlet(std::span<const std::int32_t> labels, std::int32_t classes,
                              std::span<const std::int64_t> pool, int clients, const DirichletOptions& options,
                              std::uint64_t seed) {
  check_clients(clients, pool.size(), "dirichlet");
  check_pool(labels, classes, pool, "dirichlet");
  const auto P = static_cast<std::size_t>(clients);
  std::vector<double> alpha;
  if (options.alpha.size() == 1) {
    alpha.assign(P, options.alpha[0]);
  } else if (options.alpha.size() == P) {
    alpha = options.alpha;
  } else {
    throw_error(ErrorKind::Usage, "dirichlet: {} alpha values for {} clients; give one or one per client",
                options.alpha.size(), clients);
  }
  for (double a : alpha)
    if (!(a > 0.0) || !std::isfinite(a)) throw_error(ErrorKind::Usage, "dirichlet: alpha {} must be finite and > 0", a);
  if (options.max_retries < 0) throw_error(ErrorKind::Usage, "dirichlet: negative retry count {}", options.max_retries);
  const std::vector<IndexList> by_class = group_by_class(labels, classes, pool);
  const double average = static_cast<double>(pool.size()) / static_cast<double>(clients);

  Rng rng(seed, {tag("dirichlet")});
  Partition p;
  std::vector<double> logw(P), w(P);
  for (int attempt = 0;; ++attempt) {
    p.clients.assign(P, {});
    for (const IndexList& members : by_class) {
      if (members.empty()) continue;
      for (std::size_t j = 0; j < P; ++j) logw[j] = log_gamma_variate(rng, alpha[j]);
      // Normalizing in log space over the eligible clients equals zeroing the others and
      // renormalizing p, without underflowing to 0/0 when alpha is tiny.
      double top = -INFINITY;
      for (std::size_t j = 0; j < P; ++j) {
        const bool eligible = !options.self_balancing || static_cast<double>(p.clients[j].size()) <= average;
        w[j] = eligible ? 1.0 : 0.0;
        if (eligible) top = std::max(top, logw[j]);
      }
      double sum = 0.0;
      for (std::size_t j = 0; j < P; ++j) {
        w[j] = w[j] > 0.0 ? std::exp(logw[j] - top) : 0.0;
        sum += w[j];
      }
      // The rest after the cuts goes to the last client with p_j > 0 (flwr: the last client), so
      // that a client with p_j = 0 gets nothing even when the cumulative sum rounds below 1.
      std::size_t last = P - 1;
      while (w[last] == 0.0) --last;
      const auto nk = static_cast<std::int64_t>(members.size());
      double cumulative = 0.0;
      std::int64_t begin = 0;
      for (std::size_t j = 0; j < P; ++j) {
        std::int64_t end = nk;
        if (j != last) {
          cumulative += w[j] / sum;
          end = w[j] == 0.0 ? begin
                            : std::clamp(static_cast<std::int64_t>(cumulative * static_cast<double>(nk)), begin, nk);
        }
        p.clients[j].insert(p.clients[j].end(), members.begin() + begin, members.begin() + end);
        begin = end;
      }
    }
    std::size_t smallest = pool.size();
    for (const IndexList& c : p.clients) smallest = std::min(smallest, c.size());
    p.attempts = attempt + 1;
    if (static_cast<std::int64_t>(smallest) >= options.min_partition_size) break;
    if (attempt == options.max_retries)
      throw_error(ErrorKind::Usage,
                  "dirichlet: after {} draws some client still has {} examples, below the minimum {}; raise alpha "
                  "or lower the minimum partition size",
                  attempt + 1, smallest, options.min_partition_size);
    log::info("dirichlet: draw {} left a client with {} examples (< {}); redrawing", attempt + 1, smallest,
              options.min_partition_size);
  }
  if (options.shuffle) shuffle_clients(p, rng);
  p.description = describe({{"scheme", "dirichlet"},
                            {"alpha", options.alpha},
                            {"min_partition_size", options.min_partition_size},
                            {"max_retries", options.max_retries},
                            {"self_balancing", options.self_balancing},
                            {"shuffle", options.shuffle},
                            {"attempts", p.attempts}},
                           clients, seed);
  return p;
}

// ---- Dirichlet over classes per client -------------------------------------------------------

Partition partition_class_dirichlet(std::span<const std::int32_t> labels, std::int32_t classes,
                                    std::span<const std::int64_t> pool, int clients,
                                    const ClassDirichletOptions& options, std::uint64_t seed) {
  check_clients(clients, pool.size(), "class-dirichlet");
  check_pool(labels, classes, pool, "class-dirichlet");
  if (!(options.alpha > 0.0) || !std::isfinite(options.alpha))
    throw_error(ErrorKind::Usage, "class-dirichlet: alpha {} must be finite and > 0", options.alpha);
  const auto P = static_cast<std::size_t>(clients);
  const auto C = static_cast<std::size_t>(classes);
  const auto m = static_cast<std::int64_t>(pool.size());
  std::vector<std::int64_t> sizes;
  if (options.sizes.empty()) {
    sizes.assign(P, m / clients);
  } else if (options.sizes.size() == 1) {
    sizes.assign(P, options.sizes[0]);
  } else if (options.sizes.size() == P) {
    sizes = options.sizes;
  } else {
    throw_error(ErrorKind::Usage, "class-dirichlet: {} sizes for {} clients; give one or one per client",
                options.sizes.size(), clients);
  }
  std::int64_t total = 0;
  for (std::int64_t s : sizes) {
    if (s < 1 || s > m)
      throw_error(ErrorKind::Usage, "class-dirichlet: client size {} outside [1, {}] (the pool)", s, m);
    total += s;
  }
  if (options.disjoint && total > m)
    throw_error(ErrorKind::Usage, "class-dirichlet: disjoint clients need {} examples, the pool has {}", total, m);

  std::vector<IndexList> by_class = group_by_class(labels, classes, pool);
  std::vector<std::int64_t> remaining(C);
  for (std::size_t c = 0; c < C; ++c) remaining[c] = static_cast<std::int64_t>(by_class[c].size());
  const std::vector<double> alpha(C, options.alpha);
  constexpr double kFloor = 1e-12;  // the paper's additive floor on per-example weights

  Rng rng(seed, {tag("classdir")});
  Partition p;
  p.clients.resize(P);
  p.class_weights.resize(P);
  std::vector<char> used(labels.size(), 0);
  for (std::size_t i = 0; i < P; ++i) {
    std::vector<double>& w = p.class_weights[i];
    w = dirichlet(rng, alpha);
    if (!options.disjoint)
      for (std::size_t c = 0; c < C; ++c) remaining[c] = static_cast<std::int64_t>(by_class[c].size());
    IndexList& mine = p.clients[i];
    mine.reserve(static_cast<std::size_t>(sizes[i]));
    for (std::int64_t t = 0; t < sizes[i]; ++t) {
      double mass = 0.0;
      for (std::size_t c = 0; c < C; ++c) mass += (w[c] + kFloor) * static_cast<double>(remaining[c]);
      const double u = rng.uniform_double() * mass;
      std::size_t pick = C;
      double acc = 0.0;
      for (std::size_t c = 0; c < C; ++c) {
        if (remaining[c] == 0) continue;
        acc += (w[c] + kFloor) * static_cast<double>(remaining[c]);
        pick = c;  // the last class with examples left, should rounding carry u past the end
        if (u < acc) break;
      }
      IndexList& members = by_class[pick];
      const auto last = static_cast<std::size_t>(remaining[pick] - 1);
      const auto j = static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(remaining[pick])));
      std::swap(members[j], members[last]);
      mine.push_back(members[last]);
      used[static_cast<std::size_t>(members[last])] = 1;
      --remaining[pick];
    }
  }
  for (std::int64_t i : pool)
    if (!used[static_cast<std::size_t>(i)]) p.unused.push_back(i);
  p.description = describe(
      {{"scheme", "class-dirichlet"}, {"alpha", options.alpha}, {"sizes", sizes}, {"disjoint", options.disjoint}},
      clients, seed);
  return p;
}

// ---- Pathological ----------------------------------------------------------------------------

Partition partition_pathological(std::span<const std::int32_t> labels, std::int32_t classes,
                                 std::span<const std::int64_t> pool, int clients, const PathologicalOptions& options,
                                 std::uint64_t seed) {
  check_clients(clients, pool.size(), "pathological");
  check_pool(labels, classes, pool, "pathological");
  const std::vector<IndexList> by_class = group_by_class(labels, classes, pool);
  std::vector<std::int32_t> present;
  for (std::int32_t c = 0; c < classes; ++c)
    if (!by_class[static_cast<std::size_t>(c)].empty()) present.push_back(c);
  const auto U = static_cast<std::int32_t>(present.size());
  const std::int32_t k = options.classes_per_client;
  if (k < 1 || k > U)
    throw_error(ErrorKind::Usage, "pathological: {} classes per client, but the pool has {} classes", k, U);

  Rng rng(seed, {tag("pathological")});
  const auto P = static_cast<std::size_t>(clients);
  std::vector<std::vector<std::int32_t>> held(P);
  for (std::size_t p = 0; p < P; ++p) {
    std::vector<std::int32_t>& h = held[p];
    switch (options.assignment) {
      case ClassAssignment::Random: {
        std::vector<std::int32_t> pick = present;
        for (std::int32_t i = 0; i < k; ++i) {
          const auto j =
              static_cast<std::size_t>(i) + static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(U - i)));
          std::swap(pick[static_cast<std::size_t>(i)], pick[j]);
        }
        h.assign(pick.begin(), pick.begin() + k);
        break;
      }
      case ClassAssignment::Deterministic:
        for (std::int32_t i = 0; i < k; ++i)
          h.push_back(present[(p + static_cast<std::size_t>(i)) % static_cast<std::size_t>(U)]);
        break;
      case ClassAssignment::FirstDeterministic:
        h.push_back(present[p % static_cast<std::size_t>(U)]);
        while (static_cast<std::int32_t>(h.size()) < k) {
          const std::int32_t c = present[static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(U)))];
          if (std::find(h.begin(), h.end(), c) == h.end()) h.push_back(c);
        }
        break;
    }
  }
  std::vector<std::int64_t> holders(static_cast<std::size_t>(classes), 0);
  for (const auto& h : held)
    for (std::int32_t c : h) ++holders[static_cast<std::size_t>(c)];
  for (std::int32_t c : present) {
    const auto s = holders[static_cast<std::size_t>(c)];
    const auto nk = static_cast<std::int64_t>(by_class[static_cast<std::size_t>(c)].size());
    if (s > nk)
      throw_error(ErrorKind::Usage, "pathological: class {} is held by {} clients but has only {} examples", c, s, nk);
  }

  Partition out;
  out.clients.resize(P);
  for (std::int32_t c : present) {
    const IndexList& members = by_class[static_cast<std::size_t>(c)];
    const std::int64_t s = holders[static_cast<std::size_t>(c)];
    if (s == 0) {
      out.unused.insert(out.unused.end(), members.begin(), members.end());
      continue;
    }
    const auto nk = static_cast<std::int64_t>(members.size());
    const std::int64_t base = nk / s, extra = nk % s;
    std::int64_t piece = 0, at = 0;
    for (std::size_t p = 0; p < P; ++p) {
      if (std::find(held[p].begin(), held[p].end(), c) == held[p].end()) continue;
      const std::int64_t len = base + (piece < extra ? 1 : 0);
      out.clients[p].insert(out.clients[p].end(), members.begin() + at, members.begin() + at + len);
      at += len;
      ++piece;
    }
  }
  if (!out.unused.empty())
    log::warn("pathological: {} examples of classes no client holds are left out", out.unused.size());
  if (options.shuffle) shuffle_clients(out, rng);
  static constexpr const char* kAssign[] = {"random", "deterministic", "first-deterministic"};
  out.description = describe({{"scheme", "pathological"},
                              {"classes_per_client", k},
                              {"assignment", kAssign[static_cast<int>(options.assignment)]},
                              {"shuffle", options.shuffle}},
                             clients, seed);
  return out;
}

// ---- Shards ----------------------------------------------------------------------------------

Partition partition_shards(std::span<const std::int32_t> labels, std::span<const std::int64_t> pool, int clients,
                           const ShardOptions& options, std::uint64_t seed) {
  check_clients(clients, pool.size(), "shards");
  std::int32_t classes = 0;
  for (std::int32_t y : labels) classes = std::max(classes, y + 1);
  check_pool(labels, classes, pool, "shards");
  const auto m = static_cast<std::int64_t>(pool.size());
  const std::int64_t s = options.shards_per_client;
  if (s < 1) throw_error(ErrorKind::Usage, "shards: {} shards per client; need at least 1", s);
  const std::int64_t used_shards = static_cast<std::int64_t>(clients) * s;
  const std::int64_t S = options.shard_size > 0 ? options.shard_size : m / used_shards;
  if (S < 1 || used_shards * S > m)
    throw_error(ErrorKind::Usage, "shards: {} clients × {} shards × {} examples exceed the {} examples", clients, s,
                std::max<std::int64_t>(S, 1), m);
  IndexList sorted(pool.begin(), pool.end());
  std::stable_sort(sorted.begin(), sorted.end(), [&](std::int64_t a, std::int64_t b) {
    return labels[static_cast<std::size_t>(a)] < labels[static_cast<std::size_t>(b)];
  });
  const std::int64_t usable = m / S;
  Rng rng(seed, {tag("shards")});
  const IndexList perm = permutation(usable, rng);
  Partition p;
  p.clients.resize(static_cast<std::size_t>(clients));
  auto shard = [&](std::int64_t t) { return std::pair(sorted.begin() + t * S, sorted.begin() + (t + 1) * S); };
  for (std::int64_t c = 0; c < clients; ++c)
    for (std::int64_t q = 0; q < s; ++q) {
      const auto [b, e] = shard(perm[static_cast<std::size_t>(c * s + q)]);
      p.clients[static_cast<std::size_t>(c)].insert(p.clients[static_cast<std::size_t>(c)].end(), b, e);
    }
  for (std::int64_t q = used_shards; q < usable; ++q) {
    const auto [b, e] = shard(perm[static_cast<std::size_t>(q)]);
    p.unused.insert(p.unused.end(), b, e);
  }
  p.unused.insert(p.unused.end(), sorted.begin() + usable * S, sorted.end());
  if (options.shuffle) shuffle_clients(p, rng);
  p.description = describe(
      {{"scheme", "shards"}, {"shards_per_client", s}, {"shard_size", S}, {"shuffle", options.shuffle}}, clients, seed);
  return p;
}

// ---- Quantity skew ---------------------------------------------------------------------------

Partition partition_quantity(std::span<const std::int64_t> pool, int clients, const QuantityOptions& options,
                             std::uint64_t seed) {
  check_clients(clients, pool.size(), "quantity");
  const auto P = static_cast<std::size_t>(clients);
  const auto m = static_cast<std::int64_t>(pool.size());
  Rng rng(seed, {tag("quantity")});
  std::vector<double> f(P);
  std::vector<std::int64_t> sizes(P);
  Partition p;
  const char* shape = "power";
  for (int attempt = 0;; ++attempt) {
    switch (options.shape) {
      case QuantityShape::Power:
        if (!std::isfinite(options.exponent)) throw_error(ErrorKind::Usage, "quantity: exponent must be finite");
        for (std::size_t i = 0; i < P; ++i) f[i] = std::pow(static_cast<double>(i + 1), options.exponent);
        break;
      case QuantityShape::Exponential:
        shape = "exponential";
        // e^i scaled by e^−P: the same ratios, no overflow for large P.
        for (std::size_t i = 0; i < P; ++i) f[i] = std::exp(static_cast<double>(i + 1) - static_cast<double>(P));
        break;
      case QuantityShape::Dirichlet: {
        shape = "dirichlet";
        if (!(options.alpha > 0.0) || !std::isfinite(options.alpha))
          throw_error(ErrorKind::Usage, "quantity: alpha {} must be finite and > 0", options.alpha);
        const std::vector<double> alpha(P, options.alpha);
        dirichlet(rng, alpha, f);
        break;
      }
    }
    const double sum = std::accumulate(f.begin(), f.end(), 0.0);
    std::int64_t assigned = 0;
    for (std::size_t i = 0; i < P; ++i) {
      sizes[i] = std::min(m, static_cast<std::int64_t>(f[i] / sum * static_cast<double>(m)));
      assigned += sizes[i];
    }
    sizes[P - 1] += m - assigned;
    const std::int64_t smallest = *std::min_element(sizes.begin(), sizes.end());
    p.attempts = attempt + 1;
    if (smallest >= std::max<std::int64_t>(options.min_partition_size, 1)) break;
    if (options.shape != QuantityShape::Dirichlet || attempt >= options.max_retries)
      throw_error(ErrorKind::Usage, "quantity: a client would get {} examples (minimum {}) of {} over {} clients{}",
                  smallest, std::max<std::int64_t>(options.min_partition_size, 1), m, clients,
                  options.shape == QuantityShape::Dirichlet ? fmt::format(" after {} draws", attempt + 1) : "");
  }
  p.clients.resize(P);
  std::int64_t at = 0;
  for (std::size_t i = 0; i < P; ++i) {
    p.clients[i].assign(pool.begin() + at, pool.begin() + at + sizes[i]);
    at += sizes[i];
  }
  nlohmann::json j{{"scheme", "quantity"}, {"shape", shape}, {"sizes", sizes}, {"attempts", p.attempts}};
  if (options.shape == QuantityShape::Power) j["exponent"] = options.exponent;
  if (options.shape == QuantityShape::Dirichlet) {
    j["alpha"] = options.alpha;
    j["min_partition_size"] = options.min_partition_size;
  }
  p.description = describe(std::move(j), clients, seed);
  return p;
}

// ---- Spec parsing ----------------------------------------------------------------------------

namespace {

constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();

// The keys each scheme accepts, read into its options.
void read_options(PartitionSpec& out, Spec& s) {
  using Scheme = PartitionSpec::Scheme;
  switch (out.scheme) {
    case Scheme::Iid: return;
    case Scheme::Dirichlet: {
      auto& o = out.dirichlet;
      o.alpha = s.take_reals("alpha", '/').value_or(o.alpha);
      o.min_partition_size = s.integer("min-size", o.min_partition_size, 0);
      o.max_retries = static_cast<int>(s.integer("retries", o.max_retries, 0, kIntMax));
      o.self_balancing = s.boolean("self-balancing", o.self_balancing);
      o.shuffle = s.boolean("shuffle", o.shuffle);
      return;
    }
    case Scheme::ClassDirichlet: {
      auto& o = out.class_dirichlet;
      o.alpha = s.real("alpha", o.alpha);
      o.sizes = s.take_integers("size", '/').value_or(o.sizes);
      o.disjoint = s.boolean("disjoint", o.disjoint);
      return;
    }
    case Scheme::Pathological: {
      auto& o = out.pathological;
      o.classes_per_client = static_cast<std::int32_t>(s.integer("k", o.classes_per_client, 1, kIntMax));
      if (s.has("assign")) {
        const std::string a = s.choice("assign", "", {"random", "deterministic", "first-deterministic"});
        o.assignment = a == "random"          ? ClassAssignment::Random
                       : a == "deterministic" ? ClassAssignment::Deterministic
                                              : ClassAssignment::FirstDeterministic;
      }
      o.shuffle = s.boolean("shuffle", o.shuffle);
      return;
    }
    case Scheme::Shards: {
      auto& o = out.shards;
      o.shards_per_client = static_cast<int>(s.integer("per-client", o.shards_per_client, 1, kIntMax));
      o.shard_size = s.integer("size", o.shard_size, 0);
      o.shuffle = s.boolean("shuffle", o.shuffle);
      return;
    }
    case Scheme::Quantity: {
      auto& o = out.quantity;
      // linear and square are power with exponent 1 and 2 (an exponent= given as well wins).
      const std::string shape = s.choice("shape", "", {"linear", "square", "power", "exponential", "dirichlet"});
      if (shape == "linear" || shape == "square") {
        o.shape = QuantityShape::Power;
        o.exponent = shape == "linear" ? 1.0 : 2.0;
      } else if (!shape.empty()) {
        o.shape = shape == "power"         ? QuantityShape::Power
                  : shape == "exponential" ? QuantityShape::Exponential
                                           : QuantityShape::Dirichlet;
      }
      o.exponent = s.real("exponent", o.exponent);
      o.alpha = s.real("alpha", o.alpha);
      o.min_partition_size = s.integer("min-size", o.min_partition_size, 0);
      o.max_retries = static_cast<int>(s.integer("retries", o.max_retries, 0, kIntMax));
      return;
    }
  }
}

}  // namespace

namespace {
const std::map<std::string_view, PartitionSpec::Scheme>& schemes() {
  using Scheme = PartitionSpec::Scheme;
  static const std::map<std::string_view, Scheme> kSchemes{{"iid", Scheme::Iid},
                                                           {"dirichlet", Scheme::Dirichlet},
                                                           {"class-dirichlet", Scheme::ClassDirichlet},
                                                           {"pathological", Scheme::Pathological},
                                                           {"shards", Scheme::Shards},
                                                           {"quantity", Scheme::Quantity}};
  return kSchemes;
}
}  // namespace

std::vector<std::string> partition_names() {
  std::vector<std::string> names;
  for (const auto& [name, scheme] : schemes()) names.emplace_back(name);
  return names;
}

PartitionSpec parse_partition_spec(std::string_view text) {
  const auto& kSchemes = schemes();
  Spec spec(text, "partition");
  PartitionSpec out;
  const auto scheme = kSchemes.find(spec.name());
  if (scheme == kSchemes.end())
    throw_error(ErrorKind::Usage,
                "unknown partition scheme '{}'; expected iid, dirichlet, class-dirichlet, pathological, shards or "
                "quantity",
                spec.name());
  out.scheme = scheme->second;
  read_options(out, spec);
  spec.done();
  return out;
}

Partition partition(const PartitionSpec& spec, std::span<const std::int32_t> labels, std::int32_t classes,
                    std::span<const std::int64_t> pool, int clients, std::uint64_t seed) {
  using Scheme = PartitionSpec::Scheme;
  switch (spec.scheme) {
    case Scheme::Iid: return partition_iid(pool, clients, seed);
    case Scheme::Dirichlet: return partition_dirichlet(labels, classes, pool, clients, spec.dirichlet, seed);
    case Scheme::ClassDirichlet:
      return partition_class_dirichlet(labels, classes, pool, clients, spec.class_dirichlet, seed);
    case Scheme::Pathological: return partition_pathological(labels, classes, pool, clients, spec.pathological, seed);
    case Scheme::Shards: return partition_shards(labels, pool, clients, spec.shards, seed);
    case Scheme::Quantity: return partition_quantity(pool, clients, spec.quantity, seed);
  }
  throw_error(ErrorKind::Internal, "partition: unhandled scheme {}", static_cast<int>(spec.scheme));
}

// ---- Token streams ---------------------------------------------------------------------------

TextSplit split_text(std::int64_t length, int workers, double test_fraction, TextLayout layout, std::int64_t block,
                     std::int64_t min_tokens) {
  if (workers < 1) throw_error(ErrorKind::Usage, "text split: {} workers; need at least 1", workers);
  const std::int64_t tail = holdout_count(length, test_fraction);
  const std::int64_t train = length - tail;
  TextSplit out;
  out.test = {train, length};
  out.workers.resize(static_cast<std::size_t>(workers));
  std::vector<std::int64_t> got(static_cast<std::size_t>(workers), 0);
  if (layout == TextLayout::Contiguous) {
    const std::int64_t base = train / workers, extra = train % workers;
    std::int64_t at = 0;
    for (std::int64_t j = 0; j < workers; ++j) {
      const std::int64_t len = base + (j < extra ? 1 : 0);
      out.workers[static_cast<std::size_t>(j)].push_back({at, at + len});
      got[static_cast<std::size_t>(j)] = len;
      at += len;
    }
  } else {
    if (block < 1) throw_error(ErrorKind::Usage, "text split: interleaved block size {}; need at least 1", block);
    std::int64_t b = 0;
    for (std::int64_t at = 0; at < train; at += block, ++b) {
      const auto j = static_cast<std::size_t>(b % workers);
      out.workers[j].push_back({at, std::min(at + block, train)});
      got[j] += std::min(at + block, train) - at;
    }
  }
  for (std::size_t j = 0; j < got.size(); ++j)
    if (got[j] < std::max<std::int64_t>(min_tokens, 1))
      throw_error(ErrorKind::Usage, "text split: worker {} would get {} tokens (minimum {}) of {} training tokens", j,
                  got[j], std::max<std::int64_t>(min_tokens, 1), train);
  nlohmann::json j{{"scheme", layout == TextLayout::Contiguous ? "contiguous" : "interleaved"},
                   {"workers", workers},
                   {"test_fraction", test_fraction},
                   {"test_tokens", tail}};
  if (layout == TextLayout::Interleaved) j["block"] = block;
  out.description = j.dump();
  return out;
}

TokenData gather(const TokenData& data, std::span<const TokenRange> ranges) {
  TokenData out;
  out.vocab = data.vocab;
  out.source = data.source;
  std::size_t total = 0;
  const auto len = static_cast<std::int64_t>(data.tokens.size());
  for (const TokenRange& r : ranges) {
    if (r.begin < 0 || r.end < r.begin || r.end > len)
      throw_error(ErrorKind::Usage, "{}: token range [{}, {}) outside [0, {})", data.source, r.begin, r.end, len);
    total += static_cast<std::size_t>(r.end - r.begin);
  }
  out.tokens.reserve(total);
  for (const TokenRange& r : ranges)
    out.tokens.insert(out.tokens.end(), data.tokens.begin() + r.begin, data.tokens.begin() + r.end);
  return out;
}

}  // namespace loco::data
