// Optimizer state, argument checks and the parallel whole-set step shared by every optimizer.
#include "loco/optim/optimizer.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "loco/core/error.hpp"

namespace loco::optim {

namespace {

// No optimizer has more slots than this; kernels get their slot pointers in a fixed array.
constexpr std::size_t kMaxSlots = 4;
// Elements per parallel work item: large enough to amortize scheduling, small enough to balance
// a few big tensors over the threads. The result does not depend on it (updates are element-wise).
constexpr std::int64_t kBlockElements = std::int64_t{1} << 16;

void check_lr(double lr) {
  if (!std::isfinite(lr) || lr < 0) throw_error(ErrorKind::Usage, "learning rate {} is not a finite number ≥ 0", lr);
}

}  // namespace

OptimizerState OptimizerState::zeros(const TensorSet& params, const std::vector<std::string>& slot_names) {
  OptimizerState state;
  for (const auto& slot : slot_names) {
    TensorSet set;
    for (const auto& entry : params) set.add(entry.name, Tensor(entry.tensor.shape(), DType::F32));
    if (!state.slots.emplace(slot, std::move(set)).second)
      throw_error(ErrorKind::Internal, "optimizer state slot '{}' listed twice", slot);
  }
  return state;
}

TensorSet& OptimizerState::slot(std::string_view name) {
  auto it = slots.find(name);
  if (it == slots.end()) throw_error(ErrorKind::BadInput, "optimizer state has no slot '{}'", name);
  return it->second;
}

const TensorSet& OptimizerState::slot(std::string_view name) const {
  auto it = slots.find(name);
  if (it == slots.end()) throw_error(ErrorKind::BadInput, "optimizer state has no slot '{}'", name);
  return it->second;
}

std::string state_group(std::string_view slot) { return "state/" + std::string(slot); }

void Optimizer::apply(std::span<float> param, std::span<const float> grad, SlotSpans slot_spans, std::int64_t t,
                      double lr) const {
  check_lr(lr);
  if (t < 1) throw_error(ErrorKind::Usage, "{}: update number {} is not ≥ 1", spec_.name, t);
  const std::size_t want = slots().size();
  if (slot_spans.size() != want)
    throw_error(ErrorKind::Internal, "{}: {} state slots given, {} expected", spec_.name, slot_spans.size(), want);
  if (grad.size() != param.size())
    throw_error(ErrorKind::Internal, "{}: gradient range has {} elements, parameter range {}", spec_.name, grad.size(),
                param.size());
  std::array<float*, kMaxSlots> ptrs{};
  for (std::size_t i = 0; i < slot_spans.size(); ++i) {
    if (slot_spans[i].size() != param.size())
      throw_error(ErrorKind::Internal, "{}: state slot range has {} elements, parameter range {}", spec_.name,
                  slot_spans[i].size(), param.size());
    ptrs[i] = slot_spans[i].data();
  }
  if (param.empty()) return;
  kernel(param.data(), grad.data(), ptrs.data(), param.size(), t, lr);
}

void Optimizer::check_state(const OptimizerState& state, const TensorSet& params) const {
  for (const auto& name : slots()) {
    auto it = state.slots.find(name);
    if (it == state.slots.end())
      throw_error(ErrorKind::BadInput, "optimizer state has no slot '{}' (needed by {})", name, spec_.name);
    const TensorSet& slot = it->second;
    for (const auto& entry : params) {
      if (!slot.contains(entry.name))
        throw_error(ErrorKind::BadInput, "optimizer state slot '{}' lacks tensor '{}'", name, entry.name);
      const Tensor& s = slot.at(entry.name);
      if (s.shape() != entry.tensor.shape())
        throw_error(ErrorKind::BadInput, "optimizer state slot '{}': tensor '{}' has shape {}, the parameter {}", name,
                    entry.name, shape_string(s.shape()), shape_string(entry.tensor.shape()));
      if (s.dtype() != DType::F32)
        throw_error(ErrorKind::BadInput, "optimizer state slot '{}': tensor '{}' is {}, expected float32", name,
                    entry.name, dtype_name(s.dtype()));
    }
    if (slot.size() != params.size()) {
      for (const auto& entry : slot)
        if (!params.contains(entry.name))
          throw_error(ErrorKind::BadInput, "optimizer state slot '{}' has tensor '{}', which is not a parameter", name,
                      entry.name);
    }
  }
  if (state.step < 0) throw_error(ErrorKind::BadInput, "optimizer state step count {} is negative", state.step);
}

void Optimizer::step(TensorSet& params, const TensorSet& grads, OptimizerState& state, double lr) const {
  check_lr(lr);
  if (&params == &grads) throw_error(ErrorKind::Internal, "{}: parameters and gradients are the same set", spec_.name);
  for (const auto& entry : params) {
    if (entry.tensor.dtype() != DType::F32)
      throw_error(ErrorKind::BadInput, "parameter '{}' is {}; optimizers update float32 tensors", entry.name,
                  dtype_name(entry.tensor.dtype()));
    if (!grads.contains(entry.name)) throw_error(ErrorKind::BadInput, "no gradient for parameter '{}'", entry.name);
    const Tensor& g = grads.at(entry.name);
    if (g.shape() != entry.tensor.shape())
      throw_error(ErrorKind::BadInput, "gradient '{}' has shape {}, the parameter {}", entry.name,
                  shape_string(g.shape()), shape_string(entry.tensor.shape()));
    if (g.dtype() != DType::F32)
      throw_error(ErrorKind::BadInput, "gradient '{}' is {}, expected float32", entry.name, dtype_name(g.dtype()));
  }
  if (grads.size() != params.size()) {
    for (const auto& entry : grads)
      if (!params.contains(entry.name))
        throw_error(ErrorKind::BadInput, "gradient '{}' matches no parameter", entry.name);
  }
  check_state(state, params);

  const std::vector<std::string> names = slots();
  if (names.size() > kMaxSlots) throw_error(ErrorKind::Internal, "{}: too many state slots", spec_.name);
  const std::int64_t t = state.step + 1;

  struct Job {
    float* param;
    const float* grad;
    std::array<float*, kMaxSlots> slot;
    std::size_t n;
  };
  std::vector<Job> jobs;
  for (auto& entry : params) {
    float* p = entry.tensor.f32().data();
    const float* g = grads.at(entry.name).f32().data();
    std::array<float*, kMaxSlots> s{};
    for (std::size_t k = 0; k < names.size(); ++k)
      s[k] = state.slots.find(names[k])->second.at(entry.name).f32().data();
    const std::int64_t numel = entry.tensor.numel();
    for (std::int64_t off = 0; off < numel; off += kBlockElements) {
      Job job{p + off, g + off, s, static_cast<std::size_t>(std::min(kBlockElements, numel - off))};
      for (std::size_t k = 0; k < names.size(); ++k) job.slot[k] = s[k] + off;
      jobs.push_back(job);
    }
  }
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, jobs.size()), [&](const tbb::blocked_range<std::size_t>& r) {
    for (std::size_t j = r.begin(); j != r.end(); ++j) {
      const Job& job = jobs[j];
      kernel(job.param, job.grad, job.slot.data(), job.n, t, lr);
    }
  });
  state.step = t;
}

}  // namespace loco::optim
