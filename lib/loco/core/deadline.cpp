// The watchdog thread behind Deadline.
#include "loco/core/deadline.hpp"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "loco/core/error.hpp"
#include "loco/core/log.hpp"

namespace loco {
namespace {

using Clock = std::chrono::steady_clock;

struct Watchdog {
  std::mutex m;
  std::condition_variable cv;
  std::map<unsigned long, std::pair<Clock::time_point, std::string>> armed;
  std::set<std::string> temporaries;
  unsigned long next_id = 1;
  bool started = false;

  void run() {
    std::unique_lock lock(m);
    for (;;) {
      if (armed.empty()) {
        cv.wait(lock);
        continue;
      }
      auto first = armed.begin();
      for (auto it = armed.begin(); it != armed.end(); ++it)
        if (it->second.first < first->second.first) first = it;
      const auto when = first->second.first;
      if (Clock::now() < when) {
        cv.wait_until(lock, when);
        continue;
      }
      const std::string msg = log::program() + ": error: " + first->second.second + "\n";
      for (const auto& p : temporaries) ::unlink(p.c_str());
      (void)!::write(STDERR_FILENO, msg.data(), msg.size());
      ::_exit(exit_code(ErrorKind::BadInput));
    }
  }
};

Watchdog& watchdog() {
  static Watchdog* w = new Watchdog;  // never destroyed: its thread outlives static destructors
  return *w;
}

double default_limit() {
  const char* v = std::getenv("LOCO_PARSE_TIMEOUT");
  if (v == nullptr || *v == '\0') return 60;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  return end != v ? s : 60;
}

}  // namespace

Deadline::Deadline(std::string what, double seconds) {
  if (seconds < 0) seconds = default_limit();
  if (seconds <= 0) return;
  Watchdog& w = watchdog();
  std::lock_guard lock(w.m);
  if (!w.started) {
    std::thread([&w] { w.run(); }).detach();
    w.started = true;
  }
  id_ = w.next_id++;
  const auto limit = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  w.armed.emplace(id_, std::make_pair(Clock::now() + limit, std::move(what)));
  w.cv.notify_one();
}

Deadline::~Deadline() {
  if (id_ == 0) return;
  Watchdog& w = watchdog();
  std::lock_guard lock(w.m);
  w.armed.erase(id_);
  w.cv.notify_one();
}

void register_temporary(const std::string& path) {
  Watchdog& w = watchdog();
  std::lock_guard lock(w.m);
  w.temporaries.insert(path);
}

void unregister_temporary(const std::string& path) {
  Watchdog& w = watchdog();
  std::lock_guard lock(w.m);
  w.temporaries.erase(path);
}

}  // namespace loco
