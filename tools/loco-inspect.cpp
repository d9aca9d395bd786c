// loco-inspect: list a tensor file's tensors and attributes, statistics, checksums, or diff two files.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "loco/cli/tool.hpp"
#include "loco/core/error.hpp"
#include "loco/io/inspect.hpp"
#include "loco/io/source.hpp"

int main(int argc, char** argv) {
  loco::cli::Tool tool("loco-inspect", "Show the tensors, attributes, statistics and checksums of tensor files");
  tool.set_description(
      "Reads loco HDF5, safetensors (or a safetensors index over its shards), PyTorch .pt archives and DeepSpeed "
      "universal checkpoint folders (the format is taken from the content). Without options it lists "
      "each tensor's group, name, dtype, shape and size, and the file's attributes, including how it was made "
      "(producer). With --diff it compares two files tensor by tensor and exits 1 when they differ.");
  tool.add_example("loco-inspect --stats model.h5", "Tensors with min, max, mean, std, L2 norm and NaN/Inf counts.");
  tool.add_example("loco-inspect --diff --rtol 1e-6 a.h5 b.safetensors", "Exit 0 when the two agree within tolerance.");
  auto& app = tool.app();
  std::vector<std::string> files;
  loco::io::InspectOptions opt;
  loco::io::DiffOptions dopt;
  bool json = false, diff = false;
  app.add_option("FILE", files,
                 "Tensor file(s) to show ('-' for stdin); exactly two with --diff; --json gives an array for several")
      ->required();
  app.add_flag("--stats", opt.stats, "Per-tensor min, max, mean, std, L2 norm and NaN/Inf counts");
  app.add_flag("--checksum", opt.checksum, "Per-tensor content checksums and the checksum of /tensors");
  app.add_flag("--json", json, "Print JSON instead of text");
  app.add_flag("--diff", diff, "Compare two files; exit 1 when any tensor differs");
  app.add_option("--rtol", dopt.rtol, "With --diff: relative tolerance, |a-b| <= atol + rtol*|b|")
      ->default_val(0.0)
      ->check(CLI::NonNegativeNumber);
  app.add_option("--atol", dopt.atol, "With --diff: absolute tolerance")
      ->default_val(0.0)
      ->check(CLI::NonNegativeNumber);
  tool.group(loco::cli::Group::Outputs, {"--json"});
  return tool.run(argc, argv, [&] {
    if (diff) {
      if (files.size() != 2)
        loco::throw_error(loco::ErrorKind::Usage, "--diff takes exactly two files, got {}", files.size());
      auto a = loco::io::open_source(files[0]);
      auto b = loco::io::open_source(files[1]);
      const auto diffs = loco::io::diff_sources(*a, *b, dopt);
      fmt::print("{}", json ? loco::io::diff_json(diffs).dump(2) + "\n" : loco::io::diff_text(*a, *b, diffs));
      return diffs.empty() ? 0 : 1;
    }
    // One file: a JSON object; several: a JSON array of them.
    nlohmann::json all = nlohmann::json::array();
    for (const auto& f : files) {
      auto s = loco::io::open_source(f);
      if (json) all.push_back(loco::io::inspect_json(*s, opt));
      else fmt::print("{}", loco::io::inspect_text(*s, opt));
    }
    if (json) fmt::print("{}\n", (files.size() == 1 ? all[0] : all).dump(2));
    return 0;
  });
}
