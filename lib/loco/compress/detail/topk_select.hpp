// Exact top-k selection by magnitude, shared by the topk and dct_topk stages (serial, for a tile or
// a chunk; stages/topk.cpp has the parallel one for a whole tensor).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <functional>
#include <vector>

namespace loco::compress::detail {

// Magnitude key: the float's bits without the sign orders finite |x| exactly (−0 equals +0).
inline std::uint32_t mag(float v) { return std::bit_cast<std::uint32_t>(v) & 0x7FFFFFFFu; }

struct Cand {
  std::uint32_t m;
  std::int64_t i;
};
// Preferred first: larger magnitude, then lower index.
inline bool before(const Cand& a, const Cand& b) { return a.m != b.m ? a.m > b.m : a.i < b.i; }

// The k-th preferred entry: an entry is kept iff it is not after it in the order above.
struct Cut {
  Cand last{0, -1};
  inline bool keep(std::uint32_t m, std::int64_t i) const { return m > last.m || (m == last.m && i <= last.i); }
};

// The cut that keeps the r preferred entries of cand (1 ≤ r ≤ |cand|), found on a copy so cand
// keeps its index order.
inline Cut cut_of(const std::vector<Cand>& cand, std::int64_t r, std::vector<Cand>& scratch) {
  scratch.assign(cand.begin(), cand.end());
  std::nth_element(scratch.begin(), scratch.begin() + (r - 1), scratch.end(), before);
  return Cut{scratch[static_cast<std::size_t>(r - 1)]};
}

// Serial exact top-k of x[0, n) (1 ≤ k < n) with caller-owned scratch; calls emit(i) in ascending
// order of i for the k kept positions. A histogram of the magnitudes' exponents finds the octave
// holding the k-th entry; only that octave's entries are ordered.
template <typename Emit>
void topk_serial(const float* x, std::int64_t n, std::int64_t k, std::vector<std::uint32_t>& hist,
                 std::vector<Cand>& cand, std::vector<Cand>& scratch, Emit&& emit) {
  if (n <= 256) {  // short rows (DCT chunks): select on 64-bit keys directly
    // key = magnitude, then the complement of the index: unique, and larger means preferred, so
    // the kept entries are exactly those whose key is at least the k-th largest.
    std::uint64_t keys[256];
    for (std::int64_t j = 0; j < n; ++j)
      keys[j] = (std::uint64_t{mag(x[j])} << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(j));
    std::uint64_t cut;
    if (k <= 16) {  // the k largest, ascending in top[0, k): few insertions on typical data
      std::uint64_t top[16];
      std::copy(keys, keys + k, top);
      std::sort(top, top + k);
      for (std::int64_t j = k; j < n; ++j) {
        const std::uint64_t v = keys[j];
        if (v <= top[0]) continue;
        std::int64_t p = 0;
        while (p + 1 < k && top[p + 1] < v) top[p] = top[p + 1], ++p;
        top[p] = v;
      }
      cut = top[0];
    } else {
      std::uint64_t sel[256];
      std::copy(keys, keys + n, sel);
      std::nth_element(sel, sel + (k - 1), sel + n, std::greater<>());
      cut = sel[k - 1];
    }
    for (std::int64_t j = 0; j < n; ++j)
      if (keys[j] >= cut) emit(j);
    return;
  }
  constexpr int kShift = 23;
  constexpr std::uint32_t kB = 1u << (31 - kShift);
  hist.assign(2 * kB, 0);
  std::uint32_t* h0 = hist.data();
  std::uint32_t* h1 = hist.data() + kB;  // two histograms halve the store-to-load chains on repeats
  std::int64_t i = 0;
  for (; i + 1 < n; i += 2) {
    ++h0[mag(x[i]) >> kShift];
    ++h1[mag(x[i + 1]) >> kShift];
  }
  if (i < n) ++h0[mag(x[i]) >> kShift];
  std::int64_t above = 0;
  std::uint32_t b = kB - 1;
  for (;; --b) {
    const std::int64_t c = static_cast<std::int64_t>(h0[b]) + h1[b];
    if (above + c >= k) break;
    above += c;
  }
  cand.clear();
  for (std::int64_t j = 0; j < n; ++j) {
    const std::uint32_t m = mag(x[j]);
    if ((m >> kShift) == b) cand.push_back({m, j});
  }
  const Cut cut = cut_of(cand, k - above, scratch);
  for (std::int64_t j = 0; j < n; ++j)
    if ((mag(x[j]) >> kShift) > b || ((mag(x[j]) >> kShift) == b && cut.keep(mag(x[j]), j))) emit(j);
}

}  // namespace loco::compress::detail
