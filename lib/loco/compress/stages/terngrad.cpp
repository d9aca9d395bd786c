// The terngrad stage: TernGrad (Wen et al., NIPS 2017, "TernGrad: Ternary Gradients to Reduce
// Communication in Distributed Deep Learning", §3, eq. 5-6 and §3.3's gradient clipping), as its
// reference code does it (wenwei202/terngrad, inception/bingrad_common.py: clip_gradients and
// stochastical_binarize_gradients). Per tensor ("layer"): clip every element to [−c·σ, c·σ], σ the
// population standard deviation of the tensor (around its mean; clip=c, the paper's 2.5); then
// s = max|g| over the clipped tensor and each element sent as s·sign(g)·b, b ~ Bernoulli(|g|/s), drawn as
// u·s < |g| with u uniform in [0, 1) from the worker's stream at the element's position (the same bits
// for any thread count; decoding needs no randomness). E[decoded] is the clipped tensor. Sent: 2-bit
// codes (0: 0, 1: +s, 2: −s; little-endian in a byte, as quant) and s.
#include <algorithm>
#include <atomic>
#include <cmath>

#include "loco/compress/detail/parallel.hpp"
#include "loco/compress/detail/stage.hpp"
#include "loco/core/error.hpp"

namespace loco::compress {
namespace {

using namespace detail;

constexpr std::int64_t kBlock = 4096;  // elements per parallel block (a multiple of 4: whole bytes)

class TerngradStage final : public Stage {
 public:
  explicit TerngradStage(const StageSpec& s) {
    Spec p = stage_params(s);
    clip_ = p.real("clip", 2.5, Range::between(0.0, 1e6, true));
    p.done();
  }
  std::string_view name() const override { return "terngrad"; }
  std::vector<std::pair<std::string, std::string>> canonical() const override { return {{"clip", real_text(clip_)}}; }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "clip", clip_);
    a.set(prefix + "bit_order", std::string("little"));
  }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    return {{"packed", {ceil_div(shape_numel(shape) * 2, 8)}, DType::U8}, {"scale", {1}, DType::F32}};
  }

  void encode(std::span<const float> x, const Shape&, const RandomKey& key, TensorState*,
              Datasets& out) const override {
    const std::int64_t d = static_cast<std::int64_t>(x.size());
    Tensor packed({ceil_div(d * 2, 8)}, DType::U8), scale({1}, DType::F32);
    if (d > 0) {
      double sum = 0;
      for (const float v : x) sum += v;
      const double mean = sum / static_cast<double>(d);
      double sq = 0;
      for (const float v : x) sq += (v - mean) * (v - mean);
      const float t = static_cast<float>(clip_ * std::sqrt(sq / static_cast<double>(d)));
      float s = 0;
      for (const float v : x) s = std::max(s, std::min(std::fabs(v), t));
      std::uint8_t* pk = packed.as<std::uint8_t>().data();
      if (s > 0) {
        parallel_chunks(ceil_div(d, kBlock), 1, [&](std::int64_t bb, std::int64_t be) {
          for (std::int64_t b = bb; b < be; ++b) {
            Rng rng = rng_at(key.seed, key.stream, b * kBlock);
            for (std::int64_t i = b * kBlock, e = std::min(d, (b + 1) * kBlock); i < e; ++i) {
              const float g = std::clamp(x[i], -t, t);
              const std::uint32_t code = rng.uniform() * s < std::fabs(g) ? (g > 0 ? 1u : 2u) : 0u;
              pk[i / 4] = static_cast<std::uint8_t>(pk[i / 4] | (code << (2 * (i % 4))));
            }
          }
        });
      }
      scale.f32()[0] = s;
    }
    out.emplace_back("packed", std::move(packed));
    out.emplace_back("scale", std::move(scale));
  }

  void decode(const DatasetLookup& get, const Shape&, const RandomKey&, std::span<float> out) const override {
    const std::int64_t d = static_cast<std::int64_t>(out.size());
    const std::uint8_t* pk = expect(get, "packed", ceil_div(d * 2, 8), DType::U8, "terngrad").as<std::uint8_t>().data();
    const float s = expect(get, "scale", 1, DType::F32, "terngrad").f32()[0];
    if (!std::isfinite(s) || s < 0)
      throw_error(ErrorKind::BadInput, "codec terngrad: scale {} is not a finite s >= 0", s);
    const float level[4] = {0.0f, s, -s, 0.0f};
    std::atomic<bool> bad{false};
    parallel_chunks(ceil_div(d, kBlock), 1, [&](std::int64_t bb, std::int64_t be) {
      for (std::int64_t i = bb * kBlock, e = std::min(d, be * kBlock); i < e; ++i) {
        const unsigned code = (pk[i / 4] >> (2 * (i % 4))) & 3u;
        if (code == 3) bad = true;
        out[i] = level[code];
      }
    });
    if (bad) throw_error(ErrorKind::BadInput, "codec terngrad: a 2-bit code is 3 (codes are 0, 1 = +s, 2 = -s)");
  }

 private:
  double clip_ = 2.5;
};

}  // namespace

std::unique_ptr<Stage> make_terngrad_stage(const StageSpec& s) { return std::make_unique<TerngradStage>(s); }

}  // namespace loco::compress
