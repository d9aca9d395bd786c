// logreg and mlp: a stack of linear layers with ReLU between them and softmax cross-entropy.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "loco/model/detail/net.hpp"
#include "loco/model/layers.hpp"

namespace loco::model::detail {
namespace {

template <typename T>
class DenseNet final : public Net<T> {
 public:
  explicit DenseNet(const ModelConfig& c)
      : sizes_(c.arch == Arch::LogReg ? std::vector<std::int64_t>{c.features, c.classes} : c.sizes),
        acts_(sizes_.size()) {
    for (std::size_t i = 1; i < sizes_.size(); ++i) max_width_ = std::max(max_width_, sizes_[i]);
  }

  LossStats run(const T* const* params, T* const* grads, const Batch& batch) override {
    const std::int64_t n = batch.rows();
    const std::size_t layers = sizes_.size() - 1;
    const T* input = nullptr;
    if constexpr (std::is_same_v<T, float>) {
      input = batch.x.data();
    } else {
      T* conv = input_.ensure(n * sizes_[0]);
      std::copy(batch.x.begin(), batch.x.end(), conv);
      input = conv;
    }
    // acts_[i] (i ≥ 1): output of layer i, post-ReLU for hidden layers, logits for the last.
    for (std::size_t i = 0; i < layers; ++i) {
      const T* a = i == 0 ? input : acts_[i].data();
      T* z = acts_[i + 1].ensure(n * sizes_[i + 1]);
      layers::linear_forward(a, params[2 * i], params[2 * i + 1], static_cast<const T*>(nullptr), z, n, sizes_[i],
                             sizes_[i + 1]);
      if (i + 1 < layers) layers::relu_forward(z, z, n * sizes_[i + 1]);
    }
    T* logits = acts_[layers].data();
    const auto ce = layers::softmax_cross_entropy(logits, batch.labels.data(), grads ? logits : nullptr, n,
                                                  sizes_[layers], T(1) / static_cast<T>(n));
    if (grads != nullptr) {
      // Gradients flow back through two ping-pong buffers, starting from dlogits in place.
      T* ping = grad_[0].ensure(n * max_width_);
      T* pong = grad_[1].ensure(n * max_width_);
      std::int64_t need = 0;
      for (std::size_t i = 0; i < layers; ++i) {
        need = std::max(need, layers::linear_backward_scratch(n, sizes_[i], sizes_[i + 1]));
      }
      T* scratch = need > 0 ? scratch_.ensure(need) : nullptr;
      const T* dz = logits;
      for (std::size_t i = layers; i-- > 0;) {
        const T* a = i == 0 ? input : acts_[i].data();
        T* da = i == 0 ? nullptr : ping;
        layers::linear_backward(a, params[2 * i], dz, da, grads[2 * i], grads[2 * i + 1], n, sizes_[i], sizes_[i + 1],
                                scratch);
        if (da != nullptr) {
          layers::relu_backward(acts_[i].data(), da, da, n * sizes_[i]);
          dz = da;
          std::swap(ping, pong);
        }
      }
    }
    return LossStats{ce.loss_sum, n, ce.correct};
  }

 private:
  std::vector<std::int64_t> sizes_;
  std::int64_t max_width_ = 1;
  std::vector<Buffer<T>> acts_;
  Buffer<T> input_;
  Buffer<T> grad_[2];
  Buffer<T> scratch_;  // weight-gradient partial sums
};

}  // namespace

template <typename T>
std::unique_ptr<Net<T>> make_dense_net(const ModelConfig& config) {
  return std::make_unique<DenseNet<T>>(config);
}

template std::unique_ptr<Net<float>> make_dense_net<float>(const ModelConfig&);
template std::unique_ptr<Net<double>> make_dense_net<double>(const ModelConfig&);

}  // namespace loco::model::detail
