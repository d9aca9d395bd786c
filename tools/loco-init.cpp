// loco-init: build a model (logreg, mlp, gpt) from a JSON config or a preset and seed its parameters.
#include <fmt/format.h>

#include "loco/cli/tool.hpp"
#include "loco/core/error.hpp"
#include "loco/train/init.hpp"

int main(int argc, char** argv) {
  loco::cli::Tool tool("loco-init", "Build and seed a model from a JSON config or a preset");
  tool.set_description(
      "Writes a model file (kind model) whose model_config is the config with its defaults filled in, and whose "
      "parameters follow the models' definitions exactly: names and shapes as PyTorch's modules, initialization "
      "drawn from the counter-based generator under --seed (the same file on any machine). Configs are JSON objects "
      "such as {\"arch\":\"gpt\",\"vocab\":256,\"ctx\":128,\"d_model\":128,\"layers\":4,\"heads\":4} or "
      "{\"arch\":\"mlp\",\"sizes\":[784,256,256,10]}; presets live in share/loco/models/.");
  tool.add_example("loco-init --preset gpt-d128-l4 --seed 1 -o round-0.h5", "The benchmark GPT.");
  tool.add_example("loco-init --config '{\"arch\":\"logreg\",\"features\":784,\"classes\":10}' -o m.h5",
                   "Inline JSON.");
  auto& app = tool.app();
  loco::train::InitOptions o;
  bool list = false;
  app.add_option("--config", o.config, "Model config: a JSON file, or the JSON text itself")->type_name("JSON");
  app.add_option("--preset", o.preset, "A named config from the presets folder (see --list)");
  app.add_flag("--list", list, "List the presets and exit");
  app.add_option("--seed", o.seed, "Initialization seed")->default_val(0);
  loco::cli::output_path(app.add_option("-o,--output", o.output, "The model file ('-' for stdout); written atomically")
                             ->type_name("FILE"));
  tool.group(loco::cli::Group::Inputs, {"--config", "--preset"});
  return tool.run(argc, argv, [&] {
    if (list) {
      for (const auto& [name, json] : loco::train::list_presets()) fmt::print("{:<16} {}\n", name, json);
      return 0;
    }
    if (o.output.empty()) loco::throw_error(loco::ErrorKind::Usage, "-o,--output is required");
    loco::train::init_model(o);
    return 0;
  });
}
