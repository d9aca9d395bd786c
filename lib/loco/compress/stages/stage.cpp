// The stage registry (make_stage, codec_names) and what the stages' files share (detail/stage.hpp).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <exception>

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
    {"cast", make_cast_stage},         {"topk", make_topk_stage},   {"randk", make_randk_stage},
    {"quant", make_quant_stage},       {"sign", make_sign_stage},   {"qsgd", make_qsgd_stage},
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

namespace detail {

const std::string* Params::raw(std::string_view key) {
  for (std::size_t i = 0; i < s_.params.size(); ++i)
    if (s_.params[i].first == key) {
      used_[i] = true;
      return &s_.params[i].second;
    }
  return nullptr;
}

bool Params::has(std::string_view key) const {
  for (const auto& p : s_.params)
    if (p.first == key) return true;
  return false;
}

std::int64_t Params::integer(std::string_view key, std::int64_t def, std::int64_t lo, std::int64_t hi) {
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

double Params::real(std::string_view key, double def, double lo, double hi) {
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

std::string Params::choice(std::string_view key, std::string def, std::initializer_list<std::string_view> allowed) {
  const std::string* v = raw(key);
  if (v == nullptr) return def;
  for (auto a : allowed)
    if (*v == a) return *v;
  std::string list;
  for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  throw_error(ErrorKind::Usage, "codec {}: {}={} is not one of {}", s_.name, key, *v, list);
}

void Params::finish() const {
  for (std::size_t i = 0; i < used_.size(); ++i)
    if (!used_[i]) throw_error(ErrorKind::Usage, "codec {}: unknown parameter '{}'", s_.name, s_.params[i].first);
}

std::string real_text(double v) { return fmt::format("{}", v); }

const Tensor& expect(const DatasetLookup& get, std::string_view name, std::int64_t n, DType want, std::string_view codec) {
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
