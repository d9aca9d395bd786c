// The one parser of option texts: strict numbers and "name[:key=value,...]" specs. Each concern
// (optimizers, schedules, attacks, reducers, partitions, topologies, codecs, ...) keeps only its
// vocabulary (names, keys, ranges); the syntax and its error messages live here.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loco {

// The allowed values of a real number: each end closed or open, ±∞ for no bound. Non-finite
// values (NaN, ±inf) are refused unless allow_non_finite() was asked for.
struct Range {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false, hi_open = false;
  bool non_finite = false;

  static Range any_finite() { return {}; }
  static Range at_least(double lo) { return {lo, std::numeric_limits<double>::infinity(), false, false}; }
  static Range above(double lo) { return {lo, std::numeric_limits<double>::infinity(), true, false}; }
  // [lo, hi]; open_lo / open_hi make either end open.
  static Range between(double lo, double hi, bool open_lo = false, bool open_hi = false) {
    return {lo, hi, open_lo, open_hi};
  }
  static Range allow_non_finite() { return {.non_finite = true}; }

  bool contains(double x) const;
  // "≥ 0", "> 0", "≤ 1", "in [0, 1)", "" for every finite number.
  std::string text() const;
};

// Strict numbers. The whole text is the number: one optional sign ('+' or '-'), decimal digits,
// and for reals a fraction and a decimal exponent; no blanks, no hexadecimal, nothing after it.
// "inf" and "nan" read as reals only where the range allows non-finite values. A real whose
// magnitude a double cannot hold (1e999, 1e-999) is refused, not rounded to ±inf or 0.
// Errors are Error(Usage) and read "<option>: '<text>' is not ..." ("--weights: 'x' is not a number",
// "--rounds: '-1' is not in [1, 1000]").
std::int64_t parse_int(std::string_view text, std::string_view option,
                       std::int64_t lo = std::numeric_limits<std::int64_t>::min(),
                       std::int64_t hi = std::numeric_limits<std::int64_t>::max());
// A count or size: an integer ≥ 0 up to 2^64 − 1 ('-' refused even for "-0").
std::uint64_t parse_size(std::string_view text, std::string_view option);
double parse_real(std::string_view text, std::string_view option, const Range& range = {});
// A comma-separated list of reals ("1,0.5,2"); empty items are refused.
std::vector<double> parse_reals(std::string_view text, std::string_view option, const Range& range = {});
// true/1/yes or false/0/no.
bool parse_bool(std::string_view text, std::string_view option);
// A number of bytes with an optional unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB,
// TiB (powers of 1024), any case ("5GB", "2GiB", "123"); must be positive.
std::uint64_t parse_byte_size(std::string_view text, std::string_view option);

// One "name[:key=value,...]" spec, e.g. "adamw:lr=0.001,wd=0.1". Blanks around the name, keys
// and values are dropped. Refused (Error(Usage), naming `what` and the text): an empty name, an
// empty item (a trailing or doubled comma, nothing after ':'), an item without '=', an empty key
// or value, a key given twice. Keys are read with the typed getters below, which mark them
// used; done() then refuses the keys nobody asked for, listing those that were asked for.
class Spec {
 public:
  // `what` names the kind of spec in messages ("optimizer", "reducer", "topology").
  Spec(std::string_view text, std::string_view what);

  const std::string& name() const { return name_; }
  const std::string& text() const { return text_; }
  const std::string& what() const { return what_; }
  const std::vector<std::pair<std::string, std::string>>& params() const { return params_; }

  bool has(std::string_view key) const;
  // take*: the value of key (marked used), nullopt when absent; the others: fallback when absent.
  std::optional<std::string> take(std::string_view key);
  std::optional<double> take_real(std::string_view key, const Range& range = {});
  std::optional<std::int64_t> take_integer(std::string_view key,
                                           std::int64_t lo = std::numeric_limits<std::int64_t>::min(),
                                           std::int64_t hi = std::numeric_limits<std::int64_t>::max());
  std::optional<bool> take_boolean(std::string_view key);
  // A list of values separated by sep ("alpha=0.1/0.5/1"); each item as take_real() or take_integer().
  std::optional<std::vector<double>> take_reals(std::string_view key, char sep, const Range& range = {});
  std::optional<std::vector<std::int64_t>> take_integers(std::string_view key, char sep,
                                                         std::int64_t lo = std::numeric_limits<std::int64_t>::min(),
                                                         std::int64_t hi = std::numeric_limits<std::int64_t>::max());
  double real(std::string_view key, double fallback, const Range& range = {});
  std::int64_t integer(std::string_view key, std::int64_t fallback,
                       std::int64_t lo = std::numeric_limits<std::int64_t>::min(),
                       std::int64_t hi = std::numeric_limits<std::int64_t>::max());
  bool boolean(std::string_view key, bool fallback);
  // One of the allowed words; fallback when absent.
  std::string choice(std::string_view key, std::string_view fallback, std::initializer_list<std::string_view> allowed);
  // Refuses a spec without key: "<what> '<text>': <name> needs <key>=<hint>".
  void require(std::string_view key, std::string_view hint) const;

  // Refuses the first key no getter asked for: "unknown parameter 'k' (parameters: a, b)".
  void done() const;
  // How messages about this spec begin: "<what> '<text>'"; a key's value reads "<where>: key=value ...".
  std::string where() const;

 private:
  std::string text_, what_, name_;
  std::vector<std::pair<std::string, std::string>> params_;
  std::vector<bool> used_;
  std::vector<std::string> asked_;
  const std::string* find(std::string_view key);
};

// Specs joined by '+' ("nnm:f=1+krum:f=2", "topk:density=0.1+quant:bits=4"); an empty part is
// refused. A '+' right after '=' or in a number's exponent ("lr=+1", "eps=1e+5") is not a join.
std::vector<Spec> parse_spec_chain(std::string_view text, std::string_view what);

// Blanks (spaces and tabs) off both ends.
std::string_view trim_blanks(std::string_view s) noexcept;

}  // namespace loco
