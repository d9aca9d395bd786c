// GGUF, llama.cpp's model file (reader and writer), versions 2 and 3, little-endian only.
// Specification: ggml-org/ggml docs/gguf.md; the reference reader is ggml/src/gguf.cpp of
// ggml-org/llama.cpp, whose checks this reader follows where the specification leaves room.
//
// Layout: "GGUF", u32 version, u64 tensor count, u64 key/value count, the key/values, the tensor
// infos (name, u32 n_dims, n_dims × u64 ne, u32 ggml type, u64 offset), zero padding to the
// alignment, then the data section; each tensor's offset is relative to the data section and a
// multiple of the alignment (general.alignment, a u32 power of two; 32 when absent).
//
// Shapes: GGUF lists dimensions innermost first (ne[0] varies fastest, as in ggml), so loco's
// row-major shape is ne reversed: a GGUF weight with ne = [4096, 11008] is loco shape
// [11008, 4096], the same layout as the PyTorch tensor it was converted from. n_dims 0 is a
// scalar (rank 0).
//
// Types: F32, F16, BF16, F64, I8, I16, I32 and I64 are read as they are stored; Q8_0, Q4_0 and Q4_1
// are dequantized to float32 exactly as ggml's dequantize_row_* do (gguf.cpp cites them). Any other
// ggml type is refused when the file is opened, naming the tensor and the type. The writer stores
// F32, F16, BF16, F64, I8, I16, I32 and I64 (loco-convert --dtype picks the float type); unsigned
// and bool tensors have no GGUF type and are refused.
//
// Metadata: every key/value that is not "loco.<name>" is kept, in file order and with its exact
// GGUF type, in one root attribute gguf_metadata (kGgufMetadataAttribute): the JSON text
//   [{"key": "general.architecture", "type": "str", "value": "llama"},
//    {"key": "general.alignment", "type": "u32", "value": 32},
//    {"key": "tokenizer.ggml.tokens", "type": "arr", "items": "str", "value": ["<s>", ...]}, ...]
// with the reference's type names (u8 i8 u16 i16 u32 i32 u64 i64 f32 f64 bool str arr). Floats are
// the shortest text that reads back to the same value, or "nan", "inf", "-inf"; strings that are
// not UTF-8 are {"hex": "..."}; an array of arrays ("items": "arr") holds objects
// {"items": T, "value": [...]}, at most 8 levels deep. Keys "loco.<name>" of type i64, f64, str or
// an array of i64 or f64 are loco's own root attributes (kind, round, model_config, ...), read
// as the attribute <name>. The writer emits gguf_metadata's entries in order, then every other
// root attribute as "loco.<name>", so a GGUF file read and written back keeps its key/values;
// general.file_type, where present, is set to what the written tensors are (0 all F32, 1 mostly
// F16, 32 mostly BF16: llama.cpp's LLAMA_FTYPE values), since a dequantized file is no longer
// Q4_0.
//
// Bounds: every count, length, dimension, offset and the alignment is checked against the file's
// size before anything is allocated or read; a hostile header is Error(BadInput) naming the file
// and what was wrong.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loco/core/attributes.hpp"
#include "loco/io/byte_source.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::io {

// The root attribute holding the GGUF key/values (see above).
inline constexpr std::string_view kGgufMetadataAttribute = "gguf_metadata";

// True when head starts with the magic "GGUF". Never throws.
bool looks_like_gguf(std::span<const std::byte> head) noexcept;

// Reads the header and the tensor infos and checks them against the file (see above); tensor data
// is read on demand. format() is "gguf"; all tensors are in group "tensors", in file order.
// Throws Error(BadInput) naming the file and, where it applies, the tensor or key.
std::unique_ptr<TensorSource> open_gguf(std::unique_ptr<ByteSource> bytes);

// Creates a GGUF version 3 output (path, or "-" for stdout) holding the tensors of plan (group
// "tensors", distinct names under 64 bytes, rank at most 4: ggml's limits). The header is written at
// creation; tensors follow in plan order, each at a multiple of the alignment and padded to it.
// Rows may be written in any order, each once, also from several threads. Root attributes cannot
// be added later (Error(Usage)). Throws Error(Usage) for a plan GGUF cannot hold, Error(BadInput)
// for a gguf_metadata attribute that is not as described above, Error(Io) when writing fails.
std::unique_ptr<TensorSink> create_gguf_sink(const std::string& path, const Attributes& root,
                                             std::vector<TensorInfo> plan);

}  // namespace loco::io
