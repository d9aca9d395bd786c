// Random-access reads from a file or from memory (stdin, "-", is read into memory once).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace loco::io {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // The name used in messages: the path, or "<stdin>".
  virtual const std::string& name() const = 0;
  virtual std::uint64_t size() const = 0;
  // Fills out with the bytes at [offset, offset + out.size()); throws Error(BadInput) when the
  // range passes the end ("truncated") and Error(Io) when the read fails.
  virtual void read_at(std::uint64_t offset, std::span<std::byte> out) const = 0;
  // The whole content when it is in memory (stdin), else nullptr.
  virtual const std::byte* memory() const { return nullptr; }
};

// Opens path for reading ("-" reads all of stdin). Throws Error(Io) naming the path.
std::unique_ptr<ByteSource> open_bytes(const std::string& path);
// A source over bytes already in memory, named name.
std::unique_ptr<ByteSource> memory_bytes(std::vector<std::byte> bytes, std::string name);

// The whole of stdin (binary); throws Error(Usage) when stdin is a terminal.
std::vector<std::byte> read_stdin(const std::string& what);

}  // namespace loco::io
