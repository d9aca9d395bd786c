// loco-worker: H inner optimizer steps from the global model on one shard; writes the delta and the worker state.
#include <unistd.h>

#include "loco/cli/tool.hpp"
#include "loco/core/log.hpp"
#include "loco/optim/optimizer.hpp"
#include "loco/train/worker.hpp"

int main(int argc, char** argv) {
  loco::cli::Tool tool("loco-worker", "Run H inner steps on a shard and write the delta (pseudo-gradient)");
  tool.set_description(
      "Reads the global model of this round and the worker's shard, runs --steps optimizer steps (AdamW by default, "
      "as DiLoCo's inner optimizer), and writes the delta = global - local parameters with its sample count, round, "
      "worker id, loss statistics and the checksum of the global model it started from. The optimizer state "
      "persists across rounds in --state, which is read when it exists and replaced afterwards. The same inputs and "
      "seed give a bit-identical delta whatever --threads. A non-finite loss stops the run with exit 5 and nothing "
      "written. Streaming DiLoCo: --model is the worker's own local parameters (from --save-local), --mix puts a "
      "fragment's new global tensors back with --mixing alpha, --delta-base sends only the fragment's delta, taken "
      "--overlap TAU steps before the end; loco-fragment splits and joins the fragment files. Federated: --prox-mu MU "
      "adds FedProx's MU*(theta - theta_model) to each gradient; --scaffold-control C runs SCAFFOLD (option II, sgd "
      "only): each step uses g - c_i + c with the client's c_i from --state (zero at first), then "
      "c_i+ = c_i - c + (theta_model - theta_local)/(sum of the steps' learning rates) replaces c_i and "
      "--control-delta gets c_i - c_i+, so that loco-aggregate --model C --outer sgd:lr=|S|/N gives the server's new "
      "c. "
      "DeMo (--optimizer demo[:lr=LR,beta=B,chunk=C,k=K], defaults lr 4e-4, beta 0.999, chunk 64, k 32): one step per "
      "call and --steps 1 is required, because DeMo exchanges every step (the next gradient is taken after the global "
      "sign update, which only the aggregator makes; letting the local parameters move by the worker's own update "
      "between exchanges would be another algorithm). The step takes g at --model, updates the momentum kept in "
      "--state, delta <- beta*delta + lr_t*g (lr_t from --schedule), keeps q = the k largest coefficients of each "
      "2-D DCT tile of delta (tiles of s1 x s2, s = the largest divisor of the dimension <= C), removes them from the "
      "momentum, delta <- delta - IDCT(q), and writes q as a compressed delta file (dct_topk:chunk=C,k=K,tile=2d) "
      "recording lr_t in its lr attribute; loco-aggregate --reduce contributor-mean --outer sign:lr=lr_t then makes "
      "the next global model.");
  tool.add_example(
      "loco-worker --model round-3.h5 --data shard-00002-of-00004.h5 --steps 50 --state w2.state.h5 -o d2.h5",
      "One DiLoCo inner phase of worker 2.");
  tool.add_example(
      "loco-worker --model local-3.h5 --mix frag-1/round-2.h5 --mixing 0.5 --delta-base frag-0/round-2.h5 "
      "--steps 25 --overlap 1 --save-local local-4.h5 --data shard-00002-of-00004.h5 --state w2.state.h5 -o d2.h5",
      "One streaming phase: mix fragment 1, train 25 steps, send fragment 0's delta after 24.");
  tool.add_example(
      "loco-worker --model g.h5 --data client-007.h5 --optimizer sgd:lr=0.05 --steps 20 --scaffold-control "
      "c.h5 --control-delta dc7.h5 --state c7.state.h5 -o d7.h5",
      "One SCAFFOLD client update: the model delta and the control-variate delta.");
  tool.add_example(
      "loco-worker --model round-3.h5 --data shard-00002-of-00004.h5 --optimizer demo:lr=4e-4 --steps 1 "
      "--state w2.state.h5 -o d2.h5",
      "One DeMo step of worker 2: its compressed momentum update for this round.");
  auto& app = tool.app();
  loco::train::WorkerOptions o;
  std::int64_t worker = -1;
  app.add_option("--model", o.model, "Global model of this round")->required()->type_name("FILE");
  app.add_option("--data", o.data, "The worker's data shard")->required()->type_name("FILE");
  app.add_option("--steps", o.steps, "Inner steps H")->required()->check(CLI::PositiveNumber);
  loco::cli::add_output_option(app, o.output, "delta file");
  loco::cli::output_path(app.add_option("--state", o.state, "Worker state: read when it exists, replaced after the run")
                             ->type_name("FILE"));
  app.add_option("--batch", o.batch, "Examples (or windows of ctx+1 tokens) per step")
      ->default_val(32)
      ->check(CLI::PositiveNumber);
  app.add_option("--optimizer", o.optimizer,
                 "Inner optimizer: sgd|momentum|nesterov|adam|adamw|demo[:key=value,...] (demo needs --steps 1)")
      ->default_val("adamw");
  app.add_option(
         "--lr",
         [&o](const std::vector<std::string>& v) {
           o.optimizer += (o.optimizer.find(':') == std::string::npos ? ":lr=" : ",lr=") + v.at(0);
           return true;
         },
         "Inner learning rate (shorthand for --optimizer NAME:lr=LR; give it after --optimizer)")
      ->type_name("LR");
  app.add_option("--schedule", o.schedule,
                 "Learning-rate schedule over the cumulative step: constant|linear|cosine[:warmup=W,total=T,min_lr=M]")
      ->default_val("constant");
  app.add_option("--clip", o.clip, "Clip the global gradient norm to this (0: off)")
      ->default_val(0.0)
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", o.seed, "Seed of the batch stream (shared by all workers; the worker id separates them)")
      ->default_val(0);
  app.add_option("--worker", worker, "Worker id (default: the shard's 'shard' attribute)");
  loco::cli::output_path(
      app.add_option("--metrics", o.metrics, "Append per-step JSON lines here ('-' for stdout)")->type_name("FILE"));
  // Streaming DiLoCo: --model is the worker's own local parameters; one fragment is sent and mixed at a time.
  app.add_option("--mix", o.mix,
                 "Streaming: before the steps, mix this fragment's new global tensors into the parameters")
      ->type_name("FILE");
  app.add_option("--mixing", o.mixing, "Streaming: alpha of --mix, theta <- (1-alpha)*global + alpha*theta")
      ->default_val(0.0)
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--delta-base", o.delta_base,
                 "Streaming: the delta holds only this fragment file's tensors, taken against it (default: --model)")
      ->type_name("FILE");
  app.add_option("--overlap", o.overlap, "Streaming: take the delta TAU steps before the end, then keep training")
      ->default_val(0)
      ->check(CLI::NonNegativeNumber)
      ->type_name("TAU");
  loco::cli::output_path(
      app.add_option("--save-local", o.save_local, "Also write the local parameters after the steps (a model file)")
          ->type_name("FILE"));
  // Federated strategies: FedProx's proximal term, SCAFFOLD's control variates (scripts/fedavg).
  app.add_option("--prox-mu", o.prox_mu, "FedProx: add (mu/2)*||theta - theta_model||^2 to the loss (0: off)")
      ->default_val(0.0)
      ->check(CLI::NonNegativeNumber)
      ->type_name("MU");
  app.add_option("--scaffold-control", o.scaffold_control,
                 "SCAFFOLD: the server control variate c (a model file); steps use g - c_i + c, c_i is kept in --state")
      ->type_name("FILE");
  loco::cli::output_path(app.add_option("--control-delta", o.control_delta,
                                        "SCAFFOLD: write c_i - c_i+ here, a delta against --scaffold-control for "
                                        "loco-aggregate")
                             ->type_name("FILE"));
  tool.group(loco::cli::Group::Inputs, {"--model", "--data", "--state", "--mix", "--delta-base", "--scaffold-control"});
  tool.group(loco::cli::Group::Outputs, {"--metrics", "--save-local", "--control-delta"});
  auto optimizers = loco::optim::optimizer_names(false);
  optimizers.push_back("demo");  // loco::train's DeMo step (train/demo.hpp), not an optim table entry
  tool.complete_words("--optimizer", std::move(optimizers));
  return tool.run(argc, argv, [&] {
    if (worker >= 0) o.worker = worker;
    o.progress = ::isatty(STDERR_FILENO) && loco::log::verbosity() >= 1;
    const auto r = loco::train::run_worker(o);
    loco::log::info("{} steps, loss {:.4f} -> {:.4f}, {} samples", o.steps, r.loss_first, r.loss_last, r.samples);
    return 0;
  });
}
