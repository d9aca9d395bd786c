// What the templar stages share (topk tile=2d, quant range=templar): templar's k per tile and its
// accounting of the bytes it sends. templar is SparseLoCo's reference implementation
// (tplr-ai/templar, src/tplr/compress/topk.py and src/tplr/compress/bits.py).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>

namespace loco::compress::detail {

// Kept entries of a tile of n elements for top-k k, templar's TopKCompressor._clamp_topk:
// min(k, n), at least 2, then rounded down to even; a one-element tile (where templar's torch.topk
// with k = 2 would fail) keeps its element. n = 0 keeps nothing.
inline std::int64_t templar_tile_k(std::int64_t k, std::int64_t n) {
  if (n == 0) return 0;
  std::int64_t t = std::max<std::int64_t>(std::min(k, n), 2);
  t -= t % 2;
  return std::min(t, n);
}

// Bytes of templar's index payload (bits.py, encode_batch_rows) for `rows` tiles of `c` elements,
// each keeping `k` entries whose tile-local indices are idx[r·k, (r + 1)·k): a 29-bit header
// (C − 1 in 12 bits, the row count in 16, 1 reserved), then per row a 16-bit byte length and the row's
// Rice/bitmap code padded to whole bytes, the whole padded to whole bytes. A row's code is the cheaper,
// over sub-chunk sizes B ∈ {64, 128} dividing c (bits.py's B_choices; when neither divides c, every
// power of two dividing c, as its CPU reference encode_batch_rows_cpu does), of
//   10 + Σ_j (⌊n_j / 2^κ⌋ + 1 + κ) + min(log2(B)·k, B·|{j : n_j > 0}|)   bits,
// n_j the kept indices in sub-chunk j of B elements, κ = max(0, round(log2(k·B/c))) the Rice
// parameter; ties go to the smaller B. templar's header holds c ≤ 4096 and ≤ 65535 rows: more rows are
// counted as consecutive payloads of ≤ 65535 rows, each with its header. Returns -1 when c > 4096.
std::int64_t templar_index_bytes(std::span<const std::uint16_t> idx, std::int64_t rows, std::int64_t k, std::int64_t c);

}  // namespace loco::compress::detail
