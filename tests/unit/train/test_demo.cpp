// loco-worker --optimizer demo: the DeMo step against a hand computation over two steps (δ, q and
// the residual), the worker's compressed delta and state against the step applied to the gradient
// rebuilt from the libraries over two rounds, and the refusals (--steps ≠ 1, foreign state).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <numbers>

#include "helpers.hpp"
#include "loco/compress/codec.hpp"
#include "loco/compress/feedback.hpp"
#include "loco/train/demo.hpp"
#include "loco/train/worker.hpp"

using namespace loco;
using namespace loco::train;
using namespace loco::train::test;
using std::int64_t;

namespace {

const char* kGpt = R"({"arch":"gpt","vocab":64,"ctx":8,"d_model":8,"layers":1,"heads":2})";

// C[k][n] of the orthonormal DCT-II of length N, in double.
double dct(int N, int k, int n) {
  return (k == 0 ? std::sqrt(1.0 / N) : std::sqrt(2.0 / N)) * std::cos(std::numbers::pi * (n + 0.5) * k / N);
}

// The gradient of worker w's batch at cumulative step `step` at the model's parameters.
TensorSet gradient_at(const model::ModelFile& m, const data::DataFile& d, int64_t step, int64_t batch,
                      std::uint64_t seed, int64_t w) {
  model::Model net(m.config);
  TensorSet grads = net.make_params();
  const auto& c = m.config;
  std::vector<int64_t> idx(static_cast<std::size_t>(batch));
  std::vector<std::int32_t> t(static_cast<std::size_t>(batch * (c.ctx + 1)));
  data::WindowSampler ws(d.examples(), c.ctx, batch, seed, static_cast<std::uint64_t>(w), 0);
  ws.offsets(step, idx);
  data::gather_windows(d.stream, idx, c.ctx, t);
  net.forward_backward(m.params, model::Batch::tokens(std::span<const std::int32_t>(t), c.ctx), &grads);
  return grads;
}

WorkerOptions demo_options(const Scratch& s) {
  WorkerOptions o;
  o.model = s.file("global.h5");
  o.data = s.file("shard.h5");
  o.output = s.file("delta.h5");
  o.state = s.file("state.h5");
  o.steps = 1;
  o.batch = 3;
  o.optimizer = "demo:lr=0.5,beta=0.9,chunk=4,k=2";
  o.schedule = "cosine:warmup=1,total=4,min_lr=0.05";
  o.seed = 5;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(demo)

BOOST_AUTO_TEST_CASE(two_steps_by_hand_on_a_four_element_tensor) {
  // One 1 × 4 tile (chunk 4), k = 1, β = 0.5, lr = 0.5.
  const auto codec = compress::Codec::parse("dct_topk:chunk=4,k=1,tile=2d");
  const auto memory = compress::parse_feedback("sparseloco:beta=0.5");
  compress::TensorState st;
  // Step 1: g = (1, 1, 1, 3): δ = 0.5·g = (0.5, 0.5, 0.5, 1.5). Coefficients: X0 = Σδ/2 = 1.5 (the
  // largest: |X1| = 0.653, X2 = 0.5, |X3| = 0.271), so q = {0: 1.5}, IDCT(q) = 1.5·½ = 0.75 each,
  // residual δ = (−0.25, −0.25, −0.25, 0.75). Every number here is exact in float32.
  auto q = demo_step(codec, *memory, Tensor::from_floats({4}, std::vector<float>{1, 1, 1, 3}), 0.5, st, "t");
  BOOST_TEST(q.get("indices").template as<std::uint16_t>()[0] == 0);
  BOOST_TEST(q.get("values").f32()[0] == 1.5f, boost::test_tools::tolerance(1e-6f));
  const std::vector<double> r1 = {-0.25, -0.25, -0.25, 0.75};
  for (int n = 0; n < 4; ++n) BOOST_TEST(st.find("residual")->f32()[n] == r1[n], boost::test_tools::tolerance(1e-6));
  // Step 2: g = 0: δ = 0.5·residual = (−0.125, −0.125, −0.125, 0.375), X0 = 0, X1 = −½·√½·cos(π/8)
  // (the largest), X2 = 0.25, X3 = −¼·√½·(cos(3π/8)); q = {1: X1}; residual δ − X1·C[1].
  q = demo_step(codec, *memory, Tensor::from_floats({4}, std::vector<float>{0, 0, 0, 0}), 0.5, st, "t");
  const double d2[4] = {-0.125, -0.125, -0.125, 0.375};
  double x1 = 0;
  for (int n = 0; n < 4; ++n) x1 += d2[n] * dct(4, 1, n);
  BOOST_TEST(x1 == -0.5 * std::sqrt(0.5) * std::cos(std::numbers::pi / 8), boost::test_tools::tolerance(1e-12));
  BOOST_TEST(q.get("indices").template as<std::uint16_t>()[0] == 1);
  BOOST_TEST(q.get("values").f32()[0] == x1, boost::test_tools::tolerance(1e-6));
  for (int n = 0; n < 4; ++n)
    BOOST_TEST(st.find("residual")->f32()[n] == d2[n] - x1 * dct(4, 1, n), boost::test_tools::tolerance(1e-6));
}

BOOST_AUTO_TEST_CASE(spec_parse_and_format) {
  BOOST_TEST(format_demo_spec(parse_demo_spec("demo")) == "demo:lr=0.0004,beta=0.999,chunk=64,k=32");
  const DemoSpec s = parse_demo_spec("demo:k=8,lr=1e-3,beta=0.99,chunk=16");
  BOOST_TEST(format_demo_spec(parse_demo_spec(format_demo_spec(s))) == format_demo_spec(s));
  BOOST_TEST(demo_codec_spec(s) == "dct_topk:chunk=16,k=8,tile=2d");
  require_error([] { parse_demo_spec("demo:beta=0"); }, ErrorKind::Usage, {"beta"});
  require_error([] { parse_demo_spec("demo:k=17,chunk=4"); }, ErrorKind::Usage, {"k=17"});
  require_error([] { parse_demo_spec("demo:momentum=0.9"); }, ErrorKind::Usage, {"momentum"});
  BOOST_TEST(is_demo_optimizer("demo:lr=1"));
  BOOST_TEST(!is_demo_optimizer("demolition"));
}

BOOST_AUTO_TEST_CASE(worker_output_and_state_over_two_rounds) {
  Scratch s("demo");
  const auto cfg = config(kGpt);
  write_init_model(s.file("global.h5"), cfg, 3, /*round=*/4);
  write_tokens(s.file("shard.h5"), random_tokens(200, 64, 2), /*shard=*/2);
  auto o = demo_options(s);
  const model::ModelFile global = model::read_model(o.model);
  const data::DataFile shard = data::read_data(o.data);
  const auto codec = compress::Codec::parse("dct_topk:chunk=4,k=2,tile=2d");
  const auto memory = compress::parse_feedback("sparseloco:beta=0.9");
  const auto sched = optim::parse_schedule(o.schedule);
  std::vector<std::pair<std::string, compress::TensorState>> ref;
  for (const auto& e : global.params) ref.emplace_back(e.name, compress::TensorState{});
  for (int64_t round = 0; round < 2; ++round) {
    BOOST_TEST_CONTEXT("round " << round) {
      const WorkerResult r = run_worker(o);
      io::forget_inputs();
      BOOST_TEST(r.step == round + 1);
      const TensorSet g = gradient_at(global, shard, round, o.batch, o.seed, 2);
      const double lr = optim::scheduled_lr(sched, 0.5, round);
      auto src = io::open_source(o.output, false);
      const Attributes a = src->attributes();
      BOOST_TEST(a.get_string("kind").value() == "compressed");
      BOOST_TEST(a.get_string("source_kind").value() == "delta");
      BOOST_TEST(a.get_string("codec").value() == "dct_topk:chunk=4,k=2,tile=2d");
      BOOST_TEST(a.get_string("base_checksum").value() == global.checksum);
      BOOST_TEST(a.get_string("model_config").value() == cfg.canonical_json());
      BOOST_TEST(a.get_int("round").value() == 4);
      BOOST_TEST(a.get_int("worker").value() == 2);
      BOOST_TEST(a.get_int("samples").value() == o.batch * cfg.ctx);
      BOOST_TEST(a.get_int("step").value() == round + 1);
      BOOST_TEST(a.get_double("lr").value() == lr);
      BOOST_TEST(a.get_string("inner_optimizer").value() == "demo:lr=0.5,beta=0.9,chunk=4,k=2");
      std::int64_t payload = 0;
      for (auto& [name, st] : ref) {
        const compress::Encoded want = demo_step(codec, *memory, g.at(name), lr, st, name);
        const compress::Encoded got = compress::read_encoded(*src, name);
        for (const char* ds : {"indices", "values"}) {
          const auto x = want.get(ds).bytes();
          const auto y = got.get(ds).bytes();
          BOOST_TEST_INFO(name << " " << ds);
          BOOST_CHECK(std::equal(x.begin(), x.end(), y.begin(), y.end()));
        }
        payload += want.payload_bytes();
      }
      BOOST_TEST(a.get_int("payload_bytes").value() == payload);
      // The state: δ after the step, bit for bit, and the step counter.
      const TensorSet stored = read_group(o.state, optim::state_group(kDemoSlot));
      for (const auto& [name, st] : ref) {
        const auto x = st.find("residual")->bytes();
        const auto y = stored.at(name).bytes();
        BOOST_TEST_INFO(name);
        BOOST_CHECK(std::equal(x.begin(), x.end(), y.begin(), y.end()));
      }
      BOOST_TEST(read_attributes(o.state).get_int("step").value() == round + 1);
      io::forget_inputs();
    }
  }
}

BOOST_AUTO_TEST_CASE(refusals_write_nothing) {
  Scratch s("demo-bad");
  const auto cfg = config(kGpt);
  write_init_model(s.file("global.h5"), cfg, 3);
  write_tokens(s.file("shard.h5"), random_tokens(200, 64, 2));
  auto o = demo_options(s);
  o.steps = 2;
  require_error([&] { run_worker(o); }, ErrorKind::Usage, {"--steps 1", "every step"});
  o.steps = 1;
  o.overlap = 0;
  o.save_local = s.file("local.h5");
  require_error([&] { run_worker(o); }, ErrorKind::Usage, {"demo"});
  o.save_local.clear();
  // A state written by another optimizer.
  WorkerOptions adam = o;
  adam.optimizer = "adamw:lr=0.01";
  adam.output = s.file("other.h5");
  adam.schedule = "constant";
  run_worker(adam);
  io::forget_inputs();
  std::filesystem::remove(s.file("other.h5"));
  require_error([&] { run_worker(o); }, ErrorKind::BadInput, {"state of optimizer"});
  io::forget_inputs();
  BOOST_TEST(!std::filesystem::exists(o.output));
}

BOOST_AUTO_TEST_SUITE_END()
