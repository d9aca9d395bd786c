// Private helpers of the text readers: strict number parsing, line iteration, label mapping.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loco/data/readers.hpp"

namespace loco::data::detail {

// s without leading and trailing spaces and tabs.
std::string_view trim(std::string_view s) noexcept;

// The whole of s (after trim) as a finite float / double; nullopt for anything else (empty, trailing
// characters, nan, inf, out of range). A leading '+' is accepted.
std::optional<float> parse_float(std::string_view s) noexcept;
std::optional<double> parse_double(std::string_view s) noexcept;
// The whole of s as a decimal integer (optional sign), nullopt otherwise.
std::optional<std::int64_t> parse_int(std::string_view s) noexcept;

// Calls f(line_number, line) for each line of text (1-based numbers, "\n" or "\r\n" endings
// removed, a final line without newline included).
template <typename F>
void for_each_line(std::string_view text, F&& f) {
  std::int64_t number = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    f(++number, line);
    pos = end + 1;
  }
}

// Maps label strings (one per example, in order) to classes 0..C−1 as LabelMapping says; label i
// came from line lines[i] of the input called name. Fills data.y, data.classes and
// data.label_names (the first spelling seen of each class, when mapped). Throws Error(BadInput)
// "name:LINE: ..." when Identity is asked and a label is no class number.
void map_labels(const std::vector<std::string>& labels, const std::vector<std::int64_t>& lines, const std::string& name,
                LabelMapping mapping, ClassificationData& data);

}  // namespace loco::data::detail
