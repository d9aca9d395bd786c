// Optimizer options: named defaults, the "name:key=value,..." parser, canonical text, validation.
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "loco/core/error.hpp"
#include "loco/core/spec.hpp"
#include "loco/optim/optimizer.hpp"

namespace loco::optim {

namespace {

enum class Field { Lr, Momentum, Beta1, Beta2, Eps, WeightDecay, Decoupled, EtaL, BiasCorrection, Period };

// Every accepted spelling of every key.
struct Alias {
  std::string_view key;
  Field field;
};
constexpr Alias kAliases[] = {
    {"lr", Field::Lr},
    {"eta", Field::Lr},
    {"server_learning_rate", Field::Lr},
    {"momentum", Field::Momentum},
    {"mu", Field::Momentum},
    {"server_momentum", Field::Momentum},
    {"beta1", Field::Beta1},
    {"beta_1", Field::Beta1},
    {"beta2", Field::Beta2},
    {"beta_2", Field::Beta2},
    {"eps", Field::Eps},
    {"tau", Field::Eps},
    {"weight_decay", Field::WeightDecay},
    {"wd", Field::WeightDecay},
    {"decoupled", Field::Decoupled},
    {"eta_l", Field::EtaL},
    {"bias_correction", Field::BiasCorrection},
    {"period", Field::Period},
};

// A named optimizer: its kind, its keys (canonical spelling first) and its defaults.
struct Key {
  std::string_view name;
  Field field;
};
struct Descriptor {
  std::string_view name;
  std::vector<Key> keys;
  OptimizerSpec defaults;
};

OptimizerSpec base(std::string_view name, OptimizerKind kind, double lr) {
  OptimizerSpec s;
  s.name = std::string(name);
  s.kind = kind;
  s.lr = lr;
  return s;
}

const std::vector<Key> kSgdKeys = {
    {"lr", Field::Lr}, {"weight_decay", Field::WeightDecay}, {"decoupled", Field::Decoupled}};
const std::vector<Key> kMomentumKeys = {{"lr", Field::Lr},
                                        {"momentum", Field::Momentum},
                                        {"weight_decay", Field::WeightDecay},
                                        {"decoupled", Field::Decoupled}};
const std::vector<Key> kAdamKeys = {{"lr", Field::Lr},
                                    {"beta1", Field::Beta1},
                                    {"beta2", Field::Beta2},
                                    {"eps", Field::Eps},
                                    {"weight_decay", Field::WeightDecay}};

Descriptor sgd(double lr) { return {"sgd", kSgdKeys, base("sgd", OptimizerKind::Sgd, lr)}; }

Descriptor momentum(std::string_view name, OptimizerKind kind, double lr, double mu) {
  OptimizerSpec s = base(name, kind, lr);
  s.momentum = mu;
  return {name, kMomentumKeys, s};
}

Descriptor adam(std::string_view name, double lr, double beta2, double wd, bool decoupled) {
  OptimizerSpec s = base(name, OptimizerKind::Adam, lr);
  s.beta1 = 0.9;
  s.beta2 = beta2;
  s.eps = 1e-8;
  s.weight_decay = wd;
  s.decoupled_weight_decay = decoupled;
  return {name, kAdamKeys, s};
}

Descriptor fedopt(std::string_view name, OptimizerKind kind, double eta, double eta_l) {
  OptimizerSpec s = base(name, kind, eta);
  s.eta_l = eta_l;
  s.eps = 1e-3;
  std::vector<Key> keys = {{"eta", Field::Lr}, {"eta_l", Field::EtaL}};
  if (kind == OptimizerKind::FedAdagrad) {
    s.beta1 = 0.0;
    s.beta2 = 0.0;
  } else {
    s.beta1 = 0.9;
    s.beta2 = 0.99;
    keys.push_back({"beta_1", Field::Beta1});
    keys.push_back({"beta_2", Field::Beta2});
  }
  keys.push_back({"tau", Field::Eps});
  if (kind == OptimizerKind::FedAdam) keys.push_back({"bias_correction", Field::BiasCorrection});
  return {name, keys, s};
}

std::vector<Descriptor> inner_table() {
  return {sgd(0.01), momentum("momentum", OptimizerKind::Momentum, 0.01, 0.9),
          momentum("nesterov", OptimizerKind::Nesterov, 0.01, 0.9), adam("adamw", 4e-4, 0.95, 0.1, true),
          adam("adam", 1e-3, 0.999, 0.0, false)};
}

std::vector<Descriptor> outer_table() {
  Descriptor fedavg{"fedavg", {}, base("fedavg", OptimizerKind::Sgd, 1.0)};
  Descriptor fedavgm{"fedavgm",
                     {{"server_learning_rate", Field::Lr}, {"server_momentum", Field::Momentum}},
                     base("fedavgm", OptimizerKind::Momentum, 1.0)};
  OptimizerSpec dn = base("delayed_nesterov", OptimizerKind::DelayedNesterov, 0.7);
  dn.momentum = 0.9;
  dn.period = 1;
  Descriptor delayed{
      "delayed_nesterov", {{"lr", Field::Lr}, {"momentum", Field::Momentum}, {"period", Field::Period}}, dn};
  OptimizerSpec sg = base("sign", OptimizerKind::Sign, 4e-4);  // DeMo's OLMo config: lr 4e-4, wd 0
  sg.decoupled_weight_decay = true;
  Descriptor sign{"sign", {{"lr", Field::Lr}, {"weight_decay", Field::WeightDecay}}, sg};
  return {sgd(1.0),
          fedavg,
          momentum("momentum", OptimizerKind::Momentum, 0.7, 0.9),
          momentum("nesterov", OptimizerKind::Nesterov, 0.7, 0.9),
          adam("adam", 1e-3, 0.999, 0.0, false),
          fedavgm,
          fedopt("fedadagrad", OptimizerKind::FedAdagrad, 0.1, 0.1),
          fedopt("fedadam", OptimizerKind::FedAdam, 0.1, 0.1),
          fedopt("fedyogi", OptimizerKind::FedYogi, 0.01, 0.0316),
          delayed,
          sign};
}

std::string known_names(const std::vector<Descriptor>& table) {
  std::string out;
  for (const auto& d : table) {
    if (!out.empty()) out += ", ";
    out += d.name;
  }
  return out;
}

Descriptor find_descriptor(std::string_view name, bool outer) {
  const std::vector<Descriptor> table = outer ? outer_table() : inner_table();
  for (const auto& d : table)
    if (d.name == name) return d;
  throw_error(ErrorKind::Usage, "unknown {} optimizer '{}' (known: {})", outer ? "outer" : "inner", name,
              known_names(table));
}

// The descriptor a spec came from, looked up by its name in either table; nullptr for a
// hand-built spec with another name.
const Descriptor* descriptor_of(const OptimizerSpec& spec) {
  static const std::vector<Descriptor> inner = inner_table();
  static const std::vector<Descriptor> outer = outer_table();
  for (const auto* table : {&inner, &outer})
    for (const auto& d : *table)
      if (d.name == spec.name && d.defaults.kind == spec.kind) return &d;
  return nullptr;
}

void set_field(OptimizerSpec& s, Field f, Spec& spec, std::string_view key) {
  switch (f) {
    case Field::Lr: s.lr = *spec.take_real(key); break;
    case Field::Momentum: s.momentum = *spec.take_real(key); break;
    case Field::Beta1: s.beta1 = *spec.take_real(key); break;
    case Field::Beta2: s.beta2 = *spec.take_real(key); break;
    case Field::Eps: s.eps = *spec.take_real(key); break;
    case Field::WeightDecay: s.weight_decay = *spec.take_real(key); break;
    case Field::Decoupled: s.decoupled_weight_decay = *spec.take_boolean(key); break;
    case Field::EtaL: s.eta_l = *spec.take_real(key); break;
    case Field::BiasCorrection: s.bias_correction = *spec.take_boolean(key); break;
    case Field::Period: s.period = *spec.take_integer(key); break;
  }
}

std::string field_text(const OptimizerSpec& s, Field f) {
  switch (f) {
    case Field::Lr: return fmt::format("{}", s.lr);
    case Field::Momentum: return fmt::format("{}", s.momentum);
    case Field::Beta1: return fmt::format("{}", s.beta1);
    case Field::Beta2: return fmt::format("{}", s.beta2);
    case Field::Eps: return fmt::format("{}", s.eps);
    case Field::WeightDecay: return fmt::format("{}", s.weight_decay);
    case Field::Decoupled: return s.decoupled_weight_decay ? "true" : "false";
    case Field::EtaL: return fmt::format("{}", s.eta_l);
    case Field::BiasCorrection: return s.bias_correction ? "true" : "false";
    case Field::Period: return fmt::format("{}", s.period);
  }
  return {};
}

OptimizerSpec parse_spec(std::string_view text, bool outer) {
  Spec parsed(text, outer ? "outer optimizer" : "inner optimizer");
  const Descriptor d = find_descriptor(parsed.name(), outer);
  OptimizerSpec spec = d.defaults;
  std::vector<Field> seen;
  for (const auto& [key, value] : parsed.params()) {
    const Alias* alias = nullptr;
    for (const auto& a : kAliases)
      if (a.key == key) alias = &a;
    bool allowed = false;
    if (alias)
      for (const auto& k : d.keys)
        if (k.field == alias->field) allowed = true;
    if (!allowed) {
      std::string keys;
      for (const auto& k : d.keys) keys += (keys.empty() ? "" : ", ") + std::string(k.name);
      throw_error(ErrorKind::Usage, "{}: unknown parameter '{}' ({})", parsed.where(), key,
                  keys.empty() ? fmt::format("{} takes none", d.name) : "parameters: " + keys);
    }
    for (Field f : seen)
      if (f == alias->field)
        throw_error(ErrorKind::Usage, "{}: {} given twice (under another name)", parsed.where(), key);
    seen.push_back(alias->field);
    set_field(spec, alias->field, parsed, key);
  }
  validate_spec(spec);
  return spec;
}

// The name a field goes by in messages: the spec's own key when it has a descriptor.
std::string key_name(const OptimizerSpec& s, Field f) {
  if (const Descriptor* d = descriptor_of(s))
    for (const auto& k : d->keys)
      if (k.field == f) return std::string(k.name);
  for (const auto& a : kAliases)
    if (a.field == f) return std::string(a.key);
  return "?";
}

void check_nonnegative(const OptimizerSpec& s, Field f, double v) {
  if (!std::isfinite(v) || v < 0)
    throw_error(ErrorKind::Usage, "{}: {}={} is not a finite number ≥ 0", s.name, key_name(s, f), v);
}

void check_unit(const OptimizerSpec& s, Field f, double v) {
  if (!(v >= 0 && v < 1)) throw_error(ErrorKind::Usage, "{}: {}={} is not in [0, 1)", s.name, key_name(s, f), v);
}

}  // namespace

std::vector<std::string> optimizer_names(bool outer) {
  std::vector<std::string> names;
  for (const auto& d : outer ? outer_table() : inner_table()) names.emplace_back(d.name);
  return names;
}

OptimizerSpec inner_spec_defaults(std::string_view name) { return find_descriptor(name, false).defaults; }
OptimizerSpec outer_spec_defaults(std::string_view name) { return find_descriptor(name, true).defaults; }

OptimizerSpec parse_inner_spec(std::string_view text) { return parse_spec(text, false); }
OptimizerSpec parse_outer_spec(std::string_view text) { return parse_spec(text, true); }

std::string format_spec(const OptimizerSpec& spec) {
  std::string out = spec.name;
  const Descriptor* d = descriptor_of(spec);
  if (!d) throw_error(ErrorKind::Usage, "optimizer '{}' has no canonical text (unknown name)", spec.name);
  char sep = ':';
  for (const auto& k : d->keys) {
    out += sep;
    out += k.name;
    out += '=';
    out += field_text(spec, k.field);
    sep = ',';
  }
  return out;
}

void validate_spec(const OptimizerSpec& s) {
  check_nonnegative(s, Field::Lr, s.lr);
  switch (s.kind) {
    case OptimizerKind::Sgd: check_nonnegative(s, Field::WeightDecay, s.weight_decay); break;
    case OptimizerKind::Momentum:
    case OptimizerKind::Nesterov:
      check_unit(s, Field::Momentum, s.momentum);
      check_nonnegative(s, Field::WeightDecay, s.weight_decay);
      break;
    case OptimizerKind::Adam:
      check_unit(s, Field::Beta1, s.beta1);
      check_unit(s, Field::Beta2, s.beta2);
      check_nonnegative(s, Field::Eps, s.eps);
      check_nonnegative(s, Field::WeightDecay, s.weight_decay);
      break;
    case OptimizerKind::FedAdagrad:
      if (s.beta1 != 0)
        throw_error(ErrorKind::Usage, "{}: beta_1 must be 0 (FedAdagrad keeps no first moment)", s.name);
      check_nonnegative(s, Field::Eps, s.eps);
      check_nonnegative(s, Field::EtaL, s.eta_l);
      break;
    case OptimizerKind::FedAdam:
    case OptimizerKind::FedYogi:
      check_unit(s, Field::Beta1, s.beta1);
      check_unit(s, Field::Beta2, s.beta2);
      check_nonnegative(s, Field::Eps, s.eps);
      check_nonnegative(s, Field::EtaL, s.eta_l);
      break;
    case OptimizerKind::Sign: check_nonnegative(s, Field::WeightDecay, s.weight_decay); break;
    case OptimizerKind::DelayedNesterov:
      check_unit(s, Field::Momentum, s.momentum);
      if (s.period < 1) throw_error(ErrorKind::Usage, "{}: period={} is not ≥ 1", s.name, s.period);
      break;
  }
}

}  // namespace loco::optim
