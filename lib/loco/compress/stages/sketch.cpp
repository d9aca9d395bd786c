// The sketch stage: a count sketch (rows × cols) decoded by the median of the rows' estimates.
#include <algorithm>
#include <limits>

#include "loco/compress/detail/parallel.hpp"
#include "loco/compress/detail/stage.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"

namespace loco::compress {
namespace {

using namespace detail;

// Arithmetic modulo the Mersenne prime 2^61 − 1 for the sketch's hash families.
constexpr std::uint64_t kP61 = (std::uint64_t{1} << 61) - 1;
inline std::uint64_t mod61(std::uint64_t v) {
  v = (v & kP61) + (v >> 61);
  return v >= kP61 ? v - kP61 : v;
}
inline std::uint64_t mulmod61(std::uint64_t a, std::uint64_t b) {
  __extension__ using u128 = unsigned __int128;
  const u128 p = static_cast<u128>(a) * b;
  return mod61(static_cast<std::uint64_t>(p & kP61) + static_cast<std::uint64_t>(p >> 61));
}

// One row's hashes: bucket h(i) = ⌊((a·i + b) mod p) · cols / 2^61⌋ (2-wise independent) and sign
// s(i) = ±1 from the low bit of a cubic polynomial mod p (4-wise independent), coefficients drawn
// from the shared stream so every worker hashes alike.
struct RowHash {
  std::uint64_t a, b, c[4];
  std::int64_t cols;
  RowHash(std::uint64_t seed, std::uint64_t stream, std::int64_t row, std::int64_t ncols) : cols(ncols) {
    Rng r(seed, {stream, 0x736b65746368ull, static_cast<std::uint64_t>(row)});
    a = 1 + r.below(kP61 - 1);
    b = r.below(kP61);
    for (auto& v : c) v = r.below(kP61);
  }
  // (h · cols) >> 61 maps h ∈ [0, 2^61) onto [0, cols) without a division (Lemire's range map).
  std::int64_t bucket(std::uint64_t i) const {
    __extension__ using u128 = unsigned __int128;
    const std::uint64_t h = mod61(mulmod61(a, i) + b);
    return static_cast<std::int64_t>((static_cast<u128>(h) * static_cast<std::uint64_t>(cols)) >> 61);
  }
  float sign(std::uint64_t i) const {
    std::uint64_t h = c[3];
    for (int j = 2; j >= 0; --j) h = mod61(mulmod61(h, i) + c[j]);
    return (h & 1u) ? 1.0f : -1.0f;
  }
};

class SketchStage final : public Stage {
 public:
  explicit SketchStage(const StageSpec& s) {
    Spec p = stage_params(s);
    rows_ = p.integer("rows", 5, 1, 64);
    cols_ = p.integer("cols", 65536, 1, std::int64_t{1} << 40);
    k_ = p.integer("k", 0, 0, std::numeric_limits<std::int64_t>::max());
    p.done();
  }
  std::string_view name() const override { return "sketch"; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    return {{"rows", std::to_string(rows_)}, {"cols", std::to_string(cols_)}, {"k", std::to_string(k_)}};
  }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "rows", rows_);
    a.set(prefix + "cols", cols_);
    a.set(prefix + "k", k_);
    a.set(prefix + "hash", std::string("bucket (((a*i+b) mod 2^61-1) * cols) >> 61; sign cubic mod 2^61-1, low bit"));
  }
  std::vector<DatasetLayout> layout(const Shape&) const override { return {{"table", {rows_, cols_}, DType::F32}}; }
  void encode(std::span<const float> x, const Shape&, const RandomKey& key, TensorState*,
              Datasets& out) const override {
    Tensor table({rows_, cols_});
    float* t = table.f32().data();
    const auto d = static_cast<std::int64_t>(x.size());
    // One row per task, each summed in index order: the same bits at any thread count.
    parallel_chunks(rows_, 1, [&](std::int64_t rb, std::int64_t re) {
      for (std::int64_t r = rb; r < re; ++r) {
        const RowHash h(key.seed, key.shared_stream, r, cols_);
        float* row = t + r * cols_;
        for (std::int64_t i = 0; i < d; ++i)
          if (x[i] != 0.0f)
            row[h.bucket(static_cast<std::uint64_t>(i))] += h.sign(static_cast<std::uint64_t>(i)) * x[i];
      }
    });
    out.emplace_back("table", std::move(table));
  }
  void decode(const DatasetLookup& get, const Shape&, const RandomKey& key, std::span<float> out) const override {
    const float* t = expect(get, "table", rows_ * cols_, DType::F32, "sketch").f32().data();
    const auto d = static_cast<std::int64_t>(out.size());
    std::vector<RowHash> hs;
    for (std::int64_t r = 0; r < rows_; ++r) hs.emplace_back(key.seed, key.shared_stream, r, cols_);
    parallel_chunks(d, 4096, [&](std::int64_t b, std::int64_t e) {
      std::vector<float> est(static_cast<std::size_t>(rows_));
      for (std::int64_t i = b; i < e; ++i) {
        for (std::int64_t r = 0; r < rows_; ++r)
          est[r] =
              hs[r].sign(static_cast<std::uint64_t>(i)) * t[r * cols_ + hs[r].bucket(static_cast<std::uint64_t>(i))];
        std::sort(est.begin(), est.end());
        const std::size_t m = est.size() / 2;
        out[i] = est.size() % 2 ? est[m] : 0.5f * (est[m - 1] + est[m]);
      }
    });
    if (k_ > 0 && k_ < d) {  // heavy hitters: keep the k largest estimates
      std::vector<std::int64_t> idx;
      topk_indices(out, k_, idx);
      std::vector<float> kept(idx.size());
      for (std::size_t j = 0; j < idx.size(); ++j) kept[j] = out[idx[j]];
      std::fill(out.begin(), out.end(), 0.0f);
      for (std::size_t j = 0; j < idx.size(); ++j) out[idx[j]] = kept[j];
    }
  }

 private:
  std::int64_t rows_ = 5, cols_ = 65536, k_ = 0;
};

}  // namespace

std::unique_ptr<Stage> make_sketch_stage(const StageSpec& s) { return std::make_unique<SketchStage>(s); }

}  // namespace loco::compress
