// Internal: the per-architecture forward/backward implementations behind Model, for one scalar
// type, and the grow-only aligned buffers their workspaces are made of.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "loco/core/tensor.hpp"
#include "loco/model/model.hpp"

namespace loco::model::detail {

// A 64-byte-aligned buffer that keeps its memory between calls and only reallocates (losing its
// contents) when asked for more elements than it holds.
template <typename T>
class Buffer {
 public:
  T* ensure(std::int64_t n) {
    if (n > capacity_) {
      storage_ = Tensor::uninitialized({n}, dtype_of<T>());
      capacity_ = n;
      data_ = storage_.as<T>().data();
    }
    return data_;
  }
  T* data() const noexcept { return data_; }

 private:
  Tensor storage_;
  std::int64_t capacity_ = 0;
  T* data_ = nullptr;
};

// One architecture's passes for scalar type T. params[i] and grads[i] point at the i-th tensor
// of the config's param_specs order. Batches and params are validated by Model before the call.
template <typename T>
class Net {
 public:
  virtual ~Net() = default;
  // Mean-loss statistics of the batch; with grads not null, overwrites them with the gradient of
  // the mean loss.
  virtual LossStats run(const T* const* params, T* const* grads, const Batch& batch) = 0;
};

// A next-token model (GPT), which can also score a prefix for sampling.
template <typename T>
class TokenNet : public Net<T> {
 public:
  // The logits after `prefix` (1 ≤ size ≤ ctx, tokens < vocab), converted to float into out
  // (vocab elements).
  virtual void last_logits(const T* const* params, std::span<const std::int32_t> prefix, std::span<float> out) = 0;
};

template <typename T>
std::unique_ptr<Net<T>> make_dense_net(const ModelConfig& config);
template <typename T>
std::unique_ptr<TokenNet<T>> make_gpt_net(const ModelConfig& config);

}  // namespace loco::model::detail
