// loco-aggregate: reduce N delta files (dense or compressed; mean, robust rules, QFedAvg, with optional
// differential privacy) and apply the outer optimizer, writing the next global model; or, with --watch,
// apply deltas as they arrive in a folder (FedAsync, FedBuff, FedFix, delayed Nesterov).
#include <fstream>
#include <iostream>

#include "loco/aggregate/aggregate.hpp"
#include "loco/aggregate/watch.hpp"
#include "loco/cli/tool.hpp"
#include "loco/core/error.hpp"
#include "loco/io/output.hpp"
#include "loco/optim/optimizer.hpp"

int main(int argc, char** argv) {
  namespace agg = loco::aggregate;
  using loco::Error, loco::ErrorKind;
  loco::cli::Tool tool("loco-aggregate", "Reduce delta files and apply the outer optimizer to the global model");
  tool.set_description(
      "Reads the global model of round r (with the outer optimizer state in /state) and N delta files "
      "(delta = theta_global - theta_local), dense or compressed by loco-compress (with ef21 or econtrol feedback only "
      "given --ef21-state DIR, where the aggregator keeps each worker's estimate), "
      "reduces them in a fixed order (by worker id, then path) and applies the outer optimizer "
      "theta <- theta - lr*f(reduced delta), writing the model of round r+1 with its new state atomically. "
      "Reductions: mean, weighted-mean (by samples), contributor-mean (per element over the deltas that selected it: "
      "topk, randk, dct_topk as DeMo); robust rules median, trimmed-mean:beta=B, krum:f=F, multi-krum:f=F,m=M, "
      "geomedian, centered-clip:tau=T,iters=L (centre carried in /state/robust_center), bulyan:f=F, median-norm, flag, "
      "after pre-aggregators nnm[:f=F]+ or bucket:s=S+ (streamed, memory N x block); qfedavg:q=Q,lr=LR (q-FFL weights "
      "from each delta's loss_first). --dp-clip C clips each whole delta to norm C, divides the sum by m and adds "
      "Gaussian noise sigma = z*C/m (--dp-noise z); --dp-adaptive keeps C in /state@dp_clip and moves it toward the "
      "quantile of the norms. Deltas must come from this global model (base_checksum); with --allow-stale older ones "
      "are weighted by --staleness (constant, polynomial:a=A (default a 0.5), hinge:a=A,b=B, fedfix). Deltas "
      "holding NaN or Inf are dropped and named; too few valid deltas for --min-deltas exits 1 and writes nothing. "
      "--clip median-norm scales each tensor by min(1, median norm / its norm) first (SparseLoCo). "
      "With --watch DIR, -o is a folder: every DIR/*.h5 that appears is applied once (ledger OUTDIR/ledger.json, "
      "restart-safe), each update writes OUTDIR/model-RRRRRR.h5 and points OUTDIR/latest and OUTDIR/latest.h5 at it; "
      "--buffer K makes an update from K arrivals (FedBuff), --period S from what arrived every S seconds (FedFix); "
      "stop with --max-updates or --until FILE.");
  tool.add_example("loco-aggregate --model global-3.h5 -o global-4.h5 delta-*.h5",
                   "One DiLoCo outer step (Nesterov, lr 0.7, momentum 0.9).");
  tool.add_example("loco-aggregate --model g.h5 -o g2.h5 --reduce weighted-mean --outer sgd d*.h5",
                   "FedAvg: sample-weighted mean, outer SGD with lr 1.");
  tool.add_example("loco-aggregate --model g.h5 -o g2.h5 --reduce nnm+krum:f=2 --outer sgd d*.h5",
                   "Byzantine-robust: nearest-neighbour mixing, then Krum with f = 2.");
  tool.add_example("loco-aggregate --model g.h5 -o g2.h5 --outer sgd --dp-clip 1 --dp-noise 0.5 --dp-seed 7 d*.h5",
                   "Central DP: clip to norm 1, noise sigma = 0.5/m.");
  tool.add_example(
      "loco-aggregate --watch inbox --model g0.h5 -o models --outer sgd:lr=0.9 --staleness "
      "polynomial:a=0.5 --until inbox/STOP",
      "FedAsync on every arriving delta.");
  auto& app = tool.app();
  std::string model, out, reduce = "mean", clip = "none", outer = "nesterov", summary, staleness, adaptive, watch_dir,
                          until, ef21_state;
  std::vector<std::string> deltas;
  double outer_lr = -1, momentum = -1, dp_clip = 0, dp_noise = 0, period = 0, poll = 0.2;
  std::int64_t min_deltas = 1, dp_clients = 0, buffer = 1, max_updates = 0;
  std::uint64_t seed = 0, dp_seed = 0;
  std::size_t block_bytes = std::size_t{1} << 20;
  bool allow_stale = false, json = false;
  app.add_option("--model", model, "Global model of round r, with its outer optimizer state")->required();
  loco::cli::add_output_option(app, out, "next global model (round r+1); with --watch, the folder of model versions");
  app.add_option("DELTA", deltas, "Delta files, dense or compressed");
  app.add_option("--reduce", reduce,
                 "mean, weighted-mean, contributor-mean, qfedavg[:q=0.2,lr=0.1], or a robust rule such as median, "
                 "trimmed-mean:beta=0.2, krum:f=F, multi-krum:f=F,m=M, geomedian, centered-clip:tau=T,iters=L, "
                 "bulyan:f=F, median-norm, flag[:r=R], with nnm[:f=F]+ or bucket:s=S+ before it")
      ->capture_default_str();
  app.add_option("--clip", clip, "Per-tensor clipping before a mean: none, or median-norm (scale to the median norm)")
      ->check(CLI::IsMember({"none", "median-norm"}))
      ->capture_default_str();
  app.add_option("--outer", outer,
                 "Outer optimizer: sgd, momentum, nesterov, adam, fedavgm, fedadagrad, fedadam, "
                 "fedyogi, delayed_nesterov, sign (DeMo), or a spec such as nesterov:lr=0.7,momentum=0.9")
      ->capture_default_str();
  app.add_option("--outer-lr", outer_lr, "Outer learning rate (overrides the spec's)")->check(CLI::NonNegativeNumber);
  app.add_option("--momentum", momentum, "Outer momentum (overrides the spec's)")->check(CLI::Range(0.0, 1.0));
  app.add_option("--min-deltas", min_deltas, "Quorum: fail (exit 1, nothing written) with fewer valid deltas")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--allow-stale", allow_stale, "Accept deltas from older rounds, weighted by the staleness rule");
  app.add_option("--staleness", staleness, "Staleness rule: constant, polynomial[:a=0.5], hinge[:a=10,b=4], fedfix");
  app.add_option("--seed", seed, "Seed of randomized pre-aggregators (bucket)")->capture_default_str();
  app.add_option("--dp-clip", dp_clip,
                 "DP: clip each delta to this L2 norm over the whole update (first C with "
                 "--dp-adaptive)")
      ->check(CLI::PositiveNumber);
  app.add_option("--dp-noise", dp_noise, "DP noise multiplier z: sigma = z*C/m")->check(CLI::NonNegativeNumber);
  app.add_option("--dp-seed", dp_seed, "Seed of the DP noise (with the model's round and the tensor)")
      ->capture_default_str();
  app.add_option("--dp-clients", dp_clients, "DP: m, the number of sampled clients (default: the valid deltas)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--dp-adaptive", adaptive, "Adaptive clipping quantile=G,lr=E[,count-stddev=S] (0.5, 0.2, m/20)");
  loco::cli::output_path(
      app.add_option("--ef21-state", ef21_state,
                     "Folder of the aggregator's per-worker estimates g_i, which makes deltas "
                     "compressed with ef21 or econtrol feedback usable (g_i <- g_i + decoded delta)"));
  app.add_option("--watch", watch_dir, "Apply the delta files appearing in this folder as they arrive");
  app.add_option("--buffer", buffer, "--watch: deltas per update (FedBuff K)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--period", period, "--watch: update every this many seconds with what arrived (FedFix)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-updates", max_updates, "--watch: stop once the ledger holds this many updates")
      ->check(CLI::PositiveNumber);
  app.add_option("--until", until, "--watch: stop when this file exists (after applying what is there)");
  app.add_option("--poll", poll, "--watch: seconds between scans of the folder")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--json", json, "Print the summary as JSON on stdout (--watch: one line per update)");
  loco::cli::output_path(app.add_option("--summary", summary, "Write the JSON summary to this file"));
  app.add_option("--block-bytes", block_bytes, "Bytes of each delta read at a time (does not change the result)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  tool.group(loco::cli::Group::Inputs, {"--model", "--ef21-state"});
  tool.group(loco::cli::Group::Outputs, {"--json", "--summary"});
  tool.group(loco::cli::Group::Execution, {"--watch", "--until", "--poll", "--max-updates", "--block-bytes"});
  tool.complete_words("--outer", loco::optim::optimizer_names(true));
  tool.complete_words("--reduce", loco::aggregate::reduce_names());
  return tool.run(argc, argv, [&] {
    agg::AggregateOptions opt;
    agg::parse_reduce(reduce, opt);
    opt.clip = agg::parse_clip(clip);
    opt.outer = loco::optim::parse_outer_spec(outer);
    if (outer_lr >= 0) opt.outer.lr = outer_lr;
    if (momentum >= 0) {
      using K = loco::optim::OptimizerKind;
      const K k = opt.outer.kind;
      if (k != K::Momentum && k != K::Nesterov && k != K::DelayedNesterov)
        throw Error(ErrorKind::Usage, "--momentum: the outer optimizer " + opt.outer.name + " has no momentum");
      opt.outer.momentum = momentum;
    }
    loco::optim::validate_spec(opt.outer);
    opt.min_deltas = min_deltas;
    opt.allow_stale = allow_stale;
    if (!staleness.empty()) opt.staleness = agg::parse_staleness(staleness);
    opt.seed = seed;
    opt.dp.clip = dp_clip;
    opt.dp.noise_multiplier = dp_noise;
    opt.dp.seed = dp_seed;
    opt.dp.clients = dp_clients;
    opt.dp.adaptive = !adaptive.empty();
    opt.dp.adaptive_options = agg::parse_adaptive_clip(adaptive);
    opt.block_bytes = block_bytes;
    opt.ef21_state = ef21_state;
    if (!summary.empty()) loco::io::check_not_input(summary);
    if (!watch_dir.empty()) {
      if (!deltas.empty())
        throw Error(ErrorKind::Usage, "--watch takes its deltas from the folder, not DELTA arguments");
      agg::WatchOptions w{watch_dir, model, out, opt, buffer, period, max_updates, until, poll};
      if (period > 0 && !opt.staleness) w.aggregate.staleness = agg::parse_staleness("fedfix");
      const agg::WatchReport r = agg::watch(w, json ? &std::cout : nullptr);
      std::cerr << "loco-aggregate: " << r.updates << " update(s) this run, " << r.total_updates << " in all; "
                << r.applied << " applied, " << r.rejected << " rejected, " << r.pending << " pending; latest "
                << r.latest << '\n';
      return 0;
    }
    if (deltas.empty()) throw Error(ErrorKind::Usage, "no delta files given (or --watch DIR)");
    const agg::AggregateSummary s = agg::aggregate(model, deltas, out, opt);
    const std::string text = agg::summary_json(s);
    if (json) std::cout << text << '\n';
    if (!summary.empty()) {
      std::ofstream f(summary);
      f << text << '\n';
      if (!f.flush()) throw Error(ErrorKind::Io, summary + ": cannot write the summary");
    }
    return 0;
  });
}
