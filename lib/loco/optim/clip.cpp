// Global-norm gradient clipping with a thread-count-independent norm.
#include "loco/optim/clip.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "loco/core/error.hpp"

namespace loco::optim {

namespace {

// Fixed blocks over which partial sums are taken; their order of summation never changes.
constexpr std::int64_t kBlockElements = std::int64_t{1} << 15;
constexpr std::size_t kLanes = 8;

struct Block {
  std::size_t tensor;
  std::int64_t offset;
  std::size_t n;
};

std::vector<Block> blocks_of(const TensorSet& tensors) {
  std::vector<Block> blocks;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& entry = tensors[i];
    if (entry.tensor.dtype() != DType::F32)
      throw_error(ErrorKind::BadInput, "tensor '{}' is {}; the gradient norm needs float32", entry.name,
                  dtype_name(entry.tensor.dtype()));
    const std::int64_t numel = entry.tensor.numel();
    for (std::int64_t off = 0; off < numel; off += kBlockElements)
      blocks.push_back({i, off, static_cast<std::size_t>(std::min(kBlockElements, numel - off))});
  }
  return blocks;
}

// Σ x² per block, in double.
std::vector<double> block_sums(const TensorSet& tensors, const std::vector<Block>& blocks) {
  std::vector<double> sums(blocks.size(), 0.0);
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, blocks.size()), [&](const tbb::blocked_range<std::size_t>& r) {
    for (std::size_t b = r.begin(); b != r.end(); ++b) {
      const float* x = tensors[blocks[b].tensor].tensor.f32().data() + blocks[b].offset;
      const std::size_t n = blocks[b].n;
      // Eight fixed lanes (element i goes to lane i mod 8) so the loop vectorizes while the
      // order of additions stays a function of the data layout only.
      double lane[kLanes] = {};
      std::size_t i = 0;
      for (; i + kLanes <= n; i += kLanes)
        for (std::size_t l = 0; l < kLanes; ++l) {
          const double v = x[i + l];
          lane[l] += v * v;
        }
      for (std::size_t l = 0; i + l < n; ++l) {
        const double v = x[i + l];
        lane[l] += v * v;
      }
      double s = 0.0;
      for (double v : lane) s += v;
      sums[b] = s;
    }
  });
  return sums;
}

double total(const std::vector<double>& sums) {
  double s = 0.0;
  for (double v : sums) s += v;
  return std::sqrt(s);
}

}  // namespace

double global_norm(const TensorSet& tensors) { return total(block_sums(tensors, blocks_of(tensors))); }

double clip_grad_norm(TensorSet& grads, double max_norm) {
  if (!std::isfinite(max_norm) || max_norm <= 0)
    throw_error(ErrorKind::Usage, "gradient clipping norm {} is not a finite number > 0", max_norm);
  const std::vector<Block> blocks = blocks_of(grads);
  const std::vector<double> sums = block_sums(grads, blocks);
  const double norm = total(sums);
  if (!std::isfinite(norm)) {
    for (std::size_t b = 0; b < blocks.size(); ++b)
      if (!std::isfinite(sums[b]))
        throw_error(ErrorKind::Numeric, "gradient '{}' contains NaN or infinity (global norm {})",
                    grads[blocks[b].tensor].name, norm);
    throw_error(ErrorKind::Internal, "gradient norm {} is not finite but every block sum is", norm);
  }
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0) return norm;
  const float c = static_cast<float>(coef);
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, blocks.size()), [&](const tbb::blocked_range<std::size_t>& r) {
    for (std::size_t b = r.begin(); b != r.end(); ++b) {
      float* x = grads[blocks[b].tensor].tensor.f32().data() + blocks[b].offset;
      for (std::size_t i = 0; i < blocks[b].n; ++i) x[i] *= c;
    }
  });
  return norm;
}

}  // namespace loco::optim
