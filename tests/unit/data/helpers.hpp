// Shared helpers of the data tests: a scratch folder, file writers, error-message checks.
#pragma once

#include <boost/test/unit_test.hpp>

#include "support.hpp"

#include <unistd.h>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "loco/core/error.hpp"

namespace loco_test {

// A fresh folder under the system temp dir, removed when the object dies.
class ScratchDir {
 public:
  explicit ScratchDir(std::string_view tag) {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("loco-data-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string file(std::string_view name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, std::string_view content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  BOOST_REQUIRE(out.good());
}

using loco::test::require_error;

}  // namespace loco_test
