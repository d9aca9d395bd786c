// The codec stages: fp16/bf16 cast, exact top-k (per tensor or per tile), seeded random-k,
// n-bit block quantization (min-max or the 6-sigma SparseLoCo range), scaled sign, QSGD, DCT-II
// chunk top-k (DeMo), count sketch and PowerSGD.
#include <Eigen/Core>
#if defined(__SSE2__)
#include <immintrin.h>
#endif
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <unordered_set>

#include "loco/compress/dct.hpp"
#include "loco/compress/detail/stage.hpp"
#include "loco/core/detail/eigen.hpp"  // pins Eigen's product blocking
#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"

namespace loco::compress {
namespace {

// Typed access to a stage's key=value parameters; unknown keys are refused at the end.
class Params {
 public:
  explicit Params(const StageSpec& s) : s_(s), used_(s.params.size(), false) {}
  const std::string* raw(std::string_view key) {
    for (std::size_t i = 0; i < s_.params.size(); ++i)
      if (s_.params[i].first == key) {
        used_[i] = true;
        return &s_.params[i].second;
      }
    return nullptr;
  }
  bool has(std::string_view key) const {
    for (const auto& p : s_.params)
      if (p.first == key) return true;
    return false;
  }
  std::int64_t integer(std::string_view key, std::int64_t def, std::int64_t lo, std::int64_t hi) {
    const std::string* v = raw(key);
    if (v == nullptr) return def;
    std::size_t pos = 0;
    long long r = 0;
    try {
      r = std::stoll(*v, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    if (pos == 0 || pos != v->size())
      throw_error(ErrorKind::Usage, "codec {}: {}={} is not an integer", s_.name, key, *v);
    if (r < lo || r > hi) throw_error(ErrorKind::Usage, "codec {}: {}={} is outside [{}, {}]", s_.name, key, *v, lo, hi);
    return r;
  }
  double real(std::string_view key, double def, double lo, double hi) {
    const std::string* v = raw(key);
    if (v == nullptr) return def;
    std::size_t pos = 0;
    double r = 0;
    try {
      r = std::stod(*v, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    if (pos == 0 || pos != v->size() || !std::isfinite(r))
      throw_error(ErrorKind::Usage, "codec {}: {}={} is not a number", s_.name, key, *v);
    if (!(r > lo && r <= hi)) throw_error(ErrorKind::Usage, "codec {}: {}={} is outside ({}, {}]", s_.name, key, *v, lo, hi);
    return r;
  }
  std::string choice(std::string_view key, std::string def, std::initializer_list<std::string_view> allowed) {
    const std::string* v = raw(key);
    if (v == nullptr) return def;
    for (auto a : allowed)
      if (*v == a) return *v;
    std::string list;
    for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    throw_error(ErrorKind::Usage, "codec {}: {}={} is not one of {}", s_.name, key, *v, list);
  }
  void finish() const {
    for (std::size_t i = 0; i < used_.size(); ++i)
      if (!used_[i]) throw_error(ErrorKind::Usage, "codec {}: unknown parameter '{}'", s_.name, s_.params[i].first);
  }

 private:
  const StageSpec& s_;
  std::vector<bool> used_;
};

std::string real_text(double v) { return fmt::format("{}", v); }

// Throws Error(BadInput) unless dataset t has n elements of dtype want.
const Tensor& expect(const DatasetLookup& get, std::string_view name, std::int64_t n, DType want, std::string_view codec) {
  const Tensor& t = get(name);
  if (t.dtype() != want || t.numel() != n)
    throw_error(ErrorKind::BadInput, "codec {}: dataset '{}' is {} of {} elements, expected {} of {}", codec, name,
                dtype_name(t.dtype()), t.numel(), dtype_name(want), n);
  return t;
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return b == 0 ? 0 : (a + b - 1) / b; }

// Parallel loop over [0, n) in chunks; body(begin, end). Chunks do not change any result.
template <typename F>
void parallel_chunks(std::int64_t n, std::int64_t grain, F&& body) {
  if (n <= 0) return;
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, n, std::max<std::int64_t>(grain, 1)),
                    [&](const tbb::blocked_range<std::int64_t>& r) { body(r.begin(), r.end()); });
}

// A generator positioned at word i of stream (seed, stream).
Rng rng_at(std::uint64_t seed, std::uint64_t stream, std::int64_t i) {
  Rng r(seed, stream);
  r.seek_block(static_cast<std::uint64_t>(i) / 4);
  for (std::int64_t s = 0; s < i % 4; ++s) r.next_u32();
  return r;
}

// Number of kept entries for n elements: k given (capped at n) or max(1, floor(density·n)).
std::int64_t kept(std::int64_t n, std::int64_t k, double density) {
  if (n == 0) return 0;
  if (k > 0) return std::min(k, n);
  return std::clamp<std::int64_t>(static_cast<std::int64_t>(std::floor(density * static_cast<double>(n))), 1, n);
}

// ---------------------------------------------------------------------------------------------- cast

// Inline conversions for the cast kernels, equal to loco::float_to_half / float_to_bfloat16 /
// half_to_float on finite inputs (NaN and Inf inputs are screened by the cast kernel; checked in the tests).
inline std::uint16_t finite_to_bfloat16(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
inline std::uint16_t finite_to_half(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds past 65504: infinity
  if (ax >= 0x38800000u) return static_cast<std::uint16_t>(sign | ((ax + 0xc8000fffu + ((ax >> 13) & 1u)) >> 13));
  // Subnormal or zero: adding 0.5 puts the half's subnormal grid on float's last mantissa bits.
  const float t = std::bit_cast<float>(ax) + 0.5f;
  return static_cast<std::uint16_t>(sign | (std::bit_cast<std::uint32_t>(t) - 0x3f000000u));
}
inline float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) return std::bit_cast<float>(sign | std::bit_cast<std::uint32_t>(static_cast<float>(m) * 5.9604644775390625e-8f));
  if (e == 31) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13) | (m != 0 ? 0x400000u : 0u));
  return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}

class CastStage final : public Stage {
 public:
  explicit CastStage(const StageSpec& s) {
    Params p(s);
    dtype_ = p.choice("dtype", "bf16", {"f16", "bf16"}) == "f16" ? DType::F16 : DType::BF16;
    p.finish();
  }
  std::string_view name() const override { return "cast"; }
  bool screens_finite() const override { return true; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    return {{"dtype", dtype_ == DType::F16 ? "f16" : "bf16"}};
  }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "cast_dtype", std::string(dtype_name(dtype_)));
  }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const std::int64_t d = shape_numel(shape); return {{"data", {d}, dtype_}}; }
  void encode(std::span<const float> x, const Shape&, const RandomKey&, TensorState*, Datasets& out) const override {
    Tensor t = Tensor::uninitialized({static_cast<std::int64_t>(x.size())}, dtype_);
    auto* dst = reinterpret_cast<std::uint16_t*>(t.bytes().data());
    const bool half = dtype_ == DType::F16;
    std::atomic<bool> overflow{false};
    parallel_chunks(static_cast<std::int64_t>(x.size()), 1 << 16, [&](std::int64_t b, std::int64_t e) {
      // bad: an output of Inf, from an overflow or from an input NaN or Inf (told apart below).
      std::uint32_t bad = 0;
      if (half) {
        for (std::int64_t i = b; i < e; ++i) {
          dst[i] = finite_to_half(x[i]);
          bad |= (dst[i] & 0x7C00u) == 0x7C00u;
        }
      } else {
        for (std::int64_t i = b; i < e; ++i) {
          dst[i] = finite_to_bfloat16(x[i]);
          // The input's exponent too: rounding a NaN's mantissa can carry into the sign bit.
          bad |= ((dst[i] & 0x7F80u) == 0x7F80u) | ((std::bit_cast<std::uint32_t>(x[i]) & 0x7F800000u) == 0x7F800000u);
        }
      }
      if (bad) overflow = true;
    });
    if (overflow) require_finite(x);  // throws for a NaN or Inf input; else a finite value overflowed
    if (overflow)
      throw_error(ErrorKind::Numeric, "codec cast: a value overflows {} (|x| too large to represent)", dtype_name(dtype_));
    out.emplace_back("data", std::move(t));
  }
  void decode(const DatasetLookup& get, const Shape&, const RandomKey&, std::span<float> out) const override {
    const Tensor& t = expect(get, "data", static_cast<std::int64_t>(out.size()), dtype_, "cast");
    const auto* src = reinterpret_cast<const std::uint16_t*>(t.bytes().data());
    const bool half = dtype_ == DType::F16;
    parallel_chunks(static_cast<std::int64_t>(out.size()), 1 << 16, [&](std::int64_t b, std::int64_t e) {
      if (half) {
        for (std::int64_t i = b; i < e; ++i) out[i] = half_bits_to_float(src[i]);
      } else {
        for (std::int64_t i = b; i < e; ++i) out[i] = std::bit_cast<float>(static_cast<std::uint32_t>(src[i]) << 16);
      }
    });
  }

 private:
  DType dtype_ = DType::BF16;
};

// ---------------------------------------------------------------------------------------------- top-k

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
Cut cut_of(const std::vector<Cand>& cand, std::int64_t r, std::vector<Cand>& scratch) {
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
    Params p(s);
    if (p.has("k") && p.has("density")) throw_error(ErrorKind::Usage, "codec topk: give k or density, not both");
    k_ = p.integer("k", 0, 1, std::numeric_limits<std::int64_t>::max());
    density_ = k_ > 0 ? 0.0 : p.real("density", 0.01, 0.0, 1.0);
    tile_ = p.integer("tile", 0, 0, std::int64_t{1} << 40);
    p.finish();
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

// ---------------------------------------------------------------------------------------------- random-k

// k distinct positions of [0, d) drawn by Floyd's algorithm from Rng(seed, stream), ascending.
std::vector<std::int64_t> random_indices(std::int64_t d, std::int64_t k, std::uint64_t seed, std::uint64_t stream) {
  std::vector<std::int64_t> idx;
  idx.reserve(static_cast<std::size_t>(k));
  if (k == d) {
    for (std::int64_t i = 0; i < d; ++i) idx.push_back(i);
    return idx;
  }
  std::unordered_set<std::int64_t> chosen;
  chosen.reserve(static_cast<std::size_t>(k) * 2);
  Rng rng(seed, stream);
  for (std::int64_t j = d - k; j < d; ++j) {
    const auto t = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(j) + 1));
    const std::int64_t pick = chosen.insert(t).second ? t : j;
    if (pick == j) chosen.insert(j);
    idx.push_back(pick);
  }
  std::sort(idx.begin(), idx.end());
  return idx;
}

class RandkStage final : public Stage {
 public:
  explicit RandkStage(const StageSpec& s) {
    Params p(s);
    if (p.has("k") && p.has("density")) throw_error(ErrorKind::Usage, "codec randk: give k or density, not both");
    k_ = p.integer("k", 0, 1, std::numeric_limits<std::int64_t>::max());
    density_ = k_ > 0 ? 0.0 : p.real("density", 0.01, 0.0, 1.0);
    rescale_ = p.choice("rescale", "false", {"true", "false"}) == "true";
    p.finish();
  }
  std::string_view name() const override { return "randk"; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    std::vector<std::pair<std::string, std::string>> c;
    if (k_ > 0) c.emplace_back("k", std::to_string(k_));
    else c.emplace_back("density", real_text(density_));
    c.emplace_back("rescale", rescale_ ? "true" : "false");
    return c;
  }
  void record(Attributes& a, const std::string& prefix) const override {
    if (k_ > 0) a.set(prefix + "k", k_);
    else a.set(prefix + "density", density_);
    a.set(prefix + "rescale", std::int64_t{rescale_ ? 1 : 0});
  }
  bool sparsifier() const override { return true; }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const std::int64_t d = shape_numel(shape);
    return {{"values", {kept(d, k_, density_)}, DType::F32}};
  }
  void encode(std::span<const float> x, const Shape&, const RandomKey& key, TensorState*, Datasets& out) const override {
    const std::int64_t d = static_cast<std::int64_t>(x.size()), k = kept(d, k_, density_);
    const auto idx = random_indices(d, k, key.seed, key.shared_stream);
    Tensor val = Tensor::uninitialized({k}, DType::F32);
    float* v = val.f32().data();
    const float s = rescale_ && k > 0 ? static_cast<float>(static_cast<double>(d) / static_cast<double>(k)) : 1.0f;
    for (std::int64_t j = 0; j < k; ++j) v[j] = x[idx[j]] * s;
    out.emplace_back("values", std::move(val));
  }
  void decode(const DatasetLookup& get, const Shape&, const RandomKey& key, std::span<float> out) const override {
    const std::int64_t d = static_cast<std::int64_t>(out.size()), k = kept(d, k_, density_);
    const float* v = expect(get, "values", k, DType::F32, "randk").f32().data();
    const auto idx = random_indices(d, k, key.seed, key.shared_stream);
    std::fill(out.begin(), out.end(), 0.0f);
    for (std::int64_t j = 0; j < k; ++j) out[idx[j]] = v[j];
  }

 private:
  std::int64_t k_ = 0;
  double density_ = 0.01;
  bool rescale_ = false;
};

// ---------------------------------------------------------------------------------------------- quant

// Minimum and maximum of x[0, n), folded into lo and hi (min and max are exact, so the SSE and
// scalar paths agree bit for bit). Returns false when x holds a NaN or an Inf: Σ x·0 is 0 for
// finite x and NaN otherwise, one multiply-add per element in the same pass.
inline bool block_min_max(const float* x, std::int64_t n, float& lo, float& hi) {
  std::int64_t i = 0;
  float z = 0.0f;
#if defined(__SSE2__)
  const __m128 zero = _mm_setzero_ps();
  __m128 l0 = _mm_set1_ps(lo), l1 = l0, h0 = _mm_set1_ps(hi), h1 = h0, z0 = zero;
  for (; i + 8 <= n; i += 8) {
    const __m128 a = _mm_loadu_ps(x + i), b = _mm_loadu_ps(x + i + 4);
    l0 = _mm_min_ps(l0, a), l1 = _mm_min_ps(l1, b);
    h0 = _mm_max_ps(h0, a), h1 = _mm_max_ps(h1, b);
    z0 = _mm_add_ps(z0, _mm_add_ps(_mm_mul_ps(a, zero), _mm_mul_ps(b, zero)));
  }
  alignas(16) float l[4], h[4], zz[4];
  _mm_store_ps(l, _mm_min_ps(l0, l1));
  _mm_store_ps(h, _mm_max_ps(h0, h1));
  _mm_store_ps(zz, z0);
  for (int j = 0; j < 4; ++j) {
    lo = l[j] < lo ? l[j] : lo;
    hi = h[j] > hi ? h[j] : hi;
    z += zz[j];
  }
#endif
  for (; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
    z += x[i] * 0.0f;
  }
  return z == 0.0f && std::isfinite(lo) && std::isfinite(hi);
}

// Packs codes q = ⌊(x − lo)·inv + u⌋ clamped to [0, 2^BITS − 1], element j of a byte at bits
// [j·BITS, (j+1)·BITS) (little-endian bit order). u() is 0.5 (nearest) or a uniform in [0, 1).
template <int BITS, typename U>
void pack_block(const float* x, std::int64_t n, float lo, float inv, std::uint8_t* dst, U&& u) {
  constexpr int per = 8 / BITS;
  constexpr float top = static_cast<float>((1 << BITS) - 1);
  const std::int64_t full = n / per;
  auto code = [&](float v) -> std::uint32_t {
    const float t = std::min(std::max((v - lo) * inv, 0.0f), top) + u();  // ≥ 0: truncation is ⌊·⌋
    return std::min(static_cast<std::uint32_t>(t), static_cast<std::uint32_t>(top));
  };
  for (std::int64_t b = 0; b < full; ++b) {
    std::uint32_t byte = 0;
    for (int j = 0; j < per; ++j) byte |= code(x[b * per + j]) << (j * BITS);
    dst[b] = static_cast<std::uint8_t>(byte);
  }
  if (full * per < n) {
    std::uint32_t byte = 0;
    for (std::int64_t j = 0; full * per + j < n; ++j) byte |= code(x[full * per + j]) << (j * BITS);
    dst[full] = static_cast<std::uint8_t>(byte);
  }
}

// The nearest-rounding case of pack_block in two vectorizable passes per 256 elements: codes into
// a byte buffer, then bytes from BITS-bit fields. Gives the same bytes as pack_block with u = 0.5.
template <int BITS>
void pack_block_nearest(const float* x, std::int64_t n, float lo, float inv, std::uint8_t* dst) {
  constexpr int per = 8 / BITS;
  constexpr float top = static_cast<float>((1 << BITS) - 1);
  std::uint8_t codes[256];
  for (std::int64_t i0 = 0; i0 < n; i0 += 256) {
    const std::int64_t m = std::min<std::int64_t>(256, n - i0);
    for (std::int64_t j = 0; j < m; ++j) {
      float t = (x[i0 + j] - lo) * inv;
      t = t < 0.0f ? 0.0f : t;
      t = t > top ? top : t;
      codes[j] = static_cast<std::uint8_t>(static_cast<std::int32_t>(t + 0.5f));
    }
    for (std::int64_t j = m; j < ((m + per - 1) / per) * per; ++j) codes[j] = 0;
    std::uint8_t* out = dst + i0 / per;
    if constexpr (BITS == 8) {
      for (std::int64_t j = 0; j < m; ++j) out[j] = codes[j];
    } else {
      for (std::int64_t b = 0; b < (m + per - 1) / per; ++b) {
        std::uint32_t byte = 0;
        for (int j = 0; j < per; ++j) byte |= static_cast<std::uint32_t>(codes[b * per + j]) << (j * BITS);
        out[b] = static_cast<std::uint8_t>(byte);
      }
    }
  }
}

template <int BITS>
void unpack_block(const std::uint8_t* src, std::int64_t n, float o, float s, float* y) {
  constexpr int per = 8 / BITS;
  constexpr std::uint32_t mask = (1u << BITS) - 1u;
  const std::int64_t full = n / per;
  for (std::int64_t b = 0; b < full; ++b) {
    const std::uint32_t byte = src[b];
    for (int j = 0; j < per; ++j) y[b * per + j] = o + static_cast<float>((byte >> (j * BITS)) & mask) * s;
  }
  for (std::int64_t i = full * per; i < n; ++i) y[i] = o + static_cast<float>((src[i / per] >> ((i % per) * BITS)) & mask) * s;
}

class QuantStage final : public Stage {
 public:
  explicit QuantStage(const StageSpec& s) {
    Params p(s);
    bits_ = static_cast<int>(p.integer("bits", 8, 1, 8));
    if (bits_ != 1 && bits_ != 2 && bits_ != 4 && bits_ != 8)
      throw_error(ErrorKind::Usage, "codec quant: bits={} is not one of 1, 2, 4, 8", bits_);
    block_ = p.integer("block", 256, 8, std::int64_t{1} << 40);
    if (block_ % 8 != 0) throw_error(ErrorKind::Usage, "codec quant: block={} is not a multiple of 8", block_);
    stochastic_ = p.choice("rounding", "nearest", {"nearest", "stochastic"}) == "stochastic";
    sigma_ = p.choice("range", "minmax", {"minmax", "sigma"}) == "sigma";
    p.finish();
  }
  std::string_view name() const override { return "quant"; }
  bool screens_finite() const override { return true; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    return {{"bits", std::to_string(bits_)},
            {"block", std::to_string(block_)},
            {"rounding", stochastic_ ? "stochastic" : "nearest"},
            {"range", sigma_ ? "sigma" : "minmax"}};
  }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "bits", std::int64_t{bits_});
    a.set(prefix + "block", block_);
    a.set(prefix + "rounding", std::string(stochastic_ ? "stochastic" : "nearest"));
    a.set(prefix + "range", std::string(sigma_ ? "sigma" : "minmax"));
    a.set(prefix + "bit_order", std::string("little"));
  }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const std::int64_t d = shape_numel(shape);
    const std::int64_t nb = ceil_div(d, block_);
    return {{"packed", {ceil_div(d * bits_, 8)}, DType::U8}, {"scale", {nb}, DType::F32}, {"offset", {nb}, DType::F32}};
  }

  void encode(std::span<const float> x, const Shape&, const RandomKey& key, TensorState*, Datasets& out) const override {
    const std::int64_t d = static_cast<std::int64_t>(x.size()), nb = ceil_div(d, block_);
    Tensor packed({ceil_div(d * bits_, 8)}, DType::U8);
    Tensor scale = Tensor::uninitialized({nb}, DType::F32), offset = Tensor::uninitialized({nb}, DType::F32);
    std::uint8_t* pk = packed.as<std::uint8_t>().data();
    float* sc = scale.f32().data();
    float* of = offset.f32().data();
    const std::uint32_t levels = (1u << bits_) - 1u;
    std::atomic<bool> nonfinite{false};
    parallel_chunks(nb, std::max<std::int64_t>(1, (1 << 16) / block_), [&](std::int64_t bb, std::int64_t be) {
      for (std::int64_t b = bb; b < be; ++b) {
        const std::int64_t i0 = b * block_, n = std::min(block_, d - i0);
        const float* xb = x.data() + i0;
        float lo = xb[0], hi = xb[0];
        if (!block_min_max(xb, n, lo, hi)) {
          nonfinite = true;
          continue;
        }
        if (sigma_) {
          double sum = 0, sq = 0;
          for (std::int64_t i = 0; i < n; ++i) sum += xb[i];
          const double mean = sum / static_cast<double>(n);
          for (std::int64_t i = 0; i < n; ++i) sq += (xb[i] - mean) * (xb[i] - mean);
          const double sd = std::sqrt(sq / static_cast<double>(n));
          lo = std::max(lo, static_cast<float>(mean - 3.0 * sd));
          hi = std::min(hi, static_cast<float>(mean + 3.0 * sd));
          if (hi < lo) hi = lo;  // rounding of mean ± 3σ on a constant block
        }
        const double step = (static_cast<double>(hi) - static_cast<double>(lo)) / levels;
        if (!std::isfinite(static_cast<float>(step)))
          throw_error(ErrorKind::Numeric, "codec quant: block {} spans [{}, {}], too wide for a float32 step", b, lo, hi);
        const float s = static_cast<float>(step);
        sc[b] = s;
        of[b] = lo;
        const float inv = s > 0 ? 1.0f / s : 0.0f;
        std::uint8_t* dst = pk + i0 * bits_ / 8;
        if (stochastic_) {
          Rng rng = rng_at(key.seed, key.stream, i0);
          switch (bits_) {
            case 1: pack_block<1>(xb, n, lo, inv, dst, [&] { return rng.uniform(); }); break;
            case 2: pack_block<2>(xb, n, lo, inv, dst, [&] { return rng.uniform(); }); break;
            case 4: pack_block<4>(xb, n, lo, inv, dst, [&] { return rng.uniform(); }); break;
            default: pack_block<8>(xb, n, lo, inv, dst, [&] { return rng.uniform(); }); break;
          }
        } else {
          switch (bits_) {
            case 1: pack_block_nearest<1>(xb, n, lo, inv, dst); break;
            case 2: pack_block_nearest<2>(xb, n, lo, inv, dst); break;
            case 4: pack_block_nearest<4>(xb, n, lo, inv, dst); break;
            default: pack_block_nearest<8>(xb, n, lo, inv, dst); break;
          }
        }
      }
    });
    if (nonfinite) require_finite(x);  // throws: a block held a NaN or an Inf
    out.emplace_back("packed", std::move(packed));
    out.emplace_back("scale", std::move(scale));
    out.emplace_back("offset", std::move(offset));
  }

  void decode(const DatasetLookup& get, const Shape&, const RandomKey&, std::span<float> out) const override {
    const std::int64_t d = static_cast<std::int64_t>(out.size()), nb = ceil_div(d, block_);
    const std::uint8_t* pk = expect(get, "packed", ceil_div(d * bits_, 8), DType::U8, "quant").as<std::uint8_t>().data();
    const float* sc = expect(get, "scale", nb, DType::F32, "quant").f32().data();
    const float* of = expect(get, "offset", nb, DType::F32, "quant").f32().data();
    parallel_chunks(nb, std::max<std::int64_t>(1, (1 << 16) / block_), [&](std::int64_t bb, std::int64_t be) {
      for (std::int64_t b = bb; b < be; ++b) {
        const std::int64_t i0 = b * block_, n = std::min(block_, d - i0);
        const std::uint8_t* src = pk + i0 * bits_ / 8;
        float* y = out.data() + i0;
        switch (bits_) {
          case 1: unpack_block<1>(src, n, of[b], sc[b], y); break;
          case 2: unpack_block<2>(src, n, of[b], sc[b], y); break;
          case 4: unpack_block<4>(src, n, of[b], sc[b], y); break;
          default: unpack_block<8>(src, n, of[b], sc[b], y); break;
        }
      }
    });
  }

 private:
  int bits_ = 8;
  std::int64_t block_ = 256;
  bool stochastic_ = false;
  bool sigma_ = false;
};

// ---------------------------------------------------------------------------------------------- sign

class SignStage final : public Stage {
 public:
  explicit SignStage(const StageSpec& s) {
    Params p(s);
    block_ = p.integer("block", 0, 0, std::int64_t{1} << 40);
    if (block_ % 8 != 0) throw_error(ErrorKind::Usage, "codec sign: block={} is not a multiple of 8 (0: whole tensor)", block_);
    p.finish();
  }
  std::string_view name() const override { return "sign"; }
  bool screens_finite() const override { return true; }
  std::vector<std::pair<std::string, std::string>> canonical() const override { return {{"block", std::to_string(block_)}}; }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "block", block_);
    a.set(prefix + "bit_order", std::string("little"));
  }
  std::int64_t blk(std::int64_t d) const { return block_ > 0 ? block_ : std::max<std::int64_t>(d, 1); }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const std::int64_t d = shape_numel(shape);
    return {{"packed", {ceil_div(d, 8)}, DType::U8}, {"scale", {ceil_div(d, blk(d))}, DType::F32}};
  }
  void encode(std::span<const float> x, const Shape&, const RandomKey&, TensorState*, Datasets& out) const override {
    const std::int64_t d = static_cast<std::int64_t>(x.size()), bs = blk(d), nb = ceil_div(d, bs);
    Tensor packed({ceil_div(d, 8)}, DType::U8);
    Tensor scale = Tensor::uninitialized({nb}, DType::F32);
    std::uint8_t* pk = packed.as<std::uint8_t>().data();
    float* sc = scale.f32().data();
    // Sub-blocks of 64 Ki elements (a multiple of 8) keep one thread's work contiguous; the scale
    // sums each block's partial sums in a fixed order.
    constexpr std::int64_t kPiece = 1 << 16;
    const std::int64_t pieces_per_block = ceil_div(bs, kPiece);
    std::vector<double> partial(static_cast<std::size_t>(nb * pieces_per_block), 0.0);
    parallel_chunks(nb * pieces_per_block, 1, [&](std::int64_t pb, std::int64_t pe) {
      for (std::int64_t p = pb; p < pe; ++p) {
        const std::int64_t b = p / pieces_per_block, i0 = b * bs + (p % pieces_per_block) * kPiece;
        const std::int64_t i1 = std::min({i0 + kPiece, b * bs + bs, d});
        if (i0 >= i1) continue;
        float acc = 0;
        double sum = 0;
        for (std::int64_t i = i0; i < i1; i += 8) {
          std::uint32_t byte = 0;
          const std::int64_t m = std::min<std::int64_t>(8, i1 - i);
          for (std::int64_t j = 0; j < m; ++j) {
            const float v = x[i + j];
            byte |= static_cast<std::uint32_t>(!std::signbit(v) || v == 0.0f) << j;
            acc += std::fabs(v);
          }
          pk[i / 8] = static_cast<std::uint8_t>(byte);
          if (((i - i0) & 1023) == 1016) sum += acc, acc = 0;
        }
        partial[p] = sum + acc;
      }
    });
    // A NaN or Inf in x makes its piece's sum non-finite (so does a float overflow of |x| sums
    // near FLT_MAX: then, x being finite, that piece is summed again in double).
    for (std::int64_t p = 0; p < nb * pieces_per_block; ++p) {
      if (std::isfinite(partial[p])) continue;
      require_finite(x);
      const std::int64_t b = p / pieces_per_block, i0 = b * bs + (p % pieces_per_block) * kPiece;
      const std::int64_t i1 = std::min({i0 + kPiece, b * bs + bs, d});
      double sum = 0;
      for (std::int64_t i = i0; i < i1; ++i) sum += std::fabs(static_cast<double>(x[i]));
      partial[p] = sum;
    }
    for (std::int64_t b = 0; b < nb; ++b) {
      double s = 0;
      for (std::int64_t p = 0; p < pieces_per_block; ++p) s += partial[b * pieces_per_block + p];
      const std::int64_t n = std::min(bs, d - b * bs);
      sc[b] = static_cast<float>(s / static_cast<double>(n));
    }
    out.emplace_back("packed", std::move(packed));
    out.emplace_back("scale", std::move(scale));
  }
  void decode(const DatasetLookup& get, const Shape&, const RandomKey&, std::span<float> out) const override {
    const std::int64_t d = static_cast<std::int64_t>(out.size()), bs = blk(d), nb = ceil_div(d, bs);
    const std::uint8_t* pk = expect(get, "packed", ceil_div(d, 8), DType::U8, "sign").as<std::uint8_t>().data();
    const float* sc = expect(get, "scale", nb, DType::F32, "sign").f32().data();
    parallel_chunks(ceil_div(d, 8), 1 << 13, [&](std::int64_t bb, std::int64_t be) {
      for (std::int64_t byte = bb; byte < be; ++byte) {
        const std::int64_t i0 = byte * 8, m = std::min<std::int64_t>(8, d - i0);
        if (m == 8 && bs > 0 && (i0 / bs) == ((i0 + 7) / bs)) {
          const std::uint32_t s = std::bit_cast<std::uint32_t>(sc[i0 / bs]) & 0x7FFFFFFFu;
          const std::uint32_t neg = ~static_cast<std::uint32_t>(pk[byte]);
          float* y = out.data() + i0;
          for (int j = 0; j < 8; ++j) y[j] = std::bit_cast<float>(s | (((neg >> j) & 1u) << 31));
          continue;
        }
        // A byte never straddles blocks (block is a multiple of 8); bit 0 sets the sign bit.
        const std::uint32_t s = std::bit_cast<std::uint32_t>(sc[i0 / bs]) & 0x7FFFFFFFu;
        const std::uint32_t neg = ~static_cast<std::uint32_t>(pk[byte]);
        for (std::int64_t j = 0; j < m; ++j) out[i0 + j] = std::bit_cast<float>(s | (((neg >> j) & 1u) << 31));
      }
    });
  }

 private:
  std::int64_t block_ = 0;
};

// ---------------------------------------------------------------------------------------------- QSGD

class QsgdStage final : public Stage {
 public:
  explicit QsgdStage(const StageSpec& s) {
    Params p(s);
    levels_ = p.integer("levels", 127, 1, 32767);
    bucket_ = p.integer("bucket", 512, 4, std::int64_t{1} << 40);
    if (bucket_ % 4 != 0) throw_error(ErrorKind::Usage, "codec qsgd: bucket={} is not a multiple of 4", bucket_);
    l2_ = p.choice("norm", "max", {"max", "l2"}) == "l2";
    p.finish();
  }
  std::string_view name() const override { return "qsgd"; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    return {{"levels", std::to_string(levels_)}, {"bucket", std::to_string(bucket_)}, {"norm", l2_ ? "l2" : "max"}};
  }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "levels", levels_);
    a.set(prefix + "bucket", bucket_);
    a.set(prefix + "norm", std::string(l2_ ? "l2" : "max"));
  }
  DType code_dtype() const { return levels_ <= 127 ? DType::I8 : DType::I16; }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const std::int64_t d = shape_numel(shape);
    return {{"levels", {d}, code_dtype()}, {"norm", {ceil_div(d, bucket_)}, DType::F32}};
  }
  template <typename T>
  void encode_as(std::span<const float> x, const RandomKey& key, T* code, float* norm) const {
    const std::int64_t d = static_cast<std::int64_t>(x.size()), nb = ceil_div(d, bucket_);
    const float s = static_cast<float>(levels_);
    parallel_chunks(nb, std::max<std::int64_t>(1, (1 << 16) / bucket_), [&](std::int64_t bb, std::int64_t be) {
      for (std::int64_t b = bb; b < be; ++b) {
        const std::int64_t i0 = b * bucket_, n = std::min(bucket_, d - i0);
        const float* xb = x.data() + i0;
        double nrm = 0;
        if (l2_) {
          for (std::int64_t i = 0; i < n; ++i) nrm += static_cast<double>(xb[i]) * xb[i];
          nrm = std::sqrt(nrm);
        } else {
          for (std::int64_t i = 0; i < n; ++i) nrm = std::max(nrm, static_cast<double>(std::fabs(xb[i])));
        }
        const float N = static_cast<float>(nrm);
        norm[b] = N;
        Rng rng = rng_at(key.seed, key.stream, i0);
        const float mul = N > 0 ? s / N : 0.0f;
        for (std::int64_t i = 0; i < n; ++i) {
          const float u = rng.uniform();  // one word per element whatever its value
          // The sum is ≥ 0, so truncation is ⌊·⌋ (and needs no libm call).
          const float l = std::min(static_cast<float>(static_cast<std::int32_t>(std::min(std::fabs(xb[i]) * mul, s) + u)), s);
          code[i0 + i] = static_cast<T>(std::signbit(xb[i]) ? -l : l);
        }
      }
    });
  }
  void encode(std::span<const float> x, const Shape&, const RandomKey& key, TensorState*, Datasets& out) const override {
    const std::int64_t d = static_cast<std::int64_t>(x.size());
    Tensor code = Tensor::uninitialized({d}, code_dtype());
    Tensor norm = Tensor::uninitialized({ceil_div(d, bucket_)}, DType::F32);
    if (code_dtype() == DType::I8) encode_as(x, key, code.as<std::int8_t>().data(), norm.f32().data());
    else encode_as(x, key, code.as<std::int16_t>().data(), norm.f32().data());
    out.emplace_back("levels", std::move(code));
    out.emplace_back("norm", std::move(norm));
  }
  template <typename T>
  void decode_as(const T* code, const float* norm, std::span<float> out) const {
    const std::int64_t d = static_cast<std::int64_t>(out.size()), nb = ceil_div(d, bucket_);
    parallel_chunks(nb, std::max<std::int64_t>(1, (1 << 16) / bucket_), [&](std::int64_t bb, std::int64_t be) {
      for (std::int64_t b = bb; b < be; ++b) {
        const std::int64_t i0 = b * bucket_, n = std::min(bucket_, d - i0);
        const float f = norm[b] / static_cast<float>(levels_);
        for (std::int64_t i = i0; i < i0 + n; ++i) out[i] = static_cast<float>(code[i]) * f;
      }
    });
  }
  void decode(const DatasetLookup& get, const Shape&, const RandomKey&, std::span<float> out) const override {
    const std::int64_t d = static_cast<std::int64_t>(out.size());
    const Tensor& code = expect(get, "levels", d, code_dtype(), "qsgd");
    const float* norm = expect(get, "norm", ceil_div(d, bucket_), DType::F32, "qsgd").f32().data();
    if (code_dtype() == DType::I8) {
      for (auto c : code.as<std::int8_t>())
        if (c > levels_ || c < -levels_) throw_error(ErrorKind::BadInput, "codec qsgd: level {} outside ±{}", c, levels_);
      decode_as(code.as<std::int8_t>().data(), norm, out);
    } else {
      for (auto c : code.as<std::int16_t>())
        if (c > levels_ || c < -levels_) throw_error(ErrorKind::BadInput, "codec qsgd: level {} outside ±{}", c, levels_);
      decode_as(code.as<std::int16_t>().data(), norm, out);
    }
  }

 private:
  std::int64_t levels_ = 127;
  std::int64_t bucket_ = 512;
  bool l2_ = false;
};

// ---------------------------------------------------------------------------------------------- DCT top-k

// The orthonormal DCT-II basis of length N, row k = the k-th basis vector:
// C[k][n] = s_k cos(π(n + ½)k/N), s_0 = √(1/N), s_k = √(2/N); computed in double, rounded once.
std::vector<float> dct_basis(std::int64_t N) {
  std::vector<float> basis(static_cast<std::size_t>(N * N));
  const double n_d = static_cast<double>(N);
  for (std::int64_t k = 0; k < N; ++k)
    for (std::int64_t n = 0; n < N; ++n)
      basis[k * N + n] = static_cast<float>((k == 0 ? std::sqrt(1 / n_d) : std::sqrt(2 / n_d)) *
                                            std::cos(std::numbers::pi * (static_cast<double>(n) + 0.5) * static_cast<double>(k) / n_d));
  return basis;
}

// DeMo's transform. tile=1d (the default): the flattened tensor in chunks of N = chunk (the last one
// zero-padded), each mapped by the orthonormal DCT-II X_k = s_k Σ_n x_n cos(π(n + ½)k/N), s_0 = √(1/N),
// s_k = √(2/N), then the k largest coefficients of each chunk kept (ties to the lower coefficient index).
// tile=2d (DeMo's own tiling, dct.hpp): the tensor as rows × cols (rank ≥ 2: shape[0] × the rest;
// rank ≤ 1: 1 × numel) cut into s1 × s2 tiles, s = dct_tile_size(dimension, chunk); per tile the
// orthonormal DCT-II along both axes, Y = C1·X·C2ᵀ, coefficient (a, b) at index a·s2 + b; tiles in
// row-major order of the tile grid; the min(k, s1·s2) largest coefficients of each tile kept.
class DctTopkStage final : public Stage {
 public:
  explicit DctTopkStage(const StageSpec& s) {
    Params p(s);
    tile2d_ = p.choice("tile", "1d", {"1d", "2d"}) == "2d";
    chunk_ = p.integer("chunk", 64, 1, tile2d_ ? 256 : 4096);
    k_ = p.integer("k", 4, 1, tile2d_ ? 65536 : 4096);
    p.finish();
    if (!tile2d_ && k_ > chunk_) throw_error(ErrorKind::Usage, "codec dct_topk: k={} exceeds chunk={}", k_, chunk_);
    if (tile2d_ && k_ > chunk_ * chunk_)
      throw_error(ErrorKind::Usage, "codec dct_topk: k={} exceeds chunk²={} (the largest tile)", k_, chunk_ * chunk_);
    if (!tile2d_) basis_ = dct_basis(chunk_);
  }
  std::string_view name() const override { return "dct_topk"; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    // tile=1d is left out, so the default's spec (and every file made with it) is unchanged.
    std::vector<std::pair<std::string, std::string>> c = {{"chunk", std::to_string(chunk_)}, {"k", std::to_string(k_)}};
    if (tile2d_) c.emplace_back("tile", "2d");
    return c;
  }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "chunk", chunk_);
    a.set(prefix + "k", k_);
    a.set(prefix + "transform", std::string(tile2d_ ? "dct-ii-orthonormal-2d" : "dct-ii-orthonormal"));
    if (tile2d_) a.set(prefix + "tile", std::string("2d"));
  }
  bool sparsifier() const override { return true; }

  // The coefficient domain of a tensor of this shape (dct.hpp).
  DctDomain domain(const Shape& shape) const {
    DctDomain g;
    const std::int64_t d = shape_numel(shape);
    if (!tile2d_) {
      g.tiles = ceil_div(d, chunk_);
      g.tile = chunk_;
      g.tile_rows = 1;
      g.tile_cols = chunk_;
      g.kept = k_;
      return g;
    }
    g.rows = shape.size() >= 2 ? shape[0] : 1;
    g.cols = g.rows == 0 ? 0 : d / g.rows;
    if (d == 0) {
      g.rows = g.cols = 0;
      g.tile_rows = g.tile_cols = g.tile = 1;
      g.kept = 1;
      return g;
    }
    g.tile_rows = dct_tile_size(g.rows, chunk_);
    g.tile_cols = dct_tile_size(g.cols, chunk_);
    g.tile = g.tile_rows * g.tile_cols;
    g.tiles = (g.rows / g.tile_rows) * (g.cols / g.tile_cols);
    g.kept = std::min(k_, g.tile);
    return g;
  }
  std::int64_t chunk() const { return chunk_; }
  std::int64_t k() const { return k_; }
  bool tile2d() const { return tile2d_; }

  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const DctDomain g = domain(shape);
    const std::int64_t kk = g.tiles * g.kept;
    return {{"indices", {kk}, DType::U16}, {"values", {kk}, DType::F32}};
  }
  // The coefficients of chunks [c0, c0 + rows) into y (rows × N).
  void transform(std::span<const float> x, std::int64_t c0, std::int64_t rows, std::vector<float>& pad,
                 std::vector<float>& y) const {
    const std::int64_t N = chunk_, d = static_cast<std::int64_t>(x.size());
    const float* src = x.data() + c0 * N;
    if ((c0 + rows) * N > d) {  // the last group holds the zero-padded last chunk
      pad.assign(static_cast<std::size_t>(rows * N), 0.0f);
      std::copy(x.begin() + c0 * N, x.end(), pad.begin());
      src = pad.data();
    }
    y.resize(static_cast<std::size_t>(rows * N));
    Eigen::Map<const Mat> X(src, rows, N);
    Eigen::Map<const Mat> C(basis_.data(), N, N);
    Eigen::Map<Mat> Y(y.data(), rows, N);
    Y.noalias() = X * C.transpose();
  }
  void encode(std::span<const float> x, const Shape& shape, const RandomKey&, TensorState*, Datasets& out) const override {
    if (tile2d_) return encode_2d(x, shape, out);
    const std::int64_t d = static_cast<std::int64_t>(x.size()), N = chunk_, nc = ceil_div(d, N);
    Tensor ind = Tensor::uninitialized({nc * k_}, DType::U16), val = Tensor::uninitialized({nc * k_}, DType::F32);
    std::uint16_t* ip = ind.as<std::uint16_t>().data();
    float* vp = val.f32().data();
    // Groups of a fixed number of chunks: the same GEMM shapes, so the same bits, at any thread count.
    const std::int64_t group = std::max<std::int64_t>(1, 16384 / N), groups = ceil_div(nc, group);
    parallel_chunks(groups, 1, [&](std::int64_t gb, std::int64_t ge) {
      std::vector<float> pad, y;
      std::vector<std::uint32_t> hist;
      std::vector<Cand> cand, scratch;
      for (std::int64_t g = gb; g < ge; ++g) {
        const std::int64_t c0 = g * group, rows = std::min(group, nc - c0);
        transform(x, c0, rows, pad, y);
        for (std::int64_t r = 0; r < rows; ++r) {
          const float* coef = y.data() + r * N;
          std::int64_t o = (c0 + r) * k_;
          auto emit = [&](std::int64_t i) { ip[o] = static_cast<std::uint16_t>(i), vp[o] = coef[i], ++o; };
          if (k_ == N) {
            for (std::int64_t i = 0; i < N; ++i) emit(i);
          } else {
            topk_serial(coef, N, k_, hist, cand, scratch, emit);
          }
        }
      }
    });
    out.emplace_back("indices", std::move(ind));
    out.emplace_back("values", std::move(val));
  }
  void decode(const DatasetLookup& get, const Shape& shape, const RandomKey&, std::span<float> out) const override {
    if (tile2d_) return decode_2d(get, shape, out);
    const std::int64_t d = static_cast<std::int64_t>(out.size()), N = chunk_, nc = ceil_div(d, N);
    const std::uint16_t* ip = expect(get, "indices", nc * k_, DType::U16, "dct_topk").as<std::uint16_t>().data();
    const float* vp = expect(get, "values", nc * k_, DType::F32, "dct_topk").f32().data();
    std::atomic<bool> bad{false};
    parallel_chunks(nc, std::max<std::int64_t>(1, 16384 / N), [&](std::int64_t cb, std::int64_t ce) {
      std::vector<float> buf(static_cast<std::size_t>(N));
      for (std::int64_t c = cb; c < ce; ++c) {
        std::fill(buf.begin(), buf.end(), 0.0f);
        for (std::int64_t j = c * k_; j < (c + 1) * k_; ++j) {  // x = Cᵀ X over the kept coefficients
          if (ip[j] >= N) {
            bad = true;
            continue;
          }
          const float v = vp[j];
          const float* row = basis_.data() + static_cast<std::int64_t>(ip[j]) * N;
          for (std::int64_t n = 0; n < N; ++n) buf[n] += v * row[n];
        }
        std::copy(buf.begin(), buf.begin() + std::min(N, d - c * N), out.begin() + c * N);
      }
    });
    if (bad) throw_error(ErrorKind::BadInput, "codec dct_topk: a coefficient index is not below chunk={}", chunk_);
  }

 private:
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Strided = Eigen::Map<Mat, 0, Eigen::OuterStride<>>;
  using ConstStrided = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;

  // The 2-D work units: a band of s1 rows by a group of up to `per` tiles along it (about 16384
  // elements), numbered band-major. Fixed by the shape alone, so the GEMM shapes, and the bits, do
  // not depend on the thread count.
  struct Units {
    std::int64_t per = 1, groups = 1, count = 0, tiles_c = 0;
  };
  static Units units_of(const DctDomain& g) {
    Units u;
    if (g.tiles == 0) return u;
    u.tiles_c = g.cols / g.tile_cols;
    u.per = std::clamp<std::int64_t>(16384 / g.tile, 1, u.tiles_c);
    u.groups = ceil_div(u.tiles_c, u.per);
    u.count = (g.rows / g.tile_rows) * u.groups;
    return u;
  }

  // Per unit: B = C1·X (s1 × n·s2, the column transform of the band's tiles), then, reading B as
  // (s1·n) × s2 rows, Z = B·C2ᵀ, whose row a·n + j holds row-frequency a of tile j.
  void encode_2d(std::span<const float> x, const Shape& shape, Datasets& out) const {
    const DctDomain g = domain(shape);
    const std::int64_t s1 = g.tile_rows, s2 = g.tile_cols, T = g.tile, kk = g.kept;
    Tensor ind = Tensor::uninitialized({g.tiles * kk}, DType::U16), val = Tensor::uninitialized({g.tiles * kk}, DType::F32);
    std::uint16_t* ip = ind.as<std::uint16_t>().data();
    float* vp = val.f32().data();
    const std::vector<float> c1 = dct_basis(s1), c2 = dct_basis(s2);
    const Units u = units_of(g);
    parallel_chunks(u.count, 1, [&](std::int64_t ub, std::int64_t ue) {
      std::vector<float> b, z, y(static_cast<std::size_t>(T));
      std::vector<std::uint32_t> hist;
      std::vector<Cand> cand, scratch;
      for (std::int64_t unit = ub; unit < ue; ++unit) {
        const std::int64_t band = unit / u.groups, t0 = (unit % u.groups) * u.per, n = std::min(u.per, u.tiles_c - t0);
        b.resize(static_cast<std::size_t>(s1 * n * s2));
        z.resize(b.size());
        ConstStrided X(x.data() + band * s1 * g.cols + t0 * s2, s1, n * s2, Eigen::OuterStride<>(g.cols));
        Eigen::Map<Mat> B(b.data(), s1, n * s2);
        B.noalias() = Eigen::Map<const Mat>(c1.data(), s1, s1) * X;
        Eigen::Map<Mat> Z(z.data(), s1 * n, s2);
        Z.noalias() = Eigen::Map<const Mat>(b.data(), s1 * n, s2) * Eigen::Map<const Mat>(c2.data(), s2, s2).transpose();
        for (std::int64_t j = 0; j < n; ++j) {
          for (std::int64_t a = 0; a < s1; ++a)
            std::copy_n(z.data() + (a * n + j) * s2, s2, y.data() + a * s2);
          std::int64_t o = (band * u.tiles_c + t0 + j) * kk;
          auto emit = [&](std::int64_t i) { ip[o] = static_cast<std::uint16_t>(i), vp[o] = y[i], ++o; };
          if (kk == T) {
            for (std::int64_t i = 0; i < T; ++i) emit(i);
          } else {
            topk_serial(y.data(), T, kk, hist, cand, scratch, emit);
          }
        }
      }
    });
    out.emplace_back("indices", std::move(ind));
    out.emplace_back("values", std::move(val));
  }

  // The inverse per unit: the kept coefficients scattered (added) into Z, B = Z·C2 read as s1 × n·s2,
  // X = C1ᵀ·B written into the band.
  void decode_2d(const DatasetLookup& get, const Shape& shape, std::span<float> out) const {
    const DctDomain g = domain(shape);
    const std::int64_t s1 = g.tile_rows, s2 = g.tile_cols, T = g.tile, kk = g.kept;
    const std::uint16_t* ip = expect(get, "indices", g.tiles * kk, DType::U16, "dct_topk").as<std::uint16_t>().data();
    const float* vp = expect(get, "values", g.tiles * kk, DType::F32, "dct_topk").f32().data();
    const std::vector<float> c1 = dct_basis(s1), c2 = dct_basis(s2);
    const Units u = units_of(g);
    std::atomic<bool> bad{false};
    parallel_chunks(u.count, 1, [&](std::int64_t ub, std::int64_t ue) {
      std::vector<float> b, z;
      for (std::int64_t unit = ub; unit < ue; ++unit) {
        const std::int64_t band = unit / u.groups, t0 = (unit % u.groups) * u.per, n = std::min(u.per, u.tiles_c - t0);
        z.assign(static_cast<std::size_t>(s1 * n * s2), 0.0f);
        b.resize(z.size());
        for (std::int64_t j = 0; j < n; ++j) {
          const std::int64_t tile = band * u.tiles_c + t0 + j;
          for (std::int64_t e = tile * kk; e < (tile + 1) * kk; ++e) {
            const std::int64_t i = ip[e];
            if (i >= T) {
              bad = true;
              continue;
            }
            z[((i / s2) * n + j) * s2 + i % s2] += vp[e];
          }
        }
        Eigen::Map<Mat> B(b.data(), s1 * n, s2);
        B.noalias() = Eigen::Map<const Mat>(z.data(), s1 * n, s2) * Eigen::Map<const Mat>(c2.data(), s2, s2);
        Strided X(out.data() + band * s1 * g.cols + t0 * s2, s1, n * s2, Eigen::OuterStride<>(g.cols));
        X.noalias() = Eigen::Map<const Mat>(c1.data(), s1, s1).transpose() * Eigen::Map<const Mat>(b.data(), s1, n * s2);
      }
    });
    if (bad) throw_error(ErrorKind::BadInput, "codec dct_topk: a coefficient index is not below the tile size {}", T);
  }

  std::int64_t chunk_ = 64, k_ = 4;
  bool tile2d_ = false;
  std::vector<float> basis_;  // 1d: row k is the k-th orthonormal DCT-II basis vector of length chunk
};

// ---------------------------------------------------------------------------------------------- count sketch

// Arithmetic modulo the Mersenne prime 2^61 − 1 for the sketch's hash families.
constexpr std::uint64_t kP61 = (std::uint64_t{1} << 61) - 1;
inline std::uint64_t mod61(std::uint64_t v) {
  v = (v & kP61) + (v >> 61);
  return v >= kP61 ? v - kP61 : v;
}
inline std::uint64_t mulmod61(std::uint64_t a, std::uint64_t b) {
  __extension__ using u128 = unsigned __int128;
  const u128 p = static_cast<u128>(a) * b;
  return mod61(static_cast<std::uint64_t>(p & kP61) + static_cast<std::uint64_t>(p >> 61));
}

// One row's hashes: bucket h(i) = ⌊((a·i + b) mod p) · cols / 2^61⌋ (2-wise independent) and sign
// s(i) = ±1 from the low bit of a cubic polynomial mod p (4-wise independent), coefficients drawn
// from the shared stream so every worker hashes alike.
struct RowHash {
  std::uint64_t a, b, c[4];
  std::int64_t cols;
  RowHash(std::uint64_t seed, std::uint64_t stream, std::int64_t row, std::int64_t ncols) : cols(ncols) {
    Rng r(seed, {stream, 0x736b65746368ull, static_cast<std::uint64_t>(row)});
    a = 1 + r.below(kP61 - 1);
    b = r.below(kP61);
    for (auto& v : c) v = r.below(kP61);
  }
  // (h · cols) >> 61 maps h ∈ [0, 2^61) onto [0, cols) without a division (Lemire's range map).
  std::int64_t bucket(std::uint64_t i) const {
    __extension__ using u128 = unsigned __int128;
    const std::uint64_t h = mod61(mulmod61(a, i) + b);
    return static_cast<std::int64_t>((static_cast<u128>(h) * static_cast<std::uint64_t>(cols)) >> 61);
  }
  float sign(std::uint64_t i) const {
    std::uint64_t h = c[3];
    for (int j = 2; j >= 0; --j) h = mod61(mulmod61(h, i) + c[j]);
    return (h & 1u) ? 1.0f : -1.0f;
  }
};

class SketchStage final : public Stage {
 public:
  explicit SketchStage(const StageSpec& s) {
    Params p(s);
    rows_ = p.integer("rows", 5, 1, 64);
    cols_ = p.integer("cols", 65536, 1, std::int64_t{1} << 40);
    k_ = p.integer("k", 0, 0, std::numeric_limits<std::int64_t>::max());
    p.finish();
  }
  std::string_view name() const override { return "sketch"; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    return {{"rows", std::to_string(rows_)}, {"cols", std::to_string(cols_)}, {"k", std::to_string(k_)}};
  }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "rows", rows_);
    a.set(prefix + "cols", cols_);
    a.set(prefix + "k", k_);
    a.set(prefix + "hash", std::string("bucket (((a*i+b) mod 2^61-1) * cols) >> 61; sign cubic mod 2^61-1, low bit"));
  }
  std::vector<DatasetLayout> layout(const Shape&) const override { return {{"table", {rows_, cols_}, DType::F32}}; }
  void encode(std::span<const float> x, const Shape&, const RandomKey& key, TensorState*, Datasets& out) const override {
    Tensor table({rows_, cols_});
    float* t = table.f32().data();
    const auto d = static_cast<std::int64_t>(x.size());
    // One row per task, each summed in index order: the same bits at any thread count.
    parallel_chunks(rows_, 1, [&](std::int64_t rb, std::int64_t re) {
      for (std::int64_t r = rb; r < re; ++r) {
        const RowHash h(key.seed, key.shared_stream, r, cols_);
        float* row = t + r * cols_;
        for (std::int64_t i = 0; i < d; ++i)
          if (x[i] != 0.0f) row[h.bucket(static_cast<std::uint64_t>(i))] += h.sign(static_cast<std::uint64_t>(i)) * x[i];
      }
    });
    out.emplace_back("table", std::move(table));
  }
  void decode(const DatasetLookup& get, const Shape&, const RandomKey& key, std::span<float> out) const override {
    const float* t = expect(get, "table", rows_ * cols_, DType::F32, "sketch").f32().data();
    const auto d = static_cast<std::int64_t>(out.size());
    std::vector<RowHash> hs;
    for (std::int64_t r = 0; r < rows_; ++r) hs.emplace_back(key.seed, key.shared_stream, r, cols_);
    parallel_chunks(d, 4096, [&](std::int64_t b, std::int64_t e) {
      std::vector<float> est(static_cast<std::size_t>(rows_));
      for (std::int64_t i = b; i < e; ++i) {
        for (std::int64_t r = 0; r < rows_; ++r)
          est[r] = hs[r].sign(static_cast<std::uint64_t>(i)) * t[r * cols_ + hs[r].bucket(static_cast<std::uint64_t>(i))];
        std::sort(est.begin(), est.end());
        const std::size_t m = est.size() / 2;
        out[i] = est.size() % 2 ? est[m] : 0.5f * (est[m - 1] + est[m]);
      }
    });
    if (k_ > 0 && k_ < d) {  // heavy hitters: keep the k largest estimates
      std::vector<std::int64_t> idx;
      topk_indices(out, k_, idx);
      std::vector<float> kept(idx.size());
      for (std::size_t j = 0; j < idx.size(); ++j) kept[j] = out[idx[j]];
      std::fill(out.begin(), out.end(), 0.0f);
      for (std::size_t j = 0; j < idx.size(); ++j) out[idx[j]] = kept[j];
    }
  }

 private:
  std::int64_t rows_ = 5, cols_ = 65536, k_ = 0;
};

// ---------------------------------------------------------------------------------------------- PowerSGD

// One PowerSGD step (Vogels et al. 2019) on the tensor viewed as M (n × m, n the leading dimension):
// P = MQ, P̂ = orth(P) (Gram–Schmidt; a column with nothing left after projection becomes zero
// instead of NaN), Q = MᵀP̂; sends P̂ and Q, decodes M̂ = P̂Qᵀ. Q starts from a normal draw of the
// shared stream (the same on every worker) and is warm-started from the state's "powersgd_q".
// Rank-0/1-D tensors, and those where rank·(n + m)·min_rate ≥ n·m, are sent dense.
class PowersgdStage final : public Stage {
 public:
  explicit PowersgdStage(const StageSpec& s) {
    Params p(s);
    rank_ = p.integer("rank", 4, 1, 1 << 16);
    min_rate_ = p.real("min_rate", 2.0, 0.0, 1e12);
    p.finish();
  }
  std::string_view name() const override { return "powersgd"; }
  bool stateful() const override { return true; }
  bool screens_finite() const override { return true; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    return {{"rank", std::to_string(rank_)}, {"min_rate", real_text(min_rate_)}};
  }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "rank", rank_);
    a.set(prefix + "min_rate", min_rate_);
  }
  struct View {
    std::int64_t n = 0, m = 0, r = 0;
    bool dense = true;
  };
  View view(const Shape& shape) const {
    View v;
    if (shape.size() < 2) return v;
    v.n = shape[0];
    v.m = shape_numel(shape) / std::max<std::int64_t>(v.n, 1);
    v.r = std::min({rank_, v.n, v.m});
    const double n = static_cast<double>(v.n), m = static_cast<double>(v.m);
    v.dense = v.r == 0 || static_cast<double>(v.r) * (n + m) * min_rate_ >= n * m;
    return v;
  }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const View v = view(shape);
    if (v.dense) return {{"data", {shape_numel(shape)}, DType::F32}};
    return {{"p", {v.n, v.r}, DType::F32}, {"q", {v.m, v.r}, DType::F32}};
  }
  void encode(std::span<const float> x, const Shape& shape, const RandomKey& key, TensorState* state,
              Datasets& out) const override {
    using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const View v = view(shape);
    if (v.dense) {
      require_finite(x);
      Tensor t = Tensor::uninitialized({static_cast<std::int64_t>(x.size())});
      std::copy(x.begin(), x.end(), t.f32().begin());
      out.emplace_back("data", std::move(t));
      return;
    }
    Tensor q({v.m, v.r});
    const Tensor* warm = state ? state->find("powersgd_q") : nullptr;
    if (warm && warm->dtype() == DType::F32 && warm->shape() == q.shape()) {
      std::copy(warm->f32().begin(), warm->f32().end(), q.f32().begin());
    } else {
      fill_normal(q.f32(), 0.0f, 1.0f, key.seed, stream_id({key.shared_stream, 0x706f776572ull}));
    }
    Tensor p({v.n, v.r});
    Eigen::Map<Mat> P(p.f32().data(), v.n, v.r);
    Eigen::Map<Mat> Q(q.f32().data(), v.m, v.r);
    // Both products in parallel over fixed blocks of kRows rows of M, so the bits do not depend on
    // the thread count: P_b = M_b·Q per block; Q = Mᵀ·P as the sum, in group order, of per-group
    // partial sums Σ_b M_bᵀ·P_b over a fixed number of groups of consecutive blocks.
    constexpr std::int64_t kRows = 64, kGroups = 32;
    const std::int64_t nb = ceil_div(v.n, kRows), groups = std::min(kGroups, nb);
    const std::int64_t per_group = ceil_div(nb, groups);
    auto rows_of = [&](std::int64_t b) { return std::min(kRows, v.n - b * kRows); };
    auto block = [&](std::int64_t b) { return Eigen::Map<const Mat>(x.data() + b * kRows * v.m, rows_of(b), v.m); };
    parallel_chunks(nb, 1, [&](std::int64_t bb, std::int64_t be) {
      for (std::int64_t b = bb; b < be; ++b) P.middleRows(b * kRows, rows_of(b)).noalias() = block(b) * Q;
    });
    // A NaN or Inf in M reaches P (Q's entries are finite; Inf·0 is NaN too): the exact scan names it.
    if (!P.allFinite()) {
      require_finite(x);
      throw_error(ErrorKind::Numeric, "codec powersgd: M·Q overflows float32");
    }
    orthonormalize(P);
    std::vector<Mat> partial(static_cast<std::size_t>(groups));
    parallel_chunks(groups, 1, [&](std::int64_t gb, std::int64_t ge) {
      for (std::int64_t g = gb; g < ge; ++g) {
        Mat& acc = partial[static_cast<std::size_t>(g)];
        acc = Mat::Zero(v.m, v.r);
        for (std::int64_t b = g * per_group; b < std::min(nb, (g + 1) * per_group); ++b)
          acc.noalias() += block(b).transpose() * P.middleRows(b * kRows, rows_of(b));
      }
    });
    Q = partial[0];
    for (std::int64_t g = 1; g < groups; ++g) Q += partial[static_cast<std::size_t>(g)];
    if (state) state->set("powersgd_q", q.clone());
    out.emplace_back("p", std::move(p));
    out.emplace_back("q", std::move(q));
  }
  // Modified Gram–Schmidt in double on the columns of P. A column whose remainder is below
  // 1e-6 of its original norm (or zero) carries no new direction: it is set to zero.
  template <typename M>
  static void orthonormalize(M& P) {
    const auto n = P.rows(), r = P.cols();
    Eigen::MatrixXd D = P.template cast<double>();
    for (Eigen::Index j = 0; j < r; ++j) {
      const double before = D.col(j).norm();
      for (Eigen::Index i = 0; i < j; ++i) D.col(j) -= D.col(i).dot(D.col(j)) * D.col(i);
      const double after = D.col(j).norm();
      if (after > 0 && after > 1e-6 * before) D.col(j) /= after;
      else D.col(j).setZero();
    }
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j < r; ++j) P(i, j) = static_cast<float>(D(i, j));
  }
  void decode(const DatasetLookup& get, const Shape& shape, const RandomKey&, std::span<float> out) const override {
    using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const View v = view(shape);
    if (v.dense) {
      const float* src = expect(get, "data", static_cast<std::int64_t>(out.size()), DType::F32, "powersgd").f32().data();
      std::copy(src, src + out.size(), out.begin());
      return;
    }
    const float* p = expect(get, "p", v.n * v.r, DType::F32, "powersgd").f32().data();
    const float* q = expect(get, "q", v.m * v.r, DType::F32, "powersgd").f32().data();
    Eigen::Map<Mat> Y(out.data(), v.n, v.m);
    Y.noalias() = Eigen::Map<const Mat>(p, v.n, v.r) * Eigen::Map<const Mat>(q, v.m, v.r).transpose();
  }

 private:
  std::int64_t rank_ = 4;
  double min_rate_ = 2.0;
};

}  // namespace

const std::vector<std::string>& codec_names() {
  static const std::vector<std::string> names = {"cast", "topk",     "randk",  "quant",   "sign",
                                                 "qsgd", "dct_topk", "sketch", "powersgd"};
  return names;
}

std::unique_ptr<Stage> make_stage(const StageSpec& s) {
  if (s.name == "cast") return std::make_unique<CastStage>(s);
  if (s.name == "topk") return std::make_unique<TopkStage>(s);
  if (s.name == "randk") return std::make_unique<RandkStage>(s);
  if (s.name == "quant") return std::make_unique<QuantStage>(s);
  if (s.name == "sign") return std::make_unique<SignStage>(s);
  if (s.name == "qsgd") return std::make_unique<QsgdStage>(s);
  if (s.name == "dct_topk") return std::make_unique<DctTopkStage>(s);
  if (s.name == "sketch") return std::make_unique<SketchStage>(s);
  if (s.name == "powersgd") return std::make_unique<PowersgdStage>(s);
  throw_error(ErrorKind::Usage, "unknown codec '{}' (known: {})", s.name, fmt::join(codec_names(), ", "));
}

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

std::int64_t dct_tile_size(std::int64_t n, std::int64_t chunk) {
  if (n < 1 || chunk < 1) throw_error(ErrorKind::Usage, "dct tile size: dimension {} and chunk {} must be at least 1", n, chunk);
  if (n <= chunk) return n;
  for (std::int64_t s = chunk; s > 1; --s)
    if (n % s == 0) return s;
  return 1;
}

namespace {
// The dct_topk stage of a spec's stage, or Error(Usage) when it is another codec.
std::unique_ptr<DctTopkStage> dct_stage(const StageSpec& stage) {
  if (stage.name != "dct_topk") throw_error(ErrorKind::Usage, "codec '{}' is not dct_topk", stage.name);
  return std::make_unique<DctTopkStage>(stage);
}
}  // namespace

DctDomain dct_domain(const StageSpec& stage, const Shape& shape) { return dct_stage(stage)->domain(shape); }

StageSpec dct_coefficient_stage(const StageSpec& stage, const Shape& shape) {
  const DctDomain g = dct_domain(stage, shape);
  return {"topk", {{"k", std::to_string(g.kept)}, {"tile", std::to_string(g.tile)}}};
}

Tensor dct_inverse(Tensor coef, const StageSpec& stage, const Shape& shape) {
  const auto dct = dct_stage(stage);
  const DctDomain g = dct->domain(shape);
  if (coef.dtype() != DType::F32 || coef.numel() != g.size())
    throw_error(ErrorKind::BadInput, "dct inverse: {} coefficients of {}, expected {} float32 for shape {}", coef.numel(),
                dtype_name(coef.dtype()), g.size(), shape_string(shape));
  // dct_topk's own decoder with every coefficient of every tile kept.
  const std::string spec = dct->tile2d() ? fmt::format("dct_topk:chunk={},k={},tile=2d", dct->chunk(), dct->chunk() * dct->chunk())
                                         : fmt::format("dct_topk:chunk={},k={}", dct->chunk(), dct->chunk());
  Encoded e;
  e.attrs.set("codec", std::string("dct_topk"));
  e.attrs.set("spec", spec);
  e.attrs.set("seed", std::int64_t{0});
  e.attrs.set("stream", std::int64_t{0});
  e.attrs.set("shared_stream", std::int64_t{0});
  e.attrs.set("ndim", static_cast<std::int64_t>(shape.size()));
  if (!shape.empty()) e.attrs.set("shape", std::vector<std::int64_t>(shape.begin(), shape.end()));
  e.attrs.set("dtype", std::string("f32"));
  Tensor idx = Tensor::uninitialized({g.size()}, DType::U16);
  auto* ip = idx.as<std::uint16_t>().data();
  for (std::int64_t j = 0; j < g.size(); ++j) ip[j] = static_cast<std::uint16_t>(j % g.tile);
  e.datasets.emplace_back("indices", std::move(idx));
  e.datasets.emplace_back("values", std::move(coef));
  return decode(e);
}

}  // namespace loco::compress
