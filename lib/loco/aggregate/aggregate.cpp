// Streaming reduction of delta files (dense or compressed) and the outer optimizer step (see
// aggregate.hpp for the rules).
#include "loco/aggregate/aggregate.hpp"
#include "loco/core/detail/eigen.hpp"  // pins Eigen's product blocking

#include <Eigen/Core>
#include <nlohmann/json.hpp>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "loco/compress/codec.hpp"
#include "loco/compress/encoded_file.hpp"
#include "loco/compress/feedback.hpp"
#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::aggregate {

std::string_view reduction_name(Reduction r) noexcept {
  switch (r) {
    case Reduction::Mean: return "mean";
    case Reduction::WeightedMean: return "weighted-mean";
    case Reduction::ContributorMean: return "contributor-mean";
    case Reduction::Robust: return "robust";
    case Reduction::QFedAvg: return "qfedavg";
  }
  return "mean";
}

Reduction parse_reduction(std::string_view text) {
  if (text == "mean") return Reduction::Mean;
  if (text == "weighted-mean") return Reduction::WeightedMean;
  if (text == "contributor-mean") return Reduction::ContributorMean;
  throw_error(ErrorKind::Usage, "reduction '{}' is not one of mean, weighted-mean, contributor-mean", text);
}

std::string_view clip_name(Clip c) noexcept { return c == Clip::None ? "none" : "median-norm"; }

Clip parse_clip(std::string_view text) {
  if (text == "none") return Clip::None;
  if (text == "median-norm") return Clip::MedianNorm;
  throw_error(ErrorKind::Usage, "clip '{}' is not one of none, median-norm", text);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

double staleness_weight(std::int64_t staleness, double exponent) {
  if (staleness < 0) throw_error(ErrorKind::Internal, "negative staleness {}", staleness);
  return std::pow(1.0 + static_cast<double>(staleness), -exponent);
}

namespace {

// "name:k=v,k=v" → name and its pairs; throws Error(Usage) naming `what` for a malformed pair.
std::pair<std::string, std::vector<std::pair<std::string, std::string>>> split_spec(std::string_view text,
                                                                                     std::string_view what) {
  const auto colon = text.find(':');
  std::pair<std::string, std::vector<std::pair<std::string, std::string>>> out{std::string(text.substr(0, colon)), {}};
  if (colon == std::string_view::npos) return out;
  std::string_view rest = text.substr(colon + 1);
  for (;;) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == item.size())
      throw_error(ErrorKind::Usage, "{} '{}': '{}' is not key=value", what, text, item);
    out.second.emplace_back(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return out;
}

// A finite number ≥ lo (> lo when strict) from a key=value pair.
double spec_number(std::string_view what, const std::string& key, const std::string& value, double lo, bool strict) {
  double x = 0;
  std::size_t used = 0;
  try {
    x = std::stod(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || !std::isfinite(x) || x < lo || (strict && x == lo))
    throw_error(ErrorKind::Usage, "{}: {}={} is not a finite number {} {}", what, key, value, strict ? ">" : "≥", lo);
  return x;
}

}  // namespace

Staleness parse_staleness(std::string_view text) {
  auto [name, kv] = split_spec(text, "staleness rule");
  Staleness st;
  std::vector<std::string> keys;
  if (name == "constant") st.rule = StalenessRule::Constant;
  else if (name == "polynomial") st.rule = StalenessRule::Polynomial, st.a = 0.5, keys = {"a"};
  else if (name == "hinge") st.rule = StalenessRule::Hinge, st.a = 10, st.b = 4, keys = {"a", "b"};
  else if (name == "fedfix") st.rule = StalenessRule::FedFix;
  else
    throw_error(ErrorKind::Usage, "staleness rule '{}' is not one of constant, polynomial[:a=A], hinge[:a=A,b=B], fedfix",
                text);
  for (const auto& [k, v] : kv) {
    if (std::find(keys.begin(), keys.end(), k) == keys.end())
      throw_error(ErrorKind::Usage, "staleness rule '{}': unknown parameter '{}'", text, k);
    (k == "a" ? st.a : st.b) = spec_number("staleness rule", k, v, 0, false);
  }
  return st;
}

std::string format_staleness(const Staleness& s) {
  switch (s.rule) {
    case StalenessRule::Constant: return "constant";
    case StalenessRule::Polynomial: return fmt::format("polynomial:a={}", s.a);
    case StalenessRule::Hinge: return fmt::format("hinge:a={},b={}", s.a, s.b);
    case StalenessRule::FedFix: return "fedfix";
  }
  return "constant";
}

double staleness_gain(const Staleness& r, std::int64_t s) {
  if (s < 0) throw_error(ErrorKind::Internal, "negative staleness {}", s);
  const double sd = static_cast<double>(s);
  switch (r.rule) {
    case StalenessRule::Constant: return 1.0;
    case StalenessRule::Polynomial: return std::pow(1.0 + sd, -r.a);
    case StalenessRule::Hinge: return sd <= r.b ? 1.0 : 1.0 / (r.a * (sd - r.b) + 1.0);
    case StalenessRule::FedFix: return 1.0 + sd;
  }
  return 1.0;
}

robust::AdaptiveClipOptions parse_adaptive_clip(std::string_view text) {
  robust::AdaptiveClipOptions o;
  if (text.empty()) return o;
  auto [first, kv] = split_spec(fmt::format("adaptive:{}", text), "--dp-adaptive");
  for (const auto& [k, v] : kv) {
    if (k == "quantile") {
      o.quantile = spec_number("--dp-adaptive", k, v, 0, false);
      if (o.quantile > 1) throw_error(ErrorKind::Usage, "--dp-adaptive: quantile={} is not in [0, 1]", v);
    } else if (k == "lr") {
      o.learning_rate = spec_number("--dp-adaptive", k, v, 0, false);
    } else if (k == "count-stddev") {
      o.count_stddev = spec_number("--dp-adaptive", k, v, 0, false);
    } else {
      throw_error(ErrorKind::Usage, "--dp-adaptive: unknown key '{}' (quantile, lr, count-stddev)", k);
    }
  }
  return o;
}

std::vector<std::string> reduce_names() {
  std::vector<std::string> names = {"mean", "weighted-mean", "contributor-mean", "qfedavg"};
  for (auto& n : robust::reducer_names())
    if (n != "mean") names.push_back(std::move(n));
  return names;
}

void parse_reduce(std::string_view text, AggregateOptions& o) {
  if (text == "mean" || text == "weighted-mean" || text == "contributor-mean") {
    o.reduce = parse_reduction(text);
    return;
  }
  if (text == "qfedavg" || text.rfind("qfedavg:", 0) == 0) {
    o.reduce = Reduction::QFedAvg;
    o.qffl = QfflOptions{};
    for (const auto& [k, v] : split_spec(text, "reduction").second) {
      if (k == "q") o.qffl.q = spec_number("qfedavg", k, v, 0, false);
      else if (k == "lr") o.qffl.lr = spec_number("qfedavg", k, v, 0, true);
      else throw_error(ErrorKind::Usage, "qfedavg: unknown parameter '{}' (q, lr)", k);
    }
    return;
  }
  o.reduce = Reduction::Robust;
  o.robust = robust::parse_reducer_spec(text);
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr std::uint32_t kExpMask = 0x7f800000u;
constexpr std::string_view kCenterGroup = "state/robust_center";  // centered clipping's centre
constexpr std::string_view kClipAttribute = "dp_clip";             // /state: adaptive clipping's C

struct Delta {
  std::string path;
  bool compressed = false;
  std::int64_t payload_bytes = 0;
  std::string codec = "dense";
  // Per model tensor, compressed deltas only: what it selects (contributor-mean; All for ef21/econtrol,
  // whose delta is the dense estimate) and its coefficient domain, if any.
  std::vector<compress::Selection> selections;
  std::vector<const compress::EncodedTensorInfo*> encoded;
  std::int64_t clipped_tensors = 0;
  std::unique_ptr<io::TensorSource> src;
  std::unique_ptr<compress::EncodedReader> reader;  // compressed deltas (reads src)
  std::optional<std::int64_t> worker, samples, round;
  std::string base;
  std::int64_t staleness = 0;
  double gain = 1;  // staleness weight g_k
  std::vector<const io::TensorInfo*> tensors;  // the delta's tensor for each model tensor
  std::vector<std::optional<std::uint64_t>> offsets;  // io::contiguous_offset of each, when raw-readable
  std::string bad_tensor;  // set when a non-finite value was found
  std::optional<double> loss;  // loss_first
  double sq_norm = -1;     // ‖Δ_k‖² over the whole update (validation_pass), −1 before
  double dp_factor = 1;    // c_k of differential privacy
  double qffl_weight = 0;  // QFedAvg's w_k
  // ef21/econtrol feedback (with ef21_state): the receiver's estimate g_i of the worker.
  bool ef21 = false;
  std::unique_ptr<compress::ReceiverEstimate> estimate;
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

// Deltas summed per pass over a piece's accumulator, and elements per piece of a block: kGroup
// pieces of float32 input plus the float64 accumulator (384 KiB) stay in a core's L2 cache
// between the read that fills them and the sum that uses them.
constexpr std::size_t kGroup = 4;
constexpr std::size_t kPieceElements = std::size_t{1} << 14;

// acc = Σ_k w_k·x_k (first) or acc += Σ_k w_k·x_k over G inputs, in float64, adding one term at a
// time in k order: the same roundings as one delta per pass, with one pass over acc per G deltas.
template <std::size_t G>
void accumulate_n(const float* const* xs, const double* w, double* __restrict acc, std::size_t n, bool first) {
  std::array<const float*, G> x;
  std::array<double, G> wk;
  for (std::size_t k = 0; k < G; ++k) x[k] = xs[k], wk[k] = w[k];
  if (first) {
    for (std::size_t j = 0; j < n; ++j) {
      double a = wk[0] * static_cast<double>(x[0][j]);
      for (std::size_t k = 1; k < G; ++k) a += wk[k] * static_cast<double>(x[k][j]);
      acc[j] = a;
    }
  } else {
    for (std::size_t j = 0; j < n; ++j) {
      double a = acc[j];
      for (std::size_t k = 0; k < G; ++k) a += wk[k] * static_cast<double>(x[k][j]);
      acc[j] = a;
    }
  }
}

void accumulate(std::size_t g, const float* const* x, const double* w, double* acc, std::size_t n, bool first) {
  static_assert(kGroup == 4);
  switch (g) {
    case 1: return accumulate_n<1>(x, w, acc, n, first);
    case 2: return accumulate_n<2>(x, w, acc, n, first);
    case 3: return accumulate_n<3>(x, w, acc, n, first);
    default: return accumulate_n<4>(x, w, acc, n, first);
  }
}

// dbar = float32(acc); false when a value is NaN or Inf (counted with an integer compare on the
// exponent field, which vectorizes).
bool round_to_float(const double* acc, float* dbar, std::size_t n) {
  std::uint32_t nonfinite = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const float f = static_cast<float>(acc[j]);
    dbar[j] = f;
    std::uint32_t b;
    std::memcpy(&b, &f, 4);
    nonfinite += (b & kExpMask) == kExpMask ? 1u : 0u;
  }
  return nonfinite == 0;
}

std::string opt_int(const std::optional<std::int64_t>& v) { return v ? std::to_string(*v) : "none"; }

// One delta's tensor as the reduction sees it: values x in the reduction domain (the tensor, or the
// chunk-padded DCT coefficients) and, for selecting codecs under contributor-mean, the selection mask
// (1 where selected, 0 elsewhere; empty: every element).
struct Loaded {
  Tensor x, mask;
};

bool all_finite(std::span<const float> x) { return max_exponent(x.data(), x.size()) != kExpMask; }

double squared_norm(std::span<const float> x) {
  double s = 0;
  for (float v : x) s += static_cast<double>(v) * static_cast<double>(v);
  return s;
}

class Aggregator {
 public:
  Aggregator(const std::string& model_path, const std::vector<std::string>& delta_paths, const std::string& output,
             const AggregateOptions& opt)
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

  AggregateSummary run(Clock::time_point t0) {
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
        throw_error(ErrorKind::Numeric, "the reduced delta is not finite although every delta is (weights too "
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

 private:
  // Drops the active deltas with bad_tensor set, naming them; true when one was dropped.
  bool drop_bad(std::vector<Delta*>& active) {
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

  // Refuses option combinations the rules do not define.
  void check_rule_options(const AggregateOptions& o) const {
    const bool meanlike = o.reduce == Reduction::Mean || o.reduce == Reduction::WeightedMean ||
                          o.reduce == Reduction::ContributorMean;
    if (o.clip != Clip::None && !meanlike)
      throw_error(ErrorKind::Usage, "--clip {} applies to mean, weighted-mean and contributor-mean, not to {} (use "
                                    "--reduce median-norm for clipping over whole updates)",
                  clip_name(o.clip), summary_.reduce);
    if (o.dp.clip < 0 || !std::isfinite(o.dp.clip))
      throw_error(ErrorKind::Usage, "--dp-clip {} is not a finite number > 0", o.dp.clip);
    if (o.dp.clip > 0) {
      if (o.reduce != Reduction::Mean)
        throw_error(ErrorKind::Usage, "differential privacy needs --reduce mean (σ = zC/m is calibrated to the "
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

  // Per-round factors that need the deltas' norms: DP clip factors, the adaptive clip norm and the
  // noise σ, QFedAvg's weights (aggregate.hpp). Norms are of x_k = g_k·Δ_k.
  void prepare_round(const std::vector<Delta*>& active) {
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
        if (dp.noise_multiplier > 0) dp.effective_noise_multiplier = robust::adaptive_noise_multiplier(dp.noise_multiplier, sb);
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

  void open_model(const std::string& path) {
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
  void open_center(const std::string& path) {
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

  void open_delta(const std::string& path) {
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
  void open_compressed_tensors(Delta& d) {
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
  void open_estimate(Delta& d) {
    std::vector<std::pair<std::string, Shape>> tensors;
    for (const io::TensorInfo* p : params_) tensors.emplace_back(p->name, p->shape);
    d.estimate = std::make_unique<compress::ReceiverEstimate>(opt_.ef21_state, d.path, d.worker, d.round,
                                                              d.reader->feedback()->spec(), std::move(tensors));
  }

  // Writes g_i = g_i(before) + decode(c_i) of every active ef21/econtrol delta, each atomically, after
  // the model is committed (compress::ReceiverEstimate::commit also drops the worker's older estimates).
  void write_estimates(const std::vector<Delta*>& active) {
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

  // Under contributor-mean a tensor whose deltas keep coefficients (dct_topk) is reduced over them:
  // every delta of it must then keep coefficients of one domain (compress::CoefficientDomain: chunk and
  // tiling), whatever each keeps.
  void plan_domains() {
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

  void order_deltas() {
    auto key = [](const Delta& d) {
      return std::make_pair(d.worker.value_or(std::numeric_limits<std::int64_t>::max()), d.path);
    };
    std::stable_sort(deltas_.begin(), deltas_.end(), [&](const Delta& a, const Delta& b) { return key(a) < key(b); });
    for (std::size_t i = 1; i < deltas_.size(); ++i) {
      const Delta& a = deltas_[i - 1];
      const Delta& b = deltas_[i];
      if (a.path == b.path) throw_error(ErrorKind::Usage, "{}: delta listed twice", a.path);
      if (!opt_.allow_same_worker && a.worker && b.worker && *a.worker == *b.worker && a.base == b.base)
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
    if (summary_.dp.enabled && summary_.dp.adaptive) sink_->set_group_attribute("state", kClipAttribute, summary_.dp.next_clip);
    else if (state_clip_) sink_->set_group_attribute("state", kClipAttribute, *state_clip_);
  }

  // Weights w_k for the active deltas (aggregate.hpp), filling the summary's contributor list.
  std::vector<double> weights(const std::vector<Delta*>& active) {
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

  // Where a tensor of one file is read from during the pass: raw reads of its stored bytes
  // (pread, from any thread) when it is contiguous, else read_rows under hdf5_mutex_.
  struct Feed {
    const io::TensorSource* src = nullptr;
    const io::TensorInfo* t = nullptr;
    std::optional<std::uint64_t> offset;
  };

  // Per-thread buffers of the pass, sized for the largest piece and block; allocated once per pass.
  struct Scratch {
    std::array<std::vector<float>, kGroup> x;
    std::vector<std::byte> raw;  // stored bytes of a non-float32 delta before conversion
    std::vector<double> acc;
    std::vector<float> dbar, old;
    std::vector<float> theta;               // the thread's output block: new θ
    std::vector<std::vector<float>> slots;  // and new state
  };

  // Fills dst with elements [e0, e0 + n) of the feed's tensor as float32. In row mode (no offset)
  // e0 and n are whole rows.
  void fetch(const Feed& f, std::size_t e0, std::size_t n, float* dst, Scratch& s) const {
    const DType dt = f.t->dtype;
    const std::size_t es = dtype_size(dt);
    std::byte* target = dt == DType::F32 ? reinterpret_cast<std::byte*>(dst) : s.raw.data();
    const std::span<std::byte> bytes(target, n * es);
    if (f.offset) {
      io::read_raw(*f.src, *f.offset + e0 * es, bytes);
    } else {
      const auto row_el = static_cast<std::size_t>(f.t->row_elements());
      std::lock_guard lock(hdf5_mutex_);
      f.src->read_rows(*f.t, static_cast<std::int64_t>(e0 / row_el), static_cast<std::int64_t>(n / row_el), bytes);
    }
    if (dt != DType::F32) convert_elements(dt, target, DType::F32, reinterpret_cast<std::byte*>(dst), n);
  }

  // One reduction and outer step over every tensor, writing into a fresh sink. Returns false as
  // soon as a block of Δ̄ holds a NaN or Inf (some delta does: the weights are finite and > 0).
  //
  // The row blocks of a tensor are processed in parallel, each by one thread, in pieces: a piece
  // reads its elements of every delta (kGroup deltas at a time, so the buffers stay in the core's
  // cache), sums them into its float64 accumulator in delta order, reads θ and the state and
  // applies the optimizer into the thread's output block, which the thread then writes (one HDF5
  // call at a time) while the other threads go on computing. No barrier between blocks, so a
  // thread held up by the machine's other work does not stall the rest. Every element sees the
  // same operations in the same order whatever the block, piece and thread counts, so the result
  // is bit-identical for all of them; the norms are summed per block in block order.
  bool reduce_pass(const std::vector<Delta*>& active) {
    const std::vector<double> w = weights(active);
    make_sink(active);
    const std::size_t n_deltas = active.size();
    std::size_t block_max = 0, piece_max = 0;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const io::TensorInfo& p = *params_[i];
      block_max = std::max(block_max, static_cast<std::size_t>(std::min(rows_per_block(p, opt_.block_bytes), p.rows()) *
                                                               p.row_elements()));
      piece_max = std::max(piece_max, piece_elements(i, active));
    }
    piece_max = std::min(piece_max, block_max);
    std::vector<Scratch> scratch(static_cast<std::size_t>(tbb::this_task_arena::max_concurrency()));
    for (Scratch& sc : scratch) {
      for (std::size_t k = 0; k < std::min(kGroup, n_deltas); ++k) sc.x[k].resize(piece_max);
      if (any_converted_) sc.raw.resize(piece_max * max_delta_dtype_);
      sc.acc.resize(piece_max);
      sc.dbar.resize(piece_max);
      sc.old.resize(piece_max);
      sc.theta.resize(block_max);
      sc.slots.assign(slots_.size(), std::vector<float>(block_max));
    }
    std::vector<double> sq_update, sq_step;
    double update_sq = 0, step_sq = 0;
    const std::int64_t t = step_ + 1;
    const double lr = optimizer_->lr();
    std::atomic<bool> bad{false};
    std::vector<Feed> feeds(n_deltas);
    Feed param_feed;
    std::vector<Feed> state_feeds(slots_.size());

    for (std::size_t i = 0; i < params_.size(); ++i) {
      const io::TensorInfo& p = *params_[i];
      for (std::size_t k = 0; k < n_deltas; ++k) feeds[k] = {active[k]->src.get(), active[k]->tensors[i], active[k]->offsets[i]};
      param_feed = {model_.get(), &p, param_offsets_[i]};
      for (std::size_t sl = 0; sl < slots_.size(); ++sl)
        state_feeds[sl] = state_[sl].empty() || !state_[sl][i] ? Feed{}
                                                              : Feed{model_.get(), state_[sl][i], state_offsets_[sl][i]};
      const auto row_el = static_cast<std::size_t>(p.row_elements());
      const std::int64_t step_rows = rows_per_block(p, opt_.block_bytes);
      const std::size_t piece = piece_elements(i, active);
      const auto blocks = static_cast<std::size_t>((p.rows() + step_rows - 1) / step_rows);
      sq_update.assign(blocks, 0.0);
      sq_step.assign(blocks, 0.0);
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, blocks, 1), [&](const tbb::blocked_range<std::size_t>& r) {
        Scratch& sc = scratch[static_cast<std::size_t>(tbb::this_task_arena::current_thread_index())];
        std::array<std::span<float>, 4> spans;
        for (std::size_t b = r.begin(); b != r.end() && !bad.load(std::memory_order_relaxed); ++b) {
          const std::int64_t r0 = static_cast<std::int64_t>(b) * step_rows;
          const std::int64_t nrows = std::min(step_rows, p.rows() - r0);
          const std::size_t n = static_cast<std::size_t>(nrows) * row_el, block_e0 = static_cast<std::size_t>(r0) * row_el;
          double sq_u = 0, sq_s = 0;
          for (std::size_t lo = 0; lo < n; lo += piece) {
            const std::size_t len = std::min(piece, n - lo), e0 = block_e0 + lo;
            for (std::size_t k0 = 0; k0 < n_deltas; k0 += kGroup) {
              const std::size_t g = std::min(kGroup, n_deltas - k0);
              std::array<const float*, kGroup> x{};
              for (std::size_t k = 0; k < g; ++k) {
                fetch(feeds[k0 + k], e0, len, sc.x[k].data(), sc);
                x[k] = sc.x[k].data();
              }
              accumulate(g, x.data(), w.data() + k0, sc.acc.data(), len, k0 == 0);
            }
            if (!round_to_float(sc.acc.data(), sc.dbar.data(), len)) {
              bad = true;
              return;
            }
            if (sigma_ > 0) robust::add_dp_noise(std::span(sc.dbar.data(), len), sigma_, opt_.dp.seed, round_, i, e0);
            float* th = sc.theta.data() + lo;
            fetch(param_feed, e0, len, th, sc);
            for (std::size_t sl = 0; sl < slots_.size(); ++sl) {
              if (state_feeds[sl].t) fetch(state_feeds[sl], e0, len, sc.slots[sl].data() + lo, sc);
              else std::fill_n(sc.slots[sl].data() + lo, len, 0.0f);
              spans[sl] = std::span(sc.slots[sl].data() + lo, len);
            }
            std::memcpy(sc.old.data(), th, len * 4);
            optimizer_->apply(std::span(th, len), std::span<const float>(sc.dbar.data(), len),
                              std::span<const std::span<float>>(spans.data(), slots_.size()), t, lr);
            using V = Eigen::Map<const Eigen::VectorXf>;
            const auto el = static_cast<Eigen::Index>(len);
            sq_u += V(sc.dbar.data(), el).cast<double>().squaredNorm();
            sq_s += (V(th, el).cast<double>() - V(sc.old.data(), el).cast<double>()).squaredNorm();
          }
          sq_update[b] = sq_u;
          sq_step[b] = sq_s;
          write_block(i, r0, nrows, sc.theta.data(), sc.slots, n);
        }
      });
      if (bad) {
        log::info("non-finite values in Δ̄ of tensor {}; finding the non-finite deltas and restarting without them",
                  p.name);
        summary_.bytes_read += summary_.delta_bytes_read;
        summary_.delta_bytes_read = 0;
        return false;
      }
      std::uint64_t delta_bytes = 0, model_bytes = 4;
      for (const Feed& f : feeds) delta_bytes += dtype_size(f.t->dtype);
      for (const Feed& f : state_feeds) model_bytes += f.t ? 4 : 0;
      summary_.delta_bytes_read += static_cast<std::uint64_t>(p.numel()) * delta_bytes;
      summary_.bytes_read += static_cast<std::uint64_t>(p.numel()) * model_bytes;
      for (double v : sq_update) update_sq += v;
      for (double v : sq_step) step_sq += v;
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

  // Elements per piece of tensor i: kPieceElements when every file of the pass reads it raw,
  // else whole rows (read_rows reads rows), at least one.
  std::size_t piece_elements(std::size_t i, const std::vector<Delta*>& active) const {
    bool raw = param_offsets_[i].has_value();
    for (const Delta* d : active) raw = raw && d->offsets[i].has_value();
    for (std::size_t sl = 0; sl < slots_.size(); ++sl)
      if (!state_[sl].empty() && state_[sl][i]) raw = raw && state_offsets_[sl][i].has_value();
    const io::TensorInfo& p = *params_[i];
    if (raw) return kPieceElements;
    return static_cast<std::size_t>(rows_per_block(p, kPieceElements * 4) * std::max<std::int64_t>(p.row_elements(), 1));
  }

  void write_block(std::size_t i, std::int64_t r0, std::int64_t nrows, const float* theta,
                   const std::vector<std::vector<float>>& slot_buf, std::size_t n) {
    std::lock_guard lock(hdf5_mutex_);
    sink_->write_rows(i, r0, nrows, std::as_bytes(std::span(theta, n)));
    for (std::size_t s = 0; s < slots_.size(); ++s)
      sink_->write_rows((s + 1) * params_.size() + i, r0, nrows, std::as_bytes(std::span(slot_buf[s].data(), n)));
  }

  // The reduction domain of tensor i: the tensor, or its chunk-padded DCT coefficients (plan_domains).
  Shape domain_shape(std::size_t i) const {
    if (!coef_domain_[i]) return params_[i]->shape;
    return {coef_domain_[i]->size()};
  }

  // Reads delta d's tensor i into l.x in the reduction domain and, when want_mask and its codec selects,
  // the selection mask into l.mask (else l.mask is left empty). Counts the bytes read. Values and mask
  // are the codec's own (compress::EncodedReader::decode); an ef21/econtrol delta's values are the
  // receiver's estimate g_i + decode(c_i).
  void load(Delta& d, std::size_t i, bool want_mask, Loaded& l) {
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

  // The reduction and outer step tensor by tensor (aggregate.hpp: compressed deltas, contributor-mean,
  // median-norm clipping). Per tensor: the clip factors from one read of every delta, the float64 sum
  // Σ (w_k·c_k)·x_k (and the contributor counts) from a second, in delta order; Δ̄ rounded to float32
  // (and transformed back from DCT coefficients); then the optimizer block by block. Returns false as
  // soon as a delta holds a NaN or Inf, with its bad_tensor set.
  bool tensor_pass(const std::vector<Delta*>& active) {
    const std::vector<double> w = weights(active);
    make_sink(active);
    for (Delta* d : active) d->clipped_tensors = 0;
    const std::size_t n_deltas = active.size();
    const bool by_count = opt_.reduce == Reduction::ContributorMean;
    Loaded l;
    std::vector<double> acc, factor(n_deltas, 1.0), norms(n_deltas, 0.0);
    std::vector<float> count;
    Scratch sc;
    sc.slots.assign(slots_.size(), {});
    double update_sq = 0, step_sq = 0;
    const std::int64_t t = step_ + 1;
    const double lr = optimizer_->lr();

    for (std::size_t i = 0; i < params_.size(); ++i) {
      const io::TensorInfo& p = *params_[i];
      const auto D = static_cast<std::size_t>(shape_numel(domain_shape(i)));
      if (opt_.clip == Clip::MedianNorm) {
        for (std::size_t k = 0; k < n_deltas; ++k) {
          load(*active[k], i, false, l);
          if (!all_finite(l.x.f32())) return non_finite(*active[k], p);
          norms[k] = std::sqrt(squared_norm(l.x.f32()));
        }
        const double m = median(norms);
        for (std::size_t k = 0; k < n_deltas; ++k) {
          factor[k] = norms[k] > m ? m / norms[k] : 1.0;
          active[k]->clipped_tensors += norms[k] > m ? 1 : 0;
        }
      }
      acc.assign(D, 0.0);
      if (by_count) count.assign(D, 0.0f);
      for (std::size_t k = 0; k < n_deltas; ++k) {
        load(*active[k], i, by_count, l);
        const auto x = l.x.f32();
        if (!all_finite(x)) return non_finite(*active[k], p);
        const double f = w[k] * factor[k];
        const float* mask = l.mask.numel() > 0 ? l.mask.f32().data() : nullptr;
        tbb::parallel_for(tbb::blocked_range<std::size_t>(0, D, kPieceElements), [&](const auto& r) {
          for (std::size_t j = r.begin(); j != r.end(); ++j) acc[j] += f * static_cast<double>(x[j]);
          if (by_count) {
            if (mask)
              for (std::size_t j = r.begin(); j != r.end(); ++j) count[j] += mask[j];
            else
              for (std::size_t j = r.begin(); j != r.end(); ++j) count[j] += 1.0f;
          }
        });
      }
      Tensor dbar = Tensor::uninitialized({static_cast<std::int64_t>(D)});
      const auto db = dbar.f32();
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, D, kPieceElements), [&](const auto& r) {
        for (std::size_t j = r.begin(); j != r.end(); ++j)
          db[j] = !by_count ? static_cast<float>(acc[j])
                            : count[j] > 0.0f ? static_cast<float>(acc[j] / static_cast<double>(count[j])) : 0.0f;
      });
      if (coef_domain_[i]) dbar = coef_domain_[i]->inverse(std::move(dbar));
      if (sigma_ > 0) robust::add_dp_noise(dbar.f32(), sigma_, opt_.dp.seed, round_, i, 0);
      if (!all_finite(dbar.f32()))
        throw_error(ErrorKind::Numeric, "tensor {}: the reduced delta is not finite; nothing written", p.name);
      outer_step(i, dbar.f32(), sc, t, lr, update_sq, step_sq);
    }
    for (std::size_t k = 0; k < n_deltas; ++k) summary_.contributors[k].clipped_tensors = active[k]->clipped_tensors;
    summary_.update_norm = std::sqrt(update_sq);
    summary_.step_norm = std::sqrt(step_sq);
    if (!std::isfinite(step_sq))
      throw_error(ErrorKind::Numeric, "the new parameters are not finite (‖Δ̄‖ = {}); nothing written",
                  summary_.update_norm);
    summary_.round = round_ + 1;
    summary_.outer_step = step_ + 1;
    return true;
  }

  // A robust rule (aggregate.hpp): the Gram pass when the rule needs one, then block by block the rule
  // and the outer step. Columns are x_k = w_k·Δ_k (w_k the staleness weight) in reduction order, then
  // centered clipping's previous centre. Dense deltas are read a block at a time; a compressed delta's
  // tensor is decoded once per pass and served from memory. Returns false as soon as a delta holds a
  // NaN or Inf, with its bad_tensor set.
  bool robust_pass(const std::vector<Delta*>& active) {
    const std::vector<double> w = weights(active);
    const std::size_t n = active.size();
    robust::Reducer red(opt_.robust, n, robust::ReduceContext{opt_.seed, round_});
    const std::size_t cols = red.columns();
    std::size_t block_max = 1;
    for (const io::TensorInfo* p : params_)
      block_max = std::max(block_max, static_cast<std::size_t>(std::min(rows_per_block(*p, opt_.block_bytes), p->rows()) *
                                                               p->row_elements()));
    std::vector<std::vector<float>> buf(cols, std::vector<float>(block_max));
    std::vector<Loaded> decoded(n);
    std::vector<const float*> ptr(cols);
    Scratch sc;
    if (any_converted_ || !center_.empty()) sc.raw.resize(block_max * 8);
    sc.theta.resize(block_max);
    sc.old.resize(block_max);
    sc.slots.assign(slots_.size(), std::vector<float>(block_max));
    std::vector<float> dbar(block_max);

    // Tensor i of every compressed delta, decoded and scaled by its weight.
    auto load_tensor = [&](std::size_t i) {
      for (std::size_t k = 0; k < n; ++k) {
        if (!active[k]->compressed) continue;
        load(*active[k], i, false, decoded[k]);
        const auto x = decoded[k].x.f32();
        if (!all_finite(x)) return non_finite(*active[k], *params_[i]);
        if (w[k] != 1.0)
          for (float& v : x) v = static_cast<float>(w[k] * static_cast<double>(v));
      }
      return true;
    };
    // The columns of elements [e0, e0 + len) (whole rows) of tensor i.
    auto fill = [&](std::size_t i, std::size_t e0, std::size_t len) {
      for (std::size_t k = 0; k < n; ++k) {
        Delta& d = *active[k];
        if (d.compressed) {
          ptr[k] = decoded[k].x.f32().data() + e0;
          continue;
        }
        float* dst = buf[k].data();
        fetch(Feed{d.src.get(), d.tensors[i], d.offsets[i]}, e0, len, dst, sc);
        const auto bytes = len * dtype_size(d.tensors[i]->dtype);
        summary_.delta_bytes_read += bytes;
        summary_.bytes_read += bytes;
        if (max_exponent(dst, len) == kExpMask) return non_finite(d, *params_[i]);
        if (w[k] != 1.0)
          for (std::size_t j = 0; j < len; ++j) dst[j] = static_cast<float>(w[k] * static_cast<double>(dst[j]));
        ptr[k] = dst;
      }
      if (cols > n) {
        float* dst = buf[n].data();
        if (center_[i]) {
          fetch(Feed{model_.get(), center_[i], center_offsets_[i]}, e0, len, dst, sc);
          summary_.bytes_read += len * dtype_size(center_[i]->dtype);
          if (max_exponent(dst, len) == kExpMask)
            throw_error(ErrorKind::BadInput, "{}: the centre /{}/{} holds NaN or Inf", summary_.model, kCenterGroup,
                        params_[i]->name);
        } else {
          std::fill_n(dst, len, 0.0f);
        }
        ptr[n] = dst;
      }
      return true;
    };
    auto for_blocks = [&](std::size_t i, auto&& body) {
      const io::TensorInfo& p = *params_[i];
      const std::int64_t step_rows = rows_per_block(p, opt_.block_bytes);
      for (std::int64_t r0 = 0; r0 < p.rows(); r0 += step_rows) {
        const std::int64_t nrows = std::min(step_rows, p.rows() - r0);
        if (!body(r0, nrows, static_cast<std::size_t>(r0 * p.row_elements()),
                  static_cast<std::size_t>(nrows * p.row_elements())))
          return false;
      }
      return true;
    };

    summary_.robust_passes = 1;
    if (red.needs_gram()) {
      summary_.robust_passes = 2;
      for (std::size_t i = 0; i < params_.size(); ++i) {
        if (!load_tensor(i)) return false;
        const bool ok = for_blocks(i, [&](std::int64_t, std::int64_t, std::size_t e0, std::size_t len) {
          if (!fill(i, e0, len)) return false;
          red.add_gram(ptr, len);
          return true;
        });
        if (!ok) return false;
      }
      red.finish_gram();
    }
    const robust::PlanInfo& plan = red.plan();
    summary_.robust_coefficients = plan.coefficients;
    summary_.robust_iterations = plan.iterations;
    make_sink(active);
    std::vector<std::int64_t> selected(plan.selected.begin(), plan.selected.end());
    if (opt_.robust.pre.empty())
      for (std::int64_t k : selected) summary_.contributors[static_cast<std::size_t>(k)].selected = true;
    if (!selected.empty()) sink_->set_attribute("robust_selected", selected);
    if (!plan.coefficients.empty()) sink_->set_attribute("robust_coefficients", plan.coefficients);

    double update_sq = 0, step_sq = 0;
    const std::int64_t t = step_ + 1;
    const double lr = optimizer_->lr();
    const std::size_t center_index = (slots_.size() + 1) * params_.size();
    for (std::size_t i = 0; i < params_.size(); ++i) {
      if (!load_tensor(i)) return false;
      const bool ok = for_blocks(i, [&](std::int64_t r0, std::int64_t nrows, std::size_t e0, std::size_t len) {
        if (!fill(i, e0, len)) return false;
        red.reduce(ptr, len, dbar.data());
        if (!all_finite(std::span<const float>(dbar.data(), len)))
          throw_error(ErrorKind::Numeric, "tensor {}: the robust Δ̄ is not finite; nothing written", params_[i]->name);
        if (center_out_) {
          std::lock_guard lock(hdf5_mutex_);
          sink_->write_rows(center_index + i, r0, nrows, std::as_bytes(std::span<const float>(dbar.data(), len)));
        }
        outer_block(i, r0, nrows, dbar.data(), sc, t, lr, update_sq, step_sq);
        return true;
      });
      if (!ok) return false;
    }
    summary_.update_norm = std::sqrt(update_sq);
    summary_.step_norm = std::sqrt(step_sq);
    if (!std::isfinite(step_sq))
      throw_error(ErrorKind::Numeric, "the new parameters are not finite (‖Δ̄‖ = {}); nothing written",
                  summary_.update_norm);
    summary_.round = round_ + 1;
    summary_.outer_step = step_ + 1;
    return true;
  }

  bool non_finite(Delta& d, const io::TensorInfo& p) {
    d.bad_tensor = p.name;
    log::info("non-finite values in {} (tensor {}); finding the non-finite deltas and restarting without them", d.path,
              p.name);
    return false;
  }

  // The outer optimizer on tensor i with the reduced delta dbar, block by block: reads θ and the state,
  // applies the step, writes the new θ and state, and adds to the squared norms.
  void outer_step(std::size_t i, std::span<const float> dbar, Scratch& sc, std::int64_t t, double lr, double& update_sq,
                  double& step_sq) {
    const io::TensorInfo& p = *params_[i];
    const auto row_el = static_cast<std::size_t>(p.row_elements());
    const std::int64_t step_rows = rows_per_block(p, opt_.block_bytes);
    const std::size_t block = static_cast<std::size_t>(std::min(step_rows, p.rows())) * row_el;
    sc.theta.resize(block);
    sc.old.resize(block);
    for (auto& sl : sc.slots) sl.resize(block);
    for (std::int64_t r0 = 0; r0 < p.rows(); r0 += step_rows) {
      const std::int64_t nrows = std::min(step_rows, p.rows() - r0);
      outer_block(i, r0, nrows, dbar.data() + static_cast<std::size_t>(r0) * row_el, sc, t, lr, update_sq, step_sq);
    }
  }

  // The outer step on rows [r0, r0 + nrows) of tensor i with their reduced delta dbar (sc.theta, sc.old
  // and sc.slots hold at least that many elements): reads θ and the state, applies the step, writes the
  // rows of the new θ and state and adds to the squared norms.
  void outer_block(std::size_t i, std::int64_t r0, std::int64_t nrows, const float* dbar_rows, Scratch& sc,
                   std::int64_t t, double lr, double& update_sq, double& step_sq) {
    const io::TensorInfo& p = *params_[i];
    const auto row_el = static_cast<std::size_t>(p.row_elements());
    const Feed param_feed{model_.get(), &p, param_offsets_[i]};
    std::array<std::span<float>, 4> spans;
    using V = Eigen::Map<const Eigen::VectorXf>;
    {
      const std::size_t n = static_cast<std::size_t>(nrows) * row_el, e0 = static_cast<std::size_t>(r0) * row_el;
      const std::span<const float> dbar(dbar_rows, n);
      fetch(param_feed, e0, n, sc.theta.data(), sc);
      for (std::size_t sl = 0; sl < slots_.size(); ++sl) {
        if (!state_[sl].empty() && state_[sl][i])
          fetch(Feed{model_.get(), state_[sl][i], state_offsets_[sl][i]}, e0, n, sc.slots[sl].data(), sc);
        else
          std::fill_n(sc.slots[sl].data(), n, 0.0f);
        spans[sl] = std::span(sc.slots[sl].data(), n);
      }
      std::memcpy(sc.old.data(), sc.theta.data(), n * 4);
      optimizer_->apply(std::span(sc.theta.data(), n), dbar,
                        std::span<const std::span<float>>(spans.data(), slots_.size()), t, lr);
      const auto el = static_cast<Eigen::Index>(n);
      update_sq += V(dbar.data(), el).cast<double>().squaredNorm();
      step_sq += (V(sc.theta.data(), el).cast<double>() - V(sc.old.data(), el).cast<double>()).squaredNorm();
      std::uint64_t model_bytes = 4;
      for (std::size_t sl = 0; sl < slots_.size(); ++sl) model_bytes += !state_[sl].empty() && state_[sl][i] ? 4 : 0;
      summary_.bytes_read += n * model_bytes;
      write_block(i, r0, nrows, sc.theta.data(), sc.slots, n);
    }
  }

  // Streams each active delta once, recording in bad_tensor the first tensor with a NaN or Inf and,
  // for a finite delta, in sq_norm its squared L2 norm over the whole update (float64).
  void validation_pass(const std::vector<Delta*>& active) {
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

  AggregateOptions opt_;
  std::string output_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::vector<std::string> slots_;
  std::unique_ptr<io::TensorSource> model_;
  std::vector<const io::TensorInfo*> params_;
  std::vector<std::vector<const io::TensorInfo*>> state_;  // per slot, per param (empty: zero state)
  std::vector<std::optional<std::uint64_t>> param_offsets_;               // io::contiguous_offset per param
  std::vector<std::vector<std::optional<std::uint64_t>>> state_offsets_;  // per slot, per param
  mutable std::mutex hdf5_mutex_;  // HDF5 calls of the pass (read_rows, the sink), one at a time
  std::int64_t round_ = 0, step_ = 0;
  std::string checksum_;
  std::vector<Delta> deltas_;
  std::size_t max_delta_dtype_ = 4;
  bool tensorwise_ = false;              // the tensor-wise pass (compressed deltas or --clip)
  // Per tensor: the coefficient domain of a reduction over coefficients (plan_domains), else nullopt.
  std::vector<std::optional<compress::CoefficientDomain>> coef_domain_;
  bool any_converted_ = false;
  Staleness staleness_;
  bool needs_norms_ = false;  // DP or QFedAvg: whole-update norms before the reduction
  bool center_out_ = false;   // centered clipping: the output keeps Δ̄ as the next centre
  std::vector<const io::TensorInfo*> center_;             // per param: the model's previous centre, or null
  std::vector<std::optional<std::uint64_t>> center_offsets_;
  std::optional<double> state_clip_;  // the model's /state@dp_clip
  double sigma_ = 0;                  // DP noise σ on Δ̄ (0: none)
  std::vector<Delta*> active_final_;  // the deltas of the pass that succeeded
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
                            {"weight", c.weight},
                            {"payload_bytes", c.payload_bytes},
                            {"codec", c.codec},
                            {"clipped_tensors", c.clipped_tensors},
                            {"norm", c.norm >= 0 ? json(c.norm) : json(nullptr)},
                            {"dp_factor", c.dp_factor},
                            {"loss", c.loss ? json(*c.loss) : json(nullptr)},
                            {"selected", c.selected}});
  for (const auto& d : s.dropped) dropped.push_back(
        {{"path", d.path}, {"worker", opt(d.worker)}, {"reason", d.reason}, {"payload_bytes", d.payload_bytes}});
  json j = {{"model", s.model},
            {"output", s.output},
            {"round", s.round},
            {"outer_step", s.outer_step},
            {"reduce", s.reduce},
            {"clip", s.clip},
            {"outer", s.outer},
            {"staleness", s.staleness_rule},
            {"contributors", contributors},
            {"dropped", dropped},
            {"update_norm", s.update_norm},
            {"step_norm", s.step_norm},
            {"bytes_read", s.bytes_read},
            {"delta_bytes_read", s.delta_bytes_read},
            {"payload_bytes", s.payload_bytes},
            {"compressed_deltas", s.compressed_deltas},
            {"passes", s.passes},
            {"robust", {{"coefficients", s.robust_coefficients},
                        {"iterations", s.robust_iterations},
                        {"passes", s.robust_passes}}},
            {"dp", s.dp.enabled ? json{{"clip", s.dp.clip},
                                       {"noise_multiplier", s.dp.noise_multiplier},
                                       {"effective_noise_multiplier", s.dp.effective_noise_multiplier},
                                       {"sigma", s.dp.sigma},
                                       {"m", s.dp.m},
                                       {"clipped", s.dp.clipped},
                                       {"seed", s.dp.seed},
                                       {"adaptive", s.dp.adaptive},
                                       {"unclipped_fraction", s.dp.adaptive ? json(s.dp.unclipped_fraction) : json(nullptr)},
                                       {"next_clip", s.dp.adaptive ? json(s.dp.next_clip) : json(nullptr)}}
                                : json(nullptr)},
            {"seconds", {{"open", s.seconds_open}, {"reduce", s.seconds_reduce}, {"commit", s.seconds_commit}}},
            {"elapsed_seconds", s.elapsed_seconds}};
  return j.dump();
}

}  // namespace loco::aggregate
