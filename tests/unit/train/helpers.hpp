// Shared helpers of the training-step tests: scratch folders, tiny model and data files, the
// in-process reference of the worker's inner loop, and error checks.
#pragma once

#include <boost/test/unit_test.hpp>

#include "support.hpp"

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "loco/core/attributes.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"
#include "loco/core/tensor.hpp"
#include "loco/data/batch.hpp"
#include "loco/io/output.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"
#include "loco/model/file.hpp"
#include "loco/model/model.hpp"
#include "loco/optim/optimizer.hpp"
#include "loco/optim/schedule.hpp"

namespace loco::train::test {

// A fresh folder under the system temp dir, removed when the object dies. Also forgets the inputs
// registered by earlier in-process steps, so that each test starts like a fresh process.
class Scratch {
 public:
  explicit Scratch(std::string_view tag) {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("loco-train-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
    io::forget_inputs();
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    io::forget_inputs();
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  std::string file(std::string_view name) const { return (path_ / name).string(); }
  // The names in the folder, sorted.
  std::vector<std::string> listing() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::filesystem::path path_;
};

inline model::ModelConfig config(std::string_view json) { return model::ModelConfig::parse(json); }

// Writes a model file (round `round`) with the config's parameters: initialized under seed, then
// every element multiplied by `scale` and shifted by `shift` (to make weights large or nonzero).
inline void write_init_model(const std::string& path, const model::ModelConfig& cfg, std::uint64_t seed,
                             std::int64_t round = 0, float scale = 1.0f, float shift = 0.0f) {
  model::Model net(cfg);
  TensorSet p = net.make_params();
  net.init(p, seed);
  for (auto& e : p)
    for (float& v : e.tensor.f32()) v = v * scale + shift;
  Attributes extra;
  extra.set("round", round);
  model::write_model(path, cfg, p, extra);
  io::forget_inputs();
}

inline void write_params_model(const std::string& path, const model::ModelConfig& cfg, const TensorSet& p,
                               std::int64_t round) {
  Attributes extra;
  extra.set("round", round);
  model::write_model(path, cfg, p, extra);
  io::forget_inputs();
}

// A classification shard of n rows of d features in [-amp, amp) and labels below classes.
inline void write_rows(const std::string& path, std::int64_t n, std::int64_t d, std::int64_t classes,
                       std::uint64_t stream, float amp = 1.0f, std::int64_t shard = 0) {
  Rng rng(11, {stream});
  Tensor x({n, d});
  for (float& v : x.f32()) v = amp * (2 * rng.uniform() - 1);
  Tensor y({n}, DType::I32);
  for (auto& v : y.as<std::int32_t>()) v = static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(classes)));
  Attributes root;
  root.set("kind", std::string("data"));
  root.set("classes", classes);
  root.set("shard", shard);
  std::vector<io::TensorInfo> plan = {{"data", "x", x.shape(), DType::F32, {}},
                                      {"data", "y", y.shape(), DType::I32, {}}};
  auto sink = io::create_sink(path, io::Format::Loco, root, plan);
  sink->write(0, x);
  sink->write(1, y);
  sink->commit();
}

// A token shard holding exactly `tokens` (uint8).
inline void write_tokens(const std::string& path, const std::vector<std::uint8_t>& tokens, std::int64_t shard = 0) {
  Tensor t({static_cast<std::int64_t>(tokens.size())}, DType::U8);
  std::copy(tokens.begin(), tokens.end(), t.as<std::uint8_t>().begin());
  Attributes root;
  root.set("kind", std::string("data"));
  root.set("vocab", std::int64_t{256});
  root.set("shard", shard);
  auto sink = io::create_sink(path, io::Format::Loco, root, {{"data", "tokens", t.shape(), DType::U8, {}}});
  sink->write(0, t);
  sink->commit();
}

inline std::vector<std::uint8_t> random_tokens(std::size_t n, std::uint64_t vocab, std::uint64_t stream) {
  Rng rng(13, {stream});
  std::vector<std::uint8_t> t(n);
  for (auto& v : t) v = static_cast<std::uint8_t>(rng.below(vocab));
  return t;
}

// Reads every tensor of a group of a file (float32 as stored) into a set, in file order.
inline TensorSet read_group(const std::string& path, std::string_view group = "tensors") {
  auto src = io::open_source(path, false);
  TensorSet out;
  for (const io::TensorInfo* t : src->group(group)) out.add(t->name, src->read(*t));
  return out;
}

inline Attributes read_attributes(const std::string& path) { return io::open_source(path, false)->attributes(); }

// Bitwise equality of two sets (names, order, shapes and bytes).
inline void require_bitwise_equal(const TensorSet& a, const TensorSet& b, std::string_view what) {
  BOOST_TEST_INFO(what);
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    BOOST_TEST_INFO(std::string(what) + ": " + a[i].name);
    BOOST_REQUIRE_EQUAL(a[i].name, b[i].name);
    BOOST_REQUIRE(a[i].tensor.shape() == b[i].tensor.shape());
    const auto x = a[i].tensor.bytes();
    const auto y = b[i].tensor.bytes();
    BOOST_CHECK(std::equal(x.begin(), x.end(), y.begin(), y.end()));
  }
}

// θ_a − θ_b element-wise in float32, as the worker computes the delta.
inline TensorSet difference(const TensorSet& a, const TensorSet& b) {
  TensorSet out;
  for (std::size_t i = 0; i < a.size(); ++i) {
    Tensor d = a[i].tensor.clone();
    auto dv = d.f32();
    const auto bv = b.at(a[i].name).f32();
    for (std::size_t k = 0; k < dv.size(); ++k) dv[k] -= bv[k];
    out.add(a[i].name, std::move(d));
  }
  return out;
}

// The worker's inner loop rebuilt from the model, optimizer, schedule and sampler libraries,
// following the definitions of worker.hpp and data/batch.hpp: batch s of worker w draws
// Shuffle-mode indices (classification) or window offsets (tokens) keyed by (seed, w, round 0, s)
// with s the cumulative step, the learning rate is the schedule at s, and the optimizer steps.
struct Reference {
  model::Model net;
  std::unique_ptr<optim::Optimizer> opt;
  optim::ScheduleSpec sched;
  TensorSet params;
  optim::OptimizerState state;
  double loss_sum = 0;
  std::int64_t samples = 0;

  Reference(const model::ModelFile& m, const std::string& optimizer, const std::string& schedule)
      : net(m.config), opt(optim::make_inner_optimizer(optimizer)), sched(optim::parse_schedule(schedule)) {
    for (const auto& e : m.params) params.add(e.name, e.tensor.clone());
    state = opt->make_state(params);
  }

  // Runs `steps` steps on data from the current cumulative step.
  void run(const data::DataFile& d, std::int64_t steps, std::int64_t batch, std::uint64_t seed, std::int64_t worker) {
    TensorSet grads = net.make_params();
    const auto& c = net.config();
    for (std::int64_t s = 0; s < steps; ++s) {
      const std::int64_t step = state.step;
      model::Batch b;
      std::vector<std::int64_t> idx(static_cast<std::size_t>(batch));
      std::vector<float> x;
      std::vector<std::int32_t> y, t;
      if (d.tokens) {
        data::WindowSampler ws(d.examples(), c.ctx, batch, seed, static_cast<std::uint64_t>(worker), 0);
        ws.offsets(step, idx);
        t.resize(static_cast<std::size_t>(batch * (c.ctx + 1)));
        data::gather_windows(d.stream, idx, c.ctx, t);
        b = model::Batch::tokens(std::span<const std::int32_t>(t), c.ctx);
      } else {
        data::BatchSampler bs(d.rows.n, batch, data::SampleMode::Shuffle, seed, static_cast<std::uint64_t>(worker), 0);
        bs.indices(step, idx);
        x.resize(static_cast<std::size_t>(batch * d.rows.d));
        y.resize(static_cast<std::size_t>(batch));
        data::gather_batch(d.rows, idx, x, y);
        b = model::Batch::classification(x, y);
      }
      const auto ls = net.forward_backward(params, b, &grads);
      loss_sum += ls.mean_loss();
      samples += ls.count;
      opt->step(params, grads, state, optim::scheduled_lr(sched, opt->lr(), step));
    }
  }
};

using loco::test::require_error;

}  // namespace loco::train::test
