// Helpers shared by the readers and writers of untrusted binary formats (safetensors, GGUF):
// UTF-8 validation, quoting untrusted names in messages, JSON string escaping, and positioned
// writes of row blocks into a pre-sized file (private to io/).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "loco/core/error.hpp"
#include "loco/io/byte_source.hpp"
#include "loco/io/source.hpp"

namespace loco::io::detail {

// Byte offset of the first ill-formed UTF-8 sequence, or npos. Same acceptance as Rust's
// str::from_utf8: no overlong forms, no surrogates, nothing above U+10FFFF.
inline std::size_t utf8_error_at(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (n - i < len) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += len;
  }
  return std::string_view::npos;
}

// A name from an untrusted header, quoted for a message: control bytes escaped, long names cut.
inline std::string shown(std::string_view s) {
  constexpr std::size_t kMax = 200;
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  if (s.size() > kMax) out += "...";
  out += "'";
  return out;
}

// serde_json's compact string form: quotes, backslash and control bytes escaped (\b \t \n \f \r
// by name, the rest as \u00xx in lowercase hex), every other byte (UTF-8, DEL) as is.
inline void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += ch;
    }
  }
  out += '"';
}

// Disjoint written row ranges of one tensor, adjacent ranges merged.
class RowSet {
 public:
  bool overlaps(std::int64_t a, std::int64_t b) const {
    if (a == b) return false;
    auto it = spans_.upper_bound(a);
    if (it != spans_.begin() && std::prev(it)->second > a) return true;
    return it != spans_.end() && it->first < b;
  }
  void add(std::int64_t a, std::int64_t b) {
    if (a == b) return;
    count_ += b - a;
    auto next = spans_.lower_bound(b);
    if (next != spans_.end() && next->first == b) {
      b = next->second;
      spans_.erase(next);
    }
    auto it = spans_.lower_bound(a);
    if (it != spans_.begin() && std::prev(it)->second == a) {
      std::prev(it)->second = b;
      return;
    }
    spans_.emplace(a, b);
  }
  std::int64_t count() const { return count_; }

 private:
  std::map<std::int64_t, std::int64_t> spans_;
  std::int64_t count_ = 0;
};

struct FileDescriptor {
  int fd = -1;
  FileDescriptor() = default;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

inline void pwrite_all(int fd, const std::byte* data, std::size_t n, std::uint64_t offset, const std::string& path) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t w = ::pwrite(fd, data + done, n - done, static_cast<off_t>(offset + done));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw_error(ErrorKind::Io, "{}: write failed: {}", path, std::strerror(errno));
    done += static_cast<std::size_t>(w);
  }
}

// A source holding one flat set of tensors (group "tensors") read from a ByteSource: safetensors, GGUF.
class FlatSource : public TensorSource {
 public:
  FlatSource(std::unique_ptr<ByteSource> bytes, Attributes attrs, std::vector<TensorInfo> tensors)
      : bytes_(std::move(bytes)), attrs_(std::move(attrs)), tensors_(std::move(tensors)) {
    index_.reserve(tensors_.size());
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }
  const std::string& path() const override { return bytes_->name(); }
  const Attributes& attributes() const override { return attrs_; }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }

 protected:
  const ByteSource& bytes() const { return *bytes_; }
  // The position of t in tensors() after checking a read of rows [row0, row0 + nrows) into n bytes
  // (n must be the rows' size in t's dtype). Throws Error(Internal) for a wrong request.
  std::size_t check_read(const TensorInfo& t, std::int64_t row0, std::int64_t nrows, std::size_t n) const {
    const auto it = t.group == "tensors" ? index_.find(t.name) : index_.end();
    if (it == index_.end())
      throw_error(ErrorKind::Internal, "{}: no tensor {} in this {} file", path(), t.key(), format());
    const TensorInfo& mine = tensors_[it->second];
    if (mine.shape != t.shape || mine.dtype != t.dtype)
      throw_error(ErrorKind::Internal, "{}: tensor {} requested as {} {}, stored as {} {}", path(), t.name,
                  dtype_name(t.dtype), shape_string(t.shape), dtype_name(mine.dtype), shape_string(mine.shape));
    const std::int64_t rows = mine.rows();
    if (row0 < 0 || nrows < 0 || row0 > rows - nrows)
      throw_error(ErrorKind::Internal, "{}: rows [{}, {}) of tensor {} are outside its {} rows", path(), row0,
                  row0 + nrows, t.name, rows);
    const std::uint64_t want =
        static_cast<std::uint64_t>(nrows) * static_cast<std::uint64_t>(mine.row_elements()) * dtype_size(mine.dtype);
    if (n != want)
      throw_error(ErrorKind::Internal, "{}: reading {} rows of tensor {} needs {} bytes, the buffer holds {}", path(),
                  nrows, t.name, want, n);
    return it->second;
  }

 private:
  std::unique_ptr<ByteSource> bytes_;
  Attributes attrs_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
};

// The rows written so far of each tensor of a sink's plan, for sinks that write row blocks in any
// order and from several threads at a time (each block to its own place in a pre-sized file).
class RowLedger {
 public:
  RowLedger(const std::vector<TensorInfo>& plan, std::vector<std::uint64_t> row_bytes)
      : plan_(plan), row_bytes_(std::move(row_bytes)), written_(plan.size()) {}

  // Checks a write of rows [row0, row0 + nrows) of tensor index given in n bytes and claims the rows
  // (before the bytes are written, so concurrent writers of distinct rows need no further locking).
  // Returns the byte offset of row0 within the tensor. Throws Error(Internal) for a wrong request.
  std::uint64_t claim(const std::string& path, std::size_t index, std::int64_t row0, std::int64_t nrows,
                      std::size_t n) {
    if (index >= plan_.size())
      throw_error(ErrorKind::Internal, "{}: tensor index {} is outside the plan of {}", path, index, plan_.size());
    const TensorInfo& t = plan_[index];
    const std::int64_t rows = t.rows();
    if (row0 < 0 || nrows < 0 || row0 > rows - nrows)
      throw_error(ErrorKind::Internal, "{}: rows [{}, {}) of tensor {} are outside its {} rows", path, row0,
                  row0 + nrows, t.name, rows);
    const std::uint64_t want = static_cast<std::uint64_t>(nrows) * row_bytes_[index];
    if (n != want)
      throw_error(ErrorKind::Internal, "{}: {} bytes given for {} rows of tensor {}, expected {}", path, n, nrows,
                  t.name, want);
    std::lock_guard lock(mutex_);
    if (written_[index].overlaps(row0, row0 + nrows))
      throw_error(ErrorKind::Internal, "{}: rows [{}, {}) of tensor {} are written a second time", path, row0,
                  row0 + nrows, t.name);
    written_[index].add(row0, row0 + nrows);
    return static_cast<std::uint64_t>(row0) * row_bytes_[index];
  }

  // Throws Error(Internal) unless every row of every non-empty tensor was claimed.
  void check_complete(const std::string& path) const {
    for (std::size_t i = 0; i < plan_.size(); ++i) {
      const std::int64_t rows = plan_[i].rows();
      if (row_bytes_[i] > 0 && written_[i].count() != rows)
        throw_error(ErrorKind::Internal, "{}: tensor {}: only {} of its {} rows were written before commit", path,
                    plan_[i].name, written_[i].count(), rows);
    }
  }

 private:
  const std::vector<TensorInfo>& plan_;
  std::vector<std::uint64_t> row_bytes_;
  std::vector<RowSet> written_;
  std::mutex mutex_;
};

}  // namespace loco::io::detail
