// The qsgd stage: QSGD stochastic quantization to signed levels of each bucket's max or L2 norm.
#include <algorithm>
#include <cmath>

#include "loco/compress/detail/parallel.hpp"
#include "loco/compress/detail/stage.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"

namespace loco::compress {
namespace {

using namespace detail;

class QsgdStage final : public Stage {
 public:
  explicit QsgdStage(const StageSpec& s) {
    Spec p = stage_params(s);
    levels_ = p.integer("levels", 127, 1, 32767);
    bucket_ = p.integer("bucket", 512, 4, std::int64_t{1} << 40);
    if (bucket_ % 4 != 0) throw_error(ErrorKind::Usage, "codec qsgd: bucket={} is not a multiple of 4", bucket_);
    l2_ = p.choice("norm", "max", {"max", "l2"}) == "l2";
    p.done();
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
          const float l =
              std::min(static_cast<float>(static_cast<std::int32_t>(std::min(std::fabs(xb[i]) * mul, s) + u)), s);
          code[i0 + i] = static_cast<T>(std::signbit(xb[i]) ? -l : l);
        }
      }
    });
  }
  void encode(std::span<const float> x, const Shape&, const RandomKey& key, TensorState*,
              Datasets& out) const override {
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
        if (c > levels_ || c < -levels_)
          throw_error(ErrorKind::BadInput, "codec qsgd: level {} outside ±{}", c, levels_);
      decode_as(code.as<std::int8_t>().data(), norm, out);
    } else {
      for (auto c : code.as<std::int16_t>())
        if (c > levels_ || c < -levels_)
          throw_error(ErrorKind::BadInput, "codec qsgd: level {} outside ±{}", c, levels_);
      decode_as(code.as<std::int16_t>().data(), norm, out);
    }
  }

 private:
  std::int64_t levels_ = 127;
  std::int64_t bucket_ = 512;
  bool l2_ = false;
};

}  // namespace

std::unique_ptr<Stage> make_qsgd_stage(const StageSpec& s) { return std::make_unique<QsgdStage>(s); }

}  // namespace loco::compress
