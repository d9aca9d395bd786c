// Model configs: strict JSON parsing, validation, canonical form, and the parameter layout.
#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

#include "loco/core/error.hpp"
#include "loco/core/json.hpp"
#include "loco/model/detail/specs.hpp"
#include "loco/model/model.hpp"

namespace loco::model {
namespace {

constexpr std::int64_t kMaxDim = std::int64_t{1} << 30;
constexpr std::int64_t kMaxVocab = 65536;
constexpr std::int64_t kMaxParams = std::int64_t{1} << 40;

[[noreturn]] void bad(const std::string& what) { throw Error(ErrorKind::BadInput, "model config: " + what); }

std::int64_t get_int(const nlohmann::json& j, const char* key) {
  const auto& v = j.at(key);
  if (!v.is_number_integer()) bad(fmt::format("\"{}\" must be an integer, got {}", key, excerpt(v.dump())));
  if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(kMaxDim)) {
    bad(fmt::format("\"{}\" must be at most {}, got {}", key, kMaxDim, excerpt(v.dump())));
  }
  return v.get<std::int64_t>();
}

void check_range(const char* key, std::int64_t v, std::int64_t lo, std::int64_t hi) {
  if (v < lo || v > hi) bad(fmt::format("\"{}\" must be in [{}, {}], got {}", key, lo, hi, v));
}

void check_keys(const nlohmann::json& j, std::string_view arch, const std::set<std::string>& required,
                const std::set<std::string>& optional) {
  for (const auto& [key, value] : j.items()) {
    if (key != "arch" && !required.count(key) && !optional.count(key)) {
      std::string allowed;
      for (const auto& k : required) allowed += (allowed.empty() ? "" : ", ") + k;
      for (const auto& k : optional) allowed += ", " + k;
      bad(fmt::format("unknown key \"{}\" for arch \"{}\" (keys: arch, {})", key, arch, allowed));
    }
  }
  for (const auto& key : required) {
    if (!j.contains(key)) bad(fmt::format("missing key \"{}\" (required for arch \"{}\")", key, arch));
  }
}

}  // namespace

std::string_view arch_name(Arch arch) noexcept {
  switch (arch) {
    case Arch::LogReg: return "logreg";
    case Arch::Mlp: return "mlp";
    case Arch::Gpt: return "gpt";
  }
  return "?";
}

ModelConfig ModelConfig::parse(std::string_view json_text) { return from_json(parse_json(json_text, "model config")); }

ModelConfig ModelConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) bad(fmt::format("expected a JSON object, got {}", j.type_name()));
  if (!j.contains("arch")) bad("missing key \"arch\" (one of \"logreg\", \"mlp\", \"gpt\")");
  if (!j.at("arch").is_string()) bad(fmt::format("\"arch\" must be a string, got {}", excerpt(j.at("arch").dump())));
  const auto arch = j.at("arch").get<std::string>();
  ModelConfig c;
  if (arch == "logreg") {
    c.arch = Arch::LogReg;
    check_keys(j, arch, {"features", "classes"}, {});
    c.features = get_int(j, "features");
    c.classes = get_int(j, "classes");
  } else if (arch == "mlp") {
    c.arch = Arch::Mlp;
    check_keys(j, arch, {"sizes"}, {});
    const auto& s = j.at("sizes");
    if (!s.is_array()) bad(fmt::format("\"sizes\" must be an array of integers, got {}", excerpt(s.dump())));
    for (const auto& v : s) {
      if (!v.is_number_integer()) bad(fmt::format("\"sizes\" must hold integers, got {}", excerpt(v.dump())));
      if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(kMaxDim)) {
        bad(fmt::format("\"sizes\" entries must be at most {}, got {}", kMaxDim, excerpt(v.dump())));
      }
      c.sizes.push_back(v.get<std::int64_t>());
    }
  } else if (arch == "gpt") {
    c.arch = Arch::Gpt;
    check_keys(j, arch, {"ctx", "d_model", "heads", "layers"}, {"mlp_ratio", "tie_embeddings", "vocab"});
    c.ctx = get_int(j, "ctx");
    c.d_model = get_int(j, "d_model");
    c.heads = get_int(j, "heads");
    c.layers = get_int(j, "layers");
    if (j.contains("vocab")) c.vocab = get_int(j, "vocab");
    if (j.contains("mlp_ratio")) c.mlp_ratio = get_int(j, "mlp_ratio");
    if (j.contains("tie_embeddings")) {
      const auto& t = j.at("tie_embeddings");
      if (!t.is_boolean()) bad(fmt::format("\"tie_embeddings\" must be true or false, got {}", excerpt(t.dump())));
      c.tie_embeddings = t.get<bool>();
    }
  } else {
    bad(fmt::format("unknown \"arch\" \"{}\" (one of \"logreg\", \"mlp\", \"gpt\")", arch));
  }
  c.validate();
  return c;
}

void ModelConfig::validate() const {
  switch (arch) {
    case Arch::LogReg:
      check_range("features", features, 1, kMaxDim);
      check_range("classes", classes, 1, kMaxDim);
      break;
    case Arch::Mlp:
      if (sizes.size() < 2) {
        bad(fmt::format("\"sizes\" needs at least 2 entries (input width and classes), got {}", sizes.size()));
      }
      for (auto v : sizes) check_range("sizes", v, 1, kMaxDim);
      break;
    case Arch::Gpt:
      check_range("vocab", vocab, 1, kMaxVocab);
      check_range("ctx", ctx, 1, kMaxDim);
      check_range("d_model", d_model, 1, kMaxDim);
      check_range("layers", layers, 1, kMaxDim);
      check_range("heads", heads, 1, kMaxDim);
      check_range("mlp_ratio", mlp_ratio, 1, kMaxDim);
      if (d_model % heads != 0) {
        bad(fmt::format("\"heads\" ({}) must divide \"d_model\" ({})", heads, d_model));
      }
      if (mlp_ratio * d_model > kMaxDim) {
        bad(fmt::format("\"mlp_ratio\"·\"d_model\" ({}·{}) must be at most {}", mlp_ratio, d_model, kMaxDim));
      }
      break;
  }
  // Count in double: dimensions are ≤ 2^30, so products of two or three can pass 2^63.
  double total = 0.0;
  const auto dbl = [](std::int64_t v) { return static_cast<double>(v); };
  switch (arch) {
    case Arch::LogReg: total = dbl(classes) * (dbl(features) + 1.0); break;
    case Arch::Mlp:
      for (std::size_t i = 0; i + 1 < sizes.size(); ++i) total += dbl(sizes[i + 1]) * (dbl(sizes[i]) + 1.0);
      break;
    case Arch::Gpt: {
      const double d = dbl(d_model);
      const double f = dbl(mlp_ratio) * d;
      const double block = 4.0 * d + 3.0 * d * d + 3.0 * d + d * d + d + 2.0 * f * d + f + d;
      total = (dbl(vocab) + dbl(ctx)) * d + dbl(layers) * block + 2.0 * d + (tie_embeddings ? 0.0 : dbl(vocab) * d);
      break;
    }
  }
  if (total > static_cast<double>(kMaxParams)) {
    bad(fmt::format("the model would have {:.3g} parameters, more than the limit of 2^40", total));
  }
}

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j;
  j["arch"] = std::string(arch_name(arch));
  switch (arch) {
    case Arch::LogReg:
      j["features"] = features;
      j["classes"] = classes;
      break;
    case Arch::Mlp: j["sizes"] = sizes; break;
    case Arch::Gpt:
      j["vocab"] = vocab;
      j["ctx"] = ctx;
      j["d_model"] = d_model;
      j["layers"] = layers;
      j["heads"] = heads;
      j["mlp_ratio"] = mlp_ratio;
      j["tie_embeddings"] = tie_embeddings;
      break;
  }
  return j;
}

std::string ModelConfig::canonical_json() const { return to_json().dump(); }

std::int64_t ModelConfig::input_features() const noexcept {
  switch (arch) {
    case Arch::LogReg: return features;
    case Arch::Mlp: return sizes.empty() ? 0 : sizes.front();
    case Arch::Gpt: return 0;
  }
  return 0;
}

std::int64_t ModelConfig::num_classes() const noexcept {
  switch (arch) {
    case Arch::LogReg: return classes;
    case Arch::Mlp: return sizes.empty() ? 0 : sizes.back();
    case Arch::Gpt: return vocab;
  }
  return 0;
}

std::vector<ParamSpec> param_specs(const ModelConfig& config) {
  config.validate();
  return detail::build_specs(config).specs;
}

namespace detail {

SpecList build_specs(const ModelConfig& c) {
  SpecList out;
  auto add = [&](std::string name, Shape shape, ParamRole role, InitRule rule) {
    out.specs.push_back({std::move(name), std::move(shape), role});
    out.init.push_back(rule);
  };
  switch (c.arch) {
    case Arch::LogReg:
      add("linear.weight", {c.classes, c.features}, ParamRole::Weight, {InitRule::Kind::Zeros, 0.0});
      add("linear.bias", {c.classes}, ParamRole::Bias, {InitRule::Kind::Zeros, 0.0});
      break;
    case Arch::Mlp:
      for (std::size_t i = 0; i + 1 < c.sizes.size(); ++i) {
        // PyTorch nn.Linear default: weight and bias U(−1/√in, 1/√in).
        const double bound = 1.0 / std::sqrt(static_cast<double>(c.sizes[i]));
        add(fmt::format("layers.{}.weight", i), {c.sizes[i + 1], c.sizes[i]}, ParamRole::Weight,
            {InitRule::Kind::Uniform, bound});
        add(fmt::format("layers.{}.bias", i), {c.sizes[i + 1]}, ParamRole::Bias, {InitRule::Kind::Uniform, bound});
      }
      break;
    case Arch::Gpt: {
      const std::int64_t d = c.d_model;
      const std::int64_t f = c.mlp_ratio * d;
      const InitRule normal{InitRule::Kind::Normal, 0.02};
      const InitRule proj{InitRule::Kind::Normal, 0.02 / std::sqrt(2.0 * static_cast<double>(c.layers))};
      const InitRule zeros{InitRule::Kind::Zeros, 0.0};
      const InitRule ones{InitRule::Kind::Ones, 0.0};
      add("wte.weight", {c.vocab, d}, ParamRole::Embedding, normal);
      add("wpe.weight", {c.ctx, d}, ParamRole::Embedding, normal);
      for (std::int64_t l = 0; l < c.layers; ++l) {
        const auto p = fmt::format("blocks.{}.", l);
        add(p + "ln1.weight", {d}, ParamRole::NormWeight, ones);
        add(p + "ln1.bias", {d}, ParamRole::NormBias, zeros);
        add(p + "attn.qkv.weight", {3 * d, d}, ParamRole::Weight, normal);
        add(p + "attn.qkv.bias", {3 * d}, ParamRole::Bias, zeros);
        add(p + "attn.proj.weight", {d, d}, ParamRole::Weight, proj);
        add(p + "attn.proj.bias", {d}, ParamRole::Bias, zeros);
        add(p + "ln2.weight", {d}, ParamRole::NormWeight, ones);
        add(p + "ln2.bias", {d}, ParamRole::NormBias, zeros);
        add(p + "mlp.fc.weight", {f, d}, ParamRole::Weight, normal);
        add(p + "mlp.fc.bias", {f}, ParamRole::Bias, zeros);
        add(p + "mlp.proj.weight", {d, f}, ParamRole::Weight, proj);
        add(p + "mlp.proj.bias", {d}, ParamRole::Bias, zeros);
      }
      add("ln_f.weight", {d}, ParamRole::NormWeight, ones);
      add("ln_f.bias", {d}, ParamRole::NormBias, zeros);
      if (!c.tie_embeddings) add("head.weight", {c.vocab, d}, ParamRole::Weight, normal);
      break;
    }
  }
  return out;
}

}  // namespace detail
}  // namespace loco::model
