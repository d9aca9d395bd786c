// Internal: a config's parameter list together with each tensor's initialization rule.
#pragma once

#include <vector>

#include "loco/model/model.hpp"

namespace loco::model::detail {

// How init() fills one tensor (models.md): zeros, ones, N(0, scale²) or U(−scale, scale).
struct InitRule {
  enum class Kind { Zeros, Ones, Normal, Uniform };
  Kind kind;
  double scale;
};

struct SpecList {
  std::vector<ParamSpec> specs;
  std::vector<InitRule> init;  // parallel to specs
};

// The parameters of an already validated config, in models.md order.
SpecList build_specs(const ModelConfig& config);

}  // namespace loco::model::detail
