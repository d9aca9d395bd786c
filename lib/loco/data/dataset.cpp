// Checks, subsets and class counts of in-memory datasets.
#include "loco/data/dataset.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "loco/core/error.hpp"

namespace loco::data {

void validate(const ClassificationData& data) {
  const std::string& src = data.source.empty() ? std::string("dataset") : data.source;
  if (data.n < 0 || data.d < 0) throw_error(ErrorKind::BadInput, "{}: negative size n={} d={}", src, data.n, data.d);
  if (data.x.size() != static_cast<std::size_t>(data.n) * static_cast<std::size_t>(data.d))
    throw_error(ErrorKind::BadInput, "{}: {} feature values, expected n·d = {}·{} = {}", src, data.x.size(), data.n,
                data.d, data.n * data.d);
  if (data.y.size() != static_cast<std::size_t>(data.n))
    throw_error(ErrorKind::BadInput, "{}: {} labels, expected {}", src, data.y.size(), data.n);
  if (data.classes < 1 && data.n > 0)
    throw_error(ErrorKind::BadInput, "{}: {} classes, expected at least 1", src, data.classes);
  if (!data.label_names.empty() && data.label_names.size() != static_cast<std::size_t>(data.classes))
    throw_error(ErrorKind::BadInput, "{}: {} label names for {} classes", src, data.label_names.size(), data.classes);
  for (std::int64_t i = 0; i < data.n; ++i) {
    const std::int32_t label = data.y[static_cast<std::size_t>(i)];
    if (label < 0 || label >= data.classes)
      throw_error(ErrorKind::BadInput, "{}: example {} has label {}, outside [0, {})", src, i, label, data.classes);
  }
  for (std::size_t k = 0; k < data.x.size(); ++k)
    if (!std::isfinite(data.x[k]))
      throw_error(ErrorKind::BadInput, "{}: example {} feature {} is not finite", src,
                  static_cast<std::int64_t>(k) / data.d, static_cast<std::int64_t>(k) % data.d);
}

ClassificationData select(const ClassificationData& data, std::span<const std::int64_t> indices) {
  ClassificationData out;
  out.n = static_cast<std::int64_t>(indices.size());
  out.d = data.d;
  out.classes = data.classes;
  out.source = data.source;
  out.preprocessing = data.preprocessing;
  out.byte_scale = data.byte_scale;
  out.label_names = data.label_names;
  out.x.resize(indices.size() * static_cast<std::size_t>(data.d));
  out.y.resize(indices.size());
  const auto d = static_cast<std::size_t>(data.d);
  for (std::size_t k = 0; k < indices.size(); ++k) {
    const std::int64_t i = indices[k];
    if (i < 0 || i >= data.n) throw_error(ErrorKind::Usage, "{}: index {} outside [0, {})", data.source, i, data.n);
    if (d > 0) std::memcpy(out.x.data() + k * d, data.x.data() + static_cast<std::size_t>(i) * d, d * sizeof(float));
    out.y[k] = data.y[static_cast<std::size_t>(i)];
  }
  return out;
}

std::vector<std::int64_t> class_counts(std::span<const std::int32_t> labels, std::int32_t classes) {
  std::vector<std::int64_t> counts(static_cast<std::size_t>(std::max(classes, 0)), 0);
  for (std::int32_t label : labels) {
    if (label < 0 || label >= classes) throw_error(ErrorKind::BadInput, "label {} outside [0, {})", label, classes);
    ++counts[static_cast<std::size_t>(label)];
  }
  return counts;
}

}  // namespace loco::data
