// Producer string and timestamps recorded in written files.
#include "loco/core/provenance.hpp"

#include <ctime>

#include <fmt/format.h>

namespace loco {
namespace {
std::string g_producer = "loco " LOCO_VERSION;

// Quotes an argument for a POSIX shell when it needs it, so the command line can be rerun.
std::string shell_quote(const std::string& a) {
  if (!a.empty() && a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") ==
                        std::string::npos)
    return a;
  std::string q = "'";
  for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}
}  // namespace

void set_producer(std::string_view tool, const std::vector<std::string>& argv) {
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + shell_quote(a);
  g_producer = fmt::format("{} {}: {}", tool, LOCO_VERSION, cmd);
}

const std::string& producer() { return g_producer; }

std::string utc_timestamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace loco
