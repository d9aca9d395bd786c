// Deltas between two model files of any format (delta.hpp).
#include "loco/train/delta.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "loco/core/attributes.hpp"
#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::train {
namespace {

constexpr std::size_t kBlockBytes = std::size_t{4} << 20;  // per input block: 4 MiB stays in cache

std::string listed(const std::vector<std::string>& names) {
  constexpr std::size_t kShown = 5;
  std::string s;
  for (std::size_t i = 0; i < std::min(names.size(), kShown); ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > kShown) s += fmt::format(" and {} more", names.size() - kShown);
  return s;
}

// The tensors of local matching base's /tensors one to one, in base's order. A fragment base
// (loco-fragment's file) holds some of the model's tensors: the local model's others are not sent.
std::vector<const io::TensorInfo*> match_tensors(const io::TensorSource& base, const io::TensorSource& local,
                                                 bool fragment_base) {
  const auto want = base.group("tensors");
  if (want.empty()) throw_error(ErrorKind::BadInput, "{}: no tensors in /tensors", base.path());
  std::vector<const io::TensorInfo*> got;
  std::vector<std::string> missing;
  for (const auto* t : want) {
    if (!is_floating(t->dtype))
      throw_error(ErrorKind::BadInput, "{}: tensor {} is {}, expected a float dtype", base.path(), t->name,
                  dtype_name(t->dtype));
    const auto* l = local.find(t->name);
    if (l == nullptr) {
      missing.push_back(t->name);
      continue;
    }
    if (l->shape != t->shape)
      throw_error(ErrorKind::BadInput, "{}: tensor {} has shape {}, the global model {} has {}", local.path(), t->name,
                  shape_string(l->shape), base.path(), shape_string(t->shape));
    if (!is_floating(l->dtype))
      throw_error(ErrorKind::BadInput, "{}: tensor {} is {}, expected a float dtype", local.path(), t->name,
                  dtype_name(l->dtype));
    got.push_back(l);
  }
  if (!missing.empty())
    throw_error(ErrorKind::BadInput, "{}: {} tensors of the global model {} are missing: {}", local.path(),
                missing.size(), base.path(), listed(missing));
  std::vector<std::string> extra;
  if (fragment_base) return got;
  for (const auto* l : local.group("tensors"))
    if (base.find(l->name) == nullptr) extra.push_back(l->name);
  if (!extra.empty())
    throw_error(ErrorKind::BadInput,
                "{}: {} tensors are not in the global model {}: {} (save exactly the model's parameters, under the "
                "global model's names)",
                local.path(), extra.size(), base.path(), listed(extra));
  return got;
}

}  // namespace

void write_delta_file(const DeltaFileOptions& o) {
  if (o.worker < 0) throw_error(ErrorKind::Usage, "--worker must be >= 0, got {}", o.worker);
  if (o.samples && *o.samples < 0) throw_error(ErrorKind::Usage, "--samples must be >= 0, got {}", *o.samples);
  if (o.inner_steps && *o.inner_steps < 0)
    throw_error(ErrorKind::Usage, "--inner-steps must be >= 0, got {}", *o.inner_steps);
  if (o.step && *o.step < 0) throw_error(ErrorKind::Usage, "--step must be >= 0, got {}", *o.step);
  const auto base = io::open_source(o.base);
  io::expect_kind(*base, {io::Kind::Model});
  const auto local = io::open_source(o.local);
  io::expect_kind(*local, {io::Kind::Model});
  if (!io::model_config(*local).empty()) io::check_same_config(*base, *local);
  const auto fragment = base->attributes().get_int("fragment");
  const auto fragments = base->attributes().get_int("fragments");
  const auto locals = match_tensors(*base, *local, fragments.has_value());
  const auto bases = base->group("tensors");

  const auto base_round = base->attributes().get_int("round");
  if (o.round && *o.round < 0) throw_error(ErrorKind::Usage, "--round must be >= 0, got {}", *o.round);
  Attributes root;
  root.set("kind", std::string("delta"));
  if (const auto config = io::model_config(*base); !config.empty()) root.set("model_config", config);
  root.set("round", o.round.value_or(base_round.value_or(0)));
  root.set("worker", o.worker);
  if (o.samples) root.set("samples", *o.samples);
  if (o.inner_steps) root.set("inner_steps", *o.inner_steps);
  if (o.step) root.set("step", *o.step);
  root.set("base_checksum", io::tensors_checksum(*base));
  if (fragment && fragments) {  // as loco-worker --delta-base records them
    root.set("fragment", *fragment);
    root.set("fragments", *fragments);
  }
  root.set("local_format", std::string(local->format()));

  std::vector<io::TensorInfo> plan;
  for (const auto* t : bases) {
    io::TensorInfo d;
    d.name = t->name;
    d.shape = t->shape;
    d.dtype = DType::F32;
    plan.push_back(std::move(d));
  }
  const auto sink = io::create_sink(o.output, root, plan);
  std::vector<std::byte> raw_b, raw_l;
  std::vector<float> fb, fl;
  std::vector<double> db, dl;
  for (std::size_t i = 0; i < bases.size(); ++i) {
    const io::TensorInfo& tb = *bases[i];
    const io::TensorInfo& tl = *locals[i];
    const bool wide = tb.dtype == DType::F64 || tl.dtype == DType::F64;
    const std::int64_t row = tb.row_elements();
    const std::size_t widest = std::max({dtype_size(tb.dtype), dtype_size(tl.dtype), sizeof(float)});
    const std::int64_t block = io::rows_per_block(tb, kBlockBytes / widest * dtype_size(tb.dtype));
    for (std::int64_t r0 = 0; r0 < tb.rows(); r0 += block) {
      const std::int64_t nr = std::min(block, tb.rows() - r0);
      const auto n = static_cast<std::size_t>(nr * row);
      if (n == 0) continue;
      raw_b.resize(n * dtype_size(tb.dtype));
      raw_l.resize(n * dtype_size(tl.dtype));
      base->read_rows(tb, r0, nr, raw_b);
      local->read_rows(tl, r0, nr, raw_l);
      fb.resize(n);
      if (wide) {  // Δ in float64, rounded once
        db.resize(n);
        dl.resize(n);
        convert_elements(tb.dtype, raw_b.data(), DType::F64, reinterpret_cast<std::byte*>(db.data()), n);
        convert_elements(tl.dtype, raw_l.data(), DType::F64, reinterpret_cast<std::byte*>(dl.data()), n);
        for (std::size_t k = 0; k < n; ++k) fb[k] = static_cast<float>(db[k] - dl[k]);
      } else {  // both widen exactly to float32: Δ as loco-worker computes it
        fl.resize(n);
        convert_elements(tb.dtype, raw_b.data(), DType::F32, reinterpret_cast<std::byte*>(fb.data()), n);
        convert_elements(tl.dtype, raw_l.data(), DType::F32, reinterpret_cast<std::byte*>(fl.data()), n);
        for (std::size_t k = 0; k < n; ++k) fb[k] -= fl[k];
      }
      for (std::size_t k = 0; k < n; ++k)
        if (!std::isfinite(fb[k]))
          throw_error(ErrorKind::Numeric,
                      "{}: tensor {} element {}: the difference to the global model is {} (the local model holds "
                      "{}); nothing written",
                      local->path(), tl.name, static_cast<std::int64_t>(r0 * row) + static_cast<std::int64_t>(k), fb[k],
                      wide ? dl[k] : static_cast<double>(fl[k]));
      sink->write_rows(i, r0, nr, std::as_bytes(std::span<const float>(fb.data(), n)));
    }
  }
  sink->commit();
}

}  // namespace loco::train
