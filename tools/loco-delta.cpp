// loco-delta: the delta Δ = θ_global − θ_local of a model trained by any program (PyTorch, say).
#include <optional>

#include "loco/cli/tool.hpp"
#include "loco/train/delta.hpp"

int main(int argc, char** argv) {
  loco::cli::Tool tool("loco-delta", "Make a delta from the global model and a locally trained model of any format");
  tool.set_description(
      "How a trainer of your own takes part in a loco pipeline: it reads the round's global model, trains, and saves "
      "its local model (safetensors, a torch.save state_dict, or loco HDF5); loco-delta writes the delta "
      "Delta = global - local that loco-aggregate, loco-compress, loco-inspect and loco-merge take, exactly as "
      "loco-worker would have written it. Every tensor of the global model's /tensors must be in the local file under "
      "the same name with the same shape, and nothing else (a local model_config, when present, must match); "
      "bfloat16 and float16 widen exactly to float32, float64 differences are rounded once. The delta records "
      "kind delta, the global model's model_config, round (default: the global model's), worker, samples, "
      "inner_steps, step and base_checksum, the checksum loco-aggregate compares with its model. A non-finite "
      "difference "
      "stops with exit 5 and nothing written. See docs/your-trainer.md.");
  tool.add_example("loco-delta --base round-3.h5 --local local.safetensors --worker 2 --samples 8192 -o d2.h5",
                   "After a PyTorch worker saved its model with safetensors.");
  tool.add_example("loco-delta --base round-3.safetensors --local local.pt --worker 0 -o d0.safetensors",
                   "A torch.save state_dict in, a safetensors delta out.");
  auto& app = tool.app();
  loco::train::DeltaFileOptions o;
  std::int64_t round = -1, samples = -1, inner_steps = -1, step = -1;
  app.add_option("--base", o.base, "The round's global model (any format loco reads)")->required()->type_name("FILE");
  app.add_option("--local", o.local, "The model after local training (any format loco reads)")
      ->required()
      ->type_name("FILE");
  app.add_option("--worker", o.worker, "Worker id recorded in the delta")->required()->check(CLI::NonNegativeNumber);
  app.add_option("--round", round, "Round recorded in the delta (default: the global model's round attribute)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--samples", samples, "Examples (or tokens) behind the delta, for --reduce weighted-mean")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--inner-steps", inner_steps, "Inner steps behind the delta, recorded as inner_steps")
      ->check(CLI::NonNegativeNumber)
      ->type_name("H");
  app.add_option("--step", step, "The worker's cumulative inner step after this round, recorded as step")
      ->check(CLI::NonNegativeNumber)
      ->type_name("N");
  loco::cli::add_output_option(app, o.output, "delta file (.h5, .safetensors)");
  tool.group(loco::cli::Group::Inputs, {"--base", "--local"});
  return tool.run(argc, argv, [&] {
    if (round >= 0) o.round = round;
    if (samples >= 0) o.samples = samples;
    if (inner_steps >= 0) o.inner_steps = inner_steps;
    if (step >= 0) o.step = step;
    loco::train::write_delta_file(o);
    return 0;
  });
}
