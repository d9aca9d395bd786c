// Asynchronous aggregation: a long-running loop that applies delta files as they appear in a folder,
// writing a new global model version for each update (FedAsync, FedBuff, FedFix, DiLoCo's delayed
// Nesterov), with a ledger so that every file is applied exactly once across crashes and restarts.
//
// Arrival. Every file DIR/*.h5 whose name does not start with '.' is a complete delta: pipelines write
// atomically (temporary name, then rename). New files are taken in order of modification time, then
// name, and appended to the ledger's pending list at once, so the buffers are the same after a restart.
//
// Versions. The first run copies the initial model to OUTDIR/model-RRRRRR.h5 (R its round). Each update
// reduces the deltas of one buffer against the newest model with aggregate() (allow_stale on, the
// staleness rule of the options, several deltas of one worker allowed) and writes the next round's
// model OUTDIR/model-RRRRRR.h5 atomically, then the ledger, then OUTDIR/latest (a text file holding the
// model's file name) and the symlink OUTDIR/latest.h5, both replaced atomically. A crash between the
// model and the ledger leaves a model file the ledger does not know; the restart recomputes it from the
// same inputs (the same bits) and replaces it.
//
// Update rules (all per update; s the staleness of a delta in versions, g(s) the staleness rule):
//   buffer K = 1                 FedAsync: θ ← θ − lr·g(s)·Δ with --outer sgd:lr=α (α = 0.9 in APPFL).
//                                With --outer delayed_nesterov:period=N, DiLoCo's delayed Nesterov
//                                (the optimizer state keeps the momentum and the push buffer).
//   buffer K > 1                 FedBuff: the K deltas that arrived, reduced together (mean: Σ g·Δ / K),
//                                sorted by worker id inside the buffer (aggregate's order), so the result
//                                does not depend on their arrival order.
//   period Δt > 0                FedFix: every Δt seconds, the deltas that arrived (if any) together;
//                                with the fedfix staleness rule g(s) = 1 + s = ⌈τ/Δt⌉.
// Validation. A delta whose base (round, base_checksum) is not a version this ledger produced, or that
// aggregate() refuses (BadInput), is recorded as rejected with the reason and never applied; deltas
// aggregate() drops as non-finite are recorded as rejected too, and so is a pending file removed from
// the folder before its update.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loco/aggregate/aggregate.hpp"

namespace loco::aggregate {

struct WatchOptions {
  std::string dir;               // watched folder of delta files
  std::string model;             // initial global model (read when OUTDIR holds no ledger yet)
  std::string outdir;            // model versions, ledger.json, latest, latest.h5
  AggregateOptions aggregate;    // reduction, outer optimizer, staleness rule
  std::int64_t buffer = 1;       // K deltas per update (FedBuff); 1: each arrival (FedAsync, delayed Nesterov)
  double period_seconds = 0;     // > 0: FedFix, an update every period with what arrived (buffer ignored)
  std::int64_t max_updates = 0;  // stop once the ledger holds this many updates (0: no limit)
  std::string until_file;        // stop when this file exists (checked between polls)
  double poll_seconds = 0.2;     // folder scan interval
};

struct WatchReport {
  std::int64_t updates = 0;                             // updates made by this run
  std::int64_t total_updates = 0;                       // updates in the ledger
  std::int64_t applied = 0, rejected = 0, pending = 0;  // files, in the ledger
  std::int64_t round = 0;                               // round of the newest model
  std::string latest;                                   // its path
};

// Runs the loop until max_updates or until_file (or an error). Each update's summary is written as one
// JSON line to `log` when given. Throws Error(Usage) for bad options or a folder that is not one,
// Error(BadInput) for a ledger of another initial model or a corrupt one, Error(Io) on I/O failure.
WatchReport watch(const WatchOptions& options, std::ostream* log = nullptr);

}  // namespace loco::aggregate
