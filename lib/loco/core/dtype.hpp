// Element types of stored tensors and the float16/bfloat16 conversions (round to nearest even).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace loco {

// Element types a tensor can be stored in. Computation is float32; the rest are storage.
enum class DType : std::uint8_t { F32, F16, BF16, F64, I8, I16, I32, I64, U8, U16, U32, U64, Bool };

inline constexpr DType kAllDTypes[] = {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I8,
                                       DType::I16, DType::I32, DType::I64,  DType::U8,  DType::U16,
                                       DType::U32, DType::U64, DType::Bool};

// Bytes per element.
std::size_t dtype_size(DType t) noexcept;
// Canonical name: "float32", "bfloat16", "int64", "bool", ...
std::string_view dtype_name(DType t) noexcept;
// Parses a canonical name or a short form ("f32", "f16", "bf16", "f64", "i32", "u8", ...).
std::optional<DType> parse_dtype(std::string_view name) noexcept;
bool is_floating(DType t) noexcept;

// IEEE binary16 and bfloat16 conversions. float→16-bit rounds to nearest, ties to even;
// overflow gives ±infinity, NaN stays NaN (quieted), subnormals are exact where representable.
std::uint16_t float_to_half(float f) noexcept;
float half_to_float(std::uint16_t h) noexcept;
std::uint16_t float_to_bfloat16(float f) noexcept;
float bfloat16_to_float(std::uint16_t b) noexcept;

// Converts n elements between any two dtypes, rounding each value once (to nearest, ties to even).
// Conversions to integer types round to nearest and saturate (integer to integer is exact within
// range); NaN becomes 0. Bool is 0/1.
void convert_elements(DType from, const std::byte* src, DType to, std::byte* dst, std::size_t n);

}  // namespace loco
