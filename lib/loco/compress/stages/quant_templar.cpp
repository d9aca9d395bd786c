// quant:range=templar, SparseLoCo's value quantizer as its reference implementation has it
// (tplr-ai/templar src/tplr/compress/topk.py, TopKCompressor._quantize_values and
// _dequantize_values, with quantization_bins = 2^bits and quantization_range = sigmas). Over all m
// values of the tensor at once (the kept values of every tile): shift μ = their mean, centred
// c = v − μ, σ = ‖c‖/√(m − 1) (the sample standard deviation), scale s = sigmas·σ/2^bits (1 when that
// is 0, NaN or Inf), code q = clamp(round(c/s + 2^(bits−1)), 0, 2^bits − 1) with round() to nearest,
// halves to even (torch.round). Sent: the codes (bits each, packed little-endian as quant's), the table
// of the 2^bits bin means of c (0 for an empty bin) and μ; decoded as table[q] + μ. With bits = 2 and
// sigmas = 6 the bins split c at −2.25σ, −0.75σ and +0.75σ (bin 2 is centred on zero, bin 3 takes all
// above). μ, σ and the bin means are summed in float64 and rounded to float32 (templar sums in float32).
#include <cmath>

#include "loco/compress/detail/stage.hpp"
#include "loco/core/error.hpp"

namespace loco::compress {
namespace {

using namespace detail;

class QuantTemplarStage final : public Stage {
 public:
  explicit QuantTemplarStage(const StageSpec& s) {
    Spec p = stage_params(s);
    if (p.has("block") || p.has("rounding"))
      throw_error(ErrorKind::Usage,
                  "codec quant: range=templar quantizes a tensor's values as one group, "
                  "rounded to nearest; block and rounding do not apply");
    bits_ = static_cast<int>(p.integer("bits", 2, 1, 8));
    if (bits_ != 1 && bits_ != 2 && bits_ != 4 && bits_ != 8)
      throw_error(ErrorKind::Usage, "codec quant: bits={} is not one of 1, 2, 4, 8", bits_);
    p.choice("range", "templar", {"templar"});
    sigmas_ = p.real("sigmas", 6.0, Range::between(0.0, 1e6, true));
    p.done();
  }
  std::string_view name() const override { return "quant"; }
  std::vector<std::pair<std::string, std::string>> canonical() const override {
    return {{"bits", std::to_string(bits_)}, {"range", "templar"}, {"sigmas", real_text(sigmas_)}};
  }
  void record(Attributes& a, const std::string& prefix) const override {
    a.set(prefix + "bits", std::int64_t{bits_});
    a.set(prefix + "range", std::string("templar"));
    a.set(prefix + "sigmas", sigmas_);
    a.set(prefix + "bit_order", std::string("little"));
  }
  std::int64_t bins() const { return std::int64_t{1} << bits_; }
  std::vector<DatasetLayout> layout(const Shape& shape) const override {
    const std::int64_t m = shape_numel(shape);
    return {
        {"packed", {ceil_div(m * bits_, 8)}, DType::U8}, {"table", {bins()}, DType::F32}, {"shift", {1}, DType::F32}};
  }
  // templar's uint8 code per value, its float32 lookup table and shift.
  std::optional<std::int64_t> templar_bytes(const Datasets&, const Shape& shape) const override {
    return shape_numel(shape) + 4 * bins() + 4;
  }

  void encode(std::span<const float> x, const Shape&, const RandomKey&, TensorState*, Datasets& out) const override {
    const std::int64_t m = static_cast<std::int64_t>(x.size()), nb = bins();
    Tensor packed({ceil_div(m * bits_, 8)}, DType::U8), table({nb}, DType::F32), shift({1}, DType::F32);
    if (m > 0) {
      double sum = 0;
      for (const float v : x) sum += v;
      const float mu = static_cast<float>(sum / static_cast<double>(m));
      double sq = 0;
      for (const float v : x) sq += static_cast<double>(v - mu) * static_cast<double>(v - mu);
      // m = 1: √0 in the denominator gives Inf, and templar then takes scale 1.
      const double sd = std::sqrt(sq) / std::sqrt(static_cast<double>(m - 1));
      const double sc = sigmas_ * sd / static_cast<double>(nb);
      const float s =
          (sc == 0 || !std::isfinite(sc) || !std::isfinite(static_cast<float>(sc))) ? 1.0f : static_cast<float>(sc);
      const float offset = static_cast<float>(nb / 2), top = static_cast<float>(nb - 1);
      std::uint8_t* pk = packed.as<std::uint8_t>().data();
      std::vector<double> sums(static_cast<std::size_t>(nb), 0.0);
      std::vector<std::int64_t> counts(static_cast<std::size_t>(nb), 0);
      for (std::int64_t i = 0; i < m; ++i) {
        const float c = x[i] - mu;
        const float q = std::clamp(std::nearbyint(c / s + offset), 0.0f, top);  // halves to even
        const auto code = static_cast<std::uint32_t>(q);
        sums[code] += c;
        ++counts[code];
        pk[i * bits_ / 8] = static_cast<std::uint8_t>(pk[i * bits_ / 8] | (code << ((i * bits_) % 8)));
      }
      float* t = table.f32().data();
      for (std::int64_t b = 0; b < nb; ++b)
        t[b] = counts[b] > 0 ? static_cast<float>(sums[b] / static_cast<double>(counts[b])) : 0.0f;
      shift.f32()[0] = mu;
    }
    out.emplace_back("packed", std::move(packed));
    out.emplace_back("table", std::move(table));
    out.emplace_back("shift", std::move(shift));
  }

  void decode(const DatasetLookup& get, const Shape&, const RandomKey&, std::span<float> out) const override {
    const std::int64_t m = static_cast<std::int64_t>(out.size()), nb = bins();
    const std::uint8_t* pk =
        expect(get, "packed", ceil_div(m * bits_, 8), DType::U8, "quant").as<std::uint8_t>().data();
    const float* t = expect(get, "table", nb, DType::F32, "quant").f32().data();
    const float mu = expect(get, "shift", 1, DType::F32, "quant").f32()[0];
    const std::uint32_t mask = static_cast<std::uint32_t>(nb - 1);
    for (std::int64_t i = 0; i < m; ++i) out[i] = t[(pk[i * bits_ / 8] >> ((i * bits_) % 8)) & mask] + mu;
  }

 private:
  int bits_ = 2;
  double sigmas_ = 6.0;
};

}  // namespace

std::unique_ptr<Stage> make_quant_templar_stage(const StageSpec& s) { return std::make_unique<QuantTemplarStage>(s); }

}  // namespace loco::compress
