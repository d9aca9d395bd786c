// A watchdog for code that can hang on hostile input inside a third-party library (HDF5 1.10
// loops forever on some corrupt global heaps): if a guarded section outlives its limit, the
// process ends with the bad-input exit code and a message, after removing registered temporary
// files. The one place the library ends the process, because a hung call cannot be unwound.
#pragma once

#include <string>

namespace loco {

class Deadline {
 public:
  // Arms the watchdog: after `seconds` (default LOCO_PARSE_TIMEOUT, else 60), unless destroyed
  // first, prints "<program>: error: <what>" to stderr, removes the registered temporary files and
  // calls _exit(4). seconds ≤ 0 disarms.
  explicit Deadline(std::string what, double seconds = -1);
  ~Deadline();
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

 private:
  unsigned long id_ = 0;
};

// Temporary files to remove if a Deadline ends the process (AtomicOutput registers its own).
void register_temporary(const std::string& path);
void unregister_temporary(const std::string& path);

}  // namespace loco
