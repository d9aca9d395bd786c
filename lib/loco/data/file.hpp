// Data files: a shard of labelled feature rows or of tokens read from a loco file of kind data
// (man 5 loco-format).
#pragma once

#include <cstdint>
#include <string>

#include "loco/core/attributes.hpp"
#include "loco/data/dataset.hpp"

namespace loco::data {

struct DataFile {
  std::string path;
  bool tokens = false;
  ClassificationData rows;  // when !tokens: x as float32 (uint8 storage scaled by `scale`)
  TokenData stream;         // when tokens
  Attributes attributes;
  std::int64_t examples() const { return tokens ? static_cast<std::int64_t>(stream.tokens.size()) : rows.n; }
};

// Reads /data/x + /data/y or /data/tokens. Throws Error(BadInput) naming the file for a missing
// or malformed dataset, labels outside [0, classes), non-finite features.
DataFile read_data(const std::string& path);

}  // namespace loco::data
