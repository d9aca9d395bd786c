// Merge kernels (mergekit's formulas in float32 with double accumulators) and the streaming
// per-tensor merge of model files.
#include "loco/merge/merge.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <memory>

#include <tbb/blocked_range.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include "loco/core/checksum.hpp"
#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/core/rng.hpp"
#include "loco/core/spec.hpp"
#include "loco/core/tensor.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::merge {

namespace {
constexpr std::pair<Method, std::string_view> kNames[] = {{Method::Linear, "linear"},
                                                          {Method::Slerp, "slerp"},
                                                          {Method::TaskArithmetic, "task_arithmetic"},
                                                          {Method::Ties, "ties"},
                                                          {Method::DareLinear, "dare_linear"},
                                                          {Method::DareTies, "dare_ties"},
                                                          {Method::ModelStock, "model_stock"}};

// Element ranges worked on in parallel: fixed chunks of kChunk elements, so every kernel, element-
// wise or summing integer counts per chunk, gives the same bits whatever the thread count (the
// tools' --threads caps TBB).
constexpr std::size_t kChunk = std::size_t{1} << 16;
template <class F>
void parallel_chunks(std::size_t n, F&& f) {
  const std::size_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1) {
    if (n > 0) f(std::size_t{0}, n);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, chunks), [&](const tbb::blocked_range<std::size_t>& r) {
    for (std::size_t c = r.begin(); c != r.end(); ++c) f(c * kChunk, std::min(n, (c + 1) * kChunk));
  });
}

// A 2^16-bin histogram counted in parallel: bin(i) for the elements i of [0, n) that want(i).
template <class Want, class Bin>
std::vector<std::uint64_t> parallel_histogram(std::size_t n, Want&& want, Bin&& bin) {
  tbb::enumerable_thread_specific<std::vector<std::uint64_t>> local(
      [] { return std::vector<std::uint64_t>(1u << 16); });
  parallel_chunks(n, [&](std::size_t i0, std::size_t i1) {
    auto& h = local.local();
    for (std::size_t i = i0; i < i1; ++i)
      if (want(i)) ++h[bin(i)];
  });
  std::vector<std::uint64_t> hist(1u << 16);
  for (const auto& h : local)
    for (std::size_t b = 0; b < hist.size(); ++b) hist[b] += h[b];
  return hist;
}

void check_sizes(std::size_t n, std::span<const std::span<const float>> xs, std::string_view what) {
  for (const auto& x : xs)
    if (x.size() != n) throw_error(ErrorKind::Internal, "merge {}: inputs of {} and {} elements", what, x.size(), n);
}

double l1(std::span<const float> x) {
  double s = 0;
  for (float v : x) s += std::fabs(static_cast<double>(v));
  return s;
}

void l1_rescale(std::span<float> x, double before) {
  const double after = l1(x);
  if (before < 1e-7 || after < 1e-7) return;
  const float k = static_cast<float>(before / after);
  for (float& v : x) v *= k;
}
}  // namespace

std::string_view method_name(Method m) noexcept {
  for (const auto& [k, n] : kNames)
    if (k == m) return n;
  return "?";
}

std::optional<Method> parse_method(std::string_view name) noexcept {
  for (const auto& [k, n] : kNames)
    if (n == name) return k;
  return std::nullopt;
}

MethodDefaults method_defaults(Method m) noexcept {
  switch (m) {
    case Method::Linear: return {false, true, false, false, false};
    case Method::Slerp: return {false, false, false, false, false};
    case Method::TaskArithmetic: return {true, false, false, false, false};
    case Method::Ties: return {true, true, false, true, true};
    case Method::DareLinear: return {true, false, true, true, false};
    case Method::DareTies: return {true, false, true, true, true};
    case Method::ModelStock: return {true, false, false, false, false};
  }
  return {};
}

void linear(std::span<const std::span<const float>> models, std::span<const double> weights, bool normalize,
            std::span<float> out) {
  check_sizes(out.size(), models, "linear");
  double wsum = 0;
  for (double w : weights) wsum += w;
  if (normalize && wsum == 0)
    throw_error(ErrorKind::Usage, "linear merge: the weights sum to 0 and cannot be normalized");
  const double scale = normalize ? 1.0 / wsum : 1.0;
  std::fill(out.begin(), out.end(), 0.0f);
  for (std::size_t m = 0; m < models.size(); ++m) {
    const float w = static_cast<float>(weights[m] * scale);
    const float* x = models[m].data();
    for (std::size_t i = 0; i < out.size(); ++i) out[i] += w * x[i];
  }
}

std::pair<float, float> slerp_coefficients(std::span<const float> v0, std::span<const float> v1, double t) {
  const std::span<const float> both[] = {v1};
  check_sizes(v0.size(), both, "slerp");
  double n0 = 0, n1 = 0, dot = 0;
  for (std::size_t i = 0; i < v0.size(); ++i) {
    n0 += double(v0[i]) * v0[i];
    n1 += double(v1[i]) * v1[i];
    dot += double(v0[i]) * v1[i];
  }
  n0 = std::sqrt(n0);
  n1 = std::sqrt(n1);
  constexpr double eps = 1e-8;
  dot /= (n0 > eps ? n0 : 1.0) * (n1 > eps ? n1 : 1.0);
  double s0, s1;
  if (std::fabs(dot) > 0.9995) {
    s0 = 1 - t;
    s1 = t;
  } else {
    const double omega = std::acos(dot), so = std::sin(omega);
    s0 = std::sin((1 - t) * omega) / so;
    s1 = std::sin(t * omega) / so;
  }
  return {static_cast<float>(s0), static_cast<float>(s1)};
}

void slerp(std::span<const float> v0, std::span<const float> v1, double t, std::span<float> out) {
  const std::span<const float> both[] = {v0, v1};
  check_sizes(out.size(), both, "slerp");
  const auto [a, b] = slerp_coefficients(v0, v1, t);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = a * v0[i] + b * v1[i];
}

namespace {
// Mean, then variance about it, in double over the elements in order (two passes).
std::pair<double, double> moments(std::span<const float> x) {
  const double n = double(x.size());
  double mean = 0;
  for (float v : x) mean += v;
  mean /= n;
  double var = 0;
  for (float v : x) var += (v - mean) * (v - mean);
  return {mean, var / n};
}
}  // namespace

std::optional<double> variance_target(std::span<const std::span<const float>> models, std::span<const double> weights) {
  double wsum = 0, target = 0;
  for (double w : weights) wsum += w;
  if (wsum == 0) return std::nullopt;
  for (std::size_t m = 0; m < models.size(); ++m) target += weights[m] / wsum * moments(models[m]).second;
  return target;
}

void variance_apply(double mu, double var, double target, std::span<float> merged) {
  if (var <= 0) return;
  const double k = std::sqrt(target / var);
  for (float& v : merged) v = static_cast<float>(mu + (v - mu) * k);
}

void variance_correct(std::span<const std::span<const float>> models, std::span<const double> weights,
                      std::span<float> merged) {
  check_sizes(merged.size(), models, "variance correction");
  if (merged.size() < 2) return;
  const std::optional<double> target = variance_target(models, weights);
  if (!target) return;
  const auto [mu, var] = moments(merged);
  variance_apply(mu, var, *target, merged);
}

namespace {
// TIES's trim of one task vector: keeps the k = ⌊density·n⌋ largest magnitudes (ties: the first in
// index order), zeroes the rest, optionally rescales to the L1 norm before. With a base, the delta
// is made in the first pass (δ = θ − base, in place). Three parallel passes: the high 16 bits of
// |δ| counted (with the subtraction), the low 16 bits within the threshold's bucket, the selection.
void trim(std::span<float> delta, std::span<const float> base, double density, bool rescale) {
  const std::size_t n = delta.size();
  auto bits = [&](std::size_t i) { return std::bit_cast<std::uint32_t>(delta[i]) & 0x7FFFFFFFu; };
  if (!base.empty())
    parallel_chunks(n, [&](std::size_t i0, std::size_t i1) {
      for (std::size_t i = i0; i < i1; ++i) delta[i] -= base[i];
    });
  if (density >= 1) return;
  const auto k = static_cast<std::size_t>(std::floor(density * double(n)));
  const double before = rescale ? l1(delta) : 0;
  if (k == 0) {
    std::fill(delta.begin(), delta.end(), 0.0f);
    return;
  }
  // The bits of |δ| order the magnitudes (sign cleared; −0 equals +0). The k-th largest: the high
  // 16 bits from one histogram, the low 16 bits from a second over that bucket.
  auto hist = parallel_histogram(
      n, [](std::size_t) { return true; }, [&](std::size_t i) { return bits(i) >> 16; });
  std::size_t above = 0;
  std::uint32_t hi = 0xFFFF;
  for (;; --hi) {
    if (above + hist[hi] >= k) break;
    above += hist[hi];
  }
  hist = parallel_histogram(
      n, [&](std::size_t i) { return (bits(i) >> 16) == hi; }, [&](std::size_t i) { return bits(i) & 0xFFFFu; });
  std::uint32_t lo = 0xFFFF;
  for (;; --lo) {
    if (above + hist[lo] >= k) break;
    above += hist[lo];
  }
  // Keep every magnitude above the threshold and the first (k − above) equal to it, in index order:
  // each chunk keeps the equal ones that the chunks before it left (counted when only some are kept).
  const std::uint32_t thr = (hi << 16) | lo;
  const std::size_t keep_equal = k - above;
  const std::size_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<std::size_t> equal_before(chunks, 0);
  if (keep_equal < hist[lo]) {
    std::vector<std::size_t> equal(chunks, 0);
    parallel_chunks(n, [&](std::size_t i0, std::size_t i1) {
      std::size_t c = 0;
      for (std::size_t i = i0; i < i1; ++i) c += bits(i) == thr;
      equal[i0 / kChunk] = c;
    });
    for (std::size_t c = 1; c < chunks; ++c) equal_before[c] = equal_before[c - 1] + equal[c - 1];
  }
  parallel_chunks(n, [&](std::size_t i0, std::size_t i1) {
    std::size_t seen = equal_before[i0 / kChunk];
    for (std::size_t i = i0; i < i1; ++i) {
      const std::uint32_t a = bits(i);
      if (a > thr) continue;
      if (a == thr && seen++ < keep_equal) continue;
      delta[i] = 0.0f;
    }
  });
  if (rescale) l1_rescale(delta, before);
}
}  // namespace

void trim_magnitude(std::span<float> delta, double density, bool rescale) { trim(delta, {}, density, rescale); }

void drop_random(std::span<float> delta, double density, bool rescale, std::uint64_t seed, std::uint64_t stream) {
  if (density >= 1) return;
  const double before = rescale ? l1(delta) : 0;
  const auto keep_below = static_cast<std::uint64_t>(std::floor(std::max(density, 0.0) * 4294967296.0));
  Rng rng(seed, stream);
  for (float& v : delta)
    if (rng.next_u32() >= keep_below) v = 0.0f;
  if (rescale) l1_rescale(delta, before);
}

void combine_deltas(std::span<const float> base, std::span<const std::span<const float>> deltas,
                    std::span<const double> weights, bool sign_election, bool normalize, double lambda,
                    std::span<float> out) {
  check_sizes(out.size(), deltas, "task arithmetic");
  if (base.size() != out.size()) throw_error(ErrorKind::Internal, "merge: base of {} elements", base.size());
  const std::size_t k = deltas.size();
  for (std::size_t i = 0; i < out.size(); ++i) {
    float sum = 0, divisor = 0;
    if (sign_election) {
      float total = 0;
      for (std::size_t m = 0; m < k; ++m) total += static_cast<float>(weights[m]) * deltas[m][i];
      const int s = total >= 0 ? 1 : -1;
      for (std::size_t m = 0; m < k; ++m) {
        const float u = static_cast<float>(weights[m]) * deltas[m][i];
        if ((u > 0 && s > 0) || (u < 0 && s < 0)) {
          sum += u;
          divisor += static_cast<float>(weights[m]);
        }
      }
      if (divisor == 0) divisor = 1;
    } else {
      for (std::size_t m = 0; m < k; ++m) {
        sum += static_cast<float>(weights[m]) * deltas[m][i];
        divisor += static_cast<float>(weights[m]);
      }
      if (std::fabs(divisor) < 1e-8f) divisor = 1;
    }
    if (normalize) sum /= divisor;
    out[i] = base[i] + static_cast<float>(lambda) * sum;
  }
}

double model_stock_t(std::span<const float> base, std::span<const std::span<const float>> models) {
  check_sizes(base.size(), models, "model stock");
  const std::size_t n = models.size(), len = base.size();
  if (n < 2) throw_error(ErrorKind::Usage, "model_stock needs at least 2 models besides the base");
  std::vector<double> norms(n, 0.0);
  for (std::size_t m = 0; m < n; ++m)
    for (std::size_t i = 0; i < len; ++i) {
      const double d = double(models[m][i]) - base[i];
      norms[m] += d * d;
    }
  double cos_sum = 0;
  std::size_t pairs = 0;
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t b = a + 1; b < n; ++b, ++pairs) {
      double dot = 0;
      for (std::size_t i = 0; i < len; ++i) dot += (double(models[a][i]) - base[i]) * (double(models[b][i]) - base[i]);
      const double denom = std::max(std::sqrt(norms[a]) * std::sqrt(norms[b]), 1e-6);
      cos_sum += std::clamp(dot / denom, -1.0, 1.0);
    }
  const double c = cos_sum / double(pairs);
  const double denom = 1 + double(n - 1) * c;
  if (denom == 0)
    throw_error(ErrorKind::Numeric, "model_stock: mean cosine {} makes the interpolation factor undefined", c);
  return double(n) * c / denom;
}

void model_stock_apply(double t, std::span<const float> base, std::span<const std::span<const float>> models,
                       std::span<float> out) {
  check_sizes(out.size(), models, "model stock");
  const std::size_t n = models.size();
  const float tf = static_cast<float>(t), bf = static_cast<float>(1 - t), inv = 1.0f / static_cast<float>(n);
  for (std::size_t i = 0; i < out.size(); ++i) {
    float mean = 0;
    for (std::size_t m = 0; m < n; ++m) mean += models[m][i];
    out[i] = tf * (mean * inv) + bf * base[i];
  }
}

double model_stock(std::span<const float> base, std::span<const std::span<const float>> models, std::span<float> out) {
  check_sizes(out.size(), models, "model stock");
  const double t = model_stock_t(base, models);
  model_stock_apply(t, base, models, out);
  return t;
}

std::optional<double> Setting::at(std::string_view tensor, double t) const {
  for (const Cond& c : conds) {
    if (!c.filter.empty() && c.filter != "*" && tensor.find(c.filter) == std::string_view::npos) continue;
    const std::size_t n = c.values.size();
    if (n == 1) return c.values[0];
    const double scaled = t * double(n - 1);
    const auto i0 = static_cast<std::size_t>(scaled);
    const std::size_t i1 = std::min(n - 1, i0 + 1);
    const double frac = scaled - double(i0);
    return (1 - frac) * c.values[i0] + frac * c.values[i1];
  }
  return std::nullopt;
}

Setting parse_setting(std::string_view option, const std::vector<std::string>& specs) {
  Setting s;
  for (const std::string& spec : specs) {
    Setting::Cond c;
    std::string_view list = spec;
    if (const auto colon = list.rfind(':'); colon != std::string_view::npos) {
      c.filter = std::string(list.substr(0, colon));
      list = list.substr(colon + 1);
      if (c.filter.empty()) throw_error(ErrorKind::Usage, "{} '{}': empty filter before ':'", option, spec);
    }
    c.values = parse_reals(list, fmt::format("{} '{}'", option, spec));
    s.conds.push_back(std::move(c));
  }
  return s;
}

std::vector<double> layer_positions(const std::vector<std::string>& names) {
  // The layer index of a name, or -1: the number after "layers.", "blocks.", "h." or "layer." at
  // the start of a dotted part.
  auto index_of = [](std::string_view name) -> std::int64_t {
    for (std::string_view key : {"layers.", "blocks.", "h.", "layer."}) {
      for (std::size_t at = name.find(key); at != std::string_view::npos; at = name.find(key, at + 1)) {
        if (at != 0 && name[at - 1] != '.') continue;
        std::size_t e = at + key.size();
        std::int64_t v = 0;
        const std::size_t b = e;
        while (e < name.size() && name[e] >= '0' && name[e] <= '9') v = v * 10 + (name[e++] - '0');
        if (e > b && e < name.size() && name[e] == '.') return v;
      }
    }
    return -1;
  };
  std::vector<std::int64_t> idx;
  std::int64_t layers = 0;
  for (const auto& n : names) {
    idx.push_back(index_of(n));
    layers = std::max(layers, idx.back() + 1);
  }
  std::vector<double> pos;
  bool seen_layer = false;
  for (std::int64_t i : idx) {
    if (i >= 0) {
      seen_layer = true;
      pos.push_back(layers > 1 ? double(i) / double(layers - 1) : 1.0);
    } else {
      pos.push_back(seen_layer ? 1.0 : 0.0);
    }
  }
  return pos;
}

namespace {

struct Input {
  std::string path;
  std::unique_ptr<io::TensorSource> src;
};

void usage(bool bad, std::string_view what) {
  if (bad) throw Error(ErrorKind::Usage, std::string(what));
}

}  // namespace

void merge_files(const std::vector<std::string>& model_paths, const std::string& out, const MergeOptions& opt) {
  const Method method = opt.method;
  const std::string name(method_name(method));
  const MethodDefaults def = method_defaults(method);
  const bool has_base = !opt.base.empty();
  usage(model_paths.empty(), "no models to merge");
  usage(def.needs_base && !has_base, name + " needs --base (task vectors are taken against it)");
  usage(method == Method::Linear && has_base, "linear takes no --base: list every model to average as MODEL");
  usage(method == Method::Slerp && model_paths.size() + (has_base ? 1 : 0) != 2,
        "slerp merges exactly two models: --base BASE MODEL, or MODEL0 MODEL1");
  usage(method == Method::ModelStock && model_paths.size() < 2, "model_stock needs at least two models besides --base");
  usage(method == Method::Slerp && !opt.t, "slerp needs --t (0 gives the first model, 1 the second)");
  usage(method != Method::Slerp && opt.t.has_value(), "--t applies to slerp only");
  usage(!def.sparsify && opt.density.has_value(), "--density applies to ties, dare_linear and dare_ties only");
  if (opt.density)
    for (const auto& c : opt.density->conds)
      for (double d : c.values) usage(!(d > 0 && d <= 1), fmt::format("--density must be in (0, 1], not {}", d));
  const bool uses_lambda = def.needs_base && method != Method::ModelStock;
  usage(!uses_lambda && opt.lambda.has_value(),
        "--lambda applies to task_arithmetic, ties, dare_linear and dare_ties only");
  usage(!def.sparsify && opt.rescale.has_value(), "--rescale applies to ties, dare_linear and dare_ties only");
  usage((method == Method::Slerp || method == Method::ModelStock) && opt.normalize.has_value(),
        "--normalize does not apply to " + name);
  usage((method == Method::Slerp || method == Method::ModelStock) && !opt.weights.empty(),
        "--weights does not apply to " + name);
  usage(!opt.weights.empty() && opt.weights.size() != model_paths.size(),
        fmt::format("--weights has {} values for {} models", opt.weights.size(), model_paths.size()));
  usage(opt.variance_correct && method != Method::Linear, "--variance-correct applies to linear only");
  for (double w : opt.weights) usage(!std::isfinite(w), "--weights must be finite");

  const bool normalize = opt.normalize.value_or(def.normalize);
  const bool rescale = opt.rescale.value_or(def.rescale);
  std::vector<double> weights = opt.weights;
  if (weights.empty()) weights.assign(model_paths.size(), 1.0);

  // Open every input; the reference (base or first model) fixes names, order, shapes and dtypes.
  std::vector<Input> inputs;
  if (has_base) inputs.push_back({opt.base, io::open_source(opt.base)});
  for (const auto& p : model_paths) inputs.push_back({p, io::open_source(p)});
  for (const auto& in : inputs) io::expect_kind(*in.src, {io::Kind::Model});
  const io::TensorSource& ref = *inputs[0].src;
  // Formats without a model_config (safetensors, .pt) merge with any; two configs must agree.
  const std::string ref_config = io::model_config(ref);
  for (std::size_t i = 1; i < inputs.size(); ++i)
    if (!ref_config.empty() && !io::model_config(*inputs[i].src).empty()) io::check_same_config(ref, *inputs[i].src);
  const std::size_t first_model = has_base ? 1 : 0;

  std::vector<io::TensorInfo> plan;
  for (const auto* t : ref.group("tensors")) plan.push_back(*t);
  if (plan.empty()) throw_error(ErrorKind::BadInput, "{}: no tensors to merge", inputs[0].path);
  std::vector<std::string> plan_names;
  for (const auto& t : plan) plan_names.push_back(t.name);
  const std::vector<double> positions = layer_positions(plan_names);  // for layer gradients
  // Per tensor, which input holds it (nullptr: carried through from the reference).
  std::vector<std::vector<const io::TensorInfo*>> found(plan.size(), std::vector<const io::TensorInfo*>(inputs.size()));
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const io::TensorSource& s = *inputs[i].src;
    for (std::size_t k = 0; k < plan.size(); ++k) {
      const io::TensorInfo* t = s.find(plan[k].name);
      if (!t) {
        if (!opt.allow_missing)
          throw_error(ErrorKind::BadInput,
                      "{}: no tensor {}, which {} has (--allow-missing carries such tensors "
                      "through from {})",
                      inputs[i].path, plan[k].name, inputs[0].path, inputs[0].path);
        continue;
      }
      if (t->shape != plan[k].shape)
        throw_error(ErrorKind::BadInput, "tensor {}: shape {} in {} but {} in {}", plan[k].name, shape_string(t->shape),
                    inputs[i].path, shape_string(plan[k].shape), inputs[0].path);
      found[k][i] = t;
    }
    for (const auto* t : s.group("tensors"))
      if (!ref.find(t->name))
        throw_error(ErrorKind::BadInput, "{}: tensor {} is not in {}", inputs[i].path, t->name, inputs[0].path);
  }

  Attributes root;
  root.set("kind", std::string("model"));
  if (!ref_config.empty()) root.set("model_config", ref_config);
  root.set("merge_method", name);
  auto sink = io::create_sink(out, root, plan);

  // One tensor per input at a time. Task vectors replace the models' values in place; the merged
  // tensor is computed and written in row blocks of about opt.block_bytes, so peak memory is
  // inputs × the largest tensor plus one block.
  std::vector<Tensor> tensors(inputs.size());
  std::vector<std::span<const float>> views;
  std::vector<float> block;
  std::size_t carried = 0;
  for (std::size_t k = 0; k < plan.size(); ++k) {
    const io::TensorInfo& info = plan[k];
    const bool all = std::all_of(found[k].begin(), found[k].end(), [](const auto* t) { return t != nullptr; });
    if (!is_floating(info.dtype) || !all) {
      if (!all) ++carried;
      sink->write(k, ref.read(*found[k][0]));
      continue;
    }
    for (std::size_t i = 0; i < inputs.size(); ++i) tensors[i] = inputs[i].src->read(*found[k][i], DType::F32);
    const std::size_t len = static_cast<std::size_t>(tensors[0].numel());
    const std::int64_t rows = info.shape.empty() ? 1 : info.shape[0];
    const std::size_t row_len = rows == 0 ? 0 : len / static_cast<std::size_t>(rows);
    const std::int64_t block_rows =
        std::max<std::int64_t>(1, static_cast<std::int64_t>(opt.block_bytes / 4 / std::max<std::size_t>(row_len, 1)));
    views.clear();
    for (std::size_t i = first_model; i < inputs.size(); ++i) views.push_back(tensors[i].f32());
    const std::span<const float> base = tensors[0].f32();
    // The parameters of this tensor (mergekit settings: filters and layer gradients).
    auto setting = [&](const std::optional<Setting>& s, double fallback) {
      const std::optional<double> v = s ? s->at(info.name, positions[k]) : std::nullopt;
      return v.value_or(fallback);
    };
    const double density = setting(opt.density, 1.0), lambda = setting(opt.lambda, 1.0);

    // Per-tensor statistics first (whole tensors), then the element-wise merge of each block.
    std::pair<float, float> ab{};
    double stock_t = 0;
    std::optional<double> vc_target;
    double vc_mu = 0, vc_var = 0;
    if (method == Method::Slerp) {
      const std::optional<double> t = opt.t->at(info.name, positions[k]);
      if (!t) throw_error(ErrorKind::Usage, "--t gives no value for tensor {}: add one without a filter", info.name);
      ab = slerp_coefficients(tensors[0].f32(), tensors[1].f32(), *t);
    }
    if (method == Method::ModelStock) stock_t = model_stock_t(base, views);
    const bool task = method == Method::TaskArithmetic || method == Method::Ties || method == Method::DareLinear ||
                      method == Method::DareTies;
    if (task) {
      const std::uint64_t name_hash = xxh64(std::as_bytes(std::span(info.name.data(), info.name.size())));
      for (std::size_t m = 0; m < views.size(); ++m) {
        std::span<float> d = tensors[first_model + m].f32();  // θ_m becomes δ_m = θ_m − θ_base in place
        if (method == Method::Ties) {
          trim(d, base, density, rescale);
          continue;
        }
        parallel_chunks(len, [&](std::size_t i0, std::size_t i1) {
          for (std::size_t i = i0; i < i1; ++i) d[i] -= base[i];
        });
        if (method != Method::TaskArithmetic)
          drop_random(d, density, rescale, opt.seed, stream_id({name_hash, static_cast<std::uint64_t>(m)}));
      }
    }
    // merged values of elements [i0, i0 + n) into dst: element-wise kernels, so chunks in parallel.
    auto merge_range = [&](std::size_t i0, std::size_t n, std::span<float> dst) {
      std::vector<std::span<const float>> bviews;
      for (const auto& v : views) bviews.push_back(v.subspan(i0, n));
      const std::span<const float> b = base.subspan(i0, n);
      switch (method) {
        case Method::Linear: linear(bviews, weights, normalize, dst); break;
        case Method::Slerp: {
          const std::span<const float> v1 = tensors[1].f32().subspan(i0, n);
          for (std::size_t i = 0; i < n; ++i) dst[i] = ab.first * b[i] + ab.second * v1[i];
          break;
        }
        case Method::ModelStock: model_stock_apply(stock_t, b, bviews, dst); break;
        default: combine_deltas(b, bviews, weights, def.sign_election, normalize, lambda, dst); break;
      }
    };
    auto merge_block = [&](std::size_t i0, std::size_t n, std::span<float> dst) {
      parallel_chunks(n, [&](std::size_t a, std::size_t b) { merge_range(i0 + a, b - a, dst.subspan(a, b - a)); });
    };
    auto for_blocks = [&](auto&& fn) {
      for (std::int64_t r0 = 0; r0 < rows; r0 += block_rows) {
        const std::int64_t nr = std::min(block_rows, rows - r0);
        const std::size_t i0 = static_cast<std::size_t>(r0) * row_len, n = static_cast<std::size_t>(nr) * row_len;
        block.resize(n);
        merge_block(i0, n, block);
        fn(r0, nr, std::span<float>(block));
      }
    };
    if (method == Method::Linear && opt.variance_correct && len >= 2) {
      // The merged tensor's mean and variance, each over all elements in order, as variance_correct.
      vc_target = variance_target(views, weights);
      if (vc_target) {
        double sum = 0;
        for_blocks([&](std::int64_t, std::int64_t, std::span<float> o) {
          for (float v : o) sum += v;
        });
        vc_mu = sum / double(len);
        for_blocks([&](std::int64_t, std::int64_t, std::span<float> o) {
          for (float v : o) vc_var += (v - vc_mu) * (v - vc_mu);
        });
        vc_var /= double(len);
      }
    }
    std::vector<std::byte> converted;  // the block in the output's dtype when that is not float32
    auto finish = [&](std::span<float> o) {
      if (vc_target) variance_apply(vc_mu, vc_var, *vc_target, o);
      for (float v : o)
        if (!std::isfinite(v))
          throw_error(ErrorKind::Numeric, "tensor {}: the {} merge produced a non-finite value", info.name, name);
    };
    if (info.shape.empty() || len == 0) {  // a scalar or an empty tensor: one whole write
      Tensor merged = Tensor::uninitialized(info.shape, DType::F32);
      if (len > 0) {
        merge_block(0, len, merged.f32());
        finish(merged.f32());
      }
      sink->write(k, merged);
    } else {
      for_blocks([&](std::int64_t r0, std::int64_t nr, std::span<float> o) {
        finish(o);
        std::span<const std::byte> bytes = std::as_bytes(o);
        if (info.dtype != DType::F32) {
          converted.resize(o.size() * dtype_size(info.dtype));
          convert_elements(DType::F32, reinterpret_cast<const std::byte*>(o.data()), info.dtype, converted.data(),
                           o.size());
          bytes = converted;
        }
        sink->write_rows(k, r0, nr, bytes);
      });
    }
    for (auto& t : tensors) t = Tensor();
  }
  if (carried > 0)
    log::info("{} tensors missing from some model were carried through from {}", carried, inputs[0].path);
  sink->commit();
}

}  // namespace loco::merge
