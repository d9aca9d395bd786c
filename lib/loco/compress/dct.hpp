// DeMo's DCT tiling as the dct_topk codec applies it, and the view of a dct_topk encoding as a
// sparse vector over its coefficient domain. Reducers that average dct_topk tensors coefficient by
// coefficient (DeMo's scatter mean over the workers that chose an index) and then invert use the
// codec-neutral form of this: CoefficientDomain, decode(e, Domain::Coefficients) and selection_mask
// (codec.hpp), or EncodedReader (encoded_file.hpp).
#pragma once

#include <cstdint>

#include "loco/compress/codec.hpp"
#include "loco/core/tensor.hpp"

namespace loco::compress {

// DeMo's tile length for a dimension of n elements (its _get_smaller_split): the largest divisor of
// n that is at most chunk; n itself when n ≤ chunk, and 1 for a prime n > chunk (e.g. 384 → 64,
// 100 → 50, 97 → 1 at chunk 64). Throws Error(Usage) when n or chunk is below 1.
std::int64_t dct_tile_size(std::int64_t n, std::int64_t chunk);

// The coefficient domain of dct_topk over one tensor: `tiles` tiles of `tile` coefficients each, in
// tile-major order (the order dct_topk writes them), of which `kept` per tile are sent.
//   tile=1d: tiles = ceil(numel/chunk) chunks of the flattened tensor (the last zero-padded),
//            tile = chunk (tile_rows 1, tile_cols chunk), kept = k.
//   tile=2d: the tensor as rows × cols (rank ≥ 2: shape[0] × the product of the rest; rank ≤ 1:
//            1 × numel), tile_rows = dct_tile_size(rows, chunk), tile_cols = dct_tile_size(cols, chunk),
//            tiles = (rows/tile_rows)·(cols/tile_cols) in row-major order of the tile grid,
//            tile = tile_rows·tile_cols, coefficient (a, b) of a tile at a·tile_cols + b,
//            kept = min(k, tile) (DeMo clamps k to the tile).
struct DctDomain {
  std::int64_t tiles = 0, tile = 0, tile_rows = 0, tile_cols = 0, kept = 0;
  std::int64_t rows = 0, cols = 0;  // tile=2d: the matrix view of the tensor
  std::int64_t size() const { return tiles * tile; }
};

// The domain of the dct_topk stage `stage` (one stage of a parsed spec) over a tensor of `shape`.
// Throws Error(Usage) when stage is not a valid dct_topk stage.
DctDomain dct_domain(const StageSpec& stage, const Shape& shape);

// The stage that reads the datasets of a dct_topk encoding of a tensor of `shape` as a sparse vector
// over its coefficient domain: "topk:k=KEPT,tile=TILE". Substituted for the dct_topk stage of the
// spec (any value stage after it unchanged) and decoded with shape {domain.size()}, the encoding gives
// the tensor's kept coefficients, tile-major, zeros elsewhere; decoding all-ones values gives the
// selection mask. Throws as dct_domain.
StageSpec dct_coefficient_stage(const StageSpec& stage, const Shape& shape);

// The inverse transform: the tensor of `shape` whose dct_topk coefficients (domain of `stage`,
// tile-major, float32, domain.size() of them) are coef; in 1d mode the padding past numel is dropped.
// Exactly dct_topk's decoder with every coefficient kept. Throws Error(BadInput) when coef has
// another size or dtype, Error(Usage) as dct_domain.
Tensor dct_inverse(Tensor coef, const StageSpec& stage, const Shape& shape);

}  // namespace loco::compress
