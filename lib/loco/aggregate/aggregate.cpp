// Streaming reduction of delta files and the outer optimizer step (see aggregate.hpp for the rules).
#include "loco/aggregate/aggregate.hpp"

#include <Eigen/Core>
#include <nlohmann/json.hpp>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_group.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>

#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::aggregate {

std::string_view reduction_name(Reduction r) noexcept { return r == Reduction::Mean ? "mean" : "weighted-mean"; }

Reduction parse_reduction(std::string_view text) {
  if (text == "mean") return Reduction::Mean;
  if (text == "weighted-mean") return Reduction::WeightedMean;
  throw_error(ErrorKind::Usage, "reduction '{}' is not one of mean, weighted-mean", text);
}

double staleness_weight(std::int64_t staleness, double exponent) {
  if (staleness < 0) throw_error(ErrorKind::Internal, "negative staleness {}", staleness);
  return std::pow(1.0 + static_cast<double>(staleness), -exponent);
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Elements per parallel work item of the outer step; norms are summed per item in index order, so
// the result does not depend on the thread count.
constexpr std::size_t kChunk = std::size_t{1} << 15;
constexpr std::uint32_t kExpMask = 0x7f800000u;

struct Delta {
  std::string path;
  std::unique_ptr<io::TensorSource> src;
  std::optional<std::int64_t> worker, samples, round;
  std::string base;
  std::int64_t staleness = 0;
  double gain = 1;  // staleness weight g_k
  std::vector<const io::TensorInfo*> tensors;  // the delta's tensor for each model tensor
  std::string bad_tensor;  // set when a non-finite value was found
};

// Largest biased exponent field of the float32 values: kExpMask exactly when one is NaN or Inf.
// An integer max reduction, so the compiler vectorizes it (a float one it may not reorder).
std::uint32_t max_exponent(const float* x, std::size_t n) {
  std::uint32_t m = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t b;
    std::memcpy(&b, x + i, 4);
    m = std::max(m, b & kExpMask);
  }
  return m;
}

// acc = w·x (first) or acc += w·x, in float64; returns false when x holds a NaN or Inf.
bool accumulate(const float* x, std::size_t n, double w, double* acc, bool first) {
  if (first)
    for (std::size_t i = 0; i < n; ++i) acc[i] = w * static_cast<double>(x[i]);
  else
    for (std::size_t i = 0; i < n; ++i) acc[i] += w * static_cast<double>(x[i]);
  return max_exponent(x, n) != kExpMask;
}

std::string opt_int(const std::optional<std::int64_t>& v) { return v ? std::to_string(*v) : "none"; }

class Aggregator {
 public:
  Aggregator(const std::string& model_path, const std::vector<std::string>& delta_paths, const std::string& output,
             const AggregateOptions& opt)
      : opt_(opt), output_(output), optimizer_(optim::make_optimizer(opt.outer)), slots_(optimizer_->slots()) {
    summary_.model = model_path;
    summary_.output = output;
    summary_.reduce = std::string(reduction_name(opt.reduce));
    summary_.outer = optim::format_spec(optimizer_->spec());
    summary_.staleness_rule = opt.allow_stale ? fmt::format("polynomial:a={}", opt.staleness_exponent) : "none";
    if (opt.min_deltas < 1) throw_error(ErrorKind::Usage, "--min-deltas {} is not ≥ 1", opt.min_deltas);
    if (!std::isfinite(opt.staleness_exponent) || opt.staleness_exponent < 0)
      throw_error(ErrorKind::Usage, "staleness exponent {} is not a finite number ≥ 0", opt.staleness_exponent);
    if (delta_paths.empty()) throw_error(ErrorKind::Usage, "no delta files given");
    open_model(model_path);
    for (const auto& p : delta_paths) open_delta(p);
    order_deltas();
  }

  AggregateSummary run(Clock::time_point t0) {
    summary_.seconds_open = seconds_since(t0);
    const auto t1 = Clock::now();
    std::vector<Delta*> active;
    for (auto& d : deltas_) active.push_back(&d);
    for (;;) {
      check_quorum(active);
      ++summary_.passes;
      sink_.reset();
      if (reduce_pass(active)) break;
      // A non-finite block: find every non-finite delta in one streaming pass, then start over.
      validation_pass(active);
      std::vector<Delta*> keep;
      for (Delta* d : active) {
        if (d->bad_tensor.empty()) {
          keep.push_back(d);
          continue;
        }
        const std::string why = fmt::format("non-finite values (NaN or Inf) in tensor {}", d->bad_tensor);
        log::warn("{}: dropped: {}", d->path, why);
        summary_.dropped.push_back({d->path, d->worker, why});
      }
      active = std::move(keep);
    }
    summary_.seconds_reduce = seconds_since(t1);
    const auto t2 = Clock::now();
    sink_->commit();
    sink_.reset();
    summary_.seconds_commit = seconds_since(t2);
    return std::move(summary_);
  }

 private:
  void open_model(const std::string& path) {
    model_ = io::open_source(path);
    io::expect_kind(*model_, {io::Kind::Model});
    params_ = model_->group("tensors");
    for (const io::TensorInfo* p : params_)
      if (p->dtype != DType::F32)
        throw_error(ErrorKind::BadInput,
                    "{}: tensor {} is {}, the outer step needs float32 parameters (loco-convert --dtype f32)", path,
                    p->name, dtype_name(p->dtype));
    round_ = model_->attributes().get_int("round").value_or(0);
    checksum_ = io::tensors_checksum(*model_);
    for (const io::TensorInfo* p : params_) summary_.bytes_read += static_cast<std::uint64_t>(p->numel()) * 4;

    // Outer optimizer state: /state/<slot>/<name> and the counter /state@step.
    step_ = model_->group_attributes("state").get_int(optim::kStepAttribute).value_or(0);
    if (step_ < 0) throw_error(ErrorKind::BadInput, "{}: /state step {} is negative", path, step_);
    std::map<std::string, std::vector<const io::TensorInfo*>, std::less<>> found;
    for (const auto& t : model_->tensors()) {
      if (t.group == "state")
        throw_error(ErrorKind::BadInput, "{}: tensor /state/{} is not inside a state slot group", path, t.name);
      if (t.group.rfind("state/", 0) == 0) found[t.group.substr(6)].push_back(&t);
    }
    for (const auto& [slot, list] : found)
      if (std::find(slots_.begin(), slots_.end(), slot) == slots_.end()) {
        const auto made_by = model_->group_attributes("state").get_string("optimizer");
        throw_error(ErrorKind::BadInput,
                    "{}: state slot '{}' is not used by the outer optimizer {} (the state was made for {})", path, slot,
                    summary_.outer, made_by.value_or("another optimizer"));
      }
    for (const auto& slot : slots_) {
      auto it = found.find(slot);
      std::vector<const io::TensorInfo*> per_param(params_.size(), nullptr);
      if (it == found.end()) {
        if (step_ > 0)
          throw_error(ErrorKind::BadInput,
                      "{}: no state slot '{}', which the outer optimizer {} needs at step {} (state made for another "
                      "optimizer?)",
                      path, slot, summary_.outer, step_);
      } else {
        if (it->second.size() != params_.size())
          throw_error(ErrorKind::BadInput, "{}: state slot '{}' has {} tensors, the model {}", path, slot,
                      it->second.size(), params_.size());
        for (std::size_t i = 0; i < params_.size(); ++i) {
          const io::TensorInfo* s = model_->find(params_[i]->name, optim::state_group(slot));
          if (!s) throw_error(ErrorKind::BadInput, "{}: state slot '{}' has no tensor {}", path, slot, params_[i]->name);
          if (s->shape != params_[i]->shape || s->dtype != DType::F32)
            throw_error(ErrorKind::BadInput, "{}: state /{}/{} is {} {}, expected float32 {}", path, s->group, s->name,
                        dtype_name(s->dtype), shape_string(s->shape), shape_string(params_[i]->shape));
          per_param[i] = s;
        }
      }
      state_.push_back(std::move(per_param));
    }
  }

  void open_delta(const std::string& path) {
    Delta d;
    d.path = path;
    d.src = io::open_source(path);
    if (io::file_kind(*d.src) == io::Kind::Compressed)
      throw_error(ErrorKind::BadInput, "{}: is a compressed delta; decompress it first (loco-decompress)", path);
    io::expect_kind(*d.src, {io::Kind::Delta});
    io::check_same_config(*model_, *d.src);
    const Attributes& a = d.src->attributes();
    d.worker = a.get_int("worker");
    d.samples = a.get_int("samples");
    d.round = a.get_int("round");
    const auto base = a.get_string("base_checksum");
    if (!base) throw_error(ErrorKind::BadInput, "{}: delta without a base_checksum attribute", path);
    d.base = *base;
    if (d.base != checksum_) {
      const std::string rounds = fmt::format("delta round {}, model round {}", opt_int(d.round), round_);
      if (!opt_.allow_stale)
        throw_error(ErrorKind::BadInput,
                    "{}: stale or foreign delta: base_checksum {}, expected {} (the checksum of {}; {}); "
                    "--allow-stale accepts deltas from older rounds",
                    path, d.base, checksum_, summary_.model, rounds);
      if (!d.round || *d.round >= round_)
        throw_error(ErrorKind::BadInput,
                    "{}: foreign delta: base_checksum {}, expected {} (the checksum of {}), and it is not from an older "
                    "round ({})",
                    path, d.base, checksum_, summary_.model, rounds);
      d.staleness = round_ - *d.round;
      d.gain = staleness_weight(d.staleness, opt_.staleness_exponent);
    }
    if (opt_.reduce == Reduction::WeightedMean && (!d.samples || *d.samples <= 0))
      throw_error(ErrorKind::BadInput, "{}: weighted-mean needs a samples attribute > 0, found {}", path,
                  opt_int(d.samples));
    const auto tensors = d.src->group("tensors");
    if (tensors.size() != params_.size())
      throw_error(ErrorKind::BadInput, "{}: {} tensors, the model {} has {}", path, tensors.size(), summary_.model,
                  params_.size());
    for (const io::TensorInfo* p : params_) {
      const io::TensorInfo* t = d.src->find(p->name);
      if (!t) throw_error(ErrorKind::BadInput, "{}: no tensor {}, which the model {} has", path, p->name, summary_.model);
      if (t->shape != p->shape)
        throw_error(ErrorKind::BadInput, "{}: tensor {} has shape {}, the model's is {}", path, p->name,
                    shape_string(t->shape), shape_string(p->shape));
      if (!is_floating(t->dtype))
        throw_error(ErrorKind::BadInput, "{}: tensor {} is {}, expected a floating-point type", path, p->name,
                    dtype_name(t->dtype));
      d.tensors.push_back(t);
      max_delta_dtype_ = std::max(max_delta_dtype_, dtype_size(t->dtype));
      any_converted_ = any_converted_ || t->dtype != DType::F32;
    }
    deltas_.push_back(std::move(d));
  }

  void order_deltas() {
    auto key = [](const Delta& d) {
      return std::make_pair(d.worker.value_or(std::numeric_limits<std::int64_t>::max()), d.path);
    };
    std::stable_sort(deltas_.begin(), deltas_.end(), [&](const Delta& a, const Delta& b) { return key(a) < key(b); });
    for (std::size_t i = 1; i < deltas_.size(); ++i) {
      const Delta& a = deltas_[i - 1];
      const Delta& b = deltas_[i];
      if (a.path == b.path) throw_error(ErrorKind::Usage, "{}: delta listed twice", a.path);
      if (a.worker && b.worker && *a.worker == *b.worker && a.base == b.base)
        throw_error(ErrorKind::BadInput, "{} and {}: two deltas from worker {} on the same global model", a.path,
                    b.path, *a.worker);
    }
  }

  void check_quorum(const std::vector<Delta*>& active) const {
    if (static_cast<std::int64_t>(active.size()) >= opt_.min_deltas) return;
    throw_error(ErrorKind::Check, "quorum not reached: {} valid deltas of {} given ({} dropped), --min-deltas {}; nothing written",
                active.size(), deltas_.size(), deltas_.size() - active.size(), opt_.min_deltas);
  }

  void make_sink(const std::vector<Delta*>& active) {
    Attributes root;
    root.set("kind", std::string("model"));
    for (const auto& e : model_->attributes()) {
      static constexpr std::string_view skip[] = {"loco_format", "loco_version", "producer", "created", "kind",
                                                  "base_checksum", "worker", "samples"};
      if (std::find(std::begin(skip), std::end(skip), e.name) == std::end(skip)) root.set(e.name, e.value);
    }
    root.set("round", round_ + 1);
    root.set("parent_checksum", checksum_);
    root.set("outer_optimizer", summary_.outer);
    root.set("reduction", summary_.reduce);
    root.set("staleness", summary_.staleness_rule);
    root.set("contributors", static_cast<std::int64_t>(active.size()));
    std::vector<io::TensorInfo> plan;
    for (const io::TensorInfo* p : params_) plan.push_back(*p);
    for (const auto& slot : slots_)
      for (const io::TensorInfo* p : params_) {
        io::TensorInfo s;
        s.group = optim::state_group(slot);
        s.name = p->name;
        s.shape = p->shape;
        s.dtype = DType::F32;
        plan.push_back(std::move(s));
      }
    sink_ = io::create_sink(output_, io::Format::Loco, root, std::move(plan));
    sink_->set_group_attribute("state", optim::kStepAttribute, step_ + 1);
    sink_->set_group_attribute("state", "optimizer", summary_.outer);
  }

  // Weights w_k for the active deltas (aggregate.hpp), filling the summary's contributor list.
  std::vector<double> weights(const std::vector<Delta*>& active) {
    double denom = 0;
    for (const Delta* d : active) denom += opt_.reduce == Reduction::Mean ? 1.0 : static_cast<double>(*d->samples);
    std::vector<double> w;
    summary_.contributors.clear();
    for (const Delta* d : active) {
      const double base = opt_.reduce == Reduction::Mean ? 1.0 : static_cast<double>(*d->samples);
      w.push_back(base * d->gain / denom);
      summary_.contributors.push_back({d->path, d->worker, d->samples, d->round, d->staleness, w.back()});
    }
    return w;
  }

  // One reduction and outer step over every tensor, writing into a fresh sink. Returns false (and
  // marks the delta) as soon as a delta block holds a NaN or Inf.
  bool reduce_pass(const std::vector<Delta*>& active) {
    const std::vector<double> w = weights(active);
    make_sink(active);
    std::size_t n_max = 0;
    for (const io::TensorInfo* p : params_)
      n_max = std::max(n_max, static_cast<std::size_t>(std::min(rows_per_block(*p, opt_.block_bytes), p->rows()) *
                                                       p->row_elements()));
    // Buffers allocated once per pass; float64 storage keeps every view 8-byte aligned.
    const std::size_t raw_doubles = (n_max * max_delta_dtype_ + 7) / 8;
    std::array<std::vector<double>, 2> raw{std::vector<double>(raw_doubles), std::vector<double>(raw_doubles)};
    std::vector<float> conv(any_converted_ ? n_max : 0), dbar(n_max), theta(n_max), old(n_max);
    std::vector<double> acc(n_max);
    std::vector<std::vector<float>> slot_buf(slots_.size(), std::vector<float>(n_max));
    std::vector<double> sq_update, sq_step;
    double update_sq = 0, step_sq = 0;
    const std::int64_t t = step_ + 1;
    const double lr = optimizer_->lr();
    tbb::task_group tg;
    std::atomic<int> bad{-1};

    for (std::size_t i = 0; i < params_.size(); ++i) {
      const io::TensorInfo& p = *params_[i];
      const std::int64_t row_el = p.row_elements();
      const std::int64_t step_rows = rows_per_block(p, opt_.block_bytes);
      for (std::int64_t r0 = 0; r0 < p.rows(); r0 += step_rows) {
        const std::int64_t nrows = std::min(step_rows, p.rows() - r0);
        const std::size_t n = static_cast<std::size_t>(nrows * row_el);
        if (n == 0) {
          write_block(i, r0, nrows, theta, slot_buf, 0);
          continue;
        }
        // Reads on this thread (HDF5 calls stay serial) overlap the accumulation of the previous delta.
        for (std::size_t k = 0; k < active.size(); ++k) {
          Delta& d = *active[k];
          const io::TensorInfo& dt = *d.tensors[i];
          auto* buf = reinterpret_cast<std::byte*>(raw[k & 1].data());
          const std::size_t nbytes = n * dtype_size(dt.dtype);
          d.src->read_rows(dt, r0, nrows, std::span(buf, nbytes));
          summary_.delta_bytes_read += nbytes;
          tg.wait();
          if (bad >= 0) break;
          tg.run([&, k, buf, n, dtype = dt.dtype] {
            const float* x = reinterpret_cast<const float*>(buf);
            if (dtype != DType::F32) {
              convert_elements(dtype, buf, DType::F32, reinterpret_cast<std::byte*>(conv.data()), n);
              x = conv.data();
            }
            if (!accumulate(x, n, w[k], acc.data(), k == 0)) {
              int expected = -1;
              bad.compare_exchange_strong(expected, static_cast<int>(k));
            }
          });
        }
        // The parameters and state of this block, read while the last accumulation runs.
        if (bad < 0) {
          const std::size_t fbytes = n * 4;
          model_->read_rows(p, r0, nrows, std::as_writable_bytes(std::span(theta.data(), n)));
          summary_.bytes_read += fbytes;
          for (std::size_t s = 0; s < slots_.size(); ++s) {
            if (const io::TensorInfo* st = state_[s].empty() ? nullptr : state_[s][i]) {
              model_->read_rows(*st, r0, nrows, std::as_writable_bytes(std::span(slot_buf[s].data(), n)));
              summary_.bytes_read += fbytes;
            } else {
              std::fill_n(slot_buf[s].data(), n, 0.0f);
            }
          }
        }
        tg.wait();
        if (bad >= 0) {
          Delta& d = *active[static_cast<std::size_t>(bad.load())];
          d.bad_tensor = p.name;
          log::info("{}: non-finite value in tensor {}; restarting the reduction without it", d.path, p.name);
          summary_.bytes_read += summary_.delta_bytes_read;
          summary_.delta_bytes_read = 0;
          return false;
        }
        outer_step(acc, dbar, theta, old, slot_buf, n, t, lr, sq_update, sq_step);
        for (double v : sq_update) update_sq += v;
        for (double v : sq_step) step_sq += v;
        write_block(i, r0, nrows, theta, slot_buf, n);
      }
    }
    summary_.bytes_read += summary_.delta_bytes_read;
    summary_.update_norm = std::sqrt(update_sq);
    summary_.step_norm = std::sqrt(step_sq);
    if (!std::isfinite(step_sq))
      throw_error(ErrorKind::Numeric, "the new parameters are not finite (‖Δ̄‖ = {}); nothing written",
                  summary_.update_norm);
    summary_.round = round_ + 1;
    summary_.outer_step = step_ + 1;
    return true;
  }

  // Δ̄ = float32(acc), then the optimizer on the block, in parallel chunks; per-chunk squared norms
  // of Δ̄ and of θ_new − θ (float64) in chunk order.
  void outer_step(const std::vector<double>& acc, std::vector<float>& dbar, std::vector<float>& theta,
                  std::vector<float>& old, std::vector<std::vector<float>>& slot_buf, std::size_t n, std::int64_t t,
                  double lr, std::vector<double>& sq_update, std::vector<double>& sq_step) const {
    const std::size_t chunks = (n + kChunk - 1) / kChunk;
    sq_update.assign(chunks, 0.0);
    sq_step.assign(chunks, 0.0);
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, chunks), [&](const tbb::blocked_range<std::size_t>& r) {
      std::array<std::span<float>, 4> spans;
      for (std::size_t c = r.begin(); c != r.end(); ++c) {
        const std::size_t lo = c * kChunk, len = std::min(kChunk, n - lo);
        for (std::size_t j = lo; j < lo + len; ++j) dbar[j] = static_cast<float>(acc[j]);
        std::memcpy(old.data() + lo, theta.data() + lo, len * 4);
        for (std::size_t s = 0; s < slot_buf.size(); ++s) spans[s] = std::span(slot_buf[s].data() + lo, len);
        optimizer_->apply(std::span(theta.data() + lo, len), std::span<const float>(dbar.data() + lo, len),
                          std::span<const std::span<float>>(spans.data(), slot_buf.size()), t, lr);
        using V = Eigen::Map<const Eigen::VectorXf>;
        const V d(dbar.data() + lo, static_cast<Eigen::Index>(len));
        const V a(theta.data() + lo, static_cast<Eigen::Index>(len)), b(old.data() + lo, static_cast<Eigen::Index>(len));
        sq_update[c] = d.cast<double>().squaredNorm();
        sq_step[c] = (a.cast<double>() - b.cast<double>()).squaredNorm();
      }
    });
  }

  void write_block(std::size_t i, std::int64_t r0, std::int64_t nrows, const std::vector<float>& theta,
                   const std::vector<std::vector<float>>& slot_buf, std::size_t n) {
    sink_->write_rows(i, r0, nrows, std::as_bytes(std::span(theta.data(), n)));
    for (std::size_t s = 0; s < slots_.size(); ++s)
      sink_->write_rows((s + 1) * params_.size() + i, r0, nrows, std::as_bytes(std::span(slot_buf[s].data(), n)));
  }

  // Streams each active delta once, recording in bad_tensor the first tensor with a NaN or Inf.
  void validation_pass(const std::vector<Delta*>& active) {
    std::vector<float> buf;
    std::vector<std::byte> raw;
    for (Delta* d : active) {
      for (std::size_t i = 0; i < params_.size() && d->bad_tensor.empty(); ++i) {
        const io::TensorInfo& dt = *d->tensors[i];
        const std::int64_t step_rows = rows_per_block(*params_[i], opt_.block_bytes);
        for (std::int64_t r0 = 0; r0 < dt.rows(); r0 += step_rows) {
          const std::int64_t nrows = std::min(step_rows, dt.rows() - r0);
          const std::size_t n = static_cast<std::size_t>(nrows * dt.row_elements());
          raw.resize(n * dtype_size(dt.dtype));
          buf.resize(n);
          d->src->read_rows(dt, r0, nrows, raw);
          summary_.bytes_read += raw.size();
          convert_elements(dt.dtype, raw.data(), DType::F32, reinterpret_cast<std::byte*>(buf.data()), n);
          if (max_exponent(buf.data(), n) == kExpMask) {
            d->bad_tensor = dt.name;
            break;
          }
        }
      }
    }
  }

  AggregateOptions opt_;
  std::string output_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::vector<std::string> slots_;
  std::unique_ptr<io::TensorSource> model_;
  std::vector<const io::TensorInfo*> params_;
  std::vector<std::vector<const io::TensorInfo*>> state_;  // per slot, per param (empty: zero state)
  std::int64_t round_ = 0, step_ = 0;
  std::string checksum_;
  std::vector<Delta> deltas_;
  std::size_t max_delta_dtype_ = 4;
  bool any_converted_ = false;
  std::unique_ptr<io::TensorSink> sink_;
  AggregateSummary summary_;
};

}  // namespace

AggregateSummary aggregate(const std::string& model_path, const std::vector<std::string>& delta_paths,
                           const std::string& output_path, const AggregateOptions& options) {
  const auto t0 = Clock::now();
  Aggregator a(model_path, delta_paths, output_path, options);
  AggregateSummary s = a.run(t0);
  s.elapsed_seconds = seconds_since(t0);
  return s;
}

std::string summary_json(const AggregateSummary& s) {
  using nlohmann::json;
  auto opt = [](const std::optional<std::int64_t>& v) { return v ? json(*v) : json(nullptr); };
  json contributors = json::array(), dropped = json::array();
  for (const auto& c : s.contributors)
    contributors.push_back({{"path", c.path},
                            {"worker", opt(c.worker)},
                            {"samples", opt(c.samples)},
                            {"round", opt(c.round)},
                            {"staleness", c.staleness},
                            {"weight", c.weight}});
  for (const auto& d : s.dropped) dropped.push_back({{"path", d.path}, {"worker", opt(d.worker)}, {"reason", d.reason}});
  json j = {{"model", s.model},
            {"output", s.output},
            {"round", s.round},
            {"outer_step", s.outer_step},
            {"reduce", s.reduce},
            {"outer", s.outer},
            {"staleness", s.staleness_rule},
            {"contributors", contributors},
            {"dropped", dropped},
            {"update_norm", s.update_norm},
            {"step_norm", s.step_norm},
            {"bytes_read", s.bytes_read},
            {"delta_bytes_read", s.delta_bytes_read},
            {"passes", s.passes},
            {"seconds", {{"open", s.seconds_open}, {"reduce", s.seconds_reduce}, {"commit", s.seconds_commit}}},
            {"elapsed_seconds", s.elapsed_seconds}};
  return j.dump();
}

}  // namespace loco::aggregate
