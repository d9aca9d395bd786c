// Layer kernels: Eigen's blocked GEMM on contiguous row blocks, TBB over fixed shape-derived chunks.
#include "loco/model/layers.hpp"
#include "loco/core/detail/eigen.hpp"  // pins Eigen's product blocking

// GCC 12 reports false -Wmaybe-uninitialized positives inside Eigen's AVX-512 packet code
// (LOCO_NATIVE builds); the pragma covers the Eigen headers, where those warnings are located.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Dense>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#if !EIGEN_VERSION_AT_LEAST(3, 4, 0)
#error "loco's model kernels call Eigen 3.4's blocked GEMM (general_matrix_matrix_product with ResInnerStride)"
#endif
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_reduce.h>
#include <tbb/partitioner.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace loco::model::layers {
namespace {

using Index = std::int64_t;

template <typename T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MapMat = Eigen::Map<Mat<T>>;
template <typename T>
using CMapMat = Eigen::Map<const Mat<T>>;
template <typename T>
using CSMat = Eigen::Map<const Mat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using Arr = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using CArr = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using RowVec = Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>;
template <typename T>
using CRowVec = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>;

Index ceil_div(Index a, Index b) { return (a + b - 1) / b; }
Index round_up(Index a, Index m) { return ceil_div(a, m) * m; }

// Calls f(begin, end) for the chunks [c·chunk, min(total, (c+1)·chunk)) in parallel. The chunks
// depend only on (total, chunk), never on the thread count.
template <typename F>
void parallel_chunks(Index total, Index chunk, const F& f) {
  if (total <= 0) return;
  const Index count = ceil_div(total, chunk);
  if (count == 1) {
    f(Index{0}, total);
    return;
  }
  tbb::parallel_for(
      tbb::blocked_range<Index>(0, count, 1),
      [&](const tbb::blocked_range<Index>& r) {
        for (Index c = r.begin(); c != r.end(); ++c) f(c * chunk, std::min(total, (c + 1) * chunk));
      },
      tbb::simple_partitioner());
}

// Calls f(i) for i in [0, count) in parallel, one task each.
template <typename F>
void parallel_each(Index count, const F& f) {
  if (count <= 0) return;
  if (count == 1) {
    f(Index{0});
    return;
  }
  tbb::parallel_for(
      tbb::blocked_range<Index>(0, count, 1),
      [&](const tbb::blocked_range<Index>& r) {
        for (Index i = r.begin(); i != r.end(); ++i) f(i);
      },
      tbb::simple_partitioner());
}

// Rows per task of a product over n rows: large enough for the GEMM kernel to run near peak
// (≥ 64 rows), small enough to give ≥ 16 tasks on big batches (≤ 256 rows).
Index gemm_row_chunk(Index n) { return std::clamp(round_up(ceil_div(n, 16), 16), Index{64}, Index{256}); }

// Splits `total` into pieces of at most `max_piece`, balanced and a multiple of 16 when possible.
Index balanced_piece(Index total, Index max_piece) {
  const Index pieces = ceil_div(total, max_piece);
  return std::min(total, round_up(ceil_div(total, pieces), 16));
}

// Rows per task of a row-wise kernel over rows of `width` elements (~16K elements per task).
Index row_chunk(Index width) { return std::max<Index>(1, 16384 / std::max<Index>(1, width)); }

constexpr Index kElemChunk = 16384;  // elements per task of an elementwise kernel
constexpr Index kColBlock = 64;      // columns per task of a column reduction over rows
constexpr Index kGeluBlock = 256;    // elements evaluated at once on the stack in GELU

// A per-thread, vector-aligned scratch buffer that only grows, so steady-state calls do not
// allocate. Only used inside one task, which runs no other task meanwhile. Slots 0–1 hold
// attention scores, 2–3 the packed operands of gemm(), 4 one row of softmax numerators.
enum ScratchSlot { kScores = 0, kScoreGrads = 1, kPackA = 2, kPackB = 3, kSoftmaxRow = 4, kScratchSlots };

template <typename T>
T* thread_scratch(std::size_t n, ScratchSlot slot) {
  thread_local std::vector<T, Eigen::aligned_allocator<T>> buffers[kScratchSlots];
  auto& b = buffers[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

// Eigen's product expressions allocate their packing buffers on the heap for every product
// larger than 128 KiB; the kernels call Eigen's blocked GEMM directly with per-thread buffers
// instead (the blocking sizes are Eigen's own, as its product expressions compute them).
template <typename T>
class PackBuffers : public Eigen::internal::level3_blocking<T, T> {
 public:
  // For the row-major product C (m × n) = A (m × k)·B (k × n), which Eigen runs as its
  // column-major transpose (n × m).
  PackBuffers(Index m, Index n, Index k) {
    this->m_mc = n;
    this->m_nc = m;
    this->m_kc = k;
    Eigen::internal::computeProductBlockingSizes<T, T, 1>(this->m_kc, this->m_mc, this->m_nc, Index{1});
    this->m_blockA = thread_scratch<T>(static_cast<std::size_t>(this->m_mc * this->m_kc), kPackA);
    this->m_blockB = thread_scratch<T>(static_cast<std::size_t>(this->m_kc * this->m_nc), kPackB);
  }
};

// C += alpha·A·B with C row-major m × n (row stride ldc), A m × k and B k × n stored in the
// orders AOrder and BOrder (Eigen::RowMajor or Eigen::ColMajor) with leading dimensions lda and
// ldb. Single-threaded; callers parallelize over blocks of C.
template <typename T, int AOrder, int BOrder>
void gemm(Index m, Index n, Index k, const T* a, Index lda, const T* b, Index ldb, T* c, Index ldc, T alpha) {
  if (m == 0 || n == 0 || k == 0) return;
  PackBuffers<T> blocking(m, n, k);
  Eigen::internal::general_matrix_matrix_product<Index, T, AOrder, false, T, BOrder, false, Eigen::RowMajor, 1>::run(
      m, n, k, a, lda, b, ldb, c, 1, ldc, alpha, blocking);
}

// Sets the m × n block at c (row stride ldc) to zero.
template <typename T>
void zero_block(T* c, Index m, Index n, Index ldc) {
  Eigen::Map<Mat<T>, Eigen::Unaligned, Eigen::OuterStride<>>(c, m, n, Eigen::OuterStride<>(ldc)).setZero();
}

constexpr int kRow = Eigen::RowMajor;
constexpr int kCol = Eigen::ColMajor;

}  // namespace

template <typename T>
void linear_forward(const T* x, const T* w, const T* b, const T* residual, T* y, Index n, Index in, Index out) {
  parallel_chunks(n, gemm_row_chunk(n), [&](Index i0, Index i1) {
    const Index rows = i1 - i0;
    MapMat<T> Y(y + i0 * out, rows, out);
    // Seed y with the bias and residual (or zeros), then accumulate x·wᵀ onto it: wᵀ is w read
    // column-major.
    if (residual == nullptr && b == nullptr) {
      Y.setZero();
    } else if (residual == nullptr) {
      Y.rowwise() = CRowVec<T>(b, out);
    } else if (b == nullptr) {
      if (residual != y) Y = CMapMat<T>(residual + i0 * out, rows, out);
    } else {
      Y = CMapMat<T>(residual + i0 * out, rows, out).rowwise() + CRowVec<T>(b, out);
    }
    gemm<T, kRow, kCol>(rows, out, in, x + i0 * in, in, w, in, y + i0 * out, out, T(1));
  });
}

namespace {

// The weight gradient dyᵀ·x sums over all n rows. Over many rows it is split into row chunks of
// ~1024 (products that deep run at GEMM speed, and chunks give parallelism beyond the output
// tiles); chunk 0 writes dw, the others write partials into scratch, which are then added in
// chunk order.
struct WeightGradPlan {
  Index k_chunks, k_piece, out_piece, in_piece, out_tiles, in_tiles;
};

WeightGradPlan weight_grad_plan(Index n, Index in, Index out) {
  WeightGradPlan p{};
  p.k_chunks = std::max<Index>(1, n / 1024);
  p.k_piece = p.k_chunks == 1 ? n : round_up(ceil_div(n, p.k_chunks), 16);
  p.k_chunks = ceil_div(n, p.k_piece);
  p.out_piece = balanced_piece(out, 128);
  p.in_piece = balanced_piece(in, 512);
  p.out_tiles = ceil_div(out, p.out_piece);
  p.in_tiles = ceil_div(in, p.in_piece);
  return p;
}

}  // namespace

std::int64_t linear_backward_scratch(std::int64_t n, std::int64_t in, std::int64_t out) {
  return (weight_grad_plan(n, in, out).k_chunks - 1) * in * out;
}

template <typename T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, Index n, Index in, Index out,
                     T* scratch) {
  if (dx != nullptr) {
    parallel_chunks(n, gemm_row_chunk(n), [&](Index i0, Index i1) {
      const Index rows = i1 - i0;
      zero_block(dx + i0 * in, rows, in, in);
      gemm<T, kRow, kRow>(rows, in, out, dy + i0 * out, out, w, in, dx + i0 * in, in, T(1));
    });
  }
  const WeightGradPlan p = weight_grad_plan(n, in, out);
  const Index tiles = p.out_tiles * p.in_tiles;
  parallel_each(p.k_chunks * tiles, [&](Index task) {
    const Index kc = task / tiles;
    const Index t = task % tiles;
    const Index k0 = kc * p.k_piece;
    const Index kn = std::min(p.k_piece, n - k0);
    const Index o0 = (t / p.in_tiles) * p.out_piece;
    const Index c0 = (t % p.in_tiles) * p.in_piece;
    const Index mo = std::min(p.out_piece, out - o0);
    const Index mi = std::min(p.in_piece, in - c0);
    // The tile of dyᵀ·x over rows k0..k0+kn−1: dyᵀ is dy read column-major.
    T* tile = (kc == 0 ? dw : scratch + (kc - 1) * out * in) + o0 * in + c0;
    zero_block(tile, mo, mi, in);
    gemm<T, kCol, kRow>(mo, mi, kn, dy + k0 * out + o0, out, x + k0 * in + c0, in, tile, in, T(1));
  });
  if (p.k_chunks > 1) {
    parallel_chunks(out * in, kElemChunk, [&](Index e0, Index e1) {
      Arr<T> acc(dw + e0, e1 - e0);
      for (Index kc = 1; kc < p.k_chunks; ++kc) acc += CArr<T>(scratch + (kc - 1) * out * in + e0, e1 - e0);
    });
  }
  if (db != nullptr) {
    parallel_chunks(out, kColBlock, [&](Index o0, Index o1) {
      RowVec<T> acc(db + o0, o1 - o0);
      acc.setZero();
      for (Index i = 0; i < n; ++i) acc += CRowVec<T>(dy + i * out + o0, o1 - o0);
    });
  }
}

template <typename T>
void embedding_forward(const std::int32_t* ids, const T* table, T* y, Index n, Index d, bool accumulate) {
  parallel_chunks(n, row_chunk(d), [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) {
      RowVec<T> yi(y + i * d, d);
      const CRowVec<T> ti(table + static_cast<Index>(ids[i]) * d, d);
      if (accumulate) {
        yi += ti;
      } else {
        yi = ti;
      }
    }
  });
}

template <typename T>
void embedding_backward(const std::int32_t* ids, const T* dy, T* dtable, Index n, Index d) {
  // Column blocks in parallel; within a block rows are added in index order.
  parallel_chunks(d, kColBlock, [&](Index c0, Index c1) {
    const Index m = c1 - c0;
    for (Index i = 0; i < n; ++i) {
      RowVec<T>(dtable + static_cast<Index>(ids[i]) * d + c0, m) += CRowVec<T>(dy + i * d + c0, m);
    }
  });
}

template <typename T>
void layernorm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, Index n, Index d, T eps) {
  const CArr<T> g(gamma, d);
  const CArr<T> b(beta, d);
  const T inv_d = T(1) / static_cast<T>(d);
  parallel_chunks(n, row_chunk(d), [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) {
      const CArr<T> xi(x + i * d, d);
      const T mu = xi.sum() * inv_d;
      const T var = (xi - mu).square().sum() * inv_d;
      const T rs = T(1) / std::sqrt(var + eps);
      mean[i] = mu;
      rstd[i] = rs;
      Arr<T>(y + i * d, d) = (xi - mu) * rs * g + b;
    }
  });
}

template <typename T>
void layernorm_backward(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma,
                        T* dbeta, Index n, Index d, bool accumulate_dx) {
  const CArr<T> g(gamma, d);
  const T inv_d = T(1) / static_cast<T>(d);
  // With xhat = (x − mean)·rstd and gy = dy·gamma:
  // dx = rstd·(gy − mean(gy) − xhat·mean(gy·xhat)).
  parallel_chunks(n, row_chunk(d), [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) {
      const T mu = mean[i];
      const T rs = rstd[i];
      const CArr<T> xi(x + i * d, d);
      const CArr<T> dyi(dy + i * d, d);
      const auto xhat = (xi - mu) * rs;
      const auto gy = dyi * g;
      const T mean_gy = gy.sum() * inv_d;
      const T mean_gyx = (gy * xhat).sum() * inv_d;
      Arr<T> dxi(dx + i * d, d);
      if (accumulate_dx) {
        dxi += rs * (gy - mean_gy - xhat * mean_gyx);
      } else {
        dxi = rs * (gy - mean_gy - xhat * mean_gyx);
      }
    }
  });
  parallel_chunks(d, kColBlock, [&](Index c0, Index c1) {
    const Index m = c1 - c0;
    Arr<T> dg(dgamma + c0, m);
    Arr<T> dbt(dbeta + c0, m);
    dg.setZero();
    dbt.setZero();
    for (Index i = 0; i < n; ++i) {
      const CArr<T> xi(x + i * d + c0, m);
      const CArr<T> dyi(dy + i * d + c0, m);
      dg += dyi * ((xi - mean[i]) * rstd[i]);
      dbt += dyi;
    }
  });
}

namespace {
template <typename T>
constexpr T kGeluC = T(0.7978845608028654);  // √(2/π)
template <typename T>
constexpr T kGeluA = T(0.044715);
}  // namespace

template <typename T>
void gelu_forward(const T* x, T* y, Index n) {
  parallel_chunks(n, kElemChunk, [&](Index i0, Index i1) {
    for (Index j = i0; j < i1; j += kGeluBlock) {
      const Index m = std::min(kGeluBlock, i1 - j);
      const CArr<T> xa(x + j, m);
      Arr<T>(y + j, m) = T(0.5) * xa * (T(1) + (kGeluC<T> * (xa + kGeluA<T> * xa.cube())).tanh());
    }
  });
}

template <typename T>
void gelu_backward(const T* x, const T* dy, T* dx, Index n) {
  // d/dx [x/2·(1 + tanh u)] = (1 + tanh u)/2 + x/2·(1 − tanh² u)·√(2/π)·(1 + 3·0.044715·x²).
  parallel_chunks(n, kElemChunk, [&](Index i0, Index i1) {
    Eigen::Array<T, Eigen::Dynamic, 1, 0, kGeluBlock, 1> t;
    for (Index j = i0; j < i1; j += kGeluBlock) {
      const Index m = std::min(kGeluBlock, i1 - j);
      const CArr<T> xa(x + j, m);
      t = (kGeluC<T> * (xa + kGeluA<T> * xa.cube())).tanh();
      Arr<T>(dx + j, m) = CArr<T>(dy + j, m) * (T(0.5) * (T(1) + t) + T(0.5) * xa * (T(1) - t.square()) * kGeluC<T> *
                                                                          (T(1) + T(3) * kGeluA<T> * xa.square()));
    }
  });
}

template <typename T>
void relu_forward(const T* x, T* y, Index n) {
  parallel_chunks(n, kElemChunk,
                  [&](Index i0, Index i1) { Arr<T>(y + i0, i1 - i0) = CArr<T>(x + i0, i1 - i0).max(T(0)); });
}

template <typename T>
void relu_backward(const T* y, const T* dy, T* dx, Index n) {
  parallel_chunks(n, kElemChunk, [&](Index i0, Index i1) {
    const Index m = i1 - i0;
    Arr<T>(dx + i0, m) = (CArr<T>(y + i0, m) > T(0)).select(CArr<T>(dy + i0, m), T(0));
  });
}

template <typename T>
CrossEntropy softmax_cross_entropy(const T* logits, const std::int32_t* targets, T* dlogits, Index n, Index classes,
                                   T grad_scale) {
  // parallel_deterministic_reduce splits the range the same way for any thread count and joins
  // the halves in a fixed order, so the sum is reproducible.
  const Index grain = row_chunk(classes);
  return tbb::parallel_deterministic_reduce(
      tbb::blocked_range<Index>(0, n, grain), CrossEntropy{},
      [&](const tbb::blocked_range<Index>& r, CrossEntropy acc) {
        for (Index i = r.begin(); i != r.end(); ++i) {
          const CArr<T> z(logits + i * classes, classes);
          const Index t = targets[i];
          const T m = z.maxCoeff();
          const T zt = z[t];
          if (zt == m && (t == 0 || (z.head(t) < m).all())) ++acc.correct;
          // The numerators exp(z − m) are evaluated once, into a vector-aligned scratch row, and
          // both the sum and the gradient are taken from them. Eigen peels scalar iterations up
          // to the destination's first aligned address, and its scalar exp (libm) and packet exp
          // differ in the last bit: evaluated into the caller's buffer, the bits depended on where
          // that buffer starts (in place and out of place disagreed on AVX2, issue 12). Into an
          // aligned row the split depends on the row length alone, so evaluation, training, in
          // place and out of place give the same bits.
          Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::AlignedMax> e(
              thread_scratch<T>(static_cast<std::size_t>(classes), kSoftmaxRow), classes);
          e = (z - m).exp();
          const T s = e.sum();
          if (dlogits != nullptr) {
            Arr<T> dz(dlogits + i * classes, classes);  // may be the logits: zt and m are read
            dz = e * (grad_scale / s);                  // one rounding per element either way
            dz[t] -= grad_scale;
          }
          acc.loss_sum += static_cast<double>(m) + std::log(static_cast<double>(s)) - static_cast<double>(zt);
        }
        return acc;
      },
      [](CrossEntropy a, const CrossEntropy& b) {
        a.loss_sum += b.loss_sum;
        a.correct += b.correct;
        return a;
      });
}

namespace {

constexpr Index kAttnBlock = 64;  // query rows per causal block

// Scores of one block of queries against keys 0..keys−1, stored with rows padded to a multiple of
// 16 elements so that every row starts vector-aligned.
template <typename T>
using ScoreMat = Eigen::Map<Mat<T>, Eigen::Aligned16, Eigen::OuterStride<>>;

Index score_stride(Index keys) { return round_up(keys, 16); }

// Softmax of row r of a score block in place over keys 0..valid−1 (scaled by `scale`); keys
// valid..keys−1 become exact zeros. Returns the log-sum-exp of the scaled scores.
template <typename T>
T causal_softmax_row(ScoreMat<T>& S, Index r, Index valid, Index keys, T scale) {
  auto row = S.row(r).head(keys).array();
  if (valid < keys) row.tail(keys - valid).setConstant(-std::numeric_limits<T>::infinity());
  const T m = row.maxCoeff();
  row = ((row - m) * scale).exp();
  if (valid < keys) row.tail(keys - valid).setZero();
  const T sum = row.sum();
  row *= T(1) / sum;
  return m * scale + std::log(sum);
}

}  // namespace

template <typename T>
void attention_forward(const T* qkv, T* y, T* lse, const AttentionShape& s) {
  const Index hd = s.head_dim;
  const Index d = s.heads * hd;
  const Index ld = 3 * d;
  const Index seq = s.seq;
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  const Index block = std::min(kAttnBlock, seq);
  parallel_each(s.batch * s.heads, [&](Index bh) {
    const Index b = bh / s.heads;
    const Index h = bh % s.heads;
    const T* q = qkv + b * seq * ld + h * hd;
    const T* k = q + d;
    const T* v = q + 2 * d;
    T* yb = y + b * seq * d + h * hd;
    T* L = lse + bh * seq;
    T* scratch = thread_scratch<T>(static_cast<std::size_t>(block * score_stride(seq)), kScores);
    for (Index i0 = 0; i0 < seq; i0 += block) {
      const Index rows = std::min(block, seq - i0);
      const Index keys = i0 + rows;  // causal: this block's queries see keys 0..i0+rows−1
      const Index ss = score_stride(keys);
      // S = Q_block·K[0..keys)ᵀ (kᵀ is k read column-major), then softmax rows in place.
      zero_block(scratch, rows, keys, ss);
      gemm<T, kRow, kCol>(rows, keys, hd, q + i0 * ld, ld, k, ld, scratch, ss, T(1));
      ScoreMat<T> S(scratch, rows, keys, Eigen::OuterStride<>(ss));
      for (Index r = 0; r < rows; ++r) L[i0 + r] = causal_softmax_row(S, r, i0 + r + 1, keys, scale);
      // Y_block = P·V[0..keys).
      zero_block(yb + i0 * d, rows, hd, d);
      gemm<T, kRow, kRow>(rows, hd, keys, scratch, ss, v, ld, yb + i0 * d, d, T(1));
    }
  });
}

template <typename T>
void attention_backward(const T* qkv, const T* y, const T* lse, const T* dy, T* dqkv, const AttentionShape& s) {
  const Index hd = s.head_dim;
  const Index d = s.heads * hd;
  const Index ld = 3 * d;
  const Index seq = s.seq;
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  const Index block = std::min(kAttnBlock, seq);
  parallel_each(s.batch * s.heads, [&](Index bh) {
    const Index b = bh / s.heads;
    const Index h = bh % s.heads;
    const Index off = b * seq * ld + h * hd;
    const T* q = qkv + off;
    const T* k = q + d;
    const T* v = q + 2 * d;
    T* dq = dqkv + off;
    T* dk = dq + d;
    T* dv = dq + 2 * d;
    const T* dyb = dy + b * seq * d + h * hd;
    const CSMat<T> Y(y + b * seq * d + h * hd, seq, hd, Eigen::OuterStride<>(d));
    const CSMat<T> dY(dyb, seq, hd, Eigen::OuterStride<>(d));
    const T* L = lse + bh * seq;
    const auto need = static_cast<std::size_t>(block * score_stride(seq));
    T* p_buf = thread_scratch<T>(need, kScores);
    T* ds_buf = thread_scratch<T>(need, kScoreGrads);
    zero_block(dk, seq, hd, ld);
    zero_block(dv, seq, hd, ld);
    for (Index i0 = 0; i0 < seq; i0 += block) {
      const Index rows = std::min(block, seq - i0);
      const Index keys = i0 + rows;
      const Index ss = score_stride(keys);
      ScoreMat<T> P(p_buf, rows, keys, Eigen::OuterStride<>(ss));
      ScoreMat<T> dS(ds_buf, rows, keys, Eigen::OuterStride<>(ss));
      // Recompute the probabilities from the saved log-sum-exp; masked keys are exact zeros.
      zero_block(p_buf, rows, keys, ss);
      gemm<T, kRow, kCol>(rows, keys, hd, q + i0 * ld, ld, k, ld, p_buf, ss, T(1));
      for (Index r = 0; r < rows; ++r) {
        const Index valid = i0 + r + 1;
        auto row = P.row(r).array();
        row = (row * scale - L[i0 + r]).exp();
        if (valid < keys) row.tail(keys - valid).setZero();
      }
      // dS = scale·P ⊙ (dP − rowsum(P ⊙ dP)), with dP = dY·Vᵀ and rowsum(P ⊙ dP) = dY_i·Y_i.
      zero_block(ds_buf, rows, keys, ss);
      gemm<T, kRow, kCol>(rows, keys, hd, dyb + i0 * d, d, v, ld, ds_buf, ss, T(1));
      for (Index r = 0; r < rows; ++r) {
        const T di = dY.row(i0 + r).dot(Y.row(i0 + r));
        dS.row(r).array() = P.row(r).array() * (dS.row(r).array() - di) * scale;
      }
      // dV[0..keys) += Pᵀ·dY_block, dQ_block = dS·K[0..keys), dK[0..keys) += dSᵀ·Q_block
      // (Pᵀ and dSᵀ are P and dS read column-major).
      gemm<T, kCol, kRow>(keys, hd, rows, p_buf, ss, dyb + i0 * d, d, dv, ld, T(1));
      zero_block(dq + i0 * ld, rows, hd, ld);
      gemm<T, kRow, kRow>(rows, hd, keys, ds_buf, ss, k, ld, dq + i0 * ld, ld, T(1));
      gemm<T, kCol, kRow>(keys, hd, rows, ds_buf, ss, q + i0 * ld, ld, dk, ld, T(1));
    }
  });
}

#define LOCO_LAYERS_INSTANTIATE(T)                                                                                \
  template void linear_forward<T>(const T*, const T*, const T*, const T*, T*, Index, Index, Index);               \
  template void linear_backward<T>(const T*, const T*, const T*, T*, T*, T*, Index, Index, Index, T*);            \
  template void embedding_forward<T>(const std::int32_t*, const T*, T*, Index, Index, bool);                      \
  template void embedding_backward<T>(const std::int32_t*, const T*, T*, Index, Index);                           \
  template void layernorm_forward<T>(const T*, const T*, const T*, T*, T*, T*, Index, Index, T);                  \
  template void layernorm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, Index, Index, \
                                      bool);                                                                      \
  template void gelu_forward<T>(const T*, T*, Index);                                                             \
  template void gelu_backward<T>(const T*, const T*, T*, Index);                                                  \
  template void relu_forward<T>(const T*, T*, Index);                                                             \
  template void relu_backward<T>(const T*, const T*, T*, Index);                                                  \
  template CrossEntropy softmax_cross_entropy<T>(const T*, const std::int32_t*, T*, Index, Index, T);             \
  template void attention_forward<T>(const T*, T*, T*, const AttentionShape&);                                    \
  template void attention_backward<T>(const T*, const T*, const T*, const T*, T*, const AttentionShape&);

LOCO_LAYERS_INSTANTIATE(float)
LOCO_LAYERS_INSTANTIATE(double)

}  // namespace loco::model::layers
