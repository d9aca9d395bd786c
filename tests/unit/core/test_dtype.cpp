// Tests of the dtype table and the element conversions: float16/bfloat16 round to nearest even
// checked bit by bit against an independent arithmetic reference, and saturating integer casts.
#include <boost/test/unit_test.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "loco/core/dtype.hpp"
#include "loco/core/tensor.hpp"

namespace {

using loco::DType;

std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }
float from_bits(std::uint32_t b) { return std::bit_cast<float>(b); }

// A binary floating format with `mant` fraction bits and exponent bias `bias` (1 sign bit).
struct Format {
  int mant;
  int bias;
  std::uint16_t inf() const { return static_cast<std::uint16_t>((2 * bias + 1) << mant); }
  bool is_nan(std::uint16_t h) const { return (h & 0x7fff) > inf(); }
  std::uint16_t quiet_bit() const { return static_cast<std::uint16_t>(1u << (mant - 1)); }
};
constexpr Format kHalf{10, 15};
constexpr Format kBf16{7, 127};

// The reference: rounds a non-NaN x to the format by scaling it so its last kept place is 1 and
// calling std::nearbyint (ties to even in the default rounding mode). Plain arithmetic on
// doubles; every step is exact except the one nearbyint.
std::uint16_t reference_round(double x, Format fmt) {
  const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(x);
  if (std::isinf(a)) return sign | fmt.inf();
  const int emin = 1 - fmt.bias;
  int e = 0;
  std::frexp(a, &e);  // a = f·2^e with f in [0.5, 1), so a's binade is 2^(e−1)
  int E = a == 0 ? emin : std::max(e - 1, emin);
  double r = std::nearbyint(std::ldexp(a, fmt.mant - E));
  const double one = std::ldexp(1.0, fmt.mant);  // the implicit leading bit at this scale
  if (r >= 2 * one) {                            // rounded up into the next binade
    r /= 2;
    ++E;
  }
  if (E > fmt.bias) return sign | fmt.inf();
  if (r < one) return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(r));  // subnormal or zero
  return static_cast<std::uint16_t>(sign | ((E + fmt.bias) << fmt.mant) | static_cast<std::uint16_t>(r - one));
}

// The reference decoding of a non-NaN 16-bit pattern.
double reference_value(std::uint16_t h, Format fmt) {
  const int e = (h & 0x7fff) >> fmt.mant;
  const int f = h & ((1 << fmt.mant) - 1);
  double v;
  if (e == 0) v = std::ldexp(f, 1 - fmt.bias - fmt.mant);
  else if (e == 2 * fmt.bias + 1) v = std::numeric_limits<double>::infinity();
  else v = std::ldexp(f + (1 << fmt.mant), e - fmt.bias - fmt.mant);
  return (h & 0x8000) ? -v : v;
}

std::uint16_t to16(float f, Format fmt) { return fmt.mant == 10 ? loco::float_to_half(f) : loco::float_to_bfloat16(f); }
float from16(std::uint16_t h, Format fmt) {
  return fmt.mant == 10 ? loco::half_to_float(h) : loco::bfloat16_to_float(h);
}

// One element through convert_elements.
template <typename To, typename From>
To convert_one(DType from, From v, DType to) {
  static_assert(sizeof(To) <= 8 && sizeof(From) <= 8);
  BOOST_REQUIRE_EQUAL(sizeof(From), loco::dtype_size(from));
  BOOST_REQUIRE_EQUAL(sizeof(To), loco::dtype_size(to));
  std::byte src[8], dst[8];
  std::memcpy(src, &v, sizeof v);
  loco::convert_elements(from, src, to, dst, 1);
  To out;
  std::memcpy(&out, dst, sizeof out);
  return out;
}
template <typename To, typename From>
To convert_one(From v) {
  return convert_one<To>(loco::dtype_of<From>(), v, loco::dtype_of<To>());
}

// An integer rounded to `p` significant bits, ties to even, in integer arithmetic; the result
// (at most p + 1 bits) is exact in a double.
double round_integer(std::uint64_t mag, int p) {
  const int width = 64 - std::countl_zero(mag);
  if (width <= p) return static_cast<double>(mag);
  const int shift = width - p;
  std::uint64_t q = mag >> shift;
  const std::uint64_t rem = mag & ((std::uint64_t{1} << shift) - 1), half = std::uint64_t{1} << (shift - 1);
  if (rem > half || (rem == half && (q & 1) != 0)) ++q;
  return std::ldexp(static_cast<double>(q), shift);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(dtype)

BOOST_AUTO_TEST_CASE(names_sizes_and_parsing) {
  std::set<std::string> names;
  for (DType t : loco::kAllDTypes) {
    const auto name = loco::dtype_name(t);
    BOOST_TEST_CONTEXT("dtype " << name) {
      BOOST_TEST(names.insert(std::string(name)).second);
      const auto parsed = loco::parse_dtype(name);
      BOOST_TEST_REQUIRE(parsed.has_value());
      BOOST_TEST((*parsed == t));
    }
  }
  BOOST_TEST(names.size() == 13u);
  BOOST_TEST(loco::dtype_name(DType::F32) == "float32");
  BOOST_TEST(loco::dtype_name(DType::BF16) == "bfloat16");
  BOOST_TEST(loco::dtype_name(DType::I64) == "int64");
  BOOST_TEST(loco::dtype_name(DType::Bool) == "bool");
  const std::pair<const char*, DType> aliases[] = {
      {"f32", DType::F32}, {"f16", DType::F16}, {"bf16", DType::BF16}, {"f64", DType::F64},   {"i8", DType::I8},
      {"i16", DType::I16}, {"i32", DType::I32}, {"i64", DType::I64},   {"u8", DType::U8},     {"u16", DType::U16},
      {"u32", DType::U32}, {"u64", DType::U64}, {"half", DType::F16},  {"float", DType::F32}, {"double", DType::F64}};
  for (const auto& [alias, t] : aliases) BOOST_TEST((loco::parse_dtype(alias) == t), alias);
  for (const char* bad : {"", "float8", "f128", "int", "uint128", "float32 ", "bfloat"})
    BOOST_TEST(!loco::parse_dtype(bad).has_value(), "'" << bad << "' must not parse");

  const std::pair<DType, std::size_t> sizes[] = {{DType::F32, 4}, {DType::F16, 2}, {DType::BF16, 2}, {DType::F64, 8},
                                                 {DType::I8, 1},  {DType::I16, 2}, {DType::I32, 4},  {DType::I64, 8},
                                                 {DType::U8, 1},  {DType::U16, 2}, {DType::U32, 4},  {DType::U64, 8},
                                                 {DType::Bool, 1}};
  for (const auto& [t, s] : sizes) BOOST_TEST(loco::dtype_size(t) == s, loco::dtype_name(t));
  for (DType t : loco::kAllDTypes)
    BOOST_TEST(loco::is_floating(t) == (t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64));
}

BOOST_AUTO_TEST_CASE(half_exact_values) {
  const std::pair<float, std::uint16_t> cases[] = {{0.0f, 0x0000},           {1.0f, 0x3c00},
                                                   {-2.0f, 0xc000},          {0.5f, 0x3800},
                                                   {1.5f, 0x3e00},           {65504.0f, 0x7bff},
                                                   {-65504.0f, 0xfbff},      {0x1p-14f, 0x0400},
                                                   {0x1p-24f, 0x0001},       {1023 * 0x1p-24f, 0x03ff},
                                                   {1 + 0x1p-10f, 0x3c01},   {2048.0f, 0x6800},
                                                   {0.333251953125f, 0x3555}};
  for (const auto& [f, h] : cases) {
    BOOST_TEST(loco::float_to_half(f) == h, "float_to_half(" << f << ")");
    BOOST_TEST(loco::half_to_float(h) == f, "half_to_float(" << std::hex << h << ")");
  }
  BOOST_TEST(loco::float_to_half(0.1f) == 0x2e66);  // 0.0999755859375, the nearer neighbour
}

BOOST_AUTO_TEST_CASE(bfloat16_exact_values) {
  const std::pair<float, std::uint16_t> cases[] = {{0.0f, 0x0000},      {1.0f, 0x3f80},      {-2.0f, 0xc000},
                                                   {0.5f, 0x3f00},      {1.5f, 0x3fc0},      {3.140625f, 0x4049},
                                                   {0x1p-126f, 0x0080}, {0x1p-133f, 0x0001}, {0x1p127f, 0x7f00}};
  for (const auto& [f, b] : cases) {
    BOOST_TEST(loco::float_to_bfloat16(f) == b, "float_to_bfloat16(" << f << ")");
    BOOST_TEST(loco::bfloat16_to_float(b) == f, "bfloat16_to_float(" << std::hex << b << ")");
  }
  BOOST_TEST(loco::float_to_bfloat16(3.14159265f) == 0x4049);  // π's bits past the 7th are below half
}

BOOST_AUTO_TEST_CASE(half_named_ties) {
  // Between 1 (0x3c00, even) and 1 + 2^-10 (0x3c01): the tie goes down to the even one.
  BOOST_TEST(loco::float_to_half(1 + 0x1p-11f) == 0x3c00);
  BOOST_TEST(loco::float_to_half(std::nextafter(1 + 0x1p-11f, 2.0f)) == 0x3c01);
  // Between 0x3c01 (odd) and 0x3c02 (even): the tie goes up.
  BOOST_TEST(loco::float_to_half(1 + 3 * 0x1p-11f) == 0x3c02);
  BOOST_TEST(loco::float_to_half(std::nextafter(1 + 3 * 0x1p-11f, 0.0f)) == 0x3c01);
  BOOST_TEST(loco::float_to_half(-(1 + 3 * 0x1p-11f)) == 0xbc02);
  // Integers past 2048 are spaced by 2: 2049 ties to 2048, 2051 to 2052.
  BOOST_TEST(loco::float_to_half(2049.0f) == 0x6800);
  BOOST_TEST(loco::float_to_half(2051.0f) == 0x6802);
}

BOOST_AUTO_TEST_CASE(bfloat16_named_ties) {
  BOOST_TEST(loco::float_to_bfloat16(1 + 0x1p-8f) == 0x3f80);      // tie, down to even
  BOOST_TEST(loco::float_to_bfloat16(1 + 3 * 0x1p-8f) == 0x3f82);  // tie, up to even
  BOOST_TEST(loco::float_to_bfloat16(std::nextafter(1 + 0x1p-8f, 2.0f)) == 0x3f81);
  BOOST_TEST(loco::float_to_bfloat16(std::nextafter(1 + 3 * 0x1p-8f, 0.0f)) == 0x3f81);
  BOOST_TEST(loco::float_to_bfloat16(-(1 + 3 * 0x1p-8f)) == 0xbf82);
  // Overflow: the largest bfloat16 is 2^128 − 2^120; from the midpoint 2^128 − 2^119 up it is infinity.
  BOOST_TEST(loco::float_to_bfloat16(from_bits(0x7f7f7fffu)) == 0x7f7f);
  BOOST_TEST(loco::float_to_bfloat16(from_bits(0x7f7f8000u)) == 0x7f80);
  BOOST_TEST(loco::float_to_bfloat16(std::numeric_limits<float>::max()) == 0x7f80);
  BOOST_TEST(loco::float_to_bfloat16(-std::numeric_limits<float>::max()) == 0xff80);
  // Float subnormals round onto bfloat16's subnormal grid (spacing 2^-133).
  BOOST_TEST(loco::float_to_bfloat16(0x1p-134f) == 0x0000);
  BOOST_TEST(loco::float_to_bfloat16(3 * 0x1p-134f) == 0x0002);
  BOOST_TEST(loco::float_to_bfloat16(0x1p-149f) == 0x0000);
}

// Every midpoint between two adjacent finite 16-bit values, of both signs: the tie goes to the
// even pattern, one float ulp either side goes to the nearer neighbour.
BOOST_AUTO_TEST_CASE(all_ties_round_to_even) {
  for (const Format fmt : {kHalf, kBf16}) {
    const std::uint16_t last = static_cast<std::uint16_t>(fmt.inf() - 1);  // largest finite pattern
    int failures = 0;
    for (std::uint32_t h = 0; h < last && failures < 10; ++h) {
      const float lo = from16(static_cast<std::uint16_t>(h), fmt), hi = from16(static_cast<std::uint16_t>(h + 1), fmt);
      // Exact in float: neighbours' midpoint needs at most 12 significant bits, and computed in
      // double it cannot overflow next to bfloat16's largest value.
      const double exact_mid = (static_cast<double>(lo) + static_cast<double>(hi)) / 2;
      const auto mid = static_cast<float>(exact_mid);
      BOOST_REQUIRE_MESSAGE(static_cast<double>(mid) == exact_mid, "midpoint above " << std::hex << h);
      const auto even = static_cast<std::uint16_t>(h % 2 == 0 ? h : h + 1);
      const auto below = to16(std::nextafter(mid, 0.0f), fmt), above = to16(std::nextafter(mid, INFINITY), fmt);
      const bool ok = to16(mid, fmt) == even && below == h && above == h + 1 && to16(-mid, fmt) == (0x8000 | even) &&
                      to16(-std::nextafter(mid, INFINITY), fmt) == (0x8000 | (h + 1));
      if (!ok) {
        ++failures;
        BOOST_ERROR("tie between patterns " << std::hex << h << " and " << h + 1 << " (mant " << std::dec << fmt.mant
                                            << "): got " << std::hex << to16(mid, fmt) << ", below " << below
                                            << ", above " << above);
      }
    }
    BOOST_TEST(failures == 0);
  }
}

BOOST_AUTO_TEST_CASE(half_overflow_boundary) {
  BOOST_TEST(loco::float_to_half(65504.0f) == 0x7bff);
  BOOST_TEST(loco::float_to_half(65519.99f) == 0x7bff);
  BOOST_TEST(loco::float_to_half(std::nextafter(65520.0f, 0.0f)) == 0x7bff);
  BOOST_TEST(loco::float_to_half(65520.0f) == 0x7c00);  // the tie past the largest half: to infinity
  BOOST_TEST(loco::float_to_half(-65520.0f) == 0xfc00);
  BOOST_TEST(loco::float_to_half(-65519.99f) == 0xfbff);
  BOOST_TEST(loco::float_to_half(65536.0f) == 0x7c00);
  BOOST_TEST(loco::float_to_half(1e10f) == 0x7c00);
  BOOST_TEST(loco::float_to_half(std::numeric_limits<float>::max()) == 0x7c00);
  BOOST_TEST(loco::float_to_half(-std::numeric_limits<float>::max()) == 0xfc00);
}

BOOST_AUTO_TEST_CASE(half_subnormals) {
  BOOST_TEST(loco::float_to_half(0x1p-24f) == 0x0001);                               // smallest subnormal
  BOOST_TEST(loco::float_to_half(0x1p-25f) == 0x0000);                               // half of it: tie to even 0
  BOOST_TEST(loco::float_to_half(-0x1p-25f) == 0x8000);                              // … keeping the sign
  BOOST_TEST(loco::float_to_half(std::nextafter(0x1p-25f, 1.0f)) == 0x0001);         // just above the tie
  BOOST_TEST(loco::float_to_half(3 * 0x1p-25f) == 0x0002);                           // tie between 1 and 2 → 2
  BOOST_TEST(loco::float_to_half(5 * 0x1p-25f) == 0x0002);                           // tie between 2 and 3 → 2
  BOOST_TEST(loco::float_to_half(2047 * 0x1p-25f) == 0x0400);                        // tie between 0x3ff and 0x400
  BOOST_TEST(loco::float_to_half(std::nextafter(2047 * 0x1p-25f, 0.0f)) == 0x03ff);  //
  BOOST_TEST(loco::float_to_half(0x1p-149f) == 0x0000);                              // float subnormals vanish
  BOOST_TEST(loco::float_to_half(0x1p-126f) == 0x0000);
  BOOST_TEST(loco::half_to_float(0x0001) == 0x1p-24f);
  BOOST_TEST(loco::half_to_float(0x8001) == -0x1p-24f);
  BOOST_TEST(loco::half_to_float(0x03ff) == 1023 * 0x1p-24f);
}

BOOST_AUTO_TEST_CASE(signed_zero_and_infinities) {
  for (const Format fmt : {kHalf, kBf16}) {
    BOOST_TEST(to16(-0.0f, fmt) == 0x8000);
    BOOST_TEST(to16(0.0f, fmt) == 0x0000);
    const float nz = from16(0x8000, fmt);
    BOOST_TEST(nz == 0.0f);
    BOOST_TEST(std::signbit(nz));
    BOOST_TEST(to16(INFINITY, fmt) == fmt.inf());
    BOOST_TEST(to16(-INFINITY, fmt) == (0x8000 | fmt.inf()));
    BOOST_TEST(from16(fmt.inf(), fmt) == INFINITY);
    BOOST_TEST(from16(static_cast<std::uint16_t>(0x8000 | fmt.inf()), fmt) == -INFINITY);
  }
}

BOOST_AUTO_TEST_CASE(nan_stays_nan_and_quiet) {
  // float → 16 bits: quiet and signalling NaNs of both signs, payloads in high and low bits.
  for (const std::uint32_t nan : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fa00000u, 0x7fbfffffu,
                                  0x7fffffffu, 0x7f810000u, 0xff802000u}) {
    for (const Format fmt : {kHalf, kBf16}) {
      const std::uint16_t h = to16(from_bits(nan), fmt);
      BOOST_TEST(fmt.is_nan(h), std::hex << nan << " → " << h);
      BOOST_TEST((h & fmt.quiet_bit()) != 0, std::hex << nan << " → " << h << " is not quiet");
      BOOST_TEST(((h & 0x8000) != 0) == ((nan & 0x80000000u) != 0), "sign of " << std::hex << nan);
    }
  }
  // 16 bits → float: every NaN pattern, signalling ones included, comes out a quiet NaN.
  for (const Format fmt : {kHalf, kBf16}) {
    int nans = 0;
    for (std::uint32_t h = 0; h < 0x10000; ++h) {
      if (!fmt.is_nan(static_cast<std::uint16_t>(h))) continue;
      ++nans;
      const float f = from16(static_cast<std::uint16_t>(h), fmt);
      if (!std::isnan(f) || (bits(f) & 0x400000u) == 0 || std::signbit(f) != ((h & 0x8000) != 0)) {
        BOOST_ERROR("pattern " << std::hex << h << " → float " << bits(f));
        break;
      }
    }
    BOOST_TEST(nans == 2 * ((1 << fmt.mant) - 1));
  }
}

// Every one of the 65536 patterns: decoding gives the reference value, and encoding that float
// gives the pattern back (a NaN gives some NaN).
BOOST_AUTO_TEST_CASE(exhaustive_round_trip) {
  for (const Format fmt : {kHalf, kBf16}) {
    int failures = 0;
    for (std::uint32_t i = 0; i < 0x10000 && failures < 10; ++i) {
      const auto h = static_cast<std::uint16_t>(i);
      const float f = from16(h, fmt);
      const std::uint16_t back = to16(f, fmt);
      bool ok;
      if (fmt.is_nan(h)) ok = std::isnan(f) && fmt.is_nan(back);
      else
        ok = static_cast<double>(f) == reference_value(h, fmt) && std::signbit(f) == ((h & 0x8000) != 0) && back == h;
      if (!ok) {
        ++failures;
        BOOST_ERROR("pattern " << std::hex << h << " (mant " << std::dec << fmt.mant << ") decodes to " << f
                               << ", encodes back to " << std::hex << back);
      }
    }
    BOOST_TEST(failures == 0);
  }
}

BOOST_AUTO_TEST_CASE(randomized_against_reference) {
  std::mt19937_64 gen(20240611);
  int failures = 0;
  auto check = [&](float f) {
    for (const Format fmt : {kHalf, kBf16}) {
      const std::uint16_t got = to16(f, fmt);
      const bool ok = std::isnan(f) ? fmt.is_nan(got) : got == reference_round(f, fmt);
      if (!ok && ++failures <= 10)
        BOOST_ERROR("float " << std::hex << bits(f) << " (mant " << std::dec << fmt.mant << "): got " << std::hex << got
                             << ", reference " << (std::isnan(f) ? 0 : reference_round(f, fmt)));
    }
  };
  // Any bit pattern: mostly outside half's range, which exercises overflow and flush paths.
  for (int i = 0; i < (1 << 21); ++i) check(from_bits(static_cast<std::uint32_t>(gen())));
  // Exponents from 2^-27 to 2^16: half's subnormals, normals and overflow edge.
  for (int i = 0; i < (1 << 21); ++i) {
    const std::uint64_t r = gen();
    const auto exponent = static_cast<std::uint32_t>(127 - 27 + (r >> 32) % 44);
    check(from_bits(static_cast<std::uint32_t>(r & 0x807fffffu) | (exponent << 23)));
  }
  // Floats a few ulps from a 16-bit tie, where truncation bugs hide.
  for (int i = 0; i < (1 << 20); ++i) {
    const std::uint64_t r = gen();
    const auto exponent = static_cast<std::uint32_t>(127 - 27 + (r >> 40) % 44);
    const std::uint32_t base = (static_cast<std::uint32_t>(r) & 0x807fe000u) | 0x1000u | (exponent << 23);
    check(from_bits(base + static_cast<std::uint32_t>((r >> 32) % 7) - 3));
  }
  BOOST_TEST(failures == 0);
}

// The float32 fast path and the general path agree with float_to_half element by element.
BOOST_AUTO_TEST_CASE(array_conversions_match_scalar) {
  std::mt19937_64 gen(7);
  std::vector<float> src(1003);
  for (auto& v : src) v = from_bits(static_cast<std::uint32_t>(gen()) & 0xbfffffffu);  // keeps values ≤ 4
  std::vector<std::uint16_t> half(src.size()), bf(src.size());
  loco::convert_elements(DType::F32, reinterpret_cast<const std::byte*>(src.data()), DType::F16,
                         reinterpret_cast<std::byte*>(half.data()), src.size());
  loco::convert_elements(DType::F32, reinterpret_cast<const std::byte*>(src.data()), DType::BF16,
                         reinterpret_cast<std::byte*>(bf.data()), src.size());
  std::vector<float> back(src.size());
  loco::convert_elements(DType::F16, reinterpret_cast<const std::byte*>(half.data()), DType::F32,
                         reinterpret_cast<std::byte*>(back.data()), src.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    BOOST_TEST_REQUIRE(half[i] == loco::float_to_half(src[i]), "element " << i);
    BOOST_TEST_REQUIRE(bf[i] == loco::float_to_bfloat16(src[i]), "element " << i);
    BOOST_TEST_REQUIRE(bits(back[i]) == bits(loco::half_to_float(half[i])), "element " << i);
  }
  // Same dtype is a copy; zero elements touch nothing.
  std::vector<float> copy(src.size());
  loco::convert_elements(DType::F32, reinterpret_cast<const std::byte*>(src.data()), DType::F32,
                         reinterpret_cast<std::byte*>(copy.data()), src.size());
  BOOST_TEST(std::memcmp(copy.data(), src.data(), src.size() * 4) == 0);
  loco::convert_elements(DType::F64, nullptr, DType::F16, nullptr, 0);
}

// Between the two 16-bit formats every value rounds once (through float64, exact here).
BOOST_AUTO_TEST_CASE(half_and_bfloat16_cross_conversion) {
  for (const auto& [from, to, ffrom, fto] :
       {std::tuple{DType::F16, DType::BF16, kHalf, kBf16}, std::tuple{DType::BF16, DType::F16, kBf16, kHalf}}) {
    int failures = 0;
    for (std::uint32_t i = 0; i < 0x10000; ++i) {
      const auto h = static_cast<std::uint16_t>(i);
      const auto got = convert_one<std::uint16_t>(from, h, to);
      const bool ok = ffrom.is_nan(h) ? fto.is_nan(got) : got == reference_round(reference_value(h, ffrom), fto);
      if (!ok && ++failures <= 10) BOOST_ERROR(std::hex << h << " → " << got);
    }
    BOOST_TEST(failures == 0);
  }
}

// float64 → 16 bits must round once: a double just past a 16-bit tie would round onto the tie
// in float32, and then to even, the wrong way.
BOOST_AUTO_TEST_CASE(float64_no_double_rounding) {
  const double above_tie = 1 + 0x1p-11 + 0x1p-40;  // float32 rounds this to 1 + 2^-11, a half tie
  BOOST_REQUIRE(static_cast<float>(above_tie) == 1 + 0x1p-11f);
  BOOST_TEST(convert_one<std::uint16_t>(DType::F64, above_tie, DType::F16) == 0x3c01);
  BOOST_TEST(convert_one<std::uint16_t>(DType::F64, -above_tie, DType::F16) == 0xbc01);
  const double below_tie = 1 + 3 * 0x1p-11 - 0x1p-40;  // just under the tie that goes up to 0x3c02
  BOOST_TEST(convert_one<std::uint16_t>(DType::F64, below_tie, DType::F16) == 0x3c01);
  BOOST_TEST(convert_one<std::uint16_t>(DType::F64, 1 + 0x1p-11, DType::F16) == 0x3c00);  // the tie itself
  BOOST_TEST(convert_one<std::uint16_t>(DType::F64, 0x1p-25 + 0x1p-60, DType::F16) == 0x0001);
  BOOST_TEST(convert_one<std::uint16_t>(DType::F64, 0x1p-25, DType::F16) == 0x0000);
  BOOST_TEST(convert_one<std::uint16_t>(DType::F64, 65520.0 - 0x1p-30, DType::F16) == 0x7bff);
  BOOST_TEST(convert_one<std::uint16_t>(DType::F64, 65520.0, DType::F16) == 0x7c00);
  BOOST_TEST(convert_one<std::uint16_t>(DType::F64, 1e300, DType::F16) == 0x7c00);
  BOOST_TEST(convert_one<std::uint16_t>(DType::F64, -1e300, DType::BF16) == 0xff80);
  BOOST_TEST(convert_one<std::uint16_t>(DType::F64, 1e-300, DType::F16) == 0x0000);
  BOOST_TEST(convert_one<std::uint16_t>(DType::F64, 1 + 0x1p-8 + 0x1p-40, DType::BF16) == 0x3f81);
  BOOST_TEST(convert_one<std::uint16_t>(DType::F64, 1 + 3 * 0x1p-8 - 0x1p-40, DType::BF16) == 0x3f81);
  BOOST_TEST(loco::parse_dtype("f16").has_value());
  BOOST_TEST(std::isnan(loco::half_to_float(convert_one<std::uint16_t>(DType::F64, std::nan(""), DType::F16))));

  // Random doubles within 2^-30 (relative) of a 16-bit tie, both sides, against the reference.
  std::mt19937_64 gen(99);
  int failures = 0;
  for (int i = 0; i < (1 << 18); ++i) {
    for (const auto& [t, fmt] : {std::pair{DType::F16, kHalf}, std::pair{DType::BF16, kBf16}}) {
      const auto h = static_cast<std::uint16_t>(gen() % (fmt.inf() - 1));
      const double mid = (reference_value(h, fmt) + reference_value(static_cast<std::uint16_t>(h + 1), fmt)) / 2;
      const double offset = mid * 0x1p-30 * std::ldexp(static_cast<double>(gen() >> 11), -53) * (gen() % 2 ? 1 : -1);
      const double d = (gen() % 2 ? 1 : -1) * (mid + offset);
      const auto got = convert_one<std::uint16_t>(DType::F64, d, t);
      if (got != reference_round(d, fmt) && ++failures <= 10)
        BOOST_ERROR(dtype_name(t) << " of " << std::hexfloat << d << ": got " << std::hex << got << ", reference "
                                  << reference_round(d, fmt));
    }
  }
  BOOST_TEST(failures == 0);
}

BOOST_AUTO_TEST_CASE(float_to_integer_rounds_and_saturates) {
  const std::pair<float, std::int8_t> i8[] = {{127.4f, 127}, {127.5f, 127},   {126.5f, 126},     {-128.5f, -128},
                                              {300.0f, 127}, {-300.0f, -128}, {2.5f, 2},         {3.5f, 4},
                                              {-2.5f, -2},   {-0.5f, 0},      {0.5f, 0},         {1.5f, 2},
                                              {-1.6f, -2},   {INFINITY, 127}, {-INFINITY, -128}, {NAN, 0}};
  for (const auto& [v, want] : i8) BOOST_TEST(convert_one<std::int8_t>(v) == want, "int8 of " << v);
  const std::pair<float, std::uint8_t> u8[] = {{-1.0f, 0},    {-0.5f, 0},   {255.4f, 255}, {255.5f, 255},
                                               {254.5f, 254}, {1e10f, 255}, {NAN, 0},      {0.5f, 0}};
  for (const auto& [v, want] : u8) BOOST_TEST(convert_one<std::uint8_t>(v) == want, "uint8 of " << v);

  constexpr auto i32max = std::numeric_limits<std::int32_t>::max(), i32min = std::numeric_limits<std::int32_t>::min();
  BOOST_TEST(convert_one<std::int32_t>(2147483646.5) == 2147483646);
  BOOST_TEST(convert_one<std::int32_t>(2147483647.5) == i32max);
  BOOST_TEST(convert_one<std::int32_t>(-2147483648.5) == i32min);
  BOOST_TEST(convert_one<std::int32_t>(3e9) == i32max);
  BOOST_TEST(convert_one<std::int32_t>(-3e9) == i32min);
  BOOST_TEST(convert_one<std::uint32_t>(4294967295.4) == 4294967295u);
  BOOST_TEST(convert_one<std::uint16_t>(-7.0f) == 0);

  constexpr auto i64max = std::numeric_limits<std::int64_t>::max(), i64min = std::numeric_limits<std::int64_t>::min();
  constexpr auto u64max = std::numeric_limits<std::uint64_t>::max();
  BOOST_TEST(convert_one<std::int64_t>(0x1p63) == i64max);
  BOOST_TEST(convert_one<std::int64_t>(9.3e18) == i64max);
  BOOST_TEST(convert_one<std::int64_t>(-0x1p63) == i64min);
  BOOST_TEST(convert_one<std::int64_t>(-1e19) == i64min);
  BOOST_TEST(convert_one<std::int64_t>(std::nextafter(0x1p63, 0.0)) == 9223372036854774784);
  BOOST_TEST(convert_one<std::int64_t>(0x1p53 + 2) == 9007199254740994);
  BOOST_TEST(convert_one<std::uint64_t>(0x1p64) == u64max);
  BOOST_TEST(convert_one<std::uint64_t>(std::nextafter(0x1p64, 0.0)) == 18446744073709549568u);
  BOOST_TEST(convert_one<std::uint64_t>(-5.0) == 0u);
  BOOST_TEST(convert_one<std::uint64_t>(std::nan("")) == 0u);

  // 16-bit sources: 1.5 → 2, 2.5 → 2 (ties to even); bfloat16 65536.
  BOOST_TEST(convert_one<std::int16_t>(DType::F16, std::uint16_t{0x3e00}, DType::I16) == 2);
  BOOST_TEST(convert_one<std::int16_t>(DType::F16, std::uint16_t{0x4100}, DType::I16) == 2);
  BOOST_TEST(convert_one<std::int16_t>(DType::F16, std::uint16_t{0x7c00}, DType::I16) == 32767);
  BOOST_TEST(convert_one<std::int32_t>(DType::BF16, std::uint16_t{0x4780}, DType::I32) == 65536);
}

BOOST_AUTO_TEST_CASE(bool_conversions) {
  const std::pair<float, std::uint8_t> cases[] = {{0.0f, 0},  {-0.0f, 0}, {0.5f, 1},
                                                  {-3.0f, 1}, {NAN, 0},   {INFINITY, 1}};
  for (const auto& [v, want] : cases) BOOST_TEST(convert_one<std::uint8_t>(DType::F32, v, DType::Bool) == want, v);
  BOOST_TEST(convert_one<float>(DType::Bool, std::uint8_t{2}, DType::F32) == 1.0f);
  BOOST_TEST(convert_one<float>(DType::Bool, std::uint8_t{0}, DType::F32) == 0.0f);
  BOOST_TEST(convert_one<std::int32_t>(DType::Bool, std::uint8_t{7}, DType::I32) == 1);
  BOOST_TEST(convert_one<std::uint8_t>(DType::I64, std::int64_t{-5}, DType::Bool) == 1);
  BOOST_TEST(convert_one<std::uint8_t>(DType::U64, std::uint64_t{1} << 40, DType::Bool) == 1);
  BOOST_TEST(convert_one<std::uint8_t>(DType::I32, std::int32_t{0}, DType::Bool) == 0);
}

// Integer to integer is exact where the value fits and saturates where it does not, including
// int64 values that float64 cannot hold.
BOOST_AUTO_TEST_CASE(integer_to_integer_is_exact) {
  constexpr std::int64_t big = (std::int64_t{1} << 53) + 1;
  constexpr auto i64max = std::numeric_limits<std::int64_t>::max(), i64min = std::numeric_limits<std::int64_t>::min();
  constexpr auto u64max = std::numeric_limits<std::uint64_t>::max();
  BOOST_TEST(convert_one<std::uint64_t>(big) == static_cast<std::uint64_t>(big));
  BOOST_TEST(convert_one<std::uint64_t>(i64max) == static_cast<std::uint64_t>(i64max));
  BOOST_TEST(convert_one<std::int64_t>(u64max) == i64max);
  BOOST_TEST(convert_one<std::int64_t>(std::uint64_t{1} << 63) == i64max);
  BOOST_TEST(convert_one<std::int64_t>((std::uint64_t{1} << 63) - 1) == i64max);
  BOOST_TEST(convert_one<std::int64_t>(u64max - 3) == i64max);
  BOOST_TEST(convert_one<std::uint64_t>(std::int64_t{-1}) == 0u);
  BOOST_TEST(convert_one<std::uint64_t>(i64min) == 0u);
  BOOST_TEST(convert_one<std::int8_t>(i64min) == -128);
  BOOST_TEST(convert_one<std::int8_t>(i64max) == 127);
  BOOST_TEST(convert_one<std::uint8_t>(std::int32_t{-5}) == 0);
  BOOST_TEST(convert_one<std::int8_t>(std::uint8_t{200}) == 127);
  BOOST_TEST(convert_one<std::int32_t>(std::uint32_t{4000000000u}) == std::numeric_limits<std::int32_t>::max());
  BOOST_TEST(convert_one<std::int8_t>(std::int16_t{-300}) == -128);
  BOOST_TEST(convert_one<std::int16_t>(std::uint16_t{65535}) == 32767);
  BOOST_TEST(convert_one<std::int64_t>(std::int8_t{-1}) == -1);
  BOOST_TEST(convert_one<std::uint32_t>(std::uint64_t{4294967295u}) == 4294967295u);
  BOOST_TEST(convert_one<std::uint32_t>(std::uint64_t{4294967296u}) == 4294967295u);
  BOOST_TEST(convert_one<std::int32_t>(std::int64_t{-2147483649}) == std::numeric_limits<std::int32_t>::min());
  BOOST_TEST(convert_one<std::int32_t>(std::int64_t{-2147483648}) == std::numeric_limits<std::int32_t>::min());
}

BOOST_AUTO_TEST_CASE(integer_to_float_rounds_once) {
  BOOST_TEST(convert_one<float>(std::int32_t{16777217}) == 16777216.0f);  // tie, down to even
  BOOST_TEST(convert_one<float>(std::int32_t{16777219}) == 16777220.0f);  // tie, up to even
  BOOST_TEST(convert_one<std::uint16_t>(DType::I32, std::int32_t{2049}, DType::F16) == 0x6800);
  BOOST_TEST(convert_one<std::uint16_t>(DType::I32, std::int32_t{2051}, DType::F16) == 0x6802);
  BOOST_TEST(convert_one<std::uint16_t>(DType::I32, std::int32_t{65519}, DType::F16) == 0x7bff);
  BOOST_TEST(convert_one<std::uint16_t>(DType::I32, std::int32_t{65520}, DType::F16) == 0x7c00);
  BOOST_TEST(convert_one<std::uint16_t>(DType::I32, std::int32_t{-65520}, DType::F16) == 0xfc00);
  BOOST_TEST(convert_one<std::uint16_t>(DType::U64, std::numeric_limits<std::uint64_t>::max(), DType::F16) == 0x7c00);
  BOOST_TEST(convert_one<double>((std::int64_t{1} << 53) + 1) == 0x1p53);
  BOOST_TEST(convert_one<double>((std::int64_t{1} << 53) + 3) == 0x1p53 + 4);
  BOOST_TEST(convert_one<double>(std::numeric_limits<std::uint64_t>::max()) == 0x1p64);
  BOOST_TEST(convert_one<float>(std::numeric_limits<std::int64_t>::min()) == -0x1p63f);
  // 2^62 + 2^38 + 1 is just above a float32 tie; rounding to float64 first would land on the tie.
  const std::int64_t above = (std::int64_t{1} << 62) + (std::int64_t{1} << 38) + 1;
  BOOST_TEST(convert_one<float>(above) == 0x1p62f + 0x1p39f);
  BOOST_TEST(convert_one<float>(-above) == -(0x1p62f + 0x1p39f));
  const std::uint64_t uabove = (std::uint64_t{1} << 63) + (std::uint64_t{1} << 39) + 1;
  BOOST_TEST(convert_one<float>(uabove) == 0x1p63f + 0x1p40f);
  const std::int64_t bf_above = (std::int64_t{1} << 62) + (std::int64_t{1} << 54) + 1;
  BOOST_TEST(convert_one<std::uint16_t>(DType::I64, bf_above, DType::BF16) ==
             loco::float_to_bfloat16(0x1p62f + 0x1p55f));

  // The compiler's int64/uint64 → float conversions are correctly rounded: use them as reference.
  std::mt19937_64 gen(3);
  int failures = 0;
  for (int i = 0; i < (1 << 18); ++i) {
    std::uint64_t r = gen();
    r >>= gen() % 64;
    if (i % 2 == 1) {  // every other one within 1 of a tie for 8 or 24 significant bits
      const int p = gen() % 2 ? 8 : 24, shift = 10 + static_cast<int>(gen() % (64 - p - 10));
      const std::uint64_t q = (std::uint64_t{1} << (p - 1)) | (gen() >> (65 - p));
      r = (q << shift) + (std::uint64_t{1} << (shift - 1)) + gen() % 3 - 1;
    }
    const auto s = static_cast<std::int64_t>(gen() % 2 ? r : ~r);
    if (bits(convert_one<float>(s)) != bits(static_cast<float>(s)) && ++failures <= 10) BOOST_ERROR("int64 " << s);
    if (bits(convert_one<float>(r)) != bits(static_cast<float>(r)) && ++failures <= 10) BOOST_ERROR("uint64 " << r);
    if (convert_one<double>(s) != static_cast<double>(s) && ++failures <= 10) BOOST_ERROR("int64 " << s << " to f64");
    const std::uint64_t mag = s < 0 ? 0 - static_cast<std::uint64_t>(s) : static_cast<std::uint64_t>(s);
    const double want = (s < 0 ? -1 : 1) * round_integer(mag, 8);
    const auto got = convert_one<std::uint16_t>(DType::I64, s, DType::BF16);
    if (got != loco::float_to_bfloat16(static_cast<float>(want)) && ++failures <= 10)
      BOOST_ERROR("int64 " << s << " to bfloat16: got " << std::hex << got);
  }
  BOOST_TEST(failures == 0);
}

BOOST_AUTO_TEST_SUITE_END()
