// Strict number parsing and label mapping shared by the CSV and LibSVM readers.
#include "loco/data/detail/text.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <map>

#include "loco/core/error.hpp"

namespace loco::data::detail {

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

namespace {

// Drops one leading '+' (from_chars does not take it) unless a second sign follows.
bool strip_plus(std::string_view& s) noexcept {
  if (!s.empty() && s.front() == '+') {
    s.remove_prefix(1);
    if (s.empty() || s.front() == '+' || s.front() == '-') return false;
  }
  return !s.empty();
}

template <typename T>
std::optional<T> parse_real(std::string_view s) noexcept {
  s = trim(s);
  if (!strip_plus(s)) return std::nullopt;
  T v{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::general);
  if (end != s.data() + s.size()) return std::nullopt;
  if (ec == std::errc::result_out_of_range) {
    // Underflow to zero or a subnormal is a value; overflow is not.
    double wide = 0;
    const auto [end2, ec2] = std::from_chars(s.data(), s.data() + s.size(), wide, std::chars_format::general);
    if (ec2 != std::errc() || end2 != s.data() + s.size() || !std::isfinite(wide) ||
        std::fabs(wide) >= static_cast<double>(std::numeric_limits<T>::min()))
      return std::nullopt;
    return static_cast<T>(wide);
  }
  if (ec != std::errc() || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace

std::optional<float> parse_float(std::string_view s) noexcept { return parse_real<float>(s); }
std::optional<double> parse_double(std::string_view s) noexcept { return parse_real<double>(s); }

std::optional<std::int64_t> parse_int(std::string_view s) noexcept {
  s = trim(s);
  if (!strip_plus(s)) return std::nullopt;
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

void map_labels(const std::vector<std::string>& labels, const std::vector<std::int64_t>& lines, const std::string& name,
                LabelMapping mapping, ClassificationData& data) {
  constexpr std::int64_t kMaxClass = std::numeric_limits<std::int32_t>::max() - 1;
  const std::size_t n = labels.size();
  data.y.assign(n, 0);
  data.label_names.clear();
  data.classes = 0;
  if (mapping == LabelMapping::Auto) {
    mapping = LabelMapping::Identity;
    for (const std::string& l : labels) {
      const auto v = parse_int(l);
      if (!v || *v < 0 || *v > kMaxClass) {
        mapping = LabelMapping::Sorted;
        break;
      }
    }
  }
  if (mapping == LabelMapping::Identity) {
    std::int64_t max_label = -1;
    for (std::size_t i = 0; i < n; ++i) {
      const auto v = parse_int(labels[i]);
      if (!v || *v < 0 || *v > kMaxClass)
        throw_error(ErrorKind::BadInput, "{}:{}: label '{}' is not a class number (an integer in [0, {}])", name,
                    lines[i], labels[i], kMaxClass);
      data.y[i] = static_cast<std::int32_t>(*v);
      max_label = std::max(max_label, *v);
    }
    data.classes = static_cast<std::int32_t>(max_label + 1);
    return;
  }
  bool numeric = true;
  for (const std::string& l : labels)
    if (!parse_double(l)) {
      numeric = false;
      break;
    }
  if (numeric) {
    std::map<double, std::int32_t> classes;
    std::map<double, std::string> spelling;
    for (const std::string& l : labels) {
      const double v = *parse_double(l);
      if (classes.emplace(v, 0).second) spelling.emplace(v, std::string(trim(l)));
    }
    std::int32_t c = 0;
    for (auto& [v, id] : classes) {
      id = c++;
      data.label_names.push_back(spelling[v]);
    }
    for (std::size_t i = 0; i < n; ++i) data.y[i] = classes[*parse_double(labels[i])];
  } else {
    std::map<std::string, std::int32_t, std::less<>> classes;
    for (const std::string& l : labels) classes.emplace(std::string(trim(l)), 0);
    std::int32_t c = 0;
    for (auto& [s, id] : classes) {
      id = c++;
      data.label_names.push_back(s);
    }
    for (std::size_t i = 0; i < n; ++i) data.y[i] = classes.find(trim(labels[i]))->second;
  }
  data.classes = static_cast<std::int32_t>(data.label_names.size());
}

}  // namespace loco::data::detail
