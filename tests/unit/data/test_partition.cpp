// Tests of the held-out split, the partitioners and the token-stream split: determinism for a seed,
// exact cover of the pool, the definitions re-derived from the documented streams, minimum sizes,
// k classes per client, two shards per client, and label skew that grows as alpha shrinks, with
// tolerances derived from the Dirichlet's exact moments.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <string_view>
#include <vector>

#include "helpers.hpp"
#include "loco/core/rng.hpp"
#include "loco/data/partition.hpp"
#include "loco/data/random.hpp"

namespace {

namespace ld = loco::data;
using loco::ErrorKind;
using loco_test::require_error;

// The stream id partition.hpp documents: the name's first 8 ASCII bytes, big-endian.
std::uint64_t tag(std::string_view name) {
  std::uint64_t v = 0;
  for (char c : name.substr(0, 8)) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

// `per_class[c]` examples of class c, interleaved so that labels are not sorted.
std::vector<std::int32_t> make_labels(const std::vector<std::int64_t>& per_class) {
  std::vector<std::int32_t> labels;
  std::vector<std::int64_t> left = per_class;
  for (bool any = true; any;) {
    any = false;
    for (std::size_t c = 0; c < left.size(); ++c)
      if (left[c] > 0) {
        labels.push_back(static_cast<std::int32_t>(c));
        --left[c];
        any = true;
      }
  }
  return labels;
}

ld::IndexList iota_list(std::int64_t n) {
  ld::IndexList v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), std::int64_t{0});
  return v;
}

// Every pool index is in exactly one client or in unused, and nothing else appears.
void check_cover(const ld::Partition& p, std::span<const std::int64_t> pool) {
  std::map<std::int64_t, int> seen;
  for (const auto& c : p.clients)
    for (std::int64_t i : c) ++seen[i];
  for (std::int64_t i : p.unused) ++seen[i];
  BOOST_REQUIRE_EQUAL(seen.size(), pool.size());
  for (std::int64_t i : pool) {
    BOOST_TEST_INFO("index " << i);
    BOOST_REQUIRE(seen.count(i) == 1);
    BOOST_REQUIRE(seen[i] == 1);
  }
}

std::set<std::int32_t> classes_of(const ld::IndexList& c, const std::vector<std::int32_t>& labels) {
  std::set<std::int32_t> s;
  for (std::int64_t i : c) s.insert(labels[static_cast<std::size_t>(i)]);
  return s;
}

double rising(double a, int k) {
  double r = 1.0;
  for (int i = 0; i < k; ++i) r *= a + i;
  return r;
}

// For p ~ Dir(a·1_K): exact mean and variance of S = Σ_j p_j².
// E S = K·a(a+1)/(A(A+1)), E S² = K·E p⁴ + K(K−1)·E p_j²p_l², with A = K·a.
std::pair<double, double> simpson_moments(double a, int K) {
  const double A = K * a;
  const double es = K * rising(a, 2) / rising(A, 2);
  const double es2 = K * rising(a, 4) / rising(A, 4) + K * (K - 1.0) * rising(a, 2) * rising(a, 2) / rising(A, 4);
  return {es, es2 - es * es};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(holdout)

BOOST_AUTO_TEST_CASE(test_split_is_seeded_disjoint_and_complete) {
  BOOST_TEST(ld::holdout_count(1000, 0.1) == 100);
  BOOST_TEST(ld::holdout_count(999, 0.1) == 99);  // ⌊99.9⌋
  BOOST_TEST(ld::holdout_count(10, 0.0) == 0);
  require_error([] { ld::holdout_count(10, 1.0); }, ErrorKind::Usage, {"outside [0, 1)"});
  const ld::Holdout h = ld::split_holdout(1000, 100, 7);
  BOOST_TEST(h.test.size() == 100u);
  BOOST_TEST(h.pool.size() == 900u);
  BOOST_TEST(std::is_sorted(h.test.begin(), h.test.end()));
  // Definition: the first test_count of the documented permutation, sorted; the rest in order.
  loco::Rng rng(7, {tag("holdout")});
  const ld::IndexList perm = ld::permutation(1000, rng);
  ld::IndexList test(perm.begin(), perm.begin() + 100);
  std::sort(test.begin(), test.end());
  BOOST_TEST(h.test == test);
  BOOST_TEST(h.pool == ld::IndexList(perm.begin() + 100, perm.end()));
  ld::IndexList all = h.pool;
  all.insert(all.end(), h.test.begin(), h.test.end());
  std::sort(all.begin(), all.end());
  BOOST_TEST(all == iota_list(1000));
  BOOST_TEST(ld::split_holdout(1000, 100, 7).pool == h.pool);
  BOOST_TEST(ld::split_holdout(1000, 100, 8).pool != h.pool);
  require_error([] { ld::split_holdout(10, 10, 1); }, ErrorKind::Usage, {"10 test examples"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(iid_and_quantity)

BOOST_AUTO_TEST_CASE(iid_gives_contiguous_runs_first_ones_longer) {
  const ld::IndexList pool = ld::split_holdout(103, 0, 3).pool;
  const ld::Partition p = ld::partition_iid(pool, 5, 3);
  check_cover(p, pool);
  std::size_t at = 0;
  for (std::size_t j = 0; j < 5; ++j) {
    const std::size_t len = j < 3 ? 21 : 20;  // 103 = 5·20 + 3
    BOOST_TEST(p.clients[j] == ld::IndexList(pool.begin() + static_cast<std::ptrdiff_t>(at),
                                             pool.begin() + static_cast<std::ptrdiff_t>(at + len)));
    at += len;
  }
  BOOST_TEST(p.description.find("\"scheme\":\"iid\"") != std::string::npos);
  require_error([&] { ld::partition_iid(pool, 104, 3); }, ErrorKind::Usage, {"104 clients"});
  require_error([&] { ld::partition_iid(pool, 0, 3); }, ErrorKind::Usage, {"0 clients"});
}

BOOST_AUTO_TEST_CASE(quantity_sizes_follow_the_shape_with_the_remainder_last) {
  const ld::IndexList pool = iota_list(100);
  auto sizes = [](const ld::Partition& p) {
    std::vector<std::size_t> s;
    for (const auto& c : p.clients) s.push_back(c.size());
    return s;
  };
  // Linear 1:2:3:4 of 100; square 1:4:9 → ⌊7.14⌋, ⌊28.6⌋, ⌊64.3⌋ + 1; e:e²:e³ → 9, 24, 66 + 1.
  const ld::Partition lin = ld::partition_quantity(pool, 4, {.shape = ld::QuantityShape::Power, .exponent = 1.0}, 1);
  BOOST_TEST((sizes(lin) == std::vector<std::size_t>{10, 20, 30, 40}));
  check_cover(lin, pool);
  BOOST_TEST(lin.clients[1] == ld::IndexList(pool.begin() + 10, pool.begin() + 30));
  const ld::Partition sq = ld::partition_quantity(pool, 3, {.shape = ld::QuantityShape::Power, .exponent = 2.0}, 1);
  BOOST_TEST((sizes(sq) == std::vector<std::size_t>{7, 28, 65}));
  const ld::Partition ex = ld::partition_quantity(pool, 3, {.shape = ld::QuantityShape::Exponential}, 1);
  BOOST_TEST((sizes(ex) == std::vector<std::size_t>{9, 24, 67}));
  // Dirichlet sizes: sum to m, respect the minimum, same for the same seed.
  const ld::QuantityOptions dir{.shape = ld::QuantityShape::Dirichlet, .alpha = 2.0, .min_partition_size = 5};
  const ld::Partition d1 = ld::partition_quantity(pool, 6, dir, 9), d2 = ld::partition_quantity(pool, 6, dir, 9);
  BOOST_TEST(d1.clients == d2.clients);
  check_cover(d1, pool);
  for (const auto& c : d1.clients) BOOST_TEST(c.size() >= 5u);
  // Exponential over 10 clients of 100 gives the first client ⌊100·e/Σ⌋ = 0 < 1.
  require_error([&] { ld::partition_quantity(pool, 10, {.shape = ld::QuantityShape::Exponential}, 1); },
                ErrorKind::Usage, {"0 examples"});
  const ld::QuantityOptions impossible{.shape = ld::QuantityShape::Dirichlet, .alpha = 1.0, .min_partition_size = 30};
  require_error([&] { ld::partition_quantity(pool, 4, impossible, 1); }, ErrorKind::Usage, {"after 11 draws"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(dirichlet_over_clients)

BOOST_AUTO_TEST_CASE(deterministic_complete_and_matches_the_definition) {
  const std::vector<std::int32_t> labels = make_labels({50, 80, 0, 35, 120});
  const ld::IndexList pool = ld::split_holdout(static_cast<std::int64_t>(labels.size()), 0, 11).pool;
  const ld::DirichletOptions opt{.alpha = {0.4}, .min_partition_size = 0, .shuffle = false};
  const ld::Partition p = ld::partition_dirichlet(labels, 5, pool, 4, opt, 21);
  check_cover(p, pool);
  BOOST_TEST(ld::partition_dirichlet(labels, 5, pool, 4, opt, 21).clients == p.clients);
  BOOST_TEST(ld::partition_dirichlet(labels, 5, pool, 4, opt, 22).clients != p.clients);
  BOOST_TEST(p.attempts == 1);

  // Re-derive: for each present class ascending, 4 log-gammas, normalize, cut at ⌊cumsum·n_k⌋.
  loco::Rng rng(21, {tag("dirichlet")});
  std::vector<ld::IndexList> expect(4);
  for (std::int32_t k : {0, 1, 3, 4}) {
    ld::IndexList members;
    for (std::int64_t i : pool)
      if (labels[static_cast<std::size_t>(i)] == k) members.push_back(i);
    std::vector<double> lg(4);
    for (double& v : lg) v = ld::log_gamma_variate(rng, 0.4);
    const double top = *std::max_element(lg.begin(), lg.end());
    double sum = 0;
    for (double& v : lg) sum += (v = std::exp(v - top));
    double cum = 0;
    std::int64_t begin = 0;
    const auto nk = static_cast<std::int64_t>(members.size());
    for (std::size_t j = 0; j < 4; ++j) {
      std::int64_t end = nk;
      if (j < 3) end = static_cast<std::int64_t>((cum += lg[j] / sum) * static_cast<double>(nk));
      expect[j].insert(expect[j].end(), members.begin() + begin, members.begin() + end);
      begin = end;
    }
  }
  BOOST_TEST(p.clients == expect);
}

BOOST_AUTO_TEST_CASE(minimum_size_retries_and_failure) {
  const std::vector<std::int32_t> labels = make_labels(std::vector<std::int64_t>(10, 100));
  const ld::IndexList pool = ld::split_holdout(1000, 0, 1).pool;
  const ld::DirichletOptions opt{.alpha = {0.3}, .min_partition_size = 40};
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    try {
      const ld::Partition p = ld::partition_dirichlet(labels, 10, pool, 10, opt, seed);
      check_cover(p, pool);
      for (const auto& c : p.clients) BOOST_TEST(c.size() >= 40u);
      BOOST_TEST(p.attempts >= 1);
      BOOST_TEST(p.attempts <= 11);
    } catch (const loco::Error& e) {
      BOOST_TEST(std::string(e.what()).find("after 11 draws") != std::string::npos);
    }
  }
  // A minimum above m/P can never hold: the error comes after 1 + max_retries draws.
  require_error(
      [&] {
        ld::partition_dirichlet(labels, 10, pool, 10, {.alpha = {1.0}, .min_partition_size = 101, .max_retries = 3}, 1);
      },
      ErrorKind::Usage, {"after 4 draws", "minimum 101"});
  require_error(
      [&] {
        ld::partition_dirichlet(labels, 10, pool, 3, {.alpha = {1.0, 2.0}}, 1);
      },
      ErrorKind::Usage, {"2 alpha values for 3 clients"});
  require_error([&] { ld::partition_dirichlet(labels, 10, pool, 3, {.alpha = {-1.0}}, 1); }, ErrorKind::Usage,
                {"alpha -1"});
  // Per-client alpha is accepted.
  const ld::Partition per =
      ld::partition_dirichlet(labels, 10, pool, 3, {.alpha = {1.0, 2.0, 3.0}, .min_partition_size = 0}, 1);
  check_cover(per, pool);
}

BOOST_AUTO_TEST_CASE(self_balancing_stops_feeding_clients_above_the_average) {
  const std::vector<std::int32_t> labels = make_labels(std::vector<std::int64_t>(20, 50));
  const ld::IndexList pool = ld::split_holdout(1000, 0, 4).pool;
  const ld::DirichletOptions opt{.alpha = {0.2}, .min_partition_size = 0, .self_balancing = true, .shuffle = false};
  for (std::uint64_t seed = 0; seed < 10; ++seed) {
    const ld::Partition p = ld::partition_dirichlet(labels, 20, pool, 8, opt, seed);
    check_cover(p, pool);
    const double average = 1000.0 / 8;
    for (const auto& c : p.clients) {
      // Unshuffled lists run class by class: at the start of each class block the client held ≤ m/P.
      for (std::size_t t = 0; t < c.size(); ++t)
        if (t == 0 || labels[static_cast<std::size_t>(c[t])] != labels[static_cast<std::size_t>(c[t - 1])])
          BOOST_TEST(static_cast<double>(t) <= average);
      BOOST_TEST(static_cast<double>(c.size()) <= average + 50);
    }
  }
}

BOOST_AUTO_TEST_CASE(label_skew_grows_as_alpha_shrinks) {
  // S = mean over classes of Σ_j q_kj², q_kj = client j's share of class k. For p ~ Dir(α·1_P),
  // E Σp² = (α+1)/(Pα+1); cutting at ⌊cumsum·n⌋ moves each share by < 2/n, so Σq² by < 4/n. Bound:
  // |S − E| ≤ 5·√(Var/C) + 4/n. The intervals for the α below are disjoint and ordered.
  constexpr int kClasses = 200, kPerClass = 1000, kClients = 10;
  const std::vector<std::int32_t> labels = make_labels(std::vector<std::int64_t>(kClasses, kPerClass));
  const ld::IndexList pool = iota_list(static_cast<std::int64_t>(labels.size()));
  double previous_upper = 2.0;
  for (double a : {0.05, 0.3, 2.0, 50.0}) {
    const ld::Partition p =
        ld::partition_dirichlet(labels, kClasses, pool, kClients, {.alpha = {a}, .min_partition_size = 0}, 99);
    std::vector<std::vector<double>> count(kClasses, std::vector<double>(kClients, 0.0));
    for (std::size_t j = 0; j < p.clients.size(); ++j)
      for (std::int64_t i : p.clients[j]) count[static_cast<std::size_t>(labels[static_cast<std::size_t>(i)])][j] += 1;
    double s = 0;
    for (const auto& row : count)
      for (double v : row) s += (v / kPerClass) * (v / kPerClass);
    s /= kClasses;
    const auto [mean, var] = simpson_moments(a, kClients);
    const double tol = 5 * std::sqrt(var / kClasses) + 4.0 / kPerClass;
    BOOST_TEST_CONTEXT("alpha " << a << ": S " << s << ", E " << mean << " ± " << tol) {
      BOOST_TEST(std::fabs(s - mean) <= tol);
      BOOST_TEST(mean + tol < previous_upper);  // strictly below the interval of the smaller alpha
    }
    previous_upper = mean - tol;
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(dirichlet_over_classes)

BOOST_AUTO_TEST_CASE(sizes_overlap_and_disjoint_modes) {
  const std::vector<std::int32_t> labels = make_labels({300, 200, 100, 400});
  const ld::IndexList pool = ld::split_holdout(1000, 0, 2).pool;
  const ld::ClassDirichletOptions overlap{.alpha = 0.3, .sizes = {150}};
  const ld::Partition p = ld::partition_class_dirichlet(labels, 4, pool, 5, overlap, 8);
  BOOST_TEST(ld::partition_class_dirichlet(labels, 4, pool, 5, overlap, 8).clients == p.clients);
  BOOST_TEST(ld::partition_class_dirichlet(labels, 4, pool, 5, overlap, 9).clients != p.clients);
  std::set<std::int64_t> union_of;
  for (std::size_t i = 0; i < 5; ++i) {
    BOOST_TEST(p.clients[i].size() == 150u);
    const std::set<std::int64_t> mine(p.clients[i].begin(), p.clients[i].end());
    BOOST_TEST(mine.size() == 150u);  // without replacement within a client
    union_of.insert(mine.begin(), mine.end());
    BOOST_TEST(p.class_weights[i].size() == 4u);
    BOOST_TEST(std::fabs(std::accumulate(p.class_weights[i].begin(), p.class_weights[i].end(), 0.0) - 1.0) < 1e-12);
  }
  BOOST_TEST(p.unused.size() == 1000 - union_of.size());  // unused = what nobody drew

  // Disjoint, sizes summing to m: an exact cover.
  const ld::ClassDirichletOptions disjoint{.alpha = 0.3, .sizes = {100, 200, 300, 400}, .disjoint = true};
  const ld::Partition d = ld::partition_class_dirichlet(labels, 4, pool, 4, disjoint, 8);
  check_cover(d, pool);
  BOOST_TEST(d.unused.empty());
  for (std::size_t i = 0; i < 4; ++i) BOOST_TEST(d.clients[i].size() == 100 * (i + 1));
  // Default sizes ⌊m/P⌋, disjoint: cover with the remainder unused.
  const ld::Partition e = ld::partition_class_dirichlet(labels, 4, pool, 3, {.alpha = 1.0, .disjoint = true}, 8);
  check_cover(e, pool);
  BOOST_TEST(e.unused.size() == 1u);

  require_error([&] { ld::partition_class_dirichlet(labels, 4, pool, 4, {.sizes = {400}, .disjoint = true}, 1); },
                ErrorKind::Usage, {"need 1600", "has 1000"});
  require_error([&] { ld::partition_class_dirichlet(labels, 4, pool, 4, {.sizes = {1001}}, 1); }, ErrorKind::Usage,
                {"1001"});
  require_error(
      [&] {
        ld::partition_class_dirichlet(labels, 4, pool, 4, {.sizes = {1, 2}}, 1);
      },
      ErrorKind::Usage, {"2 sizes for 4 clients"});
}

BOOST_AUTO_TEST_CASE(draws_follow_the_weighted_rule_without_replacement) {
  // Two classes with 30 and 70 examples, one client drawing 2. Given w (recorded), the first draw
  // is class 0 with probability π1 = 30(w0+ε)/(30(w0+ε) + 70(w1+ε)); the second with the drawn
  // example removed. Summed over seeds, the count of class-0 draws has mean Σπ and variance
  // Σπ(1−π); checked within 5σ.
  std::vector<std::int32_t> labels(100, 1);
  std::fill(labels.begin(), labels.begin() + 30, 0);
  const ld::IndexList pool = iota_list(100);
  double expected = 0, variance = 0, observed = 0;
  constexpr double eps = 1e-12;
  for (std::uint64_t seed = 0; seed < 3000; ++seed) {
    const ld::Partition p = ld::partition_class_dirichlet(labels, 2, pool, 1, {.alpha = 0.7, .sizes = {2}}, seed);
    const double w0 = p.class_weights[0][0] + eps, w1 = p.class_weights[0][1] + eps;
    double n0 = 30, n1 = 70;
    for (std::int64_t i : p.clients[0]) {
      const double pi = w0 * n0 / (w0 * n0 + w1 * n1);
      expected += pi;
      variance += pi * (1 - pi);
      const bool zero = labels[static_cast<std::size_t>(i)] == 0;
      observed += zero ? 1 : 0;
      (zero ? n0 : n1) -= 1;
    }
  }
  BOOST_TEST_INFO("observed " << observed << " expected " << expected << " sd " << std::sqrt(variance));
  BOOST_TEST(std::fabs(observed - expected) <= 5 * std::sqrt(variance));
}

BOOST_AUTO_TEST_CASE(class_mix_skew_grows_as_alpha_shrinks) {
  // Per client w ~ Dir(α·1_C): E Σw² = (α+1)/(Cα+1); the mean over P clients is within
  // 5·√(Var/P) of it, and the intervals for these α are disjoint and ordered.
  constexpr int kClasses = 10, kClients = 400;
  const std::vector<std::int32_t> labels = make_labels(std::vector<std::int64_t>(kClasses, 50));
  const ld::IndexList pool = iota_list(500);
  double previous_upper = 2.0;
  for (double a : {0.05, 0.5, 5.0}) {
    const ld::Partition p =
        ld::partition_class_dirichlet(labels, kClasses, pool, kClients, {.alpha = a, .sizes = {1}}, 5);
    double s = 0;
    for (const auto& w : p.class_weights)
      for (double v : w) s += v * v;
    s /= kClients;
    const auto [mean, var] = simpson_moments(a, kClasses);
    const double tol = 5 * std::sqrt(var / kClients);
    BOOST_TEST_CONTEXT("alpha " << a << ": S " << s << ", E " << mean << " ± " << tol) {
      BOOST_TEST(std::fabs(s - mean) <= tol);
      BOOST_TEST(mean + tol < previous_upper);
    }
    previous_upper = mean - tol;
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(pathological_and_shards)

BOOST_AUTO_TEST_CASE(exactly_k_classes_per_client_in_every_mode) {
  const std::vector<std::int32_t> labels = make_labels(std::vector<std::int64_t>(10, 60));
  const ld::IndexList pool = ld::split_holdout(600, 0, 5).pool;
  for (auto mode :
       {ld::ClassAssignment::Random, ld::ClassAssignment::Deterministic, ld::ClassAssignment::FirstDeterministic}) {
    for (std::int32_t k : {1, 2, 3}) {
      const ld::PathologicalOptions opt{.classes_per_client = k, .assignment = mode};
      const ld::Partition p = ld::partition_pathological(labels, 10, pool, 12, opt, 3);
      BOOST_TEST(ld::partition_pathological(labels, 10, pool, 12, opt, 3).clients == p.clients);
      check_cover(p, pool);
      std::map<std::int32_t, std::vector<std::size_t>> piece_sizes;
      for (std::size_t c = 0; c < 12; ++c) {
        const auto held = classes_of(p.clients[c], labels);
        BOOST_TEST(static_cast<std::int32_t>(held.size()) == k);
        if (mode == ld::ClassAssignment::Deterministic)
          for (std::int32_t i = 0; i < k; ++i) BOOST_TEST(held.count(static_cast<std::int32_t>((c + i) % 10)) == 1u);
        if (mode == ld::ClassAssignment::FirstDeterministic)
          BOOST_TEST(held.count(static_cast<std::int32_t>(c % 10)) == 1u);
        for (std::int32_t cls : held) {
          std::size_t n = 0;
          for (std::int64_t i : p.clients[c]) n += labels[static_cast<std::size_t>(i)] == cls;
          piece_sizes[cls].push_back(n);
        }
      }
      // Each class split evenly among its holders: pieces differ by at most one and sum to 60.
      for (const auto& [cls, sizes] : piece_sizes) {
        BOOST_TEST(*std::max_element(sizes.begin(), sizes.end()) - *std::min_element(sizes.begin(), sizes.end()) <= 1u);
        BOOST_TEST(std::accumulate(sizes.begin(), sizes.end(), std::size_t{0}) == 60u);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(classes_nobody_holds_are_unused_and_bad_options_fail) {
  const std::vector<std::int32_t> labels = make_labels(std::vector<std::int64_t>(10, 6));
  const ld::IndexList pool = iota_list(60);
  const ld::Partition p = ld::partition_pathological(
      labels, 10, pool, 2, {.classes_per_client = 1, .assignment = ld::ClassAssignment::Deterministic}, 1);
  check_cover(p, pool);
  BOOST_TEST(p.unused.size() == 48u);  // classes 2..9
  BOOST_TEST((classes_of(p.clients[0], labels) == std::set<std::int32_t>{0}));
  BOOST_TEST((classes_of(p.clients[1], labels) == std::set<std::int32_t>{1}));
  require_error([&] { ld::partition_pathological(labels, 10, pool, 2, {.classes_per_client = 11}, 1); },
                ErrorKind::Usage, {"11 classes per client", "10 classes"});
  // 40 clients × 2 classes deterministic: each class held by 8 clients but has 6 examples.
  const ld::IndexList big = iota_list(60);
  require_error(
      [&] {
        ld::partition_pathological(labels, 10, big, 40,
                                   {.classes_per_client = 2, .assignment = ld::ClassAssignment::Deterministic}, 1);
      },
      ErrorKind::Usage, {"held by 8 clients", "only 6 examples"});
}

BOOST_AUTO_TEST_CASE(mcmahan_gives_two_whole_shards_per_client) {
  const std::vector<std::int32_t> labels = make_labels(std::vector<std::int64_t>(10, 101));  // m = 1010
  const ld::IndexList pool = ld::split_holdout(1010, 0, 6).pool;
  ld::IndexList sorted = pool;
  std::stable_sort(sorted.begin(), sorted.end(), [&](std::int64_t a, std::int64_t b) {
    return labels[static_cast<std::size_t>(a)] < labels[static_cast<std::size_t>(b)];
  });
  for (std::int64_t shard_size : {0, 40}) {
    const ld::ShardOptions opt{.shards_per_client = 2, .shard_size = shard_size};
    const ld::Partition p = ld::partition_shards(labels, pool, 10, opt, 12);
    BOOST_TEST(ld::partition_shards(labels, pool, 10, opt, 12).clients == p.clients);
    check_cover(p, pool);
    const std::int64_t S = shard_size > 0 ? shard_size : 1010 / 20;  // 50
    std::set<std::int64_t> shards_used;
    for (const auto& c : p.clients) {
      BOOST_TEST(static_cast<std::int64_t>(c.size()) == 2 * S);
      // Positions in the sorted pool: exactly two aligned blocks [t·S, (t+1)·S).
      std::vector<std::int64_t> pos;
      for (std::int64_t i : c) pos.push_back(std::find(sorted.begin(), sorted.end(), i) - sorted.begin());
      std::sort(pos.begin(), pos.end());
      std::set<std::int64_t> blocks;
      for (std::int64_t q : pos) blocks.insert(q / S);
      BOOST_TEST(blocks.size() == 2u);
      for (std::int64_t b : blocks) {
        BOOST_TEST(shards_used.insert(b).second);  // no shard given twice
        BOOST_TEST(std::count_if(pos.begin(), pos.end(), [&](std::int64_t q) { return q / S == b; }) == S);
      }
    }
    // Unused: the shards left over and the tail of the sorted pool.
    BOOST_TEST(static_cast<std::int64_t>(p.unused.size()) == 1010 - 20 * S);
  }
  require_error([&] { ld::partition_shards(labels, pool, 10, {.shards_per_client = 2, .shard_size = 51}, 1); },
                ErrorKind::Usage, {"exceed the 1010 examples"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(specs_and_text)

BOOST_AUTO_TEST_CASE(spec_strings_parse_into_options) {
  using Scheme = ld::PartitionSpec::Scheme;
  BOOST_TEST((ld::parse_partition_spec("iid").scheme == Scheme::Iid));
  const auto d = ld::parse_partition_spec("dirichlet:alpha=0.1/0.2,min-size=5,retries=3,self-balancing=1,shuffle=0");
  BOOST_TEST((d.scheme == Scheme::Dirichlet));
  BOOST_TEST((d.dirichlet.alpha == std::vector<double>{0.1, 0.2}));
  BOOST_TEST(d.dirichlet.min_partition_size == 5);
  BOOST_TEST(d.dirichlet.max_retries == 3);
  BOOST_TEST(d.dirichlet.self_balancing);
  BOOST_TEST(!d.dirichlet.shuffle);
  const auto c = ld::parse_partition_spec("class-dirichlet:alpha=0.05,size=4096,disjoint=1");
  BOOST_TEST(c.class_dirichlet.alpha == 0.05);
  BOOST_TEST((c.class_dirichlet.sizes == std::vector<std::int64_t>{4096}));
  BOOST_TEST(c.class_dirichlet.disjoint);
  const auto p = ld::parse_partition_spec("pathological:k=3,assign=first-deterministic");
  BOOST_TEST(p.pathological.classes_per_client == 3);
  BOOST_TEST((p.pathological.assignment == ld::ClassAssignment::FirstDeterministic));
  const auto s = ld::parse_partition_spec("shards:per-client=3,size=300");
  BOOST_TEST(s.shards.shards_per_client == 3);
  BOOST_TEST(s.shards.shard_size == 300);
  const auto q = ld::parse_partition_spec("quantity:shape=square");
  BOOST_TEST((q.quantity.shape == ld::QuantityShape::Power));
  BOOST_TEST(q.quantity.exponent == 2.0);
  require_error([] { ld::parse_partition_spec("random"); }, ErrorKind::Usage, {"unknown partition scheme 'random'"});
  require_error([] { ld::parse_partition_spec("dirichlet:beta=1"); }, ErrorKind::Usage, {"unknown parameter 'beta'"});
  require_error([] { ld::parse_partition_spec("dirichlet:alpha=x"); }, ErrorKind::Usage, {"alpha=x", "a number"});
  require_error([] { ld::parse_partition_spec("shards:size"); }, ErrorKind::Usage, {"not key=value"});
  require_error([] { ld::parse_partition_spec("iid:k=1"); }, ErrorKind::Usage, {"unknown parameter 'k'"});
  // The dispatcher runs the scheme asked.
  const std::vector<std::int32_t> labels = make_labels(std::vector<std::int64_t>(4, 25));
  const ld::IndexList pool = iota_list(100);
  BOOST_TEST(ld::partition(p, labels, 4, pool, 5, 1).clients ==
             ld::partition_pathological(labels, 4, pool, 5, p.pathological, 1).clients);
}

BOOST_AUTO_TEST_CASE(text_contiguous_and_interleaved_with_a_test_tail) {
  const ld::TextSplit c = ld::split_text(103, 4, 0.1, ld::TextLayout::Contiguous);
  BOOST_TEST(c.test.begin == 93);  // ⌊10.3⌋ = 10 tokens of tail
  BOOST_TEST(c.test.end == 103);
  // 93 = 4·23 + 1: runs of 24, 23, 23, 23.
  BOOST_TEST(c.workers[0].size() == 1u);
  BOOST_TEST(c.workers[0][0].begin == 0);
  BOOST_TEST(c.workers[0][0].end == 24);
  BOOST_TEST(c.workers[1][0].begin == 24);
  BOOST_TEST(c.workers[3][0].end == 93);
  const ld::TextSplit i = ld::split_text(100, 3, 0.0, ld::TextLayout::Interleaved, 8);
  BOOST_TEST(i.test.begin == 100);
  // Blocks 0..12 (the last [96, 100)); block b to worker b mod 3.
  BOOST_TEST(i.workers[0].size() == 5u);
  BOOST_TEST(i.workers[1].size() == 4u);
  BOOST_TEST(i.workers[1][1].begin == 32);
  BOOST_TEST(i.workers[0].back().begin == 96);
  BOOST_TEST(i.workers[0].back().end == 100);

  ld::TokenData t;
  for (int k = 0; k < 100; ++k) t.tokens.push_back(static_cast<std::uint8_t>(k));
  t.source = "toy";
  const ld::TokenData w1 = ld::gather(t, i.workers[1]);
  BOOST_TEST(w1.tokens.size() == 32u);
  BOOST_TEST(w1.tokens[0] == 8);
  BOOST_TEST(w1.tokens[8] == 32);
  BOOST_TEST(w1.vocab == 256);

  require_error([] { ld::split_text(10, 20, 0.0, ld::TextLayout::Contiguous); }, ErrorKind::Usage,
                {"worker 10", "0 tokens"});
  require_error([] { ld::split_text(100, 2, 0.0, ld::TextLayout::Interleaved, 0); }, ErrorKind::Usage,
                {"block size 0"});
  require_error([] { ld::split_text(100, 2, 0.0, ld::TextLayout::Contiguous, 0, 60); }, ErrorKind::Usage,
                {"minimum 60"});
  const std::vector<ld::TokenRange> bad{{90, 101}};
  require_error([&] { ld::gather(t, bad); }, ErrorKind::Usage, {"[90, 101)"});
}

BOOST_AUTO_TEST_SUITE_END()
