// Communication schedules of decentralized training: which rounds gossip. Constant period,
// late-concentrated (sparse, then every round near the end: the "truncate" schedule of
// "A Single Merging Suffices", Zhu et al. 2025), a dense window (their "truncate_v2"), or never
// (local training only). The single global merge at the end is the pipeline's last step and
// happens under every schedule.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace loco::gossip {

struct Schedule {
  enum class Kind { Every, Late, Window, None };
  Kind kind = Kind::Every;
  std::int64_t period = 1;        // every: gossip every P rounds; late/window: outside the dense part (0: never)
  std::int64_t dense_period = 1;  // late/window: inside the dense part
  double from = 0;                // late: the dense part is the rounds after fraction `from` of training
  double start = 0, length = 0;   // window: the dense part is the rounds in (start, start + length] of training
};

// Parses "every[:period=P]" (P ≥ 1, default 1), "late:from=F[,period=P,dense_period=Q]" (F in
// [0, 1], P ≥ 0 default 0, Q ≥ 1 default 1), "window:start=S,length=L[,period=P,dense_period=Q]"
// (S, L ≥ 0, S + L ≤ 1) and "none". Throws Error(Usage) naming the text.
Schedule parse_schedule(std::string_view text);
std::string format_schedule(const Schedule& s);

// The last round of the first `fraction` of `rounds` rounds: ⌊fraction · rounds⌋ (with a 1e-9
// allowance so 0.3 · 10 is 3).
std::int64_t round_at(double fraction, std::int64_t rounds);

// Whether round t (1-based, 1 ≤ t ≤ rounds) ends with a gossip step. every: t mod P = 0. late:
// t > round_at(from) uses Q, else P (P = 0: no gossip). window: round_at(start) < t ≤
// round_at(start + length) uses Q, else P. none: never. A period applies to t itself
// (t mod period = 0). Throws Error(Usage) for t outside [1, rounds].
bool communicates(const Schedule& s, std::int64_t round, std::int64_t rounds);

// The rounds in 1..rounds that gossip, ascending.
std::vector<std::int64_t> communicating_rounds(const Schedule& s, std::int64_t rounds);

}  // namespace loco::gossip
