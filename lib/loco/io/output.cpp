// Atomic file replacement and the registry of this run's inputs.
#include "loco/io/output.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "loco/core/deadline.hpp"
#include "loco/core/error.hpp"

namespace loco::io {
namespace {

struct InputId {
  std::string path;
  dev_t dev = 0;
  ino_t ino = 0;
  bool exists = false;
};

std::mutex g_inputs_mutex;
std::vector<InputId> g_inputs;

InputId identify(const std::string& path) {
  InputId id{std::filesystem::weakly_canonical(path).string()};
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    id.dev = st.st_dev;
    id.ino = st.st_ino;
    id.exists = true;
  }
  return id;
}

// LOCO_FSYNC=0 skips the flushes to disk: the rename stays atomic if the tool dies, but a power
// loss may then lose a renamed file's data. For benchmarks and scratch pipelines on local disks.
bool fsync_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("LOCO_FSYNC");
    return v == nullptr || std::string(v) != "0";
  }();
  return enabled;
}

void fsync_path(const std::string& path, bool directory) {
  if (!fsync_enabled()) return;
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) throw_error(ErrorKind::Io, "{}: cannot open to sync: {}", path, std::strerror(errno));
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  // Some file systems refuse fsync on directories (EINVAL); the rename is still atomic there.
  if (rc != 0 && !(directory && (e == EINVAL || e == EBADF)))
    throw_error(ErrorKind::Io, "{}: fsync failed: {}", path, std::strerror(e));
}

}  // namespace

void register_input(const std::string& path) {
  if (path == "-") return;
  std::lock_guard lock(g_inputs_mutex);
  g_inputs.push_back({path});
}

void forget_inputs() {
  std::lock_guard lock(g_inputs_mutex);
  g_inputs.clear();
}

void check_not_input(const std::string& output) {
  if (output == "-") return;
  const InputId out = identify(output);
  std::lock_guard lock(g_inputs_mutex);
  for (const auto& registered : g_inputs) {
    // Identified now, not at registration: a file removed since may have passed on its inode.
    const InputId in = identify(registered.path);
    const bool same = (in.exists && out.exists) ? (in.dev == out.dev && in.ino == out.ino) : in.path == out.path;
    if (same) throw_error(ErrorKind::Usage, "output {} is also an input ({}); choose another output path", output, in.path);
  }
}

AtomicOutput::AtomicOutput(std::string final_path) : final_(std::move(final_path)) {
  if (final_.empty()) throw_error(ErrorKind::Usage, "empty output path");
  static std::atomic<int> counter{0};
  if (to_stdout()) {
    if (::isatty(STDOUT_FILENO))
      throw_error(ErrorKind::Usage, "refusing to write a binary file to a terminal; redirect stdout or give -o FILE");
    // Built as a file in the temporary folder, then copied to stdout: memory stays bounded.
    const char* tmp = std::getenv("TMPDIR");
    const std::filesystem::path dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
    temp_ = (dir / fmt::format("loco-stdout-{}-{}.tmp", ::getpid(), counter++)).string();
    register_temporary(temp_);
    return;
  }
  check_not_input(final_);
  const std::filesystem::path p(final_);
  if (std::filesystem::is_directory(p)) throw_error(ErrorKind::Usage, "output {} is a directory", final_);
  const std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
  if (!std::filesystem::is_directory(dir))
    throw_error(ErrorKind::Io, "{}: cannot write: folder {} does not exist", final_, dir.string());
  temp_ = (dir / fmt::format(".{}.tmp-{}-{}", p.filename().string(), ::getpid(), counter++)).string();
  register_temporary(temp_);
}

AtomicOutput::~AtomicOutput() {
  if (!temp_.empty()) unregister_temporary(temp_);
  if (!done_ && !temp_.empty()) ::unlink(temp_.c_str());
}

namespace {
void write_all_stdout(const std::byte* data, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(STDOUT_FILENO, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (errno == EPIPE) throw_error(ErrorKind::Io, "<stdout>: broken pipe");
      throw_error(ErrorKind::Io, "<stdout>: write failed: {}", std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
}
}  // namespace

void AtomicOutput::commit() {
  if (to_stdout()) {
    const int fd = ::open(temp_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_error(ErrorKind::Io, "{}: cannot reopen: {}", temp_, std::strerror(errno));
    std::vector<std::byte> buf(8u << 20);
    for (;;) {
      const ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int e = errno;
        ::close(fd);
        throw_error(ErrorKind::Io, "{}: read failed: {}", temp_, std::strerror(e));
      }
      if (n == 0) break;
      try {
        write_all_stdout(buf.data(), static_cast<std::size_t>(n));
      } catch (...) {
        ::close(fd);
        throw;
      }
    }
    ::close(fd);
    return;  // the destructor removes the temporary file
  }
  fsync_path(temp_, false);
  if (::rename(temp_.c_str(), final_.c_str()) != 0)
    throw_error(ErrorKind::Io, "{}: cannot rename {} into place: {}", final_, temp_, std::strerror(errno));
  done_ = true;
  const std::filesystem::path p(final_);
  fsync_path(p.has_parent_path() ? p.parent_path().string() : ".", true);
}

void AtomicOutput::commit_bytes(std::span<const std::byte> bytes) {
  if (!to_stdout()) throw_error(ErrorKind::Internal, "commit_bytes() on a file output");
  write_all_stdout(bytes.data(), bytes.size());
}

}  // namespace loco::io
