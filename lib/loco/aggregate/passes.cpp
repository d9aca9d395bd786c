// The reduction passes (aggregate.hpp): streaming dense deltas block by block, tensor by tensor
// (compressed deltas, contributor-mean, median-norm clipping), and the robust rules; and the outer step.
#include "loco/core/detail/eigen.hpp"  // pins Eigen's product blocking

#include <Eigen/Core>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>

#include "loco/aggregate/detail/aggregator.hpp"
#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/robust/dp.hpp"

namespace loco::aggregate::detail {
namespace {

// acc = Σ_k w_k·x_k (first) or acc += Σ_k w_k·x_k over G inputs, in float64, adding one term at a
// time in k order: the same roundings as one delta per pass, with one pass over acc per G deltas.
template <std::size_t G>
void accumulate_n(const float* const* xs, const double* w, double* __restrict acc, std::size_t n, bool first) {
  std::array<const float*, G> x;
  std::array<double, G> wk;
  for (std::size_t k = 0; k < G; ++k) x[k] = xs[k], wk[k] = w[k];
  if (first) {
    for (std::size_t j = 0; j < n; ++j) {
      double a = wk[0] * static_cast<double>(x[0][j]);
      for (std::size_t k = 1; k < G; ++k) a += wk[k] * static_cast<double>(x[k][j]);
      acc[j] = a;
    }
  } else {
    for (std::size_t j = 0; j < n; ++j) {
      double a = acc[j];
      for (std::size_t k = 0; k < G; ++k) a += wk[k] * static_cast<double>(x[k][j]);
      acc[j] = a;
    }
  }
}

void accumulate(std::size_t g, const float* const* x, const double* w, double* acc, std::size_t n, bool first) {
  static_assert(kGroup == 4);
  switch (g) {
    case 1: return accumulate_n<1>(x, w, acc, n, first);
    case 2: return accumulate_n<2>(x, w, acc, n, first);
    case 3: return accumulate_n<3>(x, w, acc, n, first);
    default: return accumulate_n<4>(x, w, acc, n, first);
  }
}

// dbar = float32(acc); false when a value is NaN or Inf (counted with an integer compare on the
// exponent field, which vectorizes).
bool round_to_float(const double* acc, float* dbar, std::size_t n) {
  std::uint32_t nonfinite = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const float f = static_cast<float>(acc[j]);
    dbar[j] = f;
    std::uint32_t b;
    std::memcpy(&b, &f, 4);
    nonfinite += (b & kExpMask) == kExpMask ? 1u : 0u;
  }
  return nonfinite == 0;
}

}  // namespace

// Fills dst with elements [e0, e0 + n) of the feed's tensor as float32. In row mode (no offset)
// e0 and n are whole rows.
void Aggregator::fetch(const Feed& f, std::size_t e0, std::size_t n, float* dst, Scratch& s) const {
  const DType dt = f.t->dtype;
  const std::size_t es = dtype_size(dt);
  std::byte* target = dt == DType::F32 ? reinterpret_cast<std::byte*>(dst) : s.raw.data();
  const std::span<std::byte> bytes(target, n * es);
  if (f.offset) {
    io::read_raw(*f.src, *f.offset + e0 * es, bytes);
  } else {
    const auto row_el = static_cast<std::size_t>(f.t->row_elements());
    std::lock_guard lock(hdf5_mutex_);
    f.src->read_rows(*f.t, static_cast<std::int64_t>(e0 / row_el), static_cast<std::int64_t>(n / row_el), bytes);
  }
  if (dt != DType::F32) convert_elements(dt, target, DType::F32, reinterpret_cast<std::byte*>(dst), n);
}

// One reduction and outer step over every tensor, writing into a fresh sink. Returns false as
// soon as a block of Δ̄ holds a NaN or Inf (some delta does: the weights are finite and > 0).
//
// The row blocks of a tensor are processed in parallel, each by one thread, in pieces: a piece
// reads its elements of every delta (kGroup deltas at a time, so the buffers stay in the core's
// cache), sums them into its float64 accumulator in delta order, reads θ and the state and
// applies the optimizer into the thread's output block, which the thread then writes (one HDF5
// call at a time) while the other threads go on computing. No barrier between blocks, so a
// thread held up by the machine's other work does not stall the rest. Every element sees the
// same operations in the same order whatever the block, piece and thread counts, so the result
// is bit-identical for all of them; the norms are summed per block in block order.
bool Aggregator::reduce_pass(const std::vector<Delta*>& active) {
  const std::vector<double> w = weights(active);
  make_sink(active);
  const std::size_t n_deltas = active.size();
  std::size_t block_max = 0, piece_max = 0;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const io::TensorInfo& p = *params_[i];
    block_max = std::max(block_max, static_cast<std::size_t>(std::min(rows_per_block(p, opt_.block_bytes), p.rows()) *
                                                             p.row_elements()));
    piece_max = std::max(piece_max, piece_elements(i, active));
  }
  piece_max = std::min(piece_max, block_max);
  std::vector<Scratch> scratch(static_cast<std::size_t>(tbb::this_task_arena::max_concurrency()));
  for (Scratch& sc : scratch) {
    for (std::size_t k = 0; k < std::min(kGroup, n_deltas); ++k) sc.x[k].resize(piece_max);
    if (any_converted_) sc.raw.resize(piece_max * max_delta_dtype_);
    sc.acc.resize(piece_max);
    sc.dbar.resize(piece_max);
    sc.old.resize(piece_max);
    sc.theta.resize(block_max);
    sc.slots.assign(slots_.size(), std::vector<float>(block_max));
  }
  std::vector<double> sq_update, sq_step;
  double update_sq = 0, step_sq = 0;
  const std::int64_t t = step_ + 1;
  const double lr = optimizer_->lr();
  std::atomic<bool> bad{false};
  std::vector<Feed> feeds(n_deltas);
  Feed param_feed;
  std::vector<Feed> state_feeds(slots_.size());

  for (std::size_t i = 0; i < params_.size(); ++i) {
    const io::TensorInfo& p = *params_[i];
    for (std::size_t k = 0; k < n_deltas; ++k)
      feeds[k] = {active[k]->src.get(), active[k]->tensors[i], active[k]->offsets[i]};
    param_feed = {model_.get(), &p, param_offsets_[i]};
    for (std::size_t sl = 0; sl < slots_.size(); ++sl)
      state_feeds[sl] =
          state_[sl].empty() || !state_[sl][i] ? Feed{} : Feed{model_.get(), state_[sl][i], state_offsets_[sl][i]};
    const auto row_el = static_cast<std::size_t>(p.row_elements());
    const std::int64_t step_rows = rows_per_block(p, opt_.block_bytes);
    const std::size_t piece = piece_elements(i, active);
    const auto blocks = static_cast<std::size_t>((p.rows() + step_rows - 1) / step_rows);
    sq_update.assign(blocks, 0.0);
    sq_step.assign(blocks, 0.0);
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, blocks, 1), [&](const tbb::blocked_range<std::size_t>& r) {
      Scratch& sc = scratch[static_cast<std::size_t>(tbb::this_task_arena::current_thread_index())];
      std::array<std::span<float>, 4> spans;
      for (std::size_t b = r.begin(); b != r.end() && !bad.load(std::memory_order_relaxed); ++b) {
        const std::int64_t r0 = static_cast<std::int64_t>(b) * step_rows;
        const std::int64_t nrows = std::min(step_rows, p.rows() - r0);
        const std::size_t n = static_cast<std::size_t>(nrows) * row_el,
                          block_e0 = static_cast<std::size_t>(r0) * row_el;
        double sq_u = 0, sq_s = 0;
        for (std::size_t lo = 0; lo < n; lo += piece) {
          const std::size_t len = std::min(piece, n - lo), e0 = block_e0 + lo;
          for (std::size_t k0 = 0; k0 < n_deltas; k0 += kGroup) {
            const std::size_t g = std::min(kGroup, n_deltas - k0);
            std::array<const float*, kGroup> x{};
            for (std::size_t k = 0; k < g; ++k) {
              fetch(feeds[k0 + k], e0, len, sc.x[k].data(), sc);
              x[k] = sc.x[k].data();
            }
            accumulate(g, x.data(), w.data() + k0, sc.acc.data(), len, k0 == 0);
          }
          if (!round_to_float(sc.acc.data(), sc.dbar.data(), len)) {
            bad = true;
            return;
          }
          if (sigma_ > 0) robust::add_dp_noise(std::span(sc.dbar.data(), len), sigma_, opt_.dp.seed, round_, i, e0);
          float* th = sc.theta.data() + lo;
          fetch(param_feed, e0, len, th, sc);
          for (std::size_t sl = 0; sl < slots_.size(); ++sl) {
            if (state_feeds[sl].t) fetch(state_feeds[sl], e0, len, sc.slots[sl].data() + lo, sc);
            else std::fill_n(sc.slots[sl].data() + lo, len, 0.0f);
            spans[sl] = std::span(sc.slots[sl].data() + lo, len);
          }
          std::memcpy(sc.old.data(), th, len * 4);
          optimizer_->apply(std::span(th, len), std::span<const float>(sc.dbar.data(), len),
                            std::span<const std::span<float>>(spans.data(), slots_.size()), t, lr);
          using V = Eigen::Map<const Eigen::VectorXf>;
          const auto el = static_cast<Eigen::Index>(len);
          sq_u += V(sc.dbar.data(), el).cast<double>().squaredNorm();
          sq_s += (V(th, el).cast<double>() - V(sc.old.data(), el).cast<double>()).squaredNorm();
        }
        sq_update[b] = sq_u;
        sq_step[b] = sq_s;
        write_block(i, r0, nrows, sc.theta.data(), sc.slots, n);
      }
    });
    if (bad) {
      log::info("non-finite values in Δ̄ of tensor {}; finding the non-finite deltas and restarting without them",
                p.name);
      summary_.bytes_read += summary_.delta_bytes_read;
      summary_.delta_bytes_read = 0;
      return false;
    }
    std::uint64_t delta_bytes = 0, model_bytes = 4;
    for (const Feed& f : feeds) delta_bytes += dtype_size(f.t->dtype);
    for (const Feed& f : state_feeds) model_bytes += f.t ? 4 : 0;
    summary_.delta_bytes_read += static_cast<std::uint64_t>(p.numel()) * delta_bytes;
    summary_.bytes_read += static_cast<std::uint64_t>(p.numel()) * model_bytes;
    for (double v : sq_update) update_sq += v;
    for (double v : sq_step) step_sq += v;
  }
  summary_.bytes_read += summary_.delta_bytes_read;
  return finish_pass(update_sq, step_sq);
}

// Elements per piece of tensor i: kPieceElements when every file of the pass reads it raw,
// else whole rows (read_rows reads rows), at least one.
std::size_t Aggregator::piece_elements(std::size_t i, const std::vector<Delta*>& active) const {
  bool raw = param_offsets_[i].has_value();
  for (const Delta* d : active) raw = raw && d->offsets[i].has_value();
  for (std::size_t sl = 0; sl < slots_.size(); ++sl)
    if (!state_[sl].empty() && state_[sl][i]) raw = raw && state_offsets_[sl][i].has_value();
  const io::TensorInfo& p = *params_[i];
  if (raw) return kPieceElements;
  return static_cast<std::size_t>(rows_per_block(p, kPieceElements * 4) * std::max<std::int64_t>(p.row_elements(), 1));
}

void Aggregator::write_block(std::size_t i, std::int64_t r0, std::int64_t nrows, const float* theta,
                             const std::vector<std::vector<float>>& slot_buf, std::size_t n) {
  std::lock_guard lock(hdf5_mutex_);
  sink_->write_rows(i, r0, nrows, std::as_bytes(std::span(theta, n)));
  for (std::size_t s = 0; s < slots_.size(); ++s)
    sink_->write_rows((s + 1) * params_.size() + i, r0, nrows, std::as_bytes(std::span(slot_buf[s].data(), n)));
}

// The reduction and outer step tensor by tensor (aggregate.hpp: compressed deltas, contributor-mean,
// median-norm clipping). Per tensor: the clip factors from one read of every delta, the float64 sum
// Σ (w_k·c_k)·x_k (and the contributor counts) from a second, in delta order; Δ̄ rounded to float32
// (and transformed back from DCT coefficients); then the optimizer block by block. Returns false as
// soon as a delta holds a NaN or Inf, with its bad_tensor set.
bool Aggregator::tensor_pass(const std::vector<Delta*>& active) {
  const std::vector<double> w = weights(active);
  make_sink(active);
  for (Delta* d : active) d->clipped_tensors = 0;
  const std::size_t n_deltas = active.size();
  const bool by_count = opt_.reduce == Reduction::ContributorMean;
  Loaded l;
  std::vector<double> acc, factor(n_deltas, 1.0), norms(n_deltas, 0.0);
  std::vector<float> count;
  Scratch sc;
  sc.slots.assign(slots_.size(), {});
  double update_sq = 0, step_sq = 0;
  const std::int64_t t = step_ + 1;
  const double lr = optimizer_->lr();

  for (std::size_t i = 0; i < params_.size(); ++i) {
    const io::TensorInfo& p = *params_[i];
    const auto D = static_cast<std::size_t>(shape_numel(domain_shape(i)));
    if (opt_.clip == Clip::MedianNorm) {
      for (std::size_t k = 0; k < n_deltas; ++k) {
        load(*active[k], i, false, l);
        if (!all_finite(l.x.f32())) return non_finite(*active[k], p);
        norms[k] = std::sqrt(squared_norm(l.x.f32()));
      }
      const double m = median(norms);
      for (std::size_t k = 0; k < n_deltas; ++k) {
        factor[k] = norms[k] > m ? m / norms[k] : 1.0;
        active[k]->clipped_tensors += norms[k] > m ? 1 : 0;
      }
    }
    acc.assign(D, 0.0);
    if (by_count) count.assign(D, 0.0f);
    for (std::size_t k = 0; k < n_deltas; ++k) {
      load(*active[k], i, by_count, l);
      const auto x = l.x.f32();
      if (!all_finite(x)) return non_finite(*active[k], p);
      const double f = w[k] * factor[k];
      const float* mask = l.mask.numel() > 0 ? l.mask.f32().data() : nullptr;
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, D, kPieceElements), [&](const auto& r) {
        for (std::size_t j = r.begin(); j != r.end(); ++j) acc[j] += f * static_cast<double>(x[j]);
        if (by_count) {
          if (mask)
            for (std::size_t j = r.begin(); j != r.end(); ++j) count[j] += mask[j];
          else
            for (std::size_t j = r.begin(); j != r.end(); ++j) count[j] += 1.0f;
        }
      });
    }
    Tensor dbar = Tensor::uninitialized({static_cast<std::int64_t>(D)});
    const auto db = dbar.f32();
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, D, kPieceElements), [&](const auto& r) {
      for (std::size_t j = r.begin(); j != r.end(); ++j)
        db[j] = !by_count         ? static_cast<float>(acc[j])
                : count[j] > 0.0f ? static_cast<float>(acc[j] / static_cast<double>(count[j]))
                                  : 0.0f;
    });
    if (coef_domain_[i]) dbar = coef_domain_[i]->inverse(std::move(dbar));
    if (sigma_ > 0) robust::add_dp_noise(dbar.f32(), sigma_, opt_.dp.seed, round_, i, 0);
    if (!all_finite(dbar.f32()))
      throw_error(ErrorKind::Numeric, "tensor {}: the reduced delta is not finite; nothing written", p.name);
    outer_step(i, dbar.f32(), sc, t, lr, update_sq, step_sq);
  }
  for (std::size_t k = 0; k < n_deltas; ++k) summary_.contributors[k].clipped_tensors = active[k]->clipped_tensors;
  return finish_pass(update_sq, step_sq);
}

// A robust rule (aggregate.hpp): the Gram pass when the rule needs one, then block by block the rule
// and the outer step. Columns are x_k = w_k·Δ_k (w_k the staleness weight) in reduction order, then
// centered clipping's previous centre. Dense deltas are read a block at a time; a compressed delta's
// tensor is decoded once per pass and served from memory. Returns false as soon as a delta holds a
// NaN or Inf, with its bad_tensor set.
bool Aggregator::robust_pass(const std::vector<Delta*>& active) {
  const std::vector<double> w = weights(active);
  const std::size_t n = active.size();
  robust::Reducer red(opt_.robust, n, robust::ReduceContext{opt_.seed, round_});
  const std::size_t cols = red.columns();
  std::size_t block_max = 1;
  for (const io::TensorInfo* p : params_)
    block_max = std::max(block_max, static_cast<std::size_t>(std::min(rows_per_block(*p, opt_.block_bytes), p->rows()) *
                                                             p->row_elements()));
  std::vector<std::vector<float>> buf(cols, std::vector<float>(block_max));
  std::vector<Loaded> decoded(n);
  std::vector<const float*> ptr(cols);
  Scratch sc;
  if (any_converted_ || !center_.empty()) sc.raw.resize(block_max * 8);
  sc.theta.resize(block_max);
  sc.old.resize(block_max);
  sc.slots.assign(slots_.size(), std::vector<float>(block_max));
  std::vector<float> dbar(block_max);

  // Tensor i of every compressed delta, decoded and scaled by its weight.
  auto load_tensor = [&](std::size_t i) {
    for (std::size_t k = 0; k < n; ++k) {
      if (!active[k]->compressed) continue;
      load(*active[k], i, false, decoded[k]);
      const auto x = decoded[k].x.f32();
      if (!all_finite(x)) return non_finite(*active[k], *params_[i]);
      if (w[k] != 1.0)
        for (float& v : x) v = static_cast<float>(w[k] * static_cast<double>(v));
    }
    return true;
  };
  // The columns of elements [e0, e0 + len) (whole rows) of tensor i.
  auto fill = [&](std::size_t i, std::size_t e0, std::size_t len) {
    for (std::size_t k = 0; k < n; ++k) {
      Delta& d = *active[k];
      if (d.compressed) {
        ptr[k] = decoded[k].x.f32().data() + e0;
        continue;
      }
      float* dst = buf[k].data();
      fetch(Feed{d.src.get(), d.tensors[i], d.offsets[i]}, e0, len, dst, sc);
      const auto bytes = len * dtype_size(d.tensors[i]->dtype);
      summary_.delta_bytes_read += bytes;
      summary_.bytes_read += bytes;
      if (max_exponent(dst, len) == kExpMask) return non_finite(d, *params_[i]);
      if (w[k] != 1.0)
        for (std::size_t j = 0; j < len; ++j) dst[j] = static_cast<float>(w[k] * static_cast<double>(dst[j]));
      ptr[k] = dst;
    }
    if (cols > n) {
      float* dst = buf[n].data();
      if (center_[i]) {
        fetch(Feed{model_.get(), center_[i], center_offsets_[i]}, e0, len, dst, sc);
        summary_.bytes_read += len * dtype_size(center_[i]->dtype);
        if (max_exponent(dst, len) == kExpMask)
          throw_error(ErrorKind::BadInput, "{}: the centre /{}/{} holds NaN or Inf", summary_.model, kCenterGroup,
                      params_[i]->name);
      } else {
        std::fill_n(dst, len, 0.0f);
      }
      ptr[n] = dst;
    }
    return true;
  };
  auto for_blocks = [&](std::size_t i, auto&& body) {
    const io::TensorInfo& p = *params_[i];
    const std::int64_t step_rows = rows_per_block(p, opt_.block_bytes);
    for (std::int64_t r0 = 0; r0 < p.rows(); r0 += step_rows) {
      const std::int64_t nrows = std::min(step_rows, p.rows() - r0);
      if (!body(r0, nrows, static_cast<std::size_t>(r0 * p.row_elements()),
                static_cast<std::size_t>(nrows * p.row_elements())))
        return false;
    }
    return true;
  };

  summary_.robust_passes = 1;
  if (red.needs_gram()) {
    summary_.robust_passes = 2;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      if (!load_tensor(i)) return false;
      const bool ok = for_blocks(i, [&](std::int64_t, std::int64_t, std::size_t e0, std::size_t len) {
        if (!fill(i, e0, len)) return false;
        red.add_gram(ptr, len);
        return true;
      });
      if (!ok) return false;
    }
    red.finish_gram();
  }
  const robust::PlanInfo& plan = red.plan();
  summary_.robust_coefficients = plan.coefficients;
  summary_.robust_iterations = plan.iterations;
  make_sink(active);
  std::vector<std::int64_t> selected(plan.selected.begin(), plan.selected.end());
  if (opt_.robust.pre.empty())
    for (std::int64_t k : selected) summary_.contributors[static_cast<std::size_t>(k)].selected = true;
  if (!selected.empty()) sink_->set_attribute("robust_selected", selected);
  if (!plan.coefficients.empty()) sink_->set_attribute("robust_coefficients", plan.coefficients);

  double update_sq = 0, step_sq = 0;
  const std::int64_t t = step_ + 1;
  const double lr = optimizer_->lr();
  const std::size_t center_index = (slots_.size() + 1) * params_.size();
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (!load_tensor(i)) return false;
    const bool ok = for_blocks(i, [&](std::int64_t r0, std::int64_t nrows, std::size_t e0, std::size_t len) {
      if (!fill(i, e0, len)) return false;
      red.reduce(ptr, len, dbar.data());
      if (!all_finite(std::span<const float>(dbar.data(), len)))
        throw_error(ErrorKind::Numeric, "tensor {}: the robust Δ̄ is not finite; nothing written", params_[i]->name);
      if (center_out_) {
        std::lock_guard lock(hdf5_mutex_);
        sink_->write_rows(center_index + i, r0, nrows, std::as_bytes(std::span<const float>(dbar.data(), len)));
      }
      outer_block(i, r0, nrows, dbar.data(), sc, t, lr, update_sq, step_sq);
      return true;
    });
    if (!ok) return false;
  }
  return finish_pass(update_sq, step_sq);
}

// The outer optimizer on tensor i with the reduced delta dbar, block by block: reads θ and the state,
// applies the step, writes the new θ and state, and adds to the squared norms.
void Aggregator::outer_step(std::size_t i, std::span<const float> dbar, Scratch& sc, std::int64_t t, double lr,
                            double& update_sq, double& step_sq) {
  const io::TensorInfo& p = *params_[i];
  const auto row_el = static_cast<std::size_t>(p.row_elements());
  const std::int64_t step_rows = rows_per_block(p, opt_.block_bytes);
  const std::size_t block = static_cast<std::size_t>(std::min(step_rows, p.rows())) * row_el;
  sc.theta.resize(block);
  sc.old.resize(block);
  for (auto& sl : sc.slots) sl.resize(block);
  for (std::int64_t r0 = 0; r0 < p.rows(); r0 += step_rows) {
    const std::int64_t nrows = std::min(step_rows, p.rows() - r0);
    outer_block(i, r0, nrows, dbar.data() + static_cast<std::size_t>(r0) * row_el, sc, t, lr, update_sq, step_sq);
  }
}

// The outer step on rows [r0, r0 + nrows) of tensor i with their reduced delta dbar (sc.theta, sc.old
// and sc.slots hold at least that many elements): reads θ and the state, applies the step, writes the
// rows of the new θ and state and adds to the squared norms.
void Aggregator::outer_block(std::size_t i, std::int64_t r0, std::int64_t nrows, const float* dbar_rows, Scratch& sc,
                             std::int64_t t, double lr, double& update_sq, double& step_sq) {
  const io::TensorInfo& p = *params_[i];
  const auto row_el = static_cast<std::size_t>(p.row_elements());
  const Feed param_feed{model_.get(), &p, param_offsets_[i]};
  std::array<std::span<float>, 4> spans;
  using V = Eigen::Map<const Eigen::VectorXf>;
  {
    const std::size_t n = static_cast<std::size_t>(nrows) * row_el, e0 = static_cast<std::size_t>(r0) * row_el;
    const std::span<const float> dbar(dbar_rows, n);
    fetch(param_feed, e0, n, sc.theta.data(), sc);
    for (std::size_t sl = 0; sl < slots_.size(); ++sl) {
      if (!state_[sl].empty() && state_[sl][i])
        fetch(Feed{model_.get(), state_[sl][i], state_offsets_[sl][i]}, e0, n, sc.slots[sl].data(), sc);
      else std::fill_n(sc.slots[sl].data(), n, 0.0f);
      spans[sl] = std::span(sc.slots[sl].data(), n);
    }
    std::memcpy(sc.old.data(), sc.theta.data(), n * 4);
    optimizer_->apply(std::span(sc.theta.data(), n), dbar,
                      std::span<const std::span<float>>(spans.data(), slots_.size()), t, lr);
    const auto el = static_cast<Eigen::Index>(n);
    update_sq += V(dbar.data(), el).cast<double>().squaredNorm();
    step_sq += (V(sc.theta.data(), el).cast<double>() - V(sc.old.data(), el).cast<double>()).squaredNorm();
    std::uint64_t model_bytes = 4;
    for (std::size_t sl = 0; sl < slots_.size(); ++sl) model_bytes += !state_[sl].empty() && state_[sl][i] ? 4 : 0;
    summary_.bytes_read += n * model_bytes;
    write_block(i, r0, nrows, sc.theta.data(), sc.slots, n);
  }
}

// The end of a pass that went through: the norms of Δ̄ and of the step into the summary, with the new
// round and step; Error(Numeric) when the new parameters are not finite.
bool Aggregator::finish_pass(double update_sq, double step_sq) {
  summary_.update_norm = std::sqrt(update_sq);
  summary_.step_norm = std::sqrt(step_sq);
  if (!std::isfinite(step_sq))
    throw_error(ErrorKind::Numeric, "the new parameters are not finite (‖Δ̄‖ = {}); nothing written",
                summary_.update_norm);
  summary_.round = round_ + 1;
  summary_.outer_step = step_ + 1;
  return true;
}

}  // namespace loco::aggregate::detail
