// Learning-rate schedules (formulas in schedule.hpp), their parser and canonical text.
#include "loco/optim/schedule.hpp"

#include <charconv>
#include <cmath>
#include <numbers>
#include <system_error>

#include <fmt/format.h>

#include "loco/core/error.hpp"

namespace loco::optim {

namespace {

std::string_view kind_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::Constant: return "constant";
    case ScheduleKind::Linear: return "linear";
    case ScheduleKind::Cosine: return "cosine";
  }
  return "?";
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::int64_t parse_steps(std::string_view key, std::string_view text) {
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty())
    throw_error(ErrorKind::Usage, "learning-rate schedule: {}={} is not an integer", key, text);
  return v;
}

double parse_real(std::string_view key, std::string_view text) {
  double v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty())
    throw_error(ErrorKind::Usage, "learning-rate schedule: {}={} is not a number", key, text);
  return v;
}

}  // namespace

void validate_schedule(const ScheduleSpec& s) {
  if (s.warmup_steps < 0) throw_error(ErrorKind::Usage, "learning-rate schedule: warmup={} is negative", s.warmup_steps);
  if (s.kind == ScheduleKind::Constant) return;
  if (!std::isfinite(s.min_lr) || s.min_lr < 0)
    throw_error(ErrorKind::Usage, "learning-rate schedule: min_lr={} is not a finite number ≥ 0", s.min_lr);
  if (s.total_steps <= s.warmup_steps)
    throw_error(ErrorKind::Usage, "learning-rate schedule {}: total={} must exceed warmup={}", kind_name(s.kind),
                s.total_steps, s.warmup_steps);
}

ScheduleSpec parse_schedule(std::string_view text) {
  text = trim(text);
  const std::size_t colon = text.find(':');
  const std::string_view name = trim(text.substr(0, colon));
  ScheduleSpec s;
  if (name == "constant")
    s.kind = ScheduleKind::Constant;
  else if (name == "linear")
    s.kind = ScheduleKind::Linear;
  else if (name == "cosine")
    s.kind = ScheduleKind::Cosine;
  else
    throw_error(ErrorKind::Usage, "unknown learning-rate schedule '{}' (known: constant, linear, cosine)", name);
  bool have_warmup = false, have_total = false, have_min = false;
  if (colon != std::string_view::npos) {
    std::string_view rest = text.substr(colon + 1);
    while (true) {
      const std::size_t comma = rest.find(',');
      const std::string_view item = trim(rest.substr(0, comma));
      const std::size_t eq = item.find('=');
      if (item.empty() || eq == std::string_view::npos)
        throw_error(ErrorKind::Usage, "learning-rate schedule: option '{}' is not key=value", item);
      const std::string_view key = trim(item.substr(0, eq));
      const std::string_view value = trim(item.substr(eq + 1));
      const bool decays = s.kind != ScheduleKind::Constant;
      bool* seen = nullptr;
      if (key == "warmup") {
        seen = &have_warmup;
        s.warmup_steps = parse_steps(key, value);
      } else if (key == "total" && decays) {
        seen = &have_total;
        s.total_steps = parse_steps(key, value);
      } else if (key == "min_lr" && decays) {
        seen = &have_min;
        s.min_lr = parse_real(key, value);
      } else {
        throw_error(ErrorKind::Usage, "learning-rate schedule {}: unknown option '{}' (options: {})", name, key,
                    decays ? "warmup, total, min_lr" : "warmup");
      }
      if (*seen) throw_error(ErrorKind::Usage, "learning-rate schedule: option '{}' given twice", key);
      *seen = true;
      if (comma == std::string_view::npos) break;
      rest = rest.substr(comma + 1);
    }
  }
  if (s.kind != ScheduleKind::Constant && !have_total)
    throw_error(ErrorKind::Usage, "learning-rate schedule {} needs total=<steps>", name);
  validate_schedule(s);
  return s;
}

std::string format_schedule(const ScheduleSpec& s) {
  if (s.kind == ScheduleKind::Constant) return fmt::format("constant:warmup={}", s.warmup_steps);
  return fmt::format("{}:warmup={},total={},min_lr={}", kind_name(s.kind), s.warmup_steps, s.total_steps, s.min_lr);
}

double scheduled_lr(const ScheduleSpec& s, double base_lr, std::int64_t t) {
  validate_schedule(s);
  if (!std::isfinite(base_lr) || base_lr < 0)
    throw_error(ErrorKind::Usage, "learning rate {} is not a finite number ≥ 0", base_lr);
  if (t < 0) throw_error(ErrorKind::Usage, "learning-rate schedule: step {} is negative", t);
  if (s.kind != ScheduleKind::Constant && s.min_lr > base_lr)
    throw_error(ErrorKind::Usage, "learning-rate schedule: min_lr={} exceeds the learning rate {}", s.min_lr, base_lr);
  if (t < s.warmup_steps) return base_lr * static_cast<double>(t + 1) / static_cast<double>(s.warmup_steps);
  if (s.kind == ScheduleKind::Constant) return base_lr;
  if (t >= s.total_steps) return s.min_lr;
  const double p = static_cast<double>(t - s.warmup_steps) / static_cast<double>(s.total_steps - s.warmup_steps);
  const double c = s.kind == ScheduleKind::Linear ? 1.0 - p : (1.0 + std::cos(std::numbers::pi * p)) / 2.0;
  return base_lr * c + s.min_lr * (1.0 - c);
}

}  // namespace loco::optim
