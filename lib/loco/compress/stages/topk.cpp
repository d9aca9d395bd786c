// The topk stage: exact top-k by magnitude, per tensor or per tile, and the parallel exact
// selection it and topk_indices use.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "loco/compress/detail/parallel.hpp"
#include "loco/compress/detail/stage.hpp"
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

class TopkStage final : public Stage {
 public:
  explicit TopkStage(const StageSpec& s) {
    Spec p = stage_params(s);
    if (p.has("k") && p.has("density")) throw_error(ErrorKind::Usage, "codec topk: give k or density, not both");
    k_ = p.integer("k", 0, 1, std::numeric_limits<std::int64_t>::max());
    density_ = k_ > 0 ? 0.0 : p.real("density", 0.01, Range::between(0.0, 1.0, true));
    tile_ = p.integer("tile", 0, 0, std::int64_t{1} << 40);
    p.done();
  }
  std::string_view name() const override { return "topk"; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    std::vector<std::pair<std::string, std::string>> c;
    if (k_ > 0) c.emplace_back("k", std::to_string(k_));
    else c.emplace_back("density", real_text(density_));
    c.emplace_back("tile", std::to_string(tile_));
    return c;
  }
  void record(Attributes& a, const std::string& prefix) const override {
    if (k_ > 0) a.set(prefix + "k", k_);
    else a.set(prefix + "density", density_);
    a.set(prefix + "tile", tile_);
  }
  bool sparsifier() const override { return true; }

  std::int64_t tile_len(std::int64_t d) const { return tile_ > 0 ? tile_ : d; }
  std::int64_t total_kept(std::int64_t d) const {
    if (d == 0) return 0;
    const std::int64_t t = tile_len(d), full = d / t, rest = d % t;
    return full * kept(t, k_, density_) + kept(rest, k_, density_);
  }
  DType index_dtype(std::int64_t d) const {
    if (tile_ > 0 && tile_ <= 65536) return DType::U16;
    return tile_len(d) <= (std::int64_t{1} << 32) ? DType::U32 : DType::U64;
  }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const std::int64_t d = shape_numel(shape);
    const std::int64_t k = total_kept(d);
    return {{"indices", {k}, index_dtype(d)}, {"values", {k}, DType::F32}};
  }

  void encode(std::span<const float> x, const Shape&, const RandomKey&, TensorState*, Datasets& out) const override {
    const std::int64_t d = static_cast<std::int64_t>(x.size()), k = total_kept(d), t = tile_len(d);
    const DType idt = index_dtype(d);
    Tensor ind = Tensor::uninitialized({k}, idt), val = Tensor::uninitialized({k}, DType::F32);
    float* v = val.f32().data();
    std::byte* ib = ind.bytes().data();
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
            topk_serial(x.data() + base, n, kk, hist, cand, scratch, [&](std::int64_t i) { put(o, i), v[o] = x[base + i], ++o; });
          }
        }
      });
    }
    out.emplace_back("indices", std::move(ind));
    out.emplace_back("values", std::move(val));
  }

  void decode(const DatasetLookup& get, const Shape&, const RandomKey&, std::span<float> out) const override {
    const std::int64_t d = static_cast<std::int64_t>(out.size()), k = total_kept(d), t = tile_len(d);
    const Tensor& ind = expect(get, "indices", k, index_dtype(d), "topk");
    const float* v = expect(get, "values", k, DType::F32, "topk").f32().data();
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
      throw_error(ErrorKind::BadInput, "codec topk: the indices of a tile are not strictly increasing (a repeated index?)");
  }

 private:
  std::int64_t k_ = 0;
  double density_ = 0.01;
  std::int64_t tile_ = 0;
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
