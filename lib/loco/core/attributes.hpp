// Attributes: ordered name → value pairs carried by files, tensors and groups.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace loco {

using AttrValue = std::variant<std::int64_t, double, std::string, std::vector<std::int64_t>, std::vector<double>>;

// A value as text: integers and reals as written, strings as they are, arrays "[1, 2]".
std::string attr_to_string(const AttrValue& v);

class Attributes {
 public:
  struct Entry {
    std::string name;
    AttrValue value;
  };
  // Sets or replaces, keeping the first position of a replaced name.
  void set(std::string_view name, AttrValue value);
  bool contains(std::string_view name) const;
  void erase(std::string_view name);
  const AttrValue* find(std::string_view name) const;
  // Typed lookups: nullopt when absent or of another type (an int64 reads as a double too).
  std::optional<std::string> get_string(std::string_view name) const;
  std::optional<std::int64_t> get_int(std::string_view name) const;
  std::optional<double> get_double(std::string_view name) const;

  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  auto begin() const noexcept { return entries_.begin(); }
  auto end() const noexcept { return entries_.end(); }

 private:
  std::vector<Entry> entries_;
};

}  // namespace loco
