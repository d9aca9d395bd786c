// Conversion between tensor file formats (loco HDF5, safetensors, GGUF, .pt, universal checkpoints), tensor by tensor in row
// blocks: memory is bounded by the block size, not by the file or the largest tensor.
#pragma once

#include <cstdint>
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
  // Write a DeepSpeed universal checkpoint folder (ucp.hpp) instead of a file.
  bool ucp = false;
  // Split a safetensors output into shards of at most this many bytes with an index JSON
  // (safetensors_index.hpp); 0: one file.
  std::uint64_t max_shard_bytes = 0;
  // Copy only /tensors (with the root attributes), not /state: the model a worker needs, without
  // the outer optimizer's state (a store run's round model, docs/store.md).
  bool tensors_only = false;
};

// True when out names a folder output: it ends in '/' (an existing folder without the slash stays
// an error, so a mistyped file name never turns into a folder).
bool is_folder_output(const std::string& out);

// Converts in (format from its magic bytes; a folder is a universal checkpoint; a JSON file a
// safetensors index) to out (format from its extension; "-" writes a loco
// file to stdout). Metadata is carried across where both sides hold it: loco root attributes
// become safetensors __metadata__ strings (with "format": "pt"), and back; GGUF key/values become
// the attribute gguf_metadata and back (gguf.hpp); loco state groups have no place in safetensors
// or GGUF and are dropped with a warning. With opt.ucp, out is a folder
// written by write_ucp; with opt.max_shard_bytes, a safetensors output is sharded. Throws Error(Usage) for a data
// file to safetensors or GGUF, or an output that is the input.
void convert_file(const std::string& in, const std::string& out, const ConvertOptions& opt);

}  // namespace loco::io
