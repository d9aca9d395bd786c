// DType metadata and element conversions; the 16-bit float paths are bit-exact RNE.
#include "loco/core/dtype.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "loco/core/error.hpp"

namespace loco {

std::size_t dtype_size(DType t) noexcept {
  switch (t) {
    case DType::F64:
    case DType::I64:
    case DType::U64: return 8;
    case DType::F32:
    case DType::I32:
    case DType::U32: return 4;
    case DType::F16:
    case DType::BF16:
    case DType::I16:
    case DType::U16: return 2;
    case DType::I8:
    case DType::U8:
    case DType::Bool: return 1;
  }
  return 0;
}

std::string_view dtype_name(DType t) noexcept {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    case DType::F64: return "float64";
    case DType::I8: return "int8";
    case DType::I16: return "int16";
    case DType::I32: return "int32";
    case DType::I64: return "int64";
    case DType::U8: return "uint8";
    case DType::U16: return "uint16";
    case DType::U32: return "uint32";
    case DType::U64: return "uint64";
    case DType::Bool: return "bool";
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view name) noexcept {
  struct Alias {
    std::string_view name;
    DType t;
  };
  static constexpr Alias aliases[] = {
      {"f32", DType::F32}, {"f16", DType::F16}, {"bf16", DType::BF16}, {"f64", DType::F64},   {"i8", DType::I8},
      {"i16", DType::I16}, {"i32", DType::I32}, {"i64", DType::I64},   {"u8", DType::U8},     {"u16", DType::U16},
      {"u32", DType::U32}, {"u64", DType::U64}, {"half", DType::F16},  {"float", DType::F32}, {"double", DType::F64}};
  for (DType t : kAllDTypes)
    if (dtype_name(t) == name) return t;
  for (const auto& a : aliases)
    if (a.name == name) return a.t;
  return std::nullopt;
}

bool is_floating(DType t) noexcept { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64; }

std::uint16_t float_to_half(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  std::uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u)  // infinity or NaN; keep a NaN's top payload bits and make it quiet
    return static_cast<std::uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? (0x200u | ((ax >> 13) & 0x3ffu)) : 0u));
  if (ax >= 0x477ff000u)  // at or above 65520, the midpoint past the largest half: rounds to infinity
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  if (ax >= 0x38800000u) {  // normal half: rebias the exponent and round the 13 dropped bits to even
    const std::uint32_t odd = (ax >> 13) & 1u;
    ax += 0xc8000fffu + odd;
    return static_cast<std::uint16_t>(sign | (ax >> 13));
  }
  // Subnormal or zero: adding 0.5 aligns the half's subnormal grid with float's last mantissa
  // bits, so the FPU's own round-to-nearest-even does the rounding.
  const float t = std::bit_cast<float>(ax) + 0.5f;
  return static_cast<std::uint16_t>(sign | (std::bit_cast<std::uint32_t>(t) - 0x3f000000u));
}

float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu;
  const std::uint32_t m = h & 0x3ffu;
  if (e == 0) {
    const float mag = static_cast<float>(m) * 5.9604644775390625e-8f;  // m · 2^-24, exact
    return std::bit_cast<float>(sign | std::bit_cast<std::uint32_t>(mag));
  }
  // Infinity, or a NaN made quiet (float's top mantissa bit) with its payload kept.
  if (e == 31) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13) | (m != 0 ? 0x400000u : 0u));
  return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}

std::uint16_t float_to_bfloat16(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float bfloat16_to_float(std::uint16_t b) noexcept {
  const std::uint32_t x = static_cast<std::uint32_t>(b) << 16;
  return std::bit_cast<float>((x & 0x7fffffffu) > 0x7f800000u ? x | 0x400000u : x);  // a NaN comes out quiet
}

namespace {

template <typename T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

double load_as_double(DType t, const std::byte* p) {
  switch (t) {
    case DType::F32: return load<float>(p);
    case DType::F16: return half_to_float(load<std::uint16_t>(p));
    case DType::BF16: return bfloat16_to_float(load<std::uint16_t>(p));
    case DType::F64: return load<double>(p);
    case DType::I8: return load<std::int8_t>(p);
    case DType::I16: return load<std::int16_t>(p);
    case DType::I32: return load<std::int32_t>(p);
    case DType::I64: return static_cast<double>(load<std::int64_t>(p));
    case DType::U8: return load<std::uint8_t>(p);
    case DType::U16: return load<std::uint16_t>(p);
    case DType::U32: return load<std::uint32_t>(p);
    case DType::U64: return static_cast<double>(load<std::uint64_t>(p));
    case DType::Bool: return load<std::uint8_t>(p) != 0 ? 1.0 : 0.0;
  }
  return 0;
}

template <typename I>
I saturate(double v) {
  if (std::isnan(v)) return 0;
  v = std::nearbyint(v);
  if (v <= static_cast<double>(std::numeric_limits<I>::lowest())) return std::numeric_limits<I>::lowest();
  if (v >= static_cast<double>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return static_cast<I>(v);
}

template <typename T>
void put(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

// float64 → float32 rounding to odd: truncate toward zero, then set the last bit when inexact.
// Rounding that float to a 16-bit float (≤ 11 significant bits, float has 24 ≥ 2·11+2) then gives
// the correctly rounded result, with no double rounding.
float round_to_odd_float(double v) {
  if (!std::isfinite(v)) return static_cast<float>(v);
  float f = static_cast<float>(v);
  if (std::fabs(static_cast<double>(f)) > std::fabs(v)) f = std::nextafter(f, 0.0f);
  if (static_cast<double>(f) != v) f = std::bit_cast<float>(std::bit_cast<std::uint32_t>(f) | 1u);
  return f;
}

void store_from_double(DType t, double v, std::byte* p) {
  switch (t) {
    case DType::F32: put(p, static_cast<float>(v)); break;
    case DType::F16: put(p, float_to_half(round_to_odd_float(v))); break;
    case DType::BF16: put(p, float_to_bfloat16(round_to_odd_float(v))); break;
    case DType::F64: put(p, v); break;
    case DType::I8: put(p, saturate<std::int8_t>(v)); break;
    case DType::I16: put(p, saturate<std::int16_t>(v)); break;
    case DType::I32: put(p, saturate<std::int32_t>(v)); break;
    case DType::I64: put(p, saturate<std::int64_t>(v)); break;
    case DType::U8: put(p, saturate<std::uint8_t>(v)); break;
    case DType::U16: put(p, saturate<std::uint16_t>(v)); break;
    case DType::U32: put(p, saturate<std::uint32_t>(v)); break;
    case DType::U64: put(p, saturate<std::uint64_t>(v)); break;
    case DType::Bool: put(p, static_cast<std::uint8_t>(v != 0 && !std::isnan(v))); break;
  }
}

bool is_integer(DType t) noexcept { return !is_floating(t); }

// Integers (and bool) widened exactly: int64 and uint64 both fit in 128 bits.
__extension__ typedef __int128 Wide;

Wide load_integer(DType t, const std::byte* p) {
  switch (t) {
    case DType::I8: return load<std::int8_t>(p);
    case DType::I16: return load<std::int16_t>(p);
    case DType::I32: return load<std::int32_t>(p);
    case DType::I64: return load<std::int64_t>(p);
    case DType::U8: return load<std::uint8_t>(p);
    case DType::U16: return load<std::uint16_t>(p);
    case DType::U32: return load<std::uint32_t>(p);
    case DType::U64: return load<std::uint64_t>(p);
    case DType::Bool: return load<std::uint8_t>(p) != 0 ? 1 : 0;
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::F64: break;
  }
  return 0;
}

template <typename I>
I saturate_integer(Wide v) {
  if (v < static_cast<Wide>(std::numeric_limits<I>::lowest())) return std::numeric_limits<I>::lowest();
  if (v > static_cast<Wide>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return static_cast<I>(v);
}

void store_integer(DType t, Wide v, std::byte* p) {
  switch (t) {
    case DType::I8: put(p, saturate_integer<std::int8_t>(v)); break;
    case DType::I16: put(p, saturate_integer<std::int16_t>(v)); break;
    case DType::I32: put(p, saturate_integer<std::int32_t>(v)); break;
    case DType::I64: put(p, saturate_integer<std::int64_t>(v)); break;
    case DType::U8: put(p, saturate_integer<std::uint8_t>(v)); break;
    case DType::U16: put(p, saturate_integer<std::uint16_t>(v)); break;
    case DType::U32: put(p, saturate_integer<std::uint32_t>(v)); break;
    case DType::U64: put(p, saturate_integer<std::uint64_t>(v)); break;
    case DType::Bool: put(p, static_cast<std::uint8_t>(v != 0)); break;
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::F64: break;
  }
}

// A 64-bit integer rounded to 53 bits by rounding to odd (truncate, then set the last bit when
// inexact). Rounding that double to float32 or a 16-bit float (≤ 24 bits, 53 ≥ 24 + 2) is then
// correctly rounded; rounding the integer to nearest double first could land on a tie.
double round_to_odd_double(Wide v) {
  const bool negative = v < 0;
  const auto magnitude = static_cast<std::uint64_t>(negative ? -v : v);  // ≤ 2^64 − 1
  double d;
  if (magnitude < (std::uint64_t{1} << 53)) {
    d = static_cast<double>(magnitude);
  } else {
    const int dropped = 64 - 53 - std::countl_zero(magnitude);
    std::uint64_t kept = magnitude >> dropped;
    if ((magnitude & ((std::uint64_t{1} << dropped) - 1)) != 0) kept |= 1u;
    d = std::ldexp(static_cast<double>(kept), dropped);
  }
  return negative ? -d : d;
}

}  // namespace

void convert_elements(DType from, const std::byte* src, DType to, std::byte* dst, std::size_t n) {
  if (from == to) {
    std::memcpy(dst, src, n * dtype_size(from));
    return;
  }
  // The hot paths (model weights): float32 to and from the 16-bit floats, element loops the
  // compiler vectorises.
  if (from == DType::F32 && (to == DType::F16 || to == DType::BF16)) {
    auto* out = reinterpret_cast<std::uint16_t*>(dst);
    for (std::size_t i = 0; i < n; ++i) {
      const float v = load<float>(src + 4 * i);
      out[i] = to == DType::F16 ? float_to_half(v) : float_to_bfloat16(v);
    }
    return;
  }
  if ((from == DType::F16 || from == DType::BF16) && to == DType::F32) {
    for (std::size_t i = 0; i < n; ++i) {
      const auto h = load<std::uint16_t>(src + 2 * i);
      put(dst + 4 * i, from == DType::F16 ? half_to_float(h) : bfloat16_to_float(h));
    }
    return;
  }
  const std::size_t is = dtype_size(from), os = dtype_size(to);
  // Integer to integer is exact (saturating): through float64 it would lose int64 values past 2^53.
  if (is_integer(from) && is_integer(to)) {
    for (std::size_t i = 0; i < n; ++i) store_integer(to, load_integer(from, src + i * is), dst + i * os);
    return;
  }
  // 64-bit integers to floats narrower than float64 go through a round-to-odd double, so they are
  // rounded once.
  if ((from == DType::I64 || from == DType::U64) && to != DType::F64) {
    for (std::size_t i = 0; i < n; ++i)
      store_from_double(to, round_to_odd_double(load_integer(from, src + i * is)), dst + i * os);
    return;
  }
  for (std::size_t i = 0; i < n; ++i) store_from_double(to, load_as_double(from, src + i * is), dst + i * os);
}

}  // namespace loco
