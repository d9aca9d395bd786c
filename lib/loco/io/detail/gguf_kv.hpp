// GGUF key/values to and from loco attributes (the mapping is documented in io/gguf.hpp), and the
// bounds-checked cursor the GGUF reader parses its header with (private to io/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "loco/core/attributes.hpp"
#include "loco/core/error.hpp"
#include "loco/io/byte_source.hpp"

namespace loco::io::gguf {

// Metadata value types (gguf.md's gguf_metadata_value_type).
enum class ValueType : std::uint32_t { U8, I8, U16, I16, U32, I32, F32, Bool, Str, Arr, U64, I64, F64 };
inline constexpr std::uint32_t kValueTypeCount = 13;
// The reference's short names (gguf.cpp GGUF_TYPE_NAME): "u8", ..., "str", "arr", "f64".
std::string_view value_type_name(ValueType t) noexcept;
// Nesting of arrays inside arrays that loco reads and writes.
inline constexpr int kMaxArrayDepth = 8;
inline constexpr std::uint32_t kDefaultAlignment = 32;
inline constexpr std::string_view kLocoPrefix = "loco.";

// Forward reads from an untrusted file through a 64 KiB window; every read is checked against the
// file's size first and fails with Error(BadInput) "<file>: bad GGUF header: <what> ...".
class Cursor {
 public:
  explicit Cursor(const ByteSource& bytes) : bytes_(bytes), size_(bytes.size()) {}
  std::uint64_t pos() const noexcept { return pos_; }
  std::uint64_t size() const noexcept { return size_; }
  std::uint64_t remaining() const noexcept { return size_ - pos_; }
  const std::string& file() const noexcept { return bytes_.name(); }

  void read(void* dst, std::size_t n, std::string_view what);
  template <typename T>
  T get(std::string_view what) {
    T v;
    read(&v, sizeof v, what);
    return v;
  }
  // Moves back (or forward) to pos, which must lie in the file.
  void seek(std::uint64_t pos);
  // A gguf_string_t: u64 length, then the bytes (the length checked against the rest of the file).
  std::string string(std::string_view what);

  template <typename... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) const {
    throw_error(ErrorKind::BadInput, "{}: bad GGUF header: {}", file(), fmt::format(f, std::forward<Args>(args)...));
  }

 private:
  const ByteSource& bytes_;
  std::uint64_t size_;
  std::uint64_t pos_ = 0;
  std::vector<std::byte> buf_;
  std::uint64_t buf_at_ = 0;  // file offset of buf_[0]
};

// The key/values of a file, read from the cursor (positioned at the first key).
struct ReadMetadata {
  Attributes loco;   // the "loco.<name>" keys, as attributes <name>
  std::string json;  // the other keys as gguf_metadata's JSON text ("" when none)
  std::uint32_t alignment = kDefaultAlignment;
};
// Reads count key/values. Throws Error(BadInput) naming the file and the key for a bad type, a
// duplicate or empty key, a length past the end of the file, arrays nested deeper than
// kMaxArrayDepth, a bool other than 0/1, a general.alignment that is not a u32 power of two, or a
// "loco.gguf_metadata" key.
ReadMetadata read_metadata(Cursor& c, std::uint64_t count);

// The key/value bytes for root: gguf_metadata's entries, then the other attributes as "loco.<name>".
// general.file_type, when present as a u32, becomes file_type. alignment is general.alignment
// (kDefaultAlignment when absent). Throws Error(BadInput) "<path>: attribute gguf_metadata: ..." for
// a malformed gguf_metadata, Error(Usage) for a key present twice.
struct WrittenMetadata {
  std::vector<std::byte> bytes;
  std::uint64_t count = 0;
  std::uint32_t alignment = kDefaultAlignment;
};
WrittenMetadata write_metadata(const Attributes& root, std::uint32_t file_type, const std::string& path);

}  // namespace loco::io::gguf
