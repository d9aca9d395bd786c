// Forward and backward kernels of the model layers, on contiguous row-major buffers, for float
// (training) and double (reference and gradient checks) from one templated implementation.
//
// Conventions: a matrix "n × d" is n rows of d contiguous elements. Every kernel runs in parallel
// over fixed-size chunks chosen from the shapes alone, and each output element is computed in a
// fixed order, so results are bit-identical for any TBB thread count. Scratch (GEMM packing,
// attention scores) lives in per-thread buffers that only grow, so repeated calls with the same
// sizes allocate nothing. Pointers to distinct arguments must not overlap unless a kernel says
// it allows it. Sizes are validated by the models, not here.
#pragma once

#include <cstdint>

namespace loco::model::layers {

// y = x·wᵀ + b (+ residual): x n × in, w out × in (PyTorch layout), b out (or null),
// residual n × out (or null; may equal y), y n × out.
template <typename T>
void linear_forward(const T* x, const T* w, const T* b, const T* residual, T* y, std::int64_t n, std::int64_t in,
                    std::int64_t out);

// Backward of linear_forward given dy (n × out): dx = dy·w (n × in; skipped when null),
// dw = dyᵀ·x (out × in), db = column sums of dy (out; skipped when null). All overwrite.
// Over many rows the weight gradient is summed in fixed row chunks whose partial products go to
// `scratch`, which must hold linear_backward_scratch(n, in, out) elements (null when that is 0).
template <typename T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, std::int64_t n, std::int64_t in,
                     std::int64_t out, T* scratch);
std::int64_t linear_backward_scratch(std::int64_t n, std::int64_t in, std::int64_t out);

// y[i] = table[ids[i]] (accumulate: y[i] += table[ids[i]]); table rows × d, y n × d.
// ids must be in [0, rows) (checked by the caller).
template <typename T>
void embedding_forward(const std::int32_t* ids, const T* table, T* y, std::int64_t n, std::int64_t d, bool accumulate);

// dtable[ids[i]] += dy[i] for i = 0..n-1 in order (accumulates; zero dtable first for a plain
// gradient).
template <typename T>
void embedding_backward(const std::int32_t* ids, const T* dy, T* dtable, std::int64_t n, std::int64_t d);

// Layer normalization over the d columns of each row: y = (x − mean)·rstd·gamma + beta with
// rstd = 1/√(var + eps), var the biased variance. Saves mean and rstd (n each) for backward.
template <typename T>
void layernorm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, std::int64_t n,
                       std::int64_t d, T eps);

// Backward of layernorm_forward: dx = (or, with accumulate_dx, +=) d loss/dx; dgamma, dbeta
// overwritten. dx may not alias dy.
template <typename T>
void layernorm_backward(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma,
                        T* dbeta, std::int64_t n, std::int64_t d, bool accumulate_dx);

// GELU, tanh approximation (PyTorch approximate='tanh'):
// y = x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))), elementwise over n values; y may alias x.
template <typename T>
void gelu_forward(const T* x, T* y, std::int64_t n);
// dx = dy·gelu'(x); dx may alias dy.
template <typename T>
void gelu_backward(const T* x, const T* dy, T* dx, std::int64_t n);

// y = max(x, 0); y may alias x.
template <typename T>
void relu_forward(const T* x, T* y, std::int64_t n);
// dx = dy where the forward output y > 0, else 0; dx may alias dy.
template <typename T>
void relu_backward(const T* y, const T* dy, T* dx, std::int64_t n);

struct CrossEntropy {
  double loss_sum = 0.0;     // Σ_i (logsumexp(logits_i) − logits_i[target_i])
  std::int64_t correct = 0;  // rows whose first arg-max is the target
};

// Softmax cross-entropy of n rows of `classes` logits against targets in [0, classes).
// When dlogits is not null it receives grad_scale·(softmax(logits) − onehot(target)); it may
// alias logits. The loss sum is reduced in a fixed order (double precision).
template <typename T>
CrossEntropy softmax_cross_entropy(const T* logits, const std::int32_t* targets, T* dlogits, std::int64_t n,
                                   std::int64_t classes, T grad_scale);

// Causal multi-head self-attention on packed projections. qkv is (batch·seq) × 3d with the
// columns [q | k | v], d = heads·head_dim, and head h using columns h·head_dim..(h+1)·head_dim−1
// of each. Output row (b, i), head h: Σ_{j ≤ i} softmax_j(q_i·k_j/√head_dim)·v_j.
struct AttentionShape {
  std::int64_t batch = 0;
  std::int64_t seq = 0;
  std::int64_t heads = 0;
  std::int64_t head_dim = 0;
};

// y (batch·seq) × d; lse (batch × heads × seq) receives each query's log-sum-exp of scaled
// scores, which the backward pass uses to recompute the probabilities instead of storing them.
template <typename T>
void attention_forward(const T* qkv, T* y, T* lse, const AttentionShape& s);

// Backward given y and lse from the forward pass and dy ((batch·seq) × d): dqkv ((batch·seq) × 3d)
// is overwritten.
template <typename T>
void attention_backward(const T* qkv, const T* y, const T* lse, const T* dy, T* dqkv, const AttentionShape& s);

}  // namespace loco::model::layers
