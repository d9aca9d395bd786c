// Sharded safetensors checkpoints as Hugging Face writes them: shards model-00001-of-00003.safetensors
// and the index model.safetensors.index.json = {"metadata": {"total_size": BYTES}, "weight_map":
// {name: shard file}}, written by a sink that splits at a byte budget and read as one TensorSource.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loco/io/byte_source.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::io {

// The safetensors output path, sharded when the tensors' bytes exceed max_shard_bytes: tensors go
// to shards in plan order, a new shard starting when the next tensor would pass the budget (a
// tensor larger than the budget gets a shard of its own). When everything fits in one shard the
// result is the single file path, as huggingface writes it; otherwise <stem>-0000i-of-0000N.safetensors
// beside path (stem: path without .safetensors) and the index <path>.index.json, with total_size
// the sum of the tensors' bytes and weight_map sorted by name. Every shard carries the root
// attributes as __metadata__. Shards are committed, then the index (each atomically). Throws
// Error(Usage) for "-" when sharding is needed, and what create_safetensors_sink throws.
std::unique_ptr<TensorSink> create_sharded_safetensors_sink(const std::string& path, const Attributes& root,
                                                            std::vector<TensorInfo> plan,
                                                            std::uint64_t max_shard_bytes);

// True when head (a file's first bytes) starts, after JSON whitespace, with '{'. Never throws.
bool looks_like_json_object(std::span<const std::byte> head) noexcept;

// Opens a safetensors index: the shards named in weight_map (relative to the index's folder),
// each opened and validated as safetensors; tensors in order of the shards' first appearance in
// the index, then of their data in the shard; root attributes from the first shard's __metadata__.
// format() is "safetensors-index". Throws Error(BadInput) naming the index for JSON that is not
// such an index, a shard path that leaves the folder, a tensor of the map missing from its shard
// or a shard tensor the map does not name (or names in another shard), and what
// open_safetensors throws for a shard.
std::unique_ptr<TensorSource> open_safetensors_index(std::unique_ptr<ByteSource> bytes);

}  // namespace loco::io
