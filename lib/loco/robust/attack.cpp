// Simulated Byzantine updates (sign flip, scaled, Gaussian, IPM, ALIE) and shard label flipping.
#include "loco/robust/attack.hpp"

#include <algorithm>
#include <cmath>
#include <memory>

#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"
#include "loco/core/spec.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"
#include "loco/robust/dp.hpp"

namespace loco::robust {

namespace {

constexpr std::uint64_t kGaussianStream = 0x61747461636b2d67ULL;  // "attack-g"

// Per coordinate: the attack value from mean and (population) standard deviation.
struct Moments {
  std::vector<double> mean, sd;
  void compute(const std::vector<const float*>& h, std::size_t len, bool want_sd) {
    mean.assign(len, 0.0);
    const double inv = 1.0 / static_cast<double>(h.size());
    for (const float* x : h)
      for (std::size_t i = 0; i < len; ++i) mean[i] += static_cast<double>(x[i]);
    for (double& m : mean) m *= inv;
    if (!want_sd) return;
    sd.assign(len, 0.0);
    for (const float* x : h)
      for (std::size_t i = 0; i < len; ++i) {
        const double d = static_cast<double>(x[i]) - mean[i];
        sd[i] += d * d;
      }
    for (double& s : sd) s = std::sqrt(s * inv);
  }
};

void attack_values(const AttackSpec& a, double z, const Moments& m, std::span<float> out) {
  for (std::size_t i = 0; i < out.size(); ++i) {
    double v = 0;
    switch (a.kind) {
      case AttackKind::SignFlip: v = -m.mean[i]; break;
      case AttackKind::Scaled: v = a.scale * m.mean[i]; break;
      case AttackKind::Ipm: v = -a.epsilon * m.mean[i]; break;
      case AttackKind::Alie: v = m.mean[i] - z * m.sd[i]; break;
      case AttackKind::Gaussian: v = 0; break;
    }
    out[i] = static_cast<float>(v);
  }
}

std::uint64_t gaussian_stream(std::int64_t worker, std::size_t tensor) {
  return stream_id({kGaussianStream, static_cast<std::uint64_t>(worker), tensor});
}

// ALIE's z: the given one, else the paper's z_max for (n, f). z = 0 makes every attacker send the
// honest mean, which is no attack at all (it only re-weights the honest updates), so it is refused.
double attack_z(const AttackSpec& a, std::int64_t n, std::int64_t f) {
  if (a.kind != AttackKind::Alie) return 0;
  const double z = a.z ? *a.z : alie_z(n, f);
  if (z == 0)
    throw_error(ErrorKind::Usage,
                "alie with z = 0 would send the honest mean, which is not an attack{}; give a non-zero z=",
                a.z ? ""
                    : fmt::format(" (z_max of n = {}, f = {}: s = ⌊n/2+1⌋−f = {}, Φ⁻¹((n−s)/n) = Φ⁻¹(1/2))", n, f,
                                  n / 2 + 1 - f));
  return z;
}

}  // namespace

AttackSpec parse_attack_spec(std::string_view text) {
  Spec spec(text, "attack");
  const std::string& name = spec.name();
  AttackSpec a;
  if (name == "sign-flip") {
    a.kind = AttackKind::SignFlip;
  } else if (name == "scaled") {
    a.kind = AttackKind::Scaled;
    spec.require("s", "S (e.g. scaled:s=-4)");
    a.scale = *spec.take_real("s");
  } else if (name == "gaussian") {
    a.kind = AttackKind::Gaussian;
    a.sigma = spec.real("sigma", 1.0, Range::at_least(0));
  } else if (name == "ipm") {
    a.kind = AttackKind::Ipm;
    a.epsilon = spec.real("eps", 0.1);
  } else if (name == "alie") {
    a.kind = AttackKind::Alie;
    a.z = spec.take_real("z");
  } else {
    throw_error(ErrorKind::Usage,
                "unknown attack '{}' (sign-flip, scaled:s=S, gaussian:sigma=S, ipm:eps=E, alie[:z=Z])", name);
  }
  spec.done();
  return a;
}

std::string format_attack_spec(const AttackSpec& a) {
  switch (a.kind) {
    case AttackKind::SignFlip: return "sign-flip";
    case AttackKind::Scaled: return fmt::format("scaled:s={}", a.scale);
    case AttackKind::Gaussian: return fmt::format("gaussian:sigma={}", a.sigma);
    case AttackKind::Ipm: return fmt::format("ipm:eps={}", a.epsilon);
    case AttackKind::Alie: return a.z ? fmt::format("alie:z={}", *a.z) : std::string("alie");
  }
  return "?";
}

double normal_quantile(double p) {
  if (!(p > 0 && p < 1)) throw_error(ErrorKind::Usage, "normal quantile of {}: needs 0 < p < 1", p);
  if (p == 0.5) return 0;  // exactly: bisection would stop a few ulps below 0
  double lo = -40, hi = 40;
  for (int i = 0; i < 200 && hi - lo > 0; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (mid == lo || mid == hi) break;
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// Baruch, Baruch and Goldberg, "A Little Is Enough" (NeurIPS 2019), Algorithm 3 with n all workers
// (Byzantine included) and m = f of them Byzantine: s = ⌊n/2 + 1⌋ − m supporters are needed for a
// majority, and z_max = max_z {φ(z) < (n − s)/n}, i.e. Φ⁻¹((n − s)/n). The paper's reference code
// (github.com/moranant/attacking_distributed_learning, malicious.py) takes z as a parameter
// (num_std, default 1.5) and the population standard deviation (np.var, ddof 0), which loco follows.
// Where the implementations differ: epfml/byzantine-robust-optimizer (codes/attacks/alittle.py)
// computes Φ⁻¹((n − m − s)/(n − m)), the same count over the honest workers only, which is 0 at
// n = 10, m = 2 where the paper's is Φ⁻¹(0.6) = 0.253, and uses torch.std (the sample deviation,
// n − 1); ByzFL (byzfl/attacks/attacks.py, ALittleIsEnough) takes z given (default 1.5) and the
// sample deviation too (ddof 1). With s ≤ n/2 the paper's argument is ≥ 1/2, so z ≥ 0, and 0 exactly
// when 2s = n (n even and m = 1).
double alie_z(std::int64_t n, std::int64_t f) {
  if (n < 1 || f < 1 || f >= n) throw_error(ErrorKind::Usage, "alie: needs 1 ≤ f < n workers (n = {}, f = {})", n, f);
  const std::int64_t s = n / 2 + 1 - f;
  if (s < 1)
    throw_error(ErrorKind::Usage,
                "alie: z_max = Φ⁻¹((n−s)/n) with s = ⌊n/2+1⌋−f is unbounded for n = {}, f = {} (s = {}: the attackers "
                "are a majority without honest supporters); give z=",
                n, f, s);
  return normal_quantile(static_cast<double>(n - s) / static_cast<double>(n));
}

std::vector<float> attack_vector(const AttackSpec& spec, const std::vector<std::vector<float>>& honest, std::int64_t n,
                                 std::int64_t f, std::uint64_t seed, std::int64_t worker) {
  if (honest.empty()) throw_error(ErrorKind::Usage, "attack: no honest vectors");
  const std::size_t len = honest[0].size();
  std::vector<const float*> h;
  for (const auto& v : honest) {
    if (v.size() != len) throw_error(ErrorKind::Usage, "attack: lengths {} and {} differ", len, v.size());
    h.push_back(v.data());
  }
  Moments m;
  m.compute(h, len, spec.kind == AttackKind::Alie);
  std::vector<float> out(len);
  attack_values(spec, attack_z(spec, n, f), m, out);
  if (spec.kind == AttackKind::Gaussian) add_normal(out, spec.sigma, seed, gaussian_stream(worker, 0), 0);
  return out;
}

AttackReport write_attack(const std::vector<std::string>& honest_paths, const std::vector<std::string>& outputs,
                          const AttackOptions& o) {
  if (honest_paths.empty()) throw_error(ErrorKind::Usage, "no honest delta files given");
  if (outputs.empty()) throw_error(ErrorKind::Usage, "no output given");
  std::vector<std::unique_ptr<io::TensorSource>> src;
  for (const auto& p : honest_paths) {
    src.push_back(io::open_source(p));
    io::expect_kind(*src.back(), {io::Kind::Delta});
  }
  const io::TensorSource& first = *src[0];
  const auto base = first.attributes().get_string("base_checksum");
  const auto tensors = first.group("tensors");
  std::int64_t max_worker = -1;
  for (const auto& s : src) {
    io::check_same_config(first, *s);
    if (s->attributes().get_string("base_checksum") != base)
      throw_error(ErrorKind::BadInput,
                  "{}: base_checksum {} differs from {}'s {}: the honest deltas must come from one "
                  "global model",
                  s->path(), s->attributes().get_string("base_checksum").value_or("(none)"), first.path(),
                  base.value_or("(none)"));
    if (s->group("tensors").size() != tensors.size())
      throw_error(ErrorKind::BadInput, "{}: {} tensors, {} has {}", s->path(), s->group("tensors").size(), first.path(),
                  tensors.size());
    for (const io::TensorInfo* t : tensors) {
      const io::TensorInfo* u = s->find(t->name);
      if (!u || u->shape != t->shape || !is_floating(u->dtype))
        throw_error(ErrorKind::BadInput, "{}: tensor {} is {}, expected a float tensor of shape {} as in {}", s->path(),
                    t->name, u ? fmt::format("{} {}", dtype_name(u->dtype), shape_string(u->shape)) : "missing",
                    shape_string(t->shape), first.path());
    }
    max_worker = std::max(max_worker, s->attributes().get_int("worker").value_or(-1));
  }

  AttackReport rep;
  rep.attack = format_attack_spec(o.spec);
  rep.honest = static_cast<std::int64_t>(src.size());
  rep.f = static_cast<std::int64_t>(outputs.size());
  rep.n = o.workers > 0 ? o.workers : rep.honest + rep.f;
  if (rep.n < rep.f + 1) throw_error(ErrorKind::Usage, "--workers {} is not more than the {} attackers", rep.n, rep.f);
  rep.z = attack_z(o.spec, rep.n, rep.f);
  const std::int64_t w0 = o.first_worker >= 0 ? o.first_worker : max_worker + 1;
  for (std::int64_t k = 0; k < rep.f; ++k) rep.workers.push_back(w0 + k);

  // Root attributes: the first honest delta's, with honest means where a worker's own values go.
  Attributes root;
  for (const auto& e : first.attributes()) {
    if (e.name == "loco_format" || e.name == "loco_version" || e.name == "producer" || e.name == "created") continue;
    root.set(e.name, e.value);
  }
  auto honest_mean = [&](std::string_view key) -> std::optional<double> {
    double sum = 0;
    for (const auto& s : src) {
      const auto v = s->attributes().get_double(key);
      if (!v) return std::nullopt;
      sum += *v;
    }
    return sum / static_cast<double>(src.size());
  };
  if (const auto s = honest_mean("samples")) root.set("samples", static_cast<std::int64_t>(std::llround(*s)));
  for (const char* key : {"loss_first", "loss_last", "loss_mean"})
    if (const auto v = honest_mean(key)) root.set(key, *v);
  root.set("attack", rep.attack);
  if (o.spec.kind == AttackKind::Alie) root.set("attack_z", rep.z);

  std::vector<io::TensorInfo> plan;
  for (const io::TensorInfo* t : tensors) {
    io::TensorInfo p;
    p.group = "tensors";
    p.name = t->name;
    p.shape = t->shape;
    p.dtype = DType::F32;
    plan.push_back(std::move(p));
  }
  std::vector<std::unique_ptr<io::TensorSink>> sinks;
  for (std::int64_t k = 0; k < rep.f; ++k) {
    root.set("worker", rep.workers[static_cast<std::size_t>(k)]);
    sinks.push_back(io::create_sink(outputs[static_cast<std::size_t>(k)], root, plan));
  }

  std::size_t max_block = 1;
  for (const io::TensorInfo* t : tensors)
    max_block =
        std::max(max_block, static_cast<std::size_t>(io::rows_per_block(*t, o.block_bytes) * t->row_elements()));
  std::vector<std::vector<float>> buf(src.size(), std::vector<float>(max_block));
  std::vector<const float*> ptr;
  for (auto& b : buf) ptr.push_back(b.data());
  std::vector<std::byte> raw;
  std::vector<float> base_out(max_block), out(max_block);
  Moments m;
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    const std::int64_t rows = tensors[t]->rows(), step = io::rows_per_block(*tensors[t], o.block_bytes);
    if (tensors[t]->numel() == 0) {
      for (auto& s : sinks) s->write_rows(t, 0, rows, {});
      continue;
    }
    for (std::int64_t r0 = 0; r0 < rows; r0 += step) {
      const std::int64_t nr = std::min(step, rows - r0);
      const auto len = static_cast<std::size_t>(nr * tensors[t]->row_elements());
      for (std::size_t k = 0; k < src.size(); ++k) {
        const io::TensorInfo& info = *src[k]->find(tensors[t]->name);
        if (info.dtype == DType::F32) {
          src[k]->read_rows(info, r0, nr, std::as_writable_bytes(std::span<float>(buf[k].data(), len)));
        } else {
          raw.resize(len * dtype_size(info.dtype));
          src[k]->read_rows(info, r0, nr, raw);
          convert_elements(info.dtype, raw.data(), DType::F32, reinterpret_cast<std::byte*>(buf[k].data()), len);
        }
      }
      m.compute(ptr, len, o.spec.kind == AttackKind::Alie);
      const std::span<float> b(base_out.data(), len);
      attack_values(o.spec, rep.z, m, b);
      for (std::size_t k = 0; k < sinks.size(); ++k) {
        std::span<const float> values = b;
        if (o.spec.kind == AttackKind::Gaussian) {
          std::copy(b.begin(), b.end(), out.begin());
          add_normal(std::span<float>(out.data(), len), o.spec.sigma, o.seed, gaussian_stream(rep.workers[k], t),
                     static_cast<std::uint64_t>(r0 * tensors[t]->row_elements()));
          values = std::span<const float>(out.data(), len);
        }
        for (float v : values)
          if (!std::isfinite(v))
            throw_error(ErrorKind::Numeric, "attack {}: tensor {} overflows float32", rep.attack, tensors[t]->name);
        sinks[k]->write_rows(t, r0, nr, std::as_bytes(values));
      }
    }
  }
  for (auto& s : sinks) s->commit();
  return rep;
}

LabelFlipReport label_flip(const std::string& input, const std::string& output) {
  auto src = io::open_source(input);
  io::expect_kind(*src, {io::Kind::Data});
  const io::TensorInfo* tx = src->find("x", "data");
  const io::TensorInfo* ty = src->find("y", "data");
  if (!tx || !ty)
    throw_error(ErrorKind::BadInput, "{}: label flipping needs a classification shard (/data/x and /data/y){}", input,
                src->find("tokens", "data") ? "; this is a token shard" : "");
  const auto classes = src->attributes().get_int("classes");
  if (!classes || *classes < 1) throw_error(ErrorKind::BadInput, "{}: no classes attribute ≥ 1", input);
  if (ty->shape.size() != 1 || (ty->dtype != DType::I32 && ty->dtype != DType::I64))
    throw_error(ErrorKind::BadInput, "{}: /data/y is {} {}, expected int32 or int64 labels of rank 1", input,
                dtype_name(ty->dtype), shape_string(ty->shape));
  Tensor y = src->read(*ty, DType::I64);
  for (auto& v : y.as<std::int64_t>()) {
    if (v < 0 || v >= *classes) throw_error(ErrorKind::BadInput, "{}: label {} is outside [0, {})", input, v, *classes);
    v = *classes - 1 - v;
  }
  Attributes root;
  for (const auto& e : src->attributes()) {
    if (e.name == "loco_format" || e.name == "loco_version" || e.name == "producer" || e.name == "created") continue;
    root.set(e.name, e.value);
  }
  root.set("attack", std::string("label-flip"));
  std::vector<io::TensorInfo> plan{*tx, *ty};
  auto sink = io::create_sink(output, root, plan);
  const std::int64_t step = io::rows_per_block(*tx, std::size_t{4} << 20);
  std::vector<std::byte> buf;
  for (std::int64_t r0 = 0; r0 < tx->rows(); r0 += step) {
    const std::int64_t nr = std::min(step, tx->rows() - r0);
    buf.resize(static_cast<std::size_t>(nr * tx->row_elements()) * dtype_size(tx->dtype));
    src->read_rows(*tx, r0, nr, buf);
    sink->write_rows(0, r0, nr, buf);
  }
  sink->write(1, y.to(ty->dtype));
  sink->commit();
  return {ty->numel(), *classes};
}

}  // namespace loco::robust
