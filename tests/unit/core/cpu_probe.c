/* A program built like a loco tool but whose build feature list names an extension no CPU has:
 * its definition of the list takes the place of the library's (cpu_target.c is then not linked),
 * so the start-up check of cpu_check.c must refuse it before main runs (test_cpu.cpp). */
const char loco_cpu_build_features_list[] = " sse3 no-such-extension";

const char* loco_cpu_build_target(void);

int main(void) { return loco_cpu_build_target()[0] == '\0' ? 3 : 0; /* never reached */ }
