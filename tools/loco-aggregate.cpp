// loco-aggregate: reduce N delta files (dense or compressed) and apply the outer optimizer, writing the
// next global model.
#include <fstream>
#include <iostream>

#include "loco/aggregate/aggregate.hpp"
#include "loco/cli/tool.hpp"
#include "loco/core/error.hpp"
#include "loco/io/output.hpp"

int main(int argc, char** argv) {
  namespace agg = loco::aggregate;
  loco::cli::Tool tool("loco-aggregate", "Average delta files and apply the outer optimizer to the global model");
  tool.set_description(
      "Reads the global model of round r (with the outer optimizer state in /state) and N delta files "
      "(delta = theta_global - theta_local), dense or compressed by loco-compress (decoded one tensor at a time; not with "
      "ef21 or econtrol feedback, whose files need the receiver's estimate), averages the deltas in a fixed order (by "
      "worker id, then path) in float64, and "
      "applies the outer optimizer theta <- theta - lr*f(mean delta). Writes the model of round r+1 with its new state atomically. "
      "Deltas must come from this global model (base_checksum); with --allow-stale deltas of older rounds are "
      "weighted by (1+s)^-a. Deltas holding NaN or Inf are dropped and named. Too few valid deltas for "
      "--min-deltas exits 1 and writes nothing. Everything is streamed block by block: memory does not grow "
      "with the number of deltas. --reduce contributor-mean averages each element over the deltas that selected it "
      "(topk, randk; dct_topk over its DCT coefficients, as DeMo) and leaves 0 where none did; dense deltas select "
      "everything. --clip median-norm first scales each delta's tensor by min(1, median norm / its norm) (SparseLoCo; "
      "the median of an even count is the mean of the two middle norms). The rule is recorded in the output "
      "(attributes reduction, clip) and the summary, which also gives each delta's payload_bytes.");
  tool.add_example("loco-aggregate --model global-3.h5 -o global-4.h5 delta-*.h5",
                   "One DiLoCo outer step (Nesterov, lr 0.7, momentum 0.9).");
  tool.add_example("loco-aggregate --model g.h5 -o g2.h5 --reduce weighted-mean --outer sgd d*.h5",
                   "FedAvg: sample-weighted mean, outer SGD with lr 1.");
  tool.add_example("loco-aggregate --model g.h5 -o g2.h5 --reduce contributor-mean --clip median-norm --outer sgd:lr=1 c*.h5",
                   "SparseLoCo: compressed top-k deltas, mean over contributors after median-norm clipping.");
  auto& app = tool.app();
  std::string model, out, reduce = "mean", clip = "none", outer = "nesterov", summary;
  std::vector<std::string> deltas;
  double outer_lr = -1, momentum = -1, stale_exp = 0.5;
  std::int64_t min_deltas = 1;
  std::size_t block_bytes = std::size_t{1} << 20;
  bool allow_stale = false, json = false;
  app.add_option("--model", model, "Global model of round r, with its outer optimizer state")->required();
  loco::cli::add_output_option(app, out, "next global model (round r+1)");
  app.add_option("DELTA", deltas, "Delta files, dense or compressed")->required();
  app.add_option("--reduce", reduce,
                 "Reduction: mean, weighted-mean by the deltas' samples, or contributor-mean (per element, over the "
                 "deltas that selected it)")
      ->check(CLI::IsMember({"mean", "weighted-mean", "contributor-mean"}))->capture_default_str();
  app.add_option("--clip", clip, "Per-tensor clipping before reducing: none, or median-norm (scale to the median norm)")
      ->check(CLI::IsMember({"none", "median-norm"}))->capture_default_str();
  app.add_option("--outer", outer, "Outer optimizer: sgd, momentum, nesterov, adam, fedavgm, fedadagrad, fedadam, "
                 "fedyogi, delayed_nesterov, or a spec such as nesterov:lr=0.7,momentum=0.9")->capture_default_str();
  app.add_option("--outer-lr", outer_lr, "Outer learning rate (overrides the spec's)")->check(CLI::NonNegativeNumber);
  app.add_option("--momentum", momentum, "Outer momentum (overrides the spec's)")->check(CLI::Range(0.0, 1.0));
  app.add_option("--min-deltas", min_deltas, "Quorum: fail (exit 1, nothing written) with fewer valid deltas")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("--allow-stale", allow_stale, "Accept deltas from older rounds, weighted by (1+s)^-a");
  app.add_option("--staleness-exponent", stale_exp, "a in the staleness weight (1+s)^-a")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_flag("--json", json, "Print the summary as JSON on stdout");
  app.add_option("--summary", summary, "Write the JSON summary to this file");
  app.add_option("--block-bytes", block_bytes, "Bytes of each delta read at a time (does not change the result)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  return tool.run(argc, argv, [&] {
    agg::AggregateOptions opt;
    opt.reduce = agg::parse_reduction(reduce);
    opt.clip = agg::parse_clip(clip);
    opt.outer = loco::optim::parse_outer_spec(outer);
    if (outer_lr >= 0) opt.outer.lr = outer_lr;
    if (momentum >= 0) {
      using K = loco::optim::OptimizerKind;
      const K k = opt.outer.kind;
      if (k != K::Momentum && k != K::Nesterov && k != K::DelayedNesterov)
        throw loco::Error(loco::ErrorKind::Usage, "--momentum: the outer optimizer " + opt.outer.name + " has no momentum");
      opt.outer.momentum = momentum;
    }
    loco::optim::validate_spec(opt.outer);
    opt.min_deltas = min_deltas;
    opt.allow_stale = allow_stale;
    opt.staleness_exponent = stale_exp;
    opt.block_bytes = block_bytes;
    if (!summary.empty()) loco::io::check_not_input(summary);
    const agg::AggregateSummary s = agg::aggregate(model, deltas, out, opt);
    const std::string text = agg::summary_json(s);
    if (json) std::cout << text << '\n';
    if (!summary.empty()) {
      std::ofstream f(summary);
      f << text << '\n';
      if (!f.flush()) throw loco::Error(loco::ErrorKind::Io, summary + ": cannot write the summary");
    }
    return 0;
  });
}
