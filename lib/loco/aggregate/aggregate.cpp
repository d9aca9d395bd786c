// The options of a round of aggregation (reductions, clipping, staleness, DP, QFedAvg) and the entry
// point aggregate() (the work is detail::Aggregator's: open.cpp, round.cpp, passes.cpp; the summary's
// JSON is summary.cpp).
#include "loco/aggregate/aggregate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "loco/aggregate/detail/aggregator.hpp"
#include "loco/core/error.hpp"

namespace loco::aggregate {

std::string_view reduction_name(Reduction r) noexcept {
  switch (r) {
    case Reduction::Mean: return "mean";
    case Reduction::WeightedMean: return "weighted-mean";
    case Reduction::ContributorMean: return "contributor-mean";
    case Reduction::Robust: return "robust";
    case Reduction::QFedAvg: return "qfedavg";
  }
  return "mean";
}

Reduction parse_reduction(std::string_view text) {
  if (text == "mean") return Reduction::Mean;
  if (text == "weighted-mean") return Reduction::WeightedMean;
  if (text == "contributor-mean") return Reduction::ContributorMean;
  throw_error(ErrorKind::Usage, "reduction '{}' is not one of mean, weighted-mean, contributor-mean", text);
}

std::string_view clip_name(Clip c) noexcept { return c == Clip::None ? "none" : "median-norm"; }

Clip parse_clip(std::string_view text) {
  if (text == "none") return Clip::None;
  if (text == "median-norm") return Clip::MedianNorm;
  throw_error(ErrorKind::Usage, "clip '{}' is not one of none, median-norm", text);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

double staleness_weight(std::int64_t staleness, double exponent) {
  if (staleness < 0) throw_error(ErrorKind::Internal, "negative staleness {}", staleness);
  return std::pow(1.0 + static_cast<double>(staleness), -exponent);
}

namespace {

// "name:k=v,k=v" → name and its pairs; throws Error(Usage) naming `what` for a malformed pair.
std::pair<std::string, std::vector<std::pair<std::string, std::string>>> split_spec(std::string_view text,
                                                                                     std::string_view what) {
  const auto colon = text.find(':');
  std::pair<std::string, std::vector<std::pair<std::string, std::string>>> out{std::string(text.substr(0, colon)), {}};
  if (colon == std::string_view::npos) return out;
  std::string_view rest = text.substr(colon + 1);
  for (;;) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == item.size())
      throw_error(ErrorKind::Usage, "{} '{}': '{}' is not key=value", what, text, item);
    out.second.emplace_back(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return out;
}

// A finite number ≥ lo (> lo when strict) from a key=value pair.
double spec_number(std::string_view what, const std::string& key, const std::string& value, double lo, bool strict) {
  double x = 0;
  std::size_t used = 0;
  try {
    x = std::stod(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || !std::isfinite(x) || x < lo || (strict && x == lo))
    throw_error(ErrorKind::Usage, "{}: {}={} is not a finite number {} {}", what, key, value, strict ? ">" : "≥", lo);
  return x;
}

}  // namespace

Staleness parse_staleness(std::string_view text) {
  auto [name, kv] = split_spec(text, "staleness rule");
  Staleness st;
  std::vector<std::string> keys;
  if (name == "constant") st.rule = StalenessRule::Constant;
  else if (name == "polynomial") st.rule = StalenessRule::Polynomial, st.a = 0.5, keys = {"a"};
  else if (name == "hinge") st.rule = StalenessRule::Hinge, st.a = 10, st.b = 4, keys = {"a", "b"};
  else if (name == "fedfix") st.rule = StalenessRule::FedFix;
  else
    throw_error(ErrorKind::Usage, "staleness rule '{}' is not one of constant, polynomial[:a=A], hinge[:a=A,b=B], fedfix",
                text);
  for (const auto& [k, v] : kv) {
    if (std::find(keys.begin(), keys.end(), k) == keys.end())
      throw_error(ErrorKind::Usage, "staleness rule '{}': unknown parameter '{}'", text, k);
    (k == "a" ? st.a : st.b) = spec_number("staleness rule", k, v, 0, false);
  }
  return st;
}

std::string format_staleness(const Staleness& s) {
  switch (s.rule) {
    case StalenessRule::Constant: return "constant";
    case StalenessRule::Polynomial: return fmt::format("polynomial:a={}", s.a);
    case StalenessRule::Hinge: return fmt::format("hinge:a={},b={}", s.a, s.b);
    case StalenessRule::FedFix: return "fedfix";
  }
  return "constant";
}

double staleness_gain(const Staleness& r, std::int64_t s) {
  if (s < 0) throw_error(ErrorKind::Internal, "negative staleness {}", s);
  const double sd = static_cast<double>(s);
  switch (r.rule) {
    case StalenessRule::Constant: return 1.0;
    case StalenessRule::Polynomial: return std::pow(1.0 + sd, -r.a);
    case StalenessRule::Hinge: return sd <= r.b ? 1.0 : 1.0 / (r.a * (sd - r.b) + 1.0);
    case StalenessRule::FedFix: return 1.0 + sd;
  }
  return 1.0;
}

robust::AdaptiveClipOptions parse_adaptive_clip(std::string_view text) {
  robust::AdaptiveClipOptions o;
  if (text.empty()) return o;
  auto [first, kv] = split_spec(fmt::format("adaptive:{}", text), "--dp-adaptive");
  for (const auto& [k, v] : kv) {
    if (k == "quantile") {
      o.quantile = spec_number("--dp-adaptive", k, v, 0, false);
      if (o.quantile > 1) throw_error(ErrorKind::Usage, "--dp-adaptive: quantile={} is not in [0, 1]", v);
    } else if (k == "lr") {
      o.learning_rate = spec_number("--dp-adaptive", k, v, 0, false);
    } else if (k == "count-stddev") {
      o.count_stddev = spec_number("--dp-adaptive", k, v, 0, false);
    } else {
      throw_error(ErrorKind::Usage, "--dp-adaptive: unknown key '{}' (quantile, lr, count-stddev)", k);
    }
  }
  return o;
}

std::vector<std::string> reduce_names() {
  std::vector<std::string> names = {"mean", "weighted-mean", "contributor-mean", "qfedavg"};
  for (auto& n : robust::reducer_names())
    if (n != "mean") names.push_back(std::move(n));
  return names;
}

void parse_reduce(std::string_view text, AggregateOptions& o) {
  if (text == "mean" || text == "weighted-mean" || text == "contributor-mean") {
    o.reduce = parse_reduction(text);
    return;
  }
  if (text == "qfedavg" || text.rfind("qfedavg:", 0) == 0) {
    o.reduce = Reduction::QFedAvg;
    o.qffl = QfflOptions{};
    for (const auto& [k, v] : split_spec(text, "reduction").second) {
      if (k == "q") o.qffl.q = spec_number("qfedavg", k, v, 0, false);
      else if (k == "lr") o.qffl.lr = spec_number("qfedavg", k, v, 0, true);
      else throw_error(ErrorKind::Usage, "qfedavg: unknown parameter '{}' (q, lr)", k);
    }
    return;
  }
  o.reduce = Reduction::Robust;
  o.robust = robust::parse_reducer_spec(text);
}

AggregateSummary aggregate(const std::string& model_path, const std::vector<std::string>& delta_paths,
                           const std::string& output_path, const AggregateOptions& options) {
  const auto t0 = detail::Clock::now();
  detail::Aggregator a(model_path, delta_paths, output_path, options);
  AggregateSummary s = a.run(t0);
  s.elapsed_seconds = detail::seconds_since(t0);
  return s;
}

}  // namespace loco::aggregate
