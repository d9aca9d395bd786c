// Model: parameter layout and initialization, input validation, and dispatch to the float or
// double implementation of the architecture.
#include "loco/model/model.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "loco/core/checksum.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"
#include "loco/model/detail/net.hpp"
#include "loco/model/detail/specs.hpp"

namespace loco::model {

Batch Batch::classification(std::span<const float> x, std::span<const std::int32_t> labels) {
  Batch b;
  b.kind = Kind::Classification;
  b.x = x;
  b.labels = labels;
  return b;
}

Batch Batch::tokens(std::span<const std::uint8_t> windows, std::int64_t seq_len) {
  Batch b;
  b.kind = Kind::Tokens;
  b.tokens8 = windows;
  b.seq_len = seq_len;
  return b;
}

Batch Batch::tokens(std::span<const std::uint16_t> windows, std::int64_t seq_len) {
  Batch b;
  b.kind = Kind::Tokens;
  b.tokens16 = windows;
  b.seq_len = seq_len;
  return b;
}

Batch Batch::tokens(std::span<const std::int32_t> windows, std::int64_t seq_len) {
  Batch b;
  b.kind = Kind::Tokens;
  b.tokens32 = windows;
  b.seq_len = seq_len;
  return b;
}

std::int64_t Batch::rows() const noexcept {
  if (kind == Kind::Classification) return static_cast<std::int64_t>(labels.size());
  const auto total = static_cast<std::int64_t>(tokens8.size() + tokens16.size() + tokens32.size());
  if (seq_len < 1 || total % (seq_len + 1) != 0) return 0;
  return total / (seq_len + 1);
}

std::int64_t Batch::predictions() const noexcept { return kind == Kind::Classification ? rows() : rows() * seq_len; }

namespace {

// Stream tag of parameter initialization ("init").
constexpr std::uint64_t kInitStreamTag = 0x696e6974;

std::string_view kind_name(Batch::Kind k) { return k == Batch::Kind::Classification ? "classification" : "tokens"; }

}  // namespace

struct Model::Impl {
  ModelConfig config;
  detail::SpecList specs;
  std::int64_t numel = 0;
  std::unique_ptr<detail::Net<float>> net32;
  std::unique_ptr<detail::Net<double>> net64;
  detail::TokenNet<float>* token32 = nullptr;
  detail::TokenNet<double>* token64 = nullptr;
  // The tensors of the current call in model order, and their typed data pointers (kept between
  // calls so that a step allocates nothing).
  std::vector<const Tensor*> bound_params, bound_grads;
  std::vector<const float*> p32;
  std::vector<float*> g32;
  std::vector<const double*> p64;
  std::vector<double*> g64;

  template <typename T>
  detail::Net<T>& net() {
    if constexpr (std::is_same_v<T, float>) {
      if (!net32) {
        if (config.arch == Arch::Gpt) {
          auto n = detail::make_gpt_net<float>(config);
          token32 = n.get();
          net32 = std::move(n);
        } else {
          net32 = detail::make_dense_net<float>(config);
        }
      }
      return *net32;
    } else {
      if (!net64) {
        if (config.arch == Arch::Gpt) {
          auto n = detail::make_gpt_net<double>(config);
          token64 = n.get();
          net64 = std::move(n);
        } else {
          net64 = detail::make_dense_net<double>(config);
        }
      }
      return *net64;
    }
  }

  // Checks `set` against the specs and returns the common dtype; fills out (model order).
  DType bind(const TensorSet& set, std::vector<const Tensor*>& out, std::string_view what) const {
    const auto& sp = specs.specs;
    if (set.size() != sp.size()) {
      for (const auto& e : set) {
        const bool known = std::any_of(sp.begin(), sp.end(), [&](const ParamSpec& s) { return s.name == e.name; });
        if (!known) {
          throw_error(ErrorKind::BadInput, "{}: tensor \"{}\" is not a parameter of the {} model {}", what, e.name,
                      arch_name(config.arch), config.canonical_json());
        }
      }
      for (const auto& s : sp) {
        if (!set.contains(s.name)) {
          throw_error(ErrorKind::BadInput, "{}: missing tensor \"{}\" of the {} model {}", what, s.name,
                      arch_name(config.arch), config.canonical_json());
        }
      }
    }
    out.resize(sp.size());
    DType dtype = DType::F32;
    for (std::size_t i = 0; i < sp.size(); ++i) {
      if (set[i].name != sp[i].name && !set.contains(sp[i].name)) {
        throw_error(ErrorKind::BadInput, "{}: missing tensor \"{}\" of the {} model {}", what, sp[i].name,
                    arch_name(config.arch), config.canonical_json());
      }
      const Tensor& t = set[i].name == sp[i].name ? set[i].tensor : set.at(sp[i].name);
      if (t.shape() != sp[i].shape) {
        throw_error(ErrorKind::BadInput, "{}: tensor \"{}\" has shape {}, the model needs {}", what, sp[i].name,
                    shape_string(t.shape()), shape_string(sp[i].shape));
      }
      if (t.dtype() != DType::F32 && t.dtype() != DType::F64) {
        throw_error(ErrorKind::BadInput, "{}: tensor \"{}\" is {}; the model computes in float32 (or float64)", what,
                    sp[i].name, dtype_name(t.dtype()));
      }
      if (i == 0) {
        dtype = t.dtype();
      } else if (t.dtype() != dtype) {
        throw_error(ErrorKind::BadInput, "{}: tensor \"{}\" is {} but \"{}\" is {}; all must share one dtype", what,
                    sp[i].name, dtype_name(t.dtype()), sp[0].name, dtype_name(dtype));
      }
      out[i] = &t;
    }
    return dtype;
  }

  void check_batch(const Batch& batch) const {
    const bool want_tokens = config.arch == Arch::Gpt;
    const Batch::Kind want = want_tokens ? Batch::Kind::Tokens : Batch::Kind::Classification;
    if (batch.kind != want) {
      throw_error(ErrorKind::BadInput, "batch: the {} model needs a {} batch, got a {} batch", arch_name(config.arch),
                  kind_name(want), kind_name(batch.kind));
    }
    if (!want_tokens) {
      const auto rows = static_cast<std::int64_t>(batch.labels.size());
      const std::int64_t features = config.input_features();
      const std::int64_t classes = config.num_classes();
      if (rows == 0) throw_error(ErrorKind::BadInput, "batch: no examples");
      if (static_cast<std::int64_t>(batch.x.size()) != rows * features) {
        throw_error(ErrorKind::BadInput,
                    "batch: x has {} values, expected {} rows × {} features = {} (feature count mismatch?)",
                    batch.x.size(), rows, features, rows * features);
      }
      for (std::int64_t i = 0; i < rows; ++i) {
        const auto y = batch.labels[static_cast<std::size_t>(i)];
        if (y < 0 || y >= classes) {
          throw_error(ErrorKind::BadInput, "batch: label {} of example {} is outside [0, {})", y, i, classes);
        }
      }
      return;
    }
    if (batch.seq_len < 1 || batch.seq_len > config.ctx) {
      throw_error(ErrorKind::BadInput, "batch: sequence length {} is outside [1, ctx = {}]", batch.seq_len, config.ctx);
    }
    const int given = int(!batch.tokens8.empty()) + int(!batch.tokens16.empty()) + int(!batch.tokens32.empty());
    if (given > 1) throw_error(ErrorKind::BadInput, "batch: tokens given in more than one integer type");
    const std::size_t total = batch.tokens8.size() + batch.tokens16.size() + batch.tokens32.size();
    if (total == 0) throw_error(ErrorKind::BadInput, "batch: no token windows");
    const auto w = static_cast<std::size_t>(batch.seq_len + 1);
    if (total % w != 0) {
      throw_error(ErrorKind::BadInput, "batch: {} tokens are not a whole number of windows of seq_len + 1 = {}", total,
                  w);
    }
    const std::int64_t vocab = config.vocab;
    auto check = [&](auto span) {
      for (std::size_t i = 0; i < span.size(); ++i) {
        const auto v = static_cast<std::int64_t>(span[i]);
        if (v < 0 || v >= vocab) {
          throw_error(ErrorKind::BadInput, "batch: token {} at position {} of window {} is outside [0, vocab = {})", v,
                      i % w, i / w, vocab);
        }
      }
    };
    if (vocab < 256) check(batch.tokens8);
    check(batch.tokens16);
    check(batch.tokens32);
  }

  // Typed data pointers of the bound tensors (grads are writable: they were bound from a
  // non-const TensorSet).
  template <typename T>
  const T* const* param_data() {
    auto& p = [&]() -> std::vector<const T*>& {
      if constexpr (std::is_same_v<T, float>) return p32;
      else return p64;
    }();
    p.resize(bound_params.size());
    for (std::size_t i = 0; i < p.size(); ++i) p[i] = bound_params[i]->as<T>().data();
    return p.data();
  }
  template <typename T>
  T* const* grad_data() {
    auto& g = [&]() -> std::vector<T*>& {
      if constexpr (std::is_same_v<T, float>) return g32;
      else return g64;
    }();
    g.resize(bound_grads.size());
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = const_cast<Tensor*>(bound_grads[i])->as<T>().data();
    return g.data();
  }

  template <typename T>
  LossStats run(const Batch& batch, bool with_grads) {
    return net<T>().run(param_data<T>(), with_grads ? grad_data<T>() : nullptr, batch);
  }
};

Model::Model(ModelConfig config) : impl_(std::make_unique<Impl>()) {
  config.validate();
  impl_->config = std::move(config);
  impl_->specs = detail::build_specs(impl_->config);
  for (const auto& s : impl_->specs.specs) impl_->numel += shape_numel(s.shape);
}

Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

const ModelConfig& Model::config() const noexcept { return impl_->config; }
const std::vector<ParamSpec>& Model::params() const noexcept { return impl_->specs.specs; }
std::int64_t Model::num_parameters() const noexcept { return impl_->numel; }

TensorSet Model::make_params(DType dtype) const {
  if (dtype != DType::F32 && dtype != DType::F64) {
    throw_error(ErrorKind::Usage, "model parameters are float32 or float64, not {}", dtype_name(dtype));
  }
  TensorSet set;
  for (const auto& s : impl_->specs.specs) set.add(s.name, Tensor(s.shape, dtype));
  return set;
}

void Model::init(TensorSet& params, std::uint64_t seed) const {
  check_params(params);
  const auto& sp = impl_->specs.specs;
  for (std::size_t i = 0; i < sp.size(); ++i) {
    Tensor& t = params.at(sp[i].name);
    const auto& rule = impl_->specs.init[i];
    Tensor values(sp[i].shape, DType::F32);
    auto v = values.f32();
    const std::uint64_t stream = stream_id({kInitStreamTag, xxh64(std::as_bytes(std::span(sp[i].name)))});
    switch (rule.kind) {
      case detail::InitRule::Kind::Zeros: break;
      case detail::InitRule::Kind::Ones: std::fill(v.begin(), v.end(), 1.0f); break;
      case detail::InitRule::Kind::Normal: fill_normal(v, 0.0f, static_cast<float>(rule.scale), seed, stream); break;
      case detail::InitRule::Kind::Uniform:
        fill_uniform(v, static_cast<float>(-rule.scale), static_cast<float>(rule.scale), seed, stream);
        break;
    }
    t = t.dtype() == DType::F32 ? std::move(values) : values.to(t.dtype());
  }
}

void Model::check_params(const TensorSet& params) const {
  std::vector<const Tensor*> bound;
  impl_->bind(params, bound, "parameters");
}

LossStats Model::forward_backward(const TensorSet& params, const Batch& batch, TensorSet* grads) {
  Impl& m = *impl_;
  const DType dtype = m.bind(params, m.bound_params, "parameters");
  if (grads != nullptr) {
    if (grads == &params) throw_error(ErrorKind::Usage, "gradients must not be written over the parameters");
    const DType gtype = m.bind(*grads, m.bound_grads, "gradients");
    if (gtype != dtype) {
      throw_error(ErrorKind::BadInput, "gradients are {} but parameters are {}", dtype_name(gtype), dtype_name(dtype));
    }
  }
  m.check_batch(batch);
  return dtype == DType::F32 ? m.run<float>(batch, grads != nullptr) : m.run<double>(batch, grads != nullptr);
}

LossStats Model::evaluate(const TensorSet& params, const Batch& batch) {
  return forward_backward(params, batch, nullptr);
}

void Model::next_token_logits(const TensorSet& params, std::span<const std::int32_t> prefix, std::span<float> out) {
  Impl& m = *impl_;
  if (m.config.arch != Arch::Gpt) {
    throw_error(ErrorKind::Usage, "next-token logits need a gpt model, not {}", arch_name(m.config.arch));
  }
  const DType dtype = m.bind(params, m.bound_params, "parameters");
  if (prefix.empty()) throw_error(ErrorKind::BadInput, "next-token logits: empty prefix");
  if (static_cast<std::int64_t>(out.size()) != m.config.vocab) {
    throw_error(ErrorKind::BadInput, "next-token logits: output has {} slots, vocab is {}", out.size(), m.config.vocab);
  }
  if (static_cast<std::int64_t>(prefix.size()) > m.config.ctx) {
    prefix = prefix.subspan(prefix.size() - static_cast<std::size_t>(m.config.ctx));
  }
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (prefix[i] < 0 || prefix[i] >= m.config.vocab) {
      throw_error(ErrorKind::BadInput, "next-token logits: token {} at position {} is outside [0, {})", prefix[i], i,
                  m.config.vocab);
    }
  }
  if (dtype == DType::F32) {
    m.net<float>();
    m.token32->last_logits(m.param_data<float>(), prefix, out);
  } else {
    m.net<double>();
    m.token64->last_logits(m.param_data<double>(), prefix, out);
  }
}

std::unique_ptr<Model> make_model(const ModelConfig& config) { return std::make_unique<Model>(config); }

}  // namespace loco::model
