// Opening a round: the model and its state, the deltas (dense or compressed) with their checks,
// the order of reduction and the coefficient domains (aggregate.hpp).
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "loco/aggregate/detail/aggregator.hpp"
#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/io/loco_file.hpp"

namespace loco::aggregate::detail {
namespace {

std::string opt_int(const std::optional<std::int64_t>& v) { return v ? std::to_string(*v) : "none"; }

}  // namespace

Aggregator::Aggregator(const std::string& model_path, const std::vector<std::string>& delta_paths,
                       const std::string& output, const AggregateOptions& opt)
    : opt_(opt), output_(output), optimizer_(optim::make_optimizer(opt.outer)), slots_(optimizer_->slots()) {
  summary_.model = model_path;
  summary_.output = output;
  summary_.reduce = std::string(reduction_name(opt.reduce));
  if (opt.reduce == Reduction::Robust) summary_.reduce = robust::format_reducer_spec(opt.robust);
  if (opt.reduce == Reduction::QFedAvg) summary_.reduce = fmt::format("qfedavg:q={},lr={}", opt.qffl.q, opt.qffl.lr);
  summary_.clip = std::string(clip_name(opt.clip));
  summary_.outer = optim::format_spec(optimizer_->spec());
  staleness_ = opt.staleness.value_or(parse_staleness("polynomial"));
  summary_.staleness_rule = opt.allow_stale ? format_staleness(staleness_) : "none";
  if (opt.min_deltas < 1) throw_error(ErrorKind::Usage, "--min-deltas {} is not ≥ 1", opt.min_deltas);
  if (!std::isfinite(staleness_.a) || staleness_.a < 0 || !std::isfinite(staleness_.b) || staleness_.b < 0)
    throw_error(ErrorKind::Usage, "staleness parameters a = {}, b = {} are not finite numbers ≥ 0", staleness_.a,
                staleness_.b);
  check_rule_options(opt);
  needs_norms_ = opt.dp.clip > 0 || opt.reduce == Reduction::QFedAvg;
  center_out_ = opt.reduce == Reduction::Robust && robust::uses_center(opt.robust);
  if (delta_paths.empty()) throw_error(ErrorKind::Usage, "no delta files given");
  open_model(model_path);
  for (const auto& p : delta_paths) open_delta(p);
  order_deltas();
  tensorwise_ = opt.clip != Clip::None;
  for (const Delta& d : deltas_) {
    tensorwise_ = tensorwise_ || d.compressed;
    summary_.payload_bytes += d.payload_bytes;
    summary_.compressed_deltas += d.compressed ? 1 : 0;
  }
  plan_domains();
}

// Refuses option combinations the rules do not define.
void Aggregator::check_rule_options(const AggregateOptions& o) const {
  const bool meanlike =
      o.reduce == Reduction::Mean || o.reduce == Reduction::WeightedMean || o.reduce == Reduction::ContributorMean;
  if (o.clip != Clip::None && !meanlike)
    throw_error(ErrorKind::Usage,
                "--clip {} applies to mean, weighted-mean and contributor-mean, not to {} (use "
                "--reduce median-norm for clipping over whole updates)",
                clip_name(o.clip), summary_.reduce);
  if (o.dp.clip < 0 || !std::isfinite(o.dp.clip))
    throw_error(ErrorKind::Usage, "--dp-clip {} is not a finite number > 0", o.dp.clip);
  if (o.dp.clip > 0) {
    if (o.reduce != Reduction::Mean)
      throw_error(ErrorKind::Usage,
                  "differential privacy needs --reduce mean (σ = zC/m is calibrated to the "
                  "sensitivity C/m of the mean of clipped updates), not {}",
                  summary_.reduce);
    if (o.dp.noise_multiplier < 0 || !std::isfinite(o.dp.noise_multiplier))
      throw_error(ErrorKind::Usage, "--dp-noise {} is not a finite number ≥ 0", o.dp.noise_multiplier);
    if (o.dp.clients < 0) throw_error(ErrorKind::Usage, "--dp-clients {} is negative", o.dp.clients);
  } else if (o.dp.noise_multiplier > 0 || o.dp.adaptive) {
    throw_error(ErrorKind::Usage, "--dp-noise and --dp-adaptive need --dp-clip C (the clip norm, or the first one)");
  }
  if (o.reduce == Reduction::QFedAvg && (!(o.qffl.lr > 0) || !(o.qffl.q >= 0)))
    throw_error(ErrorKind::Usage, "qfedavg: q = {} must be ≥ 0 and lr = {} > 0", o.qffl.q, o.qffl.lr);
}

void Aggregator::open_model(const std::string& path) {
  model_ = io::open_source(path);
  io::expect_kind(*model_, {io::Kind::Model});
  params_ = model_->group("tensors");
  for (const io::TensorInfo* p : params_)
    if (p->dtype != DType::F32)
      throw_error(ErrorKind::BadInput,
                  "{}: tensor {} is {}, the outer step needs float32 parameters (loco-convert --dtype f32)", path,
                  p->name, dtype_name(p->dtype));
  for (const io::TensorInfo* p : params_) param_offsets_.push_back(io::contiguous_offset(*model_, *p));
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
    if (t.group == kCenterGroup) continue;
    if (t.group.rfind("state/", 0) == 0) found[t.group.substr(6)].push_back(&t);
  }
  open_center(path);
  state_clip_ = model_->group_attributes("state").get_double(kClipAttribute);
  if (state_clip_ && (!std::isfinite(*state_clip_) || *state_clip_ <= 0))
    throw_error(ErrorKind::BadInput, "{}: /state attribute {} = {} is not a finite number > 0", path, kClipAttribute,
                *state_clip_);
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
    std::vector<std::optional<std::uint64_t>> offsets(params_.size());
    for (std::size_t i = 0; i < per_param.size(); ++i)
      if (per_param[i]) offsets[i] = io::contiguous_offset(*model_, *per_param[i]);
    state_.push_back(std::move(per_param));
    state_offsets_.push_back(std::move(offsets));
  }
}

// Centered clipping's previous centre /state/robust_center/<name>: one float tensor per parameter of
// its shape, or none. Ignored (and not carried) by the other rules.
void Aggregator::open_center(const std::string& path) {
  center_.assign(params_.size(), nullptr);
  center_offsets_.assign(params_.size(), std::nullopt);
  bool any = false;
  for (const auto& t : model_->tensors()) any = any || t.group == kCenterGroup;
  if (!any) return;
  if (!center_out_) {
    log::info("{}: /{} is not used by {} and is not carried into the output", path, kCenterGroup, summary_.reduce);
    return;
  }
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const io::TensorInfo* c = model_->find(params_[i]->name, kCenterGroup);
    if (!c || c->shape != params_[i]->shape || !is_floating(c->dtype))
      throw_error(ErrorKind::BadInput, "{}: the centre /{}/{} is {}, expected a float tensor of shape {}", path,
                  kCenterGroup, params_[i]->name,
                  c ? fmt::format("{} {}", dtype_name(c->dtype), shape_string(c->shape)) : std::string("missing"),
                  shape_string(params_[i]->shape));
    center_[i] = c;
    center_offsets_[i] = io::contiguous_offset(*model_, *c);
  }
}

void Aggregator::open_delta(const std::string& path) {
  Delta d;
  d.path = path;
  d.src = io::open_source(path);
  d.compressed = io::file_kind(*d.src) == io::Kind::Compressed;
  if (d.compressed) {
    d.reader = std::make_unique<compress::EncodedReader>(*d.src);
    const std::string source_kind = d.reader->source_kind().empty() ? "unknown" : d.reader->source_kind();
    if (source_kind != "delta")
      throw_error(ErrorKind::BadInput, "{}: a compressed {} file, expected a compressed delta", path, source_kind);
    const compress::Feedback* fb = d.reader->feedback();
    d.ef21 = fb && fb->receiver_keeps_estimate();
    if (d.ef21 && opt_.ef21_state.empty())
      throw_error(ErrorKind::BadInput,
                  "{}: compressed with {} error feedback: it holds the increment of the worker's estimate h, which "
                  "only a receiver keeping h can turn into the worker's delta; give --ef21-state DIR (the "
                  "aggregator's estimates), or compress without feedback or with ef14, sparseloco or dgc",
                  path, fb->spec());
    d.codec = d.reader->codec();
  } else {
    io::expect_kind(*d.src, {io::Kind::Delta});
  }
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
    d.gain = staleness_gain(staleness_, d.staleness);
  }
  if (const auto* v = a.find("loss_first")) {
    if (const auto* x = std::get_if<double>(v)) d.loss = *x;
    else if (const auto* i = std::get_if<std::int64_t>(v)) d.loss = static_cast<double>(*i);
  }
  if (opt_.reduce == Reduction::QFedAvg && (!d.loss || !std::isfinite(*d.loss) || *d.loss <= 0))
    throw_error(ErrorKind::BadInput,
                "{}: qfedavg needs the worker's loss at the start of local training (attribute loss_first) as a "
                "finite number > 0, found {}",
                path, d.loss ? fmt::format("{}", *d.loss) : std::string("none"));
  if (opt_.reduce == Reduction::WeightedMean && (!d.samples || *d.samples <= 0))
    throw_error(ErrorKind::BadInput, "{}: weighted-mean needs a samples attribute > 0, found {}", path,
                opt_int(d.samples));
  if (d.compressed) {
    open_compressed_tensors(d);
    if (d.ef21) open_estimate(d);
    deltas_.push_back(std::move(d));
    return;
  }
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
    d.offsets.push_back(io::contiguous_offset(*d.src, *t));
    d.payload_bytes += t->numel() * static_cast<std::int64_t>(dtype_size(t->dtype));
    max_delta_dtype_ = std::max(max_delta_dtype_, dtype_size(t->dtype));
    any_converted_ = any_converted_ || t->dtype != DType::F32;
  }
  deltas_.push_back(std::move(d));
}

// The tensors of a compressed delta (compress::EncodedReader checked their attributes): one per model
// tensor, of its shape; what each selects. payload_bytes from the root attribute (the datasets' bytes
// when absent).
void Aggregator::open_compressed_tensors(Delta& d) {
  const std::string& path = d.path;
  const auto& names = d.reader->tensors();
  if (names.size() != params_.size())
    throw_error(ErrorKind::BadInput, "{}: {} compressed tensors, the model {} has {}", path, names.size(),
                summary_.model, params_.size());
  for (const io::TensorInfo* p : params_) {
    const compress::EncodedTensorInfo* t = d.reader->find(p->name);
    if (!t)
      throw_error(ErrorKind::BadInput, "{}: no compressed tensor {}, which the model {} has", path, p->name,
                  summary_.model);
    if (t->shape != p->shape)
      throw_error(ErrorKind::BadInput, "{}: tensor {} has shape {}, the model's is {}", path, p->name,
                  shape_string(t->shape), shape_string(p->shape));
    d.selections.push_back(d.ef21 ? compress::Selection::All : t->selection);  // ef21: the dense estimate g_i
    d.encoded.push_back(t);
    d.tensors.push_back(nullptr);
    d.offsets.emplace_back();
  }
  d.payload_bytes = d.reader->payload_bytes();
}

// The aggregator's estimate g_i of an ef21/econtrol delta (aggregate.hpp, --ef21-state;
// compress::ReceiverEstimate keeps it).
void Aggregator::open_estimate(Delta& d) {
  std::vector<std::pair<std::string, Shape>> tensors;
  for (const io::TensorInfo* p : params_) tensors.emplace_back(p->name, p->shape);
  d.estimate = std::make_unique<compress::ReceiverEstimate>(opt_.ef21_state, d.path, d.worker, d.round,
                                                            d.reader->feedback()->spec(), std::move(tensors));
}

// Under contributor-mean a tensor whose deltas keep coefficients (dct_topk) is reduced over them:
// every delta of it must then keep coefficients of one domain (compress::CoefficientDomain: chunk and
// tiling), whatever each keeps.
void Aggregator::plan_domains() {
  coef_domain_.assign(params_.size(), std::nullopt);
  if (opt_.reduce != Reduction::ContributorMean) return;
  const auto in_coefficients = [](const Delta& d, std::size_t i) {
    return d.compressed && d.selections[i] == compress::Selection::Coefficients;
  };
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Delta* dct = nullptr;
    for (const Delta& d : deltas_)
      if (in_coefficients(d, i)) dct = &d;
    if (!dct) continue;
    const compress::CoefficientDomain& want = *dct->encoded[i]->domain;
    for (const Delta& d : deltas_)
      if (!in_coefficients(d, i) || !(*d.encoded[i]->domain == want))
        throw_error(ErrorKind::BadInput,
                    "{} and {}: tensor {}: contributor-mean over DCT coefficients needs every delta of the tensor "
                    "compressed by dct_topk with one chunk size and tiling ({} has {}, {} has {})",
                    dct->path, d.path, params_[i]->name, dct->path, want.transform(), d.path,
                    d.compressed ? d.encoded[i]->spec : std::string("a dense tensor"));
    coef_domain_[i] = want;
  }
}

void Aggregator::order_deltas() {
  auto key = [](const Delta& d) {
    return std::make_pair(d.worker.value_or(std::numeric_limits<std::int64_t>::max()), d.path);
  };
  std::stable_sort(deltas_.begin(), deltas_.end(), [&](const Delta& a, const Delta& b) { return key(a) < key(b); });
  for (std::size_t i = 1; i < deltas_.size(); ++i) {
    const Delta& a = deltas_[i - 1];
    const Delta& b = deltas_[i];
    if (a.path == b.path) throw_error(ErrorKind::Usage, "{}: delta listed twice", a.path);
    if (!opt_.allow_same_worker && a.worker && b.worker && *a.worker == *b.worker && a.base == b.base)
      throw_error(ErrorKind::BadInput, "{} and {}: two deltas from worker {} on the same global model", a.path, b.path,
                  *a.worker);
  }
}

}  // namespace loco::aggregate::detail
