// Tensor-parallel resharding, the universal-checkpoint idea in the other direction: a consolidated
// checkpoint split into T tensor-parallel shards as DeepSpeed's universal loader slices it for
// tp_world_size T, and such shards consolidated back. Round trips are exact (bytes are copied).
//
// How each tensor (in /tensors and in /state/<slot>) is split, first rule that applies:
//  1. sub_param_shape (JSON, ucp.hpp): the tensor is viewed as the shape with fused entries summed;
//     along partition_dim every sub-size s is cut into T equal pieces and rank r takes piece r of
//     each sub-parameter, concatenated in order (e.g. fused QKV: [q_r; k_r; v_r]).
//  2. param_n_sub_params = n > 1: n equal sub-parameters along cat_dim (default 0), each cut in T.
//  3. cat_dim = d: cut in T equal pieces along d (d = 0 column-parallel, d = 1 row-parallel).
//  4. the first --cat-dim rule REGEX=DIM whose regex matches the start of the name (Python's
//     re.match, as DeepSpeed's patterns), DIM an integer or "replicate".
//  5. otherwise replicated: every rank holds the whole tensor.
// vocab_tensor = 1 (with rule 3 on dim 0): rows are zero-padded to a multiple of
// vocab_divisible_by · T first, as Megatron pads its vocabulary for the target degree.
// Every cut must be exact (sizes divisible by T); otherwise Error(BadInput) names the tensor.
//
// Shard files are loco HDF5: <stem>-0000r-of-0000T.h5 beside out (r from 1), root attributes of the
// input plus tp_rank (0-based) and tp_degree; each tensor keeps its attributes and gains tp_dim
// (-1: replicated), tp_subs (sizes of the sub-parameters along tp_dim in the full view),
// tp_view (the full view's shape, padding included) and tp_full_shape (the tensor's own shape).
// Consolidation reads these back, checks that replicated copies agree, strips the vocabulary
// padding and removes the tp_* attributes. Memory: one whole tensor plus one slice at a time.
//
// ZeRO-style flat shards (split_zero): each group's tensors ("tensors", "state/exp_avg", ...; one
// dtype per group) concatenated in order into one flat vector, zero-padded to a multiple of D and
// cut into D equal partitions, as ZeRO stages 1-2 partition a parameter group over D data-parallel
// ranks. Shard r holds <group>/zero_flat (its partition), the root attributes zero_rank and
// zero_degree, and zero_layout: a JSON list of {"group", "name", "shape", "dtype", "attrs"} in
// flat order, from which consolidation cuts the tensors back out. Memory: one tensor at a time.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace loco::io {

struct TpRule {
  std::string pattern;  // ECMAScript regex, matched at the start of the tensor name
  int dim = -1;         // -1: replicate
};

struct ReshardOptions {
  int degree = 1;                         // T
  std::vector<TpRule> rules;              // for tensors without UCP attributes
  std::int64_t vocab_divisible_by = 128;  // Megatron's --make-vocab-size-divisible-by
  std::size_t block_bytes = 4u << 20;
};

// Parses "REGEX=DIM" or "REGEX=replicate" (the last '=' splits). Throws Error(Usage).
TpRule parse_tp_rule(const std::string& text);

// The shard paths of out for degree T: <stem>-00001-of-0000T<ext> ... Throws Error(Usage) for T < 1.
std::vector<std::string> tp_shard_paths(const std::string& out, int degree);

// Splits in (any format open_source reads) into opt.degree loco files named by tp_shard_paths(out).
// Returns the paths written. Throws Error(Usage) for a degree below 2 or an output that is not .h5,
// Error(BadInput) for a tensor that cannot be cut (sizes not divisible, a bad sub_param_shape,
// vocab_tensor off dim 0), and what reading and writing throw. All shards are committed at the end;
// on error none is left.
std::vector<std::string> split_tensor_parallel(const std::string& in, const std::string& out,
                                               const ReshardOptions& opt);

// Splits in into opt.degree ZeRO-style flat shards (see above) named by tp_shard_paths(out).
// Throws Error(Usage) for a degree below 2 or an output that is not .h5, Error(BadInput) for a group
// whose tensors differ in dtype.
std::vector<std::string> split_zero(const std::string& in, const std::string& out, int degree);

// Consolidates the shards named like first (any one of <stem>-0000r-of-0000T.h5; tensor-parallel or
// ZeRO flat shards, told apart by their tp_degree or zero_degree attribute) into out (.h5). Throws
// Error(Usage) when first is not so named, Error(BadInput) naming the shard when one is missing,
// has the wrong rank or degree, other tensors or shapes, a bad zero_layout, or replicated copies differ.
void consolidate_tensor_parallel(const std::string& first, const std::string& out);

}  // namespace loco::io
