// LibSVM / SVMlight reader: sparse `label idx:val ...` lines into dense rows.
#include "loco/core/error.hpp"
#include "loco/data/detail/text.hpp"
#include "loco/data/readers.hpp"

namespace loco::data {

ClassificationData parse_libsvm(std::string_view text, const std::string& name, const LibsvmOptions& options) {
  if (options.features < 0) throw_error(ErrorKind::Usage, "{}: feature count {} is negative", name, options.features);
  std::vector<std::string> labels;
  std::vector<std::int64_t> label_lines;
  std::vector<std::int64_t> row_start;  // entries of row i are [row_start[i], row_start[i+1])
  std::vector<std::int64_t> cols;       // 0-based column of each entry
  std::vector<float> vals;
  std::int64_t max_index = 0;

  detail::for_each_line(text, [&](std::int64_t line_number, std::string_view line) {
    if (const std::size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = detail::trim(line);
    if (line.empty()) return;
    std::size_t p = 0;
    auto next_token = [&]() -> std::string_view {
      while (p < line.size() && (line[p] == ' ' || line[p] == '\t')) ++p;
      const std::size_t start = p;
      while (p < line.size() && line[p] != ' ' && line[p] != '\t') ++p;
      return line.substr(start, p - start);
    };
    const std::string_view label = next_token();
    if (label.find(':') != std::string_view::npos)
      throw_error(ErrorKind::BadInput, "{}:{}: line starts with '{}', expected a label before the idx:val pairs", name,
                  line_number, label);
    if (label.find(',') != std::string_view::npos)
      throw_error(ErrorKind::BadInput, "{}:{}: multi-label '{}' is not supported (one label per example)", name,
                  line_number, label);
    labels.emplace_back(label);
    label_lines.push_back(line_number);
    row_start.push_back(static_cast<std::int64_t>(cols.size()));
    std::int64_t previous = 0;
    for (std::string_view pair = next_token(); !pair.empty(); pair = next_token()) {
      const std::size_t colon = pair.find(':');
      if (colon == std::string_view::npos)
        throw_error(ErrorKind::BadInput, "{}:{}: '{}' is not an idx:val pair", name, line_number, pair);
      const std::string_view key = pair.substr(0, colon);
      if (key == "qid")
        throw_error(ErrorKind::BadInput, "{}:{}: SVMlight 'qid:' ranking groups are not supported", name, line_number);
      const auto index = detail::parse_int(key);
      if (!index)
        throw_error(ErrorKind::BadInput, "{}:{}: index '{}' in '{}' is not an integer", name, line_number, key, pair);
      if (*index <= 0)
        throw_error(ErrorKind::BadInput, "{}:{}: index {} in '{}': LibSVM indices are 1-based (≥ 1)", name, line_number,
                    *index, pair);
      if (options.features > 0 && *index > options.features)
        throw_error(ErrorKind::BadInput, "{}:{}: index {} out of range 1..{} (the feature count given)", name,
                    line_number, *index, options.features);
      if (*index <= previous)
        throw_error(ErrorKind::BadInput, "{}:{}: index {} after {}: indices must strictly increase", name, line_number,
                    *index, previous);
      const auto value = detail::parse_float(pair.substr(colon + 1));
      if (!value)
        throw_error(ErrorKind::BadInput, "{}:{}: value '{}' of index {} is not a finite number", name, line_number,
                    pair.substr(colon + 1), *index);
      previous = *index;
      max_index = std::max(max_index, *index);
      cols.push_back(*index - 1);
      vals.push_back(*value);
    }
  });
  if (labels.empty()) throw_error(ErrorKind::BadInput, "{}: no examples", name);
  ClassificationData data;
  data.source = "libsvm:" + name;
  data.n = static_cast<std::int64_t>(labels.size());
  data.d = options.features > 0 ? options.features : max_index;
  if (data.d == 0) throw_error(ErrorKind::BadInput, "{}: no feature appears and no feature count was given", name);
  row_start.push_back(static_cast<std::int64_t>(cols.size()));
  data.x.assign(static_cast<std::size_t>(data.n * data.d), 0.0f);
  for (std::int64_t i = 0; i < data.n; ++i)
    for (auto e = row_start[static_cast<std::size_t>(i)]; e < row_start[static_cast<std::size_t>(i) + 1]; ++e)
      data.x[static_cast<std::size_t>(i * data.d + cols[static_cast<std::size_t>(e)])] =
          vals[static_cast<std::size_t>(e)];
  detail::map_labels(labels, label_lines, name, options.labels, data);
  return data;
}

ClassificationData read_libsvm(const std::string& path, const LibsvmOptions& options) {
  const auto bytes = read_file(path);
  return parse_libsvm(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path, options);
}

}  // namespace loco::data
