// Robust reducers: spec parsing, the Gram-space stage (selection, weights, mixing matrices) and the
// block-wise coordinate stage (sorting networks across inputs), plus the in-memory driver.
#include "loco/robust/reducer.hpp"
#include "loco/core/detail/eigen.hpp"  // pins Eigen's product blocking

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <utility>

#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"
#include "loco/core/spec.hpp"

namespace loco::robust {

namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;

constexpr std::uint64_t kBucketStream = 0x627563'6b6574ULL;  // "bucket"

// ---------------------------------------------------------------- parsing

bool parse_variant(Spec& p) { return p.choice("variant", "blanchard", {"blanchard", "byzfl"}) == "byzfl"; }

std::string_view rule_name(Rule r) {
  switch (r) {
    case Rule::Mean: return "mean";
    case Rule::Median: return "median";
    case Rule::TrimmedMean: return "trimmed-mean";
    case Rule::Krum: return "krum";
    case Rule::MultiKrum: return "multi-krum";
    case Rule::GeoMedian: return "geomedian";
    case Rule::CenteredClip: return "centered-clip";
    case Rule::Bulyan: return "bulyan";
    case Rule::MedianNorm: return "median-norm";
    case Rule::Flag: return "flag";
  }
  return "?";
}

std::int64_t default_iters(const ReducerSpec& s) {
  if (s.iters > 0) return s.iters;
  return s.rule == Rule::GeoMedian ? 100 : 1;
}

bool rule_has_f(Rule r) { return r == Rule::Krum || r == Rule::MultiKrum || r == Rule::Bulyan; }

// ---------------------------------------------------------------- Gram-space helpers

// Squared distances from a Gram matrix, clamped at 0 (cancellation can make them slightly negative).
MatrixXd distances(const MatrixXd& h) {
  const Eigen::Index k = h.rows();
  MatrixXd d(k, k);
  for (Eigen::Index i = 0; i < k; ++i)
    for (Eigen::Index j = 0; j < k; ++j) d(i, j) = i == j ? 0.0 : std::max(0.0, h(i, i) + h(j, j) - 2 * h(i, j));
  return d;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t k = v.size();
  return k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
}

// Krum scores of the members of `set` (indices into d) among themselves. The neighbour count is
// max(1, s − f − 2) as in Flower (adap/flower src/py/flwr/server/strategy/aggregate.py, aggregate_krum):
// it only binds in Bulyan's later picks (Krum itself needs s ≥ 2f + 3), where Bulyan calls Krum on the
// shrinking remaining set and the last picks would otherwise score every candidate 0 (f ≤ 1). The
// ByzFL variant's n − f − 1 is ≥ 1 wherever Krum runs.
std::vector<double> krum_scores(const MatrixXd& d, const std::vector<std::int64_t>& set, std::int64_t f, bool byzfl) {
  const auto s = static_cast<std::int64_t>(set.size());
  const std::int64_t q = std::max<std::int64_t>(byzfl ? 0 : 1, byzfl ? s - f - 1 : s - f - 2);
  std::vector<double> scores, row;
  for (std::int64_t a = 0; a < s; ++a) {
    row.clear();
    for (std::int64_t b = 0; b < s; ++b)
      if (b != a) row.push_back(d(set[a], set[b]));
    std::sort(row.begin(), row.end());
    double sum = 0;
    for (std::int64_t j = 0; j < std::min<std::int64_t>(q, static_cast<std::int64_t>(row.size())); ++j) sum += row[j];
    scores.push_back(byzfl && q > 0 ? sum / static_cast<double>(q) : sum);
  }
  return scores;
}

// Positions of set sorted by score (stable: ties keep the lower index first).
std::vector<std::int64_t> by_score(const std::vector<double>& scores) {
  std::vector<std::int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return scores[a] < scores[b]; });
  return order;
}

// ---------------------------------------------------------------- coordinate stage

// Batcher's odd–even merge sort network for k inputs (pairs a < b: min goes to a). Built for the
// next power of two; comparators that touch a slot ≥ k are dropped, which is exact because padding
// slots would hold +∞ and never move.
std::vector<std::pair<int, int>> sorting_network(int k) {
  std::vector<std::pair<int, int>> net;
  int n = 1;
  while (n < k) n <<= 1;
  for (int p = 1; p < n; p <<= 1)
    for (int q = p; q >= 1; q >>= 1)
      for (int j = q % p; j + q < n; j += 2 * q)
        for (int i = 0; i < q && i + j + q < n; ++i) {
          const int a = i + j, b = i + j + q;
          if (a / (2 * p) == b / (2 * p) && b < k) net.emplace_back(a, b);
        }
  return net;
}

enum class CoordOp { Median, Trimmed, Bulyan };

constexpr std::size_t kLanes = 16;       // coordinates sorted side by side (vector width × 2–4)
constexpr std::size_t kGrain = 1 << 14;  // coordinates per parallel task

// One comparator of the network on kLanes coordinates: a ← min, b ← max. Written on GCC/Clang vector
// types (4 floats, one SSE register or NEON q-register) so it compiles to packed compares and min/max:
// the plain loop over two pointers into one buffer stays scalar (a compare, a branch and a store per
// lane), because the compiler can neither prove the rows disjoint nor turn `<` into min under IEEE rules.
typedef float Lane4 __attribute__((vector_size(16)));
static_assert(kLanes % 4 == 0);

inline void compare_exchange(float* a, float* b) {
  for (std::size_t l = 0; l < kLanes; l += 4) {
    Lane4 u, v;
    std::memcpy(&u, a + l, sizeof u);
    std::memcpy(&v, b + l, sizeof v);
    const Lane4 lo = v < u ? v : u, hi = v < u ? u : v;
    std::memcpy(a + l, &lo, sizeof lo);
    std::memcpy(b + l, &hi, sizeof hi);
  }
}

}  // namespace

// ---------------------------------------------------------------- spec

std::vector<std::string> reducer_names() {
  std::vector<std::string> names;
  for (int r = static_cast<int>(Rule::Mean); r <= static_cast<int>(Rule::Flag); ++r)
    names.emplace_back(rule_name(static_cast<Rule>(r)));
  names.insert(names.end(), {"nnm", "bucket"});
  return names;
}

ReducerSpec parse_reducer_spec(std::string_view text) {
  std::vector<Spec> parts = parse_spec_chain(text, "reducer");
  ReducerSpec spec;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    Spec& p = parts[i];
    const std::string& name = p.name();
    const bool last = i + 1 == parts.size();
    if (name == "nnm" || name == "bucket") {
      if (last)
        throw_error(ErrorKind::Usage, "reducer '{}': {} is a pre-aggregator; follow it with a rule (e.g. {}+median)",
                    text, name, p.text());
      PreSpec pre;
      pre.kind = name == "nnm" ? PreKind::Nnm : PreKind::Bucket;
      if (pre.kind == PreKind::Nnm) pre.f = p.integer("f", -1, 0);
      else pre.s = p.integer("s", 2, 1);
      p.done();
      spec.pre.push_back(pre);
      continue;
    }
    if (!last)
      throw_error(ErrorKind::Usage, "reducer '{}': only nnm and bucket may come before '+', not '{}'", text, name);
    if (name == "mean") spec.rule = Rule::Mean;
    else if (name == "median") spec.rule = Rule::Median;
    else if (name == "trimmed-mean") {
      spec.rule = Rule::TrimmedMean;
      spec.beta = p.real("beta", 0.2, Range::between(0, 0.5));
    } else if (name == "krum" || name == "multi-krum") {
      spec.rule = name == "krum" ? Rule::Krum : Rule::MultiKrum;
      p.require("f", fmt::format("F (e.g. {}:f=2)", name));
      spec.f = *p.take_integer("f", 0);
      if (spec.rule == Rule::MultiKrum) spec.m = p.integer("m", 0, 1);
      spec.krum_byzfl = parse_variant(p);
    } else if (name == "bulyan") {
      spec.rule = Rule::Bulyan;
      p.require("f", "F (e.g. bulyan:f=2)");
      spec.f = *p.take_integer("f", 0);
    } else if (name == "geomedian") {
      spec.rule = Rule::GeoMedian;
      spec.iters = p.integer("iters", 100, 1);
      spec.nu = p.real("nu", 1e-6, Range::above(0));
      spec.tol = p.real("tol", 1e-10, Range::between(0, 1));
    } else if (name == "centered-clip") {
      spec.rule = Rule::CenteredClip;
      spec.tau = p.real("tau", 100, Range::above(0));
      spec.iters = p.integer("iters", 1, 1);
    } else if (name == "median-norm") {
      spec.rule = Rule::MedianNorm;
    } else if (name == "flag") {
      spec.rule = Rule::Flag;
      spec.r = p.integer("r", 1, 1);
      spec.iters = p.integer("iters", 1, 0);
      spec.eps = p.real("eps", 1e-6, Range::above(0));
    } else {
      throw_error(ErrorKind::Usage,
                  "unknown reducer '{}' (rules: mean, median, trimmed-mean, krum, multi-krum, geomedian, "
                  "centered-clip, bulyan, median-norm, flag; pre-aggregators: nnm, bucket)",
                  name);
    }
    p.done();
  }
  for (const PreSpec& pre : spec.pre)
    if (pre.kind == PreKind::Nnm && pre.f < 0 && !rule_has_f(spec.rule))
      throw_error(ErrorKind::Usage, "reducer '{}': nnm needs f= when the rule ({}) has none", text,
                  rule_name(spec.rule));
  return spec;
}

std::string format_reducer_spec(const ReducerSpec& s) {
  std::string out;
  for (const PreSpec& p : s.pre) {
    if (p.kind == PreKind::Nnm) out += fmt::format("nnm:f={}+", p.f >= 0 ? p.f : s.f);
    else out += fmt::format("bucket:s={}+", p.s);
  }
  out += rule_name(s.rule);
  const char* variant = s.krum_byzfl ? ",variant=byzfl" : "";
  switch (s.rule) {
    case Rule::Mean:
    case Rule::Median:
    case Rule::MedianNorm: break;
    case Rule::TrimmedMean: out += fmt::format(":beta={}", s.beta); break;
    case Rule::Krum: out += fmt::format(":f={}{}", s.f, variant); break;
    case Rule::MultiKrum: out += fmt::format(":f={},m={}{}", s.f, s.m, variant); break;
    case Rule::Bulyan: out += fmt::format(":f={}", s.f); break;
    case Rule::GeoMedian: out += fmt::format(":iters={},nu={},tol={}", default_iters(s), s.nu, s.tol); break;
    case Rule::CenteredClip: out += fmt::format(":tau={},iters={}", s.tau, default_iters(s)); break;
    case Rule::Flag: out += fmt::format(":r={},iters={},eps={}", s.r, s.iters, s.eps); break;
  }
  return out;
}

bool uses_center(const ReducerSpec& spec) noexcept { return spec.rule == Rule::CenteredClip; }

// ---------------------------------------------------------------- Reducer

struct Reducer::Impl {
  ReducerSpec spec;
  ReduceContext ctx;
  std::size_t n = 0, cols = 0;
  bool gram_needed = false, finished = false;
  std::vector<double> gram;  // cols × cols
  PlanInfo info;

  // The plan: linear (coef over columns) or rows (k × cols) with a coordinate op.
  bool linear = false;
  std::vector<double> coef;
  MatrixXd rows;
  std::vector<int> row_column;  // column of each row when rows are unit vectors, else empty
  CoordOp op = CoordOp::Median;
  int trim = 0;         // trimmed mean: values cut at each end
  int bulyan_beta = 0;  // Bulyan: values averaged around the median
  std::vector<std::pair<int, int>> network;

  // Rows after the pre-aggregators, as a function of G (nullptr when no pre-aggregator needs it).
  MatrixXd mixing(const MatrixXd* g) {
    MatrixXd m = MatrixXd::Zero(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(cols));
    for (std::size_t i = 0; i < n; ++i) m(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(i)) = 1;
    for (std::size_t p = 0; p < spec.pre.size(); ++p) {
      const PreSpec& pre = spec.pre[p];
      const Eigen::Index k = m.rows();
      MatrixXd a = MatrixXd::Zero(k, k);
      if (pre.kind == PreKind::Nnm) {
        const std::int64_t f = pre.f >= 0 ? pre.f : spec.f;
        const MatrixXd d = distances(m * (*g) * m.transpose());
        const Eigen::Index keep = k - f;
        std::vector<Eigen::Index> order(static_cast<std::size_t>(k));
        for (Eigen::Index i = 0; i < k; ++i) {
          std::iota(order.begin(), order.end(), Eigen::Index{0});
          // Itself first (distance 0 by definition), then by distance, ties to the lower index.
          std::stable_sort(order.begin(), order.end(), [&](auto x, auto y) {
            if (x == i || y == i) return x == i && y != i;
            return d(i, x) < d(i, y);
          });
          for (Eigen::Index j = 0; j < keep; ++j)
            a(i, order[static_cast<std::size_t>(j)]) = 1.0 / static_cast<double>(keep);
        }
        m = a * m;
      } else {
        std::vector<Eigen::Index> perm(static_cast<std::size_t>(k));
        std::iota(perm.begin(), perm.end(), Eigen::Index{0});
        Rng rng(ctx.seed, {kBucketStream, static_cast<std::uint64_t>(ctx.round), p});
        for (std::size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[rng.below(i)]);
        const Eigen::Index s = pre.s, buckets = (k + s - 1) / s;
        MatrixXd b = MatrixXd::Zero(buckets, k);
        for (Eigen::Index q = 0; q < buckets; ++q) {
          const Eigen::Index lo = q * s, hi = std::min(k, lo + s);
          for (Eigen::Index j = lo; j < hi; ++j)
            b(q, perm[static_cast<std::size_t>(j)]) = 1.0 / static_cast<double>(hi - lo);
        }
        m = b * m;
      }
    }
    return m;
  }

  std::size_t count_after_pre() const {
    std::size_t k = n;
    for (const PreSpec& p : spec.pre) {
      if (p.kind == PreKind::Nnm) {
        const std::int64_t f = p.f >= 0 ? p.f : spec.f;
        if (f >= static_cast<std::int64_t>(k))
          throw_error(ErrorKind::Usage, "nnm: f={} needs more than f inputs, got {}", f, k);
      } else {
        k = (k + static_cast<std::size_t>(p.s) - 1) / static_cast<std::size_t>(p.s);
      }
    }
    return k;
  }

  void check(std::size_t k) const {
    const auto kk = static_cast<std::int64_t>(k);
    const std::string what =
        spec.pre.empty() ? fmt::format("{} inputs", k) : fmt::format("{} inputs after pre-aggregation", k);
    switch (spec.rule) {
      case Rule::TrimmedMean: {
        const auto t = static_cast<std::int64_t>(std::floor(spec.beta * static_cast<double>(k)));
        if (2 * t >= kk)
          throw_error(ErrorKind::Usage, "trimmed-mean:beta={} cuts {} values at each end of {}: nothing is left",
                      spec.beta, t, what);
        break;
      }
      case Rule::Krum:
      case Rule::MultiKrum:
        if (kk < 2 * spec.f + 3)
          throw_error(ErrorKind::Usage, "{}:f={} needs n ≥ 2f+3 = {} inputs, got {}", rule_name(spec.rule), spec.f,
                      2 * spec.f + 3, what);
        if (spec.rule == Rule::MultiKrum && spec.m > kk)
          throw_error(ErrorKind::Usage, "multi-krum: m={} is more than the {}", spec.m, what);
        break;
      case Rule::Bulyan:
        if (kk < 4 * spec.f + 3)
          throw_error(ErrorKind::Usage, "bulyan:f={} needs n ≥ 4f+3 = {} inputs, got {}", spec.f, 4 * spec.f + 3, what);
        break;
      case Rule::Flag:
        if (spec.r > kk) throw_error(ErrorKind::Usage, "flag: r={} is more than the {}", spec.r, what);
        break;
      default: break;
    }
  }

  void set_rows(MatrixXd r, CoordOp o) {
    rows = std::move(r);
    op = o;
    row_column.clear();
    for (Eigen::Index i = 0; i < rows.rows(); ++i) {
      int col = -1;
      bool unit = true;
      for (Eigen::Index c = 0; c < rows.cols(); ++c) {
        if (rows(i, c) == 0) continue;
        if (rows(i, c) == 1 && col < 0) col = static_cast<int>(c);
        else unit = false;
      }
      if (!unit || col < 0) {
        row_column.clear();
        break;
      }
      row_column.push_back(col);
    }
    network = sorting_network(static_cast<int>(rows.rows()));
  }

  void set_linear(const VectorXd& c) {
    linear = true;
    coef.assign(c.data(), c.data() + c.size());
    info.coefficients = coef;
  }

  void build(const MatrixXd* g) {
    const MatrixXd m = mixing(g);
    const Eigen::Index k = m.rows();
    const double kd = static_cast<double>(k);
    switch (spec.rule) {
      case Rule::Mean: set_linear(m.colwise().sum().transpose() / kd); return;
      case Rule::Median: set_rows(m, CoordOp::Median); return;
      case Rule::TrimmedMean:
        trim = static_cast<int>(std::floor(spec.beta * kd));
        set_rows(m, CoordOp::Trimmed);
        return;
      default: break;
    }
    const MatrixXd h = m * (*g) * m.transpose();
    switch (spec.rule) {
      case Rule::Krum:
      case Rule::MultiKrum: {
        std::vector<std::int64_t> all(static_cast<std::size_t>(k));
        std::iota(all.begin(), all.end(), 0);
        const auto order = by_score(krum_scores(distances(h), all, spec.f, spec.krum_byzfl));
        const std::int64_t keep = spec.rule == Rule::Krum ? 1 : (spec.m > 0 ? spec.m : k - spec.f);
        VectorXd c = VectorXd::Zero(m.cols());
        for (std::int64_t j = 0; j < keep; ++j) {
          info.selected.push_back(order[static_cast<std::size_t>(j)]);
          c += m.row(order[static_cast<std::size_t>(j)]).transpose() / static_cast<double>(keep);
        }
        set_linear(c);
        return;
      }
      case Rule::Bulyan: {
        const MatrixXd d = distances(h);
        std::vector<std::int64_t> left(static_cast<std::size_t>(k));
        std::iota(left.begin(), left.end(), 0);
        const std::int64_t theta = k - 2 * spec.f;
        MatrixXd picked(theta, m.cols());
        for (std::int64_t t = 0; t < theta; ++t) {
          const auto best = by_score(krum_scores(d, left, spec.f, false))[0];
          info.selected.push_back(left[static_cast<std::size_t>(best)]);
          picked.row(t) = m.row(left[static_cast<std::size_t>(best)]);
          left.erase(left.begin() + best);
        }
        bulyan_beta = static_cast<int>(theta - 2 * spec.f);
        set_rows(picked, CoordOp::Bulyan);
        return;
      }
      case Rule::GeoMedian: {
        VectorXd w = VectorXd::Constant(k, 1.0 / kd);
        auto dists = [&](const VectorXd& v) {
          const VectorXd hw = h * v;
          const double wgw = v.dot(hw);
          VectorXd dd(k);
          for (Eigen::Index i = 0; i < k; ++i) dd(i) = std::sqrt(std::max(0.0, wgw - 2 * hw(i) + h(i, i)));
          return dd;
        };
        VectorXd dd = dists(w);
        double obj = dd.sum();
        const std::int64_t iters = default_iters(spec);
        for (std::int64_t t = 0; t < iters; ++t) {
          VectorXd beta(k);
          for (Eigen::Index i = 0; i < k; ++i) beta(i) = 1.0 / std::max(spec.nu, dd(i));
          w = beta / beta.sum();
          dd = dists(w);
          const double next = dd.sum();
          ++info.iterations;
          const bool stop = obj - next <= spec.tol * next;
          obj = next;
          if (stop) break;
        }
        set_linear(m.transpose() * w);
        return;
      }
      case Rule::CenteredClip: {
        // Columns of the problem: the k rows, then v₀ (the last input column).
        MatrixXd me(k + 1, m.cols());
        me.topRows(k) = m;
        me.row(k).setZero();
        me(k, m.cols() - 1) = 1;
        const MatrixXd he = me * (*g) * me.transpose();
        VectorXd a = VectorXd::Zero(k + 1);
        a(k) = 1;
        for (std::int64_t t = 0; t < default_iters(spec); ++t) {
          const VectorXd ha = he * a;
          const double aga = a.dot(ha);
          VectorXd next = a;
          for (Eigen::Index i = 0; i < k; ++i) {
            const double dist = std::sqrt(std::max(0.0, he(i, i) - 2 * ha(i) + aga));
            const double c = dist > spec.tau ? spec.tau / dist : 1.0;
            // v += (c/k)(x_i − v)
            next -= (c / kd) * a;
            next(i) += c / kd;
          }
          a = next;
          ++info.iterations;
        }
        set_linear(me.transpose() * a);
        return;
      }
      case Rule::MedianNorm: {
        std::vector<double> norms(static_cast<std::size_t>(k));
        for (Eigen::Index i = 0; i < k; ++i) norms[static_cast<std::size_t>(i)] = std::sqrt(std::max(0.0, h(i, i)));
        const double med = median_of(norms);
        VectorXd c = VectorXd::Zero(m.cols());
        for (Eigen::Index i = 0; i < k; ++i) {
          const double nrm = norms[static_cast<std::size_t>(i)];
          c += (nrm > med ? med / nrm : 1.0) / kd * m.row(i).transpose();
        }
        set_linear(c);
        return;
      }
      case Rule::Flag: {
        set_linear(m.transpose() * flag_weights(h));
        return;
      }
      default: throw_error(ErrorKind::Internal, "reducer rule {} has no Gram stage", rule_name(spec.rule));
    }
  }

  // Coefficients over the k rows of the Flag Aggregator's output YYᵀ·mean(x) (see the header).
  VectorXd flag_weights(const MatrixXd& h) {
    const Eigen::Index k = h.rows();
    VectorXd nrm(k);
    for (Eigen::Index i = 0; i < k; ++i) nrm(i) = std::sqrt(std::max(0.0, h(i, i)));
    MatrixXd gh = MatrixXd::Zero(k, k);  // Gram of the normalized inputs (zero rows for zero inputs)
    for (Eigen::Index i = 0; i < k; ++i)
      for (Eigen::Index j = 0; j < k; ++j)
        if (nrm(i) > 0 && nrm(j) > 0) gh(i, j) = h(i, j) / (nrm(i) * nrm(j));
    VectorXd w(k);
    for (Eigen::Index i = 0; i < k; ++i) w(i) = nrm(i) > 0 ? 1.0 : 0.0;
    const double rd = static_cast<double>(spec.r);
    // u_q = Σ_j B(j, q) x̂_j with B = D V_r Λ_r^{-1/2}: the top-r left singular vectors of [w_j x̂_j].
    auto fit = [&]() {
      const MatrixXd a = w.asDiagonal() * gh * w.asDiagonal();
      Eigen::SelfAdjointEigenSolver<MatrixXd> es(a);
      const VectorXd lam = es.eigenvalues();  // ascending
      const double top = std::max(lam(k - 1), 0.0);
      std::vector<Eigen::Index> keep;
      for (Eigen::Index q = k - 1; q >= 0 && static_cast<std::int64_t>(keep.size()) < spec.r; --q)
        if (lam(q) > 1e-12 * top && lam(q) > 0) keep.push_back(q);
      MatrixXd b(k, static_cast<Eigen::Index>(keep.size()));
      for (std::size_t q = 0; q < keep.size(); ++q)
        b.col(static_cast<Eigen::Index>(q)) = w.asDiagonal() * es.eigenvectors().col(keep[q]) / std::sqrt(lam(keep[q]));
      return b;
    };
    MatrixXd b = fit();
    for (std::int64_t t = 0; t < spec.iters; ++t) {
      const MatrixXd proj = gh * b;  // (i, q) = u_qᵀ x̂_i
      for (Eigen::Index i = 0; i < k; ++i)
        w(i) = nrm(i) > 0 ? std::pow(std::max(0.0, rd - proj.row(i).squaredNorm()) + spec.eps, -0.25) : 0.0;
      b = fit();
      ++info.iterations;
    }
    // YYᵀ x̄ = Σ_q u_q (u_qᵀ x̄); u_qᵀ x̄ = (1/k) Σ_j B(j,q) Σ_i H(j,i)/‖x_j‖; u_q over x_j: B(j,q)/‖x_j‖.
    VectorXd hs = h.rowwise().sum() / static_cast<double>(k);
    MatrixXd bx = b;  // coefficients of u_q on the raw x_j
    for (Eigen::Index j = 0; j < k; ++j)
      bx.row(j) = nrm(j) > 0 ? VectorXd(b.row(j).transpose() / nrm(j)) : VectorXd::Zero(b.cols());
    const VectorXd p = bx.transpose() * hs;
    return bx * p;
  }

  // ---- block stage

  void reduce_chunk(std::span<const float* const> x, std::size_t lo, std::size_t hi, float* out,
                    std::vector<float>& buf) const {
    const auto k = static_cast<std::size_t>(rows.rows());
    buf.resize(k * kLanes);
    for (std::size_t j0 = lo; j0 < hi; j0 += kLanes) {
      const std::size_t w = std::min(kLanes, hi - j0);
      // Gather (or mix) the rows of this group of coordinates.
      for (std::size_t r = 0; r < k; ++r) {
        float* dst = buf.data() + r * kLanes;
        if (!row_column.empty()) {
          const float* src = x[static_cast<std::size_t>(row_column[r])] + j0;
          for (std::size_t l = 0; l < w; ++l) dst[l] = src[l];
        } else {
          for (std::size_t l = 0; l < w; ++l) {
            double s = 0;
            for (std::size_t c = 0; c < cols; ++c) {
              const double mc = rows(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
              if (mc != 0) s += mc * static_cast<double>(x[c][j0 + l]);
            }
            dst[l] = static_cast<float>(s);
          }
        }
        for (std::size_t l = w; l < kLanes; ++l) dst[l] = 0;
      }
      for (const auto& [a, b] : network)
        compare_exchange(buf.data() + static_cast<std::size_t>(a) * kLanes,
                         buf.data() + static_cast<std::size_t>(b) * kLanes);
      const float* s = buf.data();
      switch (op) {
        case CoordOp::Median:
          if (k % 2)
            for (std::size_t l = 0; l < w; ++l) out[j0 + l] = s[(k / 2) * kLanes + l];
          else
            for (std::size_t l = 0; l < w; ++l)
              out[j0 + l] = static_cast<float>(0.5 * (static_cast<double>(s[(k / 2 - 1) * kLanes + l]) +
                                                      static_cast<double>(s[(k / 2) * kLanes + l])));
          break;
        case CoordOp::Trimmed: {
          double acc[kLanes] = {};
          for (std::size_t r = static_cast<std::size_t>(trim); r < k - static_cast<std::size_t>(trim); ++r)
            for (std::size_t l = 0; l < kLanes; ++l) acc[l] += static_cast<double>(s[r * kLanes + l]);
          const double inv = 1.0 / static_cast<double>(k - 2 * static_cast<std::size_t>(trim));
          for (std::size_t l = 0; l < w; ++l) out[j0 + l] = static_cast<float>(acc[l] * inv);
          break;
        }
        case CoordOp::Bulyan:
          for (std::size_t l = 0; l < w; ++l) out[j0 + l] = bulyan_lane(s + l, k);
          break;
      }
    }
  }

  // Mean of the bulyan_beta sorted values (stride kLanes) closest to their median.
  float bulyan_lane(const float* v, std::size_t k) const {
    auto at = [&](std::ptrdiff_t i) { return static_cast<double>(v[static_cast<std::size_t>(i) * kLanes]); };
    const auto kk = static_cast<std::ptrdiff_t>(k);
    const double med = kk % 2 ? at(kk / 2) : 0.5 * (at(kk / 2 - 1) + at(kk / 2));
    std::ptrdiff_t lo, hi;  // the window is (lo, hi) exclusive
    double sum = 0;
    int count = 0;
    if (kk % 2) {
      sum = at(kk / 2);
      count = 1;
      lo = kk / 2 - 1;
      hi = kk / 2 + 1;
    } else {
      lo = kk / 2 - 1;
      hi = kk / 2;
    }
    while (count < bulyan_beta) {
      const bool left = hi >= kk || (lo >= 0 && med - at(lo) <= at(hi) - med);
      sum += left ? at(lo--) : at(hi++);
      ++count;
    }
    return static_cast<float>(sum / static_cast<double>(bulyan_beta));
  }
};

Reducer::Reducer(const ReducerSpec& spec, std::size_t n, const ReduceContext& ctx) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.spec = spec;
  s.ctx = ctx;
  s.n = n;
  if (n == 0) throw_error(ErrorKind::Usage, "reducer {}: no inputs", format_reducer_spec(spec));
  s.cols = n + (uses_center(spec) ? 1 : 0);
  s.check(s.count_after_pre());
  const bool pre_gram =
      std::any_of(spec.pre.begin(), spec.pre.end(), [](const PreSpec& p) { return p.kind == PreKind::Nnm; });
  s.gram_needed = pre_gram || !(spec.rule == Rule::Mean || spec.rule == Rule::Median || spec.rule == Rule::TrimmedMean);
  s.gram.assign(s.cols * s.cols, 0.0);
  if (!s.gram_needed) {
    s.build(nullptr);
    s.finished = true;
  }
}

Reducer::~Reducer() = default;
Reducer::Reducer(Reducer&&) noexcept = default;
Reducer& Reducer::operator=(Reducer&&) noexcept = default;

std::size_t Reducer::inputs() const noexcept { return impl_->n; }
bool Reducer::needs_gram() const noexcept { return impl_->gram_needed; }
std::size_t Reducer::columns() const noexcept { return impl_->cols; }
const std::vector<double>& Reducer::gram() const noexcept { return impl_->gram; }

const PlanInfo& Reducer::plan() const {
  if (!impl_->finished) throw_error(ErrorKind::Internal, "Reducer::plan() before finish_gram()");
  return impl_->info;
}

void Reducer::add_gram(std::span<const float* const> x, std::size_t len) {
  Impl& s = *impl_;
  if (x.size() != s.cols) throw_error(ErrorKind::Internal, "add_gram: {} columns, expected {}", x.size(), s.cols);
  const std::size_t c = s.cols, pairs = c * (c + 1) / 2;
  std::vector<std::pair<std::size_t, std::size_t>> ij;
  for (std::size_t i = 0; i < c; ++i)
    for (std::size_t j = i; j < c; ++j) ij.emplace_back(i, j);
  // Fixed pieces summed in piece order: the same result for any thread count.
  constexpr std::size_t kPiece = 1 << 15;
  const std::size_t pieces = (len + kPiece - 1) / kPiece;
  std::vector<double> part(pieces * pairs, 0.0);
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, pieces), [&](const auto& r) {
    for (std::size_t p = r.begin(); p < r.end(); ++p) {
      const std::size_t lo = p * kPiece, hi = std::min(len, lo + kPiece);
      for (std::size_t q = 0; q < pairs; ++q) {
        const float* a = x[ij[q].first];
        const float* b = x[ij[q].second];
        double acc[4] = {0, 0, 0, 0};
        std::size_t t = lo;
        for (; t + 4 <= hi; t += 4)
          for (std::size_t u = 0; u < 4; ++u) acc[u] += static_cast<double>(a[t + u]) * static_cast<double>(b[t + u]);
        for (; t < hi; ++t) acc[0] += static_cast<double>(a[t]) * static_cast<double>(b[t]);
        part[p * pairs + q] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
      }
    }
  });
  for (std::size_t p = 0; p < pieces; ++p)
    for (std::size_t q = 0; q < pairs; ++q) {
      const auto [i, j] = ij[q];
      s.gram[i * c + j] += part[p * pairs + q];
      if (i != j) s.gram[j * c + i] = s.gram[i * c + j];
    }
}

void Reducer::finish_gram() {
  Impl& s = *impl_;
  if (s.finished) return;
  for (double v : s.gram)
    if (!std::isfinite(v))
      throw_error(ErrorKind::Numeric, "reducer {}: the Gram matrix of the inputs is not finite (inputs too large)",
                  format_reducer_spec(s.spec));
  const auto c = static_cast<Eigen::Index>(s.cols);
  MatrixXd g(c, c);
  for (Eigen::Index i = 0; i < c; ++i)
    for (Eigen::Index j = 0; j < c; ++j) g(i, j) = s.gram[static_cast<std::size_t>(i * c + j)];
  s.build(&g);
  s.finished = true;
}

void Reducer::reduce(std::span<const float* const> x, std::size_t len, float* out) const {
  const Impl& s = *impl_;
  if (!s.finished) throw_error(ErrorKind::Internal, "Reducer::reduce() before finish_gram()");
  if (x.size() != s.cols) throw_error(ErrorKind::Internal, "reduce: {} columns, expected {}", x.size(), s.cols);
  if (s.linear) {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, len, kGrain), [&](const auto& r) {
      for (std::size_t j = r.begin(); j < r.end(); ++j) {
        double acc = 0;
        for (std::size_t c = 0; c < s.cols; ++c)
          if (s.coef[c] != 0) acc += s.coef[c] * static_cast<double>(x[c][j]);
        out[j] = static_cast<float>(acc);
      }
    });
    return;
  }
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, (len + kGrain - 1) / kGrain), [&](const auto& r) {
    std::vector<float> buf;
    for (std::size_t t = r.begin(); t < r.end(); ++t)
      s.reduce_chunk(x, t * kGrain, std::min(len, (t + 1) * kGrain), out, buf);
  });
}

// ---------------------------------------------------------------- drivers

std::vector<std::vector<double>> mixing_matrix(const ReducerSpec& spec, std::size_t n, const ReduceContext& ctx,
                                               std::span<const double> gram) {
  ReducerSpec s = spec;
  s.rule = Rule::Mean;  // only the pre-aggregators matter; mean accepts any count
  for (PreSpec& p : s.pre)
    if (p.kind == PreKind::Nnm && p.f < 0) p.f = spec.f;
  Reducer::Impl impl;
  impl.spec = s;
  impl.ctx = ctx;
  impl.n = n;
  impl.cols = n;
  impl.count_after_pre();
  const auto c = static_cast<Eigen::Index>(n);
  MatrixXd g = MatrixXd::Zero(c, c);
  if (!gram.empty()) {
    if (gram.size() != n * n)
      throw_error(ErrorKind::Usage, "mixing_matrix: Gram matrix of {} values for n = {}", gram.size(), n);
    for (Eigen::Index i = 0; i < c; ++i)
      for (Eigen::Index j = 0; j < c; ++j) g(i, j) = gram[static_cast<std::size_t>(i * c + j)];
  } else if (std::any_of(s.pre.begin(), s.pre.end(), [](const PreSpec& p) { return p.kind == PreKind::Nnm; })) {
    throw_error(ErrorKind::Usage, "mixing_matrix: nnm needs the Gram matrix");
  }
  const MatrixXd m = impl.mixing(&g);
  std::vector<std::vector<double>> out(static_cast<std::size_t>(m.rows()));
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    out[static_cast<std::size_t>(i)].resize(static_cast<std::size_t>(m.cols()));
    for (Eigen::Index j = 0; j < m.cols(); ++j) out[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)] = m(i, j);
  }
  return out;
}

std::vector<float> reduce_vectors(const ReducerSpec& spec, const std::vector<std::vector<float>>& x,
                                  const ReduceContext& ctx, std::span<const float> center, PlanInfo* info) {
  if (x.empty()) throw_error(ErrorKind::Usage, "reduce_vectors: no inputs");
  const std::size_t len = x[0].size();
  for (const auto& v : x)
    if (v.size() != len) throw_error(ErrorKind::Usage, "reduce_vectors: lengths {} and {} differ", len, v.size());
  if (!center.empty() && center.size() != len)
    throw_error(ErrorKind::Usage, "reduce_vectors: centre length {} is not {}", center.size(), len);
  Reducer red(spec, x.size(), ctx);
  std::vector<float> zero;
  std::vector<const float*> cols;
  for (const auto& v : x) cols.push_back(v.data());
  if (red.columns() > x.size()) {
    if (center.empty()) zero.assign(len, 0.0f);
    cols.push_back(center.empty() ? zero.data() : center.data());
  }
  if (red.needs_gram()) {
    red.add_gram(cols, len);
    red.finish_gram();
  }
  std::vector<float> out(len);
  red.reduce(cols, len, out.data());
  if (info) *info = red.plan();
  return out;
}

}  // namespace loco::robust
