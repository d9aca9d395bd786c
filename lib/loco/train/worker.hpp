// The inner loop of a worker: H optimizer steps from the global model on the worker's shard,
// then the delta Δ = θ_global − θ_local and the worker's persistent state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace loco::train {

struct WorkerOptions {
  std::string model;                  // global model file of this round
  std::string data;                   // the worker's shard
  std::string output;                 // delta file to write
  std::string state;                  // worker state: read when it exists, replaced after the step ("" = none)
  std::string metrics;                // JSON lines, one per step ("" = none, "-" = stdout)
  std::int64_t steps = 0;             // H
  std::int64_t batch = 32;            // examples, or windows of ctx + 1 tokens
  std::string optimizer = "adamw";    // inner optimizer spec (optim/optimizer.hpp)
  std::string schedule = "constant";  // learning-rate schedule over the cumulative step
  double clip = 0.0;                  // global gradient-norm clip (0: off)
  std::uint64_t seed = 0;
  std::optional<std::int64_t> worker;  // default: the shard's `shard` attribute, else 0
  bool progress = false;               // a progress line on stderr

  // Streaming DiLoCo (train/fragment.hpp); the defaults leave the DiLoCo worker above unchanged.
  // --model is then the worker's own local parameters (a file written by save_local).
  std::string mix;           // before the steps: θ_t ← (1−α)·θ_mix,t + α·θ_t for each tensor t of this file
  double mixing = 0.0;       // α in [0, 1]; α = 0 takes the file's tensors exactly, α = 1 keeps θ
  std::string delta_base;    // the delta holds this file's tensors, Δ = θ_base − θ_local ("" = --model)
  std::int64_t overlap = 0;  // τ in [0, steps): Δ is taken after steps − τ steps; τ more steps follow
  std::string save_local;    // after the steps, write the local parameters here (kind model)

  // Federated strategies (train/federated.hpp); the defaults leave the worker above unchanged.
  double prox_mu = 0.0;          // FedProx μ: every gradient gets μ·(θ − θ_model), θ_model = --model's tensors
  std::string scaffold_control;  // SCAFFOLD: the server control variate c (a model file of this model_config)
  std::string control_delta;     // SCAFFOLD: where Δc = c_i − c_i⁺ goes (kind delta against scaffold_control)
};

struct WorkerResult {
  double loss_first = 0, loss_last = 0, loss_mean = 0;
  std::int64_t samples = 0;  // examples, or predicted tokens
  std::int64_t step = 0;     // cumulative inner steps after this call
};

// Runs the steps and writes the delta (kind delta; attributes model_config, round, worker,
// samples, base_checksum, loss statistics, inner optimizer) and then the state (kind state;
// /state/<slot>/<name>, step and the optimizer spec), each atomically. The cumulative step in the
// state is the data-stream position: batch s draws from (seed, worker, s), so epochs continue
// across rounds and a rerun from the same state gives a bit-identical delta whatever the thread
// count. Throws Error(BadInput) for a state of another model, worker or optimizer, a shard that
// does not fit the model; Error(Numeric) on a non-finite loss or gradient, before writing anything.
//
// Streaming options. With mix, the tensors of that fragment file (kind model, this model_config,
// some of its parameters) are mixed into the starting parameters. With delta_base, the delta holds
// only that file's tensors, base_checksum is its tensors' checksum and round its round (what
// `loco-aggregate --model BASE` checks). With overlap τ the delta is the one after steps − τ steps
// (the sync point minus τ) while training continues to the end; its attributes (samples, losses,
// step) describe the whole call. save_local writes the parameters after all steps as a model file
// with the call's statistics (after the delta, before the state). Error(Usage) for α outside
// [0, 1], α ≠ 0 without mix, or τ outside [0, steps); Error(BadInput) as read_fragment for the mix
// or base file.
//
// Federated options. prox_mu μ > 0 adds FedProx's μ·(θ − θ_model) to every (clipped) gradient.
// scaffold_control runs SCAFFOLD option II: the client's c_i is the slot kControlSlot of the state
// (zero when the state file does not exist yet), each step uses the (clipped) gradient g − c_i + c,
// and afterwards c_i⁺ = c_i − c + (θ_model − θ_local)/Σ_k lr_k replaces c_i in the state while
// Δc = c_i − c_i⁺ is written to control_delta: a delta file against the c file (base_checksum, round
// of that file; worker, samples and step as the model delta), for `loco-aggregate --model C`. Write
// order: delta, control delta, state. Error(Usage) for μ < 0, scaffold_control without
// control_delta or state (or the reverse), an inner optimizer other than sgd with scaffold_control
// (option II assumes plain SGD steps), or either option with the streaming options; Error(BadInput)
// for a c file of another model or a state without the c_i slot (made without SCAFFOLD).
WorkerResult run_worker(const WorkerOptions& opt);

}  // namespace loco::train
