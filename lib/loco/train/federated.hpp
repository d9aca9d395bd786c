// Client-side pieces of the federated strategies that change the local objective or send more than
// the model delta: FedProx's proximal term and SCAFFOLD's control variates (option II).
//
// FedProx (Li et al. 2020): the local objective gets (μ/2)·‖w − w_g‖², w_g the global model the
// client started from, so every step's gradient gets μ·(w − w_g).
//
// SCAFFOLD (Karimireddy et al. 2020, option II; ref/federated-decentralized.md §1.4): client i keeps
// a control variate c_i (zero at first), the server one c. Each local step descends along the
// corrected gradient g(y) − c_i + c; after the K steps from x to y,
//   c_i⁺ = c_i − c + (x − y)/(K·η_l).
// loco generalises K·η_l to Σ_k η_k, the sum of the learning rates the K steps used (the same for a
// constant rate): with plain SGD, (x − y)/Σ_k η_k − (c − c_i) is then the η-weighted mean of the
// local gradients, which is what c_i⁺ estimates. The client sends Δc = c_i − c_i⁺ as a delta file
// against the server's c file, in loco's sign (Δ = θ_global − θ_local), so that
// `loco-aggregate --model C --outer sgd:lr=|S|/N` computes c ← c − (|S|/N)·mean(c_i − c_i⁺)
// = c + (|S|/N)·mean(c_i⁺ − c_i), the server rule, with the existing tool.
#pragma once

#include <string>
#include <string_view>

#include "loco/core/tensor.hpp"

namespace loco::train {

// The worker state slot holding the client's SCAFFOLD control variate c_i (/state/scaffold_control/<name>).
inline constexpr std::string_view kControlSlot = "scaffold_control";

// FedProx: grads ← grads + μ·(params − anchor), element-wise in float32 (μ rounded to float once,
// then g + μ·(p − a) with each operation rounded as float32 arithmetic does). μ = 0 leaves grads
// untouched (bit for bit). The three sets must hold the same names and shapes (float32); throws
// Error(Internal) otherwise, Error(Usage) for μ negative or not finite.
void add_proximal_gradient(TensorSet& grads, const TensorSet& params, const TensorSet& anchor, double mu);

// SCAFFOLD's corrected gradient: grads ← grads + (server − client), i.e. g − c_i + c, element-wise
// in float32 (c − c_i rounded first). Same shape checks as above.
void add_control_correction(TensorSet& grads, const TensorSet& client_control, const TensorSet& server_control);

// SCAFFOLD option II. Replaces client_control (c_i) by c_i⁺ = c_i − c + (x − y)/lr_sum, computed per
// element in double and rounded once to float32, and returns Δc = c_i − c_i⁺ (the old c_i minus the
// stored float32 c_i⁺, rounded once): the control delta the client sends. x = the global model the
// steps started from, y = the parameters after them, lr_sum = Σ_k η_k over the K steps. Throws
// Error(Usage) unless lr_sum > 0 and finite; Error(Internal) for sets that do not match;
// Error(Numeric) naming the tensor when c_i⁺ is not finite.
TensorSet update_client_control(TensorSet& client_control, const TensorSet& server_control, const TensorSet& x,
                                const TensorSet& y, double lr_sum);

// A zero control variate shaped like params (c_i before the client's first round).
TensorSet zero_control(const TensorSet& params);

// Reads c_i from a worker state file (group state/scaffold_control), one tensor per parameter with
// its shape. Throws Error(BadInput) naming the file when the group is absent (a state made without
// SCAFFOLD) or a tensor is missing, has another shape, or is not finite.
TensorSet read_client_control(const std::string& state_path, const TensorSet& params);

}  // namespace loco::train
