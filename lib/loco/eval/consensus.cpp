// Consensus distance over model files: a per-block Welford pass over the models in float64.
#include "loco/eval/consensus.hpp"

#include <cmath>
#include <memory>
#include <set>

#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/source.hpp"

namespace loco::eval {

Consensus consensus_distance(const std::vector<std::string>& paths, std::size_t block_bytes) {
  if (paths.empty()) throw_error(ErrorKind::Usage, "consensus distance needs at least one model");
  {
    std::set<std::string> seen;
    for (const auto& p : paths)
      if (!seen.insert(p).second) throw_error(ErrorKind::Usage, "{}: model listed twice", p);
  }
  std::vector<std::unique_ptr<io::TensorSource>> src;
  for (const auto& p : paths) {
    src.push_back(io::open_source(p));
    io::expect_kind(*src.back(), {io::Kind::Model});
  }
  const io::TensorSource& ref = *src[0];
  const bool has_config = !io::model_config(ref).empty();
  for (std::size_t k = 1; k < src.size(); ++k)
    if (has_config || !io::model_config(*src[k]).empty()) io::check_same_config(ref, *src[k]);

  std::vector<const io::TensorInfo*> plan;
  for (const auto* t : ref.group("tensors"))
    if (is_floating(t->dtype)) plan.push_back(t);
  if (plan.empty()) throw_error(ErrorKind::BadInput, "{}: no floating tensors to compare", paths[0]);
  // Per model, its TensorInfo of each plan entry.
  std::vector<std::vector<const io::TensorInfo*>> infos(src.size());
  for (std::size_t k = 0; k < src.size(); ++k) {
    for (const auto* p : plan) {
      const io::TensorInfo* t = src[k]->find(p->name);
      if (!t) throw_error(ErrorKind::BadInput, "{}: no tensor {}, which {} has", paths[k], p->name, paths[0]);
      if (t->shape != p->shape)
        throw_error(ErrorKind::BadInput, "tensor {}: shape {} in {} but {} in {}", p->name, shape_string(t->shape),
                    paths[k], shape_string(p->shape), paths[0]);
      if (!is_floating(t->dtype))
        throw_error(ErrorKind::BadInput, "tensor {}: {} in {} but {} in {}", p->name, dtype_name(t->dtype), paths[k],
                    dtype_name(p->dtype), paths[0]);
      infos[k].push_back(t);
    }
    for (const auto* t : src[k]->group("tensors"))
      if (!ref.find(t->name))
        throw_error(ErrorKind::BadInput, "{}: tensor {} is not in {}", paths[k], t->name, paths[0]);
  }

  Consensus c;
  c.models = static_cast<std::int64_t>(src.size());
  double m2_total = 0, mean_sq = 0;
  std::vector<std::byte> raw;
  std::vector<float> x;
  std::vector<double> mean, m2;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const io::TensorInfo& info = *plan[i];
    const std::int64_t rows = info.rows(), re = info.row_elements();
    const std::int64_t block =
        io::rows_per_block(io::TensorInfo{info.group, info.name, info.shape, DType::F32, {}}, block_bytes);
    for (std::int64_t r0 = 0; r0 < rows; r0 += block) {
      const std::int64_t nr = std::min(block, rows - r0);
      const auto n = static_cast<std::size_t>(nr * re);
      mean.assign(n, 0.0);
      m2.assign(n, 0.0);
      x.resize(n);
      for (std::size_t k = 0; k < src.size(); ++k) {
        const io::TensorInfo& t = *infos[k][i];
        raw.resize(n * dtype_size(t.dtype));
        src[k]->read_rows(t, r0, nr, raw);
        convert_elements(t.dtype, raw.data(), DType::F32, reinterpret_cast<std::byte*>(x.data()), n);
        const double inv = 1.0 / static_cast<double>(k + 1);
        for (std::size_t e = 0; e < n; ++e) {
          const double v = x[e];
          if (!std::isfinite(v))
            throw_error(ErrorKind::Numeric, "{}: tensor {} holds a non-finite value at element {}", paths[k], info.name,
                        r0 * re + static_cast<std::int64_t>(e));
          const double d = v - mean[e];
          mean[e] += d * inv;
          m2[e] += d * (v - mean[e]);
        }
      }
      for (std::size_t e = 0; e < n; ++e) m2_total += m2[e], mean_sq += mean[e] * mean[e];
      c.parameters += static_cast<std::int64_t>(n);
    }
  }
  c.distance_sq = m2_total / static_cast<double>(c.models);
  c.distance = std::sqrt(c.distance_sq);
  c.mean_norm = std::sqrt(mean_sq);
  return c;
}

}  // namespace loco::eval
