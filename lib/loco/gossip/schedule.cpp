// Communication schedules: parsing and the per-round decision.
#include "loco/gossip/schedule.hpp"

#include <cmath>
#include <fmt/format.h>

#include "loco/core/error.hpp"
#include "loco/core/spec.hpp"

namespace loco::gossip {

Schedule parse_schedule(std::string_view text) {
  Spec s(text, "schedule");
  Schedule r;
  const Range fraction = Range::between(0, 1);
  if (s.name() == "every") {
    r.period = s.integer("period", r.period, 1);
  } else if (s.name() == "late") {
    r.kind = Schedule::Kind::Late;
    s.require("from", "F (fraction of training)");
    r.from = *s.take_real("from", fraction);
    r.period = s.integer("period", 0, 0);
    r.dense_period = s.integer("dense_period", r.dense_period, 1);
  } else if (s.name() == "window") {
    r.kind = Schedule::Kind::Window;
    s.require("start", "S (fraction of training)");
    s.require("length", "L (fraction of training)");
    r.start = *s.take_real("start", fraction);
    r.length = *s.take_real("length", fraction);
    if (r.start + r.length > 1 + 1e-12)
      throw_error(ErrorKind::Usage, "{}: start + length must be at most 1", s.where());
    r.period = s.integer("period", 0, 0);
    r.dense_period = s.integer("dense_period", r.dense_period, 1);
  } else if (s.name() == "none") {
    r.kind = Schedule::Kind::None;
  } else {
    throw_error(ErrorKind::Usage,
                "schedule '{}': unknown; expected every[:period=P], late:from=F[,period=P,dense_period=Q], "
                "window:start=S,length=L[,period=P,dense_period=Q] or none",
                text);
  }
  s.done();
  return r;
}

std::string format_schedule(const Schedule& s) {
  switch (s.kind) {
    case Schedule::Kind::Every: return fmt::format("every:period={}", s.period);
    case Schedule::Kind::Late:
      return fmt::format("late:from={},period={},dense_period={}", s.from, s.period, s.dense_period);
    case Schedule::Kind::Window:
      return fmt::format("window:start={},length={},period={},dense_period={}", s.start, s.length, s.period,
                         s.dense_period);
    case Schedule::Kind::None: return "none";
  }
  return "?";
}

std::int64_t round_at(double fraction, std::int64_t rounds) {
  return static_cast<std::int64_t>(std::floor(fraction * static_cast<double>(rounds) + 1e-9));
}

bool communicates(const Schedule& s, std::int64_t t, std::int64_t rounds) {
  if (rounds < 1 || t < 1 || t > rounds)
    throw_error(ErrorKind::Usage, "schedule {}: round {} is outside 1..{}", format_schedule(s), t, rounds);
  const auto every = [t](std::int64_t p) { return p > 0 && t % p == 0; };
  switch (s.kind) {
    case Schedule::Kind::Every: return every(s.period);
    case Schedule::Kind::Late: return every(t > round_at(s.from, rounds) ? s.dense_period : s.period);
    case Schedule::Kind::Window: {
      const bool dense = t > round_at(s.start, rounds) && t <= round_at(s.start + s.length, rounds);
      return every(dense ? s.dense_period : s.period);
    }
    case Schedule::Kind::None: return false;
  }
  return false;
}

std::vector<std::int64_t> communicating_rounds(const Schedule& s, std::int64_t rounds) {
  std::vector<std::int64_t> out;
  for (std::int64_t t = 1; t <= rounds; ++t)
    if (communicates(s, t, rounds)) out.push_back(t);
  return out;
}

}  // namespace loco::gossip
