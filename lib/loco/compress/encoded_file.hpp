// Writing a compressed loco file from tensors encoded in memory (what a worker that compresses as
// it trains, such as DeMo's, sends), in the layout loco-compress writes.
#pragma once

#include <string>
#include <vector>

#include "loco/compress/codec.hpp"
#include "loco/core/attributes.hpp"

namespace loco::compress {

// One encoded tensor of a compressed file and the bytes of its dense form.
struct NamedEncoded {
  std::string name;
  Encoded encoded;
  std::int64_t raw_bytes = 0;
};

// Writes `path` atomically ("-" for stdout): kind compressed, the root attributes `root` (which should
// hold source_kind, codec and what the source kind needs, e.g. a delta's model_config, round, worker,
// samples, base_checksum), then per tensor the group /tensors/<name> with the encoding's attributes,
// raw_bytes and payload_bytes, and its datasets; the root gets the totals raw_bytes and payload_bytes.
// Throws Error(Usage) for a name given twice, Error(Io) when the file cannot be written.
void write_compressed_file(const std::string& path, Attributes root, const std::vector<NamedEncoded>& tensors);

}  // namespace loco::compress
