// The instruction sets a build of loco was compiled for, and the start-up check that refuses to
// run on a CPU that lacks one of them (instead of dying later with SIGILL). The check itself is C
// compiled for baseline x86-64 (cpu_check.c), so it runs on any CPU; the feature list is compiled
// with the build's own flags (cpu_target.c), so it names exactly what the compiler could use.
#pragma once

#include <cstddef>

extern "C" {
// GCC's names (as __builtin_cpu_supports spells them) of the extensions beyond baseline x86-64
// that the build's flags enable, space-separated; "" for a portable build.
const char* loco_cpu_build_features(void);
// What the build was compiled for: "native (znver3 and the extensions of the CPU of HOST)",
// "x86-64-v3" (LOCO_MARCH) or "x86-64 (portable)".
const char* loco_cpu_build_target(void);
// Writes the features of the space-separated list `features` that the running CPU lacks to `out`
// (space-separated, NUL-terminated, truncated to `size`) and returns how many there are.
int loco_cpu_missing(const char* features, char* out, std::size_t size);
}
