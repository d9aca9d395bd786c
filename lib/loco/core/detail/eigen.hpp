// Included by every library source that uses Eigen (never by a public header): pins the cache sizes
// from which Eigen's matrix products choose their blocking.
#pragma once

#include <Eigen/Core>

namespace loco::detail {

// Eigen sizes the k-blocks of a matrix product from the cache sizes it reads with CPUID at run
// time, and the k-blocking decides how each dot product is summed: one binary gave other bits on a
// CPU with another L1 size (a Slurm node of another generation). Pinned here, during static
// initialisation, the blocking depends only on the build's kernel set (docs/decisions.md, "What
// is bit-identical where"). 32 KiB is the L1 data cache of every x86-64 server core since Nehalem
// (Ice Lake and later have 48 KiB, which a 32 KiB blocking uses well); L2 and L3 are Eigen's own
// defaults doubled to what current server cores have per core at least.
inline const bool eigen_blocking_pinned =
    (Eigen::setCpuCacheSizes(std::ptrdiff_t{32} << 10, std::ptrdiff_t{512} << 10, std::ptrdiff_t{4} << 20), true);

}  // namespace loco::detail
