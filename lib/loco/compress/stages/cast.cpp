// The cast stage: float32 to fp16 or bf16 (round to nearest even) and back.
#include <atomic>
#include <bit>
#include <cstdint>

#include "loco/compress/detail/parallel.hpp"
#include "loco/compress/detail/stage.hpp"
#include "loco/core/error.hpp"

namespace loco::compress {
namespace {

using namespace detail;

// Inline conversions for the cast kernels, equal to loco::float_to_half / float_to_bfloat16 /
// half_to_float on finite inputs (NaN and Inf inputs are screened by the cast kernel; checked in the tests).
inline std::uint16_t finite_to_bfloat16(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
inline std::uint16_t finite_to_half(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds past 65504: infinity
  if (ax >= 0x38800000u) return static_cast<std::uint16_t>(sign | ((ax + 0xc8000fffu + ((ax >> 13) & 1u)) >> 13));
  // Subnormal or zero: adding 0.5 puts the half's subnormal grid on float's last mantissa bits.
  const float t = std::bit_cast<float>(ax) + 0.5f;
  return static_cast<std::uint16_t>(sign | (std::bit_cast<std::uint32_t>(t) - 0x3f000000u));
}
inline float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0)
    return std::bit_cast<float>(sign | std::bit_cast<std::uint32_t>(static_cast<float>(m) * 5.9604644775390625e-8f));
  if (e == 31) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13) | (m != 0 ? 0x400000u : 0u));
  return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}

class CastStage final : public Stage {
 public:
  explicit CastStage(const StageSpec& s) {
    Spec p = stage_params(s);
    dtype_ = p.choice("dtype", "bf16", {"f16", "bf16"}) == "f16" ? DType::F16 : DType::BF16;
    p.done();
  }
  std::string_view name() const override { return "cast"; }
  bool screens_finite() const override { return true; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    return {{"dtype", dtype_ == DType::F16 ? "f16" : "bf16"}};
  }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "cast_dtype", std::string(dtype_name(dtype_)));
  }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const std::int64_t d = shape_numel(shape);
    return {{"data", {d}, dtype_}};
  }
  void encode(std::span<const float> x, const Shape&, const RandomKey&, TensorState*, Datasets& out) const override {
    Tensor t = Tensor::uninitialized({static_cast<std::int64_t>(x.size())}, dtype_);
    auto* dst = reinterpret_cast<std::uint16_t*>(t.bytes().data());
    const bool half = dtype_ == DType::F16;
    std::atomic<bool> overflow{false};
    parallel_chunks(static_cast<std::int64_t>(x.size()), 1 << 16, [&](std::int64_t b, std::int64_t e) {
      // bad: an output of Inf, from an overflow or from an input NaN or Inf (told apart below).
      std::uint32_t bad = 0;
      if (half) {
        for (std::int64_t i = b; i < e; ++i) {
          dst[i] = finite_to_half(x[i]);
          bad |= (dst[i] & 0x7C00u) == 0x7C00u;
        }
      } else {
        for (std::int64_t i = b; i < e; ++i) {
          dst[i] = finite_to_bfloat16(x[i]);
          // The input's exponent too: rounding a NaN's mantissa can carry into the sign bit.
          bad |= ((dst[i] & 0x7F80u) == 0x7F80u) | ((std::bit_cast<std::uint32_t>(x[i]) & 0x7F800000u) == 0x7F800000u);
        }
      }
      if (bad) overflow = true;
    });
    if (overflow) require_finite(x);  // throws for a NaN or Inf input; else a finite value overflowed
    if (overflow)
      throw_error(ErrorKind::Numeric, "codec cast: a value overflows {} (|x| too large to represent)",
                  dtype_name(dtype_));
    out.emplace_back("data", std::move(t));
  }
  void decode(const DatasetLookup& get, const Shape&, const RandomKey&, std::span<float> out) const override {
    const Tensor& t = expect(get, "data", static_cast<std::int64_t>(out.size()), dtype_, "cast");
    const auto* src = reinterpret_cast<const std::uint16_t*>(t.bytes().data());
    const bool half = dtype_ == DType::F16;
    parallel_chunks(static_cast<std::int64_t>(out.size()), 1 << 16, [&](std::int64_t b, std::int64_t e) {
      if (half) {
        for (std::int64_t i = b; i < e; ++i) out[i] = half_bits_to_float(src[i]);
      } else {
        for (std::int64_t i = b; i < e; ++i) out[i] = std::bit_cast<float>(static_cast<std::uint32_t>(src[i]) << 16);
      }
    });
  }

 private:
  DType dtype_ = DType::BF16;
};

}  // namespace

std::unique_ptr<Stage> make_cast_stage(const StageSpec& s) { return std::make_unique<CastStage>(s); }

}  // namespace loco::compress
