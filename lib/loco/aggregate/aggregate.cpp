// The options of a round of aggregation (reductions, clipping, staleness, DP, QFedAvg) and the entry
// point aggregate() (the work is detail::Aggregator's: open.cpp, round.cpp, passes.cpp; the summary's
// JSON is summary.cpp).
#include "loco/aggregate/aggregate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "loco/aggregate/detail/aggregator.hpp"
#include "loco/core/error.hpp"
#include "loco/core/spec.hpp"

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

Staleness parse_staleness(std::string_view text) {
  Spec s(text, "staleness rule");
  Staleness st;
  const Range nonnegative = Range::at_least(0);
  if (s.name() == "constant") {
    st.rule = StalenessRule::Constant;
  } else if (s.name() == "polynomial") {
    st.rule = StalenessRule::Polynomial;
    st.a = s.real("a", 0.5, nonnegative);
  } else if (s.name() == "hinge") {
    st.rule = StalenessRule::Hinge;
    st.a = s.real("a", 10, nonnegative);
    st.b = s.real("b", 4, nonnegative);
  } else if (s.name() == "fedfix") {
    st.rule = StalenessRule::FedFix;
  } else {
    throw_error(ErrorKind::Usage,
                "staleness rule '{}' is not one of constant, polynomial[:a=A], hinge[:a=A,b=B], fedfix", text);
  }
  s.done();
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
  Spec s(fmt::format("adaptive:{}", text), "--dp-adaptive");
  o.quantile = s.real("quantile", o.quantile, Range::between(0, 1));
  o.learning_rate = s.real("lr", o.learning_rate, Range::at_least(0));
  o.count_stddev = s.real("count-stddev", o.count_stddev, Range::at_least(0));
  s.done();
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
    Spec s(text, "reduction");
    o.qffl.q = s.real("q", o.qffl.q, Range::at_least(0));
    o.qffl.lr = s.real("lr", o.qffl.lr, Range::above(0));
    s.done();
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
