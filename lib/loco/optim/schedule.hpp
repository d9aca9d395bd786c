// Learning-rate schedules of the inner loop: constant, linear decay and cosine decay, each with an
// optional linear warm-up.
//
// With base rate lr, warm-up W ≥ 0 steps, total T steps, floor min_lr and t the 0-based index of
// the step about to be taken:
//   t < W                 lr(t) = lr·(t + 1)/W                     (every kind; lr(W − 1) = lr)
//   constant, t ≥ W       lr(t) = lr
//   linear,   W ≤ t < T   lr(t) = min_lr + (lr − min_lr)·(1 − p)
//   cosine,   W ≤ t < T   lr(t) = min_lr + (lr − min_lr)·(1 + cos(π·p))/2
//             with p = (t − W)/(T − W), so lr(W) = lr
//   linear, cosine, t ≥ T lr(t) = min_lr
// In double; the decaying forms are evaluated as lr·c + min_lr·(1 − c) with c = 1 − p or
// (1 + cos(π·p))/2, which gives lr(W) = lr exactly.
// The warm-up starts at lr/W rather than 0 (unlike Hugging Face's get_cosine_schedule_with_warmup,
// whose step 0 has rate 0), so no step is wasted.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace loco::optim {

enum class ScheduleKind { Constant, Linear, Cosine };

struct ScheduleSpec {
  ScheduleKind kind = ScheduleKind::Constant;
  std::int64_t warmup_steps = 0;  // W
  std::int64_t total_steps = 0;   // T: linear and cosine reach min_lr here; unused by constant
  double min_lr = 0.0;            // floor of linear and cosine
};

// Parses "constant", "constant:warmup=100", "linear:warmup=100,total=5000,min_lr=0" or
// "cosine:warmup=1000,total=88000,min_lr=4e-5"; linear and cosine need total. Throws
// Error(Usage) naming the bad key or value, or when total ≤ warmup for linear and cosine.
ScheduleSpec parse_schedule(std::string_view text);
// The canonical text, which parse_schedule reads back to the same spec.
std::string format_schedule(const ScheduleSpec& spec);
// Throws Error(Usage) when warmup < 0, min_lr is negative or not finite, or (linear, cosine)
// total ≤ warmup.
void validate_schedule(const ScheduleSpec& spec);

// The learning rate of step t by the formulas above. Throws Error(Usage) when t < 0, base_lr is
// not finite or negative, min_lr > base_lr (linear, cosine), or validate_schedule throws.
double scheduled_lr(const ScheduleSpec& spec, double base_lr, std::int64_t t);

}  // namespace loco::optim
