// Simulated Byzantine updates for robustness experiments (a research tool): from the honest deltas
// of a round, the standard omniscient attacks, written as valid delta files; and label flipping of
// a classification shard.
//
// Attacks (h = the honest deltas, n = all workers, f = the attackers; every attacker sends the same
// vector except under gaussian):
//   sign-flip          −mean(h)                       (ByzFL's SignFlipping)
//   scaled:s=S         S·mean(h)
//   gaussian:sigma=S   N(0, S²) per coordinate, drawn from (seed, worker, tensor) — one per attacker
//   ipm:eps=E          −E·mean(h)                     (inner-product manipulation, Xie et al. 2020; E = 0.1 default)
//   alie[:z=Z]         mean(h) − Z·std(h) per coordinate, std the population standard deviation,
//                      Z by default z_max of Baruch et al., "A Little Is Enough" (NeurIPS 2019),
//                      Algorithm 3: s = ⌊n/2 + 1⌋ − f, Z = Φ⁻¹((n − s)/n) (n = 10, f = 2: Z ≈ 0.253).
//                      Z = 0 (given, or n even and f = 1) is refused: the attackers would send the
//                      honest mean.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace loco::robust {

enum class AttackKind { SignFlip, Scaled, Gaussian, Ipm, Alie };

struct AttackSpec {
  AttackKind kind = AttackKind::SignFlip;
  double scale = 1;         // scaled: S
  double sigma = 1;         // gaussian: standard deviation
  double epsilon = 0.1;     // ipm: ε
  std::optional<double> z;  // alie: given Z (else from n and f)
};

// Parses sign-flip | scaled:s=S | gaussian[:sigma=S] | ipm[:eps=E] | alie[:z=Z]; Error(Usage) otherwise.
AttackSpec parse_attack_spec(std::string_view text);
std::string format_attack_spec(const AttackSpec& spec);

// Φ⁻¹(p) for 0 < p < 1 (bisection on erfc to double precision). Error(Usage) outside (0, 1).
double normal_quantile(double p);
// ALIE's z_max for n workers of which f are Byzantine: Φ⁻¹((n − s)/n), s = ⌊n/2 + 1⌋ − f (0 when
// 2s = n). Throws Error(Usage), asking for an explicit z, when s < 1 (f > n/2: z_max is unbounded).
double alie_z(std::int64_t n, std::int64_t f);

// The attack vector from honest vectors in memory (gaussian uses stream (seed, worker, tensor 0)).
// n: all workers (honest + f attackers), used by alie. Error(Usage) on mismatched lengths and for an
// alie whose z is 0.
std::vector<float> attack_vector(const AttackSpec& spec, const std::vector<std::vector<float>>& honest, std::int64_t n,
                                 std::int64_t f, std::uint64_t seed = 0, std::int64_t worker = 0);

struct AttackOptions {
  AttackSpec spec;
  std::int64_t workers = 0;        // n; 0 means honest + outputs
  std::int64_t first_worker = -1;  // worker id of the first output (then +1 each); −1: one past the honest ids
  std::uint64_t seed = 0;
  std::size_t block_bytes = std::size_t{1} << 20;
};

struct AttackReport {
  std::string attack;  // format_attack_spec
  std::int64_t n = 0, f = 0, honest = 0;
  double z = 0;                       // alie's Z (0 otherwise)
  std::vector<std::int64_t> workers;  // ids written, in output order
};

// Reads the honest delta files (kind delta, same model_config and base_checksum, same float tensors)
// block by block and writes one malicious delta per output path, atomically: float32 tensors of the
// same names and shapes, the first honest delta's root attributes with worker set to the attacker's
// id, samples the rounded mean of the honest samples (when they all have one), loss_* the honest
// means, `attack` the spec and, for alie, `attack_z` the z used. Throws Error(Usage) for an alie whose
// z is 0 (it would send the honest mean). Throws Error(BadInput) naming the file for incompatible inputs,
// Error(Usage) for no honest delta or no output. Nothing is written on error.
AttackReport write_attack(const std::vector<std::string>& honest, const std::vector<std::string>& outputs,
                          const AttackOptions& options);

struct LabelFlipReport {
  std::int64_t examples = 0, classes = 0;
};

// Label flipping at the shard level: copies a classification shard (kind data, /data/x and integer
// /data/y, attribute classes = C) with y → C − 1 − y and attribute attack = "label-flip", streaming
// the features block by block. Throws Error(BadInput) for a token shard or labels outside [0, C).
LabelFlipReport label_flip(const std::string& input, const std::string& output);

}  // namespace loco::robust
