// The powersgd stage: rank-r PowerSGD with a warm-started Q kept in the codec state.
#include <Eigen/Core>

#include <algorithm>

#include "loco/compress/detail/parallel.hpp"
#include "loco/compress/detail/stage.hpp"
#include "loco/core/detail/eigen.hpp"  // pins Eigen's product blocking
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"

namespace loco::compress {
namespace {

using namespace detail;

// One PowerSGD step (Vogels et al. 2019) on the tensor viewed as M (n × m, n the leading dimension):
// P = MQ, P̂ = orth(P) (Gram–Schmidt; a column with nothing left after projection becomes zero
// instead of NaN), Q = MᵀP̂; sends P̂ and Q, decodes M̂ = P̂Qᵀ. Q starts from a normal draw of the
// shared stream (the same on every worker) and is warm-started from the state's "powersgd_q".
// Rank-0/1-D tensors, and those where rank·(n + m)·min_rate ≥ n·m, are sent dense.
class PowersgdStage final : public Stage {
 public:
  explicit PowersgdStage(const StageSpec& s) {
    Spec p = stage_params(s);
    rank_ = p.integer("rank", 4, 1, 1 << 16);
    min_rate_ = p.real("min_rate", 2.0, Range::between(0.0, 1e12, true));
    p.done();
  }
  std::string_view name() const override { return "powersgd"; }
  bool stateful() const override { return true; }
  bool screens_finite() const override { return true; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    return {{"rank", std::to_string(rank_)}, {"min_rate", real_text(min_rate_)}};
  }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "rank", rank_);
    a.set(prefix + "min_rate", min_rate_);
  }
  struct View {
    std::int64_t n = 0, m = 0, r = 0;
    bool dense = true;
  };
  View view(const Shape& shape) const {
    View v;
    if (shape.size() < 2) return v;
    v.n = shape[0];
    v.m = shape_numel(shape) / std::max<std::int64_t>(v.n, 1);
    v.r = std::min({rank_, v.n, v.m});
    const double n = static_cast<double>(v.n), m = static_cast<double>(v.m);
    v.dense = v.r == 0 || static_cast<double>(v.r) * (n + m) * min_rate_ >= n * m;
    return v;
  }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const View v = view(shape);
    if (v.dense) return {{"data", {shape_numel(shape)}, DType::F32}};
    return {{"p", {v.n, v.r}, DType::F32}, {"q", {v.m, v.r}, DType::F32}};
  }
  void encode(std::span<const float> x, const Shape& shape, const RandomKey& key, TensorState* state,
              Datasets& out) const override {
    using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const View v = view(shape);
    if (v.dense) {
      require_finite(x);
      Tensor t = Tensor::uninitialized({static_cast<std::int64_t>(x.size())});
      std::copy(x.begin(), x.end(), t.f32().begin());
      out.emplace_back("data", std::move(t));
      return;
    }
    Tensor q({v.m, v.r});
    const Tensor* warm = state ? state->find("powersgd_q") : nullptr;
    if (warm && warm->dtype() == DType::F32 && warm->shape() == q.shape()) {
      std::copy(warm->f32().begin(), warm->f32().end(), q.f32().begin());
    } else {
      fill_normal(q.f32(), 0.0f, 1.0f, key.seed, stream_id({key.shared_stream, 0x706f776572ull}));
    }
    Tensor p({v.n, v.r});
    Eigen::Map<Mat> P(p.f32().data(), v.n, v.r);
    Eigen::Map<Mat> Q(q.f32().data(), v.m, v.r);
    // Both products in parallel over fixed blocks of kRows rows of M, so the bits do not depend on
    // the thread count: P_b = M_b·Q per block; Q = Mᵀ·P as the sum, in group order, of per-group
    // partial sums Σ_b M_bᵀ·P_b over a fixed number of groups of consecutive blocks.
    constexpr std::int64_t kRows = 64, kGroups = 32;
    const std::int64_t nb = ceil_div(v.n, kRows), groups = std::min(kGroups, nb);
    const std::int64_t per_group = ceil_div(nb, groups);
    auto rows_of = [&](std::int64_t b) { return std::min(kRows, v.n - b * kRows); };
    auto block = [&](std::int64_t b) { return Eigen::Map<const Mat>(x.data() + b * kRows * v.m, rows_of(b), v.m); };
    parallel_chunks(nb, 1, [&](std::int64_t bb, std::int64_t be) {
      for (std::int64_t b = bb; b < be; ++b) P.middleRows(b * kRows, rows_of(b)).noalias() = block(b) * Q;
    });
    // A NaN or Inf in M reaches P (Q's entries are finite; Inf·0 is NaN too): the exact scan names it.
    if (!P.allFinite()) {
      require_finite(x);
      throw_error(ErrorKind::Numeric, "codec powersgd: M·Q overflows float32");
    }
    orthonormalize(P);
    std::vector<Mat> partial(static_cast<std::size_t>(groups));
    parallel_chunks(groups, 1, [&](std::int64_t gb, std::int64_t ge) {
      for (std::int64_t g = gb; g < ge; ++g) {
        Mat& acc = partial[static_cast<std::size_t>(g)];
        acc = Mat::Zero(v.m, v.r);
        for (std::int64_t b = g * per_group; b < std::min(nb, (g + 1) * per_group); ++b)
          acc.noalias() += block(b).transpose() * P.middleRows(b * kRows, rows_of(b));
      }
    });
    Q = partial[0];
    for (std::int64_t g = 1; g < groups; ++g) Q += partial[static_cast<std::size_t>(g)];
    if (state) state->set("powersgd_q", q.clone());
    out.emplace_back("p", std::move(p));
    out.emplace_back("q", std::move(q));
  }
  // Modified Gram–Schmidt in double on the columns of P. A column whose remainder is below
  // 1e-6 of its original norm (or zero) carries no new direction: it is set to zero.
  template <typename M>
  static void orthonormalize(M& P) {
    const auto n = P.rows(), r = P.cols();
    Eigen::MatrixXd D = P.template cast<double>();
    for (Eigen::Index j = 0; j < r; ++j) {
      const double before = D.col(j).norm();
      for (Eigen::Index i = 0; i < j; ++i) D.col(j) -= D.col(i).dot(D.col(j)) * D.col(i);
      const double after = D.col(j).norm();
      if (after > 0 && after > 1e-6 * before) D.col(j) /= after;
      else D.col(j).setZero();
    }
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j < r; ++j) P(i, j) = static_cast<float>(D(i, j));
  }
  void decode(const DatasetLookup& get, const Shape& shape, const RandomKey&, std::span<float> out) const override {
    using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const View v = view(shape);
    if (v.dense) {
      const float* src =
          expect(get, "data", static_cast<std::int64_t>(out.size()), DType::F32, "powersgd").f32().data();
      std::copy(src, src + out.size(), out.begin());
      return;
    }
    const float* p = expect(get, "p", v.n * v.r, DType::F32, "powersgd").f32().data();
    const float* q = expect(get, "q", v.m * v.r, DType::F32, "powersgd").f32().data();
    Eigen::Map<Mat> Y(out.data(), v.n, v.m);
    Y.noalias() = Eigen::Map<const Mat>(p, v.n, v.r) * Eigen::Map<const Mat>(q, v.m, v.r).transpose();
  }

 private:
  std::int64_t rank_ = 4;
  double min_rate_ = 2.0;
};

}  // namespace

std::unique_ptr<Stage> make_powersgd_stage(const StageSpec& s) { return std::make_unique<PowersgdStage>(s); }

}  // namespace loco::compress
