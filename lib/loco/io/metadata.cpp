// Typed root attributes in string-only metadata (metadata.hpp).
#include "loco/io/metadata.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "loco/core/error.hpp"

namespace loco::io {
namespace {

enum class Type { String, Int, Real, Ints, Reals };

constexpr std::pair<Type, std::string_view> kTypeNames[] = {
    {Type::Int, "int64"}, {Type::Real, "float64"}, {Type::Ints, "int64[]"}, {Type::Reals, "float64[]"}};

std::string_view type_name(Type t) {
  for (const auto& [type, name] : kTypeNames)
    if (type == t) return name;
  return "string";
}

Type type_of(const AttrValue& v) {
  static constexpr Type kByIndex[] = {Type::Int, Type::Real, Type::String, Type::Ints, Type::Reals};
  return kByIndex[v.index()];
}

// The documented numeric attributes of man 5 loco-format that a hand-written file gives as text.
Type documented_type(std::string_view name) {
  static constexpr std::string_view kInts[] = {"round",  "step",        "worker",   "samples",   "shard",
                                               "shards", "inner_steps", "fragment", "fragments", "overlap"};
  static constexpr std::string_view kReals[] = {"loss_first", "loss_last", "loss_mean", "lr"};
  if (std::find(std::begin(kInts), std::end(kInts), name) != std::end(kInts)) return Type::Int;
  if (std::find(std::begin(kReals), std::end(kReals), name) != std::end(kReals)) return Type::Real;
  return Type::String;
}

std::optional<std::int64_t> read_int(std::string_view s) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> read_real(std::string_view s) {
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);  // also "inf", "nan"
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

template <typename T>
std::optional<std::vector<T>> read_array(std::string_view s) {
  const auto j = nlohmann::json::parse(s, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return std::nullopt;
  std::vector<T> out;
  for (const auto& x : j) {
    if constexpr (std::is_same_v<T, std::int64_t>) {
      if (!x.is_number_integer()) return std::nullopt;
    } else if (!x.is_number()) {
      return std::nullopt;
    }
    out.push_back(x.get<T>());
  }
  return out;
}

std::optional<AttrValue> read_as(Type t, const std::string& s) {
  switch (t) {
    case Type::String: return AttrValue(s);
    case Type::Int:
      if (const auto v = read_int(s)) return AttrValue(*v);
      return std::nullopt;
    case Type::Real:
      if (const auto v = read_real(s)) return AttrValue(*v);
      return std::nullopt;
    case Type::Ints:
      if (auto v = read_array<std::int64_t>(s)) return AttrValue(std::move(*v));
      return std::nullopt;
    case Type::Reals:
      if (auto v = read_array<double>(s)) return AttrValue(std::move(*v));
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> attributes_to_metadata(const Attributes& root) {
  std::vector<std::pair<std::string, std::string>> out;
  nlohmann::json types = nlohmann::json::object();
  for (const auto& e : root) {
    if (e.name == kAttributeTypesKey)
      throw_error(ErrorKind::Usage, "attribute name {} is reserved for the types of the others", kAttributeTypesKey);
    const Type t = type_of(e.value);
    if (t != Type::String) types[e.name] = type_name(t);
    out.emplace_back(e.name, attr_to_string(e.value));  // fmt's "{}" of a double is its shortest round trip
  }
  if (!types.empty()) out.emplace_back(std::string(kAttributeTypesKey), types.dump());
  return out;
}

Attributes attributes_from_metadata(const Attributes& strings, const std::string& file) {
  nlohmann::json types = nlohmann::json::object();
  if (const auto text = strings.get_string(kAttributeTypesKey)) {
    types = nlohmann::json::parse(*text, nullptr, false);
    if (types.is_discarded() || !types.is_object())
      throw_error(ErrorKind::BadInput, "{}: metadata {} is not a JSON object", file, kAttributeTypesKey);
  }
  Attributes out;
  for (const auto& e : strings) {
    if (e.name == kAttributeTypesKey) continue;
    const auto* s = std::get_if<std::string>(&e.value);
    if (s == nullptr) {  // already typed by the reader
      out.set(e.name, e.value);
      continue;
    }
    Type t = documented_type(e.name);
    bool recorded = false;
    if (const auto it = types.find(e.name); it != types.end()) {
      const auto name = it->is_string() ? it->get<std::string>() : std::string();
      const auto known =
          std::find_if(std::begin(kTypeNames), std::end(kTypeNames), [&](const auto& p) { return p.second == name; });
      if (known == std::end(kTypeNames))
        throw_error(ErrorKind::BadInput,
                    "{}: metadata {} gives attribute {} the unknown type {} (known: int64, float64, "
                    "int64[], float64[])",
                    file, kAttributeTypesKey, e.name, it->dump());
      t = known->first;
      recorded = true;
    }
    const auto v = read_as(t, *s);
    if (!v) {
      const std::string shown = s->size() > 64 ? s->substr(0, 64) + "..." : *s;
      throw_error(ErrorKind::BadInput, "{}: attribute {} must be {} ({}), found \"{}\"", file, e.name,
                  t == Type::Int    ? "an integer"
                  : t == Type::Real ? "a number"
                                    : "a JSON array of numbers",
                  recorded ? fmt::format("as {} records", kAttributeTypesKey) : std::string("man 5 loco-format"),
                  shown);
    }
    out.set(e.name, *v);
  }
  return out;
}

}  // namespace loco::io
