// Element-wise kernels: any split of a range, the parallel whole-set step and any thread count
// give the same bits.
#include <boost/test/unit_test.hpp>

#include <tbb/global_control.h>

#include <cmath>

#include "helpers.hpp"
#include "loco/core/rng.hpp"
#include "loco/optim/optimizer.hpp"

using namespace loco;
using namespace loco::optim;
using namespace loco::optim::test;

namespace {

struct Case {
  bool outer;
  const char* spec;
};

const Case kCases[] = {
    {false, "sgd:lr=0.1"},
    {false, "sgd:lr=0.1,weight_decay=0.01"},
    {false, "sgd:lr=0.1,weight_decay=0.01,decoupled=true"},
    {false, "momentum:lr=0.1,momentum=0.9,weight_decay=0.01"},
    {false, "nesterov:lr=0.1,momentum=0.9,weight_decay=0.01,decoupled=true"},
    {false, "adamw"},
    {false, "adam:weight_decay=0.01"},
    {false, "adam:beta1=0.2"},
    {true, "sgd"},
    {true, "momentum"},
    {true, "nesterov"},
    {true, "adam"},
    {true, "fedavgm:server_momentum=0.9"},
    {true, "fedadagrad"},
    {true, "fedadam"},
    {true, "fedadam:bias_correction=false"},
    {true, "fedyogi"},
    {true, "delayed_nesterov:period=3"},
};

std::unique_ptr<Optimizer> make(const Case& c) {
  return c.outer ? make_outer_optimizer(c.spec) : make_inner_optimizer(c.spec);
}

// Random parameters, gradients and state (second-moment slots non-negative), same for every call.
struct Data {
  std::vector<float> param, grad;
  std::vector<std::vector<float>> slots;
  Data(const Optimizer& opt, std::size_t n, std::uint64_t seed) : param(n), grad(n) {
    fill_normal(param, 0.0f, 1.0f, seed, 1);
    fill_normal(grad, 0.0f, 0.1f, seed, 2);
    const auto names = opt.slots();
    for (std::size_t k = 0; k < names.size(); ++k) {
      std::vector<float> s(n);
      fill_normal(s, 0.0f, 0.05f, seed, 10 + k);
      if (names[k] == "exp_avg_sq")
        for (float& x : s) x = x * x;
      slots.push_back(std::move(s));
    }
  }
  std::vector<std::span<float>> spans(std::size_t begin, std::size_t end) {
    std::vector<std::span<float>> out;
    for (auto& s : slots) out.push_back(std::span<float>(s).subspan(begin, end - begin));
    return out;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(blockwise)

BOOST_AUTO_TEST_CASE(split_ranges_equal_whole_range_bit_for_bit) {
  const std::size_t n = 1003;
  const std::size_t cuts[] = {0, 1, 7, 8, 500, 999, n};
  for (const Case& c : kCases) {
    auto opt = make(c);
    for (std::int64_t t : {1, 2, 3, 6}) {
      Data whole(*opt, n, 42), split(*opt, n, 42);
      auto ws = whole.spans(0, n);
      opt->apply(whole.param, whole.grad, ws, t, opt->lr());
      for (std::size_t k = 0; k + 1 < std::size(cuts); ++k) {
        const std::size_t b = cuts[k], e = cuts[k + 1];
        auto ss = split.spans(b, e);
        opt->apply(std::span<float>(split.param).subspan(b, e - b),
                   std::span<const float>(split.grad).subspan(b, e - b), ss, t, opt->lr());
      }
      BOOST_TEST(same_bits(whole.param, split.param), c.spec << " t=" << t << " param");
      for (std::size_t k = 0; k < whole.slots.size(); ++k)
        BOOST_TEST(same_bits(whole.slots[k], split.slots[k]), c.spec << " t=" << t << " slot " << opt->slots()[k]);
      for (float x : whole.param) BOOST_TEST_REQUIRE(std::isfinite(x), c.spec);
    }
  }
}

BOOST_AUTO_TEST_CASE(set_step_equals_kernel_and_ignores_thread_count) {
  // Two tensors, one larger than a parallel block (2^16 elements), updated twice.
  const std::int64_t big = 200003, small = 37;
  for (const Case& c : kCases) {
    auto opt = make(c);
    Data a(*opt, big, 5), b(*opt, small, 6);
    std::vector<std::vector<float>> results;
    for (int threads : {1, 2}) {
      tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
      TensorSet params, grads;
      params.add("a", Tensor::from_floats({big}, a.param));
      params.add("b", Tensor::from_floats({small}, b.param));
      grads.add("b", Tensor::from_floats({small}, b.grad));  // another order than params
      grads.add("a", Tensor::from_floats({big}, a.grad));
      OptimizerState st = opt->make_state(params);
      const auto names = opt->slots();
      for (std::size_t k = 0; k < names.size(); ++k) {
        std::copy(a.slots[k].begin(), a.slots[k].end(), st.slot(names[k]).at("a").f32().begin());
        std::copy(b.slots[k].begin(), b.slots[k].end(), st.slot(names[k]).at("b").f32().begin());
      }
      opt->step(params, grads, st);
      opt->step(params, grads, st);
      BOOST_TEST(st.step == 2);
      std::vector<float> flat;
      for (const auto& e : params) flat.insert(flat.end(), e.tensor.f32().begin(), e.tensor.f32().end());
      for (const auto& name : names)
        for (const auto& e : st.slot(name)) flat.insert(flat.end(), e.tensor.f32().begin(), e.tensor.f32().end());
      results.push_back(std::move(flat));
    }
    BOOST_TEST(same_bits(results[0], results[1]), c.spec << ": 1 thread vs 2");

    // The same two updates through apply() on the whole of "a".
    Data ref(*opt, big, 5);
    for (std::int64_t t : {1, 2}) {
      auto spans = ref.spans(0, big);
      opt->apply(ref.param, a.grad, spans, t, opt->lr());
    }
    BOOST_TEST(same_bits(std::span<const float>(results[0]).first(big), ref.param), c.spec << ": step vs apply");
  }
}

BOOST_AUTO_TEST_CASE(apply_checks_its_arguments) {
  auto opt = make_inner_optimizer("adamw");
  std::vector<float> p(4, 1.0f), g(4, 0.5f), m(4), v(4), short_slot(3);
  std::vector<std::span<float>> ok = {m, v}, one = {m}, mismatched = {m, short_slot};
  BOOST_CHECK_NO_THROW(opt->apply(p, g, ok, 1, 1e-3));
  BOOST_CHECK_EXCEPTION(opt->apply(p, g, one, 1, 1e-3), Error,
                        [](const Error& e) { return e.kind() == ErrorKind::Internal; });
  BOOST_CHECK_EXCEPTION(opt->apply(p, g, mismatched, 1, 1e-3), Error,
                        [](const Error& e) { return e.kind() == ErrorKind::Internal; });
  BOOST_CHECK_EXCEPTION(opt->apply(p, std::span<const float>(g).first(3), ok, 1, 1e-3), Error,
                        [](const Error& e) { return e.kind() == ErrorKind::Internal; });
  BOOST_CHECK_EXCEPTION(opt->apply(p, g, ok, 0, 1e-3), Error,
                        [](const Error& e) { return e.kind() == ErrorKind::Usage; });
  BOOST_CHECK_EXCEPTION(opt->apply(p, g, ok, 1, std::nan("")), Error,
                        [](const Error& e) { return e.kind() == ErrorKind::Usage; });
}

BOOST_AUTO_TEST_SUITE_END()
