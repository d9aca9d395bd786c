// Tests of the Philox4x32-10 generator: published known answers, the documented word layout,
// thread-count independence of the fills, and the distributions of the samplers.
#include <boost/test/unit_test.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <set>
#include <vector>

#include <tbb/global_control.h>

#include "loco/core/rng.hpp"

namespace {

using Block = std::array<std::uint32_t, 4>;

// The block the documented layout puts at index b of stream (seed, stream).
Block layout_block(std::uint64_t seed, std::uint64_t stream, std::uint64_t b) {
  return loco::philox4x32_10({static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(b >> 32),
                              static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)},
                             {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
}

// Upper tail bound of a chi-square variable with d degrees of freedom (Laurent & Massart 2000):
// P(X ≥ d + 2·sqrt(d·x) + 2x) ≤ e^-x. x = 20 puts a false alarm below 2.1e-9.
double chi_square_bound(int d) {
  constexpr double x = 20;
  return d + 2 * std::sqrt(d * x) + 2 * x;
}

// Pearson's statistic of counts against expected probabilities, for `total` draws.
double chi_square(const std::vector<std::int64_t>& counts, const std::vector<double>& probs, std::int64_t total) {
  double s = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    const double expected = probs[i] * static_cast<double>(total);
    const double d = static_cast<double>(counts[i]) - expected;
    s += d * d / expected;
  }
  return s;
}

// Counts of draw() into bins by bin_of, and the statistic against probs; checks the range too.
double binned_chi_square(int draws, std::uint64_t n, const std::function<std::uint64_t()>& draw,
                         const std::function<std::size_t(std::uint64_t)>& bin_of, const std::vector<double>& probs) {
  std::vector<std::int64_t> counts(probs.size(), 0);
  for (int i = 0; i < draws; ++i) {
    const std::uint64_t v = draw();
    if (v >= n) {
      BOOST_ERROR("below(" << n << ") returned " << v);
      return INFINITY;
    }
    ++counts[bin_of(v)];
  }
  return chi_square(counts, probs, draws);
}

constexpr double kSigmas = 5;  // bounds on sample means: 5 standard errors (normal tail ≈ 5.7e-7)

}  // namespace

BOOST_AUTO_TEST_SUITE(rng)

// Known-answer vectors of the Random123 distribution (kat_vectors, philox4x32 with 10 rounds).
BOOST_AUTO_TEST_CASE(philox_known_answers) {
  BOOST_TEST((loco::philox4x32_10({0, 0, 0, 0}, {0, 0}) == Block{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  BOOST_TEST((loco::philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
              Block{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  BOOST_TEST((loco::philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
              Block{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

// Word j of stream (seed, stream) is word j%4 of the block with counter (j/4, stream), key seed.
BOOST_AUTO_TEST_CASE(documented_word_layout) {
  const std::uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull;
  loco::Rng rng(seed, stream);
  for (std::uint64_t b = 0; b < 10; ++b) {
    const Block want = layout_block(seed, stream, b);
    for (int w = 0; w < 4; ++w) BOOST_TEST_REQUIRE(rng.next_u32() == want[w], "block " << b << " word " << w);
  }
  // The block index fills the counter's low 64 bits, beyond 2^32 too.
  const std::uint64_t far = (std::uint64_t{1} << 32) + 5;
  rng.seek_block(far);
  const Block want = layout_block(seed, stream, far);
  for (int w = 0; w < 4; ++w) BOOST_TEST(rng.next_u32() == want[w]);
  // next_u64 is two words, the first one low.
  loco::Rng a(seed, stream), b(seed, stream);
  for (int i = 0; i < 9; ++i) {
    const std::uint64_t lo = a.next_u32(), hi = a.next_u32();
    BOOST_TEST_REQUIRE(b.next_u64() == (lo | hi << 32));
  }
}

BOOST_AUTO_TEST_CASE(stream_ids) {
  const std::uint64_t seed = 42;
  // A stream list is stream_id of the list; no list is stream 0.
  loco::Rng listed(seed, {7, 3, 11}), folded(seed, loco::stream_id({7, 3, 11}));
  loco::Rng none(seed), zero(seed, std::uint64_t{0});
  for (int i = 0; i < 64; ++i) {
    BOOST_TEST_REQUIRE(listed.next_u32() == folded.next_u32());
    BOOST_TEST_REQUIRE(none.next_u32() == zero.next_u32());
  }
  BOOST_TEST(loco::stream_id({1, 2}) != loco::stream_id({2, 1}));
  BOOST_TEST(loco::stream_id({1}) != loco::stream_id({1, 0}));
  BOOST_TEST(loco::stream_id({0}) != loco::stream_id({}));
  BOOST_TEST(loco::stream_id({5, 6}) == loco::stream_id({5, 6}));
  std::set<std::uint64_t> ids;  // (round, worker, tensor) triples: no collisions
  for (std::uint64_t r = 0; r < 10; ++r)
    for (std::uint64_t w = 0; w < 10; ++w)
      for (std::uint64_t t = 0; t < 10; ++t) ids.insert(loco::stream_id({r, w, t}));
  for (std::uint64_t r = 0; r < 10; ++r)
    for (std::uint64_t w = 0; w < 10; ++w) ids.insert(loco::stream_id({r, w}));
  BOOST_TEST(ids.size() == 1100u);
}

BOOST_AUTO_TEST_CASE(determinism) {
  loco::Rng a(2024, {1, 2}), b(2024, {1, 2}), other_stream(2024, {1, 3}), other_seed(2025, {1, 2});
  int same_stream = 0, same_seed = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t x = a.next_u64();
    BOOST_TEST_REQUIRE(x == b.next_u64());
    same_stream += x == other_stream.next_u64();
    same_seed += x == other_seed.next_u64();
  }
  // Independent 64-bit words agree with probability 2^-64 each.
  BOOST_TEST(same_stream == 0);
  BOOST_TEST(same_seed == 0);
  // The samplers are functions of the words alone.
  loco::Rng c(9, std::uint64_t{4}), d(9, std::uint64_t{4});
  for (int i = 0; i < 100; ++i) {
    BOOST_TEST_REQUIRE(c.normal() == d.normal());
    BOOST_TEST_REQUIRE(c.uniform() == d.uniform());
    BOOST_TEST_REQUIRE(c.below(1000) == d.below(1000));
    BOOST_TEST_REQUIRE(c.uniform_double() == d.uniform_double());
  }
}

BOOST_AUTO_TEST_CASE(seek_block_consistency) {
  const std::uint64_t seed = 77, stream = 5;
  loco::Rng seq(seed, stream);
  std::vector<std::uint32_t> words(64);
  for (auto& w : words) w = seq.next_u32();

  loco::Rng r(seed, stream);
  r.seek_block(7);
  for (int i = 0; i < 8; ++i) BOOST_TEST_REQUIRE(r.next_u32() == words[28 + i]);  // runs on into block 8
  r.next_u32();                                                                   // mid-block: the rest is dropped
  r.seek_block(3);
  for (int i = 0; i < 4; ++i) BOOST_TEST_REQUIRE(r.next_u32() == words[12 + i]);
  r.seek_block(0);  // back to the start
  for (int i = 0; i < 64; ++i) BOOST_TEST_REQUIRE(r.next_u32() == words[i]);
}

// Word accounting of the samplers: uniform takes 1 word, uniform_double and normal 2.
BOOST_AUTO_TEST_CASE(sampler_word_use) {
  loco::Rng words(3, std::uint64_t{8}), r(3, std::uint64_t{8});
  const std::uint32_t w0 = words.next_u32(), w1 = words.next_u32(), w2 = words.next_u32(), w3 = words.next_u32();
  const std::uint32_t w4 = words.next_u32(), w5 = words.next_u32();
  BOOST_TEST(r.uniform() == static_cast<float>(w0 >> 8) * 0x1p-24f);
  BOOST_TEST(r.uniform_double() == static_cast<double>((w1 | std::uint64_t{w2} << 32) >> 11) * 0x1p-53);
  const float z = r.normal();  // Box–Muller on (w3, w4)
  const double u1 = (w3 + 1.0) * 0x1p-32, u2 = w4 * 0x1p-32;
  const double want = std::sqrt(-2 * std::log(u1)) * std::cos(2 * 3.14159265358979323846 * u2);
  BOOST_TEST(std::fabs(z - want) <= 1e-6 * std::max(1.0, std::fabs(want)));  // float rounding of a double result
  BOOST_TEST(r.next_u32() == w5);
}

BOOST_AUTO_TEST_CASE(fills_match_sequential_draws_for_any_thread_count) {
  const std::uint64_t seed = 1234, stream = loco::stream_id({3, 1, 4});
  // Sizes around the 4096-block grain and odd tails. A power-of-two scale keeps mean + std·z and
  // fma(std, z, mean) identical, so equality is exact under any floating-point contraction.
  for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{5},
                              std::size_t{8191}, std::size_t{8193}, std::size_t{16385}, std::size_t{100003}}) {
    std::vector<float> want_normal(n), want_uniform(n);
    loco::Rng rn(seed, stream), ru(seed, stream);
    for (std::size_t i = 0; i < n; ++i) want_normal[i] = 0.5f + 2.0f * rn.normal();
    for (std::size_t i = 0; i < n; ++i) want_uniform[i] = -1.0f + 4.0f * ru.uniform();
    for (const std::size_t threads : {std::size_t{1}, std::size_t{2}}) {
      tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
      std::vector<float> normal(n, NAN), uniform(n, NAN);
      loco::fill_normal(normal, 0.5f, 2.0f, seed, stream);
      loco::fill_uniform(uniform, -1.0f, 3.0f, seed, stream);
      for (std::size_t i = 0; i < n; ++i) {
        BOOST_TEST_REQUIRE(normal[i] == want_normal[i], "normal " << i << " of " << n << ", threads " << threads);
        BOOST_TEST_REQUIRE(uniform[i] == want_uniform[i], "uniform " << i << " of " << n << ", threads " << threads);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(uniform_distribution) {
  constexpr int n = 1 << 20;
  loco::Rng rng(555, {9});
  double sum = 0, sum_sq = 0;
  float lo = 1, hi = 0;
  for (int i = 0; i < n; ++i) {
    const float u = rng.uniform();
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    BOOST_TEST_REQUIRE(u * 0x1p24f == std::floor(u * 0x1p24f));  // on the 2^-24 grid
    sum += u;
    sum_sq += (u - 0.5) * (u - 0.5);
  }
  BOOST_TEST(lo >= 0.0f);
  BOOST_TEST(hi < 1.0f);
  // U[0,1): mean 1/2, variance 1/12; (u − 1/2)² has variance 1/80 − 1/144 = 1/180.
  BOOST_TEST(std::fabs(sum / n - 0.5) <= kSigmas * std::sqrt(1.0 / 12 / n));
  BOOST_TEST(std::fabs(sum_sq / n - 1.0 / 12) <= kSigmas * std::sqrt(1.0 / 180 / n));

  double dsum = 0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform_double();
    BOOST_TEST_REQUIRE((u >= 0.0 && u < 1.0));
    dsum += u;
  }
  BOOST_TEST(std::fabs(dsum / n - 0.5) <= kSigmas * std::sqrt(1.0 / 12 / n));

  // fill_uniform over [lo, hi): range and mean.
  std::vector<float> v(n);
  loco::fill_uniform(v, -3.0f, 5.0f, 8, 1);
  double fsum = 0;
  for (float x : v) {
    BOOST_TEST_REQUIRE((x >= -3.0f && x < 5.0f));
    fsum += x;
  }
  BOOST_TEST(std::fabs(fsum / n - 1.0) <= kSigmas * 8 * std::sqrt(1.0 / 12 / n));
}

BOOST_AUTO_TEST_CASE(normal_distribution) {
  constexpr int n = 1 << 20;
  std::vector<float> z(n);
  loco::fill_normal(z, 0.0f, 1.0f, 31337, 2);
  double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
  std::int64_t beyond = 0;
  for (float x : z) {
    BOOST_TEST_REQUIRE(std::isfinite(x));
    const double d = x;
    m1 += d;
    m2 += d * d;
    m3 += d * d * d;
    m4 += d * d * d * d;
    beyond += std::fabs(d) > 1.959963984540054;
  }
  m1 /= n, m2 /= n, m3 /= n, m4 /= n;
  // Moments about the true mean 0 of N(0,1): E z = 0, E z² = 1, E z³ = 0, E z⁴ = 3 (the kurtosis);
  // their sample means have variances 1/n, (3−1)/n, 15/n and (105−9)/n (E z⁶ = 15, E z⁸ = 105).
  BOOST_TEST(std::fabs(m1) <= kSigmas * std::sqrt(1.0 / n));
  BOOST_TEST(std::fabs(m2 - 1) <= kSigmas * std::sqrt(2.0 / n));
  BOOST_TEST(std::fabs(m3) <= kSigmas * std::sqrt(15.0 / n));
  BOOST_TEST(std::fabs(m4 - 3) <= kSigmas * std::sqrt(96.0 / n));
  // Two-sided 5% tail: a binomial proportion.
  const double p = 0.05, frac = static_cast<double>(beyond) / n;
  BOOST_TEST(std::fabs(frac - p) <= kSigmas * std::sqrt(p * (1 - p) / n));

  // mean and stddev scale it.
  std::vector<float> y(n);
  loco::fill_normal(y, 10.0f, 0.25f, 31337, 2);
  for (int i = 0; i < n; i += 997) BOOST_TEST_REQUIRE(y[i] == 10.0f + 0.25f * z[i]);
}

BOOST_AUTO_TEST_CASE(below_small_n_is_uniform) {
  loco::Rng rng(99, {1});
  for (int i = 0; i < 10000; ++i) BOOST_TEST_REQUIRE(rng.below(1) == 0u);
  constexpr int draws = 1 << 18;
  for (const std::uint64_t n : {2, 3, 7, 10, 1000}) {
    const std::vector<double> probs(n, 1.0 / static_cast<double>(n));
    const double stat = binned_chi_square(
        draws, n, [&] { return rng.below(n); }, [](std::uint64_t v) { return static_cast<std::size_t>(v); }, probs);
    BOOST_TEST(stat <= chi_square_bound(static_cast<int>(n) - 1), "below(" << n << "): chi-square " << stat);
  }
}

// For n = 3·2^62, taking a word modulo n doubles the weight of [0, 2^62), and the high half of
// word·n without rejection doubles the weight of multiples of 3: bins of v >> 62 and of v % 3
// expose either bias. The rejection step of Lemire's method must remove both.
BOOST_AUTO_TEST_CASE(below_large_n_is_unbiased) {
  loco::Rng rng(2718, {2});
  constexpr int draws = 1 << 18;
  const std::vector<double> thirds(3, 1.0 / 3);
  const double bound = chi_square_bound(2);

  const std::uint64_t n = 3 * (std::uint64_t{1} << 62);
  const auto high = [](std::uint64_t v) { return static_cast<std::size_t>(v >> 62); };
  const auto mod3 = [](std::uint64_t v) { return static_cast<std::size_t>(v % 3); };
  const double by_high = binned_chi_square(
      draws, n, [&] { return rng.below(n); }, high, thirds);
  const double by_mod3 = binned_chi_square(
      draws, n, [&] { return rng.below(n); }, mod3, thirds);
  BOOST_TEST(by_high <= bound);
  BOOST_TEST(by_mod3 <= bound);
  // The same statistics do catch the two biased shortcuts (expected statistic ≈ draws/8).
  loco::Rng raw(2718, {2});
  const double modulo = binned_chi_square(
      draws, n, [&] { return raw.next_u64() % n; }, high, thirds);
  const double multiply = binned_chi_square(
      draws, n,
      [&] {
        __extension__ typedef unsigned __int128 u128;
        return static_cast<std::uint64_t>((static_cast<u128>(raw.next_u64()) * n) >> 64);
      },
      mod3, thirds);
  BOOST_TEST(modulo > 100 * bound);
  BOOST_TEST(multiply > 100 * bound);

  // n = 2^63 + 1 (divisible by 3): quarters by the top bits (the last one holds one extra value,
  // 2^63, which bin_of folds into it) and residues mod 3 are uniform.
  const std::uint64_t m = (std::uint64_t{1} << 63) + 1;
  const auto quarter = [](std::uint64_t v) { return static_cast<std::size_t>(std::min<std::uint64_t>(v >> 61, 3)); };
  const std::vector<double> quarters(4, 0.25);
  BOOST_TEST(binned_chi_square(
                 draws, m, [&] { return rng.below(m); }, quarter, quarters) <= chi_square_bound(3));
  BOOST_TEST(binned_chi_square(
                 draws, m, [&] { return rng.below(m); }, mod3, thirds) <= bound);

  // The largest n: in range.
  const std::uint64_t top = ~std::uint64_t{0};
  for (int i = 0; i < 1000; ++i) BOOST_TEST_REQUIRE(rng.below(top) < top);
}

BOOST_AUTO_TEST_SUITE_END()
