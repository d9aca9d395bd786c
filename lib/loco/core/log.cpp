// Diagnostic output state.
#include "loco/core/log.hpp"

#include <cstdio>

namespace loco::log {
namespace {
std::string g_program = "loco";
int g_verbosity = 1;
}  // namespace

void set_program(std::string_view name) { g_program = name; }
const std::string& program() { return g_program; }
void set_verbosity(int level) { g_verbosity = level; }
int verbosity() { return g_verbosity; }

void emit(std::string_view level, std::string_view message) {
  fmt::print(stderr, "{}: {}: {}\n", g_program, level, message);
}

}  // namespace loco::log
