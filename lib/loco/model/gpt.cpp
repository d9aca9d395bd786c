// gpt: the byte-level pre-LayerNorm decoder-only transformer of models.md, forward and backward.
#include <algorithm>
#include <vector>

#include "loco/model/detail/net.hpp"
#include "loco/model/layers.hpp"

namespace loco::model::detail {
namespace {

constexpr double kLnEps = 1e-5;

// Indices into the parameter list (models.md order).
constexpr std::int64_t kWte = 0;
constexpr std::int64_t kWpe = 1;
constexpr std::int64_t kBlock0 = 2;
constexpr std::int64_t kPerBlock = 12;
enum BlockParam : std::int64_t {
  kLn1W,
  kLn1B,
  kQkvW,
  kQkvB,
  kProjW,
  kProjB,
  kLn2W,
  kLn2B,
  kFcW,
  kFcB,
  kMprojW,
  kMprojB
};

template <typename T>
class GptNet final : public TokenNet<T> {
 public:
  explicit GptNet(const ModelConfig& c)
      : vocab_(c.vocab),
        ctx_(c.ctx),
        d_(c.d_model),
        f_(c.mlp_ratio * c.d_model),
        layers_(c.layers),
        heads_(c.heads),
        tied_(c.tie_embeddings),
        layer_ws_(static_cast<std::size_t>(c.layers)),
        x_(static_cast<std::size_t>(c.layers) + 1) {}

  LossStats run(const T* const* params, T* const* grads, const Batch& batch) override {
    const std::int64_t b = batch.rows();
    const std::int64_t t = batch.seq_len;
    const std::int64_t n = b * t;
    const bool training = grads != nullptr;
    prepare(n, training);
    std::int32_t* ids = ids_.data();
    std::int32_t* targets = targets_.data();
    const std::int64_t w = t + 1;
    auto split = [&](auto tokens) {
      for (std::int64_t r = 0; r < b; ++r) {
        for (std::int64_t j = 0; j < t; ++j) {
          const auto k = static_cast<std::size_t>(r * w + j);
          ids[r * t + j] = static_cast<std::int32_t>(tokens[k]);
          targets[r * t + j] = static_cast<std::int32_t>(tokens[k + 1]);
        }
      }
    };
    if (!batch.tokens8.empty()) {
      split(batch.tokens8);
    } else if (!batch.tokens16.empty()) {
      split(batch.tokens16);
    } else {
      split(batch.tokens32);
    }
    forward(params, b, t, training);
    T* logits = logits_.data();
    const auto ce = layers::softmax_cross_entropy(logits, targets, training ? logits : nullptr, n, vocab_,
                                                  T(1) / static_cast<T>(n));
    if (training) backward(params, grads, b, t);
    return LossStats{ce.loss_sum, n, ce.correct};
  }

  void last_logits(const T* const* params, std::span<const std::int32_t> prefix, std::span<float> out) override {
    const auto t = static_cast<std::int64_t>(prefix.size());
    prepare(t, false);
    std::copy(prefix.begin(), prefix.end(), ids_.data());
    forward(params, 1, t, false);
    const T* last = logits_.data() + (t - 1) * vocab_;
    for (std::int64_t v = 0; v < vocab_; ++v) out[static_cast<std::size_t>(v)] = static_cast<float>(last[v]);
  }

 private:
  // Saved activations of one block.
  struct LayerWs {
    Buffer<T> h1, mean1, rstd1, qkv, att, lse, xm, h2, mean2, rstd2, u, g;
  };

  // Sizes every buffer for n tokens. Training keeps every block's activations; a forward-only
  // pass reuses block 0's and two residual-stream buffers.
  void prepare(std::int64_t n, bool training) {
    const std::size_t sets = training ? layer_ws_.size() : 1;
    for (std::size_t l = 0; l < sets; ++l) {
      auto& ws = layer_ws_[l];
      ws.h1.ensure(n * d_);
      ws.mean1.ensure(n);
      ws.rstd1.ensure(n);
      ws.qkv.ensure(n * 3 * d_);
      ws.att.ensure(n * d_);
      ws.lse.ensure(n * heads_);
      ws.xm.ensure(n * d_);
      ws.h2.ensure(n * d_);
      ws.mean2.ensure(n);
      ws.rstd2.ensure(n);
      ws.u.ensure(n * f_);
      ws.g.ensure(n * f_);
    }
    const std::size_t xs = training ? x_.size() : 2;
    for (std::size_t l = 0; l < xs; ++l) x_[l].ensure(n * d_);
    ids_.ensure(n);
    targets_.ensure(n);
    pos_.ensure(n);
    hf_.ensure(n * d_);
    meanf_.ensure(n);
    rstdf_.ensure(n);
    logits_.ensure(n * vocab_);
    if (training) {
      dx_.ensure(n * d_);
      dh_.ensure(n * d_);
      dqkv_.ensure(n * 3 * d_);
      datt_.ensure(n * d_);
      dg_.ensure(n * f_);
      const std::int64_t need =
          std::max({layers::linear_backward_scratch(n, d_, 3 * d_), layers::linear_backward_scratch(n, d_, d_),
                    layers::linear_backward_scratch(n, d_, f_), layers::linear_backward_scratch(n, f_, d_),
                    layers::linear_backward_scratch(n, d_, vocab_)});
      if (need > 0) scratch_.ensure(need);
    }
  }

  // Positions 0..t−1 repeated for each of the b sequences.
  void fill_positions(std::int64_t b, std::int64_t t) {
    std::int32_t* pos = pos_.data();
    for (std::int64_t r = 0; r < b; ++r) {
      for (std::int64_t j = 0; j < t; ++j) pos[r * t + j] = static_cast<std::int32_t>(j);
    }
  }

  LayerWs& ws(std::int64_t l, bool training) { return layer_ws_[training ? static_cast<std::size_t>(l) : 0]; }
  T* xbuf(std::int64_t l, bool training) {
    return x_[training ? static_cast<std::size_t>(l) : static_cast<std::size_t>(l % 2)].data();
  }
  const T* head_weight(const T* const* params) const {
    return tied_ ? params[kWte] : params[kBlock0 + kPerBlock * layers_ + 2];
  }

  void forward(const T* const* params, std::int64_t b, std::int64_t t, bool training) {
    const std::int64_t n = b * t;
    const T eps = static_cast<T>(kLnEps);
    const layers::AttentionShape shape{b, t, heads_, d_ / heads_};
    fill_positions(b, t);
    T* x0 = xbuf(0, training);
    layers::embedding_forward(ids_.data(), params[kWte], x0, n, d_, false);
    layers::embedding_forward(pos_.data(), params[kWpe], x0, n, d_, true);
    for (std::int64_t l = 0; l < layers_; ++l) {
      const T* const* p = params + kBlock0 + kPerBlock * l;
      auto& s = ws(l, training);
      const T* x = xbuf(l, training);
      T* x_next = xbuf(l + 1, training);
      layers::layernorm_forward(x, p[kLn1W], p[kLn1B], s.h1.data(), s.mean1.data(), s.rstd1.data(), n, d_, eps);
      layers::linear_forward(s.h1.data(), p[kQkvW], p[kQkvB], static_cast<const T*>(nullptr), s.qkv.data(), n, d_,
                             3 * d_);
      layers::attention_forward(s.qkv.data(), s.att.data(), s.lse.data(), shape);
      layers::linear_forward(s.att.data(), p[kProjW], p[kProjB], x, s.xm.data(), n, d_, d_);
      layers::layernorm_forward(s.xm.data(), p[kLn2W], p[kLn2B], s.h2.data(), s.mean2.data(), s.rstd2.data(), n, d_,
                                eps);
      layers::linear_forward(s.h2.data(), p[kFcW], p[kFcB], static_cast<const T*>(nullptr), s.u.data(), n, d_, f_);
      layers::gelu_forward(s.u.data(), s.g.data(), n * f_);
      layers::linear_forward(s.g.data(), p[kMprojW], p[kMprojB], s.xm.data(), x_next, n, f_, d_);
    }
    const T* const* pf = params + kBlock0 + kPerBlock * layers_;
    layers::layernorm_forward(xbuf(layers_, training), pf[0], pf[1], hf_.data(), meanf_.data(), rstdf_.data(), n, d_,
                              eps);
    layers::linear_forward(hf_.data(), head_weight(params), static_cast<const T*>(nullptr),
                           static_cast<const T*>(nullptr), logits_.data(), n, d_, vocab_);
  }

  // Expects logits_ to hold d(mean loss)/d(logits).
  void backward(const T* const* params, T* const* grads, std::int64_t b, std::int64_t t) {
    const std::int64_t n = b * t;
    const layers::AttentionShape shape{b, t, heads_, d_ / heads_};
    const std::int64_t fin = kBlock0 + kPerBlock * layers_;
    T* dx = dx_.data();
    T* dh = dh_.data();
    // Head: with tied embeddings its weight gradient is the first part of wte's.
    T* dhead = tied_ ? grads[kWte] : grads[fin + 2];
    layers::linear_backward(hf_.data(), head_weight(params), logits_.data(), dh, dhead, static_cast<T*>(nullptr), n, d_,
                            vocab_, scratch_.data());
    layers::layernorm_backward(xbuf(layers_, true), params[fin], meanf_.data(), rstdf_.data(), dh, dx, grads[fin],
                               grads[fin + 1], n, d_, false);
    for (std::int64_t l = layers_; l-- > 0;) {
      const T* const* p = params + kBlock0 + kPerBlock * l;
      T* const* g = grads + kBlock0 + kPerBlock * l;
      auto& s = ws(l, true);
      // x_{l+1} = xm + mlp.proj(gelu(fc(ln2(xm)))): dx holds d/dx_{l+1}.
      layers::linear_backward(s.g.data(), p[kMprojW], dx, dg_.data(), g[kMprojW], g[kMprojB], n, f_, d_,
                              scratch_.data());
      layers::gelu_backward(s.u.data(), dg_.data(), dg_.data(), n * f_);
      layers::linear_backward(s.h2.data(), p[kFcW], dg_.data(), dh, g[kFcW], g[kFcB], n, d_, f_, scratch_.data());
      layers::layernorm_backward(s.xm.data(), p[kLn2W], s.mean2.data(), s.rstd2.data(), dh, dx, g[kLn2W], g[kLn2B], n,
                                 d_, true);
      // xm = x_l + attn.proj(attention(qkv(ln1(x_l)))): dx now holds d/dxm.
      layers::linear_backward(s.att.data(), p[kProjW], dx, datt_.data(), g[kProjW], g[kProjB], n, d_, d_,
                              scratch_.data());
      layers::attention_backward(s.qkv.data(), s.att.data(), s.lse.data(), datt_.data(), dqkv_.data(), shape);
      layers::linear_backward(s.h1.data(), p[kQkvW], dqkv_.data(), dh, g[kQkvW], g[kQkvB], n, d_, 3 * d_,
                              scratch_.data());
      layers::layernorm_backward(xbuf(l, true), p[kLn1W], s.mean1.data(), s.rstd1.data(), dh, dx, g[kLn1W], g[kLn1B], n,
                                 d_, true);
    }
    if (!tied_) std::fill_n(grads[kWte], vocab_ * d_, T(0));
    std::fill_n(grads[kWpe], ctx_ * d_, T(0));
    layers::embedding_backward(ids_.data(), dx, grads[kWte], n, d_);
    layers::embedding_backward(pos_.data(), dx, grads[kWpe], n, d_);
  }

  std::int64_t vocab_, ctx_, d_, f_, layers_, heads_;
  bool tied_;
  std::vector<LayerWs> layer_ws_;
  std::vector<Buffer<T>> x_;  // residual stream entering block l (x_[layers] enters ln_f)
  Buffer<std::int32_t> ids_, targets_, pos_;
  Buffer<T> hf_, meanf_, rstdf_, logits_;
  Buffer<T> dx_, dh_, dqkv_, datt_, dg_;
  Buffer<T> scratch_;  // weight-gradient partial sums
};

}  // namespace

template <typename T>
std::unique_ptr<TokenNet<T>> make_gpt_net(const ModelConfig& config) {
  return std::make_unique<GptNet<T>>(config);
}

template std::unique_ptr<TokenNet<float>> make_gpt_net<float>(const ModelConfig&);
template std::unique_ptr<TokenNet<double>> make_gpt_net<double>(const ModelConfig&);

}  // namespace loco::model::detail
