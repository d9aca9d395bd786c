// Root attributes in formats whose metadata are strings only (safetensors' __metadata__): how
// loco writes their types there and reads them back, so that every attribute of a loco file
// survives .h5 → .safetensors → .h5 with its type, and a file a PyTorch user writes by hand
// (kind=delta, round=3, ...) is read with the types loco's tools expect (man 5 loco-format).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loco/core/attributes.hpp"

namespace loco::io {

// The metadata entry that records the types of the non-string attributes: a JSON object
// {"round": "int64", "loss_first": "float64", "dims": "int64[]", ...}.
inline constexpr std::string_view kAttributeTypesKey = "loco_attribute_types";

// root as (name, text) pairs: integers in decimal, reals as the shortest text that reads back to
// the same double ("0.1", "1e-05", "inf", "nan"), arrays as JSON arrays; plus kAttributeTypesKey
// when any value is not a string. Throws Error(Usage) when root itself holds kAttributeTypesKey.
std::vector<std::pair<std::string, std::string>> attributes_to_metadata(const Attributes& root);

// The inverse, for the string attributes of file: each attribute named in kAttributeTypesKey
// takes that type; otherwise loco's documented numeric attributes (round, step, worker, samples,
// shard, shards, inner_steps, fragment, fragments, overlap: int64; loss_first, loss_last,
// loss_mean, lr: float64) take theirs; every other attribute stays a string. Throws
// Error(BadInput) naming the file and the attribute when a text does not read as its type, or
// when kAttributeTypesKey is not a JSON object of known type names.
Attributes attributes_from_metadata(const Attributes& strings, const std::string& file);

}  // namespace loco::io
