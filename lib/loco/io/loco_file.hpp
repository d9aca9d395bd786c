// The loco HDF5 tensor file, version 1 (man 5 loco-format): its reader and writer behind the
// TensorSource/TensorSink interfaces, and the checks that apply when files are combined.
#pragma once

#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loco/io/byte_source.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::io {

inline constexpr std::int64_t kFormatVersion = 1;

enum class Kind { Model, Delta, Compressed, State, Data };
std::string_view kind_name(Kind k) noexcept;
std::optional<Kind> parse_kind(std::string_view s) noexcept;

// True when bytes (at least the first 8 of a file) start with the HDF5 superblock signature.
bool has_hdf5_signature(std::span<const std::byte> first8);

// Opens a loco HDF5 file and validates it: HDF5 at all, the loco_format marker, the version,
// a known kind, and every dataset of a dtype loco reads. Throws Error(BadInput) naming the file.
std::unique_ptr<TensorSource> open_loco(std::unique_ptr<ByteSource> bytes);
// Creates a loco file. root must hold "kind"; loco_format, loco_version, producer and created
// are added. Datasets are contiguous, little-endian, groups keep creation order.
std::unique_ptr<TensorSink> create_loco_sink(const std::string& path, const Attributes& root,
                                             std::vector<TensorInfo> plan);

// The kind of a source: its "kind" attribute; a file of another format without one is a model,
// and may only be a model or a delta (throws Error(BadInput) naming the file otherwise).
Kind file_kind(const TensorSource& s);
// Throws Error(BadInput) "<file> is a delta file, expected a model" unless the kind is allowed.
void expect_kind(const TensorSource& s, std::initializer_list<Kind> allowed);

// The model_config of a source in canonical form (keys sorted, no spaces), "" when absent.
// Throws Error(BadInput) when it is not a JSON object.
std::string model_config(const TensorSource& s);
std::string canonical_json(std::string_view json, const std::string& where);
// Throws Error(BadInput) naming both files and the first differing key unless both sources
// carry the same model_config (two absent configs match).
void check_same_config(const TensorSource& a, const TensorSource& b);

// Direct reads of a tensor's stored bytes, without HDF5, for readers that stream large tensors from
// several threads at once (HDF5 calls must stay on one thread at a time).
//
// The byte offset in its file of tensor t of source s when the stored bytes are exactly what
// read_rows returns (loco's little-endian layout of t.dtype), so rows [r0, r0 + n) are the
// n · row_elements() · dtype_size(t.dtype) bytes at offset + r0 · row_elements() · dtype_size(t.dtype):
// a loco file, t non-empty, contiguous layout with its storage allocated inside the file, and a
// little-endian or one-byte stored type. nullopt otherwise (chunked or compressed datasets,
// big-endian types, other formats): read those with read_rows.
std::optional<std::uint64_t> contiguous_offset(const TensorSource& s, const TensorInfo& t);
// Fills out with the bytes of s's file at [offset, offset + out.size()). Safe to call from several
// threads at once, also while another thread uses s through HDF5. Throws Error(BadInput) when the
// range passes the end of the file, Error(Io) when the read fails, Error(Internal) when s is not a
// loco source.
void read_raw(const TensorSource& s, std::uint64_t offset, std::span<std::byte> out);

// A tensor's content checksum (core/checksum.hpp), streamed in blocks, reading the next block
// while the current one is hashed.
std::uint64_t tensor_checksum(const TensorSource& s, const TensorInfo& t);
// The checksums of several tensors of s, in parallel when their reads can run concurrently
// (safetensors, contiguous loco datasets), else one after another.
std::vector<std::uint64_t> tensor_checksums(const TensorSource& s, const std::vector<const TensorInfo*>& tensors);

// The checksum of a source's /tensors group (format_checksum form), as deltas record it in
// base_checksum. Streams each tensor in blocks.
std::string tensors_checksum(const TensorSource& s);

}  // namespace loco::io
