// In-memory datasets the readers produce and the partitioners and samplers index: labelled
// feature rows for classification, and byte-token streams for language modelling.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace loco::data {

// n labelled examples of d float features, row-major.
struct ClassificationData {
  std::int64_t n = 0;           // examples
  std::int64_t d = 0;           // features per example
  std::vector<float> x;         // n·d features, row i at x[i·d, (i+1)·d)
  std::vector<std::int32_t> y;  // n labels in [0, classes)
  std::int32_t classes = 0;     // number of classes
  std::string source;           // where the examples came from ("mnist-idx:<path>", "csv:<path>" ...)
  std::string preprocessing;    // what the reader did to the stored values ("x = pixel/255"), or ""
  // > 0 when every feature is k·byte_scale for an integer k in [0, 255] (MNIST: 1/255), so a writer
  // may store x as uint8 with this `scale` attribute without loss; 0 otherwise.
  float byte_scale = 0.0f;
  // The original label of each class, in class order, when the reader mapped labels to 0..C−1
  // (LibSVM, CSV with non-integer labels); empty when labels were used as they are.
  std::vector<std::string> label_names;

  std::span<const float> row(std::int64_t i) const { return {x.data() + i * d, static_cast<std::size_t>(d)}; }
};

// A stream of byte tokens (vocab 256) for next-byte prediction.
struct TokenData {
  std::vector<std::uint8_t> tokens;
  std::int32_t vocab = 256;
  std::string source;  // "bytes:<path>" or a description of the slice
};

// Checks the invariants above (sizes, labels in range, finite features); throws Error(BadInput)
// naming data.source and the first offending example.
void validate(const ClassificationData& data);

// The examples at the given indices, in that order (repeats allowed), with the metadata of data.
// Throws Error(Usage) when an index is outside [0, n).
ClassificationData select(const ClassificationData& data, std::span<const std::int64_t> indices);

// Number of examples of each class (length data.classes).
std::vector<std::int64_t> class_counts(std::span<const std::int32_t> labels, std::int32_t classes);

}  // namespace loco::data
