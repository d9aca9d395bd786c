// loco-merge: merge model files (linear, SLERP, task arithmetic, TIES, DARE, model stock) tensor by tensor.
#include <optional>
#include <string>
#include <vector>

#include "loco/cli/tool.hpp"
#include "loco/core/error.hpp"
#include "loco/core/spec.hpp"
#include "loco/merge/merge.hpp"

int main(int argc, char** argv) {
  namespace mg = loco::merge;
  loco::cli::Tool tool("loco-merge", "Merge model files with mergekit's methods, one tensor at a time");
  tool.set_description(
      "Inputs may be loco HDF5, safetensors or PyTorch .pt files (any mix); the output format follows OUT's extension. "
      "Parameters and defaults are mergekit's, so a recipe moves across: linear (normalize on), slerp (--t), "
      "task_arithmetic (base + lambda*sum w_i delta_i), ties (trim to --density by magnitude, elect signs, disjoint "
      "mean), dare_linear and dare_ties (random drop with L1 rescale, mask seeded by --seed and the tensor name), "
      "model_stock. The arithmetic is float32; the output keeps the dtypes of the reference (--base, else the first "
      "model), whose integer tensors are copied. Tensor names, shapes and model configs must agree; each difference "
      "is named. Memory holds one tensor per input at a time (the output is written in row blocks).\n\n"
      "SETTING (--t, --density, --lambda), as mergekit's parameters: a number; a gradient V1,V2,... interpolated "
      "over the layers (layer i of N sits at i/(N-1); tensors before the first layer at 0, after the last at 1; "
      "layers are name parts layers.I., blocks.I., h.I., layer.I.); or FILTER:VALUE, repeated, tried in order, "
      "where FILTER is a substring of the tensor name and a value without a filter applies to every tensor.");
  tool.add_example("loco-merge --method linear -o avg.h5 a.h5 b.h5 c.h5", "Uniform average of three models.");
  tool.add_example(
      "loco-merge --method ties --base base.safetensors --density 0.5 --weights 1,0.5 -o m.safetensors "
      "ft1.safetensors ft2.pt",
      "TIES merge of two fine-tunes, one of them a PyTorch checkpoint.");
  tool.add_example("loco-merge --method slerp --t 0.3 --base a.h5 -o s.h5 b.h5",
                   "Spherical interpolation, 30% of the way to b.");
  tool.add_example(
      "loco-merge --method slerp --base a.h5 --t self_attn:0,0.5,0.3,0.7,1 --t mlp:1,0.5,0.7,0.3,0 --t 0.5 "
      "-o s.h5 b.h5",
      "mergekit's classic SLERP recipe: attention and MLP follow opposite layer gradients.");
  auto& app = tool.app();
  std::string method = "linear", out, weights_text;
  mg::MergeOptions opt;
  std::vector<std::string> models;
  std::vector<std::string> density, lambda, t;
  bool normalize = false, no_normalize = false, rescale = false, no_rescale = false;
  app.add_option("--method", method, "Merge method")
      ->check(CLI::IsMember({"linear", "slerp", "task_arithmetic", "ties", "dare_linear", "dare_ties", "model_stock"}))
      ->capture_default_str();
  app.add_option("--base", opt.base, "Base model: task vectors are taken against it (slerp: the t = 0 end)");
  app.add_option("--weights", weights_text, "Per-model weights w1,w2,... (one per MODEL; default 1 each)");
  app.add_option("--density", density, "Fraction of each task vector kept (ties, dare_*; default 1); a SETTING")
      ->type_name("SETTING");
  app.add_option("--lambda", lambda,
                 "Scale of the merged task vector (task_arithmetic, ties, dare_*; default 1); a SETTING")
      ->type_name("SETTING");
  app.add_option("--t", t, "Interpolation factor (slerp); a SETTING")->type_name("SETTING");
  app.add_option("--seed", opt.seed, "Seed of the DARE masks")->capture_default_str();
  app.add_flag("--normalize", normalize, "Divide by the sum of weights (default on for linear and ties)");
  app.add_flag("--no-normalize", no_normalize, "Do not divide by the sum of weights");
  app.add_flag("--rescale", rescale, "Rescale sparsified task vectors to their L1 norm (default on for dare_*)");
  app.add_flag("--no-rescale", no_rescale, "Do not rescale sparsified task vectors");
  app.add_flag("--variance-correct", opt.variance_correct,
               "linear: restore the inputs' mean per-tensor variance in the average (Tian et al. 2024)");
  app.add_flag("--allow-missing", opt.allow_missing,
               "Carry a tensor some model lacks through from the reference instead of refusing");
  loco::cli::add_output_option(app, out, "merged model (.h5 or .safetensors; '-' for stdout)");
  app.add_option("MODEL", models, "Models to merge")->required();
  tool.group(loco::cli::Group::Inputs, {"--base"});
  return tool.run(argc, argv, [&] {
    opt.method = *mg::parse_method(method);
    if (normalize && no_normalize) throw loco::Error(loco::ErrorKind::Usage, "--normalize and --no-normalize together");
    if (rescale && no_rescale) throw loco::Error(loco::ErrorKind::Usage, "--rescale and --no-rescale together");
    if (normalize || no_normalize) opt.normalize = normalize;
    if (rescale || no_rescale) opt.rescale = rescale;
    if (!density.empty()) opt.density = mg::parse_setting("--density", density);
    if (!lambda.empty()) opt.lambda = mg::parse_setting("--lambda", lambda);
    if (!t.empty()) opt.t = mg::parse_setting("--t", t);
    if (!weights_text.empty()) opt.weights = loco::parse_reals(weights_text, "--weights");
    mg::merge_files(models, out, opt);
    return 0;
  });
}
