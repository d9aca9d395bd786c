// Error-feedback memories (EF14, EF21, EControl, SparseLoCo's decayed accumulator, DGC momentum
// correction), their KIND parser, and the receiver's EF21/EControl estimates.
#include "loco/compress/feedback.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <span>

#include "loco/core/error.hpp"
#include "loco/core/spec.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::compress {
namespace {

std::string real_text(double v) { return fmt::format("{}", v); }

// The slot as a float32 span of delta's shape, created as zeros when absent.
std::span<float> slot(TensorState& st, const std::string& name, const Tensor& delta, std::string_view what) {
  if (const Tensor* t = st.find(name)) {
    if (t->shape() != delta.shape() || t->dtype() != DType::F32)
      throw_error(ErrorKind::BadInput, "{}: error-feedback state {} is {} {}, the tensor is {}", what, name,
                  dtype_name(t->dtype()), shape_string(t->shape()), shape_string(delta.shape()));
    return const_cast<Tensor*>(t)->f32();
  }
  Tensor z(delta.shape());  // zero-filled
  st.set(name, std::move(z));
  return const_cast<Tensor*>(st.find(name))->f32();
}

// A slot update() needs, which input() has created.
std::span<float> existing(TensorState& st, const std::string& name) {
  const Tensor* t = st.find(name);
  if (!t) throw_error(ErrorKind::Internal, "error feedback: update() without input() (no slot {})", name);
  return const_cast<Tensor*>(t)->f32();
}

void check_sizes(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size())
    throw_error(ErrorKind::Internal, "error feedback: decoded tensor has {} elements, the input {}", b.size(),
                a.size());
}

// EF14 (beta = 1) and SparseLoCo's decayed accumulator: e ← beta·e + Δ; p = e; e ← e − D.
class Accumulator final : public Feedback {
 public:
  Accumulator(bool sparseloco, double beta) : sparseloco_(sparseloco), beta_(beta) {}
  std::string_view kind() const override { return sparseloco_ ? "sparseloco" : "ef14"; }
  std::string spec() const override { return sparseloco_ ? "sparseloco:beta=" + real_text(beta_) : "ef14"; }
  std::vector<std::string> slots() const override { return {"residual"}; }
  Tensor input(const Tensor& delta, TensorState& st, std::string_view what) const override {
    const auto e = slot(st, "residual", delta, what);
    const auto d = delta.f32();
    Tensor p = Tensor::uninitialized(delta.shape());
    const auto out = p.f32();
    const std::size_t n = d.size();
    if (sparseloco_) {
      const float b = static_cast<float>(beta_);
      for (std::size_t i = 0; i < n; ++i) out[i] = b * e[i] + d[i];
    } else {
      for (std::size_t i = 0; i < n; ++i) out[i] = e[i] + d[i];
    }
    return p;
  }
  void update(const Tensor& p, const Tensor& decoded, TensorState& st) const override {
    const auto e = existing(st, "residual");
    const auto pv = p.f32();
    const auto dv = decoded.f32();
    check_sizes(pv, dv);
    for (std::size_t i = 0; i < pv.size(); ++i) e[i] = pv[i] - dv[i];
  }

 private:
  bool sparseloco_;
  double beta_;  // as given, for the spec; float32 in the arithmetic
};

// EF21: p = Δ − g; g ← g + D.
class Ef21 final : public Feedback {
 public:
  std::string_view kind() const override { return "ef21"; }
  std::string spec() const override { return "ef21"; }
  std::vector<std::string> slots() const override { return {"ef21_g"}; }
  bool receiver_keeps_estimate() const override { return true; }
  Tensor input(const Tensor& delta, TensorState& st, std::string_view what) const override {
    const auto g = slot(st, "ef21_g", delta, what);
    const auto d = delta.f32();
    Tensor p = Tensor::uninitialized(delta.shape());
    const auto out = p.f32();
    for (std::size_t i = 0; i < d.size(); ++i) out[i] = d[i] - g[i];
    return p;
  }
  void update(const Tensor& p, const Tensor& decoded, TensorState& st) const override {
    const auto g = existing(st, "ef21_g");
    const auto dv = decoded.f32();
    check_sizes(p.f32(), dv);
    for (std::size_t i = 0; i < dv.size(); ++i) g[i] = g[i] + dv[i];
  }
};

// EControl (feedback.hpp): p = η·e + (Δ − h); e ← (e + (Δ − h)) − D; h ← h + D. input() already adds
// Δ − h to e (it does not depend on D), update() subtracts D, so Δ − h is computed once.
class EControl final : public Feedback {
 public:
  explicit EControl(double eta) : eta_(eta) {}
  std::string_view kind() const override { return "econtrol"; }
  std::string spec() const override { return "econtrol:eta=" + real_text(eta_); }
  std::vector<std::string> slots() const override { return {"econtrol_e", "econtrol_h"}; }
  bool receiver_keeps_estimate() const override { return true; }
  Tensor input(const Tensor& delta, TensorState& st, std::string_view what) const override {
    const auto e = slot(st, "econtrol_e", delta, what);
    const auto h = slot(st, "econtrol_h", delta, what);
    const auto g = delta.f32();
    const float eta = static_cast<float>(eta_);
    Tensor p = Tensor::uninitialized(delta.shape());
    const auto out = p.f32();
    for (std::size_t i = 0; i < g.size(); ++i) {
      const float r = g[i] - h[i];
      out[i] = eta * e[i] + r;
      e[i] = e[i] + r;
    }
    return p;
  }
  void update(const Tensor& p, const Tensor& decoded, TensorState& st) const override {
    const auto e = existing(st, "econtrol_e");
    const auto h = existing(st, "econtrol_h");
    const auto dv = decoded.f32();
    check_sizes(p.f32(), dv);
    for (std::size_t i = 0; i < dv.size(); ++i) {
      e[i] = e[i] - dv[i];
      h[i] = h[i] + dv[i];
    }
  }

 private:
  double eta_;  // as given, for the spec; float32 in the arithmetic
};

// DGC momentum correction with momentum-factor masking and a warm-up density schedule.
class Dgc final : public Feedback {
 public:
  Dgc(double momentum, std::int64_t warmup) : m_(momentum), warmup_(warmup) {}
  std::string_view kind() const override { return "dgc"; }
  std::string spec() const override { return "dgc:momentum=" + real_text(m_) + ",warmup=" + std::to_string(warmup_); }
  std::vector<std::string> slots() const override { return {"dgc_u", "dgc_v"}; }
  Tensor input(const Tensor& delta, TensorState& st, std::string_view what) const override {
    const auto u = slot(st, "dgc_u", delta, what);
    const auto v = slot(st, "dgc_v", delta, what);
    const auto d = delta.f32();
    const float m = static_cast<float>(m_);
    for (std::size_t i = 0; i < d.size(); ++i) {
      u[i] = m * u[i] + d[i];
      v[i] = v[i] + u[i];
    }
    Tensor p = Tensor::uninitialized(delta.shape());
    std::copy(v.begin(), v.end(), p.f32().begin());
    return p;
  }
  void update(const Tensor& p, const Tensor& decoded, TensorState& st) const override {
    const auto u = existing(st, "dgc_u");
    const auto v = existing(st, "dgc_v");
    const auto dv = decoded.f32();
    check_sizes(p.f32(), dv);
    for (std::size_t i = 0; i < dv.size(); ++i) {
      const bool sent = dv[i] != 0.0f;
      u[i] = sent ? 0.0f : u[i];
      v[i] = sent ? 0.0f : v[i];
    }
  }
  Codec codec_for_round(const Codec& codec, std::int64_t round) const override {
    if (round >= warmup_) return Codec::parse(codec.spec());
    auto stages = parse_spec(codec.spec());
    auto& st = stages.front();
    if (st.name == "topk" || st.name == "randk")
      for (auto& [key, value] : st.params)
        if (key == "density") value = real_text(warmup_density(std::stod(value), round, warmup_));
    return Codec::parse(format_spec(stages));
  }

 private:
  double m_;  // as given, for the spec; float32 in the arithmetic
  std::int64_t warmup_;
};

}  // namespace

Codec Feedback::codec_for_round(const Codec& codec, std::int64_t) const { return Codec::parse(codec.spec()); }

double warmup_density(double rho, std::int64_t round, std::int64_t warmup) {
  if (round >= warmup) return rho;
  return std::pow(rho, static_cast<double>(round + 1) / static_cast<double>(warmup + 1));
}

std::unique_ptr<Feedback> parse_feedback(std::string_view kind) {
  Spec s(kind, "--ef");
  std::unique_ptr<Feedback> fb;
  if (s.name() == "ef14") fb = std::make_unique<Accumulator>(false, 1.0);
  else if (s.name() == "ef21") fb = std::make_unique<Ef21>();
  else if (s.name() == "econtrol") fb = std::make_unique<EControl>(s.real("eta", 0.1, Range::between(0.0, 1.0)));
  else if (s.name() == "sparseloco")
    fb = std::make_unique<Accumulator>(true, s.real("beta", 0.95, Range::between(0.0, 1.0, true)));
  else if (s.name() == "dgc") {
    const double m = s.real("momentum", 0.9, Range::between(0.0, 1.0, false, true));
    fb = std::make_unique<Dgc>(m, s.integer("warmup", 0, 0, 1000000));
  } else {
    throw_error(ErrorKind::Usage, "--ef {}: unknown kind {}; use ef14, ef21, econtrol, sparseloco or dgc", kind,
                s.name());
  }
  s.done();
  return fb;
}

namespace {

// The round of DIR/<prefix>RRRRRR.h5, or nullopt for another file name.
std::optional<std::int64_t> estimate_round(const std::filesystem::path& file, const std::string& prefix) {
  const std::string name = file.filename().string();
  if (name.rfind(prefix, 0) != 0 || file.extension() != ".h5") return std::nullopt;
  const std::string num = name.substr(prefix.size(), name.size() - prefix.size() - 3);
  std::int64_t r = -1;
  auto [ptr, err] = std::from_chars(num.data(), num.data() + num.size(), r);
  if (err != std::errc() || ptr != num.data() + num.size()) return std::nullopt;
  return r;
}

}  // namespace

ReceiverEstimate::ReceiverEstimate(const std::string& dir, const std::string& what, std::optional<std::int64_t> worker,
                                   std::optional<std::int64_t> round, std::string feedback,
                                   std::vector<std::pair<std::string, Shape>> tensors)
    : dir_(dir), feedback_(std::move(feedback)), tensors_(std::move(tensors)) {
  namespace fs = std::filesystem;
  if (!worker || !round)
    throw_error(ErrorKind::BadInput,
                "{}: an ef21/econtrol delta needs worker and round attributes (the estimate "
                "is kept per worker and round)",
                what);
  worker_ = *worker;
  round_ = *round;
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (!fs::is_directory(dir_)) throw_error(ErrorKind::Io, "--ef21-state {}: not a folder and cannot be created", dir_);
  const std::string prefix = fmt::format("worker-{}-round-", worker_);
  std::int64_t best = -1;
  for (const auto& e : fs::directory_iterator(dir_))
    if (const auto r = estimate_round(e.path(), prefix); r && *r < round_) best = std::max(best, *r);
  out_ = (fs::path(dir_) / fmt::format("{}{:06d}.h5", prefix, round_)).string();
  if (best < 0) return;
  const std::string in = (fs::path(dir_) / fmt::format("{}{:06d}.h5", prefix, best)).string();
  base_ = io::open_source(in);
  for (const auto& [name, shape] : tensors_) {
    const io::TensorInfo* t = base_->find(name);
    if (!t || t->shape != shape || t->dtype != DType::F32)
      throw_error(ErrorKind::BadInput, "{}: the estimate of tensor {} is {}, expected float32 {}", in, name,
                  t ? fmt::format("{} {}", dtype_name(t->dtype), shape_string(t->shape)) : std::string("missing"),
                  shape_string(shape));
  }
}

ReceiverEstimate::ReceiverEstimate(ReceiverEstimate&&) noexcept = default;
ReceiverEstimate& ReceiverEstimate::operator=(ReceiverEstimate&&) noexcept = default;
ReceiverEstimate::~ReceiverEstimate() = default;

std::uint64_t ReceiverEstimate::add_base(std::string_view name, Tensor& x) const {
  if (!base_) return 0;
  // g_i + D in float32, element by element: the worker's own g ← g + D, so both sides hold the same bits.
  const Tensor g = base_->read(*base_->find(name), DType::F32);
  const auto gx = g.f32();
  const auto v = x.f32();
  if (gx.size() != v.size())
    throw_error(ErrorKind::Internal, "receiver estimate of {}: {} elements, the increment {}", name, gx.size(),
                v.size());
  for (std::size_t j = 0; j < v.size(); ++j) v[j] = gx[j] + v[j];
  return static_cast<std::uint64_t>(gx.size()) * 4;
}

void ReceiverEstimate::commit(const std::function<Tensor(std::size_t)>& next,
                              const std::optional<std::string>& model_config) {
  namespace fs = std::filesystem;
  Attributes root;
  root.set("kind", std::string("state"));
  if (model_config) root.set("model_config", *model_config);
  root.set("worker", worker_);
  root.set("round", round_);
  root.set("estimate", std::string("ef21"));
  root.set("feedback", feedback_);
  std::vector<io::TensorInfo> plan;
  for (const auto& [name, shape] : tensors_) {
    io::TensorInfo t;
    t.name = name;
    t.shape = shape;
    t.dtype = DType::F32;
    plan.push_back(std::move(t));
  }
  auto sink = io::create_sink(out_, io::Format::Loco, root, std::move(plan));
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor g = next(i);
    sink->write_rows(i, 0, sink->plan()[i].rows(), std::as_bytes(g.f32()));
  }
  sink->commit();
  if (!base_) return;
  const auto base_round = base_->attributes().get_int("round");
  base_.reset();
  if (!base_round) return;
  // Older estimates of this worker than the base are no longer needed (a rerun of this round still finds
  // its base).
  const std::string prefix = fmt::format("worker-{}-round-", worker_);
  std::error_code ec;
  std::vector<fs::path> old;
  for (const auto& e : fs::directory_iterator(dir_, ec))
    if (const auto r = estimate_round(e.path(), prefix); r && *r < *base_round) old.push_back(e.path());
  for (const auto& f : old) fs::remove(f, ec);
}

}  // namespace loco::compress
