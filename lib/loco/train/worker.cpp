// loco-worker's inner loop.
#include "loco/train/worker.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/data/batch.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"
#include "loco/model/model.hpp"
#include "loco/optim/clip.hpp"
#include "loco/optim/optimizer.hpp"
#include "loco/optim/schedule.hpp"
#include "loco/train/demo.hpp"
#include "loco/train/federated.hpp"
#include "loco/train/files.hpp"
#include "loco/train/fragment.hpp"

namespace loco::train {
namespace {

// Reads a worker state file into an optimizer state, checking it belongs to this model, worker
// and optimizer.
optim::OptimizerState read_state(const std::string& path, const model::ModelFile& m, std::int64_t worker,
                                 const optim::Optimizer& opt) {
  auto src = open_worker_state(path, m, worker);
  const auto spec = src->attributes().get_string("inner_optimizer").value_or("");
  if (optim::parse_inner_spec(spec).name != opt.spec().name)
    throw_error(ErrorKind::BadInput, "{}: state of optimizer '{}', this run uses '{}'", path, spec,
                optim::format_spec(opt.spec()));
  optim::OptimizerState st = opt.make_state(m.params);
  st.step = src->group_attributes("state").get_int(std::string(optim::kStepAttribute)).value_or(0);
  for (auto& [slot, set] : st.slots)
    for (auto& e : set) {
      e.tensor = read_state_slot(*src, path, slot, e.name, e.tensor.shape());
    }
  opt.check_state(st, m.params);
  return st;
}

void write_state(const std::string& path, const model::ModelFile& m, std::int64_t worker, const optim::Optimizer& opt,
                 const optim::OptimizerState& st) {
  Attributes root;
  root.set("kind", std::string("state"));
  root.set("model_config", m.config.canonical_json());
  root.set("worker", worker);
  root.set("round", m.round);
  root.set("step", st.step);
  root.set("inner_optimizer", optim::format_spec(opt.spec()));
  std::vector<io::TensorInfo> plan;
  std::vector<const Tensor*> data;
  for (const auto& [slot, set] : st.slots)
    for (const auto& e : set) {
      plan.push_back({optim::state_group(slot), e.name, e.tensor.shape(), DType::F32, {}});
      data.push_back(&e.tensor);
    }
  auto sink = io::create_sink(path, io::Format::Loco, root, plan);
  for (std::size_t i = 0; i < plan.size(); ++i) sink->write(i, *data[i]);
  sink->set_group_attribute("state", optim::kStepAttribute, st.step);
  sink->commit();
}

// Δ = θ_base − θ_local for each tensor of base (the whole model, or one fragment of it), checking
// that the local parameters stayed finite.
TensorSet make_delta(const TensorSet& base, const TensorSet& params, const std::string& data) {
  TensorSet delta;
  for (const auto& e : base) {
    Tensor d = e.tensor.clone();
    auto dv = d.f32();
    const auto pv = params.at(e.name).f32();
    bool finite = true;
    for (std::size_t k = 0; k < dv.size(); ++k) {
      dv[k] -= pv[k];
      finite = finite && std::isfinite(dv[k]);
    }
    if (!finite)  // a finite loss and gradient can still step the parameters out of range
      throw_error(ErrorKind::Numeric,
                  "{}: parameters of {} became non-finite (learning rate too large?); nothing written", data, e.name);
    delta.add(e.name, std::move(d));
  }
  return delta;
}

}  // namespace

WorkerResult run_worker(const WorkerOptions& o) {
  if (is_demo_optimizer(o.optimizer)) return run_demo_worker(o);  // DeMo: one step, compressed momentum (demo.hpp)
  if (o.steps < 1) throw_error(ErrorKind::Usage, "--steps must be at least 1");
  if (o.batch < 1) throw_error(ErrorKind::Usage, "--batch must be at least 1");
  if (o.overlap < 0 || o.overlap >= o.steps)
    throw_error(ErrorKind::Usage, "--overlap must be in [0, --steps) = [0, {}), not {}", o.steps, o.overlap);
  if (!(o.mixing >= 0.0 && o.mixing <= 1.0))
    throw_error(ErrorKind::Usage, "--mixing must be in [0, 1], not {}", o.mixing);
  if (o.mix.empty() && o.mixing != 0.0)
    throw_error(ErrorKind::Usage, "--mixing {} without --mix: nothing to mix", o.mixing);
  const bool scaffold = !o.scaffold_control.empty();
  if (!(o.prox_mu >= 0.0) || !std::isfinite(o.prox_mu))
    throw_error(ErrorKind::Usage, "--prox-mu must be finite and >= 0, not {}", o.prox_mu);
  if (scaffold != !o.control_delta.empty())
    throw_error(ErrorKind::Usage,
                "--scaffold-control and --control-delta go together (SCAFFOLD reads c, writes the control delta)");
  if (scaffold && o.state.empty())
    throw_error(ErrorKind::Usage, "--scaffold-control needs --state: the client's control variate c_i lives there");
  if ((scaffold || o.prox_mu != 0.0) && (!o.mix.empty() || !o.delta_base.empty() || o.overlap != 0))
    throw_error(ErrorKind::Usage, "--prox-mu and --scaffold-control do not combine with the streaming options");
  const model::ModelFile global = model::read_model(o.model);
  const data::DataFile shard = data::read_data(o.data);
  model::check_fits(shard, global);
  const std::int64_t worker = o.worker.value_or(shard.attributes.get_int("shard").value_or(0));
  auto opt = optim::make_inner_optimizer(o.optimizer);
  if (scaffold && opt->spec().kind != optim::OptimizerKind::Sgd)
    throw_error(ErrorKind::Usage,
                "--scaffold-control needs the sgd inner optimizer (SCAFFOLD's option II assumes plain "
                "SGD steps), not {}",
                opt->spec().name);
  const optim::ScheduleSpec sched = optim::parse_schedule(o.schedule);

  model::Model net(global.config);
  TensorSet params;
  for (const auto& e : global.params) params.add(e.name, e.tensor.clone());
  if (!o.mix.empty()) mix_fragment(params, read_fragment(o.mix, global.config), o.mixing);
  std::optional<FragmentFile> base;  // the delta's base when it is not --model
  if (!o.delta_base.empty()) base = read_fragment(o.delta_base, global.config);
  std::optional<TensorSet> delta;
  TensorSet grads = net.make_params();
  const bool have_state = !o.state.empty() && ::access(o.state.c_str(), F_OK) == 0;
  optim::OptimizerState st = have_state ? read_state(o.state, global, worker, *opt) : opt->make_state(params);
  // SCAFFOLD: the server's c and the client's c_i (a state slot, zero before the first round).
  std::optional<model::ModelFile> control;
  TensorSet* client_control = nullptr;
  if (scaffold) {
    control = model::read_model(o.scaffold_control);
    if (control->config.canonical_json() != global.config.canonical_json())
      throw_error(ErrorKind::BadInput, "{}: control variate of another model (model_config {}), this model is {}",
                  o.scaffold_control, control->config.canonical_json(), global.config.canonical_json());
    TensorSet ci = have_state ? read_client_control(o.state, params) : zero_control(params);
    client_control = &st.slots.insert_or_assign(std::string(kControlSlot), std::move(ci)).first->second;
  }
  double lr_sum = 0;  // Σ_k lr_k, SCAFFOLD's K·η_l

  std::unique_ptr<std::FILE, int (*)(std::FILE*)> metrics(nullptr, std::fclose);
  if (o.metrics == "-") metrics.reset(fdopen(dup(STDOUT_FILENO), "w"));
  else if (!o.metrics.empty()) {
    metrics.reset(std::fopen(o.metrics.c_str(), "a"));
    if (!metrics) throw_error(ErrorKind::Io, "{}: cannot open for appending", o.metrics);
  }

  // Batch buffers, allocated once.
  const auto& c = global.config;
  std::vector<std::int64_t> idx(static_cast<std::size_t>(o.batch));
  std::vector<float> xb;
  std::vector<std::int32_t> yb, tb;
  std::unique_ptr<data::BatchSampler> rows;
  std::unique_ptr<data::WindowSampler> windows;
  if (shard.tokens) {
    windows = std::make_unique<data::WindowSampler>(shard.examples(), c.ctx, o.batch, o.seed, worker, 0);
    tb.resize(static_cast<std::size_t>(o.batch * (c.ctx + 1)));
  } else {
    rows = std::make_unique<data::BatchSampler>(shard.rows.n, o.batch, data::SampleMode::Shuffle, o.seed, worker, 0);
    xb.resize(static_cast<std::size_t>(o.batch * shard.rows.d));
    yb.resize(static_cast<std::size_t>(o.batch));
  }

  WorkerResult r;
  double loss_sum = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (std::int64_t s = 0; s < o.steps; ++s) {
    const auto step_start = std::chrono::steady_clock::now();
    const std::int64_t step = st.step;  // cumulative: the data-stream position
    model::Batch batch;
    if (shard.tokens) {
      windows->offsets(step, idx);
      data::gather_windows(shard.stream, idx, c.ctx, tb);
      batch = model::Batch::tokens(std::span<const std::int32_t>(tb), c.ctx);
    } else {
      rows->indices(step, idx);
      data::gather_batch(shard.rows, idx, xb, yb);
      batch = model::Batch::classification(xb, yb);
    }
    const model::LossStats ls = net.forward_backward(params, batch, &grads);
    const double loss = ls.mean_loss();
    const double gnorm = check_step(loss, grads, o.clip, o.data, step, global.round, worker);
    const double lr = optim::scheduled_lr(sched, opt->lr(), step);
    if (o.prox_mu != 0.0) add_proximal_gradient(grads, params, global.params, o.prox_mu);
    if (scaffold) add_control_correction(grads, *client_control, control->params);
    lr_sum += lr;
    opt->step(params, grads, st, lr);
    if (s == 0) r.loss_first = loss;
    r.loss_last = loss;
    loss_sum += loss;
    r.samples += ls.count;
    if (metrics) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
      fmt::print(metrics.get(),
                 "{{\"round\":{},\"worker\":{},\"step\":{},\"loss\":{:.6g},\"lr\":{:.6g},\"grad_norm\":{:.6g},"
                 "\"seconds\":{:.6g}}}\n",
                 global.round, worker, step, loss, lr, gnorm, secs);
    }
    if (o.progress) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      fmt::print(stderr, "\r{}: step {}/{}  loss {:.4f}  {:.1f} steps/s   ", log::program(), s + 1, o.steps, loss,
                 static_cast<double>(s + 1) / secs);
      if (s + 1 == o.steps) fmt::print(stderr, "\n");
    }
    // The delta leaves at the sync point minus τ; the remaining τ steps continue (the overlap).
    if (s + 1 == o.steps - o.overlap) delta = make_delta(base ? base->params : global.params, params, o.data);
  }
  r.loss_mean = loss_sum / static_cast<double>(o.steps);
  r.step = st.step;

  // Δ = θ_base − θ_local (taken above, τ steps before the end), written before the state so that a
  // crash in between reruns the same step.
  if (!o.save_local.empty())  // the delta checked its tensors; the local file holds them all
    for (const auto& e : params)
      for (float v : e.tensor.f32())
        if (!std::isfinite(v))
          throw_error(ErrorKind::Numeric,
                      "{}: parameters of {} became non-finite (learning rate too large?); nothing written", o.data,
                      e.name);
  Attributes root;
  root.set("kind", std::string("delta"));
  root.set("model_config", c.canonical_json());
  root.set("round", base ? base->round : global.round);
  root.set("worker", worker);
  root.set("samples", r.samples);
  root.set("base_checksum", base ? base->checksum : global.checksum);
  root.set("step", r.step);
  root.set("inner_steps", o.steps);
  root.set("inner_optimizer", optim::format_spec(opt->spec()));
  root.set("loss_first", r.loss_first);
  root.set("loss_last", r.loss_last);
  root.set("loss_mean", r.loss_mean);
  if (base)
    for (const char* key : {"fragment", "fragments"})
      if (const auto v = base->attributes.get_int(key)) root.set(key, *v);
  if (o.overlap > 0) root.set("overlap", o.overlap);
  // SCAFFOLD: c_i⁺ into the state (written last), Δc = c_i − c_i⁺ against the c file.
  std::optional<TensorSet> control_delta;
  if (scaffold) control_delta = update_client_control(*client_control, control->params, global.params, params, lr_sum);
  if (o.prox_mu != 0.0) root.set("prox_mu", o.prox_mu);
  io::write_tensor_set(o.output, root, *delta);
  if (control_delta) {
    Attributes croot = root;
    croot.set("round", control->round);
    croot.set("base_checksum", control->checksum);
    croot.set("control", std::string("scaffold"));
    croot.set("lr_sum", lr_sum);
    io::write_tensor_set(o.control_delta, croot, *control_delta);
  }
  if (!o.save_local.empty()) {
    Attributes local;
    for (const char* key :
         {"worker", "samples", "step", "inner_steps", "inner_optimizer", "loss_first", "loss_last", "loss_mean"})
      local.set(key, *root.find(key));
    local.set("round", global.round);
    model::write_model(o.save_local, c, params, local);
  }
  if (!o.state.empty()) write_state(o.state, global, worker, *opt, st);
  return r;
}

}  // namespace loco::train
