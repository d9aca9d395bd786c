// loco-init's library side.
#include "loco/train/init.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "loco/core/error.hpp"
#include "loco/model/file.hpp"

namespace fs = std::filesystem;

namespace loco::train {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw_error(ErrorKind::Io, "{}: cannot open", path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::string presets_dir() {
  if (const char* env = std::getenv("LOCO_PRESETS"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    // Installed: <prefix>/bin/loco-init → <prefix>/share/loco/models. Built: <build>/bin → source share/models.
    for (const fs::path& p :
         {exe.parent_path().parent_path() / "share/loco/models", fs::path(LOCO_SOURCE_DIR) / "share/models"})
      if (fs::is_directory(p)) return p.string();
  }
  return (fs::path(LOCO_SOURCE_DIR) / "share/models").string();
}

std::vector<std::pair<std::string, std::string>> list_presets() {
  std::vector<std::pair<std::string, std::string>> out;
  const std::string dir = presets_dir();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".json") {
      std::string json = read_text(e.path().string());
      std::erase(json, '\n');
      out.emplace_back(e.path().stem().string(), json);
    }
  std::sort(out.begin(), out.end());
  return out;
}

model::ModelConfig resolve_config(const InitOptions& o) {
  if (o.config.empty() == o.preset.empty()) throw_error(ErrorKind::Usage, "give exactly one of --config and --preset");
  std::string text, where;
  if (!o.preset.empty()) {
    const fs::path p = fs::path(presets_dir()) / (o.preset + ".json");
    if (!fs::exists(p)) {
      std::string names;
      for (const auto& [n, j] : list_presets()) names += (names.empty() ? "" : ", ") + n;
      throw_error(ErrorKind::Usage, "no preset '{}' in {} (presets: {})", o.preset, presets_dir(), names);
    }
    where = p.string();
    text = read_text(where);
  } else if (o.config.find('{') != std::string::npos && o.config.find_first_not_of(" \t\n") == o.config.find('{')) {
    where = "--config";
    text = o.config;
  } else {
    where = o.config;
    text = read_text(o.config);
  }
  try {
    return model::ModelConfig::parse(text);
  } catch (const Error& e) {
    throw_error(ErrorKind::BadInput, "{}: {}", where, e.what());
  }
}

void init_model(const InitOptions& o) {
  const model::ModelConfig cfg = resolve_config(o);
  model::Model m(cfg);
  TensorSet params = m.make_params();
  m.init(params, o.seed);
  Attributes extra;
  extra.set("round", std::int64_t{0});
  extra.set("seed", static_cast<std::int64_t>(o.seed));
  extra.set("parameters", m.num_parameters());
  model::write_model(o.output, cfg, params, extra);
}

}  // namespace loco::train
