// CSV reader: one example per line, a label column chosen by name or index, every other column a feature.
#include <algorithm>

#include "loco/core/error.hpp"
#include "loco/data/detail/text.hpp"
#include "loco/data/readers.hpp"

namespace loco::data {

namespace {

// Splits line into cells at delimiter, honouring double quotes ("" is a quote inside a quoted
// field). Cells are stored unquoted in cells (resized to the count). Throws on an unterminated quote.
void split_cells(std::string_view line, char delimiter, std::vector<std::string>& cells, std::size_t& count,
                 const std::string& name, std::int64_t line_number) {
  count = 0;
  std::size_t p = 0;
  for (;;) {
    if (cells.size() <= count) cells.emplace_back();
    std::string& cell = cells[count++];
    cell.clear();
    // Leading blanks before an opening quote are allowed.
    std::size_t q = p;
    while (q < line.size() && (line[q] == ' ' || line[q] == '\t')) ++q;
    if (q < line.size() && line[q] == '"') {
      ++q;
      for (;;) {
        if (q >= line.size())
          throw_error(ErrorKind::BadInput, "{}:{}: column {}: unterminated quoted field", name, line_number, count);
        if (line[q] == '"') {
          if (q + 1 < line.size() && line[q + 1] == '"') {
            cell.push_back('"');
            q += 2;
            continue;
          }
          ++q;
          break;
        }
        cell.push_back(line[q++]);
      }
      while (q < line.size() && (line[q] == ' ' || line[q] == '\t')) ++q;
      if (q < line.size() && line[q] != delimiter)
        throw_error(ErrorKind::BadInput, "{}:{}: column {}: characters after the closing quote", name, line_number,
                    count);
      p = q;
    } else {
      const std::size_t end = std::min(line.find(delimiter, p), line.size());
      cell.assign(line.substr(p, end - p));
      p = end;
    }
    if (p >= line.size()) return;
    ++p;  // past the delimiter; a trailing delimiter yields one more (empty) cell
  }
}

}  // namespace

ClassificationData parse_csv(std::string_view text, const std::string& name, const CsvOptions& options) {
  if (options.delimiter == '"' || options.delimiter == '\n' || options.delimiter == '\r')
    throw_error(ErrorKind::Usage, "{}: the CSV delimiter cannot be a quote or a line break", name);
  ClassificationData data;
  data.source = "csv:" + name;
  std::vector<std::string> cells, header;
  std::size_t count = 0, columns = 0;
  std::int64_t label_col = -1, first_line = 0;
  bool have_first = false;
  std::vector<std::string> labels;
  std::vector<std::int64_t> label_lines;

  auto column_name = [&](std::size_t c) { return header.empty() ? std::string() : " ('" + header[c] + "')"; };
  auto add_row = [&](std::int64_t line_number) {
    if (count != columns)
      throw_error(ErrorKind::BadInput, "{}:{}: {} columns, expected {} as in line {}", name, line_number, count,
                  columns, first_line);
    for (std::size_t c = 0; c < columns; ++c) {
      if (static_cast<std::int64_t>(c) == label_col) {
        const std::string_view label = detail::trim(cells[c]);
        if (label.empty())
          throw_error(ErrorKind::BadInput, "{}:{}: column {}{}: empty label", name, line_number, c + 1, column_name(c));
        labels.emplace_back(label);
        label_lines.push_back(line_number);
        continue;
      }
      const auto v = detail::parse_float(cells[c]);
      if (!v)
        throw_error(ErrorKind::BadInput, "{}:{}: column {}{}: '{}' is not a finite number", name, line_number, c + 1,
                    column_name(c), cells[c]);
      data.x.push_back(*v);
    }
  };

  detail::for_each_line(text, [&](std::int64_t line_number, std::string_view line) {
    if (detail::trim(line).empty()) return;
    split_cells(line, options.delimiter, cells, count, name, line_number);
    if (have_first) {
      add_row(line_number);
      return;
    }
    have_first = true;
    first_line = line_number;
    columns = count;
    if (columns < 1) throw_error(ErrorKind::BadInput, "{}:{}: no columns", name, line_number);
    if (!options.label_name.empty()) {
      if (options.header == CsvHeader::Absent)
        throw_error(ErrorKind::Usage, "{}: label column '{}' given by name but the file is read without a header", name,
                    options.label_name);
      for (std::size_t c = 0; c < columns; ++c)
        if (detail::trim(cells[c]) == options.label_name) label_col = static_cast<std::int64_t>(c);
      if (label_col < 0)
        throw_error(ErrorKind::Usage, "{}:{}: no column named '{}' in the header", name, line_number,
                    options.label_name);
    } else {
      label_col =
          options.label_index < 0 ? static_cast<std::int64_t>(columns) + options.label_index : options.label_index;
      if (label_col < 0 || label_col >= static_cast<std::int64_t>(columns))
        throw_error(ErrorKind::Usage, "{}:{}: label column index {} outside the {} columns", name, line_number,
                    options.label_index, columns);
    }
    bool is_header = options.header == CsvHeader::Present || !options.label_name.empty();
    if (options.header == CsvHeader::Auto && !is_header) {
      for (std::size_t c = 0; c < columns; ++c)
        if (static_cast<std::int64_t>(c) != label_col && !detail::parse_float(cells[c])) is_header = true;
    }
    if (is_header) {
      header.clear();
      for (std::size_t c = 0; c < columns; ++c) header.emplace_back(detail::trim(cells[c]));
    } else {
      add_row(line_number);
    }
  });
  if (labels.empty()) throw_error(ErrorKind::BadInput, "{}: no examples (no data rows)", name);
  data.n = static_cast<std::int64_t>(labels.size());
  data.d = static_cast<std::int64_t>(columns) - 1;
  detail::map_labels(labels, label_lines, name, options.labels, data);
  return data;
}

ClassificationData read_csv(const std::string& path, const CsvOptions& options) {
  const auto bytes = read_file(path);
  return parse_csv(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path, options);
}

}  // namespace loco::data
