// Topologies and mixing matrices: double stochasticity and symmetry of every W, the
// Metropolis–Hastings weights by hand, spectral gaps against closed forms, exact averaging of the
// one-peer exponential graph, seeded random graphs (degree, simplicity, connectivity, determinism).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <numbers>
#include <set>

#include "../support.hpp"
#include "loco/gossip/topology.hpp"

using namespace loco;
using namespace loco::gossip;
using std::int64_t;

namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();

const char* kAll[] = {"ring",
                      "torus",
                      "exponential",
                      "one-peer-exponential",
                      "complete",
                      "random-regular:d=3",
                      "erdos-renyi:p=0.5",
                      "random-regular:d=2,redraw=1"};

bool valid_for(const Topology& t, int64_t n) {
  if (t.kind == TopologyKind::RandomRegular) return t.degree < n && (n * t.degree) % 2 == 0;
  return true;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(topology)

BOOST_AUTO_TEST_CASE(every_matrix_is_doubly_stochastic) {
  for (const char* text : kAll)
    for (int64_t n : {1, 2, 3, 4, 5, 6, 8, 9, 12, 16, 17}) {
      const Topology t = parse_topology(text);
      if (!valid_for(t, n)) continue;
      for (int64_t round : {0, 1, 2, 3, 7}) {
        const auto w = mixing_matrix(t, n, 11, round);
        BOOST_TEST_INFO(text << " N=" << n << " round " << round);
        const auto d = w.dense();
        for (int64_t i = 0; i < n; ++i) {
          double row = 0, col = 0;
          for (int64_t j = 0; j < n; ++j) {
            BOOST_CHECK(d[i * n + j] >= 0);
            row += d[i * n + j];
            col += d[j * n + i];
            if (symmetric(t)) BOOST_CHECK_EQUAL(d[i * n + j], d[j * n + i]);
          }
          // Each row is 1 − Σ of at most N−1 rounded terms plus those terms: error ≤ N·eps.
          BOOST_CHECK_SMALL(row - 1.0, static_cast<double>(n) * kEps);
          BOOST_CHECK_SMALL(col - 1.0, static_cast<double>(n) * kEps);
        }
        // The graph of W is the neighbour lists.
        const auto adj = neighbours(t, n, 11, round);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j) {
            const bool edge = std::find(adj[i].begin(), adj[i].end(), j) != adj[i].end();
            BOOST_CHECK_EQUAL(edge, i != j && d[i * n + j] > 0);
          }
      }
    }
}

BOOST_AUTO_TEST_CASE(metropolis_hastings_weights_by_hand) {
  // Ring: 1/3 each for self and the two neighbours.
  auto w = mixing_matrix(parse_topology("ring"), 8, 0, 0);
  BOOST_CHECK_EQUAL(w.at(3, 2), 1.0 / 3);
  BOOST_CHECK_EQUAL(w.at(3, 4), 1.0 / 3);
  BOOST_CHECK_EQUAL(w.at(0, 7), 1.0 / 3);
  BOOST_CHECK_EQUAL(w.at(3, 5), 0.0);
  BOOST_CHECK_CLOSE(w.at(3, 3), 1.0 / 3, 1e-13);
  // Two nodes on a ring: one neighbour (not two), ½ each.
  w = mixing_matrix(parse_topology("ring"), 2, 0, 0);
  BOOST_CHECK_EQUAL(w.at(0, 1), 0.5);
  BOOST_CHECK_EQUAL(w.at(0, 0), 0.5);
  // 4×4 torus: degree 4, 1/5 everywhere.
  w = mixing_matrix(parse_topology("torus"), 16, 0, 0);
  BOOST_CHECK_EQUAL(w.at(5, 1), 0.2);
  BOOST_CHECK_EQUAL(w.at(5, 4), 0.2);
  BOOST_CHECK_EQUAL(w.at(5, 6), 0.2);
  BOOST_CHECK_EQUAL(w.at(5, 9), 0.2);
  BOOST_CHECK_EQUAL(w.at(0, 12), 0.2);  // wrap-around
  BOOST_CHECK_EQUAL(w.at(0, 3), 0.2);
  BOOST_CHECK_CLOSE(w.at(5, 5), 0.2, 1e-13);
  // Complete: 1/N.
  w = mixing_matrix(parse_topology("complete"), 5, 0, 0);
  BOOST_CHECK_EQUAL(w.at(1, 4), 0.2);
  BOOST_CHECK_CLOSE(w.at(1, 1), 0.2, 1e-13);
  // Exponential on 8: neighbours ±1, ±2, ±4 = five, weight 1/6.
  const auto adj = neighbours(parse_topology("exponential"), 8, 0, 0);
  BOOST_CHECK((adj[0] == std::vector<int64_t>{1, 2, 4, 6, 7}));
  w = mixing_matrix(parse_topology("exponential"), 8, 0, 0);
  BOOST_CHECK_EQUAL(w.at(0, 4), 1.0 / 6);
  // Unequal degrees: a star 0–{1,2,3} plus the edge 1–2. d = (3, 2, 2, 1).
  w = metropolis_hastings({{1, 2, 3}, {0, 2}, {0, 1}, {0}});
  BOOST_CHECK_EQUAL(w.at(0, 1), 0.25);  // 1/(1 + max(3, 2))
  BOOST_CHECK_EQUAL(w.at(1, 2), 1.0 / 3);
  BOOST_CHECK_EQUAL(w.at(3, 0), 0.25);
  BOOST_CHECK_EQUAL(w.at(3, 3), 0.75);
  BOOST_CHECK_CLOSE(w.at(1, 1), 1 - 0.25 - 1.0 / 3, 1e-13);
  test::require_error([] { metropolis_hastings({{1}, {}}); }, ErrorKind::Internal, {"one end"});
}

BOOST_AUTO_TEST_CASE(torus_shapes) {
  BOOST_CHECK((torus_shape(parse_topology("torus"), 12) == std::pair<int64_t, int64_t>{3, 4}));
  BOOST_CHECK((torus_shape(parse_topology("torus"), 16) == std::pair<int64_t, int64_t>{4, 4}));
  BOOST_CHECK((torus_shape(parse_topology("torus"), 7) == std::pair<int64_t, int64_t>{1, 7}));
  BOOST_CHECK((torus_shape(parse_topology("torus:rows=2"), 12) == std::pair<int64_t, int64_t>{2, 6}));
  test::require_error([] { torus_shape(parse_topology("torus:rows=5"), 12); }, ErrorKind::Usage,
                      {"5 rows", "12 nodes"});
  // A prime N is a 1 × N torus, i.e. a ring.
  BOOST_CHECK(neighbours(parse_topology("torus"), 7, 0, 0) == neighbours(parse_topology("ring"), 7, 0, 0));
}

BOOST_AUTO_TEST_CASE(spectral_gap_of_ring_and_complete) {
  for (int64_t n : {4, 5, 8, 16, 33, 64}) {
    const double want = 1 - (1.0 / 3 + 2.0 / 3 * std::cos(2 * std::numbers::pi / static_cast<double>(n)));
    const double got = spectral_gap(mixing_matrix(parse_topology("ring"), n, 0, 0));
    BOOST_TEST_INFO("ring N=" << n);
    // A symmetric eigensolver's eigenvalues are within a small multiple of N·eps·‖W‖ (‖W‖ = 1).
    BOOST_CHECK_SMALL(got - want, 16 * static_cast<double>(n) * kEps);
  }
  // N = 3: the ring is the complete graph.
  BOOST_CHECK_SMALL(spectral_gap(mixing_matrix(parse_topology("ring"), 3, 0, 0)) - 1.0, 16 * 3 * kEps);
  for (int64_t n : {1, 2, 7, 32})
    BOOST_CHECK_SMALL(spectral_gap(mixing_matrix(parse_topology("complete"), n, 0, 0)) - 1.0, 16 * 32 * kEps);
  // Better connected graphs mix faster: ring < torus < exponential < complete on 16 nodes.
  const auto gap = [](const char* t) { return spectral_gap(mixing_matrix(parse_topology(t), 16, 0, 0)); };
  BOOST_CHECK(gap("ring") < gap("torus"));
  BOOST_CHECK(gap("torus") < gap("exponential"));
  BOOST_CHECK(gap("exponential") < gap("complete"));
  // 4×4 torus with weights 1/5: eigenvalues (1 + 2cos(2πa/4) + 2cos(2πb/4))/5; |λ| max over
  // (a, b) ≠ 0 is 3/5 (a = 0, b = 1 gives (1 + 2 + 0)/5; a = b = 2 gives −3/5).
  BOOST_CHECK_SMALL(gap("torus") - 0.4, 16 * 16 * kEps);
}

BOOST_AUTO_TEST_CASE(one_peer_exponential_averages_exactly_after_log2_n_rounds) {
  const Topology t = parse_topology("one-peer-exponential");
  for (int64_t n : {2, 4, 8, 16, 32}) {
    int64_t k = 0;
    while ((int64_t{1} << k) < n) ++k;
    for (int64_t start : {0, 3}) {
      // P = W_{start+K−1} ⋯ W_start. Every entry is a sum of products of ½: exact in double.
      std::vector<double> p(n * n, 0.0);
      for (int64_t i = 0; i < n; ++i) p[i * n + i] = 1;
      for (int64_t r = start; r < start + k; ++r) {
        const auto w = mixing_matrix(t, n, 0, r).dense();
        std::vector<double> q(n * n, 0.0);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t m = 0; m < n; ++m)
            for (int64_t j = 0; j < n; ++j) q[i * n + j] += w[i * n + m] * p[m * n + j];
        p = q;
      }
      BOOST_TEST_INFO("N=" << n << " from round " << start);
      for (double v : p) BOOST_CHECK_EQUAL(v, 1.0 / static_cast<double>(n));
    }
  }
  // Not a power of two: K rounds do not average exactly (6 nodes, shifts 1, 2, 4).
  std::vector<double> x = {1, 0, 0, 0, 0, 0};
  for (int64_t r = 0; r < 3; ++r) {
    const auto w = mixing_matrix(t, 6, 0, r);
    std::vector<double> y(6, 0.0);
    for (int64_t i = 0; i < 6; ++i)
      for (const auto& e : w.rows[i]) y[i] += e.w * x[e.node];
    x = y;
  }
  BOOST_CHECK(std::abs(x[0] - 1.0 / 6) > 1e-3);
  // The peer of node i at round t is i + 2^(t mod K).
  BOOST_CHECK((neighbours(t, 8, 0, 0)[5] == std::vector<int64_t>{6}));
  BOOST_CHECK((neighbours(t, 8, 0, 1)[5] == std::vector<int64_t>{7}));
  BOOST_CHECK((neighbours(t, 8, 0, 2)[5] == std::vector<int64_t>{1}));
  BOOST_CHECK((neighbours(t, 8, 0, 3)[5] == std::vector<int64_t>{6}));
  BOOST_CHECK_SMALL(spectral_gap(mixing_matrix(t, 2, 0, 0)) - 1.0, 1e-14);
}

BOOST_AUTO_TEST_CASE(random_regular_graphs) {
  for (int64_t d : {1, 2, 3, 4, 5}) {
    for (int64_t n : {6, 10, 20, 41}) {
      if ((n * d) % 2 != 0 || (d == 1 && n > 2)) continue;  // a 1-regular graph on > 2 nodes is never connected
      const Topology t = parse_topology("random-regular:d=" + std::to_string(d));
      for (std::uint64_t seed : {1, 2, 3}) {
        const auto adj = neighbours(t, n, seed, 0);
        BOOST_TEST_INFO("d=" << d << " N=" << n << " seed " << seed);
        BOOST_CHECK(connected(adj));
        for (int64_t i = 0; i < n; ++i) {
          BOOST_CHECK_EQUAL(static_cast<int64_t>(adj[i].size()), d);
          BOOST_CHECK(std::set<int64_t>(adj[i].begin(), adj[i].end()).size() == adj[i].size());
          BOOST_CHECK(std::find(adj[i].begin(), adj[i].end(), i) == adj[i].end());
        }
        BOOST_CHECK(adj == neighbours(t, n, seed, 0));  // deterministic
        BOOST_CHECK(adj == neighbours(t, n, seed, 5));  // static without redraw
      }
    }
  }
  const Topology t = parse_topology("random-regular:d=3");
  BOOST_CHECK(neighbours(t, 20, 1, 0) != neighbours(t, 20, 2, 0));
  const Topology r = parse_topology("random-regular:d=3,redraw=1");
  BOOST_CHECK(neighbours(r, 20, 1, 0) != neighbours(r, 20, 1, 1));
  BOOST_CHECK(neighbours(r, 20, 1, 4) == neighbours(r, 20, 1, 4));
  test::require_error([&] { neighbours(t, 3, 0, 0); }, ErrorKind::Usage, {"no 3-regular graph on 3 nodes"});
  test::require_error([&] { neighbours(t, 7, 0, 0); }, ErrorKind::Usage, {"N·d even"});
  test::require_error([] { neighbours(parse_topology("random-regular:d=1"), 6, 0, 0); }, ErrorKind::Usage,
                      {"no connected graph on 6 nodes"});
}

BOOST_AUTO_TEST_CASE(erdos_renyi_graphs) {
  const Topology t = parse_topology("erdos-renyi:p=0.3");
  for (std::uint64_t seed : {1, 2, 3, 4}) {
    const auto adj = neighbours(t, 30, seed, 0);
    BOOST_CHECK(connected(adj));
    BOOST_CHECK(adj == neighbours(t, 30, seed, 9));
  }
  BOOST_CHECK(neighbours(t, 30, 1, 0) != neighbours(t, 30, 2, 0));
  // About p·N(N−1)/2 = 130.5 edges; over 4 seeds the mean is within a few standard deviations
  // (σ of one count ≈ √(435·0.3·0.7) ≈ 9.6, of the 4-seed mean ≈ 4.8).
  double edges = 0;
  for (std::uint64_t seed : {1, 2, 3, 4})
    for (const auto& a : neighbours(t, 30, seed, 0)) edges += static_cast<double>(a.size()) / 2 / 4;
  BOOST_CHECK_SMALL(edges - 130.5, 25.0);
  BOOST_CHECK(neighbours(parse_topology("erdos-renyi:p=1"), 9, 5, 0) ==
              neighbours(parse_topology("complete"), 9, 0, 0));
  test::require_error([] { neighbours(parse_topology("erdos-renyi:p=0.001"), 40, 0, 0); }, ErrorKind::Usage,
                      {"no connected graph on 40 nodes", "raise p"});
}

BOOST_AUTO_TEST_CASE(parsing) {
  for (const char* text : {"ring", "torus", "torus:rows=3", "exponential", "one-peer-exponential", "complete",
                           "random-regular:d=4", "random-regular:d=4,redraw=1", "erdos-renyi:p=0.25"})
    BOOST_CHECK_EQUAL(format_topology(parse_topology(text)), text);
  BOOST_CHECK(time_varying(parse_topology("one-peer-exponential")));
  BOOST_CHECK(!time_varying(parse_topology("random-regular:d=4")));
  BOOST_CHECK(time_varying(parse_topology("erdos-renyi:p=0.5,redraw=1")));
  test::require_error([] { parse_topology("star"); }, ErrorKind::Usage, {"'star'", "unknown"});
  test::require_error([] { parse_topology("ring:d=3"); }, ErrorKind::Usage, {"unknown parameter 'd'"});
  test::require_error([] { parse_topology("random-regular"); }, ErrorKind::Usage, {"needs d=D"});
  test::require_error([] { parse_topology("random-regular:d=x"); }, ErrorKind::Usage, {"d=x is not an integer"});
  test::require_error([] { parse_topology("random-regular:d=2.5"); }, ErrorKind::Usage, {"integer"});
  test::require_error([] { parse_topology("erdos-renyi:p=0"); }, ErrorKind::Usage, {"(0, 1]"});
  test::require_error([] { parse_topology("erdos-renyi:p=0.5,redraw=2"); }, ErrorKind::Usage,
                      {"redraw=2 is not a boolean"});
  test::require_error([] { parse_topology("torus:rows"); }, ErrorKind::Usage, {"key=value"});
  test::require_error([] { neighbours(parse_topology("ring"), 0, 0, 0); }, ErrorKind::Usage, {"at least 1 node"});
}

BOOST_AUTO_TEST_SUITE_END()
