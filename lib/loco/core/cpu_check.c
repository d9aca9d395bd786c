#define _GNU_SOURCE /* program_invocation_short_name */
/* The start-up CPU check (see cpu.hpp). Compiled for baseline x86-64 whatever the build's flags
 * (lib/loco/core/CMakeLists.txt), and written in C so that no inline C++ function shared with
 * the natively compiled code can be linked in here: nothing before the check may need an
 * instruction the CPU lacks. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__clang__)
#include <cpuid.h>
#endif

#ifndef LOCO_CPU_TARGET
#define LOCO_CPU_TARGET "x86-64 (portable)"
#endif

extern const char loco_cpu_build_features_list[];

const char* loco_cpu_build_features(void) {
  const char* s = loco_cpu_build_features_list;
  return *s == ' ' ? s + 1 : s;
}

const char* loco_cpu_build_target(void) { return LOCO_CPU_TARGET; }

/* Bit `bit` of register `reg` (0 EAX, 1 EBX, 2 ECX, 3 EDX) of CPUID leaf/subleaf (Intel SDM vol. 2A,
 * CPUID; AMD APM vol. 3, E.3). For the names clang 14's __builtin_cpu_supports does not know (the
 * fuzz builds use clang); the vector ones also need their base's OS support, which the builtin checks. */
#if defined(__clang__)
static int cpuid_bit(unsigned leaf, unsigned sub, int reg, int bit) {
  unsigned r[4] = {0, 0, 0, 0};
  if (!__get_cpuid_count(leaf, sub, &r[0], &r[1], &r[2], &r[3])) return 0;
  return (int)((r[reg] >> bit) & 1u);
}
#endif

/* __builtin_cpu_supports takes a literal, hence one case per name. An unknown name counts as
 * missing: a list the check cannot verify must not pass silently. */
static int cpu_has(const char* f) {
#define LOCO_CPU_HAS(name) \
  if (strcmp(f, name) == 0) return __builtin_cpu_supports(name) != 0
#define LOCO_CPU_BIT(name, test) \
  if (strcmp(f, name) == 0) return (test)
  LOCO_CPU_HAS("sse3");
  LOCO_CPU_HAS("ssse3");
  LOCO_CPU_HAS("sse4.1");
  LOCO_CPU_HAS("sse4.2");
  LOCO_CPU_HAS("sse4a");
  LOCO_CPU_HAS("popcnt");
#if defined(__clang__)
  LOCO_CPU_BIT("lzcnt", cpuid_bit(0x80000001u, 0, 2, 5));
  LOCO_CPU_BIT("movbe", cpuid_bit(1, 0, 2, 22));
  LOCO_CPU_BIT("adx", cpuid_bit(7, 0, 1, 19));
  LOCO_CPU_BIT("sha", cpuid_bit(7, 0, 1, 29));
  LOCO_CPU_BIT("f16c", cpuid_bit(1, 0, 2, 29) && __builtin_cpu_supports("avx"));
  LOCO_CPU_BIT("avxvnni", cpuid_bit(7, 1, 0, 4) && __builtin_cpu_supports("avx2"));
  LOCO_CPU_BIT("vaes", cpuid_bit(7, 0, 2, 9) && __builtin_cpu_supports("avx"));
  LOCO_CPU_BIT("avx512fp16", cpuid_bit(7, 0, 3, 23) && __builtin_cpu_supports("avx512f"));
#else
  LOCO_CPU_HAS("lzcnt");
  LOCO_CPU_HAS("movbe");
  LOCO_CPU_HAS("adx");
  LOCO_CPU_HAS("sha");
  LOCO_CPU_HAS("f16c");
  LOCO_CPU_HAS("avxvnni");
  LOCO_CPU_HAS("vaes");
  LOCO_CPU_HAS("avx512fp16");
#endif
  LOCO_CPU_HAS("bmi");
  LOCO_CPU_HAS("bmi2");
  LOCO_CPU_HAS("aes");
  LOCO_CPU_HAS("pclmul");
  LOCO_CPU_HAS("fma");
  LOCO_CPU_HAS("fma4");
  LOCO_CPU_HAS("xop");
  LOCO_CPU_HAS("avx");
  LOCO_CPU_HAS("avx2");
  LOCO_CPU_HAS("vpclmulqdq");
  LOCO_CPU_HAS("gfni");
  LOCO_CPU_HAS("avx512f");
  LOCO_CPU_HAS("avx512cd");
  LOCO_CPU_HAS("avx512vl");
  LOCO_CPU_HAS("avx512bw");
  LOCO_CPU_HAS("avx512dq");
  LOCO_CPU_HAS("avx512ifma");
  LOCO_CPU_HAS("avx512vbmi");
  LOCO_CPU_HAS("avx512vbmi2");
  LOCO_CPU_HAS("avx512vnni");
  LOCO_CPU_HAS("avx512bitalg");
  LOCO_CPU_HAS("avx512vpopcntdq");
  LOCO_CPU_HAS("avx512bf16");
  LOCO_CPU_HAS("avx512vp2intersect");
#undef LOCO_CPU_HAS
#undef LOCO_CPU_BIT
  return 0;
}

int loco_cpu_missing(const char* features, char* out, size_t size) {
  __builtin_cpu_init();
  int n = 0;
  size_t used = 0;
  if (size > 0) out[0] = '\0';
  const char* p = features;
  while (*p != '\0') {
    while (*p == ' ') ++p;
    const char* end = p;
    while (*end != '\0' && *end != ' ') ++end;
    if (end == p) break;
    char name[32];
    const size_t len = (size_t)(end - p);
    const int fits = len < sizeof name;
    if (fits) {
      memcpy(name, p, len);
      name[len] = '\0';
    }
    if (!fits || !cpu_has(name)) {
      ++n;
      if (used + len + 2 <= size) {
        if (used > 0) out[used++] = ' ';
        memcpy(out + used, p, len);
        used += len;
        out[used] = '\0';
      }
    }
    p = end;
  }
  return n;
}

/* Runs before every C++ static constructor of the program (priority 101; the natively compiled
 * code may use the build's instructions anywhere after this). Exit code 2: the command cannot work
 * as invoked on this machine and retrying it here never helps, which is what a usage error says;
 * it is not an input file's fault (4), not transient like I/O (3), not a bug in loco (70). */
__attribute__((constructor(101))) static void loco_cpu_check(void) {
  char missing[512];
  if (loco_cpu_missing(loco_cpu_build_features(), missing, sizeof missing) == 0) return;
  fprintf(stderr,
          "%s: error: this CPU lacks %s, which this build of loco needs (compiled for %s); "
          "run a build made on this machine, or one made with LOCO_PORTABLE=1 for every node\n",
          program_invocation_short_name, missing, loco_cpu_build_target());
  _exit(2);
}
