// Deltas from any trainer: Δ = θ_global − θ_local between two model files of any format loco
// reads (loco HDF5, safetensors, a sharded safetensors index, torch.save archives), written as a
// delta file that every loco tool takes (loco-aggregate, loco-compress, loco-inspect, loco-merge).
// This is how a trainer of the user's own (PyTorch on GPUs, say) takes part in a loco pipeline:
// it reads the round's global model, trains, saves its local model, and loco-delta does the rest.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace loco::train {

struct DeltaFileOptions {
  std::string base;    // the round's global model (kind model)
  std::string local;   // the worker's model after its inner steps (kind model, any format)
  std::string output;  // .h5 / .safetensors / "-"
  std::int64_t worker = 0;
  std::optional<std::int64_t> round;        // default: the base's round attribute, else 0
  std::optional<std::int64_t> samples;      // examples (or tokens) behind the delta, for weighted means
  std::optional<std::int64_t> inner_steps;  // recorded when given
  std::optional<std::int64_t> step;         // the worker's cumulative step, recorded when given
};

// Writes the delta of o.local against o.base: every tensor of the base's /tensors, in its order,
// as float32, Δ = base − local computed in float32 for float32/float16/bfloat16 inputs (both widen
// exactly, so the bits equal loco-worker's) and in float64 rounded once for float64 inputs. The
// attributes: kind delta, the base's model_config, round, worker, samples and inner_steps when
// given, base_checksum (the base's /tensors checksum, which loco-aggregate compares with its model).
// A fragment base (attributes fragment and fragments, loco-fragment's file) takes only its tensors
// from the local model, which holds them all, and the delta records fragment and fragments.
// Streams row blocks: memory is a few blocks whatever the model size.
// Throws Error(BadInput) naming the file and tensor when either file is not a model, their
// model_configs differ (a local file without one is accepted), a tensor of the base is missing
// from the local file or has another shape, the local file has tensors the base lacks (unless the
// base is a fragment), or a dtype is not a float; Error(Numeric) naming the tensor when a
// difference is not finite. Nothing is written then.
void write_delta_file(const DeltaFileOptions& o);

}  // namespace loco::train
