// The stages' parallel loop (TBB; included by the stages' files only).
#pragma once

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstdint>

namespace loco::compress::detail {

// Parallel loop over [0, n) in chunks; body(begin, end). Chunks do not change any result.
template <typename F>
void parallel_chunks(std::int64_t n, std::int64_t grain, F&& body) {
  if (n <= 0) return;
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, n, std::max<std::int64_t>(grain, 1)),
                    [&](const tbb::blocked_range<std::int64_t>& r) { body(r.begin(), r.end()); });
}

}  // namespace loco::compress::detail
