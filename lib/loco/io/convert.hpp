// Conversion between tensor file formats (loco HDF5 ↔ safetensors), tensor by tensor in row
// blocks: memory is bounded by the block size, not by the file or the largest tensor.
#pragma once

#include <optional>
#include <string>

#include "loco/core/dtype.hpp"

namespace loco::io {

struct ConvertOptions {
  // Store floating-point tensors in this dtype (integer and bool tensors are kept as they are).
  std::optional<DType> dtype;
  // Bytes per block copied at a time: small enough that the block stays in cache between the
  // read and the write (64 MiB blocks halved the throughput, each copy then going to DRAM).
  std::size_t block_bytes = 4u << 20;
};

// Converts in (format from its magic bytes) to out (format from its extension; "-" writes a loco
// file to stdout). Metadata is carried across where both sides hold it: loco root attributes
// become safetensors __metadata__ strings (with "format": "pt"), and back; loco state groups
// have no place in safetensors and are dropped with a warning. Throws Error(Usage) for a data
// file to safetensors or an output that is the input.
void convert_file(const std::string& in, const std::string& out, const ConvertOptions& opt);

}  // namespace loco::io
