// DeepSpeed universal checkpoint (UCP) folders, read as a TensorSource and written back.
//
// Layout (DeepSpeed's ds_to_universal.py): <dir>/zero/<param>/fp32.pt, exp_avg.pt, exp_avg_sq.pt
// (each torch.save of {'param': full unpadded tensor, ['cat_dim': int], ['param_n_sub_params': int],
// ['sub_param_shape': SubparamShape], ['vocab_tensor': True]}) and step.pt (the raw step: an int,
// a float or a rank-0 tensor). <dir> may be the step folder holding zero/, the zero/ folder itself,
// or a checkpoint root whose file latest_universal names the step folder.
//
// As a source (format() "ucp"): fp32 → tensors/<param>; every other <state>.pt but step.pt →
// state/<state>/<param> (exp_avg and exp_avg_sq are the names loco's Adam uses). Params are in
// natural order of their names ("layers.2" before "layers.10"). The dict's scalar entries become
// per-tensor attributes under their own names (vocab_tensor as 1); sub_param_shape becomes the
// JSON string {"patterns": [...], "shape": [int or [int...]...], "partition_dim": int}. The step
// becomes the int64 attribute "step" of the group "state" (man 5 loco-format), with "ucp_step_type"
// ("int", "float" or the dtype name of a rank-0 tensor) so that writing back reproduces it. Files
// are opened when read, one at a time: memory is one row block, open files one.
// zero/optimizer_state.pt and the mp_rank_* files are not read.
#pragma once

#include <memory>
#include <string>

#include "loco/io/source.hpp"

namespace loco::io {

// True when path is a folder laid out as above. Never throws.
bool is_ucp_folder(const std::string& path) noexcept;

// Opens a universal checkpoint folder. Throws Error(BadInput) naming the folder and file for a
// folder without zero/<param>/fp32.pt, a file without a 'param' tensor, state files whose shape
// differs from fp32's, steps that differ between params, and what open_torch refuses.
std::unique_ptr<TensorSource> open_ucp(const std::string& path);

// Writes src as a universal checkpoint folder dir (dir/zero/<param>/<state>.pt, step.pt from the
// "state" group's step attribute): /tensors → fp32.pt, /state/<slot> → <slot>.pt, the UCP
// attributes (cat_dim, param_n_sub_params, sub_param_shape, vocab_tensor and other scalar
// attributes) into each dict before 'param'. Atomic: built in a temporary sibling folder and
// renamed to dir; dir must not exist or be empty. Throws Error(Usage) for an existing non-empty
// dir, a tensor name that cannot be a folder name, or a dtype torch's typed storages lack;
// Error(Io) when writing fails.
void write_ucp(const TensorSource& src, const std::string& dir, std::size_t block_bytes = 4u << 20);

}  // namespace loco::io
