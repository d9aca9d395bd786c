// The producer string every written file records: tool, version and command line.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace loco {

// Set once by the tool wrapper from argv; "loco <version>" until then.
void set_producer(std::string_view tool, const std::vector<std::string>& argv);
const std::string& producer();
// Current UTC time as ISO 8601, "2026-11-23T14:22:22Z".
std::string utc_timestamp();

}  // namespace loco
