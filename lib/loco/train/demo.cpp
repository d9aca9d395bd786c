// loco-worker's DeMo optimizer: decoupled momentum, DCT-tile top-k of it every step.
#include "loco/train/demo.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "loco/compress/encoded_file.hpp"
#include "loco/core/error.hpp"
#include "loco/core/spec.hpp"
#include "loco/data/batch.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"
#include "loco/model/model.hpp"
#include "loco/optim/clip.hpp"
#include "loco/optim/optimizer.hpp"
#include "loco/optim/schedule.hpp"
#include "loco/train/files.hpp"

namespace loco::train {
namespace {

// The worker's δ per tensor from its state file, checking model, worker and optimizer.
std::int64_t read_demo_state(const std::string& path, const model::ModelFile& m, std::int64_t worker,
                             std::vector<std::pair<std::string, compress::TensorState>>& states) {
  auto src = open_worker_state(path, m, worker);
  const auto spec = src->attributes().get_string("inner_optimizer").value_or("");
  if (!is_demo_optimizer(spec))
    throw_error(ErrorKind::BadInput, "{}: state of optimizer '{}', this run uses demo", path, spec);
  for (auto& [name, st] : states) {
    st.set("residual", read_state_slot(*src, path, kDemoSlot, name, m.params.at(name).shape()));
  }
  return src->group_attributes("state").get_int(std::string(optim::kStepAttribute)).value_or(0);
}

void write_demo_state(const std::string& path, const model::ModelFile& m, std::int64_t worker, const DemoSpec& spec,
                      std::int64_t step, const std::vector<std::pair<std::string, compress::TensorState>>& states) {
  Attributes root;
  root.set("kind", std::string("state"));
  root.set("model_config", m.config.canonical_json());
  root.set("worker", worker);
  root.set("round", m.round);
  root.set("step", step);
  root.set("inner_optimizer", format_demo_spec(spec));
  std::vector<io::TensorInfo> plan;
  std::vector<const Tensor*> data;
  for (const auto& [name, st] : states) {
    const Tensor* d = st.find("residual");
    if (d == nullptr) throw_error(ErrorKind::Internal, "demo: no momentum for tensor {}", name);
    plan.push_back({optim::state_group(kDemoSlot), name, d->shape(), DType::F32, {}});
    data.push_back(d);
  }
  auto sink = io::create_sink(path, io::Format::Loco, root, plan);
  for (std::size_t i = 0; i < plan.size(); ++i) sink->write(i, *data[i]);
  sink->set_group_attribute("state", optim::kStepAttribute, step);
  sink->commit();
}

}  // namespace

bool is_demo_optimizer(std::string_view spec) { return spec == "demo" || spec.starts_with("demo:"); }

DemoSpec parse_demo_spec(std::string_view text) {
  Spec spec(text, "optimizer");
  if (spec.name() != "demo") throw_error(ErrorKind::Usage, "optimizer spec '{}' is not demo[:key=value,...]", text);
  DemoSpec s;
  s.lr = spec.real("lr", s.lr, Range::at_least(0));
  s.beta = spec.real("beta", s.beta, Range::between(0, 1, true));
  s.chunk = spec.integer("chunk", s.chunk, 1, 256);
  s.k = spec.integer("k", s.k, 1);
  spec.done();
  if (s.k > s.chunk * s.chunk)
    throw_error(ErrorKind::Usage, "{}: k={} is not in [1, chunk²={}]", spec.where(), s.k, s.chunk * s.chunk);
  return s;
}

std::string format_demo_spec(const DemoSpec& s) {
  return fmt::format("demo:lr={},beta={},chunk={},k={}", s.lr, s.beta, s.chunk, s.k);
}

std::string demo_codec_spec(const DemoSpec& s) { return fmt::format("dct_topk:chunk={},k={},tile=2d", s.chunk, s.k); }

compress::Encoded demo_step(const compress::Codec& codec, const compress::Feedback& memory, const Tensor& grad,
                            double lr, compress::TensorState& st, std::string_view what) {
  Tensor step = Tensor::uninitialized(grad.shape());
  const float lr_f = static_cast<float>(lr);
  const auto g = grad.f32();
  const auto d = step.f32();
  for (std::size_t i = 0; i < g.size(); ++i) d[i] = lr_f * g[i];
  const Tensor p = memory.input(step, st, what);  // δ ← β·δ + lr·g
  compress::Encoded q = codec.encode(p, compress::RandomKey{}, DType::F32, what);
  memory.update(p, compress::decode(q), st);  // δ ← δ − IDCT(q)
  return q;
}

WorkerResult run_demo_worker(const WorkerOptions& o) {
  if (o.steps != 1)
    throw_error(ErrorKind::Usage,
                "--optimizer demo exchanges every step: give --steps 1, not {} (the next step's gradient is taken "
                "at the parameters after this step's global sign update, which only the aggregator makes)",
                o.steps);
  if (o.batch < 1) throw_error(ErrorKind::Usage, "--batch must be at least 1");
  if (!o.mix.empty() || !o.delta_base.empty() || o.overlap != 0 || !o.save_local.empty() || o.mixing != 0.0 ||
      o.prox_mu != 0.0 || !o.scaffold_control.empty() || !o.control_delta.empty())
    throw_error(ErrorKind::Usage,
                "--optimizer demo does not combine with the streaming (--mix, --mixing, --delta-base, --overlap, "
                "--save-local), FedProx or SCAFFOLD options");
  const DemoSpec spec = parse_demo_spec(o.optimizer);
  const compress::Codec codec = compress::Codec::parse(demo_codec_spec(spec));
  const auto memory = compress::parse_feedback(fmt::format("sparseloco:beta={}", spec.beta));
  const optim::ScheduleSpec sched = optim::parse_schedule(o.schedule);

  const model::ModelFile global = model::read_model(o.model);
  const data::DataFile shard = data::read_data(o.data);
  model::check_fits(shard, global);
  const std::int64_t worker = o.worker.value_or(shard.attributes.get_int("shard").value_or(0));
  std::vector<std::pair<std::string, compress::TensorState>> states;
  for (const auto& e : global.params) states.emplace_back(e.name, compress::TensorState{});
  const bool have_state = !o.state.empty() && ::access(o.state.c_str(), F_OK) == 0;
  const std::int64_t step = have_state ? read_demo_state(o.state, global, worker, states) : 0;

  std::unique_ptr<std::FILE, int (*)(std::FILE*)> metrics(nullptr, std::fclose);
  if (o.metrics == "-") metrics.reset(fdopen(dup(STDOUT_FILENO), "w"));
  else if (!o.metrics.empty()) {
    metrics.reset(std::fopen(o.metrics.c_str(), "a"));
    if (!metrics) throw_error(ErrorKind::Io, "{}: cannot open for appending", o.metrics);
  }

  // The batch of this cumulative step, drawn as run_worker draws it.
  const auto t0 = std::chrono::steady_clock::now();
  const auto& c = global.config;
  std::vector<std::int64_t> idx(static_cast<std::size_t>(o.batch));
  std::vector<float> xb;
  std::vector<std::int32_t> yb, tb;
  model::Batch batch;
  if (shard.tokens) {
    data::WindowSampler windows(shard.examples(), c.ctx, o.batch, o.seed, worker, 0);
    tb.resize(static_cast<std::size_t>(o.batch * (c.ctx + 1)));
    windows.offsets(step, idx);
    data::gather_windows(shard.stream, idx, c.ctx, tb);
    batch = model::Batch::tokens(std::span<const std::int32_t>(tb), c.ctx);
  } else {
    data::BatchSampler rows(shard.rows.n, o.batch, data::SampleMode::Shuffle, o.seed, worker, 0);
    xb.resize(static_cast<std::size_t>(o.batch * shard.rows.d));
    yb.resize(static_cast<std::size_t>(o.batch));
    rows.indices(step, idx);
    data::gather_batch(shard.rows, idx, xb, yb);
    batch = model::Batch::classification(xb, yb);
  }
  model::Model net(c);
  TensorSet grads = net.make_params();
  const model::LossStats ls = net.forward_backward(global.params, batch, &grads);
  const double loss = ls.mean_loss();
  const double gnorm = check_step(loss, grads, o.clip, o.data, step, global.round, worker);
  const double lr = optim::scheduled_lr(sched, spec.lr, step);

  std::vector<compress::NamedEncoded> out;
  out.reserve(states.size());
  for (auto& [name, st] : states) {
    const Tensor& g = grads.at(name);
    compress::Encoded q = demo_step(codec, *memory, g, lr, st, fmt::format("{}: tensor {}", o.data, name));
    out.push_back({name, std::move(q), g.numel() * static_cast<std::int64_t>(dtype_size(DType::F32))});
  }

  WorkerResult r;
  r.loss_first = r.loss_last = r.loss_mean = loss;
  r.samples = ls.count;
  r.step = step + 1;
  Attributes root;
  root.set("source_kind", std::string("delta"));
  root.set("codec", codec.spec());
  root.set("model_config", c.canonical_json());
  root.set("round", global.round);
  root.set("worker", worker);
  root.set("samples", r.samples);
  root.set("base_checksum", global.checksum);
  root.set("step", r.step);
  root.set("inner_steps", std::int64_t{1});
  root.set("inner_optimizer", format_demo_spec(spec));
  root.set("lr", lr);
  root.set("loss_first", r.loss_first);
  root.set("loss_last", r.loss_last);
  root.set("loss_mean", r.loss_mean);
  // The delta first, then the state: a crash in between reruns the same step from the old state.
  compress::write_compressed_file(o.output, root, out);
  if (!o.state.empty()) write_demo_state(o.state, global, worker, spec, r.step, states);
  if (metrics) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print(metrics.get(),
               "{{\"round\":{},\"worker\":{},\"step\":{},\"loss\":{:.6g},\"lr\":{:.6g},\"grad_norm\":{:.6g},"
               "\"seconds\":{:.6g}}}\n",
               global.round, worker, step, loss, lr, gnorm, secs);
  }
  return r;
}

}  // namespace loco::train
