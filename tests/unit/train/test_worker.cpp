// The worker's inner loop: the delta against the loop rebuilt from the libraries, its attributes,
// thread-count invariance, optimizer state carried across rounds, and every refusal (state of
// another worker, model or optimizer; shards that do not fit; non-finite losses) writing nothing.
#include <boost/test/unit_test.hpp>

#include <tbb/global_control.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "helpers.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/train/worker.hpp"

using namespace loco;
using namespace loco::train;
using namespace loco::train::test;
using std::int64_t;

namespace {

const char* kLogreg = R"({"arch":"logreg","features":5,"classes":3})";
const char* kMlp = R"({"arch":"mlp","sizes":[5,7,3]})";
const char* kGpt = R"({"arch":"gpt","vocab":64,"ctx":8,"d_model":8,"layers":1,"heads":2})";
const char* kGptTied = R"({"arch":"gpt","vocab":64,"ctx":8,"d_model":8,"layers":2,"heads":2,"tie_embeddings":true})";

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

WorkerOptions options(const Scratch& s, int64_t steps, int64_t batch) {
  WorkerOptions o;
  o.model = s.file("global.h5");
  o.data = s.file("shard.h5");
  o.output = s.file("delta.h5");
  o.state = s.file("state.h5");
  o.steps = steps;
  o.batch = batch;
  o.optimizer = "adamw:lr=0.01";
  o.schedule = "cosine:warmup=1,total=5";
  o.seed = 5;
  return o;
}

// Writes the shard of a config: rows of its feature count, or random tokens below its vocab.
void write_shard(const Scratch& s, const model::ModelConfig& cfg, int64_t shard_id, std::size_t tokens = 200) {
  if (cfg.is_classifier())
    write_rows(s.file("shard.h5"), 23, cfg.input_features(), cfg.num_classes(), 1, 1.0f, shard_id);
  else write_tokens(s.file("shard.h5"), random_tokens(tokens, static_cast<std::uint64_t>(cfg.vocab), 2), shard_id);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(worker)

BOOST_AUTO_TEST_CASE(delta_state_and_attributes_match_the_loop_rebuilt_from_the_libraries) {
  for (const char* json : {kLogreg, kMlp, kGpt, kGptTied}) {
    BOOST_TEST_CONTEXT(json) {
      Scratch s("ref");
      const auto cfg = config(json);
      // logreg starts at zero; shift it so that the first steps see nonzero logits too.
      write_init_model(s.file("global.h5"), cfg, 3, /*round=*/2, 1.0f, cfg.arch == model::Arch::LogReg ? 0.1f : 0.0f);
      write_shard(s, cfg, /*shard=*/3);
      const auto o = options(s, 3, 4);
      const WorkerResult r = run_worker(o);

      const model::ModelFile global = model::read_model(o.model);
      const data::DataFile shard = data::read_data(o.data);
      Reference ref(global, o.optimizer, o.schedule);
      ref.run(shard, o.steps, o.batch, o.seed, 3);
      io::forget_inputs();

      // Δ = θ_global − θ_local, bit for bit.
      require_bitwise_equal(read_group(o.output), difference(global.params, ref.params), "delta");
      const int64_t samples = o.steps * o.batch * (cfg.is_classifier() ? 1 : cfg.ctx);
      BOOST_TEST(r.samples == samples);
      BOOST_TEST(r.step == 3);
      BOOST_TEST(r.loss_mean == ref.loss_sum / 3.0);

      const Attributes a = read_attributes(o.output);
      BOOST_TEST(a.get_string("kind").value() == "delta");
      BOOST_TEST(a.get_string("model_config").value() == cfg.canonical_json());
      BOOST_TEST(a.get_int("round").value() == 2);
      BOOST_TEST(a.get_int("worker").value() == 3);  // the shard's `shard` attribute
      BOOST_TEST(a.get_int("samples").value() == samples);
      BOOST_TEST(a.get_int("step").value() == 3);
      BOOST_TEST(a.get_int("inner_steps").value() == 3);
      BOOST_TEST(a.get_string("base_checksum").value() == io::tensors_checksum(*io::open_source(o.model, false)));
      BOOST_TEST(a.get_string("base_checksum").value() == global.checksum);
      BOOST_TEST(a.get_double("loss_mean").value() == r.loss_mean);
      BOOST_TEST(a.get_double("loss_first").value() == r.loss_first);
      BOOST_TEST(a.get_double("loss_last").value() == r.loss_last);
      BOOST_TEST(std::isfinite(r.loss_first));
      BOOST_TEST(a.get_string("inner_optimizer").value() == optim::format_spec(ref.opt->spec()));

      // The state: the optimizer's moments and the cumulative step.
      const Attributes sa = read_attributes(o.state);
      BOOST_TEST(sa.get_string("kind").value() == "state");
      BOOST_TEST(sa.get_int("worker").value() == 3);
      BOOST_TEST(sa.get_int("step").value() == 3);
      BOOST_TEST(io::open_source(o.state, false)->group_attributes("state").get_int("step").value() == 3);
      for (const auto& [slot, set] : ref.state.slots) {
        TensorSet ordered;
        const TensorSet stored = read_group(o.state, optim::state_group(slot));
        for (const auto& e : set) ordered.add(e.name, stored.at(e.name).clone());
        require_bitwise_equal(ordered, set, slot);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(a_token_shard_of_exactly_ctx_plus_one_tokens_is_one_window) {
  Scratch s("onewindow");
  const auto cfg = config(kGpt);
  write_init_model(s.file("global.h5"), cfg, 4);
  const auto toks = random_tokens(static_cast<std::size_t>(cfg.ctx + 1), 64, 9);
  write_tokens(s.file("shard.h5"), toks);
  auto o = options(s, 1, 1);
  o.optimizer = "sgd:lr=1";
  o.schedule = "constant";
  o.state = "";
  run_worker(o);
  // One SGD step with lr 1 from θ: Δ = θ − (θ − 1·g) = g of the one window (up to the float
  // rounding of θ − (θ − g), so compare with the same float arithmetic).
  const model::ModelFile global = model::read_model(o.model);
  model::Model net(cfg);
  TensorSet g = net.make_params();
  std::vector<std::int32_t> w(toks.begin(), toks.end());
  net.forward_backward(global.params, model::Batch::tokens(std::span<const std::int32_t>(w), cfg.ctx), &g);
  TensorSet local;
  for (const auto& e : global.params) {
    Tensor t = e.tensor.clone();
    auto tv = t.f32();
    const auto gv = g.at(e.name).f32();
    for (std::size_t k = 0; k < tv.size(); ++k) tv[k] -= gv[k];
    local.add(e.name, std::move(t));
  }
  require_bitwise_equal(read_group(o.output), difference(global.params, local), "one-window delta");
  BOOST_TEST(read_attributes(o.output).get_int("samples").value() == cfg.ctx);
  BOOST_TEST(s.listing() == (std::vector<std::string>{"delta.h5", "global.h5", "shard.h5"}));
}

BOOST_AUTO_TEST_CASE(the_delta_is_bit_identical_for_one_and_two_threads) {
  const char* big_gpt = R"({"arch":"gpt","vocab":64,"ctx":16,"d_model":16,"layers":2,"heads":2})";
  for (const char* json : {kMlp, big_gpt}) {
    BOOST_TEST_CONTEXT(json) {
      Scratch s("threads");
      const auto cfg = config(json);
      write_init_model(s.file("global.h5"), cfg, 7);
      write_shard(s, cfg, 1, 600);
      TensorSet deltas[2];
      std::string states[2];
      for (int threads : {1, 2}) {
        tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
        auto o = options(s, 3, 16);
        o.output = s.file("delta-" + std::to_string(threads) + ".h5");
        o.state = s.file("state-" + std::to_string(threads) + ".h5");
        run_worker(o);
        io::forget_inputs();
        deltas[threads - 1] = read_group(o.output);
        states[threads - 1] = o.state;
      }
      require_bitwise_equal(deltas[0], deltas[1], "delta, 1 vs 2 threads");
      require_bitwise_equal(read_group(states[0], "state/exp_avg_sq"), read_group(states[1], "state/exp_avg_sq"),
                            "state, 1 vs 2 threads");
    }
  }
}

BOOST_AUTO_TEST_CASE(two_rounds_of_h_steps_with_the_state_carried_equal_one_run_of_2h_steps) {
  for (const char* json : {kMlp, kGpt}) {
    BOOST_TEST_CONTEXT(json) {
      Scratch s("persist");
      const auto cfg = config(json);
      write_init_model(s.file("global.h5"), cfg, 8);
      write_shard(s, cfg, 0);
      const int64_t H = 4;
      // The shard has 23 rows and the batch is 5, so the 8 steps cross epoch boundaries; the cosine
      // schedule runs over the cumulative step, so round 2 must continue at step H.
      auto o = options(s, H, 5);
      o.schedule = "cosine:warmup=2,total=8";
      const model::ModelFile m0 = model::read_model(o.model);
      const data::DataFile shard = data::read_data(o.data);
      io::forget_inputs();

      // One run of 2H steps, without a state file.
      auto o2h = o;
      o2h.steps = 2 * H;
      o2h.state = "";
      o2h.output = s.file("delta-2h.h5");
      run_worker(o2h);
      io::forget_inputs();

      // Round 1: H steps from m0, state saved.
      run_worker(o);
      io::forget_inputs();
      Reference ref(m0, o.optimizer, o.schedule);
      ref.run(shard, H, o.batch, o.seed, 0);
      require_bitwise_equal(read_group(o.output), difference(m0.params, ref.params), "round 1 delta");
      // Round 2 starts from a new global model; make it exactly the local parameters of round 1 so
      // that the two-round trajectory is the 2H-step one.
      write_params_model(s.file("global-1.h5"), cfg, ref.params, 1);
      std::filesystem::copy_file(o.state, s.file("state-copy.h5"));
      auto o1 = o;
      o1.model = s.file("global-1.h5");
      o1.output = s.file("delta-r2.h5");
      const WorkerResult r2 = run_worker(o1);
      io::forget_inputs();
      BOOST_TEST(r2.step == 2 * H);
      BOOST_TEST(read_attributes(o1.output).get_int("round").value() == 1);
      BOOST_TEST(read_attributes(o1.state).get_int("step").value() == 2 * H);

      TensorSet local_1 = model::read_model(o1.model).params;
      ref.run(shard, H, o.batch, o.seed, 0);  // the reference continues: steps H..2H−1
      io::forget_inputs();
      require_bitwise_equal(read_group(o1.output), difference(local_1, ref.params), "round 2 delta");
      // The single 2H-step run ends at the same local parameters.
      require_bitwise_equal(read_group(o2h.output), difference(m0.params, ref.params), "2H-step delta");

      // A rerun of round 2 from the same state gives the same delta, bit for bit.
      auto again = o1;
      again.state = s.file("state-copy.h5");
      again.output = s.file("delta-r2-again.h5");
      run_worker(again);
      io::forget_inputs();
      // The same state: every root attribute but the creation time (the runs may fall in two
      // different seconds), and every optimizer slot bit for bit.
      const Attributes a = read_attributes(again.state), b = read_attributes(o1.state);
      BOOST_TEST(a.size() == b.size());
      for (const auto& e : a)
        if (e.name != "created") BOOST_TEST((b.find(e.name) != nullptr && *b.find(e.name) == e.value), e.name);
      for (const char* slot : {"state/exp_avg", "state/exp_avg_sq"})
        require_bitwise_equal(read_group(again.state, slot), read_group(o1.state, slot), slot);
      require_bitwise_equal(read_group(again.output), read_group(o1.output), "rerun of round 2");
    }
  }
}

BOOST_AUTO_TEST_CASE(a_state_of_another_worker_model_or_optimizer_is_refused_and_nothing_written) {
  Scratch s("refuse");
  const auto cfg = config(kMlp);
  write_init_model(s.file("global.h5"), cfg, 1);
  write_shard(s, cfg, 0);
  auto o = options(s, 2, 4);
  run_worker(o);  // state of worker 0, adamw, this mlp
  io::forget_inputs();
  std::filesystem::remove(o.output);
  const std::string before = file_bytes(o.state);

  auto other_worker = o;
  other_worker.worker = 1;
  require_error([&] { run_worker(other_worker); }, ErrorKind::BadInput, {o.state, "worker 0", "worker 1"});

  auto other_optimizer = o;
  other_optimizer.optimizer = "momentum:lr=0.01";
  require_error([&] { run_worker(other_optimizer); }, ErrorKind::BadInput, {o.state, "optimizer", "momentum"});

  const auto other_cfg = config(R"({"arch":"mlp","sizes":[5,6,3]})");
  write_init_model(s.file("other.h5"), other_cfg, 1);
  auto other_model = o;
  other_model.model = s.file("other.h5");
  require_error([&] { run_worker(other_model); }, ErrorKind::BadInput, {o.state, "another model"});

  BOOST_TEST(file_bytes(o.state) == before);
  BOOST_TEST(!std::filesystem::exists(o.output));
  BOOST_TEST(s.listing() == (std::vector<std::string>{"global.h5", "other.h5", "shard.h5", "state.h5"}));
}

BOOST_AUTO_TEST_CASE(a_non_finite_loss_stops_with_a_numeric_error_and_writes_nothing) {
  {
    // Huge weights: the hidden layer reaches ~1e30 and the logits overflow to ±inf at step 0.
    Scratch s("nan-weights");
    const auto cfg = config(kMlp);
    write_init_model(s.file("global.h5"), cfg, 1, 0, 1e30f);
    write_shard(s, cfg, 0);
    auto o = options(s, 3, 4);
    require_error([&] { run_worker(o); }, ErrorKind::Numeric, {"shard.h5", "loss", "step 0"});
    BOOST_TEST(s.listing() == (std::vector<std::string>{"global.h5", "shard.h5"}));
  }
  {
    // Diverging SGD from zero weights: features of 1e19 give finite gradients of ~1e18 (norms are
    // summed in double), the lr-1000 step makes the weights ~1e21, and the next logits (~1e40)
    // overflow float32. A first run of one step leaves a state at step 1; the second run from it
    // takes step 1 (finite: it starts from the global model again) and fails at step 2. The
    // state of the first run must stay as it was.
    Scratch s("nan-diverge");
    const auto cfg = config(kLogreg);
    write_init_model(s.file("global.h5"), cfg, 1);
    write_rows(s.file("shard.h5"), 16, 5, 3, 4, 1e19f);
    auto o = options(s, 1, 4);
    o.optimizer = "sgd:lr=1000";
    o.schedule = "constant";
    run_worker(o);
    io::forget_inputs();
    std::filesystem::remove(o.output);
    const std::string state = file_bytes(o.state);
    o.steps = 3;
    require_error([&] { run_worker(o); }, ErrorKind::Numeric, {"loss", "step 2"});
    BOOST_TEST(file_bytes(o.state) == state);
    BOOST_TEST(s.listing() == (std::vector<std::string>{"global.h5", "shard.h5", "state.h5"}));
  }
}

BOOST_AUTO_TEST_CASE(a_shard_that_does_not_fit_the_model_is_refused) {
  Scratch s("fit");
  write_init_model(s.file("logreg.h5"), config(kLogreg), 1);
  write_init_model(s.file("gpt.h5"), config(kGpt), 1);
  write_rows(s.file("rows4.h5"), 10, 4, 3, 1);
  write_rows(s.file("rows-5classes.h5"), 10, 5, 5, 1);
  auto toks = random_tokens(40, 64, 3);
  write_tokens(s.file("tokens.h5"), toks);
  toks[17] = 64;  // one past the vocabulary of 64
  write_tokens(s.file("token64.h5"), toks);
  write_tokens(s.file("short.h5"), random_tokens(8, 64, 4));  // ctx 8 needs 9
  const auto before = s.listing();
  auto run = [&](const std::string& model, const std::string& data) {
    WorkerOptions o;
    o.model = s.file(model);
    o.data = s.file(data);
    o.output = s.file("delta.h5");
    o.state = s.file("state.h5");
    o.steps = 1;
    o.batch = 2;
    io::forget_inputs();
    run_worker(o);
  };
  require_error([&] { run("logreg.h5", "rows4.h5"); }, ErrorKind::BadInput, {"rows4.h5", "4 features", "takes 5"});
  require_error([&] { run("logreg.h5", "rows-5classes.h5"); }, ErrorKind::BadInput, {"rows-5classes.h5", "5 classes"});
  require_error([&] { run("gpt.h5", "token64.h5"); }, ErrorKind::BadInput, {"token64.h5", "token id 64", "vocabulary"});
  require_error([&] { run("gpt.h5", "short.h5"); }, ErrorKind::BadInput, {"short.h5", "8 tokens", "at least 9"});
  require_error([&] { run("gpt.h5", "rows4.h5"); }, ErrorKind::BadInput, {"rows4.h5", "gpt"});
  require_error([&] { run("logreg.h5", "tokens.h5"); }, ErrorKind::BadInput, {"tokens.h5", "logreg"});
  // A file of the wrong kind where the model belongs, a missing model, bad step and batch counts.
  require_error([&] { run("tokens.h5", "tokens.h5"); }, ErrorKind::BadInput, {"tokens.h5", "data"});
  require_error([&] { run("none.h5", "tokens.h5"); }, ErrorKind::Io, {"none.h5"});
  WorkerOptions o;
  o.model = s.file("gpt.h5");
  o.data = s.file("tokens.h5");
  o.output = s.file("delta.h5");
  require_error([&] { run_worker(o); }, ErrorKind::Usage, {"--steps"});
  o.steps = 1;
  o.batch = 0;
  require_error([&] { run_worker(o); }, ErrorKind::Usage, {"--batch"});
  BOOST_TEST(s.listing() == before);
}

BOOST_AUTO_TEST_CASE(metrics_lines_record_every_step) {
  Scratch s("metrics");
  const auto cfg = config(kLogreg);
  write_init_model(s.file("global.h5"), cfg, 1);
  write_shard(s, cfg, 2);
  auto o = options(s, 3, 4);
  o.metrics = s.file("m.jsonl");
  o.worker = 6;
  run_worker(o);
  std::ifstream in(o.metrics);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    BOOST_TEST_INFO(line);
    BOOST_TEST(line.find("\"worker\":6,\"step\":" + std::to_string(n) + ",") != std::string::npos);
    BOOST_TEST(line.find("\"loss\":") != std::string::npos);
    ++n;
  }
  BOOST_TEST(n == 3);
  BOOST_TEST(read_attributes(o.output).get_int("worker").value() == 6);
}

BOOST_AUTO_TEST_SUITE_END()
