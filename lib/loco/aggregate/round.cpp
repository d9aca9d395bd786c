// One round: reduction passes until no delta is non-finite, the per-round factors (DP, QFedAvg),
// weights and the summary's contributor list, the output file, reading one delta's tensor, and the
// receiver's ef21/econtrol estimates (aggregate.hpp).
#include <algorithm>
#include <cmath>

#include "loco/aggregate/detail/aggregator.hpp"
#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/robust/dp.hpp"

namespace loco::aggregate::detail {

AggregateSummary Aggregator::run(Clock::time_point t0) {
  summary_.seconds_open = seconds_since(t0);
  const auto t1 = Clock::now();
  std::vector<Delta*> active;
  for (auto& d : deltas_) active.push_back(&d);
  if (needs_norms_) {
    // DP and QFedAvg need every delta's norm before the reduction: one streaming pass that also
    // finds the non-finite deltas.
    ++summary_.passes;
    validation_pass(active);
    drop_bad(active);
  }
  for (;;) {
    check_quorum(active);
    prepare_round(active);
    ++summary_.passes;
    sink_.reset();
    const bool robust_rule = opt_.reduce == Reduction::Robust;
    active_final_ = active;
    if (robust_rule ? robust_pass(active) : tensorwise_ ? tensor_pass(active) : reduce_pass(active)) break;
    // A non-finite block: find every non-finite delta in one streaming pass, then start over.
    validation_pass(active);
    if (!drop_bad(active))
      throw_error(ErrorKind::Numeric,
                  "the reduced delta is not finite although every delta is (weights too "
                  "large for float32?); nothing written");
  }
  summary_.seconds_reduce = seconds_since(t1);
  const auto t2 = Clock::now();
  sink_->commit();
  sink_.reset();
  if (!opt_.ef21_state.empty()) write_estimates(active_final_);
  summary_.seconds_commit = seconds_since(t2);
  return std::move(summary_);
}

// Drops the active deltas with bad_tensor set, naming them; true when one was dropped.
bool Aggregator::drop_bad(std::vector<Delta*>& active) {
  std::vector<Delta*> keep;
  for (Delta* d : active) {
    if (d->bad_tensor.empty()) {
      keep.push_back(d);
      continue;
    }
    const std::string why = fmt::format("non-finite values (NaN or Inf) in tensor {}", d->bad_tensor);
    log::warn("{}: dropped: {}", d->path, why);
    summary_.dropped.push_back({d->path, d->worker, why, d->payload_bytes});
  }
  const bool dropped = keep.size() != active.size();
  active = std::move(keep);
  return dropped;
}

// Per-round factors that need the deltas' norms: DP clip factors, the adaptive clip norm and the
// noise σ, QFedAvg's weights (aggregate.hpp). Norms are of x_k = g_k·Δ_k.
void Aggregator::prepare_round(const std::vector<Delta*>& active) {
  if (!needs_norms_) return;
  std::vector<double> norms;
  for (const Delta* d : active) norms.push_back(d->gain * std::sqrt(d->sq_norm));
  if (opt_.dp.clip > 0) {
    DpSummary& dp = summary_.dp;
    dp.enabled = true;
    dp.seed = opt_.dp.seed;
    dp.noise_multiplier = opt_.dp.noise_multiplier;
    dp.m = opt_.dp.clients > 0 ? opt_.dp.clients : static_cast<std::int64_t>(active.size());
    if (opt_.dp.clients > 0 && opt_.dp.clients != static_cast<std::int64_t>(active.size()))
      log::warn("--dp-clients {}: {} valid deltas; the mean divides by m = {} (σ = zC/m assumes m sampled clients)",
                opt_.dp.clients, active.size(), dp.m);
    dp.adaptive = opt_.dp.adaptive;
    dp.clip = opt_.dp.adaptive ? state_clip_.value_or(opt_.dp.clip) : opt_.dp.clip;
    dp.effective_noise_multiplier = dp.noise_multiplier;
    if (opt_.dp.adaptive) {
      const robust::AdaptiveClipOptions& ao = opt_.dp.adaptive_options;
      const robust::AdaptiveClipStep st = robust::adaptive_clip_step(norms, dp.clip, dp.m, ao, opt_.dp.seed, round_);
      dp.unclipped_fraction = st.unclipped_fraction;
      dp.next_clip = st.next_clip;
      const double sb = ao.count_stddev < 0 ? static_cast<double>(dp.m) / 20.0 : ao.count_stddev;
      if (dp.noise_multiplier > 0)
        dp.effective_noise_multiplier = robust::adaptive_noise_multiplier(dp.noise_multiplier, sb);
    }
    dp.sigma = robust::dp_noise_stddev(dp.effective_noise_multiplier, dp.clip, dp.m);
    dp.clipped = 0;
    for (std::size_t k = 0; k < active.size(); ++k) {
      active[k]->dp_factor = robust::clip_factor(norms[k], dp.clip);
      dp.clipped += active[k]->dp_factor < 1 ? 1 : 0;
    }
    sigma_ = dp.sigma;
  }
  if (opt_.reduce == Reduction::QFedAvg) {
    const double q = opt_.qffl.q, L = 1.0 / opt_.qffl.lr;
    double hsum = 0;
    std::vector<double> fq(active.size());
    for (std::size_t k = 0; k < active.size(); ++k) {
      const double F = *active[k]->loss;
      fq[k] = std::pow(F, q);
      hsum += q * std::pow(F, q - 1) * L * L * norms[k] * norms[k] + L * fq[k];
    }
    for (std::size_t k = 0; k < active.size(); ++k) active[k]->qffl_weight = L * fq[k] * active[k]->gain / hsum;
  }
}

// Writes g_i = g_i(before) + decode(c_i) of every active ef21/econtrol delta, each atomically, after
// the model is committed (compress::ReceiverEstimate::commit also drops the worker's older estimates).
void Aggregator::write_estimates(const std::vector<Delta*>& active) {
  const auto model_config = model_->attributes().get_string("model_config");
  for (Delta* d : active) {
    if (!d->ef21) continue;
    Loaded l;
    d->estimate->commit(
        [&](std::size_t i) {
          load(*d, i, false, l);
          return std::move(l.x);
        },
        model_config);
  }
}

void Aggregator::check_quorum(const std::vector<Delta*>& active) const {
  if (static_cast<std::int64_t>(active.size()) >= opt_.min_deltas) return;
  throw_error(ErrorKind::Check,
              "quorum not reached: {} valid deltas of {} given ({} dropped), --min-deltas {}; nothing written",
              active.size(), deltas_.size(), deltas_.size() - active.size(), opt_.min_deltas);
}

void Aggregator::make_sink(const std::vector<Delta*>& active) {
  Attributes root;
  root.set("kind", std::string("model"));
  for (const auto& e : model_->attributes()) {
    static constexpr std::string_view skip[] = {"loco_format", "loco_version",  "producer", "created",
                                                "kind",        "base_checksum", "worker",   "samples"};
    if (std::find(std::begin(skip), std::end(skip), e.name) == std::end(skip)) root.set(e.name, e.value);
  }
  root.set("round", round_ + 1);
  root.set("parent_checksum", checksum_);
  root.set("outer_optimizer", summary_.outer);
  root.set("reduction", summary_.reduce);
  root.set("clip", summary_.clip);
  root.set("payload_bytes", summary_.payload_bytes);
  root.set("staleness", summary_.staleness_rule);
  root.set("contributors", static_cast<std::int64_t>(active.size()));
  for (const char* key : {"robust_selected", "robust_coefficients", "dp_clip", "dp_noise_multiplier", "dp_sigma",
                          "dp_clients", "dp_seed", "qffl_q", "qffl_lipschitz"})
    root.erase(key);
  if (opt_.reduce == Reduction::QFedAvg) {
    root.set("qffl_q", opt_.qffl.q);
    root.set("qffl_lipschitz", 1.0 / opt_.qffl.lr);
  }
  if (summary_.dp.enabled) {
    root.set("dp_clip", summary_.dp.clip);
    root.set("dp_noise_multiplier", summary_.dp.effective_noise_multiplier);
    root.set("dp_sigma", summary_.dp.sigma);
    root.set("dp_clients", summary_.dp.m);
    root.set("dp_seed", static_cast<std::int64_t>(summary_.dp.seed));
  }
  std::vector<io::TensorInfo> plan;
  for (const io::TensorInfo* p : params_) plan.push_back(*p);
  std::vector<std::string> groups;
  for (const auto& slot : slots_) groups.push_back(optim::state_group(slot));
  if (center_out_) groups.emplace_back(kCenterGroup);
  for (const auto& g : groups)
    for (const io::TensorInfo* p : params_) {
      io::TensorInfo s;
      s.group = g;
      s.name = p->name;
      s.shape = p->shape;
      s.dtype = DType::F32;
      plan.push_back(std::move(s));
    }
  sink_ = io::create_sink(output_, io::Format::Loco, root, std::move(plan));
  sink_->set_group_attribute("state", optim::kStepAttribute, step_ + 1);
  sink_->set_group_attribute("state", "optimizer", summary_.outer);
  if (summary_.dp.enabled && summary_.dp.adaptive)
    sink_->set_group_attribute("state", kClipAttribute, summary_.dp.next_clip);
  else if (state_clip_) sink_->set_group_attribute("state", kClipAttribute, *state_clip_);
}

// Weights w_k for the active deltas (aggregate.hpp), filling the summary's contributor list.
std::vector<double> Aggregator::weights(const std::vector<Delta*>& active) {
  // Contributor-mean divides by the count per element in the tensor-wise pass; on the streaming pass
  // (dense deltas) every delta contributes everywhere, so it is the mean.
  // Robust rules take x_k = g_k·Δ_k as their inputs (the weights scale the columns); QFedAvg's
  // weights come from prepare_round; DP divides by m and scales by c_k.
  const bool by_count = opt_.reduce == Reduction::ContributorMean && tensorwise_;
  const bool weighted = opt_.reduce == Reduction::WeightedMean;
  double denom = 0;
  for (const Delta* d : active) denom += weighted ? static_cast<double>(*d->samples) : 1.0;
  if (by_count || opt_.reduce == Reduction::Robust) denom = 1.0;
  if (summary_.dp.enabled) denom = static_cast<double>(summary_.dp.m);
  std::vector<double> w;
  summary_.contributors.clear();
  for (const Delta* d : active) {
    const double base = weighted ? static_cast<double>(*d->samples) : 1.0;
    w.push_back(opt_.reduce == Reduction::QFedAvg ? d->qffl_weight : base * d->gain * d->dp_factor / denom);
    Contributor c;
    c.path = d->path;
    c.worker = d->worker;
    c.samples = d->samples;
    c.round = d->round;
    c.staleness = d->staleness;
    c.weight = w.back();
    c.payload_bytes = d->payload_bytes;
    c.codec = d->codec;
    if (needs_norms_) c.norm = d->gain * std::sqrt(d->sq_norm);
    c.dp_factor = d->dp_factor;
    c.loss = d->loss;
    summary_.contributors.push_back(std::move(c));
  }
  return w;
}

// The reduction domain of tensor i: the tensor, or its chunk-padded DCT coefficients (plan_domains).
Shape Aggregator::domain_shape(std::size_t i) const {
  if (!coef_domain_[i]) return params_[i]->shape;
  return {coef_domain_[i]->size()};
}

// Reads delta d's tensor i into l.x in the reduction domain and, when want_mask and its codec selects,
// the selection mask into l.mask (else l.mask is left empty). Counts the bytes read. Values and mask
// are the codec's own (compress::EncodedReader::decode); an ef21/econtrol delta's values are the
// receiver's estimate g_i + decode(c_i).
void Aggregator::load(Delta& d, std::size_t i, bool want_mask, Loaded& l) {
  const io::TensorInfo& p = *params_[i];
  l.mask = Tensor();
  if (!d.compressed) {
    const io::TensorInfo& t = *d.tensors[i];
    l.x = d.src->read(t, DType::F32);
    const auto bytes = static_cast<std::uint64_t>(t.numel()) * dtype_size(t.dtype);
    summary_.delta_bytes_read += bytes;
    summary_.bytes_read += bytes;
    return;
  }
  const auto domain = coef_domain_[i] ? compress::Domain::Coefficients : compress::Domain::Tensor;
  compress::DecodedTensor t =
      d.reader->decode(p.name, domain, want_mask && d.selections[i] != compress::Selection::All);
  const auto bytes = static_cast<std::uint64_t>(t.payload_bytes);
  summary_.delta_bytes_read += bytes;
  summary_.bytes_read += bytes;
  l.x = std::move(t.values);
  l.mask = std::move(t.mask);
  if (d.estimate) summary_.bytes_read += d.estimate->add_base(p.name, l.x);
}

bool Aggregator::non_finite(Delta& d, const io::TensorInfo& p) {
  d.bad_tensor = p.name;
  log::info("non-finite values in {} (tensor {}); finding the non-finite deltas and restarting without them", d.path,
            p.name);
  return false;
}

// Streams each active delta once, recording in bad_tensor the first tensor with a NaN or Inf and,
// for a finite delta, in sq_norm its squared L2 norm over the whole update (float64).
void Aggregator::validation_pass(const std::vector<Delta*>& active) {
  std::vector<float> buf;
  std::vector<std::byte> raw;
  for (Delta* d : active) {
    d->sq_norm = 0;
    if (d->compressed) {
      Loaded l;
      for (std::size_t i = 0; i < params_.size() && d->bad_tensor.empty(); ++i) {
        load(*d, i, false, l);
        if (!all_finite(l.x.f32())) d->bad_tensor = params_[i]->name;
        else d->sq_norm += squared_norm(l.x.f32());
      }
      continue;
    }
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
        d->sq_norm += squared_norm(std::span<const float>(buf.data(), n));
      }
    }
  }
}

}  // namespace loco::aggregate::detail
