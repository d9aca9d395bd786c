// What loco-inspect reports about tensor files: listing, statistics, checksums and differences.
// Everything streams tensor by tensor in row blocks, so memory does not grow with the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "loco/io/source.hpp"

namespace loco::io {

struct TensorStats {
  std::int64_t count = 0;  // elements
  std::int64_t nan = 0, inf = 0;
  double min = 0, max = 0;              // over finite values (0 when none)
  double mean = 0, stddev = 0, l2 = 0;  // over finite values; stddev is the population one
};

// Statistics of one tensor, computed in double in fixed-size blocks combined in a fixed order,
// so the result is the same for any thread count.
TensorStats tensor_stats(const TensorSource& s, const TensorInfo& t);

struct InspectOptions {
  bool stats = false;
  bool checksum = false;
};
// A JSON description of the file: format, attributes (root and, for loco files, of groups that
// have them), and per tensor group, name, dtype, shape, bytes, attributes, optionally stats and
// checksum; with checksums, the checksum of the /tensors group as deltas record it (when it has tensors).
nlohmann::json inspect_json(const TensorSource& s, const InspectOptions& opt);
// The same as aligned text for a person.
std::string inspect_text(const TensorSource& s, const InspectOptions& opt);

struct DiffOptions {
  double rtol = 0;  // |a − b| ≤ atol + rtol·|b| counts as equal (numpy.isclose's rule)
  double atol = 0;
};
struct TensorDiff {
  std::string key;      // group/name
  std::string problem;  // "only in A", "only in B", "dtype", "shape", or "values"
  std::string detail;
  std::int64_t mismatches = 0;
  double max_abs = 0, max_rel = 0;
};
// Differences between two files' tensors (every group), compared by key; values as float64,
// NaN equal to NaN, an infinity equal only to the same infinity. Empty when they match.
std::vector<TensorDiff> diff_sources(const TensorSource& a, const TensorSource& b, const DiffOptions& opt);
nlohmann::json diff_json(const std::vector<TensorDiff>& diffs);
std::string diff_text(const TensorSource& a, const TensorSource& b, const std::vector<TensorDiff>& diffs);

}  // namespace loco::io
