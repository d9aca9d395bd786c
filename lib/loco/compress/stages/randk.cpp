// The randk stage: k positions drawn from the shared random stream (the same on every worker).
#include <algorithm>
#include <limits>
#include <unordered_set>

#include "loco/compress/detail/stage.hpp"
#include "loco/core/error.hpp"
#include "loco/core/rng.hpp"

namespace loco::compress {
namespace {

using namespace detail;

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
    Spec p = stage_params(s);
    if (p.has("k") && p.has("density")) throw_error(ErrorKind::Usage, "codec randk: give k or density, not both");
    k_ = p.integer("k", 0, 1, std::numeric_limits<std::int64_t>::max());
    density_ = k_ > 0 ? 0.0 : p.real("density", 0.01, Range::between(0.0, 1.0, true));
    rescale_ = p.choice("rescale", "false", {"true", "false"}) == "true";
    p.done();
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
  void encode(std::span<const float> x, const Shape&, const RandomKey& key, TensorState*,
              Datasets& out) const override {
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

}  // namespace

std::unique_ptr<Stage> make_randk_stage(const StageSpec& s) { return std::make_unique<RandkStage>(s); }

}  // namespace loco::compress
