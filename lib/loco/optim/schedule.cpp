// Learning-rate schedules (formulas in schedule.hpp), their parser and canonical text.
#include "loco/optim/schedule.hpp"

#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "loco/core/error.hpp"
#include "loco/core/spec.hpp"

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

}  // namespace

void validate_schedule(const ScheduleSpec& s) {
  if (s.warmup_steps < 0)
    throw_error(ErrorKind::Usage, "learning-rate schedule: warmup={} is negative", s.warmup_steps);
  if (s.kind == ScheduleKind::Constant) return;
  if (!std::isfinite(s.min_lr) || s.min_lr < 0)
    throw_error(ErrorKind::Usage, "learning-rate schedule: min_lr={} is not a finite number ≥ 0", s.min_lr);
  if (s.total_steps <= s.warmup_steps)
    throw_error(ErrorKind::Usage, "learning-rate schedule {}: total={} must exceed warmup={}", kind_name(s.kind),
                s.total_steps, s.warmup_steps);
}

ScheduleSpec parse_schedule(std::string_view text) {
  Spec parsed(text, "learning-rate schedule");
  const std::string& name = parsed.name();
  ScheduleSpec s;
  if (name == "constant") s.kind = ScheduleKind::Constant;
  else if (name == "linear") s.kind = ScheduleKind::Linear;
  else if (name == "cosine") s.kind = ScheduleKind::Cosine;
  else throw_error(ErrorKind::Usage, "unknown learning-rate schedule '{}' (known: constant, linear, cosine)", name);
  s.warmup_steps = parsed.integer("warmup", s.warmup_steps, 0);
  if (s.kind != ScheduleKind::Constant) {
    parsed.require("total", "<steps>");
    s.total_steps = *parsed.take_integer("total");
    s.min_lr = parsed.real("min_lr", s.min_lr, Range::at_least(0));
  }
  parsed.done();
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
