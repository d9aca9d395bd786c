// loco-worker: H inner optimizer steps from the global model on one shard; writes the delta and the worker state.
#include <unistd.h>

#include "loco/cli/tool.hpp"
#include "loco/core/log.hpp"
#include "loco/train/worker.hpp"

int main(int argc, char** argv) {
  loco::cli::Tool tool("loco-worker", "Run H inner steps on a shard and write the delta (pseudo-gradient)");
  tool.set_description(
      "Reads the global model of this round and the worker's shard, runs --steps optimizer steps (AdamW by default, "
      "as DiLoCo's inner optimizer), and writes the delta = global - local parameters with its sample count, round, "
      "worker id, loss statistics and the checksum of the global model it started from. The optimizer state "
      "persists across rounds in --state, which is read when it exists and replaced afterwards. The same inputs and "
      "seed give a bit-identical delta whatever --threads. A non-finite loss stops the run with exit 5 and nothing "
      "written.");
  tool.add_example("loco-worker --model round-3.h5 --data shard-00002-of-00004.h5 --steps 50 --state w2.state.h5 -o d2.h5",
                   "One DiLoCo inner phase of worker 2.");
  auto& app = tool.app();
  loco::train::WorkerOptions o;
  std::int64_t worker = -1;
  app.add_option("--model", o.model, "Global model of this round")->required()->type_name("FILE");
  app.add_option("--data", o.data, "The worker's data shard")->required()->type_name("FILE");
  app.add_option("--steps", o.steps, "Inner steps H")->required()->check(CLI::PositiveNumber);
  loco::cli::add_output_option(app, o.output, "delta file");
  app.add_option("--state", o.state, "Worker state: read when it exists, replaced after the run")->type_name("FILE");
  app.add_option("--batch", o.batch, "Examples (or windows of ctx+1 tokens) per step")->default_val(32)->check(CLI::PositiveNumber);
  app.add_option("--optimizer", o.optimizer, "Inner optimizer: sgd|momentum|nesterov|adam|adamw[:key=value,...]")->default_val("adamw");
  app.add_option("--lr", [&o](const std::vector<std::string>& v) {
    o.optimizer += (o.optimizer.find(':') == std::string::npos ? ":lr=" : ",lr=") + v.at(0);
    return true;
  }, "Inner learning rate (shorthand for --optimizer NAME:lr=LR; give it after --optimizer)")->type_name("LR");
  app.add_option("--schedule", o.schedule, "Learning-rate schedule over the cumulative step: constant|linear|cosine[:warmup=W,total=T,min_lr=M]")
      ->default_val("constant");
  app.add_option("--clip", o.clip, "Clip the global gradient norm to this (0: off)")->default_val(0.0)->check(CLI::NonNegativeNumber);
  app.add_option("--seed", o.seed, "Seed of the batch stream (shared by all workers; the worker id separates them)")->default_val(0);
  app.add_option("--worker", worker, "Worker id (default: the shard's 'shard' attribute)");
  app.add_option("--metrics", o.metrics, "Append per-step JSON lines here ('-' for stdout)")->type_name("FILE");
  return tool.run(argc, argv, [&] {
    if (worker >= 0) o.worker = worker;
    o.progress = ::isatty(STDERR_FILENO) && loco::log::verbosity() >= 1;
    const auto r = loco::train::run_worker(o);
    loco::log::info("{} steps, loss {:.4f} -> {:.4f}, {} samples", o.steps, r.loss_first, r.loss_last, r.samples);
    return 0;
  });
}
