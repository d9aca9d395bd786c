// The topk stage: exact top-k by magnitude, per tensor, per flat tile or per 2-D tile (templar's
// tiling), and the parallel exact selection it and topk_indices use.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <optional>

#include "loco/compress/detail/parallel.hpp"
#include "loco/compress/dct.hpp"
#include "loco/compress/detail/stage.hpp"
#include "loco/compress/detail/templar.hpp"
#include "loco/compress/detail/topk_select.hpp"
#include "loco/core/error.hpp"

namespace loco::compress {
namespace {

using namespace detail;

constexpr std::int64_t kChunk = 1 << 16;

// Writes to idx, ascending, the positions of x (in chunks of kChunk) not after cut.
void emit_kept(std::span<const float> x, const Cut& cut, std::int64_t k, std::int64_t* idx) {
  const std::int64_t n = static_cast<std::int64_t>(x.size()), chunks = ceil_div(n, kChunk);
  std::vector<std::int64_t> off(static_cast<std::size_t>(chunks) + 1, 0);
  parallel_chunks(chunks, 1, [&](std::int64_t cb, std::int64_t ce) {
    for (std::int64_t c = cb; c < ce; ++c) {
      std::int64_t cnt = 0;
      for (std::int64_t i = c * kChunk, e = std::min(n, (c + 1) * kChunk); i < e; ++i) cnt += cut.keep(mag(x[i]), i);
      off[c + 1] = cnt;
    }
  });
  for (std::int64_t c = 0; c < chunks; ++c) off[c + 1] += off[c];
  if (off[chunks] != k) throw_error(ErrorKind::Internal, "top-k selected {} entries instead of {}", off[chunks], k);
  parallel_chunks(chunks, 1, [&](std::int64_t cb, std::int64_t ce) {
    for (std::int64_t c = cb; c < ce; ++c) {
      std::int64_t o = off[c];
      for (std::int64_t i = c * kChunk, e = std::min(n, (c + 1) * kChunk); i < e; ++i)
        if (cut.keep(mag(x[i]), i)) idx[o++] = i;
    }
  });
}

// Parallel exact top-k by a histogram of magnitudes (8 exponent + 3 mantissa bits) over chunks.
void topk_histogram(std::span<const float> x, std::int64_t k, std::int64_t* idx) {
  constexpr int kShift = 20;
  constexpr std::size_t kB = std::size_t{1} << (31 - kShift);
  const std::int64_t n = static_cast<std::int64_t>(x.size()), chunks = ceil_div(n, kChunk);
  std::vector<std::uint32_t> hists(static_cast<std::size_t>(chunks) * kB, 0);
  parallel_chunks(chunks, 1, [&](std::int64_t cb, std::int64_t ce) {
    for (std::int64_t c = cb; c < ce; ++c) {
      std::uint32_t* h = hists.data() + c * kB;
      for (std::int64_t i = c * kChunk, e = std::min(n, (c + 1) * kChunk); i < e; ++i) ++h[mag(x[i]) >> kShift];
    }
  });
  std::vector<std::uint64_t> total(kB, 0);
  for (std::int64_t c = 0; c < chunks; ++c)
    for (std::size_t b = 0; b < kB; ++b) total[b] += hists[c * kB + b];
  std::int64_t above = 0;
  std::uint32_t bucket = kB - 1;
  for (;; --bucket) {
    if (above + static_cast<std::int64_t>(total[bucket]) >= k) break;
    above += static_cast<std::int64_t>(total[bucket]);
  }
  std::vector<std::int64_t> cand_off(static_cast<std::size_t>(chunks) + 1, 0);
  for (std::int64_t c = 0; c < chunks; ++c) cand_off[c + 1] = cand_off[c] + hists[c * kB + bucket];
  std::vector<Cand> cand(static_cast<std::size_t>(cand_off[chunks])), scratch;
  parallel_chunks(chunks, 1, [&](std::int64_t cb, std::int64_t ce) {
    for (std::int64_t c = cb; c < ce; ++c) {
      std::int64_t o = cand_off[c];
      for (std::int64_t i = c * kChunk, e = std::min(n, (c + 1) * kChunk); i < e; ++i) {
        const std::uint32_t m = mag(x[i]);
        if ((m >> kShift) == bucket) cand[o++] = {m, i};
      }
    }
  });
  emit_kept(x, cut_of(cand, k - above, scratch), k, idx);
}

// Parallel exact top-k of a whole tensor (1 ≤ k < n); idx gets the kept positions ascending.
// A strided sample of 64 Ki magnitudes gives a threshold τ expected to pass about 1.25·k entries;
// one counting pass checks that at least k pass (else, or when τ lets through a quarter of x, the
// histogram method runs), and only the entries at or above τ are ordered.
void topk_parallel(std::span<const float> x, std::int64_t k, std::int64_t* idx) {
  const std::int64_t n = static_cast<std::int64_t>(x.size()), chunks = ceil_div(n, kChunk);
  const std::int64_t stride = std::max<std::int64_t>(1, n / 65536), s = ceil_div(n, stride);
  const double ks = static_cast<double>(k) * static_cast<double>(s) / static_cast<double>(n);
  const auto rs = static_cast<std::int64_t>(std::ceil(1.25 * ks + 4 * std::sqrt(ks) + 8));
  if (rs >= s) return topk_histogram(x, k, idx);
  std::vector<std::uint32_t> sample(static_cast<std::size_t>(s));
  for (std::int64_t j = 0; j < s; ++j) sample[j] = mag(x[j * stride]);
  std::nth_element(sample.begin(), sample.begin() + (rs - 1), sample.end(), std::greater<>());
  const std::uint32_t tau = sample[static_cast<std::size_t>(rs - 1)];
  std::vector<std::int64_t> off(static_cast<std::size_t>(chunks) + 1, 0);
  parallel_chunks(chunks, 1, [&](std::int64_t cb, std::int64_t ce) {
    for (std::int64_t c = cb; c < ce; ++c) {
      std::int64_t cnt = 0;
      for (std::int64_t i = c * kChunk, e = std::min(n, (c + 1) * kChunk); i < e; ++i) cnt += mag(x[i]) >= tau;
      off[c + 1] = cnt;
    }
  });
  for (std::int64_t c = 0; c < chunks; ++c) off[c + 1] += off[c];
  const std::int64_t total = off[chunks];
  if (total < k || total > n / 4) return topk_histogram(x, k, idx);
  std::vector<Cand> cand(static_cast<std::size_t>(total)), scratch;
  parallel_chunks(chunks, 1, [&](std::int64_t cb, std::int64_t ce) {
    for (std::int64_t c = cb; c < ce; ++c) {
      std::int64_t o = off[c];
      for (std::int64_t i = c * kChunk, e = std::min(n, (c + 1) * kChunk); i < e; ++i) {
        const std::uint32_t m = mag(x[i]);
        if (m >= tau) cand[o++] = {m, i};
      }
    }
  });
  const Cut cut = cut_of(cand, k, scratch);
  std::int64_t o = 0;
  for (const Cand& c : cand)
    if (cut.keep(c.m, c.i)) idx[o++] = c.i;
  if (o != k) throw_error(ErrorKind::Internal, "top-k selected {} entries instead of {}", o, k);
}

// tile=2d: templar's tiling (SparseLoCo's reference, tplr-ai/templar src/tplr/compress/topk.py,
// ChunkingTransformer.encode and TopKCompressor.compress/_clamp_topk). The tensor is read as a
// rows × cols matrix (rank ≥ 2: shape[0] × the product of the rest, where templar handles rank 2
// only; rank ≤ 1: 1 × numel, templar's "(x w) -> x w"), cut into tile_rows × tile_cols tiles with
// tile_rows = dct_tile_size(rows, chunk), tile_cols = dct_tile_size(cols, chunk) (templar's
// _get_smaller_split: the largest divisor ≤ chunk, the dimension itself when ≤ chunk), tiles in
// row-major order of the tile grid ("(y h) (x w) -> y x h w"), element (r, c) of a tile at local index
// r·tile_cols + c ("y x (h w)"). Per tile templar's _clamp_topk of k: min(k, tile), at least 2, then
// made even; a one-element tile (templar's torch.topk would fail) keeps its element.
struct Grid {
  std::int64_t rows = 0, cols = 0, tile_rows = 1, tile_cols = 1, tiles = 0, tile = 1, kept = 0;
};

class TopkStage final : public Stage {
 public:
  explicit TopkStage(const StageSpec& s) {
    Spec p = stage_params(s);
    if (p.has("k") && p.has("density")) throw_error(ErrorKind::Usage, "codec topk: give k or density, not both");
    const std::optional<std::string> tile = p.take("tile");
    tile2d_ = tile && *tile == "2d";
    if (tile2d_) {
      if (p.has("density"))
        throw_error(ErrorKind::Usage, "codec topk: tile=2d keeps k per tile (templar's topk); give k, not density");
      k_ = p.integer("k", 64, 1, std::int64_t{1} << 16);
      chunk_ = p.integer("chunk", 64, 1, 256);
    } else {
      if (p.has("chunk")) throw_error(ErrorKind::Usage, "codec topk: chunk is a parameter of tile=2d");
      k_ = p.integer("k", 0, 1, std::numeric_limits<std::int64_t>::max());
      density_ = k_ > 0 ? 0.0 : p.real("density", 0.01, Range::between(0.0, 1.0, true));
      tile_ = p.integer("tile", 0, 0, std::int64_t{1} << 40);
    }
    p.done();
  }
  std::string_view name() const override { return "topk"; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    std::vector<std::pair<std::string, std::string>> c;
    if (k_ > 0) c.emplace_back("k", std::to_string(k_));
    else c.emplace_back("density", real_text(density_));
    if (tile2d_) {
      c.emplace_back("tile", "2d");
      c.emplace_back("chunk", std::to_string(chunk_));
    } else {
      c.emplace_back("tile", std::to_string(tile_));
    }
    return c;
  }
  void record(Attributes& a, const std::string& prefix) const override {
    if (k_ > 0) a.set(prefix + "k", k_);
    else a.set(prefix + "density", density_);
    if (tile2d_) {
      a.set(prefix + "tile", std::string("2d"));
      a.set(prefix + "chunk", chunk_);
    } else {
      a.set(prefix + "tile", tile_);
    }
  }
  bool sparsifier() const override { return true; }

  Grid grid(const Shape& shape) const {
    Grid g;
    const std::int64_t d = shape_numel(shape);
    if (d == 0) return g;
    g.rows = shape.size() >= 2 ? shape[0] : 1;
    g.cols = d / g.rows;
    g.tile_rows = dct_tile_size(g.rows, chunk_);
    g.tile_cols = dct_tile_size(g.cols, chunk_);
    g.tile = g.tile_rows * g.tile_cols;
    g.tiles = (g.rows / g.tile_rows) * (g.cols / g.tile_cols);
    g.kept = templar_tile_k(k_, g.tile);
    return g;
  }

  std::int64_t tile_len(std::int64_t d) const { return tile_ > 0 ? tile_ : d; }
  std::int64_t total_kept(const Shape& shape) const {
    const std::int64_t d = shape_numel(shape);
    if (d == 0) return 0;
    if (tile2d_) {
      const Grid g = grid(shape);
      return g.tiles * g.kept;
    }
    const std::int64_t t = tile_len(d), full = d / t, rest = d % t;
    return full * kept(t, k_, density_) + kept(rest, k_, density_);
  }
  DType index_dtype(std::int64_t d) const {
    if (tile2d_ || (tile_ > 0 && tile_ <= 65536)) return DType::U16;  // a 2-D tile holds at most 256² entries
    return tile_len(d) <= (std::int64_t{1} << 32) ? DType::U32 : DType::U64;
  }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const std::int64_t d = shape_numel(shape);
    const std::int64_t k = total_kept(shape);
    return {{"indices", {k}, index_dtype(d)}, {"values", {k}, DType::F32}};
  }

  std::optional<std::int64_t> templar_bytes(const Datasets& out, const Shape& shape) const override {
    if (!tile2d_) return std::nullopt;
    const Grid g = grid(shape);
    if (g.tiles == 0) return 0;
    const auto it = std::find_if(out.begin(), out.end(), [](const auto& p) { return p.first == "indices"; });
    if (it == out.end() || it->second.dtype() != DType::U16) return std::nullopt;
    return templar_index_bytes(it->second.as<std::uint16_t>(), g.tiles, g.kept, g.tile);
  }

  void encode_2d(std::span<const float> x, const Shape& shape, std::uint16_t* ind, float* v) const {
    const Grid g = grid(shape);
    const std::int64_t per_row = g.cols / g.tile_cols;
    parallel_chunks(g.tiles, std::max<std::int64_t>(1, (1 << 16) / g.tile), [&](std::int64_t tb, std::int64_t te) {
      std::vector<float> buf(static_cast<std::size_t>(g.tile));
      std::vector<std::uint32_t> hist;
      std::vector<Cand> cand, scratch;
      for (std::int64_t t = tb; t < te; ++t) {
        const std::int64_t r0 = (t / per_row) * g.tile_rows, c0 = (t % per_row) * g.tile_cols;
        for (std::int64_t r = 0; r < g.tile_rows; ++r)
          std::copy_n(x.data() + (r0 + r) * g.cols + c0, g.tile_cols, buf.data() + r * g.tile_cols);
        std::int64_t o = t * g.kept;
        const auto put = [&](std::int64_t i) {
          ind[o] = static_cast<std::uint16_t>(i);
          v[o++] = buf[static_cast<std::size_t>(i)];
        };
        if (g.kept == g.tile) {
          for (std::int64_t i = 0; i < g.tile; ++i) put(i);
        } else {
          topk_serial(buf.data(), g.tile, g.kept, hist, cand, scratch, put);
        }
      }
    });
  }

  void decode_2d(const std::uint16_t* ind, const float* v, const Shape& shape, std::span<float> out) const {
    const Grid g = grid(shape);
    const std::int64_t per_row = g.cols / g.tile_cols;
    std::atomic<bool> bad{false};
    parallel_chunks(g.tiles, std::max<std::int64_t>(1, (1 << 16) / g.tile), [&](std::int64_t tb, std::int64_t te) {
      for (std::int64_t t = tb; t < te; ++t) {
        const std::int64_t r0 = (t / per_row) * g.tile_rows, c0 = (t % per_row) * g.tile_cols;
        for (std::int64_t j = t * g.kept, e = (t + 1) * g.kept; j < e; ++j) {
          const std::int64_t i = ind[j];
          // Ascending within a tile (loco-format(5)), as the flat tiles are.
          if (i >= g.tile || (j > t * g.kept && i <= ind[j - 1])) {
            bad = true;
            continue;
          }
          out[(r0 + i / g.tile_cols) * g.cols + c0 + i % g.tile_cols] = v[j];
        }
      }
    });
    if (bad)
      throw_error(
          ErrorKind::BadInput,
          "codec topk: an index is past the end of its {}x{} tile, or a tile's indices are not strictly increasing",
          g.tile_rows, g.tile_cols);
  }

  void encode(std::span<const float> x, const Shape& shape, const RandomKey&, TensorState*,
              Datasets& out) const override {
    const std::int64_t d = static_cast<std::int64_t>(x.size()), k = total_kept(shape), t = tile_len(d);
    const DType idt = index_dtype(d);
    Tensor ind = Tensor::uninitialized({k}, idt), val = Tensor::uninitialized({k}, DType::F32);
    float* v = val.f32().data();
    std::byte* ib = ind.bytes().data();
    if (tile2d_) {
      if (k > 0) encode_2d(x, shape, reinterpret_cast<std::uint16_t*>(ib), v);
      out.emplace_back("indices", std::move(ind));
      out.emplace_back("values", std::move(val));
      return;
    }
    auto put = [&](std::int64_t o, std::int64_t local) {
      if (idt == DType::U16) reinterpret_cast<std::uint16_t*>(ib)[o] = static_cast<std::uint16_t>(local);
      else if (idt == DType::U32) reinterpret_cast<std::uint32_t*>(ib)[o] = static_cast<std::uint32_t>(local);
      else reinterpret_cast<std::uint64_t*>(ib)[o] = static_cast<std::uint64_t>(local);
    };
    if (d > 0 && t == d && d > (std::int64_t{1} << 18) && kept(d, k_, density_) < d) {
      std::vector<std::int64_t> idx(static_cast<std::size_t>(k));
      topk_parallel(x, k, idx.data());
      parallel_chunks(k, 1 << 16, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t j = b; j < e; ++j) {
          put(j, idx[j]);
          v[j] = x[idx[j]];
        }
      });
    } else if (d > 0) {
      const std::int64_t tiles = ceil_div(d, t), kfull = kept(t, k_, density_);
      parallel_chunks(tiles, std::max<std::int64_t>(1, (1 << 16) / t), [&](std::int64_t tb, std::int64_t te) {
        std::vector<std::uint32_t> hist;
        std::vector<Cand> cand, scratch;
        for (std::int64_t tt = tb; tt < te; ++tt) {
          const std::int64_t base = tt * t, n = std::min(t, d - base), kk = kept(n, k_, density_);
          std::int64_t o = tt * kfull;
          if (kk == n) {
            for (std::int64_t i = 0; i < n; ++i, ++o) put(o, i), v[o] = x[base + i];
          } else {
            topk_serial(x.data() + base, n, kk, hist, cand, scratch,
                        [&](std::int64_t i) { put(o, i), v[o] = x[base + i], ++o; });
          }
        }
      });
    }
    out.emplace_back("indices", std::move(ind));
    out.emplace_back("values", std::move(val));
  }

  void decode(const DatasetLookup& get, const Shape& shape, const RandomKey&, std::span<float> out) const override {
    const std::int64_t d = static_cast<std::int64_t>(out.size()), k = total_kept(shape), t = tile_len(d);
    const Tensor& ind = expect(get, "indices", k, index_dtype(d), "topk");
    const float* v = expect(get, "values", k, DType::F32, "topk").f32().data();
    if (tile2d_) {
      std::fill(out.begin(), out.end(), 0.0f);
      if (k > 0) decode_2d(ind.as<std::uint16_t>().data(), v, shape, out);
      return;
    }
    const std::byte* ib = ind.bytes().data();
    const DType idt = ind.dtype();
    auto at = [&](std::int64_t j) -> std::uint64_t {
      if (idt == DType::U16) return reinterpret_cast<const std::uint16_t*>(ib)[j];
      if (idt == DType::U32) return reinterpret_cast<const std::uint32_t*>(ib)[j];
      return reinterpret_cast<const std::uint64_t*>(ib)[j];
    };
    std::fill(out.begin(), out.end(), 0.0f);
    if (d == 0) return;
    const std::int64_t tiles = ceil_div(d, t), kfull = kept(t, k_, density_);
    std::atomic<bool> bad{false}, unordered{false};
    parallel_chunks(tiles, std::max<std::int64_t>(1, (1 << 16) / std::max<std::int64_t>(kfull, 1)),
                    [&](std::int64_t tb, std::int64_t te) {
                      for (std::int64_t tt = tb; tt < te; ++tt) {
                        const std::int64_t base = tt * t, n = std::min(t, d - base), kk = kept(n, k_, density_);
                        for (std::int64_t j = tt * kfull, e = tt * kfull + kk; j < e; ++j) {
                          const std::uint64_t i = at(j);
                          if (i >= static_cast<std::uint64_t>(n)) {
                            bad = true;
                            continue;
                          }
                          // The encoder stores a tile's indices ascending (loco-format(5)); a repeated index
                          // would make the value that wins depend on the order of the writes.
                          if (j > tt * kfull && i <= at(j - 1)) unordered = true;
                          out[base + static_cast<std::int64_t>(i)] = v[j];
                        }
                      }
                    });
    if (bad) throw_error(ErrorKind::BadInput, "codec topk: an index is past the end of its tile or tensor");
    if (unordered)
      throw_error(ErrorKind::BadInput,
                  "codec topk: the indices of a tile are not strictly increasing (a repeated index?)");
  }

 private:
  std::int64_t k_ = 0;
  double density_ = 0.01;
  std::int64_t tile_ = 0;
  bool tile2d_ = false;
  std::int64_t chunk_ = 64;
};

}  // namespace

std::unique_ptr<Stage> make_topk_stage(const StageSpec& s) { return std::make_unique<TopkStage>(s); }

void topk_indices(std::span<const float> x, std::int64_t k, std::vector<std::int64_t>& idx) {
  const std::int64_t n = static_cast<std::int64_t>(x.size());
  k = std::clamp<std::int64_t>(k, 0, n);
  idx.clear();
  if (k == n) {
    for (std::int64_t i = 0; i < n; ++i) idx.push_back(i);
    return;
  }
  if (k == 0) return;
  if (n > (std::int64_t{1} << 18)) {
    idx.resize(static_cast<std::size_t>(k));
    topk_parallel(x, k, idx.data());
    return;
  }
  std::vector<std::uint32_t> hist;
  std::vector<Cand> cand, scratch;
  topk_serial(x.data(), n, k, hist, cand, scratch, [&](std::int64_t i) { idx.push_back(i); });
}

}  // namespace loco::compress
