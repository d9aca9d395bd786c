// Global-norm clipping (torch.nn.utils.clip_grad_norm_) and learning-rate schedules at their boundaries.
#include <boost/test/unit_test.hpp>

#include <tbb/global_control.h>

#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "helpers.hpp"
#include "loco/core/rng.hpp"
#include "loco/optim/clip.hpp"
#include "loco/optim/schedule.hpp"

using namespace loco;
using namespace loco::optim;
using namespace loco::optim::test;

namespace {

// Norm 13: 3² + 4² + 12² = 169.
TensorSet thirteen() {
  TensorSet g;
  g.add("a", vec({3.0f, 4.0f}));
  g.add("b", vec({12.0f}));
  return g;
}

template <typename F>
bool throws_kind(F&& f, ErrorKind kind, std::string_view needle = {}) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind() == kind && std::string_view(e.what()).find(needle) != std::string_view::npos;
  }
  return false;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(clip)

BOOST_AUTO_TEST_CASE(clipped_norm_equals_max_norm) {
  TensorSet g = thirteen();
  const double norm = clip_grad_norm(g, 1.0);
  BOOST_TEST(norm == 13.0);
  // Each element is multiplied by float(1/(13 + 1e-6)): two roundings, so the norm after clipping
  // is max_norm·13/(13 + 1e-6) within 2u relative (plus the norm's own rounding in double).
  const double after = global_norm(g);
  const double want = 1.0 * 13.0 / (13.0 + 1e-6);
  BOOST_TEST(std::abs(after - want) <= 2 * kU * want);
  BOOST_TEST(std::abs(after - 1.0) <= 2 * kU + 1e-6 / 13.0);
}

BOOST_AUTO_TEST_CASE(clipping_large_random_set) {
  TensorSet g;
  for (int k = 0; k < 3; ++k) {
    std::vector<float> x(70001 + k);
    fill_normal(x, 0.0f, 2.0f, 11, k);
    g.add(fmt::format("t{}", k), vec(x));
  }
  double want_sq = 0;
  for (const auto& e : g)
    for (float x : e.tensor.f32()) want_sq += static_cast<double>(x) * x;
  const double norm = global_norm(g);
  // Double accumulation of 2·10^5 float squares in two orders: relative difference ≪ 1e-12.
  BOOST_TEST(std::abs(norm - std::sqrt(want_sq)) <= 1e-12 * norm);
  const double max_norm = 5.0;
  BOOST_TEST(clip_grad_norm(g, max_norm) == norm);
  const double after = global_norm(g);
  BOOST_TEST(std::abs(after - max_norm * norm / (norm + 1e-6)) <= 2 * kU * max_norm);
}

BOOST_AUTO_TEST_CASE(below_max_norm_is_untouched) {
  TensorSet g = thirteen();
  BOOST_TEST(clip_grad_norm(g, 20.0) == 13.0);
  BOOST_TEST(same_bits(g.at("a").f32(), std::vector<float>{3.0f, 4.0f}));
  BOOST_TEST(same_bits(g.at("b").f32(), std::vector<float>{12.0f}));
  // As torch: a norm equal to max_norm still scales by max_norm/(norm + 1e-6) < 1.
  TensorSet h = thirteen();
  clip_grad_norm(h, 13.0);
  BOOST_TEST(h.at("b").f32()[0] < 12.0f);
  BOOST_TEST(std::abs(h.at("b").f32()[0] - 12.0 * 13.0 / (13.0 + 1e-6)) <= 2 * kU * 12.0);
}

BOOST_AUTO_TEST_CASE(norm_is_thread_count_independent) {
  TensorSet g;
  std::vector<float> x(1 << 20);
  fill_normal(x, 0.0f, 1.0f, 3, 0);
  g.add("x", vec(x));
  double norms[2];
  for (int threads : {1, 2}) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    norms[threads - 1] = global_norm(g);
  }
  BOOST_TEST(std::memcmp(&norms[0], &norms[1], sizeof(double)) == 0);
}

BOOST_AUTO_TEST_CASE(errors) {
  TensorSet g = thirteen();
  for (double bad : {0.0, -1.0, std::nan(""), HUGE_VAL})
    BOOST_TEST(throws_kind([&] { clip_grad_norm(g, bad); }, ErrorKind::Usage));
  g.at("b").f32()[0] = std::nanf("");
  BOOST_TEST(throws_kind([&] { clip_grad_norm(g, 1.0); }, ErrorKind::Numeric, "'b'"));
  g.at("b").f32()[0] = INFINITY;
  BOOST_TEST(throws_kind([&] { clip_grad_norm(g, 1.0); }, ErrorKind::Numeric, "'b'"));
  TensorSet h;
  h.add("half", Tensor({2}, DType::F16));
  BOOST_TEST(throws_kind([&] { global_norm(h); }, ErrorKind::BadInput, "'half'"));
  BOOST_TEST(global_norm(TensorSet()) == 0.0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(schedule)

// A few double roundings of values ≤ 1: 4e-16 is under 2 ulps of 1.
constexpr double kTol = 4e-16;

BOOST_AUTO_TEST_CASE(constant_and_warmup) {
  const ScheduleSpec c = parse_schedule("constant");
  BOOST_TEST(scheduled_lr(c, 0.1, 0) == 0.1);
  BOOST_TEST(scheduled_lr(c, 0.1, 123456) == 0.1);
  const ScheduleSpec w = parse_schedule("constant:warmup=4");
  BOOST_TEST(scheduled_lr(w, 0.1, 0) == 0.1 * 1 / 4);
  BOOST_TEST(scheduled_lr(w, 0.1, 1) == 0.1 * 2 / 4);
  BOOST_TEST(scheduled_lr(w, 0.1, 3) == 0.1);
  BOOST_TEST(scheduled_lr(w, 0.1, 4) == 0.1);
}

BOOST_AUTO_TEST_CASE(cosine_boundaries) {
  // DiLoCo-like: warm-up 10, total 110, floor 0.01 under a peak of 0.1.
  const ScheduleSpec s = parse_schedule("cosine:warmup=10,total=110,min_lr=0.01");
  const double lr = 0.1, lo = 0.01;
  BOOST_TEST(scheduled_lr(s, lr, 0) == lr / 10);
  BOOST_TEST(scheduled_lr(s, lr, 9) == lr);                                      // last warm-up step reaches the peak
  BOOST_TEST(scheduled_lr(s, lr, 10) == lr);                                     // p = 0: cos 0 = 1
  BOOST_TEST(std::abs(scheduled_lr(s, lr, 60) - (lo + (lr - lo) / 2)) <= kTol);  // p = 1/2
  const double last = lo + (lr - lo) * (1 + std::cos(std::numbers::pi * 99.0 / 100.0)) / 2;
  BOOST_TEST(std::abs(scheduled_lr(s, lr, 109) - last) <= kTol);
  BOOST_TEST(scheduled_lr(s, lr, 109) > lo);
  BOOST_TEST(scheduled_lr(s, lr, 110) == lo);
  BOOST_TEST(scheduled_lr(s, lr, 1000000) == lo);
  for (std::int64_t t = 10; t < 110; ++t) BOOST_TEST(scheduled_lr(s, lr, t + 1) <= scheduled_lr(s, lr, t));
  // No warm-up: step 0 is the peak.
  const ScheduleSpec nw = parse_schedule("cosine:total=4");
  BOOST_TEST(scheduled_lr(nw, 1.0, 0) == 1.0);
  BOOST_TEST(std::abs(scheduled_lr(nw, 1.0, 2) - 0.5) <= kTol);
  BOOST_TEST(scheduled_lr(nw, 1.0, 4) == 0.0);
}

BOOST_AUTO_TEST_CASE(linear_boundaries) {
  const ScheduleSpec s = parse_schedule("linear:warmup=2,total=6,min_lr=0.2");
  BOOST_TEST(scheduled_lr(s, 1.0, 0) == 0.5);
  BOOST_TEST(scheduled_lr(s, 1.0, 1) == 1.0);
  BOOST_TEST(scheduled_lr(s, 1.0, 2) == 1.0);
  BOOST_TEST(std::abs(scheduled_lr(s, 1.0, 4) - 0.6) <= kTol);
  BOOST_TEST(std::abs(scheduled_lr(s, 1.0, 5) - 0.4) <= kTol);
  BOOST_TEST(scheduled_lr(s, 1.0, 6) == 0.2);
}

BOOST_AUTO_TEST_CASE(text_round_trips_and_errors) {
  for (const char* text : {"constant:warmup=0", "constant:warmup=7", "cosine:warmup=1000,total=88000,min_lr=4e-05",
                           "linear:warmup=0,total=10,min_lr=0"}) {
    BOOST_TEST(format_schedule(parse_schedule(text)) == text);
  }
  BOOST_TEST(throws_kind([] { parse_schedule("step"); }, ErrorKind::Usage, "step"));
  BOOST_TEST(throws_kind([] { parse_schedule("cosine:warmup=10"); }, ErrorKind::Usage, "total"));
  BOOST_TEST(throws_kind([] { parse_schedule("cosine:warmup=10,total=10"); }, ErrorKind::Usage, "total"));
  BOOST_TEST(throws_kind([] { parse_schedule("constant:total=10"); }, ErrorKind::Usage, "total"));
  BOOST_TEST(throws_kind([] { parse_schedule("constant:warmup=-1"); }, ErrorKind::Usage, "warmup"));
  BOOST_TEST(throws_kind([] { parse_schedule("constant:warmup=x"); }, ErrorKind::Usage, "warmup"));
  BOOST_TEST(throws_kind([] { parse_schedule("cosine:total=5,min_lr=-1"); }, ErrorKind::Usage, "min_lr"));
  BOOST_TEST(throws_kind([] { parse_schedule("cosine:total=5,total=6"); }, ErrorKind::Usage, "twice"));
  const ScheduleSpec s = parse_schedule("cosine:total=5,min_lr=0.5");
  BOOST_TEST(throws_kind([&] { scheduled_lr(s, 0.1, 0); }, ErrorKind::Usage, "min_lr"));
  BOOST_TEST(throws_kind([&] { scheduled_lr(s, 1.0, -1); }, ErrorKind::Usage, "-1"));
  BOOST_TEST(throws_kind([&] { scheduled_lr(s, std::nan(""), 0); }, ErrorKind::Usage));
}

BOOST_AUTO_TEST_SUITE_END()
