// GGUF key/values to and from loco attributes: the JSON form of gguf_metadata and the "loco.<name>"
// keys (io/gguf.hpp documents the mapping; value layouts from ggml-org/ggml docs/gguf.md).
#include "loco/io/detail/gguf_kv.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <unordered_set>
#include <variant>

#include "loco/core/json.hpp"
#include "loco/io/gguf.hpp"
#include "loco/io/detail/untrusted.hpp"

namespace loco::io::gguf {
namespace {

using detail::append_json_string;
using detail::shown;
using detail::utf8_error_at;

constexpr std::size_t kWindow = 64 * 1024;
constexpr std::array<std::string_view, kValueTypeCount> kTypeNames{"u8",   "i8",  "u16", "i16", "u32", "i32", "f32",
                                                                   "bool", "str", "arr", "u64", "i64", "f64"};
constexpr std::string_view kAlignmentKey = "general.alignment";
constexpr std::string_view kFileTypeKey = "general.file_type";
// Attributes are a list with a linear lookup per insertion (see safetensors.cpp): a bound on loco.* keys.
constexpr std::size_t kMaxLocoKeys = 10'000;
// The spec's limit on key length.
constexpr std::size_t kMaxKeyBytes = 65535;

std::size_t fixed_size(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::Bool: return 1;
    case ValueType::U16:
    case ValueType::I16: return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32: return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64: return 8;
    case ValueType::Str:
    case ValueType::Arr: return 0;
  }
  return 0;
}

// The fewest bytes one value of type t occupies: a string its length, an array its type and length.
std::uint64_t min_size(ValueType t) {
  if (t == ValueType::Str) return 8;
  if (t == ValueType::Arr) return 12;
  return fixed_size(t);
}

std::optional<ValueType> parse_type(std::string_view name) {
  for (std::uint32_t i = 0; i < kValueTypeCount; ++i)
    if (kTypeNames[i] == name) return static_cast<ValueType>(i);
  return std::nullopt;
}

std::string hex(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 2);
  for (const char c : s) out += fmt::format("{:02x}", static_cast<unsigned char>(c));
  return out;
}

// A JSON number text that stays a float when parsed (nlohmann reads "-0" and "3" as integers).
std::string float_text(std::string text) {
  if (text.find_first_of(".eE") == std::string::npos) text += ".0";
  return text;
}

// ---------------------------------------------------------------------------------------------
// Reading

class MetadataReader {
 public:
  explicit MetadataReader(Cursor& c) : c_(c) {}

  ReadMetadata run(std::uint64_t count) {
    if (count > c_.remaining() / 13)  // a key length, a type and a one-byte value at least
      c_.fail("it declares {} key/values, more than the {} bytes after it can hold", count, c_.remaining());
    ReadMetadata out;
    std::unordered_set<std::string> keys;
    std::size_t in_json = 0;
    for (std::uint64_t i = 0; i < count; ++i) {
      std::string key = c_.string(fmt::format("the key of key/value {}", i));
      if (key.empty()) c_.fail("key/value {} has an empty key", i);
      if (utf8_error_at(key) != std::string_view::npos) c_.fail("key {} is not UTF-8", shown(key));
      if (!keys.insert(key).second) c_.fail("key {} appears twice", shown(key));
      key_ = key;
      const ValueType t = type("its value type");
      if (key == kAlignmentKey) {
        if (t != ValueType::U32) c_.fail("{} must be of type u32, found {}", key, value_type_name(t));
        const auto a = c_.get<std::uint32_t>("its value");
        if (a == 0 || (a & (a - 1)) != 0) c_.fail("{} is {}, not a power of two", key, a);
        out.alignment = a;
      }
      if (key.starts_with(kLocoPrefix) && key.size() > kLocoPrefix.size() && read_loco(key, t, out.loco)) continue;
      out.json += in_json++ == 0 ? "[" : ",";
      out.json += "{\"key\":";
      append_json_string(out.json, key);
      out.json += fmt::format(",\"type\":\"{}\",", value_type_name(t));
      if (t == ValueType::Arr) {
        array_json(out.json, 0);
      } else {
        out.json += "\"value\":";
        if (key == kAlignmentKey) out.json += fmt::format("{}", out.alignment);
        else scalar_json(t, out.json);
      }
      out.json += '}';
    }
    if (in_json > 0) out.json += ']';
    return out;
  }

 private:
  ValueType type(std::string_view what) {
    const auto raw = c_.get<std::uint32_t>(what);
    if (raw >= kValueTypeCount) c_.fail("key {}: {} is {}, not a GGUF value type (0-12)", shown(key_), what, raw);
    return static_cast<ValueType>(raw);
  }

  std::uint64_t array_length(ValueType items) {
    const auto n = c_.get<std::uint64_t>("an array length");
    if (n > c_.remaining() / min_size(items))
      c_.fail("key {}: an array of {} {} values does not fit in the {} bytes left in the file", shown(key_), n,
              value_type_name(items), c_.remaining());
    return n;
  }

  // "loco.<name>" of a type loco's attributes hold: read as the attribute <name>. Otherwise false,
  // with nothing read past the type unless it was a string (then it is put back).
  bool read_loco(const std::string& key, ValueType t, Attributes& attrs) {
    const std::string name = key.substr(kLocoPrefix.size());
    if (name == "gguf_metadata")
      c_.fail("key {} is reserved (loco keeps GGUF key/values in the attribute of that name)", key);
    if (attrs.size() >= kMaxLocoKeys) c_.fail("more than {} loco.* keys", kMaxLocoKeys);
    switch (t) {
      case ValueType::I64: attrs.set(name, c_.get<std::int64_t>("its value")); return true;
      case ValueType::F64: attrs.set(name, c_.get<double>("its value")); return true;
      case ValueType::Str: {
        const std::uint64_t at = c_.pos();
        std::string s = c_.string("its value");
        if (utf8_error_at(s) == std::string_view::npos) {
          attrs.set(name, std::move(s));
          return true;
        }
        rewind_ = at;  // not UTF-8: kept in gguf_metadata as hex
        return false;
      }
      case ValueType::Arr: {
        // Peek at the item type; the array is read again below when it is not i64 or f64.
        const std::uint64_t at = c_.pos();
        const ValueType items = type("its item type");
        if (items != ValueType::I64 && items != ValueType::F64) {
          rewind_ = at;
          return false;
        }
        const std::uint64_t n = array_length(items);
        if (items == ValueType::I64) {
          std::vector<std::int64_t> v(n);
          for (auto& x : v) x = c_.get<std::int64_t>("an array item");
          attrs.set(name, std::move(v));
        } else {
          std::vector<double> v(n);
          for (auto& x : v) x = c_.get<double>("an array item");
          attrs.set(name, std::move(v));
        }
        return true;
      }
      default: return false;
    }
  }

  void scalar_json(ValueType t, std::string& out) {
    rewind();
    switch (t) {
      case ValueType::U8: out += fmt::format("{}", c_.get<std::uint8_t>("a u8")); return;
      case ValueType::I8: out += fmt::format("{}", c_.get<std::int8_t>("an i8")); return;
      case ValueType::U16: out += fmt::format("{}", c_.get<std::uint16_t>("a u16")); return;
      case ValueType::I16: out += fmt::format("{}", c_.get<std::int16_t>("an i16")); return;
      case ValueType::U32: out += fmt::format("{}", c_.get<std::uint32_t>("a u32")); return;
      case ValueType::I32: out += fmt::format("{}", c_.get<std::int32_t>("an i32")); return;
      case ValueType::U64: out += fmt::format("{}", c_.get<std::uint64_t>("a u64")); return;
      case ValueType::I64: out += fmt::format("{}", c_.get<std::int64_t>("an i64")); return;
      case ValueType::F32: {
        const auto f = c_.get<float>("an f32");
        if (!std::isfinite(f)) return non_finite(f, out);
        // The shortest text for the float, unless reading it as a double and rounding to float
        // would land elsewhere (a double rounding): then the double it equals.
        std::string text = fmt::format("{}", f);
        if (static_cast<float>(std::strtod(text.c_str(), nullptr)) != f)
          text = fmt::format("{}", static_cast<double>(f));
        out += float_text(std::move(text));
        return;
      }
      case ValueType::F64: {
        const auto d = c_.get<double>("an f64");
        if (!std::isfinite(d)) return non_finite(d, out);
        out += float_text(fmt::format("{}", d));
        return;
      }
      case ValueType::Bool: {
        const auto b = c_.get<std::uint8_t>("a bool");
        if (b > 1) c_.fail("key {}: bool value {}, expected 0 or 1", shown(key_), b);
        out += b != 0 ? "true" : "false";
        return;
      }
      case ValueType::Str: {
        const std::string s = c_.string("a string");
        if (utf8_error_at(s) == std::string_view::npos) append_json_string(out, s);
        else out += fmt::format("{{\"hex\":\"{}\"}}", hex(s));
        return;
      }
      case ValueType::Arr: break;
    }
    throw_error(ErrorKind::Internal, "scalar_json called for an array");
  }

  // Reads an array's item type, length and items; appends "items":T,"value":[...].
  void array_json(std::string& out, int depth) {
    rewind();
    const ValueType items = type("an array's item type");
    const std::uint64_t n = array_length(items);
    if (items == ValueType::Arr && depth + 1 >= kMaxArrayDepth)
      c_.fail("key {}: arrays nest deeper than {} levels", shown(key_), kMaxArrayDepth);
    out += fmt::format("\"items\":\"{}\",\"value\":[", value_type_name(items));
    for (std::uint64_t i = 0; i < n; ++i) {
      if (i > 0) out += ',';
      if (items == ValueType::Arr) {
        out += '{';
        array_json(out, depth + 1);
        out += '}';
      } else {
        scalar_json(items, out);
      }
    }
    out += ']';
  }

  template <typename F>
  void non_finite(F v, std::string& out) {
    out += std::isnan(v) ? "\"nan\"" : v > 0 ? "\"inf\"" : "\"-inf\"";
  }

  // After read_loco declined a value it had started to read: back to where the value began.
  void rewind() {
    if (!rewind_) return;
    c_.seek(*rewind_);
    rewind_.reset();
  }

  Cursor& c_;
  std::string key_;
  std::optional<std::uint64_t> rewind_;
};

// ---------------------------------------------------------------------------------------------
// Writing

class MetadataWriter {
 public:
  explicit MetadataWriter(const std::string& path) : path_(path) {}

  WrittenMetadata run(const Attributes& root, std::uint32_t file_type) {
    if (const auto text = root.get_string(kGgufMetadataAttribute))
      from_json(parse_json(*text, path_ + ": attribute gguf_metadata"), file_type);
    else if (root.contains(kGgufMetadataAttribute)) fail("it is not a string");
    for (const auto& e : root) {
      if (e.name == kGgufMetadataAttribute) continue;
      const std::string key = std::string(kLocoPrefix) + e.name;
      new_key(key, true);
      std::visit([&](const auto& v) { loco_value(v); }, e.value);
    }
    return std::move(out_);
  }

 private:
  template <typename... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) const {
    throw_error(ErrorKind::BadInput, "{}: attribute gguf_metadata{}: {}", path_,
                key_.empty() ? std::string() : fmt::format(" (key {})", shown(key_)),
                fmt::format(f, std::forward<Args>(args)...));
  }

  void raw(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out_.bytes.insert(out_.bytes.end(), b, b + n);
  }
  template <typename T>
  void put(T v) {
    raw(&v, sizeof v);
  }
  void put_string(std::string_view s) {
    put<std::uint64_t>(s.size());
    raw(s.data(), s.size());
  }
  void put_type(ValueType t) { put(static_cast<std::uint32_t>(t)); }

  void new_key(const std::string& key, bool from_attribute) {
    key_.clear();
    if (key.empty()) fail("an entry has an empty key");
    if (key.size() > kMaxKeyBytes) fail("key {} is longer than GGUF's {} bytes", shown(key), kMaxKeyBytes);
    if (!keys_.insert(key).second) {
      if (from_attribute)
        throw_error(ErrorKind::Usage,
                    "{}: GGUF key {} would be written twice: by gguf_metadata and by the attribute {}", path_,
                    shown(key), shown(key.substr(kLocoPrefix.size())));
      fail("key {} appears twice", shown(key));
    }
    put_string(key);
    ++out_.count;
    key_ = key;
  }

  void from_json(const nlohmann::json& entries, std::uint32_t file_type) {
    if (!entries.is_array()) fail("expected a JSON array of {{\"key\", \"type\", \"value\"}} objects");
    for (const auto& e : entries) {
      key_.clear();
      if (!e.is_object() || !e.contains("key") || !e["key"].is_string() || !e.contains("type") ||
          !e["type"].is_string() || !e.contains("value"))
        fail("every entry must be an object with a string \"key\", a string \"type\" and a \"value\"");
      const std::string key = e["key"].get<std::string>();
      new_key(key, false);
      const auto t = parse_type(e["type"].get<std::string>());
      if (!t) fail("unknown type {}", shown(e["type"].get<std::string>()));
      put_type(*t);
      if (key == kAlignmentKey) {
        const auto& v = e["value"];
        if (*t != ValueType::U32 || !v.is_number_unsigned() || v.get<std::uint64_t>() == 0 ||
            v.get<std::uint64_t>() > std::numeric_limits<std::uint32_t>::max() ||
            (v.get<std::uint64_t>() & (v.get<std::uint64_t>() - 1)) != 0)
          fail("general.alignment must be a u32 power of two");
        out_.alignment = static_cast<std::uint32_t>(v.get<std::uint64_t>());
      }
      if (key == kFileTypeKey && *t == ValueType::U32) {
        put(file_type);
        continue;
      }
      value(*t, e, 0);
    }
  }

  template <typename T>
  void integer(const nlohmann::json& v) {
    bool ok = false;
    if (v.is_number_unsigned()) {
      const auto u = v.get<std::uint64_t>();
      ok = u <= static_cast<std::uint64_t>(std::numeric_limits<T>::max());
      if (ok) put(static_cast<T>(u));
    } else if (v.is_number_integer()) {
      const auto s = v.get<std::int64_t>();
      ok = std::is_signed_v<T> ? s >= static_cast<std::int64_t>(std::numeric_limits<T>::min()) &&
                                     s <= static_cast<std::int64_t>(std::numeric_limits<T>::max())
                               : s >= 0 && static_cast<std::uint64_t>(s) <= std::numeric_limits<T>::max();
      if (ok) put(static_cast<T>(s));
    }
    if (!ok) fail("{} is not an integer in the range of the type", excerpt(v.dump()));
  }

  double real(const nlohmann::json& v) {
    if (v.is_number()) return v.get<double>();
    if (v.is_string()) {
      const std::string s = v.get<std::string>();
      if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
      if (s == "inf") return std::numeric_limits<double>::infinity();
      if (s == "-inf") return -std::numeric_limits<double>::infinity();
    }
    fail("{} is not a number, \"nan\", \"inf\" or \"-inf\"", excerpt(v.dump()));
  }

  std::string text(const nlohmann::json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.size() == 1 && v.contains("hex") && v["hex"].is_string()) {
      const std::string h = v["hex"].get<std::string>();
      if (h.size() % 2 == 0 && h.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos) {
        std::string s(h.size() / 2, '\0');
        for (std::size_t i = 0; i < s.size(); ++i)
          s[i] = static_cast<char>(std::strtoul(h.substr(2 * i, 2).c_str(), nullptr, 16));
        return s;
      }
    }
    fail("{} is not a string or {{\"hex\": \"<even number of hex digits>\"}}", excerpt(v.dump()));
  }

  // The value of an entry (holder["value"]; an array's item type is holder["items"]).
  void value(ValueType t, const nlohmann::json& holder, int depth) {
    const nlohmann::json& v = holder["value"];
    if (t == ValueType::Arr) {
      if (!holder.contains("items") || !holder["items"].is_string())
        fail("an array needs a string \"items\" (its item type)");
      const auto items = parse_type(holder["items"].get<std::string>());
      if (!items) fail("unknown item type {}", shown(holder["items"].get<std::string>()));
      if (!v.is_array()) fail("the value of an array must be a JSON array");
      if (*items == ValueType::Arr && depth + 1 >= kMaxArrayDepth)
        fail("arrays nest deeper than {} levels", kMaxArrayDepth);
      put_type(*items);
      put<std::uint64_t>(v.size());
      for (const auto& item : v) {
        if (*items == ValueType::Arr) {
          if (!item.is_object() || !item.contains("value"))
            fail("an item of an array of arrays must be {{\"items\", \"value\"}}");
          value(ValueType::Arr, item, depth + 1);
        } else {
          scalar(*items, item);
        }
      }
      return;
    }
    scalar(t, v);
  }

  void scalar(ValueType t, const nlohmann::json& v) {
    switch (t) {
      case ValueType::U8: return integer<std::uint8_t>(v);
      case ValueType::I8: return integer<std::int8_t>(v);
      case ValueType::U16: return integer<std::uint16_t>(v);
      case ValueType::I16: return integer<std::int16_t>(v);
      case ValueType::U32: return integer<std::uint32_t>(v);
      case ValueType::I32: return integer<std::int32_t>(v);
      case ValueType::U64: return integer<std::uint64_t>(v);
      case ValueType::I64: return integer<std::int64_t>(v);
      case ValueType::F32: return put(static_cast<float>(real(v)));
      case ValueType::F64: return put(real(v));
      case ValueType::Bool:
        if (!v.is_boolean()) fail("{} is not true or false", excerpt(v.dump()));
        return put<std::uint8_t>(v.get<bool>() ? 1 : 0);
      case ValueType::Str: return put_string(text(v));
      case ValueType::Arr: break;
    }
    fail("an array where a single value was expected");
  }

  void loco_value(std::int64_t v) {
    put_type(ValueType::I64);
    put(v);
  }
  void loco_value(double v) {
    put_type(ValueType::F64);
    put(v);
  }
  void loco_value(const std::string& v) {
    put_type(ValueType::Str);
    put_string(v);
  }
  template <typename T>
  void loco_value(const std::vector<T>& v) {
    put_type(ValueType::Arr);
    put_type(std::is_same_v<T, double> ? ValueType::F64 : ValueType::I64);
    put<std::uint64_t>(v.size());
    for (const T x : v) put(x);
  }

  const std::string& path_;
  std::string key_;
  std::unordered_set<std::string> keys_;
  WrittenMetadata out_;
};

}  // namespace

std::string_view value_type_name(ValueType t) noexcept {
  const auto i = static_cast<std::uint32_t>(t);
  return i < kValueTypeCount ? kTypeNames[i] : "?";
}

void Cursor::read(void* dst, std::size_t n, std::string_view what) {
  if (n > remaining())
    fail("{} at byte {} needs {} bytes, but the file ends at byte {} (truncated?)", what, pos_, n, size_);
  auto* out = static_cast<std::byte*>(dst);
  if (n > kWindow) {
    bytes_.read_at(pos_, std::span(out, n));
    pos_ += n;
    return;
  }
  if (pos_ < buf_at_ || pos_ + n > buf_at_ + buf_.size()) {
    buf_.resize(static_cast<std::size_t>(std::min<std::uint64_t>(kWindow, remaining())));
    bytes_.read_at(pos_, buf_);
    buf_at_ = pos_;
  }
  if (n > 0) std::memcpy(out, buf_.data() + (pos_ - buf_at_), n);
  pos_ += n;
}

void Cursor::seek(std::uint64_t pos) {
  if (pos > size_) throw_error(ErrorKind::Internal, "{}: seek to {} past the end {}", file(), pos, size_);
  pos_ = pos;
}

std::string Cursor::string(std::string_view what) {
  const auto n = get<std::uint64_t>(what);
  if (n > remaining())
    fail("{} is {} bytes long at byte {}, past the end of the {}-byte file", what, n, pos_ - 8, size_);
  std::string s(static_cast<std::size_t>(n), '\0');
  read(s.data(), s.size(), what);
  return s;
}

ReadMetadata read_metadata(Cursor& c, std::uint64_t count) { return MetadataReader(c).run(count); }

WrittenMetadata write_metadata(const Attributes& root, std::uint32_t file_type, const std::string& path) {
  return MetadataWriter(path).run(root, file_type);
}

}  // namespace loco::io::gguf
