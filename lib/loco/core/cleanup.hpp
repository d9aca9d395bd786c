// Temporary files that must not outlive the process: atomic outputs register theirs, and a
// termination signal removes them before the process ends.
#pragma once

#include <string>

namespace loco {

// A file or a folder (removed with its content).
void register_temporary(const std::string& path);
void unregister_temporary(const std::string& path);

// From now on SIGTERM, SIGINT and SIGHUP (Ctrl-C, Slurm's scancel and time limit, a closed
// terminal) remove the registered temporary files and end the process with 128 + the signal's
// number. The signals are blocked in the calling thread and in the threads it starts afterwards,
// and taken by one thread with sigwait; call it first thing in main, before any thread exists.
void remove_temporaries_on_signals();

}  // namespace loco
