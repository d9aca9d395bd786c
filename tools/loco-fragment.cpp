// loco-fragment: split a model into Streaming DiLoCo's strided fragments, list them, join them back.
#include <fmt/format.h>

#include "loco/cli/tool.hpp"
#include "loco/core/error.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/source.hpp"
#include "loco/model/model.hpp"
#include "loco/train/fragment.hpp"

int main(int argc, char** argv) {
  loco::cli::Tool tool("loco-fragment",
                       "Split a model into strided fragments, list them, or join fragments into a model");
  tool.set_description(
      "Streaming DiLoCo synchronises one fragment of the model at a time. Fragment p of P holds the transformer "
      "blocks (MLP layers) p, p+P, p+2P, ...; a GPT's embeddings go with block 0 and its final norm and head with "
      "the last block. A fragment file is a model file (kind model, the whole model's model_config, attributes "
      "fragment and fragments) holding only its tensors and, when the model has one, their outer optimizer state, "
      "so loco-aggregate takes it as --model with deltas written by loco-worker --delta-base. --join puts the "
      "fragments of one model back together (the outer state too when all fragments are at the same outer step). "
      "--mix puts a fragment's new global values into a worker's model, theta <- (1-ALPHA)*global + ALPHA*theta "
      "(what loco-worker --mix does before its steps), for workers that are not loco-worker.");
  tool.add_example("loco-fragment --fragments 2 --list round-0.h5", "Which tensor goes to which fragment.");
  tool.add_example("loco-fragment --fragments 2 --index 1 round-0.h5 -o frag-1/round-0.h5", "Write fragment 1 of 2.");
  tool.add_example("loco-fragment --join -o model.h5 frag-0/round-6.h5 frag-1/round-6.h5", "The whole model again.");
  tool.add_example("loco-fragment --mix frag-0/round-3.h5 --mixing 0.5 local.h5 -o start.h5",
                   "A worker's next start: fragment 0's new global values mixed into its own parameters.");
  auto& app = tool.app();
  std::int64_t fragments = 0, index = -1;
  bool join = false, list = false;
  double mixing = 0.0;
  std::string out, mix;
  std::vector<std::string> files;
  app.add_option("--fragments", fragments, "Number of fragments P (at most the model's blocks or layers)")
      ->check(CLI::PositiveNumber)
      ->type_name("P");
  app.add_option("--index", index, "Split: the fragment to write, 0 to P-1")
      ->check(CLI::NonNegativeNumber)
      ->type_name("p");
  app.add_flag("--list", list, "Print the assignment: fragment, tensor, shape, parameters; then each fragment's total");
  app.add_flag("--join", join, "Join the fragment files FILE... into one model file");
  app.add_option("--mix", mix, "Mix this fragment file's values into the model FILE (Streaming DiLoCo's merge)")
      ->type_name("FRAGMENT");
  auto* mixing_opt =
      app.add_option("--mixing", mixing, "With --mix: the weight ALPHA of the model's own values, in [0, 1]")
          ->type_name("ALPHA");
  loco::cli::output_path(
      app.add_option("-o,--output", out, "The fragment or joined model file ('-' for stdout); written atomically")
          ->type_name("FILE"));
  app.add_option("FILE", files, "The model to split or list, or the fragment files to join")->required();
  return tool.run(argc, argv, [&] {
    using loco::ErrorKind;
    using loco::throw_error;
    if (join + list + !mix.empty() > 1) throw_error(ErrorKind::Usage, "--join, --list and --mix exclude each other");
    if (mixing_opt->count() > 0 && mix.empty()) throw_error(ErrorKind::Usage, "--mixing needs --mix");
    if (!mix.empty()) {
      if (out.empty() || files.size() != 1 || fragments != 0 || index >= 0)
        throw_error(ErrorKind::Usage, "--mix takes one model FILE and -o,--output (no --fragments or --index)");
      loco::train::mix_fragment_file(files[0], mix, mixing, out);
      return 0;
    }
    if (join) {
      if (out.empty()) throw_error(ErrorKind::Usage, "--join needs -o,--output");
      if (fragments != 0 || index >= 0) throw_error(ErrorKind::Usage, "--join takes no --fragments or --index");
      loco::train::join_fragments(files, out);
      return 0;
    }
    if (files.size() != 1) throw_error(ErrorKind::Usage, "one model file to split or list, got {}", files.size());
    if (fragments == 0) throw_error(ErrorKind::Usage, "--fragments P is required to split or list");
    if (list) {
      if (!out.empty() || index >= 0) throw_error(ErrorKind::Usage, "--list takes no -o or --index");
      const auto src = loco::io::open_source(files[0]);
      loco::io::expect_kind(*src, {loco::io::Kind::Model});
      const auto config = loco::model::ModelConfig::parse(loco::io::model_config(*src));
      const auto frag = loco::train::fragment_assignment(config, fragments);
      const auto specs = loco::model::param_specs(config);
      std::vector<std::int64_t> tensors(static_cast<std::size_t>(fragments)), params(tensors.size());
      for (std::size_t i = 0; i < specs.size(); ++i) {
        const auto n = loco::shape_numel(specs[i].shape);
        fmt::print("{}\t{}\t{}\t{}\n", frag[i], specs[i].name, loco::shape_string(specs[i].shape), n);
        tensors[static_cast<std::size_t>(frag[i])] += 1;
        params[static_cast<std::size_t>(frag[i])] += n;
      }
      for (std::size_t p = 0; p < tensors.size(); ++p)
        fmt::print("# fragment {}: {} tensors, {} parameters\n", p, tensors[p], params[p]);
      return 0;
    }
    if (index < 0) throw_error(ErrorKind::Usage, "--index p is required to split (or give --list)");
    if (out.empty()) throw_error(ErrorKind::Usage, "splitting needs -o,--output");
    loco::train::split_fragment(files[0], fragments, index, out);
    return 0;
  });
}
