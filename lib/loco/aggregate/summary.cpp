// The summary of a round as one JSON object (aggregate.hpp, summary_json).
#include <nlohmann/json.hpp>

#include "loco/aggregate/aggregate.hpp"

namespace loco::aggregate {

std::string summary_json(const AggregateSummary& s) {
  using nlohmann::json;
  auto opt = [](const std::optional<std::int64_t>& v) { return v ? json(*v) : json(nullptr); };
  json contributors = json::array(), dropped = json::array();
  for (const auto& c : s.contributors)
    contributors.push_back({{"path", c.path},
                            {"worker", opt(c.worker)},
                            {"samples", opt(c.samples)},
                            {"round", opt(c.round)},
                            {"staleness", c.staleness},
                            {"weight", c.weight},
                            {"payload_bytes", c.payload_bytes},
                            {"codec", c.codec},
                            {"clipped_tensors", c.clipped_tensors},
                            {"norm", c.norm >= 0 ? json(c.norm) : json(nullptr)},
                            {"dp_factor", c.dp_factor},
                            {"loss", c.loss ? json(*c.loss) : json(nullptr)},
                            {"selected", c.selected}});
  for (const auto& d : s.dropped)
    dropped.push_back(
        {{"path", d.path}, {"worker", opt(d.worker)}, {"reason", d.reason}, {"payload_bytes", d.payload_bytes}});
  json j = {
      {"model", s.model},
      {"output", s.output},
      {"round", s.round},
      {"outer_step", s.outer_step},
      {"reduce", s.reduce},
      {"clip", s.clip},
      {"outer", s.outer},
      {"staleness", s.staleness_rule},
      {"contributors", contributors},
      {"dropped", dropped},
      {"update_norm", s.update_norm},
      {"step_norm", s.step_norm},
      {"bytes_read", s.bytes_read},
      {"delta_bytes_read", s.delta_bytes_read},
      {"payload_bytes", s.payload_bytes},
      {"compressed_deltas", s.compressed_deltas},
      {"passes", s.passes},
      {"robust",
       {{"coefficients", s.robust_coefficients}, {"iterations", s.robust_iterations}, {"passes", s.robust_passes}}},
      {"dp", s.dp.enabled ? json{{"clip", s.dp.clip},
                                 {"noise_multiplier", s.dp.noise_multiplier},
                                 {"effective_noise_multiplier", s.dp.effective_noise_multiplier},
                                 {"sigma", s.dp.sigma},
                                 {"m", s.dp.m},
                                 {"clipped", s.dp.clipped},
                                 {"seed", s.dp.seed},
                                 {"adaptive", s.dp.adaptive},
                                 {"unclipped_fraction", s.dp.adaptive ? json(s.dp.unclipped_fraction) : json(nullptr)},
                                 {"next_clip", s.dp.adaptive ? json(s.dp.next_clip) : json(nullptr)}}
                          : json(nullptr)},
      {"seconds", {{"open", s.seconds_open}, {"reduce", s.seconds_reduce}, {"commit", s.seconds_commit}}},
      {"elapsed_seconds", s.elapsed_seconds}};
  return j.dump();
}

}  // namespace loco::aggregate
