// Parsing of "name[:key=value,...]" specs shared by topologies and communication schedules.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "loco/core/error.hpp"

namespace loco::gossip::detail {

struct Spec {
  std::string text, name;
  std::map<std::string, std::string, std::less<>> params;

  // Throws Error(Usage) unless every key is one of allowed.
  void only(std::initializer_list<std::string_view> allowed, std::string_view what) const {
    for (const auto& [k, v] : params) {
      bool ok = false;
      for (auto a : allowed) ok = ok || a == k;
      if (!ok) throw_error(ErrorKind::Usage, "{} '{}': unknown parameter '{}'", what, text, k);
    }
  }
  bool has(std::string_view key) const { return params.find(key) != params.end(); }
  double number(std::string_view key, std::string_view what) const {
    const std::string& v = params.find(key)->second;
    std::size_t used = 0;
    double x = 0;
    try {
      x = std::stod(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (v.empty() || used != v.size() || !std::isfinite(x))
      throw_error(ErrorKind::Usage, "{} '{}': {}={} is not a number", what, text, key, v);
    return x;
  }
  std::int64_t integer(std::string_view key, std::string_view what) const {
    const double x = number(key, what);
    if (x != std::floor(x) || std::fabs(x) > 9e15)
      throw_error(ErrorKind::Usage, "{} '{}': {} must be an integer", what, text, key);
    return static_cast<std::int64_t>(x);
  }
};

// Splits "name:k=v,k=v". Throws Error(Usage) for an item without '=' or a repeated key.
inline Spec parse_spec(std::string_view text, std::string_view what) {
  Spec s;
  s.text = std::string(text);
  const auto colon = text.find(':');
  s.name = std::string(text.substr(0, colon));
  if (colon == std::string_view::npos) return s;
  std::string_view rest = text.substr(colon + 1);
  while (true) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0)
      throw_error(ErrorKind::Usage, "{} '{}': expected key=value, got '{}'", what, text, item);
    if (!s.params.emplace(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1))).second)
      throw_error(ErrorKind::Usage, "{} '{}': {} given twice", what, text, item.substr(0, eq));
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return s;
}

}  // namespace loco::gossip::detail
