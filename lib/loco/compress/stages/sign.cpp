// The sign stage: one bit per element and the mean magnitude of each block (scaled sign).
#include <algorithm>
#include <bit>
#include <cmath>

#include "loco/compress/detail/parallel.hpp"
#include "loco/compress/detail/stage.hpp"
#include "loco/core/error.hpp"

namespace loco::compress {
namespace {

using namespace detail;

class SignStage final : public Stage {
 public:
  explicit SignStage(const StageSpec& s) {
    Spec p = stage_params(s);
    block_ = p.integer("block", 0, 0, std::int64_t{1} << 40);
    if (block_ % 8 != 0)
      throw_error(ErrorKind::Usage, "codec sign: block={} is not a multiple of 8 (0: whole tensor)", block_);
    p.done();
  }
  std::string_view name() const override { return "sign"; }
  bool screens_finite() const override { return true; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    return {{"block", std::to_string(block_)}};
  }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "block", block_);
    a.set(prefix + "bit_order", std::string("little"));
  }
  std::int64_t blk(std::int64_t d) const { return block_ > 0 ? block_ : std::max<std::int64_t>(d, 1); }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const std::int64_t d = shape_numel(shape);
    return {{"packed", {ceil_div(d, 8)}, DType::U8}, {"scale", {ceil_div(d, blk(d))}, DType::F32}};
  }
  void encode(std::span<const float> x, const Shape&, const RandomKey&, TensorState*, Datasets& out) const override {
    const std::int64_t d = static_cast<std::int64_t>(x.size()), bs = blk(d), nb = ceil_div(d, bs);
    Tensor packed({ceil_div(d, 8)}, DType::U8);
    Tensor scale = Tensor::uninitialized({nb}, DType::F32);
    std::uint8_t* pk = packed.as<std::uint8_t>().data();
    float* sc = scale.f32().data();
    // Sub-blocks of 64 Ki elements (a multiple of 8) keep one thread's work contiguous; the scale
    // sums each block's partial sums in a fixed order.
    constexpr std::int64_t kPiece = 1 << 16;
    const std::int64_t pieces_per_block = ceil_div(bs, kPiece);
    std::vector<double> partial(static_cast<std::size_t>(nb * pieces_per_block), 0.0);
    parallel_chunks(nb * pieces_per_block, 1, [&](std::int64_t pb, std::int64_t pe) {
      for (std::int64_t p = pb; p < pe; ++p) {
        const std::int64_t b = p / pieces_per_block, i0 = b * bs + (p % pieces_per_block) * kPiece;
        const std::int64_t i1 = std::min({i0 + kPiece, b * bs + bs, d});
        if (i0 >= i1) continue;
        float acc = 0;
        double sum = 0;
        for (std::int64_t i = i0; i < i1; i += 8) {
          std::uint32_t byte = 0;
          const std::int64_t m = std::min<std::int64_t>(8, i1 - i);
          for (std::int64_t j = 0; j < m; ++j) {
            const float v = x[i + j];
            byte |= static_cast<std::uint32_t>(!std::signbit(v) || v == 0.0f) << j;
            acc += std::fabs(v);
          }
          pk[i / 8] = static_cast<std::uint8_t>(byte);
          if (((i - i0) & 1023) == 1016) sum += acc, acc = 0;
        }
        partial[p] = sum + acc;
      }
    });
    // A NaN or Inf in x makes its piece's sum non-finite (so does a float overflow of |x| sums
    // near FLT_MAX: then, x being finite, that piece is summed again in double).
    for (std::int64_t p = 0; p < nb * pieces_per_block; ++p) {
      if (std::isfinite(partial[p])) continue;
      require_finite(x);
      const std::int64_t b = p / pieces_per_block, i0 = b * bs + (p % pieces_per_block) * kPiece;
      const std::int64_t i1 = std::min({i0 + kPiece, b * bs + bs, d});
      double sum = 0;
      for (std::int64_t i = i0; i < i1; ++i) sum += std::fabs(static_cast<double>(x[i]));
      partial[p] = sum;
    }
    for (std::int64_t b = 0; b < nb; ++b) {
      double s = 0;
      for (std::int64_t p = 0; p < pieces_per_block; ++p) s += partial[b * pieces_per_block + p];
      const std::int64_t n = std::min(bs, d - b * bs);
      sc[b] = static_cast<float>(s / static_cast<double>(n));
    }
    out.emplace_back("packed", std::move(packed));
    out.emplace_back("scale", std::move(scale));
  }
  void decode(const DatasetLookup& get, const Shape&, const RandomKey&, std::span<float> out) const override {
    const std::int64_t d = static_cast<std::int64_t>(out.size()), bs = blk(d), nb = ceil_div(d, bs);
    const std::uint8_t* pk = expect(get, "packed", ceil_div(d, 8), DType::U8, "sign").as<std::uint8_t>().data();
    const float* sc = expect(get, "scale", nb, DType::F32, "sign").f32().data();
    parallel_chunks(ceil_div(d, 8), 1 << 13, [&](std::int64_t bb, std::int64_t be) {
      for (std::int64_t byte = bb; byte < be; ++byte) {
        const std::int64_t i0 = byte * 8, m = std::min<std::int64_t>(8, d - i0);
        if (m == 8 && bs > 0 && (i0 / bs) == ((i0 + 7) / bs)) {
          const std::uint32_t s = std::bit_cast<std::uint32_t>(sc[i0 / bs]) & 0x7FFFFFFFu;
          const std::uint32_t neg = ~static_cast<std::uint32_t>(pk[byte]);
          float* y = out.data() + i0;
          for (int j = 0; j < 8; ++j) y[j] = std::bit_cast<float>(s | (((neg >> j) & 1u) << 31));
          continue;
        }
        // A byte never straddles blocks (block is a multiple of 8); bit 0 sets the sign bit.
        const std::uint32_t s = std::bit_cast<std::uint32_t>(sc[i0 / bs]) & 0x7FFFFFFFu;
        const std::uint32_t neg = ~static_cast<std::uint32_t>(pk[byte]);
        for (std::int64_t j = 0; j < m; ++j) out[i0 + j] = std::bit_cast<float>(s | (((neg >> j) & 1u) << 31));
      }
    });
  }

 private:
  std::int64_t block_ = 0;
};

}  // namespace

std::unique_ptr<Stage> make_sign_stage(const StageSpec& s) { return std::make_unique<SignStage>(s); }

}  // namespace loco::compress
