// Attribute lookup and formatting.
#include "loco/core/attributes.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace loco {

std::string attr_to_string(const AttrValue& v) {
  struct Visitor {
    std::string operator()(std::int64_t x) const { return fmt::format("{}", x); }
    std::string operator()(double x) const { return fmt::format("{}", x); }
    std::string operator()(const std::string& x) const { return x; }
    std::string operator()(const std::vector<std::int64_t>& x) const { return fmt::format("[{}]", fmt::join(x, ", ")); }
    std::string operator()(const std::vector<double>& x) const { return fmt::format("[{}]", fmt::join(x, ", ")); }
  };
  return std::visit(Visitor{}, v);
}

void Attributes::set(std::string_view name, AttrValue value) {
  for (auto& e : entries_)
    if (e.name == name) {
      e.value = std::move(value);
      return;
    }
  entries_.push_back({std::string(name), std::move(value)});
}

bool Attributes::contains(std::string_view name) const { return find(name) != nullptr; }

void Attributes::erase(std::string_view name) {
  std::erase_if(entries_, [&](const Entry& e) { return e.name == name; });
}

const AttrValue* Attributes::find(std::string_view name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e.value;
  return nullptr;
}

std::optional<std::string> Attributes::get_string(std::string_view name) const {
  const AttrValue* v = find(name);
  if (v == nullptr || !std::holds_alternative<std::string>(*v)) return std::nullopt;
  return std::get<std::string>(*v);
}

std::optional<std::int64_t> Attributes::get_int(std::string_view name) const {
  const AttrValue* v = find(name);
  if (v == nullptr || !std::holds_alternative<std::int64_t>(*v)) return std::nullopt;
  return std::get<std::int64_t>(*v);
}

std::optional<double> Attributes::get_double(std::string_view name) const {
  const AttrValue* v = find(name);
  if (v == nullptr) return std::nullopt;
  if (std::holds_alternative<double>(*v)) return std::get<double>(*v);
  if (std::holds_alternative<std::int64_t>(*v)) return static_cast<double>(std::get<std::int64_t>(*v));
  return std::nullopt;
}

}  // namespace loco
