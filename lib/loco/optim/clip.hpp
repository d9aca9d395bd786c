// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_ (L2 norm over all tensors).
#pragma once

#include "loco/core/tensor.hpp"

namespace loco::optim {

// The L2 norm of all float32 tensors of the set taken together, √(Σ x²), accumulated in double
// over fixed blocks and summed in a fixed order: the same bits for any thread count. Empty set: 0.
// Throws Error(BadInput) naming a tensor that is not float32.
double global_norm(const TensorSet& tensors);

// Clips in place: with n = global_norm(grads) and c = max_norm / (n + 1e-6), multiplies every
// element by float(c) when c < 1 and leaves the set untouched (bit for bit) otherwise.
// Returns n, the norm before clipping. Throws Error(Usage) when max_norm is not finite and
// positive, Error(Numeric) naming the first tensor with a NaN or infinity when n is not finite.
double clip_grad_norm(TensorSet& grads, double max_norm);

}  // namespace loco::optim
