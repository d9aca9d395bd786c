// Strict numbers and "name[:key=value,...]" specs (spec.hpp).
#include "loco/core/spec.hpp"

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cmath>
#include <system_error>

#include <fmt/format.h>

#include "loco/core/error.hpp"

namespace loco {

namespace {

// What a message is about: a whole option ("--weights: 'x' ...") or one key of a spec
// ("reducer 'krum:f=x': f=x ...").
struct Subject {
  std::string_view option;
  std::string_view key;  // empty for a whole option
  std::string_view text;
};

[[noreturn]] void refuse(const Subject& s, std::string_view why) {
  if (s.key.empty()) throw_error(ErrorKind::Usage, "{}: '{}' {}", s.option, excerpt(s.text), why);
  throw_error(ErrorKind::Usage, "{}: {}={} {}", s.option, s.key, excerpt(s.text), why);
}

// The text without one leading '+' (from_chars takes '-' only); false when no number can follow.
bool drop_plus(std::string_view& t) {
  if (!t.empty() && t.front() == '+') {
    t.remove_prefix(1);
    if (!t.empty() && (t.front() == '+' || t.front() == '-')) return false;
  }
  return !t.empty();
}

std::string int_range_text(std::int64_t lo, std::int64_t hi) {
  constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  if (lo == kMin && hi == kMax) return {};
  if (hi == kMax) return fmt::format("≥ {}", lo);
  if (lo == kMin) return fmt::format("≤ {}", hi);
  return fmt::format("in [{}, {}]", lo, hi);
}

std::int64_t int_of(const Subject& s, std::int64_t lo, std::int64_t hi) {
  std::string_view t = s.text;
  std::int64_t v = 0;
  if (!drop_plus(t)) refuse(s, "is not an integer");
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (end != t.data() + t.size() || ec == std::errc::invalid_argument) refuse(s, "is not an integer");
  if (ec == std::errc::result_out_of_range) refuse(s, "is outside the range of a 64-bit integer");
  if (v < lo || v > hi) refuse(s, fmt::format("is not {}", int_range_text(lo, hi)));
  return v;
}

std::uint64_t size_of(const Subject& s) {
  std::string_view t = s.text;
  std::uint64_t v = 0;
  if (!drop_plus(t) || t.front() == '-') refuse(s, "is not an integer ≥ 0");
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (end != t.data() + t.size() || ec == std::errc::invalid_argument) refuse(s, "is not an integer ≥ 0");
  if (ec == std::errc::result_out_of_range) refuse(s, "is larger than 2^64 − 1");
  return v;
}

double real_of(const Subject& s, const Range& range) {
  std::string_view t = s.text;
  double v = 0;
  if (!drop_plus(t)) refuse(s, "is not a number");
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v, std::chars_format::general);
  if (end != t.data() + t.size() || ec == std::errc::invalid_argument) refuse(s, "is not a number");
  // libstdc++ reports both overflow and underflow (a non-zero value that rounds to 0) this way.
  if (ec == std::errc::result_out_of_range) refuse(s, "is outside the range of a double (magnitude 1e-308 to 1e308)");
  if (!std::isfinite(v) && !range.non_finite) refuse(s, "is not a finite number");
  if (!range.contains(v)) refuse(s, fmt::format("is not {}", range.text()));
  return v;
}

bool bool_of(const Subject& s) {
  const std::string_view t = s.text;
  if (t == "true" || t == "1" || t == "yes") return true;
  if (t == "false" || t == "0" || t == "no") return false;
  refuse(s, "is not a boolean (true/false, yes/no or 1/0)");
}

// The items of a list separated by sep, each read by one().
template <typename T, typename One>
std::vector<T> items(std::string_view text, char sep, One one) {
  std::vector<T> out;
  for (std::size_t p = 0; p <= text.size();) {
    const std::size_t q = std::min(text.find(sep, p), text.size());
    out.push_back(one(text.substr(p, q - p)));
    p = q + 1;
  }
  return out;
}

std::string number_text(double x) {
  if (std::isinf(x)) return x > 0 ? "∞" : "−∞";
  return fmt::format("{}", x);
}

}  // namespace

bool Range::contains(double x) const {
  if (std::isnan(x)) return non_finite;
  if (x < lo || (lo_open && x == lo)) return false;
  if (x > hi || (hi_open && x == hi)) return false;
  return true;
}

std::string Range::text() const {
  const bool low = std::isfinite(lo), high = std::isfinite(hi);
  if (low && high)
    return fmt::format("in {}{}, {}{}", lo_open ? '(' : '[', number_text(lo), number_text(hi), hi_open ? ')' : ']');
  if (low) return fmt::format("{} {}", lo_open ? ">" : "≥", number_text(lo));
  if (high) return fmt::format("{} {}", hi_open ? "<" : "≤", number_text(hi));
  return {};
}

std::int64_t parse_int(std::string_view text, std::string_view option, std::int64_t lo, std::int64_t hi) {
  return int_of({option, {}, text}, lo, hi);
}

std::uint64_t parse_size(std::string_view text, std::string_view option) { return size_of({option, {}, text}); }

double parse_real(std::string_view text, std::string_view option, const Range& range) {
  return real_of({option, {}, text}, range);
}

bool parse_bool(std::string_view text, std::string_view option) { return bool_of({option, {}, text}); }

std::vector<double> parse_reals(std::string_view text, std::string_view option, const Range& range) {
  return items<double>(text, ',', [&](std::string_view item) { return real_of({option, {}, item}, range); });
}

std::uint64_t parse_byte_size(std::string_view text, std::string_view option) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const Subject s{option, {}, text};
  if (digits == 0) refuse(s, "is not a number of bytes such as 5GB, 500MB or 2GiB");
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + digits, n);
  if (ec != std::errc()) refuse(s, "is too large (at most 2^64 − 1 bytes)");
  std::string unit(text.substr(digits));
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  static constexpr std::pair<std::string_view, std::uint64_t> kUnits[] = {{"", 1},
                                                                          {"B", 1},
                                                                          {"KB", 1000},
                                                                          {"MB", 1000000},
                                                                          {"GB", 1000000000},
                                                                          {"TB", 1000000000000},
                                                                          {"KIB", 1ull << 10},
                                                                          {"MIB", 1ull << 20},
                                                                          {"GIB", 1ull << 30},
                                                                          {"TIB", 1ull << 40}};
  const auto* u = std::find_if(std::begin(kUnits), std::end(kUnits), [&](const auto& e) { return e.first == unit; });
  if (u == std::end(kUnits)) refuse(s, "has an unknown unit (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)");
  if (n > std::numeric_limits<std::uint64_t>::max() / u->second) refuse(s, "is too large (at most 2^64 − 1 bytes)");
  if (n == 0) refuse(s, "is not a positive size");
  return n * u->second;
}

std::string_view trim_blanks(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// ---------------------------------------------------------------- specs

Spec::Spec(std::string_view text, std::string_view what) : text_(trim_blanks(text)), what_(what) {
  if (text_.empty()) throw_error(ErrorKind::Usage, "empty {} spec", what_);
  const std::string_view all = text_;
  const std::size_t colon = all.find(':');
  name_ = std::string(trim_blanks(all.substr(0, colon)));
  if (name_.empty()) throw_error(ErrorKind::Usage, "{}: no name before ':'", where());
  if (colon == std::string_view::npos) return;
  std::string_view rest = all.substr(colon + 1);
  if (trim_blanks(rest).empty()) throw_error(ErrorKind::Usage, "{}: nothing after ':'", where());
  for (;;) {
    const std::size_t comma = rest.find(',');
    const std::string_view item = trim_blanks(rest.substr(0, comma));
    if (item.empty())
      throw_error(ErrorKind::Usage, "{}: {}", where(),
                  comma == std::string_view::npos ? "trailing comma" : "empty item between commas");
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) throw_error(ErrorKind::Usage, "{}: '{}' is not key=value", where(), item);
    std::string key(trim_blanks(item.substr(0, eq))), value(trim_blanks(item.substr(eq + 1)));
    if (key.empty() || value.empty())
      throw_error(ErrorKind::Usage, "{}: '{}' is not key=value (empty {})", where(), item,
                  key.empty() ? "key" : "value");
    if (has(key)) throw_error(ErrorKind::Usage, "{}: {} given twice", where(), key);
    params_.emplace_back(std::move(key), std::move(value));
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  used_.assign(params_.size(), false);
}

std::string Spec::where() const { return fmt::format("{} '{}'", what_, excerpt(text_)); }

bool Spec::has(std::string_view key) const {
  return std::any_of(params_.begin(), params_.end(), [&](const auto& p) { return p.first == key; });
}

const std::string* Spec::find(std::string_view key) {
  if (std::find(asked_.begin(), asked_.end(), key) == asked_.end()) asked_.emplace_back(key);
  for (std::size_t i = 0; i < params_.size(); ++i)
    if (params_[i].first == key) {
      used_[i] = true;
      return &params_[i].second;
    }
  return nullptr;
}

std::optional<std::string> Spec::take(std::string_view key) {
  const std::string* v = find(key);
  return v ? std::optional<std::string>(*v) : std::nullopt;
}

std::optional<double> Spec::take_real(std::string_view key, const Range& range) {
  const std::string* v = find(key);
  if (!v) return std::nullopt;
  const std::string w = where();
  return real_of({w, key, *v}, range);
}

double Spec::real(std::string_view key, double fallback, const Range& range) {
  return take_real(key, range).value_or(fallback);
}

std::optional<std::int64_t> Spec::take_integer(std::string_view key, std::int64_t lo, std::int64_t hi) {
  const std::string* v = find(key);
  if (!v) return std::nullopt;
  const std::string w = where();
  return int_of({w, key, *v}, lo, hi);
}

std::int64_t Spec::integer(std::string_view key, std::int64_t fallback, std::int64_t lo, std::int64_t hi) {
  return take_integer(key, lo, hi).value_or(fallback);
}

std::optional<std::vector<double>> Spec::take_reals(std::string_view key, char sep, const Range& range) {
  const std::string* v = find(key);
  if (!v) return std::nullopt;
  const std::string w = where();
  return items<double>(*v, sep, [&](std::string_view item) { return real_of({w, key, item}, range); });
}

std::optional<std::vector<std::int64_t>> Spec::take_integers(std::string_view key, char sep, std::int64_t lo,
                                                             std::int64_t hi) {
  const std::string* v = find(key);
  if (!v) return std::nullopt;
  const std::string w = where();
  return items<std::int64_t>(*v, sep, [&](std::string_view item) { return int_of({w, key, item}, lo, hi); });
}

std::optional<bool> Spec::take_boolean(std::string_view key) {
  const std::string* v = find(key);
  if (!v) return std::nullopt;
  const std::string w = where();
  return bool_of({w, key, *v});
}

bool Spec::boolean(std::string_view key, bool fallback) { return take_boolean(key).value_or(fallback); }

std::string Spec::choice(std::string_view key, std::string_view fallback,
                         std::initializer_list<std::string_view> allowed) {
  const std::string* v = find(key);
  if (!v) return std::string(fallback);
  for (std::string_view a : allowed)
    if (a == *v) return *v;
  std::string list;
  for (std::string_view a : allowed) list += fmt::format("{}{}", list.empty() ? "" : ", ", a);
  throw_error(ErrorKind::Usage, "{}: {}={} is not one of {}", where(), key, excerpt(*v), list);
}

void Spec::require(std::string_view key, std::string_view hint) const {
  if (!has(key)) throw_error(ErrorKind::Usage, "{}: {} needs {}={}", where(), name_, key, hint);
}

void Spec::done() const {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (used_[i]) continue;
    std::string known;
    for (const std::string& a : asked_) known += fmt::format("{}{}", known.empty() ? "" : ", ", a);
    throw_error(ErrorKind::Usage, "{}: unknown parameter '{}' ({})", where(), params_[i].first,
                known.empty() ? fmt::format("{} takes none", name_) : fmt::format("parameters: {}", known));
  }
}

namespace {
// The next '+' at or after p that joins two specs, not one inside a number ("lr=+1", "1e+5").
std::size_t next_join(std::string_view text, std::size_t p) {
  for (std::size_t q = text.find('+', p); q != std::string_view::npos; q = text.find('+', q + 1)) {
    const char before = q > 0 ? text[q - 1] : ' ';
    const bool exponent = (before == 'e' || before == 'E') && q > 1 &&
                          (std::isdigit(static_cast<unsigned char>(text[q - 2])) || text[q - 2] == '.');
    if (before != '=' && !exponent) return q;
  }
  return text.size();
}
}  // namespace

std::vector<Spec> parse_spec_chain(std::string_view text, std::string_view what) {
  std::vector<Spec> out;
  for (std::size_t p = 0; p <= text.size();) {
    const std::size_t q = next_join(text, p);
    if (trim_blanks(text.substr(p, q - p)).empty())
      throw_error(ErrorKind::Usage, "{} '{}': empty part around '+'", what, excerpt(text));
    out.emplace_back(text.substr(p, q - p), what);
    p = q + 1;
  }
  return out;
}

}  // namespace loco
