// The stage registry (make_stage, codec_names) and what the stages' files share (detail/stage.hpp).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "loco/compress/detail/stage.hpp"
#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"

namespace loco::compress {
namespace {

// Every codec: its name in a SPEC and its factory, in the order the help lists them.
struct Entry {
  const char* name;
  std::unique_ptr<Stage> (*make)(const StageSpec&);
};
constexpr Entry kStages[] = {
    {"cast", make_cast_stage},         {"topk", make_topk_stage},     {"randk", make_randk_stage},
    {"quant", make_quant_stage},       {"sign", make_sign_stage},     {"qsgd", make_qsgd_stage},
    {"dct_topk", make_dct_topk_stage}, {"sketch", make_sketch_stage}, {"powersgd", make_powersgd_stage},
    {"terngrad", make_terngrad_stage},
};

}  // namespace

const std::vector<std::string>& codec_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const Entry& e : kStages) n.emplace_back(e.name);
    return n;
  }();
  return names;
}

std::unique_ptr<Stage> make_stage(const StageSpec& s) {
  for (const Entry& e : kStages)
    if (s.name == e.name) return e.make(s);
  throw_error(ErrorKind::Usage, "unknown codec '{}' (known: {})", s.name, fmt::join(codec_names(), ", "));
}

Tensor Stage::inverse(Tensor, const Shape&) const {
  throw_error(ErrorKind::Internal, "codec {} has no coefficient domain to invert", name());
}

namespace detail {

Spec stage_params(const StageSpec& s) { return Spec(format_spec({s}), "codec"); }

std::string real_text(double v) { return fmt::format("{}", v); }

const Tensor& expect(const DatasetLookup& get, std::string_view name, std::int64_t n, DType want,
                     std::string_view codec) {
  const Tensor& t = get(name);
  if (t.dtype() != want || t.numel() != n)
    throw_error(ErrorKind::BadInput, "codec {}: dataset '{}' is {} of {} elements, expected {} of {}", codec, name,
                dtype_name(t.dtype()), t.numel(), dtype_name(want), n);
  return t;
}

Rng rng_at(std::uint64_t seed, std::uint64_t stream, std::int64_t i) {
  Rng r(seed, stream);
  r.seek_block(static_cast<std::uint64_t>(i) / 4);
  for (std::int64_t s = 0; s < i % 4; ++s) r.next_u32();
  return r;
}

}  // namespace detail
}  // namespace loco::compress
