// Atomic outputs: a file is written under a temporary name in its final folder, flushed to disk
// and renamed into place on commit; "-" collects the bytes and writes them to stdout on commit.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace loco::io {

class AtomicOutput {
 public:
  // Refuses (Error(Usage)) an output that is one of this run's inputs (see register_input), and
  // "-" when stdout is a terminal. Nothing is created until temp_path() is first used.
  explicit AtomicOutput(std::string final_path);
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;
  // Removes the temporary file unless commit() succeeded.
  ~AtomicOutput();

  const std::string& final_path() const noexcept { return final_; }
  bool to_stdout() const noexcept { return final_ == "-"; }
  // The file to write: ".<name>.tmp-<host>-<pid>-<n>" beside the final path, or for "-" a file
  // in $TMPDIR (default /tmp) that commit() copies to stdout. Creating an output to a path first
  // removes that path's temporaries left by processes of this host that no longer run.
  const std::string& temp_path() const noexcept { return temp_; }

  // Files: fsync the temporary file, rename it to the final path, fsync the folder.
  // "-": copy the temporary file to stdout. Throws Error(Io).
  void commit();
  // For to_stdout(), as an alternative to a temporary file: writes bytes to stdout.
  void commit_bytes(std::span<const std::byte> bytes);

 private:
  std::string final_;
  std::string temp_;
  bool done_ = false;
};

// Paths this run reads; an AtomicOutput to any of them (same file, by device and inode, or by
// path when it does not exist yet) is refused so an input is never overwritten.
void register_input(const std::string& path);
void check_not_input(const std::string& output);
// The paths of one command line, checked before anything is read or written: each output
// (option name, path; "-" is stdout) must be a file of its own, neither another output nor the
// file another option names (by device and inode, or by path for files that do not exist yet).
// A file an option reads and then replaces (a state file) is that option's output only.
// Throws Error(Usage) naming both options.
struct NamedPath {
  std::string option;
  std::string path;
};
void check_output_paths(const std::vector<NamedPath>& outputs, const std::vector<NamedPath>& others);
// Forgets the registered inputs, for in-process callers that run several steps one after another.
void forget_inputs();

}  // namespace loco::io
