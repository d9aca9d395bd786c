// The dct_topk stage (DeMo): DCT-II per chunk or per 2-D tile, top-k of each tile's coefficients;
// and the coefficient-domain view of its encodings (dct.hpp).
#include <Eigen/Core>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numbers>

#include "loco/compress/dct.hpp"
#include "loco/compress/detail/parallel.hpp"
#include "loco/compress/detail/stage.hpp"
#include "loco/compress/detail/topk_select.hpp"
#include "loco/core/detail/eigen.hpp"  // pins Eigen's product blocking
#include "loco/core/error.hpp"

namespace loco::compress {
namespace {

using namespace detail;

// The orthonormal DCT-II basis of length N, row k = the k-th basis vector:
// C[k][n] = s_k cos(π(n + ½)k/N), s_0 = √(1/N), s_k = √(2/N); computed in double, rounded once.
std::vector<float> dct_basis(std::int64_t N) {
  std::vector<float> basis(static_cast<std::size_t>(N * N));
  const double n_d = static_cast<double>(N);
  for (std::int64_t k = 0; k < N; ++k)
    for (std::int64_t n = 0; n < N; ++n)
      basis[k * N + n] = static_cast<float>(
          (k == 0 ? std::sqrt(1 / n_d) : std::sqrt(2 / n_d)) *
          std::cos(std::numbers::pi * (static_cast<double>(n) + 0.5) * static_cast<double>(k) / n_d));
  return basis;
}

// DeMo's transform. tile=1d (the default): the flattened tensor in chunks of N = chunk (the last one
// zero-padded), each mapped by the orthonormal DCT-II X_k = s_k Σ_n x_n cos(π(n + ½)k/N), s_0 = √(1/N),
// s_k = √(2/N), then the k largest coefficients of each chunk kept (ties to the lower coefficient index).
// tile=2d (DeMo's own tiling, dct.hpp): the tensor as rows × cols (rank ≥ 2: shape[0] × the rest;
// rank ≤ 1: 1 × numel) cut into s1 × s2 tiles, s = dct_tile_size(dimension, chunk); per tile the
// orthonormal DCT-II along both axes, Y = C1·X·C2ᵀ, coefficient (a, b) at index a·s2 + b; tiles in
// row-major order of the tile grid; the min(k, s1·s2) largest coefficients of each tile kept.
class DctTopkStage final : public Stage {
 public:
  explicit DctTopkStage(const StageSpec& s) {
    Spec p = stage_params(s);
    tile2d_ = p.choice("tile", "1d", {"1d", "2d"}) == "2d";
    chunk_ = p.integer("chunk", 64, 1, tile2d_ ? 256 : 4096);
    k_ = p.integer("k", 4, 1, tile2d_ ? 65536 : 4096);
    p.done();
    if (!tile2d_ && k_ > chunk_) throw_error(ErrorKind::Usage, "codec dct_topk: k={} exceeds chunk={}", k_, chunk_);
    if (tile2d_ && k_ > chunk_ * chunk_)
      throw_error(ErrorKind::Usage, "codec dct_topk: k={} exceeds chunk²={} (the largest tile)", k_, chunk_ * chunk_);
    if (!tile2d_) basis_ = dct_basis(chunk_);
  }
  std::string_view name() const override { return "dct_topk"; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    // tile=1d is left out, so the default's spec (and every file made with it) is unchanged.
    std::vector<std::pair<std::string, std::string>> c = {{"chunk", std::to_string(chunk_)}, {"k", std::to_string(k_)}};
    if (tile2d_) c.emplace_back("tile", "2d");
    return c;
  }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "chunk", chunk_);
    a.set(prefix + "k", k_);
    a.set(prefix + "transform", std::string(tile2d_ ? "dct-ii-orthonormal-2d" : "dct-ii-orthonormal"));
    if (tile2d_) a.set(prefix + "tile", std::string("2d"));
  }
  bool sparsifier() const override { return true; }

  // The coefficient domain of a tensor of this shape (dct.hpp).
  DctDomain domain(const Shape& shape) const {
    DctDomain g;
    const std::int64_t d = shape_numel(shape);
    if (!tile2d_) {
      g.tiles = ceil_div(d, chunk_);
      g.tile = chunk_;
      g.tile_rows = 1;
      g.tile_cols = chunk_;
      g.kept = k_;
      return g;
    }
    g.rows = shape.size() >= 2 ? shape[0] : 1;
    g.cols = g.rows == 0 ? 0 : d / g.rows;
    if (d == 0) {
      g.rows = g.cols = 0;
      g.tile_rows = g.tile_cols = g.tile = 1;
      g.kept = 1;
      return g;
    }
    g.tile_rows = dct_tile_size(g.rows, chunk_);
    g.tile_cols = dct_tile_size(g.cols, chunk_);
    g.tile = g.tile_rows * g.tile_cols;
    g.tiles = (g.rows / g.tile_rows) * (g.cols / g.tile_cols);
    g.kept = std::min(k_, g.tile);
    return g;
  }
  bool keeps_coefficients() const override { return true; }
  // The coefficients are read as "topk:k=KEPT,tile=TILE" over the padded coefficient vector, which is
  // exactly dct_topk's layout (KEPT uint16 indices per tile, ascending, then the values).
  std::optional<Coefficients> coefficients(const Shape& shape) const override {
    const DctDomain g = domain(shape);
    return Coefficients{{g.tiles, g.tile_rows, g.tile_cols, chunk_},
                        g.size(),
                        {"topk", {{"k", std::to_string(g.kept)}, {"tile", std::to_string(g.tile)}}}};
  }
  // dct_topk's own decoder with every coefficient of every tile kept.
  Tensor inverse(Tensor coef, const Shape& shape) const override {
    const DctDomain g = domain(shape);
    if (coef.dtype() != DType::F32 || coef.numel() != g.size())
      throw_error(ErrorKind::BadInput, "dct inverse: {} coefficients of {}, expected {} float32 for shape {}",
                  coef.numel(), dtype_name(coef.dtype()), g.size(), shape_string(shape));
    StageSpec all{"dct_topk",
                  {{"chunk", std::to_string(chunk_)}, {"k", std::to_string(tile2d_ ? chunk_ * chunk_ : chunk_)}}};
    if (tile2d_) all.params.emplace_back("tile", "2d");
    const DctTopkStage full(all);
    Tensor idx = Tensor::uninitialized({g.size()}, DType::U16);
    auto* ip = idx.as<std::uint16_t>().data();
    for (std::int64_t j = 0; j < g.size(); ++j) ip[j] = static_cast<std::uint16_t>(j % g.tile);
    const DatasetLookup get = [&](std::string_view n) -> const Tensor& { return n == "indices" ? idx : coef; };
    Tensor out = Tensor::uninitialized(shape);
    full.decode(get, shape, RandomKey{}, out.f32());
    return out;
  }

  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const DctDomain g = domain(shape);
    const std::int64_t kk = g.tiles * g.kept;
    return {{"indices", {kk}, DType::U16}, {"values", {kk}, DType::F32}};
  }
  // The coefficients of chunks [c0, c0 + rows) into y (rows × N).
  void transform(std::span<const float> x, std::int64_t c0, std::int64_t rows, std::vector<float>& pad,
                 std::vector<float>& y) const {
    const std::int64_t N = chunk_, d = static_cast<std::int64_t>(x.size());
    const float* src = x.data() + c0 * N;
    if ((c0 + rows) * N > d) {  // the last group holds the zero-padded last chunk
      pad.assign(static_cast<std::size_t>(rows * N), 0.0f);
      std::copy(x.begin() + c0 * N, x.end(), pad.begin());
      src = pad.data();
    }
    y.resize(static_cast<std::size_t>(rows * N));
    Eigen::Map<const Mat> X(src, rows, N);
    Eigen::Map<const Mat> C(basis_.data(), N, N);
    Eigen::Map<Mat> Y(y.data(), rows, N);
    Y.noalias() = X * C.transpose();
  }
  void encode(std::span<const float> x, const Shape& shape, const RandomKey&, TensorState*,
              Datasets& out) const override {
    if (tile2d_) return encode_2d(x, shape, out);
    const std::int64_t d = static_cast<std::int64_t>(x.size()), N = chunk_, nc = ceil_div(d, N);
    Tensor ind = Tensor::uninitialized({nc * k_}, DType::U16), val = Tensor::uninitialized({nc * k_}, DType::F32);
    std::uint16_t* ip = ind.as<std::uint16_t>().data();
    float* vp = val.f32().data();
    // Groups of a fixed number of chunks: the same GEMM shapes, so the same bits, at any thread count.
    const std::int64_t group = std::max<std::int64_t>(1, 16384 / N), groups = ceil_div(nc, group);
    parallel_chunks(groups, 1, [&](std::int64_t gb, std::int64_t ge) {
      std::vector<float> pad, y;
      std::vector<std::uint32_t> hist;
      std::vector<Cand> cand, scratch;
      for (std::int64_t g = gb; g < ge; ++g) {
        const std::int64_t c0 = g * group, rows = std::min(group, nc - c0);
        transform(x, c0, rows, pad, y);
        for (std::int64_t r = 0; r < rows; ++r) {
          const float* coef = y.data() + r * N;
          std::int64_t o = (c0 + r) * k_;
          auto emit = [&](std::int64_t i) { ip[o] = static_cast<std::uint16_t>(i), vp[o] = coef[i], ++o; };
          if (k_ == N) {
            for (std::int64_t i = 0; i < N; ++i) emit(i);
          } else {
            topk_serial(coef, N, k_, hist, cand, scratch, emit);
          }
        }
      }
    });
    out.emplace_back("indices", std::move(ind));
    out.emplace_back("values", std::move(val));
  }
  void decode(const DatasetLookup& get, const Shape& shape, const RandomKey&, std::span<float> out) const override {
    if (tile2d_) return decode_2d(get, shape, out);
    const std::int64_t d = static_cast<std::int64_t>(out.size()), N = chunk_, nc = ceil_div(d, N);
    const std::uint16_t* ip = expect(get, "indices", nc * k_, DType::U16, "dct_topk").as<std::uint16_t>().data();
    const float* vp = expect(get, "values", nc * k_, DType::F32, "dct_topk").f32().data();
    std::atomic<bool> bad{false};
    parallel_chunks(nc, std::max<std::int64_t>(1, 16384 / N), [&](std::int64_t cb, std::int64_t ce) {
      std::vector<float> buf(static_cast<std::size_t>(N));
      for (std::int64_t c = cb; c < ce; ++c) {
        std::fill(buf.begin(), buf.end(), 0.0f);
        for (std::int64_t j = c * k_; j < (c + 1) * k_; ++j) {  // x = Cᵀ X over the kept coefficients
          if (ip[j] >= N) {
            bad = true;
            continue;
          }
          const float v = vp[j];
          const float* row = basis_.data() + static_cast<std::int64_t>(ip[j]) * N;
          for (std::int64_t n = 0; n < N; ++n) buf[n] += v * row[n];
        }
        std::copy(buf.begin(), buf.begin() + std::min(N, d - c * N), out.begin() + c * N);
      }
    });
    if (bad) throw_error(ErrorKind::BadInput, "codec dct_topk: a coefficient index is not below chunk={}", chunk_);
  }

 private:
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Strided = Eigen::Map<Mat, 0, Eigen::OuterStride<>>;
  using ConstStrided = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;

  // The 2-D work units: a band of s1 rows by a group of up to `per` tiles along it (about 16384
  // elements), numbered band-major. Fixed by the shape alone, so the GEMM shapes, and the bits, do
  // not depend on the thread count.
  struct Units {
    std::int64_t per = 1, groups = 1, count = 0, tiles_c = 0;
  };
  static Units units_of(const DctDomain& g) {
    Units u;
    if (g.tiles == 0) return u;
    u.tiles_c = g.cols / g.tile_cols;
    u.per = std::clamp<std::int64_t>(16384 / g.tile, 1, u.tiles_c);
    u.groups = ceil_div(u.tiles_c, u.per);
    u.count = (g.rows / g.tile_rows) * u.groups;
    return u;
  }

  // Per unit: B = C1·X (s1 × n·s2, the column transform of the band's tiles), then, reading B as
  // (s1·n) × s2 rows, Z = B·C2ᵀ, whose row a·n + j holds row-frequency a of tile j.
  void encode_2d(std::span<const float> x, const Shape& shape, Datasets& out) const {
    const DctDomain g = domain(shape);
    const std::int64_t s1 = g.tile_rows, s2 = g.tile_cols, T = g.tile, kk = g.kept;
    Tensor ind = Tensor::uninitialized({g.tiles * kk}, DType::U16),
           val = Tensor::uninitialized({g.tiles * kk}, DType::F32);
    std::uint16_t* ip = ind.as<std::uint16_t>().data();
    float* vp = val.f32().data();
    const std::vector<float> c1 = dct_basis(s1), c2 = dct_basis(s2);
    const Units u = units_of(g);
    parallel_chunks(u.count, 1, [&](std::int64_t ub, std::int64_t ue) {
      std::vector<float> b, z, y(static_cast<std::size_t>(T));
      std::vector<std::uint32_t> hist;
      std::vector<Cand> cand, scratch;
      for (std::int64_t unit = ub; unit < ue; ++unit) {
        const std::int64_t band = unit / u.groups, t0 = (unit % u.groups) * u.per, n = std::min(u.per, u.tiles_c - t0);
        b.resize(static_cast<std::size_t>(s1 * n * s2));
        z.resize(b.size());
        ConstStrided X(x.data() + band * s1 * g.cols + t0 * s2, s1, n * s2, Eigen::OuterStride<>(g.cols));
        Eigen::Map<Mat> B(b.data(), s1, n * s2);
        B.noalias() = Eigen::Map<const Mat>(c1.data(), s1, s1) * X;
        Eigen::Map<Mat> Z(z.data(), s1 * n, s2);
        Z.noalias() =
            Eigen::Map<const Mat>(b.data(), s1 * n, s2) * Eigen::Map<const Mat>(c2.data(), s2, s2).transpose();
        for (std::int64_t j = 0; j < n; ++j) {
          for (std::int64_t a = 0; a < s1; ++a) std::copy_n(z.data() + (a * n + j) * s2, s2, y.data() + a * s2);
          std::int64_t o = (band * u.tiles_c + t0 + j) * kk;
          auto emit = [&](std::int64_t i) { ip[o] = static_cast<std::uint16_t>(i), vp[o] = y[i], ++o; };
          if (kk == T) {
            for (std::int64_t i = 0; i < T; ++i) emit(i);
          } else {
            topk_serial(y.data(), T, kk, hist, cand, scratch, emit);
          }
        }
      }
    });
    out.emplace_back("indices", std::move(ind));
    out.emplace_back("values", std::move(val));
  }

  // The inverse per unit: the kept coefficients scattered (added) into Z, B = Z·C2 read as s1 × n·s2,
  // X = C1ᵀ·B written into the band.
  void decode_2d(const DatasetLookup& get, const Shape& shape, std::span<float> out) const {
    const DctDomain g = domain(shape);
    const std::int64_t s1 = g.tile_rows, s2 = g.tile_cols, T = g.tile, kk = g.kept;
    const std::uint16_t* ip = expect(get, "indices", g.tiles * kk, DType::U16, "dct_topk").as<std::uint16_t>().data();
    const float* vp = expect(get, "values", g.tiles * kk, DType::F32, "dct_topk").f32().data();
    const std::vector<float> c1 = dct_basis(s1), c2 = dct_basis(s2);
    const Units u = units_of(g);
    std::atomic<bool> bad{false};
    parallel_chunks(u.count, 1, [&](std::int64_t ub, std::int64_t ue) {
      std::vector<float> b, z;
      for (std::int64_t unit = ub; unit < ue; ++unit) {
        const std::int64_t band = unit / u.groups, t0 = (unit % u.groups) * u.per, n = std::min(u.per, u.tiles_c - t0);
        z.assign(static_cast<std::size_t>(s1 * n * s2), 0.0f);
        b.resize(z.size());
        for (std::int64_t j = 0; j < n; ++j) {
          const std::int64_t tile = band * u.tiles_c + t0 + j;
          for (std::int64_t e = tile * kk; e < (tile + 1) * kk; ++e) {
            const std::int64_t i = ip[e];
            if (i >= T) {
              bad = true;
              continue;
            }
            z[((i / s2) * n + j) * s2 + i % s2] += vp[e];
          }
        }
        Eigen::Map<Mat> B(b.data(), s1 * n, s2);
        B.noalias() = Eigen::Map<const Mat>(z.data(), s1 * n, s2) * Eigen::Map<const Mat>(c2.data(), s2, s2);
        Strided X(out.data() + band * s1 * g.cols + t0 * s2, s1, n * s2, Eigen::OuterStride<>(g.cols));
        X.noalias() =
            Eigen::Map<const Mat>(c1.data(), s1, s1).transpose() * Eigen::Map<const Mat>(b.data(), s1, n * s2);
      }
    });
    if (bad) throw_error(ErrorKind::BadInput, "codec dct_topk: a coefficient index is not below the tile size {}", T);
  }

  std::int64_t chunk_ = 64, k_ = 4;
  bool tile2d_ = false;
  std::vector<float> basis_;  // 1d: row k is the k-th orthonormal DCT-II basis vector of length chunk
};

}  // namespace

std::unique_ptr<Stage> make_dct_topk_stage(const StageSpec& s) { return std::make_unique<DctTopkStage>(s); }

std::int64_t dct_tile_size(std::int64_t n, std::int64_t chunk) {
  if (n < 1 || chunk < 1)
    throw_error(ErrorKind::Usage, "dct tile size: dimension {} and chunk {} must be at least 1", n, chunk);
  if (n <= chunk) return n;
  for (std::int64_t s = chunk; s > 1; --s)
    if (n % s == 0) return s;
  return 1;
}

namespace {
// The dct_topk stage of a spec's stage, or Error(Usage) when it is another codec.
std::unique_ptr<DctTopkStage> dct_stage(const StageSpec& stage) {
  if (stage.name != "dct_topk") throw_error(ErrorKind::Usage, "codec '{}' is not dct_topk", stage.name);
  return std::make_unique<DctTopkStage>(stage);
}
}  // namespace

DctDomain dct_domain(const StageSpec& stage, const Shape& shape) { return dct_stage(stage)->domain(shape); }

StageSpec dct_coefficient_stage(const StageSpec& stage, const Shape& shape) {
  return dct_stage(stage)->coefficients(shape)->sparse;
}

Tensor dct_inverse(Tensor coef, const StageSpec& stage, const Shape& shape) {
  return dct_stage(stage)->inverse(std::move(coef), shape);
}

}  // namespace loco::compress
