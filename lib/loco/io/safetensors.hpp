// The safetensors format (reader and writer) with the reference implementation's exact rules:
// the reader accepts what it accepts, in the same check order, and the writer's bytes are its bytes.
//
// Layout: [u64 little-endian N][N bytes of UTF-8 JSON header][data buffer]. The header maps each
// tensor name to {"dtype","shape","data_offsets":[BEGIN,END]} (offsets into the data buffer, END
// exclusive) plus an optional "__metadata__" object of strings.
//
// Choices where the reference leaves room:
// - Tensors are listed in data-offset order (the order the data was written); the reference
//   keeps no header order. All tensors are in group "tensors" and carry no attributes.
// - The reader is stricter than the reference in four ways the format's specification asks for:
//   duplicate JSON keys (at any level), tensor entries with keys other than exactly dtype, shape
//   and data_offsets, integers above 2^48-1, and a UTF-8 byte-order mark are rejected. It also
//   refuses more than 10,000 __metadata__ entries (loco's attribute list is not built for more),
//   and zero-size shapes whose other dimensions multiply past 2^62 (loco indexes in int64).
// - "__metadata__": null is read as no metadata, as the reference does.
// - Valid safetensors dtypes loco cannot hold (F4, F6_*, F8_*, C64) are rejected after the
//   whole file has passed the reference's checks, naming the tensor and the dtype.
// - The writer emits "__metadata__" entries sorted by name (the reference's order is that of a
//   hash map, so any order is one the reference could produce; sorting makes ours repeatable).
//   It omits "__metadata__" when there are no root attributes. Per-tensor attributes have no
//   place in the format; they are dropped with a warning.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "loco/core/attributes.hpp"
#include "loco/io/byte_source.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::io {

// Largest header (N) the reference reads or writes.
inline constexpr std::uint64_t kSafetensorsMaxHeader = 100'000'000;
// Largest integer (shape entry or offset) the format's schema allows.
inline constexpr std::uint64_t kSafetensorsMaxInt = (std::uint64_t{1} << 48) - 1;

// A cheap test on a file's first bytes (up to 16 are looked at): a plausible header length
// (2..kSafetensorsMaxHeader) followed by optional JSON whitespace and '{'. Never throws.
bool looks_like_safetensors(std::span<const std::byte> head) noexcept;

// Reads the header and validates the whole file (see the rules above); tensor data is read later,
// on demand, through bytes->read_at. format() is "safetensors"; attributes() holds the
// __metadata__ entries in header order, typed as attributes_from_metadata reads them (metadata.hpp). Throws Error(BadInput) naming the file and,
// where it applies, the tensor and what was expected; Error(Io) when a read fails.
std::unique_ptr<TensorSource> open_safetensors(std::unique_ptr<ByteSource> bytes);

// Creates a safetensors output (path, or "-" for stdout) holding the tensors of plan, which must
// all be in group "tensors" with distinct names. The header is written at creation: entries
// sorted by descending dtype alignment then name, data back to back, __metadata__ = root (as
// attributes_to_metadata writes it: values as text, plus the types of the non-string ones), header padded with spaces to a multiple of 8.
// Rows may then be written in any order, each once, also from several threads at a time (each
// block goes to its own place with pwrite); commit() checks that every row of every non-empty
// tensor arrived. Root attributes cannot be added later: set_attribute and
// set_group_attribute throw Error(Usage). Throws Error(Usage) for a plan the format cannot hold
// (other groups, duplicate or reserved names, dimensions above 2^48-1, a header over
// kSafetensorsMaxHeader), Error(BadInput) for names or attribute text that are not UTF-8, and
// Error(Io) when the file cannot be written.
std::unique_ptr<TensorSink> create_safetensors_sink(const std::string& path, const Attributes& root,
                                                    std::vector<TensorInfo> plan);

}  // namespace loco::io
