// The build's CPU feature list and the start-up check that refuses a CPU lacking one of them.
#include <sys/wait.h>

#include <boost/test/unit_test.hpp>

#include <array>
#include <cstdio>
#include <string>

#include "loco/core/cpu.hpp"

BOOST_AUTO_TEST_SUITE(cpu)

BOOST_AUTO_TEST_CASE(this_cpu_has_what_this_build_needs) {
  // The test runs, so the check passed at start-up: nothing may be missing.
  char out[512];
  BOOST_TEST(loco_cpu_missing(loco_cpu_build_features(), out, sizeof out) == 0);
  BOOST_TEST(std::string(out).empty());
  BOOST_TEST(std::string(loco_cpu_build_target()).size() > 0);
}

BOOST_AUTO_TEST_CASE(unknown_extensions_count_as_missing) {
  char out[512];
  BOOST_TEST(loco_cpu_missing("", out, sizeof out) == 0);
  // sse3 is on every x86-64 CPU made since 2005; names the check cannot verify are missing.
  BOOST_TEST(loco_cpu_missing(" sse3  no-such-a sse3 no-such-b ", out, sizeof out) == 2);
  BOOST_TEST(std::string(out) == "no-such-a no-such-b");
  // A name longer than any extension's is missing, not truncated into a known one.
  BOOST_TEST(loco_cpu_missing("sse3xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", out, sizeof out) == 1);
  // The list of names is cut to the buffer; the count is not.
  char small[12];
  BOOST_TEST(loco_cpu_missing("no-such-a no-such-b", small, sizeof small) == 2);
  BOOST_TEST(std::string(small) == "no-such-a");
}

BOOST_AUTO_TEST_CASE(a_binary_needing_a_missing_extension_refuses_to_start) {
  // LOCO_CPU_PROBE: cpu_probe.c linked against the library with its own feature list.
  FILE* p = ::popen(LOCO_CPU_PROBE " 2>&1", "r");
  BOOST_REQUIRE(p != nullptr);
  std::string text;
  std::array<char, 256> buf{};
  while (std::fgets(buf.data(), buf.size(), p) != nullptr) text += buf.data();
  const int status = ::pclose(p);
  BOOST_REQUIRE(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 2);
  BOOST_TEST_MESSAGE(text);
  BOOST_TEST(text.find("loco-cpu-probe: error: this CPU lacks no-such-extension,") == 0);
  BOOST_TEST(text.find("LOCO_PORTABLE=1") != std::string::npos);
  BOOST_TEST(text.find('\n') == text.size() - 1);  // one line
}

BOOST_AUTO_TEST_SUITE_END()
