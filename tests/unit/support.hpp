// Helpers shared by the unit tests of every concern.
#pragma once

#include <stdlib.h>

#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>

#include "loco/core/error.hpp"
#include "loco/io/output.hpp"

namespace loco::test {

// A fresh folder under /tmp, removed with its content at the end of the scope. It also forgets
// the inputs registered by the test, so files read in one case can be outputs of the next.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(std::string_view tag = "test") {
    std::string tmpl = "/tmp/loco-" + std::string(tag) + "-XXXXXX";
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    io::forget_inputs();
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// Runs f and requires it to throw loco::Error of the given kind whose message holds every needle.
template <typename F>
void require_error(F&& f, ErrorKind kind, std::initializer_list<std::string_view> needles) {
  try {
    f();
  } catch (const Error& e) {
    const std::string what = e.what();
    BOOST_TEST_INFO("message: " << what);
    BOOST_CHECK(e.kind() == kind);
    for (std::string_view n : needles) {
      BOOST_TEST_INFO("expected to find: " << n << " in: " << what);
      BOOST_CHECK(what.find(n) != std::string::npos);
    }
    return;
  }
  BOOST_ERROR("expected a loco::Error, none was thrown");
}

}  // namespace loco::test
