// loco-attack: a research tool that writes simulated Byzantine deltas (or a label-flipped shard).
#include <iostream>

#include "loco/cli/tool.hpp"
#include "loco/core/error.hpp"
#include "loco/robust/attack.hpp"

int main(int argc, char** argv) {
  namespace rb = loco::robust;
  loco::cli::Tool tool("loco-attack", "Research tool: write simulated Byzantine deltas or a label-flipped shard");
  tool.set_description(
      "FOR ROBUSTNESS EXPERIMENTS ONLY. Reads the honest delta files of one round and writes one malicious delta per "
      "-o, as valid delta files (the first honest delta's attributes, worker ids after the honest ones, samples and "
      "loss_* the honest means, and an 'attack' attribute naming the attack). Attacks (h = honest deltas): sign-flip "
      "-mean(h); scaled:s=S S*mean(h); gaussian:sigma=S N(0,S^2) per coordinate, one draw per attacker from --seed; "
      "ipm:eps=E -E*mean(h) (default E 0.1); alie[:z=Z] mean(h) - Z*std(h) per coordinate (population std), Z by "
      "default "
      "z_max of Baruch et al. 2019 (Algorithm 3): s = floor(n/2+1) - f, Z = PhiInverse((n-s)/n), n = --workers "
      "(default "
      "honest + attackers), f = the number of outputs; a Z of 0 is refused (the attackers would send the honest mean), "
      "and the Z used is written as the attribute attack_z. Streams block by block. With --label-flip, reads one "
      "classification shard "
      "and writes it with labels y -> C-1-y.");
  tool.add_example("loco-attack --attack alie -o bad-8.h5 -o bad-9.h5 delta-0*.h5",
                   "Two ALIE attackers among 10 workers (8 honest deltas).");
  tool.add_example("loco-attack --attack ipm:eps=0.5 --workers 25 -o bad.h5 delta-*.h5", "One IPM attacker, n = 25.");
  tool.add_example("loco-attack --label-flip -o shard-3-flipped.h5 shard-00003-of-00010.h5",
                   "Label flipping at the shard level.");
  auto& app = tool.app();
  std::string attack;
  std::vector<std::string> outputs, inputs;
  std::int64_t workers = 0, first_worker = -1;
  std::uint64_t seed = 0;
  bool flip = false, json = false;
  app.add_option("--attack", attack, "sign-flip, scaled:s=S, gaussian[:sigma=S], ipm[:eps=E] or alie[:z=Z]");
  app.add_flag("--label-flip", flip, "Flip the labels of one classification shard (y -> C-1-y) instead");
  loco::cli::output_path(app.add_option("-o,--output", outputs, "Output file, once per attacker (one for --label-flip)")
                             ->required()
                             ->allow_extra_args(false));
  app.add_option("INPUT", inputs, "Honest delta files (or the shard for --label-flip)")->required();
  app.add_option("--workers", workers, "n, all workers including the attackers (default: honest + attackers)")
      ->check(CLI::PositiveNumber);
  app.add_option("--worker", first_worker, "Worker id of the first attacker (default: one past the largest honest id)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", seed, "Seed of the gaussian attack")->capture_default_str();
  app.add_flag("--json", json, "Print a JSON summary on stdout");
  tool.group(loco::cli::Group::Outputs, {"--json"});
  return tool.run(argc, argv, [&] {
    if (flip) {
      if (!attack.empty()) throw loco::Error(loco::ErrorKind::Usage, "--label-flip and --attack are exclusive");
      if (inputs.size() != 1 || outputs.size() != 1)
        throw loco::Error(loco::ErrorKind::Usage, "--label-flip takes one shard and one -o");
      const auto r = rb::label_flip(inputs[0], outputs[0]);
      if (json)
        std::cout << fmt::format(R"({{"attack":"label-flip","examples":{},"classes":{}}})", r.examples, r.classes)
                  << '\n';
      return 0;
    }
    if (attack.empty()) throw loco::Error(loco::ErrorKind::Usage, "give --attack (or --label-flip)");
    rb::AttackOptions o;
    o.spec = rb::parse_attack_spec(attack);
    o.workers = workers;
    o.first_worker = first_worker;
    o.seed = seed;
    const auto r = rb::write_attack(inputs, outputs, o);
    if (json)
      std::cout << fmt::format(R"({{"attack":"{}","n":{},"f":{},"honest":{},"z":{},"workers":[{}]}})", r.attack, r.n,
                               r.f, r.honest, r.z, fmt::join(r.workers, ","))
                << '\n';
    return 0;
  });
}
