// Streaming DiLoCo's model fragments: which parameters belong to which of P fragments, and the
// fragment files (a model file holding one fragment's tensors) that the pipeline aggregates.
//
// Assignment (strided, Douillard et al. 2025 §2): the model's units are its GPT blocks
// (blocks.L.*) or MLP linear layers (layers.i.*); a logistic regression is one unit. Fragment p
// holds units {p, p+P, p+2P, ...}. Parameters outside the units go with the nearest unit: a GPT's
// embeddings (wte, wpe) with block 0, so fragment 0; its final norm and head (ln_f, head) with the
// last block, so fragment (L−1) mod P. For gpt-tiny (2 blocks) and P = 2 that gives 22,944 and
// 20,960 parameters: embeddings and head are of the same size, so the ends balance each other.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loco/core/attributes.hpp"
#include "loco/core/tensor.hpp"
#include "loco/model/model.hpp"

namespace loco::train {

// Units the parameters are strided over: GPT layers, MLP linear layers (sizes − 1), 1 for logreg.
std::int64_t fragment_units(const model::ModelConfig& config);

// For each parameter of param_specs(config), in that order, its fragment in [0, fragments).
// Every parameter is in exactly one fragment and every fragment is non-empty. Deterministic (a
// function of the config and P only). Throws Error(Usage) when fragments < 1 or exceeds
// fragment_units(config) (a fragment would be empty).
std::vector<int> fragment_assignment(const model::ModelConfig& config, std::int64_t fragments);

// A fragment file as the worker reads it: kind model, the whole model's model_config, and some of
// the model's parameters (as float32, in file order).
struct FragmentFile {
  std::string path;
  TensorSet params;
  Attributes attributes;
  std::string checksum;  // of /tensors: what loco-aggregate expects in a delta's base_checksum
  std::int64_t round = 0;
};

// Reads a fragment file of the model `config`. Throws Error(BadInput) naming the file and tensor
// when it is not kind model, has another model_config, holds a tensor that is not a parameter of
// the config or has another shape, a non-float tensor, or no tensor; Error(Numeric) for NaN/Inf.
FragmentFile read_fragment(const std::string& path, const model::ModelConfig& config);

// Streaming DiLoCo's mixing θ ← (1−α)·θ_global + α·θ of the fragment's tensors into params (which
// hold every parameter), in double and rounded once; α = 0 and α = 1 copy exactly (no signed-zero
// or rounding change). Douillard et al. 2025, Streaming DiLoCo, Algorithm 1 (the merge of the
// synchronised fragment with the local one).
void mix_fragment(TensorSet& params, const FragmentFile& global, double alpha);

// The same as a file operation (loco-fragment --mix, for workers that are not loco-worker): the
// model file `model_path` with fragment file `fragment_path` mixed in with weight α of the local
// values, written to `output` (kind model, the model's attributes; its tensors as float32). Throws
// as read_fragment, Error(BadInput) when the model lacks a parameter, Error(Usage) for α outside [0, 1].
void mix_fragment_file(const std::string& model_path, const std::string& fragment_path, double alpha,
                       const std::string& output);

// Writes fragment `index` of `fragments` of the model file `model_path` to `output`: kind model,
// the same model_config and round, attributes fragment = index and fragments = P, the fragment's
// parameters as float32 in param_specs order and, when the model carries an outer optimizer
// state (/state/<slot>/<name>), that state's tensors of the fragment with its step and optimizer.
// Throws as read_fragment for the input (which must hold every parameter), Error(Usage) for an
// index outside [0, fragments) or fragments as fragment_assignment.
void split_fragment(const std::string& model_path, std::int64_t fragments, std::int64_t index,
                    const std::string& output);

// Joins fragment files into one model file: kind model, the common model_config, every parameter
// in param_specs order as float32, the common round (when all agree). The outer state is carried
// when every fragment has one with the same step and slots (as after whole rounds of the
// pipeline); otherwise the output has none. Returns whether the state was carried. Throws
// Error(BadInput) naming both files when fragments differ in model_config or share a tensor, and
// naming the tensor when one is in no fragment.
bool join_fragments(const std::vector<std::string>& paths, const std::string& output);

}  // namespace loco::train
