// The quant stage: n-bit block quantization (min-max or the 6-sigma SparseLoCo range), nearest or
// stochastic rounding; range=templar is templar's per-tensor quantizer (quant_templar.cpp).
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>

#include "loco/compress/detail/parallel.hpp"
#include "loco/compress/detail/stage.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"

namespace loco::compress {
namespace {

using namespace detail;

// Minimum and maximum of x[0, n), folded into lo and hi (min and max are exact, so the SSE and
// scalar paths agree bit for bit). Returns false when x holds a NaN or an Inf: Σ x·0 is 0 for
// finite x and NaN otherwise, one multiply-add per element in the same pass.
inline bool block_min_max(const float* x, std::int64_t n, float& lo, float& hi) {
  std::int64_t i = 0;
  float z = 0.0f;
#if defined(__SSE2__)
  const __m128 zero = _mm_setzero_ps();
  __m128 l0 = _mm_set1_ps(lo), l1 = l0, h0 = _mm_set1_ps(hi), h1 = h0, z0 = zero;
  for (; i + 8 <= n; i += 8) {
    const __m128 a = _mm_loadu_ps(x + i), b = _mm_loadu_ps(x + i + 4);
    l0 = _mm_min_ps(l0, a), l1 = _mm_min_ps(l1, b);
    h0 = _mm_max_ps(h0, a), h1 = _mm_max_ps(h1, b);
    z0 = _mm_add_ps(z0, _mm_add_ps(_mm_mul_ps(a, zero), _mm_mul_ps(b, zero)));
  }
  alignas(16) float l[4], h[4], zz[4];
  _mm_store_ps(l, _mm_min_ps(l0, l1));
  _mm_store_ps(h, _mm_max_ps(h0, h1));
  _mm_store_ps(zz, z0);
  for (int j = 0; j < 4; ++j) {
    lo = l[j] < lo ? l[j] : lo;
    hi = h[j] > hi ? h[j] : hi;
    z += zz[j];
  }
#endif
  for (; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
    z += x[i] * 0.0f;
  }
  return z == 0.0f && std::isfinite(lo) && std::isfinite(hi);
}

// Packs codes q = ⌊(x − lo)·inv + u⌋ clamped to [0, 2^BITS − 1], element j of a byte at bits
// [j·BITS, (j+1)·BITS) (little-endian bit order). u() is 0.5 (nearest) or a uniform in [0, 1).
template <int BITS, typename U>
void pack_block(const float* x, std::int64_t n, float lo, float inv, std::uint8_t* dst, U&& u) {
  constexpr int per = 8 / BITS;
  constexpr float top = static_cast<float>((1 << BITS) - 1);
  const std::int64_t full = n / per;
  auto code = [&](float v) -> std::uint32_t {
    const float t = std::min(std::max((v - lo) * inv, 0.0f), top) + u();  // ≥ 0: truncation is ⌊·⌋
    return std::min(static_cast<std::uint32_t>(t), static_cast<std::uint32_t>(top));
  };
  for (std::int64_t b = 0; b < full; ++b) {
    std::uint32_t byte = 0;
    for (int j = 0; j < per; ++j) byte |= code(x[b * per + j]) << (j * BITS);
    dst[b] = static_cast<std::uint8_t>(byte);
  }
  if (full * per < n) {
    std::uint32_t byte = 0;
    for (std::int64_t j = 0; full * per + j < n; ++j) byte |= code(x[full * per + j]) << (j * BITS);
    dst[full] = static_cast<std::uint8_t>(byte);
  }
}

// The nearest-rounding case of pack_block in two vectorizable passes per 256 elements: codes into
// a byte buffer, then bytes from BITS-bit fields. Gives the same bytes as pack_block with u = 0.5.
template <int BITS>
void pack_block_nearest(const float* x, std::int64_t n, float lo, float inv, std::uint8_t* dst) {
  constexpr int per = 8 / BITS;
  constexpr float top = static_cast<float>((1 << BITS) - 1);
  std::uint8_t codes[256];
  for (std::int64_t i0 = 0; i0 < n; i0 += 256) {
    const std::int64_t m = std::min<std::int64_t>(256, n - i0);
    for (std::int64_t j = 0; j < m; ++j) {
      float t = (x[i0 + j] - lo) * inv;
      t = t < 0.0f ? 0.0f : t;
      t = t > top ? top : t;
      codes[j] = static_cast<std::uint8_t>(static_cast<std::int32_t>(t + 0.5f));
    }
    for (std::int64_t j = m; j < ((m + per - 1) / per) * per; ++j) codes[j] = 0;
    std::uint8_t* out = dst + i0 / per;
    if constexpr (BITS == 8) {
      for (std::int64_t j = 0; j < m; ++j) out[j] = codes[j];
    } else {
      for (std::int64_t b = 0; b < (m + per - 1) / per; ++b) {
        std::uint32_t byte = 0;
        for (int j = 0; j < per; ++j) byte |= static_cast<std::uint32_t>(codes[b * per + j]) << (j * BITS);
        out[b] = static_cast<std::uint8_t>(byte);
      }
    }
  }
}

template <int BITS>
void unpack_block(const std::uint8_t* src, std::int64_t n, float o, float s, float* y) {
  constexpr int per = 8 / BITS;
  constexpr std::uint32_t mask = (1u << BITS) - 1u;
  const std::int64_t full = n / per;
  for (std::int64_t b = 0; b < full; ++b) {
    const std::uint32_t byte = src[b];
    for (int j = 0; j < per; ++j) y[b * per + j] = o + static_cast<float>((byte >> (j * BITS)) & mask) * s;
  }
  for (std::int64_t i = full * per; i < n; ++i)
    y[i] = o + static_cast<float>((src[i / per] >> ((i % per) * BITS)) & mask) * s;
}

class QuantStage final : public Stage {
 public:
  explicit QuantStage(const StageSpec& s) {
    Spec p = stage_params(s);
    bits_ = static_cast<int>(p.integer("bits", 8, 1, 8));
    if (bits_ != 1 && bits_ != 2 && bits_ != 4 && bits_ != 8)
      throw_error(ErrorKind::Usage, "codec quant: bits={} is not one of 1, 2, 4, 8", bits_);
    block_ = p.integer("block", 256, 8, std::int64_t{1} << 40);
    if (block_ % 8 != 0) throw_error(ErrorKind::Usage, "codec quant: block={} is not a multiple of 8", block_);
    stochastic_ = p.choice("rounding", "nearest", {"nearest", "stochastic"}) == "stochastic";
    sigma_ = p.choice("range", "minmax", {"minmax", "sigma", "templar"}) == "sigma";  // templar: quant_templar.cpp
    p.done();
  }
  std::string_view name() const override { return "quant"; }
  bool screens_finite() const override { return true; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    return {{"bits", std::to_string(bits_)},
            {"block", std::to_string(block_)},
            {"rounding", stochastic_ ? "stochastic" : "nearest"},
            {"range", sigma_ ? "sigma" : "minmax"}};
  }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "bits", std::int64_t{bits_});
    a.set(prefix + "block", block_);
    a.set(prefix + "rounding", std::string(stochastic_ ? "stochastic" : "nearest"));
    a.set(prefix + "range", std::string(sigma_ ? "sigma" : "minmax"));
    a.set(prefix + "bit_order", std::string("little"));
  }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const std::int64_t d = shape_numel(shape);
    const std::int64_t nb = ceil_div(d, block_);
    return {{"packed", {ceil_div(d * bits_, 8)}, DType::U8}, {"scale", {nb}, DType::F32}, {"offset", {nb}, DType::F32}};
  }

  void encode(std::span<const float> x, const Shape&, const RandomKey& key, TensorState*,
              Datasets& out) const override {
    const std::int64_t d = static_cast<std::int64_t>(x.size()), nb = ceil_div(d, block_);
    Tensor packed({ceil_div(d * bits_, 8)}, DType::U8);
    Tensor scale = Tensor::uninitialized({nb}, DType::F32), offset = Tensor::uninitialized({nb}, DType::F32);
    std::uint8_t* pk = packed.as<std::uint8_t>().data();
    float* sc = scale.f32().data();
    float* of = offset.f32().data();
    const std::uint32_t levels = (1u << bits_) - 1u;
    std::atomic<bool> nonfinite{false};
    parallel_chunks(nb, std::max<std::int64_t>(1, (1 << 16) / block_), [&](std::int64_t bb, std::int64_t be) {
      for (std::int64_t b = bb; b < be; ++b) {
        const std::int64_t i0 = b * block_, n = std::min(block_, d - i0);
        const float* xb = x.data() + i0;
        float lo = xb[0], hi = xb[0];
        if (!block_min_max(xb, n, lo, hi)) {
          nonfinite = true;
          continue;
        }
        if (sigma_) {
          double sum = 0, sq = 0;
          for (std::int64_t i = 0; i < n; ++i) sum += xb[i];
          const double mean = sum / static_cast<double>(n);
          for (std::int64_t i = 0; i < n; ++i) sq += (xb[i] - mean) * (xb[i] - mean);
          const double sd = std::sqrt(sq / static_cast<double>(n));
          lo = std::max(lo, static_cast<float>(mean - 3.0 * sd));
          hi = std::min(hi, static_cast<float>(mean + 3.0 * sd));
          if (hi < lo) hi = lo;  // rounding of mean ± 3σ on a constant block
        }
        const double step = (static_cast<double>(hi) - static_cast<double>(lo)) / levels;
        if (!std::isfinite(static_cast<float>(step)))
          throw_error(ErrorKind::Numeric, "codec quant: block {} spans [{}, {}], too wide for a float32 step", b, lo,
                      hi);
        const float s = static_cast<float>(step);
        sc[b] = s;
        of[b] = lo;
        const float inv = s > 0 ? 1.0f / s : 0.0f;
        std::uint8_t* dst = pk + i0 * bits_ / 8;
        if (stochastic_) {
          Rng rng = rng_at(key.seed, key.stream, i0);
          switch (bits_) {
            case 1: pack_block<1>(xb, n, lo, inv, dst, [&] { return rng.uniform(); }); break;
            case 2: pack_block<2>(xb, n, lo, inv, dst, [&] { return rng.uniform(); }); break;
            case 4: pack_block<4>(xb, n, lo, inv, dst, [&] { return rng.uniform(); }); break;
            default: pack_block<8>(xb, n, lo, inv, dst, [&] { return rng.uniform(); }); break;
          }
        } else {
          switch (bits_) {
            case 1: pack_block_nearest<1>(xb, n, lo, inv, dst); break;
            case 2: pack_block_nearest<2>(xb, n, lo, inv, dst); break;
            case 4: pack_block_nearest<4>(xb, n, lo, inv, dst); break;
            default: pack_block_nearest<8>(xb, n, lo, inv, dst); break;
          }
        }
      }
    });
    if (nonfinite) require_finite(x);  // throws: a block held a NaN or an Inf
    out.emplace_back("packed", std::move(packed));
    out.emplace_back("scale", std::move(scale));
    out.emplace_back("offset", std::move(offset));
  }

  void decode(const DatasetLookup& get, const Shape&, const RandomKey&, std::span<float> out) const override {
    const std::int64_t d = static_cast<std::int64_t>(out.size()), nb = ceil_div(d, block_);
    const std::uint8_t* pk =
        expect(get, "packed", ceil_div(d * bits_, 8), DType::U8, "quant").as<std::uint8_t>().data();
    const float* sc = expect(get, "scale", nb, DType::F32, "quant").f32().data();
    const float* of = expect(get, "offset", nb, DType::F32, "quant").f32().data();
    parallel_chunks(nb, std::max<std::int64_t>(1, (1 << 16) / block_), [&](std::int64_t bb, std::int64_t be) {
      for (std::int64_t b = bb; b < be; ++b) {
        const std::int64_t i0 = b * block_, n = std::min(block_, d - i0);
        const std::uint8_t* src = pk + i0 * bits_ / 8;
        float* y = out.data() + i0;
        switch (bits_) {
          case 1: unpack_block<1>(src, n, of[b], sc[b], y); break;
          case 2: unpack_block<2>(src, n, of[b], sc[b], y); break;
          case 4: unpack_block<4>(src, n, of[b], sc[b], y); break;
          default: unpack_block<8>(src, n, of[b], sc[b], y); break;
        }
      }
    });
  }

 private:
  int bits_ = 8;
  std::int64_t block_ = 256;
  bool stochastic_ = false;
  bool sigma_ = false;
};

}  // namespace

std::unique_ptr<Stage> make_quant_stage(const StageSpec& s) {
  for (const auto& [key, value] : s.params)
    if (key == "range" && value == "templar") return make_quant_templar_stage(s);
  return std::make_unique<QuantStage>(s);
}

}  // namespace loco::compress
