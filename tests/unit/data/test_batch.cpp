// Tests of the worker's batch samplers: determinism, random access (resuming from a step count
// gives the same batches), epochs that are permutations, uniform draws, window offsets that cover
// exactly [0, len − ctx − 1], and the gather helpers.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <vector>

#include "helpers.hpp"
#include "loco/data/batch.hpp"

namespace {
namespace ld = loco::data;
using loco::ErrorKind;
using loco_test::require_error;
}  // namespace

BOOST_AUTO_TEST_SUITE(batch_sampler)

BOOST_AUTO_TEST_CASE(shuffle_epochs_are_permutations_and_batches_cross_them) {
  constexpr std::int64_t n = 37, b = 8;  // batches straddle epoch boundaries
  ld::BatchSampler s(n, b, ld::SampleMode::Shuffle, 5, 2, 3);
  std::vector<std::int64_t> stream;
  for (std::int64_t step = 0; step < 4 * n; ++step) {  // 148 batches of 8 = 1184 draws = 32 epochs of 37
    const auto batch = s.indices(step);
    BOOST_REQUIRE(static_cast<std::int64_t>(batch.size()) == b);
    stream.insert(stream.end(), batch.begin(), batch.end());
  }
  const std::int64_t epochs = static_cast<std::int64_t>(stream.size()) / n;
  std::set<std::vector<std::int64_t>> distinct;
  for (std::int64_t e = 0; e < epochs; ++e) {
    std::vector<std::int64_t> epoch(stream.begin() + e * n, stream.begin() + (e + 1) * n);
    distinct.insert(epoch);
    std::sort(epoch.begin(), epoch.end());
    for (std::int64_t i = 0; i < n; ++i) BOOST_REQUIRE(epoch[static_cast<std::size_t>(i)] == i);
  }
  BOOST_TEST(static_cast<std::int64_t>(distinct.size()) == epochs);  // every epoch reshuffled
}

BOOST_AUTO_TEST_CASE(any_step_can_be_drawn_directly) {
  for (auto mode : {ld::SampleMode::Shuffle, ld::SampleMode::Replacement}) {
    ld::BatchSampler run(100, 16, mode, 9, 1, 4);
    std::vector<std::vector<std::int64_t>> seq;
    for (std::int64_t step = 0; step < 50; ++step) seq.push_back(run.indices(step));
    // A fresh sampler resumed at step 37 (as after a restart) and one going backwards agree.
    ld::BatchSampler resumed(100, 16, mode, 9, 1, 4);
    for (std::int64_t step = 37; step < 50; ++step)
      BOOST_TEST(resumed.indices(step) == seq[static_cast<std::size_t>(step)]);
    for (std::int64_t step = 49; step >= 0; --step)
      BOOST_TEST(resumed.indices(step) == seq[static_cast<std::size_t>(step)]);
    // Other worker, round or seed: other streams.
    BOOST_TEST(ld::BatchSampler(100, 16, mode, 9, 2, 4).indices(0) != seq[0]);
    BOOST_TEST(ld::BatchSampler(100, 16, mode, 9, 1, 5).indices(0) != seq[0]);
    BOOST_TEST(ld::BatchSampler(100, 16, mode, 10, 1, 4).indices(0) != seq[0]);
  }
}

BOOST_AUTO_TEST_CASE(replacement_draws_are_uniform) {
  // T = steps·b draws; each index count ~ Binomial(T, 1/n), checked within 5σ; repeats within a
  // batch are allowed and happen.
  constexpr std::int64_t n = 20, b = 10, steps = 4000;
  ld::BatchSampler s(n, b, ld::SampleMode::Replacement, 1, 0, 0);
  std::vector<double> count(n, 0);
  bool repeat = false;
  std::vector<std::int64_t> out(b);
  for (std::int64_t step = 0; step < steps; ++step) {
    s.indices(step, out);
    for (std::int64_t i : out) {
      BOOST_REQUIRE(i >= 0);
      BOOST_REQUIRE(i < n);
      count[static_cast<std::size_t>(i)] += 1;
    }
    std::set<std::int64_t> u(out.begin(), out.end());
    repeat |= u.size() < out.size();
  }
  const double T = steps * b, mean = T / n, sd = std::sqrt(T * (1.0 / n) * (1 - 1.0 / n));
  for (double c : count) BOOST_TEST(std::fabs(c - mean) <= 5 * sd);
  BOOST_TEST(repeat);
}

BOOST_AUTO_TEST_CASE(bad_arguments) {
  require_error([] { ld::BatchSampler(0, 4, ld::SampleMode::Shuffle, 1, 0, 0); }, ErrorKind::Usage, {"0 examples"});
  require_error([] { ld::BatchSampler(4, 0, ld::SampleMode::Shuffle, 1, 0, 0); }, ErrorKind::Usage, {"batch size 0"});
  ld::BatchSampler s(4, 2, ld::SampleMode::Shuffle, 1, 0, 0);
  require_error([&] { s.indices(-1); }, ErrorKind::Usage, {"step -1"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(window_sampler)

BOOST_AUTO_TEST_CASE(offsets_cover_exactly_the_valid_range) {
  // tokens = ctx + 3: valid offsets are 0, 1, 2 (window of ctx + 1 tokens); each ~ 1/3.
  constexpr std::int64_t ctx = 16, len = ctx + 3, b = 6, steps = 3000;
  const ld::WindowSampler w(len, ctx, b, 3, 1, 2);
  BOOST_TEST(w.max_offset() == 2);
  std::vector<double> count(3, 0);
  for (std::int64_t step = 0; step < steps; ++step)
    for (std::int64_t o : w.offsets(step)) {
      BOOST_REQUIRE(o >= 0);
      BOOST_REQUIRE(o <= 2);
      count[static_cast<std::size_t>(o)] += 1;
    }
  const double T = steps * b, sd = std::sqrt(T * (1.0 / 3) * (2.0 / 3));
  for (double c : count) BOOST_TEST(std::fabs(c - T / 3) <= 5 * sd);
  // The shortest stream: exactly one window.
  const ld::WindowSampler one(ctx + 1, ctx, 4, 3, 1, 2);
  BOOST_TEST((one.offsets(7) == std::vector<std::int64_t>{0, 0, 0, 0}));
  require_error([] { ld::WindowSampler(16, 16, 1, 1, 0, 0); }, ErrorKind::Usage, {"16 tokens", "ctx + 1 = 17"});
}

BOOST_AUTO_TEST_CASE(windows_are_deterministic_resumable_and_keyed) {
  const ld::WindowSampler a(100000, 64, 8, 42, 3, 7);
  const auto at10 = a.offsets(10);
  BOOST_TEST(ld::WindowSampler(100000, 64, 8, 42, 3, 7).offsets(10) == at10);
  BOOST_TEST(a.offsets(11) != at10);
  BOOST_TEST(ld::WindowSampler(100000, 64, 8, 42, 4, 7).offsets(10) != at10);
  BOOST_TEST(ld::WindowSampler(100000, 64, 8, 42, 3, 8).offsets(10) != at10);
  BOOST_TEST(ld::WindowSampler(100000, 64, 8, 43, 3, 7).offsets(10) != at10);
}

BOOST_AUTO_TEST_CASE(gather_helpers_copy_rows_and_windows) {
  ld::TokenData t;
  for (int k = 0; k < 50; ++k) t.tokens.push_back(static_cast<std::uint8_t>(200 + k % 50));
  const std::vector<std::int64_t> offsets{0, 45};
  std::vector<std::int32_t> out(2 * 5);
  ld::gather_windows(t, offsets, 4, out);
  BOOST_TEST((out == std::vector<std::int32_t>{200, 201, 202, 203, 204, 245, 246, 247, 248, 249}));
  const std::vector<std::int64_t> past{46};
  std::vector<std::int32_t> one(5);
  require_error([&] { ld::gather_windows(t, past, 4, one); }, ErrorKind::Usage, {"[46, 51)"});

  ld::ClassificationData d;
  d.n = 3;
  d.d = 2;
  d.x = {0, 1, 2, 3, 4, 5};
  d.y = {7, 8, 9};
  d.classes = 10;
  const std::vector<std::int64_t> idx{2, 2, 0};
  std::vector<float> x(6);
  std::vector<std::int32_t> y(3);
  ld::gather_batch(d, idx, x, y);
  BOOST_TEST((x == std::vector<float>{4, 5, 4, 5, 0, 1}));
  BOOST_TEST((y == std::vector<std::int32_t>{9, 9, 7}));
  std::vector<float> small(4);
  require_error([&] { ld::gather_batch(d, idx, small, y); }, ErrorKind::Usage, {"gather_batch"});
}

BOOST_AUTO_TEST_SUITE_END()
