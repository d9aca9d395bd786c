// Streaming reduction of delta files (dense or compressed) and the outer optimizer step (see
// aggregate.hpp for the rules).
#include "loco/aggregate/aggregate.hpp"

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

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr std::uint32_t kExpMask = 0x7f800000u;

// What the codec of one compressed tensor selects (aggregate.hpp, contributor-mean).
struct Selection {
  enum Kind { All, Indices, Dct } kind = All;  // every element; topk/randk indices; dct_topk coefficients
  std::int64_t chunk = 0, k = 0;               // dct_topk's chunk and kept coefficients per chunk
  std::vector<compress::StageSpec> stages;     // the parsed codec spec
};

struct Delta {
  std::string path;
  bool compressed = false;
  std::int64_t payload_bytes = 0;
  std::string codec = "dense";
  std::vector<Selection> selections;  // per model tensor, compressed deltas only
  std::int64_t clipped_tensors = 0;
  std::unique_ptr<io::TensorSource> src;
  std::optional<std::int64_t> worker, samples, round;
  std::string base;
  std::int64_t staleness = 0;
  double gain = 1;  // staleness weight g_k
  std::vector<const io::TensorInfo*> tensors;  // the delta's tensor for each model tensor
  std::vector<std::optional<std::uint64_t>> offsets;  // io::contiguous_offset of each, when raw-readable
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

std::string spec_text(const std::vector<compress::StageSpec>& stages) {
  std::string out;
  for (const auto& st : stages) {
    if (!out.empty()) out += '+';
    out += st.name;
    for (std::size_t i = 0; i < st.params.size(); ++i)
      out += (i == 0 ? ":" : ",") + st.params[i].first + "=" + st.params[i].second;
  }
  return out;
}

std::int64_t stage_int(const compress::StageSpec& st, std::string_view key) {
  for (const auto& [k, v] : st.params)
    if (k == key) return std::stoll(v);
  throw_error(ErrorKind::BadInput, "codec stage {} without its {} parameter", st.name, key);
}

// The shape and rank attributes Codec::encode records.
void set_shape_attrs(Attributes& a, const Shape& shape) {
  a.set("ndim", static_cast<std::int64_t>(shape.size()));
  if (!shape.empty()) a.set("shape", std::vector<std::int64_t>(shape.begin(), shape.end()));
}

// The shape a compressed tensor's group records; nullopt when its attributes are inconsistent.
std::optional<Shape> recorded_shape(const Attributes& a) {
  const auto rank = a.get_int("ndim");
  const auto* attr = a.find("shape");
  const auto* v = attr ? std::get_if<std::vector<std::int64_t>>(attr) : nullptr;
  if (rank && *rank == 0 && !v) return Shape{};
  if (!rank || !v || *rank != static_cast<std::int64_t>(v->size())) return std::nullopt;
  return Shape(v->begin(), v->end());
}

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
    summary_.clip = std::string(clip_name(opt.clip));
    summary_.outer = optim::format_spec(optimizer_->spec());
    summary_.staleness_rule = opt.allow_stale ? fmt::format("polynomial:a={}", opt.staleness_exponent) : "none";
    if (opt.min_deltas < 1) throw_error(ErrorKind::Usage, "--min-deltas {} is not ≥ 1", opt.min_deltas);
    if (!std::isfinite(opt.staleness_exponent) || opt.staleness_exponent < 0)
      throw_error(ErrorKind::Usage, "staleness exponent {} is not a finite number ≥ 0", opt.staleness_exponent);
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
    for (;;) {
      check_quorum(active);
      ++summary_.passes;
      sink_.reset();
      if (tensorwise_ ? tensor_pass(active) : reduce_pass(active)) break;
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
        summary_.dropped.push_back({d->path, d->worker, why, d->payload_bytes});
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
      std::vector<std::optional<std::uint64_t>> offsets(params_.size());
      for (std::size_t i = 0; i < per_param.size(); ++i)
        if (per_param[i]) offsets[i] = io::contiguous_offset(*model_, *per_param[i]);
      state_.push_back(std::move(per_param));
      state_offsets_.push_back(std::move(offsets));
    }
  }

  void open_delta(const std::string& path) {
    Delta d;
    d.path = path;
    d.src = io::open_source(path);
    d.compressed = io::file_kind(*d.src) == io::Kind::Compressed;
    if (d.compressed) {
      const auto source_kind = d.src->attributes().get_string("source_kind").value_or("unknown");
      if (source_kind != "delta")
        throw_error(ErrorKind::BadInput, "{}: a compressed {} file, expected a compressed delta", path, source_kind);
      const std::string fb = d.src->attributes().get_string("feedback").value_or("");
      if (fb.rfind("ef21", 0) == 0 || fb.rfind("econtrol", 0) == 0)
        throw_error(ErrorKind::BadInput,
                    "{}: compressed with {} error feedback: it holds the increment of the worker's estimate h, which "
                    "only a receiver keeping h can turn into the worker's delta; loco-aggregate takes deltas compressed "
                    "without feedback or with ef14, sparseloco or dgc",
                    path, fb);
      d.codec = d.src->attributes().get_string("codec").value_or("unknown");
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
      d.gain = staleness_weight(d.staleness, opt_.staleness_exponent);
    }
    if (opt_.reduce == Reduction::WeightedMean && (!d.samples || *d.samples <= 0))
      throw_error(ErrorKind::BadInput, "{}: weighted-mean needs a samples attribute > 0, found {}", path,
                  opt_int(d.samples));
    if (d.compressed) {
      open_compressed_tensors(d);
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

  // The tensors of a compressed delta: one group per model tensor, recording the model's shape, a
  // floating dtype and a codec spec; what each selects. payload_bytes from the root attribute (the
  // datasets' bytes when absent).
  void open_compressed_tensors(Delta& d) {
    const std::string& path = d.path;
    const auto names = compress::encoded_tensor_names(*d.src);
    if (names.size() != params_.size())
      throw_error(ErrorKind::BadInput, "{}: {} compressed tensors, the model {} has {}", path, names.size(),
                  summary_.model, params_.size());
    std::int64_t payload = 0;
    for (const io::TensorInfo* p : params_) {
      if (std::find(names.begin(), names.end(), p->name) == names.end())
        throw_error(ErrorKind::BadInput, "{}: no compressed tensor {}, which the model {} has", path, p->name,
                    summary_.model);
      const Attributes a = d.src->group_attributes("tensors/" + p->name);
      const auto shape = recorded_shape(a);
      const auto spec = a.get_string("spec");
      const auto dt = parse_dtype(a.get_string("dtype").value_or(""));
      if (!shape || !spec || !dt || !a.contains("codec"))
        throw_error(ErrorKind::BadInput, "{}: /tensors/{} lacks the codec, spec, dtype and shape attributes of a compressed tensor",
                    path, p->name);
      if (*shape != p->shape)
        throw_error(ErrorKind::BadInput, "{}: tensor {} has shape {}, the model's is {}", path, p->name,
                    shape_string(*shape), shape_string(p->shape));
      if (!is_floating(*dt))
        throw_error(ErrorKind::BadInput, "{}: tensor {} is {}, expected a floating-point type", path, p->name,
                    dtype_name(*dt));
      Selection sel;
      try {
        compress::Codec::parse(*spec);
        sel.stages = compress::parse_spec(*spec);
      } catch (const Error& err) {
        throw_error(ErrorKind::BadInput, "{}: tensor {}: unusable codec spec: {}", path, p->name, err.what());
      }
      const std::string& first = sel.stages.front().name;
      if (first == "topk" || first == "randk") sel.kind = Selection::Indices;
      if (first == "dct_topk") {
        sel.kind = Selection::Dct;
        sel.chunk = stage_int(sel.stages.front(), "chunk");
        sel.k = stage_int(sel.stages.front(), "k");
      }
      d.selections.push_back(std::move(sel));
      for (const io::TensorInfo* t : d.src->group("tensors/" + p->name))
        payload += t->numel() * static_cast<std::int64_t>(dtype_size(t->dtype));
      d.tensors.push_back(nullptr);
      d.offsets.emplace_back();
    }
    d.payload_bytes = d.src->attributes().get_int("payload_bytes").value_or(payload);
  }

  // Under contributor-mean a tensor whose deltas use dct_topk is reduced over its DCT coefficients:
  // every delta of it must then be dct_topk with one chunk size.
  void plan_domains() {
    coef_chunk_.assign(params_.size(), 0);
    if (opt_.reduce != Reduction::ContributorMean) return;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const Delta* dct = nullptr;
      for (const Delta& d : deltas_)
        if (d.compressed && d.selections[i].kind == Selection::Dct) dct = &d;
      if (!dct) continue;
      for (const Delta& d : deltas_)
        if (!d.compressed || d.selections[i].kind != Selection::Dct || d.selections[i].chunk != dct->selections[i].chunk)
          throw_error(ErrorKind::BadInput,
                      "{} and {}: tensor {}: contributor-mean over DCT coefficients needs every delta of the tensor "
                      "compressed by dct_topk with one chunk size ({} has chunk {}, {} has {})",
                      dct->path, d.path, params_[i]->name, dct->path, dct->selections[i].chunk, d.path,
                      d.compressed ? d.codec : std::string("a dense tensor"));
      coef_chunk_[i] = dct->selections[i].chunk;
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
    root.set("clip", summary_.clip);
    root.set("payload_bytes", summary_.payload_bytes);
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
    // Contributor-mean divides by the count per element in the tensor-wise pass; on the streaming pass
    // (dense deltas) every delta contributes everywhere, so it is the mean.
    const bool by_count = opt_.reduce == Reduction::ContributorMean && tensorwise_;
    const bool weighted = opt_.reduce == Reduction::WeightedMean;
    double denom = 0;
    for (const Delta* d : active) denom += weighted ? static_cast<double>(*d->samples) : 1.0;
    if (by_count) denom = 1.0;
    std::vector<double> w;
    summary_.contributors.clear();
    for (const Delta* d : active) {
      const double base = weighted ? static_cast<double>(*d->samples) : 1.0;
      w.push_back(base * d->gain / denom);
      summary_.contributors.push_back(
          {d->path, d->worker, d->samples, d->round, d->staleness, w.back(), d->payload_bytes, d->codec, 0});
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
    const std::int64_t n = params_[i]->numel(), c = coef_chunk_[i];
    if (c == 0) return params_[i]->shape;
    return {(n + c - 1) / c * c};
  }

  // Reads delta d's tensor i into l.x in the reduction domain and, when want_mask and its codec selects,
  // the selection mask into l.mask (else l.mask is left empty). Counts the bytes read.
  //
  // Values and mask come from the codec's own decoder: the dense values from the whole chain (for
  // coefficients, with dct_topk read as the top-k over tiles of its chunk in the padded coefficient
  // vector, which is exactly its layout: k uint16 indices per chunk, then the values), the mask from
  // the sparsifier alone decoding all-ones values (topk scatters them to its indices, randk to the
  // indices it regenerates from the recorded seed and stream).
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
    const std::string what = fmt::format("{}: tensor {}", d.path, p.name);
    try {
      compress::Encoded e = compress::read_encoded(*d.src, p.name);
      const auto bytes = static_cast<std::uint64_t>(e.payload_bytes());
      summary_.delta_bytes_read += bytes;
      summary_.bytes_read += bytes;
      const Selection& sel = d.selections[i];
      std::vector<compress::StageSpec> stages = sel.stages;
      const Shape domain = domain_shape(i);
      if (coef_chunk_[i] != 0) {
        stages.front().name = "topk";
        stages.front().params = {{"k", std::to_string(sel.k)}, {"tile", std::to_string(sel.chunk)}};
        e.attrs.set("spec", spec_text(stages));
        set_shape_attrs(e.attrs, domain);
      }
      l.x = compress::decode(e);
      if (l.x.numel() != shape_numel(domain))
        throw_error(ErrorKind::BadInput, "decodes to {} elements, expected {}", l.x.numel(), shape_numel(domain));
      if (!want_mask || sel.kind == Selection::All) return;
      const std::vector<compress::StageSpec> first(stages.begin(), stages.begin() + 1);
      const compress::Codec sparsifier = compress::Codec::parse(spec_text(first));
      std::int64_t m = 0;
      for (const auto& lay : sparsifier.layout(domain))
        if (lay.name == "values") m = lay.shape[0];
      compress::Encoded s;
      s.attrs = std::move(e.attrs);
      s.attrs.set("spec", sparsifier.spec());
      for (auto& [name, t] : e.datasets)
        if (name == "indices") s.datasets.emplace_back(name, std::move(t));
      Tensor ones = Tensor::uninitialized({m});
      std::fill(ones.f32().begin(), ones.f32().end(), 1.0f);
      s.datasets.emplace_back("values", std::move(ones));
      l.mask = compress::decode(s);
    } catch (const Error& err) {
      if (err.kind() != ErrorKind::BadInput) throw;
      throw_error(ErrorKind::BadInput, "{}: {}", what, err.what());
    }
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
      if (coef_chunk_[i] != 0) dbar = inverse_dct(std::move(dbar), p.shape, coef_chunk_[i]);
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

  bool non_finite(Delta& d, const io::TensorInfo& p) {
    d.bad_tensor = p.name;
    log::info("non-finite values in {} (tensor {}); finding the non-finite deltas and restarting without them", d.path,
              p.name);
    return false;
  }

  // The orthonormal inverse DCT-II, chunk by chunk, of chunk-padded coefficients, cut to the tensor's
  // elements: dct_topk's own decoder with every coefficient of every chunk kept.
  static Tensor inverse_dct(Tensor coef, const Shape& shape, std::int64_t chunk) {
    const std::int64_t total = coef.numel();
    compress::Encoded e;
    e.attrs.set("codec", std::string("dct_topk"));
    e.attrs.set("spec", fmt::format("dct_topk:chunk={},k={}", chunk, chunk));
    e.attrs.set("seed", std::int64_t{0});
    e.attrs.set("stream", std::int64_t{0});
    e.attrs.set("shared_stream", std::int64_t{0});
    set_shape_attrs(e.attrs, shape);
    Tensor idx = Tensor::uninitialized({total}, DType::U16);
    auto* ip = idx.as<std::uint16_t>().data();
    for (std::int64_t j = 0; j < total; ++j) ip[j] = static_cast<std::uint16_t>(j % chunk);
    e.datasets.emplace_back("indices", std::move(idx));
    e.datasets.emplace_back("values", std::move(coef));
    return compress::decode(e);
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
    const Feed param_feed{model_.get(), &p, param_offsets_[i]};
    std::array<std::span<float>, 4> spans;
    using V = Eigen::Map<const Eigen::VectorXf>;
    for (std::int64_t r0 = 0; r0 < p.rows(); r0 += step_rows) {
      const std::int64_t nrows = std::min(step_rows, p.rows() - r0);
      const std::size_t n = static_cast<std::size_t>(nrows) * row_el, e0 = static_cast<std::size_t>(r0) * row_el;
      fetch(param_feed, e0, n, sc.theta.data(), sc);
      for (std::size_t sl = 0; sl < slots_.size(); ++sl) {
        if (!state_[sl].empty() && state_[sl][i])
          fetch(Feed{model_.get(), state_[sl][i], state_offsets_[sl][i]}, e0, n, sc.slots[sl].data(), sc);
        else
          std::fill_n(sc.slots[sl].data(), n, 0.0f);
        spans[sl] = std::span(sc.slots[sl].data(), n);
      }
      std::memcpy(sc.old.data(), sc.theta.data(), n * 4);
      optimizer_->apply(std::span(sc.theta.data(), n), dbar.subspan(e0, n),
                        std::span<const std::span<float>>(spans.data(), slots_.size()), t, lr);
      const auto el = static_cast<Eigen::Index>(n);
      update_sq += V(dbar.data() + e0, el).cast<double>().squaredNorm();
      step_sq += (V(sc.theta.data(), el).cast<double>() - V(sc.old.data(), el).cast<double>()).squaredNorm();
      std::uint64_t model_bytes = 4;
      for (std::size_t sl = 0; sl < slots_.size(); ++sl) model_bytes += !state_[sl].empty() && state_[sl][i] ? 4 : 0;
      summary_.bytes_read += n * model_bytes;
      write_block(i, r0, nrows, sc.theta.data(), sc.slots, n);
    }
  }

  // Streams each active delta once, recording in bad_tensor the first tensor with a NaN or Inf.
  void validation_pass(const std::vector<Delta*>& active) {
    std::vector<float> buf;
    std::vector<std::byte> raw;
    for (Delta* d : active) {
      if (d->compressed) {
        Loaded l;
        for (std::size_t i = 0; i < params_.size() && d->bad_tensor.empty(); ++i) {
          load(*d, i, false, l);
          if (!all_finite(l.x.f32())) d->bad_tensor = params_[i]->name;
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
  std::vector<std::int64_t> coef_chunk_;  // per tensor: DCT chunk of a coefficient-domain reduction, else 0
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
                            {"weight", c.weight},
                            {"payload_bytes", c.payload_bytes},
                            {"codec", c.codec},
                            {"clipped_tensors", c.clipped_tensors}});
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
            {"seconds", {{"open", s.seconds_open}, {"reduce", s.seconds_reduce}, {"commit", s.seconds_commit}}},
            {"elapsed_seconds", s.elapsed_seconds}};
  return j.dump();
}

}  // namespace loco::aggregate
