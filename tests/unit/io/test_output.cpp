// Atomic outputs: temporary names, rename on commit, cleanup on failure, inputs never overwritten.
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>

#include "loco/core/error.hpp"
#include "loco/io/output.hpp"

namespace fs = std::filesystem;
using namespace loco;

BOOST_AUTO_TEST_SUITE(atomic_output)

BOOST_AUTO_TEST_CASE(commit_renames_and_abandon_removes) {
  char tmpl[] = "/tmp/loco-out-XXXXXX";
  const fs::path dir = mkdtemp(tmpl);
  const std::string final_path = (dir / "x.bin").string();
  {
    io::AtomicOutput out(final_path);
    BOOST_TEST(fs::path(out.temp_path()).parent_path() == dir, "temporary file beside the final one");
    std::ofstream(out.temp_path()) << "new";
    BOOST_TEST(!fs::exists(final_path), "nothing under the final name before commit");
    out.commit();
  }
  BOOST_TEST(fs::exists(final_path));
  {
    io::AtomicOutput out(final_path);
    std::ofstream(out.temp_path()) << "half";
  }
  std::string content;
  std::ifstream(final_path) >> content;
  BOOST_TEST(content == "new", "an abandoned output leaves the old file as it was");
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  BOOST_TEST(files == 1u, "and no temporary file");
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(an_input_is_never_an_output) {
  char tmpl[] = "/tmp/loco-out-XXXXXX";
  const fs::path dir = mkdtemp(tmpl);
  const std::string in = (dir / "in.h5").string();
  std::ofstream(in) << "data";
  io::register_input(in);
  BOOST_CHECK_THROW(io::AtomicOutput(dir.string() + "/./in.h5"), Error);
  fs::create_symlink(in, dir / "link.h5");
  BOOST_CHECK_THROW(io::AtomicOutput((dir / "link.h5").string()), Error);
  BOOST_CHECK_NO_THROW(io::AtomicOutput((dir / "other.h5").string()));
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_SUITE_END()
