// Helpers shared by the unit tests of every concern.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <string_view>

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

}  // namespace loco::test
