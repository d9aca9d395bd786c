// File and memory byte sources; stdin is slurped once so readers can seek.
#include "loco/io/byte_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "loco/core/error.hpp"

namespace loco::io {
namespace {

class FileBytes final : public ByteSource {
 public:
  FileBytes(int fd, std::string path, std::uint64_t size) : fd_(fd), path_(std::move(path)), size_(size) {}
  ~FileBytes() override { ::close(fd_); }
  const std::string& name() const override { return path_; }
  std::uint64_t size() const override { return size_; }
  void read_at(std::uint64_t offset, std::span<std::byte> out) const override {
    if (offset > size_ || out.size() > size_ - offset)
      throw_error(ErrorKind::BadInput, "{}: truncated: needs bytes up to offset {}, file has {}", path_,
                  offset + out.size(), size_);
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw_error(ErrorKind::Io, "{}: read failed: {}", path_, std::strerror(errno));
      if (n == 0) throw_error(ErrorKind::BadInput, "{}: truncated while reading (file shrank?)", path_);
      done += static_cast<std::size_t>(n);
    }
  }

 private:
  int fd_;
  std::string path_;
  std::uint64_t size_;
};

class MemoryBytes final : public ByteSource {
 public:
  MemoryBytes(std::vector<std::byte> bytes, std::string name) : bytes_(std::move(bytes)), name_(std::move(name)) {}
  const std::string& name() const override { return name_; }
  std::uint64_t size() const override { return bytes_.size(); }
  void read_at(std::uint64_t offset, std::span<std::byte> out) const override {
    if (offset > bytes_.size() || out.size() > bytes_.size() - offset)
      throw_error(ErrorKind::BadInput, "{}: truncated: needs bytes up to offset {}, has {}", name_, offset + out.size(),
                  bytes_.size());
    std::memcpy(out.data(), bytes_.data() + offset, out.size());
  }
  const std::byte* memory() const override { return bytes_.data(); }

 private:
  std::vector<std::byte> bytes_;
  std::string name_;
};

// Everything a stream (stdin, a pipe) holds until its end.
std::vector<std::byte> read_stream(int fd, const std::string& name) {
  std::vector<std::byte> data;
  std::size_t used = 0;
  data.resize(1 << 20);
  for (;;) {
    if (used == data.size()) data.resize(data.size() * 2);
    const ssize_t n = ::read(fd, data.data() + used, data.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_error(ErrorKind::Io, "{}: read failed: {}", name, std::strerror(errno));
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  data.resize(used);
  return data;
}

}  // namespace

std::vector<std::byte> read_stdin(const std::string& what) {
  if (::isatty(STDIN_FILENO)) throw_error(ErrorKind::Usage, "{} is '-' but stdin is a terminal; pipe a file in", what);
  return read_stream(STDIN_FILENO, "<stdin>");
}

std::unique_ptr<ByteSource> open_bytes(const std::string& path) {
  if (path == "-") return memory_bytes(read_stdin("input"), "<stdin>");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_error(ErrorKind::Io, "{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw_error(ErrorKind::Io, "{}: cannot stat: {}", path, std::strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw_error(ErrorKind::BadInput, "{}: is a directory, expected a tensor file", path);
  }
  if (S_ISFIFO(st.st_mode)) {  // a named pipe or a process substitution: read like stdin
    std::vector<std::byte> data;
    try {
      data = read_stream(fd, path);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
    return memory_bytes(std::move(data), path);
  }
  if (!S_ISREG(st.st_mode)) {  // /dev/zero would read without end, and its size says 0
    ::close(fd);
    throw_error(ErrorKind::BadInput, "{}: not a regular file (a device or socket), expected a tensor file", path);
  }
  return std::make_unique<FileBytes>(fd, path, static_cast<std::uint64_t>(st.st_size));
}

std::unique_ptr<ByteSource> memory_bytes(std::vector<std::byte> bytes, std::string name) {
  return std::make_unique<MemoryBytes>(std::move(bytes), std::move(name));
}

}  // namespace loco::io
