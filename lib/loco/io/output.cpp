// Atomic file replacement and the registry of this run's inputs.
#include "loco/io/output.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "loco/core/cleanup.hpp"
#include "loco/core/error.hpp"
#include "loco/core/log.hpp"

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

// This machine's name as it appears in temporary file names: at most 64 characters, those
// outside [A-Za-z0-9._] replaced by '_' (a folder may be shared by the nodes of a cluster).
const std::string& host_tag() {
  static const std::string tag = [] {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return std::string("localhost");
    std::string h(buf, strnlen(buf, 64));
    for (char& c : h)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_') c = '_';
    return h;
  }();
  return tag;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Removes the temporaries ".<name>.tmp-<host>-<pid>-<n>" of earlier runs on this machine whose
// process no longer exists (killed with SIGKILL, or by a power loss): a rerun reclaims their space.
// Temporaries of other machines, and of live processes, are left alone.
void remove_stale_temporaries(const std::filesystem::path& dir, const std::string& name) {
  const std::string prefix = "." + name + ".tmp-" + host_tag() + "-";
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string f = it->path().filename().string();
    if (f.size() <= prefix.size() || f.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string_view rest = std::string_view(f).substr(prefix.size());
    const std::size_t dash = rest.find('-');
    if (dash == std::string_view::npos || !all_digits(rest.substr(0, dash)) || !all_digits(rest.substr(dash + 1)) ||
        dash > 9)
      continue;
    const pid_t pid = static_cast<pid_t>(std::stol(std::string(rest.substr(0, dash))));
    if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    if (::unlink(it->path().c_str()) == 0)
      log::info("removed {}, left by process {} which no longer runs", it->path().string(), pid);
  }
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
    if (same)
      throw_error(ErrorKind::Usage, "output {} is also an input ({}); choose another output path", output, in.path);
  }
}

void check_output_paths(const std::vector<NamedPath>& outputs, const std::vector<NamedPath>& others) {
  auto same = [](const InputId& a, const InputId& b) {
    return (a.exists && b.exists) ? (a.dev == b.dev && a.ino == b.ino) : a.path == b.path;
  };
  std::vector<InputId> ids;
  for (const auto& o : outputs) ids.push_back(o.path == "-" ? InputId{"-"} : identify(o.path));
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j)
      if (same(ids[i], ids[j]))
        throw_error(ErrorKind::Usage, "{} {} and {} {} are the same {}; give each output its own path",
                    outputs[j].option, outputs[j].path, outputs[i].option, outputs[i].path,
                    outputs[i].path == "-" ? "stdout" : "file");
    if (outputs[i].path == "-") continue;
    for (const auto& other : others) {
      if (other.path == "-" || other.path.empty()) continue;
      if (same(ids[i], identify(other.path)))
        throw_error(ErrorKind::Usage, "output {} {} is also an input ({} {}); choose another output path",
                    outputs[i].option, outputs[i].path, other.option, other.path);
    }
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
  remove_stale_temporaries(dir, p.filename().string());
  temp_ = (dir / fmt::format(".{}.tmp-{}-{}-{}", p.filename().string(), host_tag(), ::getpid(), counter++)).string();
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
