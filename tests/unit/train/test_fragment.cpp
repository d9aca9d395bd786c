// Streaming DiLoCo pieces: the strided fragment assignment, fragment files (split, read, join) and
// the worker's streaming options (--mix, --delta-base, --overlap, --save-local) against their
// definitions, including the reduction to the plain DiLoCo worker.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "helpers.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/optim/optimizer.hpp"
#include "loco/train/fragment.hpp"
#include "loco/train/worker.hpp"

using namespace loco;
using namespace loco::train;
using namespace loco::train::test;
using std::int64_t;

namespace {

const char* kGpt4 = R"({"arch":"gpt","vocab":64,"ctx":8,"d_model":8,"layers":4,"heads":2})";
const char* kGpt2 = R"({"arch":"gpt","vocab":64,"ctx":8,"d_model":8,"layers":2,"heads":2})";
const char* kGptTied = R"({"arch":"gpt","vocab":64,"ctx":8,"d_model":8,"layers":3,"heads":2,"tie_embeddings":true})";
const char* kMlp = R"({"arch":"mlp","sizes":[5,7,7,3]})";
const char* kLogreg = R"({"arch":"logreg","features":5,"classes":3})";

// The fragment the definition gives a parameter name: block/layer index mod P, GPT ends by hand.
int expected_fragment(const model::ModelConfig& c, const std::string& name, int64_t p) {
  auto index_after = [&](const std::string& prefix) {
    return std::stoll(name.substr(prefix.size(), name.find('.', prefix.size()) - prefix.size()));
  };
  if (name.rfind("blocks.", 0) == 0) return static_cast<int>(index_after("blocks.") % p);
  if (name.rfind("layers.", 0) == 0) return static_cast<int>(index_after("layers.") % p);
  if (name == "wte.weight" || name == "wpe.weight") return 0;
  if (name.rfind("ln_f.", 0) == 0 || name == "head.weight") return static_cast<int>((c.layers - 1) % p);
  return 0;  // logreg
}

}  // namespace

BOOST_AUTO_TEST_SUITE(fragment)

BOOST_AUTO_TEST_CASE(assignment_is_strided_total_non_empty_and_deterministic) {
  for (const char* json : {kGpt4, kGpt2, kGptTied, kMlp, kLogreg}) {
    const auto cfg = config(json);
    const auto specs = model::param_specs(cfg);
    for (int64_t p = 1; p <= fragment_units(cfg); ++p) {
      BOOST_TEST_CONTEXT(json << " P=" << p) {
        const auto a = fragment_assignment(cfg, p);
        BOOST_REQUIRE_EQUAL(a.size(), specs.size());  // one fragment per tensor, so each in exactly one
        std::vector<int> count(static_cast<std::size_t>(p), 0);
        for (std::size_t i = 0; i < a.size(); ++i) {
          BOOST_TEST(a[i] == expected_fragment(cfg, specs[i].name, p), specs[i].name);
          BOOST_REQUIRE(a[i] >= 0 && a[i] < p);
          ++count[static_cast<std::size_t>(a[i])];
        }
        for (int c : count) BOOST_TEST(c > 0);
        BOOST_TEST(fragment_assignment(cfg, p) == a);
      }
    }
  }
  // Spot checks of the rule: L = 4, P = 3: blocks 0 and 3 share fragment 0, and so do ln_f, head.
  const auto cfg = config(kGpt4);
  const auto specs = model::param_specs(cfg);
  const auto a = fragment_assignment(cfg, 3);
  for (std::size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].name == "blocks.3.mlp.fc.weight" || specs[i].name == "head.weight") BOOST_TEST(a[i] == 0);
    if (specs[i].name == "blocks.2.ln1.bias") BOOST_TEST(a[i] == 2);
  }
  BOOST_TEST(fragment_units(cfg) == 4);
  BOOST_TEST(fragment_units(config(kMlp)) == 3);
  BOOST_TEST(fragment_units(config(kLogreg)) == 1);
}

BOOST_AUTO_TEST_CASE(too_many_or_no_fragments_is_a_usage_error) {
  require_error([] { fragment_assignment(config(kGpt2), 3); }, ErrorKind::Usage,
                {"3 fragments", "2 blocks", "at most 2"});
  require_error([] { fragment_assignment(config(kLogreg), 2); }, ErrorKind::Usage, {"would be empty"});
  require_error([] { fragment_assignment(config(kGpt2), 0); }, ErrorKind::Usage, {"at least 1"});
}

BOOST_AUTO_TEST_CASE(split_then_join_gives_back_the_model_and_its_outer_state) {
  Scratch s("split");
  const auto cfg = config(kGpt4);
  // A model with an outer (momentum) state, as loco-aggregate writes it.
  model::Model net(cfg);
  TensorSet p = net.make_params();
  net.init(p, 3);
  std::vector<io::TensorInfo> plan;
  for (const auto& e : p) plan.push_back({"tensors", e.name, e.tensor.shape(), DType::F32, {}});
  for (const auto& e : p) plan.push_back({optim::state_group("momentum"), e.name, e.tensor.shape(), DType::F32, {}});
  Attributes root;
  root.set("kind", std::string("model"));
  root.set("model_config", cfg.canonical_json());
  root.set("round", int64_t{5});
  {
    auto sink = io::create_sink(s.file("m.h5"), io::Format::Loco, root, plan);
    for (std::size_t i = 0; i < p.size(); ++i) sink->write(i, p[i].tensor);
    for (std::size_t i = 0; i < p.size(); ++i) {
      Tensor m = p[i].tensor.clone();
      for (float& v : m.f32()) v *= -0.5f;
      sink->write(p.size() + i, m);
    }
    sink->set_group_attribute("state", "step", int64_t{5});
    sink->commit();
  }
  io::forget_inputs();
  const auto a = fragment_assignment(cfg, 3);
  std::vector<std::string> parts;
  for (int64_t f = 0; f < 3; ++f) {
    parts.push_back(s.file("f" + std::to_string(f) + ".h5"));
    split_fragment(s.file("m.h5"), 3, f, parts.back());
    io::forget_inputs();
    const FragmentFile ff = read_fragment(parts.back(), cfg);
    io::forget_inputs();
    std::size_t n = 0;
    for (std::size_t i = 0; i < p.size(); ++i)
      if (a[i] == f) {
        BOOST_REQUIRE(ff.params.contains(p[i].name));
        ++n;
      }
    BOOST_TEST(ff.params.size() == n);  // only its own tensors
    BOOST_TEST(ff.round == 5);
    BOOST_TEST(ff.attributes.get_int("fragment").value() == f);
    BOOST_TEST(ff.attributes.get_int("fragments").value() == 3);
    BOOST_TEST(ff.checksum == io::tensors_checksum(*io::open_source(parts.back(), false)));
    BOOST_TEST(read_group(parts.back(), optim::state_group("momentum")).size() == n);
    BOOST_TEST(io::open_source(parts.back(), false)->group_attributes("state").get_int("step").value() == 5);
  }
  // Joined in any order: the model's tensors in param_specs order, bit for bit, and the state.
  BOOST_TEST(join_fragments({parts[2], parts[0], parts[1]}, s.file("j.h5")));
  io::forget_inputs();
  require_bitwise_equal(read_group(s.file("j.h5")), read_group(s.file("m.h5")), "joined tensors");
  require_bitwise_equal(read_group(s.file("j.h5"), optim::state_group("momentum")),
                        read_group(s.file("m.h5"), optim::state_group("momentum")), "joined state");
  BOOST_TEST(read_attributes(s.file("j.h5")).get_int("round").value() == 5);
  BOOST_TEST(io::tensors_checksum(*io::open_source(s.file("j.h5"), false)) ==
             io::tensors_checksum(*io::open_source(s.file("m.h5"), false)));

  // A missing fragment names a tensor it holds; a fragment given twice names both files.
  require_error(
      [&] {
        join_fragments({parts[0], parts[1]}, s.file("x.h5"));
      },
      ErrorKind::BadInput, {"blocks.2.ln1.weight", "none of the 2 fragment files"});
  io::forget_inputs();
  require_error(
      [&] {
        join_fragments({parts[0], parts[1], parts[2], s.file("m.h5")}, s.file("x.h5"));
      },
      ErrorKind::BadInput, {"f0.h5", "m.h5", "both hold tensor wte.weight"});
  io::forget_inputs();
  BOOST_TEST(!std::filesystem::exists(s.file("x.h5")));
  require_error([&] { split_fragment(s.file("m.h5"), 3, 3, s.file("x.h5")); }, ErrorKind::Usage, {"fragment 3"});
  io::forget_inputs();
}

BOOST_AUTO_TEST_CASE(read_fragment_refuses_other_models_and_foreign_tensors) {
  Scratch s("refuse");
  write_init_model(s.file("m2.h5"), config(kGpt2), 1);
  split_fragment(s.file("m2.h5"), 2, 1, s.file("f.h5"));
  io::forget_inputs();
  require_error([&] { read_fragment(s.file("f.h5"), config(kGpt4)); }, ErrorKind::BadInput,
                {"f.h5", "fragment of another model"});
  io::forget_inputs();
  // A tensor of the right name and the wrong shape.
  TensorSet bad;
  bad.add("ln_f.weight", Tensor({9}));
  Attributes root;
  root.set("kind", std::string("model"));
  root.set("model_config", config(kGpt2).canonical_json());
  io::write_tensor_set(s.file("bad.h5"), root, bad);
  io::forget_inputs();
  require_error([&] { read_fragment(s.file("bad.h5"), config(kGpt2)); }, ErrorKind::BadInput,
                {"bad.h5", "ln_f.weight", "[9]"});
  io::forget_inputs();
}

namespace {

WorkerOptions gpt_options(const Scratch& s, const std::string& model, const std::string& out, int64_t steps) {
  WorkerOptions o;
  o.model = model;
  o.data = s.file("shard.h5");
  o.output = out;
  o.steps = steps;
  o.batch = 2;
  o.optimizer = "adamw:lr=0.01";
  o.schedule = "cosine:warmup=1,total=9";
  o.seed = 5;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(streaming_worker_with_one_fragment_and_no_mixing_is_the_diloco_worker) {
  // P = 1, τ = 0, α = 0: mixing the whole global model into any local parameters gives the global
  // model exactly, and the delta against the one fragment is the DiLoCo delta, bit for bit.
  Scratch s("p1");
  const auto cfg = config(kGpt2);
  write_init_model(s.file("global.h5"), cfg, 1);
  write_init_model(s.file("local.h5"), cfg, 2, 0, 1.5f, 0.25f);  // unrelated local parameters
  write_tokens(s.file("shard.h5"), random_tokens(200, 64, 2), 1);
  split_fragment(s.file("global.h5"), 1, 0, s.file("frag.h5"));
  io::forget_inputs();
  auto plain = gpt_options(s, s.file("global.h5"), s.file("d1.h5"), 3);
  plain.state = s.file("st1.h5");
  run_worker(plain);
  io::forget_inputs();
  auto streaming = gpt_options(s, s.file("local.h5"), s.file("d2.h5"), 3);
  streaming.state = s.file("st2.h5");
  streaming.mix = s.file("frag.h5");
  streaming.mixing = 0.0;
  streaming.delta_base = s.file("frag.h5");
  streaming.save_local = s.file("local-next.h5");
  run_worker(streaming);
  io::forget_inputs();
  require_bitwise_equal(read_group(s.file("d2.h5")), read_group(s.file("d1.h5")), "delta");
  BOOST_TEST(read_attributes(s.file("d2.h5")).get_string("base_checksum").value() ==
             read_attributes(s.file("d1.h5")).get_string("base_checksum").value());
  require_bitwise_equal(read_group(s.file("st2.h5"), optim::state_group("exp_avg")),
                        read_group(s.file("st1.h5"), optim::state_group("exp_avg")), "state");
  // The saved local parameters are θ_global − Δ's operands: global − local = delta.
  require_bitwise_equal(difference(read_group(s.file("global.h5")), read_group(s.file("local-next.h5"))),
                        read_group(s.file("d1.h5")), "local");
  const Attributes la = read_attributes(s.file("local-next.h5"));
  BOOST_TEST(la.get_string("kind").value() == "model");
  BOOST_TEST(la.get_int("step").value() == 3);
}

BOOST_AUTO_TEST_CASE(mixing_is_the_lerp_of_global_and_local_and_the_delta_covers_the_base_fragment) {
  Scratch s("mix");
  const auto cfg = config(kGpt2);
  const double alpha = 0.3;
  write_init_model(s.file("local.h5"), cfg, 2);
  write_init_model(s.file("other.h5"), cfg, 7, 0, 1.0f, 0.125f);  // fragment 1's "new global" comes from here
  write_tokens(s.file("shard.h5"), random_tokens(200, 64, 2), 1);
  split_fragment(s.file("other.h5"), 2, 1, s.file("g1.h5"));
  split_fragment(s.file("other.h5"), 2, 0, s.file("g0.h5"));
  io::forget_inputs();

  // The mixed starting point by hand: fragment 1's tensors (1−α)·g + α·θ in double, rounded once.
  TensorSet mixed = read_group(s.file("local.h5"));
  const TensorSet g1 = read_group(s.file("g1.h5"));
  for (const auto& e : g1) {
    auto pv = mixed.at(e.name).f32();
    const auto gv = e.tensor.f32();
    for (std::size_t k = 0; k < pv.size(); ++k)
      pv[k] = static_cast<float>((1 - alpha) * static_cast<double>(gv[k]) + alpha * static_cast<double>(pv[k]));
  }
  write_params_model(s.file("mixed.h5"), cfg, mixed, 0);

  // Reference: from the hand-mixed parameters, 2 steps (saving θ after 2), then 3 steps from scratch.
  auto two = gpt_options(s, s.file("mixed.h5"), s.file("d2.h5"), 2);
  two.save_local = s.file("after2.h5");
  run_worker(two);
  io::forget_inputs();
  auto three = gpt_options(s, s.file("mixed.h5"), s.file("d3.h5"), 3);
  three.save_local = s.file("after3.h5");
  run_worker(three);
  io::forget_inputs();

  // Streaming: mix in the worker, 3 steps with τ = 1, the delta of fragment 0 against g0.
  auto st = gpt_options(s, s.file("local.h5"), s.file("ds.h5"), 3);
  st.mix = s.file("g1.h5");
  st.mixing = alpha;
  st.delta_base = s.file("g0.h5");
  st.overlap = 1;
  st.save_local = s.file("local-next.h5");
  run_worker(st);
  io::forget_inputs();

  // The delta is g0 − θ after steps − τ = 2 steps, on fragment 0's tensors only.
  const TensorSet after2 = read_group(s.file("after2.h5"));
  const TensorSet g0 = read_group(s.file("g0.h5"));
  require_bitwise_equal(read_group(s.file("ds.h5")), difference(g0, after2), "fragment delta");
  // Training went on for τ: the saved local parameters are those after all 3 steps.
  require_bitwise_equal(read_group(s.file("local-next.h5")), read_group(s.file("after3.h5")), "local after 3 steps");
  const Attributes a = read_attributes(s.file("ds.h5"));
  BOOST_TEST(a.get_string("base_checksum").value() == io::tensors_checksum(*io::open_source(s.file("g0.h5"), false)));
  BOOST_TEST(a.get_int("fragment").value() == 0);
  BOOST_TEST(a.get_int("fragments").value() == 2);
  BOOST_TEST(a.get_int("overlap").value() == 1);
  BOOST_TEST(a.get_int("step").value() == 3);
  BOOST_TEST(a.get_int("samples").value() == 3 * 2 * cfg.ctx);
}

BOOST_AUTO_TEST_CASE(streaming_options_out_of_range_are_usage_errors_and_foreign_fragments_bad_input) {
  Scratch s("bad");
  const auto cfg = config(kGpt2);
  write_init_model(s.file("local.h5"), cfg, 2);
  write_init_model(s.file("g4.h5"), config(kGpt4), 2);
  split_fragment(s.file("g4.h5"), 2, 0, s.file("f4.h5"));
  write_tokens(s.file("shard.h5"), random_tokens(200, 64, 2), 1);
  io::forget_inputs();
  auto o = gpt_options(s, s.file("local.h5"), s.file("d.h5"), 3);
  o.overlap = 3;
  require_error([&] { run_worker(o); }, ErrorKind::Usage, {"--overlap", "[0, 3)"});
  o.overlap = 0;
  o.mixing = 1.5;
  require_error([&] { run_worker(o); }, ErrorKind::Usage, {"--mixing"});
  o.mixing = 0.5;
  require_error([&] { run_worker(o); }, ErrorKind::Usage, {"--mixing 0.5 without --mix"});
  o.mix = s.file("f4.h5");
  require_error([&] { run_worker(o); }, ErrorKind::BadInput, {"f4.h5", "another model"});
  io::forget_inputs();
  o.mix = "";
  o.mixing = 0.0;
  o.delta_base = s.file("f4.h5");
  require_error([&] { run_worker(o); }, ErrorKind::BadInput, {"f4.h5", "another model"});
  io::forget_inputs();
  BOOST_TEST(!std::filesystem::exists(s.file("d.h5")));
}

BOOST_AUTO_TEST_SUITE_END()
