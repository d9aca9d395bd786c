// The registry of temporary files and the thread that removes them on a termination signal.
#include "loco/core/cleanup.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

namespace loco {
namespace {

struct Registry {
  std::mutex m;
  std::set<std::string> temporaries;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: the signal thread may outlive static destructors
  return *r;
}

}  // namespace

void register_temporary(const std::string& path) {
  Registry& r = registry();
  std::lock_guard lock(r.m);
  r.temporaries.insert(path);
}

void unregister_temporary(const std::string& path) {
  Registry& r = registry();
  std::lock_guard lock(r.m);
  r.temporaries.erase(path);
}

void remove_temporaries_on_signals() {
  static std::once_flag once;
  std::call_once(once, [] {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, sig);
    if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) return;
    std::thread([set] {
      int sig = 0;
      while (sigwait(&set, &sig) != 0) {
      }
      Registry& r = registry();
      std::lock_guard lock(r.m);  // no output registers or gives up its temporary meanwhile
      std::error_code ec;
      for (const auto& p : r.temporaries) std::filesystem::remove_all(p, ec);
      ::_exit(128 + sig);
    }).detach();
  });
}

}  // namespace loco
