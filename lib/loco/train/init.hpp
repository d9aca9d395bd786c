// Model creation for loco-init: configs from JSON files, inline JSON or named presets.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "loco/model/model.hpp"

namespace loco::train {

struct InitOptions {
  std::string config;  // a JSON file path, or JSON text (starts with '{')
  std::string preset;  // a preset name (exactly one of config and preset)
  std::uint64_t seed = 0;
  std::string output;
};

// The presets folder: $LOCO_PRESETS, else share/loco/models beside the binary's install prefix
// (<prefix>/share/loco/models), else the source tree's share/models.
std::string presets_dir();
// (name, JSON) of every preset, by name.
std::vector<std::pair<std::string, std::string>> list_presets();
// The config named by opt (file, inline JSON or preset). Throws Error(Usage) when neither or
// both are given or the preset is unknown, Error(Io) for an unreadable file, Error(BadInput) for
// an invalid config.
model::ModelConfig resolve_config(const InitOptions& opt);
// Builds, initializes and writes the model (round 0, seed recorded).
void init_model(const InitOptions& opt);

}  // namespace loco::train
