// Diagnostics on stderr, prefixed with the tool's name; the library never writes to stdout.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace loco::log {

// Set once by the tool wrapper: the name printed before messages, and the verbosity
// (0 quiet: errors only; 1 default: warnings; 2 -v: info; 3 -vv: debug).
void set_program(std::string_view name);
const std::string& program();
void set_verbosity(int level);
int verbosity();

void emit(std::string_view level, std::string_view message);

template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (verbosity() >= 1) emit("warning", fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (verbosity() >= 2) emit("info", fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (verbosity() >= 3) emit("debug", fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace loco::log
