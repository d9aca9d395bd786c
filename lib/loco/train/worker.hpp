// The inner loop of a worker: H optimizer steps from the global model on the worker's shard,
// then the delta Δ = θ_global − θ_local and the worker's persistent state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace loco::train {

struct WorkerOptions {
  std::string model;    // global model file of this round
  std::string data;     // the worker's shard
  std::string output;   // delta file to write
  std::string state;    // worker state: read when it exists, replaced after the step ("" = none)
  std::string metrics;  // JSON lines, one per step ("" = none, "-" = stdout)
  std::int64_t steps = 0;              // H
  std::int64_t batch = 32;             // examples, or windows of ctx + 1 tokens
  std::string optimizer = "adamw";     // inner optimizer spec (optim/optimizer.hpp)
  std::string schedule = "constant";   // learning-rate schedule over the cumulative step
  double clip = 0.0;                   // global gradient-norm clip (0: off)
  std::uint64_t seed = 0;
  std::optional<std::int64_t> worker;  // default: the shard's `shard` attribute, else 0
  bool progress = false;               // a progress line on stderr
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
WorkerResult run_worker(const WorkerOptions& opt);

}  // namespace loco::train
