// PyTorch torch.save checkpoints (the zip format of PyTorch ≥ 1.6) read in place as a TensorSource:
// a zip central-directory reader (ZIP64 included, stored entries only) and the state-dict
// interpretation of the archive's data.pkl.
//
// What is read: all entries sit under one prefix folder, taken from the first entry; data.pkl is
// parsed by the bounded, allow-listed pickle reader (pickle.hpp); storages are the entries
// data/<key>, read in place at their local-header data offsets, never loaded whole. Tensors come
// from _rebuild_tensor_v2/_v3 (with _rebuild_parameter and _rebuild_from_type_v2 unwrapped), with
// storage offsets and strides: non-contiguous views are gathered through their strides; tensors
// sharing a storage (tied weights) read the same bytes. Nested dicts, lists and tuples are
// flattened with dots ("model.layers.0.weight"); int, float, bool and str leaves become root
// attributes under the same dotted names; None and opaque objects (argparse.Namespace, numpy
// scalars, ...) are skipped. All tensors are in group "tensors". format() is "torch".
//
// Refused with Error(BadInput) naming the file: legacy (pre-1.6) torch.save files, TorchScript
// archives (constants.pkl), compressed entries, big-endian archives, persistent ids other than
// ('storage', ...), quantized, complex and other dtypes loco does not hold, views that reach past
// their storage, duplicate flattened names, and anything the pickle reader refuses.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "loco/io/byte_source.hpp"
#include "loco/io/source.hpp"

namespace loco::io {

// One member of a zip archive.
struct ZipEntry {
  std::string name;
  std::uint64_t data_offset = 0;  // where the member's bytes start, from its local header
  std::uint64_t size = 0;         // stored (compressed) size
  std::uint64_t uncompressed_size = 0;
  std::uint16_t method = 0;  // 0: stored
};

// The members of the zip archive in bytes, in central-directory order. Handles ZIP64 end records
// and extra fields. Throws Error(BadInput) naming the file for a missing or inconsistent end
// record or central directory, a member whose local header or data lies outside the file, more
// members than the directory can hold, and encrypted members.
std::vector<ZipEntry> read_zip_directory(const ByteSource& bytes);

// True when head starts with a zip local-file header (PK\3\4). Never throws.
bool looks_like_zip(std::span<const std::byte> head) noexcept;
// True when head (at least 14 bytes) starts like a legacy torch.save file: protocol-2 pickle
// followed by the magic number 0x1950a86a20f9469cfc6c. Never throws.
bool looks_like_legacy_torch(std::span<const std::byte> head) noexcept;

// Opens a torch.save zip archive (see the rules above). Throws Error(BadInput) naming the file
// and, where it applies, the tensor; Error(Io) when a read fails.
std::unique_ptr<TensorSource> open_torch(std::unique_ptr<ByteSource> bytes);

}  // namespace loco::io
