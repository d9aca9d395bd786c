// SPEC parsing, codec chains (a sparsifier then a value codec), and compressed loco files written
// and read one tensor at a time.
#include "loco/compress/codec.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_reduce.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <filesystem>
#include <optional>

#include "loco/compress/detail/stage.hpp"
#include "loco/compress/encoded_file.hpp"
#include "loco/compress/feedback.hpp"
#include "loco/core/checksum.hpp"
#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/core/spec.hpp"
#include "loco/core/rng.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::compress {
namespace {

constexpr std::uint64_t kStageStreamTag = 0x636f646563ull;  // "codec"

// The random key of stage i of a chain: stage 0 uses the tensor's streams, later stages streams
// of their own, so a value stage never reuses the sparsifier's numbers.
RandomKey stage_key(const RandomKey& k, std::size_t i) {
  if (i == 0) return k;
  return {k.seed, stream_id({kStageStreamTag, k.stream, i}), stream_id({kStageStreamTag, k.shared_stream, i})};
}

}  // namespace

void require_finite(std::span<const float> x) {
  const std::int64_t n = static_cast<std::int64_t>(x.size());
  const std::int64_t first_bad = tbb::parallel_reduce(
      tbb::blocked_range<std::int64_t>(0, n, 1 << 16), n,
      [&](const tbb::blocked_range<std::int64_t>& r, std::int64_t best) {
        // A branch-free scan (vectorizes) and, only when it finds one, the search for the first.
        std::uint32_t any = 0;
        for (std::int64_t i = r.begin(); i < r.end(); ++i)
          any |= (std::bit_cast<std::uint32_t>(x[i]) & 0x7F800000u) == 0x7F800000u;
        if (any == 0) return best;
        for (std::int64_t i = r.begin(); i < r.end(); ++i)
          if ((std::bit_cast<std::uint32_t>(x[i]) & 0x7F800000u) == 0x7F800000u) return std::min(i, best);
        return best;
      },
      [](std::int64_t a, std::int64_t b) { return std::min(a, b); });
  if (first_bad < n)
    throw_error(ErrorKind::Numeric, "element {} is {}; codecs accept finite values only", first_bad, x[first_bad]);
}

namespace {

std::int64_t as_int64(std::uint64_t v) { return std::bit_cast<std::int64_t>(v); }
std::uint64_t as_uint64(std::int64_t v) { return std::bit_cast<std::uint64_t>(v); }

}  // namespace

std::optional<Shape> recorded_shape(const Attributes& a) {
  const auto* attr = a.find("shape");
  const auto* v = attr ? std::get_if<std::vector<std::int64_t>>(attr) : nullptr;
  const auto rank = a.get_int("ndim");
  if (v && rank && *rank == static_cast<std::int64_t>(v->size())) {
    Shape s(v->begin(), v->end());
    try {
      shape_numel(s);
    } catch (const Error&) {
      return std::nullopt;
    }
    return s;
  }
  if (!v && rank && *rank == 0) return Shape{};
  return std::nullopt;
}

std::string format_spec(const std::vector<StageSpec>& stages) {
  std::string out;
  for (const auto& st : stages) {
    if (!out.empty()) out += '+';
    out += st.name;
    for (std::size_t i = 0; i < st.params.size(); ++i)
      out += (i == 0 ? ":" : ",") + st.params[i].first + "=" + st.params[i].second;
  }
  return out;
}

std::vector<StageSpec> parse_spec(std::string_view spec) {
  std::vector<StageSpec> stages;
  for (const Spec& s : parse_spec_chain(spec, "codec")) stages.push_back({s.name(), s.params()});
  return stages;
}

RandomKey random_key(std::uint64_t seed, std::int64_t round, std::int64_t worker, std::string_view tensor) {
  const std::uint64_t name = xxh64(std::as_bytes(std::span(tensor.data(), tensor.size())));
  RandomKey k;
  k.seed = seed;
  k.stream = stream_id({kStageStreamTag, as_uint64(round), as_uint64(worker), name});
  k.shared_stream = stream_id({kStageStreamTag, as_uint64(round), name});
  return k;
}

const Tensor* TensorState::find(std::string_view slot) const {
  for (const auto& [n, t] : slots)
    if (n == slot) return &t;
  return nullptr;
}

void TensorState::set(std::string_view slot, Tensor t) {
  for (auto& [n, old] : slots)
    if (n == slot) {
      old = std::move(t);
      return;
    }
  slots.emplace_back(std::string(slot), std::move(t));
}

std::int64_t Encoded::payload_bytes() const {
  std::int64_t n = 0;
  for (const auto& [name, t] : datasets) n += static_cast<std::int64_t>(t.nbytes());
  return n;
}

const Tensor& Encoded::get(std::string_view name) const {
  for (const auto& [n, t] : datasets)
    if (n == name) return t;
  throw_error(ErrorKind::BadInput, "compressed tensor ({} codec) has no dataset '{}'",
              attrs.get_string("codec").value_or("unknown"), name);
}

Codec::Codec() = default;
Codec::Codec(Codec&&) noexcept = default;
Codec& Codec::operator=(Codec&&) noexcept = default;
Codec::~Codec() = default;

Codec Codec::parse(std::string_view spec) {
  Codec c;
  const auto specs = parse_spec(spec);
  for (const auto& s : specs) c.stages_.push_back(make_stage(s));
  if (c.stages_.size() > 2)
    throw_error(ErrorKind::Usage, "codec spec '{}': at most two stages (a sparsifier, then a value codec)", spec);
  if (c.stages_.size() == 2) {
    if (!c.stages_[0]->sparsifier())
      throw_error(ErrorKind::Usage,
                  "codec spec '{}': only a sparsifier (topk, randk, dct_topk) can be followed by another stage", spec);
    if (c.stages_[1]->sparsifier())
      throw_error(ErrorKind::Usage,
                  "codec spec '{}': {} cannot encode the values of {}; use cast, quant, sign, qsgd or terngrad", spec,
                  c.stages_[1]->name(), c.stages_[0]->name());
  }
  std::vector<StageSpec> canonical;
  for (const auto& st : c.stages_) canonical.push_back({std::string(st->name()), st->canonical()});
  c.spec_ = format_spec(canonical);
  return c;
}

Selection Codec::selection() const {
  if (!stages_[0]->sparsifier()) return Selection::All;
  return stages_[0]->keeps_coefficients() ? Selection::Coefficients : Selection::Elements;
}

std::optional<CoefficientDomain> Codec::coefficient_domain(const Shape& shape) const {
  auto c = stages_[0]->coefficients(shape);
  if (!c) return std::nullopt;
  const StageSpec transform{std::string(stages_[0]->name()), stages_[0]->canonical()};
  CoefficientDomain d;
  d.stage_ = make_stage(transform);
  d.shape_ = shape;
  d.transform_ = format_spec({transform});
  d.size_ = c->size;
  d.identity_ = std::move(c->identity);
  return d;
}

Tensor CoefficientDomain::inverse(Tensor coef) const { return stage_->inverse(std::move(coef), shape_); }

bool Codec::stateful() const {
  return std::any_of(stages_.begin(), stages_.end(), [](const auto& st) { return st->stateful(); });
}

std::string Codec::name() const {
  std::string n;
  for (const auto& st : stages_) n += (n.empty() ? "" : "+") + std::string(st->name());
  return n;
}

std::vector<DatasetLayout> Codec::layout(const Shape& shape) const {
  std::vector<DatasetLayout> out = stages_[0]->layout(shape);
  if (stages_.size() == 2) {
    const auto it = std::find_if(out.begin(), out.end(), [](const DatasetLayout& l) { return l.name == "values"; });
    const std::int64_t m = it->shape[0];
    out.erase(it);
    for (auto& l : stages_[1]->layout({m})) out.push_back(std::move(l));
  }
  return out;
}

Encoded Codec::encode(const Tensor& x, const RandomKey& key, DType decoded_dtype, std::string_view what,
                      TensorState* state) const {
  const std::span<const float> v = x.f32();
  // Numerical failures name the tensor: "what: element 12 is nan; ...".
  const auto named = [&](auto&& f) {
    try {
      f();
    } catch (const Error& err) {
      if (err.kind() != ErrorKind::Numeric) throw;
      throw_error(ErrorKind::Numeric, "{}: {}", what, err.what());
    }
  };
  if (!stages_[0]->screens_finite()) named([&] { require_finite(v); });
  Encoded e;
  e.attrs.set("codec", name());
  e.attrs.set("spec", spec_);
  e.attrs.set("codec_version", std::int64_t{1});
  // HDF5 has no empty array attribute: a rank-0 tensor records ndim = 0 and no shape.
  e.attrs.set("ndim", static_cast<std::int64_t>(x.rank()));
  if (x.rank() > 0) e.attrs.set("shape", std::vector<std::int64_t>(x.shape().begin(), x.shape().end()));
  e.attrs.set("dtype", std::string(dtype_name(decoded_dtype)));
  e.attrs.set("d", x.numel());
  e.attrs.set("seed", as_int64(key.seed));
  e.attrs.set("stream", as_int64(key.stream));
  e.attrs.set("shared_stream", as_int64(key.shared_stream));
  Attributes params;
  for (std::size_t i = 0; i < stages_.size(); ++i)
    stages_[i]->record(params, i == 0 ? std::string() : std::string(stages_[i]->name()) + ".");
  for (const auto& p : params) {
    if (e.attrs.contains(p.name) || p.name == "raw_bytes" || p.name == "payload_bytes")
      throw_error(ErrorKind::Internal, "codec {}: parameter attribute '{}' collides with a reserved one", spec_,
                  p.name);
    e.attrs.set(p.name, p.value);
  }
  named([&] { stages_[0]->encode(v, x.shape(), stage_key(key, 0), state, e.datasets); });
  if (stages_.size() == 2) {
    const auto it =
        std::find_if(e.datasets.begin(), e.datasets.end(), [](const auto& p) { return p.first == "values"; });
    const Tensor values = std::move(it->second);
    e.datasets.erase(it);
    stages_[1]->encode(values.f32(), values.shape(), stage_key(key, 1), state, e.datasets);
  }
  // templar's accounting (detail/stage.hpp): the indices, plus float32 values or the value stage's bytes.
  std::optional<std::int64_t> templar =
      stages_[0]->sparsifier() ? stages_[0]->templar_bytes(e.datasets, x.shape()) : std::nullopt;
  if (templar && stages_.size() == 1) *templar += static_cast<std::int64_t>(e.get("values").nbytes());
  if (templar && stages_.size() == 2) {
    const auto vb = stages_[1]->templar_bytes(e.datasets, {e.get("indices").numel()});
    templar = vb ? std::optional(*templar + *vb) : std::nullopt;
  }
  if (templar) e.attrs.set("templar_bytes", *templar);
  return e;
}

namespace {

// The codec, shape and key an encoding records; Error(BadInput) when they are missing or unusable.
Codec recorded_codec(const Encoded& e, Shape& shape, RandomKey& key) {
  const auto spec = e.attrs.get_string("spec");
  const auto seed = e.attrs.get_int("seed"), stream = e.attrs.get_int("stream"),
             shared = e.attrs.get_int("shared_stream");
  if (!spec || !seed || !stream || !shared)
    throw_error(ErrorKind::BadInput, "compressed tensor without its spec, seed, stream and shared_stream attributes");
  const auto s = recorded_shape(e.attrs);
  if (!s) throw_error(ErrorKind::BadInput, "compressed tensor without consistent ndim and shape attributes");
  shape = *s;
  key = {as_uint64(*seed), as_uint64(*stream), as_uint64(*shared)};
  try {
    return Codec::parse(*spec);
  } catch (const Error& err) {
    throw_error(ErrorKind::BadInput, "compressed tensor with an unusable spec: {}", err.what());
  }
}

}  // namespace

Tensor Codec::decode_as(const Encoded& e, const Shape& shape, const RandomKey& key, Domain domain, bool mask) const {
  // In the coefficient domain the first stage is the sparsifier that reads the transform's datasets
  // as a sparse vector over the coefficients (the same layout); any value stage is unchanged.
  const Stage* first = stages_[0].get();
  std::unique_ptr<Stage> sparse;
  Shape dshape = shape;
  if (domain == Domain::Coefficients) {
    auto c = first->coefficients(shape);
    if (!c) throw_error(ErrorKind::BadInput, "codec {} keeps no coefficients of a transform", spec_);
    sparse = make_stage(c->sparse);
    first = sparse.get();
    dshape = {c->size};
  } else if (mask && first->keeps_coefficients()) {
    throw_error(ErrorKind::Usage, "codec {} selects coefficients: its selection mask is over its coefficient domain",
                spec_);
  }
  const DatasetLookup lookup = [&](std::string_view n) -> const Tensor& { return e.get(n); };
  // The number of values the first stage writes (a chain's value stage encodes them).
  const auto values_of = [&] {
    const auto lay = first->layout(dshape);
    const auto it = std::find_if(lay.begin(), lay.end(), [](const DatasetLayout& l) { return l.name == "values"; });
    return it->shape[0];
  };
  // Every stage writes all elements of out (sparsifiers zero the rest themselves).
  Tensor out = Tensor::uninitialized(dshape);
  if (mask) {
    if (!first->sparsifier()) return Tensor();
    Tensor ones = Tensor::uninitialized({values_of()});
    std::fill(ones.f32().begin(), ones.f32().end(), 1.0f);
    const DatasetLookup with_ones = [&](std::string_view n) -> const Tensor& {
      return n == "values" ? ones : e.get(n);
    };
    first->decode(with_ones, dshape, key, out.f32());
    return out;
  }
  if (stages_.size() == 1) {
    first->decode(lookup, dshape, key, out.f32());
    return out;
  }
  // A chain: decode the values first, then the sparsifier with them.
  Tensor values = Tensor::uninitialized({values_of()});
  stages_[1]->decode(lookup, values.shape(), stage_key(key, 1), values.f32());
  const DatasetLookup chained = [&](std::string_view n) -> const Tensor& { return n == "values" ? values : e.get(n); };
  first->decode(chained, dshape, key, out.f32());
  return out;
}

Tensor decode(const Encoded& e) { return decode(e, Domain::Tensor); }

Tensor decode(const Encoded& e, Domain domain) {
  Shape shape;
  RandomKey key;
  const Codec c = recorded_codec(e, shape, key);
  return c.decode_as(e, shape, key, domain, false);
}

Tensor selection_mask(const Encoded& e, Domain domain) {
  Shape shape;
  RandomKey key;
  const Codec c = recorded_codec(e, shape, key);
  return c.decode_as(e, shape, key, domain, true);
}

std::vector<std::string> encoded_tensor_names(const io::TensorSource& src) {
  std::vector<std::string> names;
  for (const auto& t : src.tensors()) {
    if (t.group.rfind("tensors/", 0) != 0) continue;
    const std::string n = t.group.substr(8);
    if (names.empty() || names.back() != n)
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  return names;
}

Encoded read_encoded(const io::TensorSource& src, std::string_view name) {
  const std::string group = "tensors/" + std::string(name);
  Encoded e;
  e.attrs = src.group_attributes(group);
  if (!e.attrs.contains("codec"))
    throw_error(ErrorKind::BadInput, "{}: /{} is not a compressed tensor (no codec attribute)", src.path(), group);
  for (const io::TensorInfo* t : src.group(group)) e.datasets.emplace_back(t->name, src.read(*t));
  return e;
}

namespace {

// Reads the per-tensor codec states of a state file (/state/<slot>/<tensor>); empty when the
// file does not exist yet.
std::vector<std::pair<std::string, TensorState>> read_states(const io::TensorSource& source);

std::vector<std::pair<std::string, TensorState>> read_states(const std::string& path) {
  if (!std::filesystem::exists(path)) return {};
  auto src = io::open_source(path, /*register_input=*/false);
  return read_states(*src);
}

// Reads an error-feedback state file when it exists, refusing one of another model, worker or kind.
std::vector<std::pair<std::string, TensorState>> read_feedback_states(const std::string& path,
                                                                      const io::TensorSource& in, std::int64_t worker,
                                                                      const Feedback& fb) {
  if (!std::filesystem::exists(path)) return {};
  auto src = io::open_source(path, /*register_input=*/false);
  const auto& a = src->attributes();
  if (a.get_string("feedback").value_or("") != fb.spec())
    throw_error(ErrorKind::BadInput, "{}: error-feedback state of kind '{}', expected '{}'", path,
                a.get_string("feedback").value_or("none"), fb.spec());
  const std::string mine = io::model_config(in), theirs = io::model_config(*src);
  if (mine != theirs)
    throw_error(ErrorKind::BadInput, "{}: error-feedback state of another model (model_config {}, the input {} has {})",
                path, theirs.empty() ? "absent" : theirs, in.path(), mine.empty() ? "none" : mine);
  const auto w = a.get_int("worker");
  if (!w || *w != worker)
    throw_error(ErrorKind::BadInput, "{}: error-feedback state of worker {}, the input {} is worker {}", path,
                w ? std::to_string(*w) : "unknown", in.path(), worker);
  return read_states(*src);
}

std::vector<std::pair<std::string, TensorState>> read_states(const io::TensorSource& source) {
  std::vector<std::pair<std::string, TensorState>> states;
  const io::TensorSource* src = &source;
  io::expect_kind(*src, {io::Kind::State});
  for (const auto& t : src->tensors()) {
    if (t.group.rfind("state/", 0) != 0 || t.dtype != DType::F32) continue;
    const std::string slot = t.group.substr(6);
    auto it = std::find_if(states.begin(), states.end(), [&](const auto& s) { return s.first == t.name; });
    if (it == states.end()) it = states.insert(states.end(), {t.name, TensorState{}});
    it->second.set(slot, src->read(t));
  }
  return states;
}

void write_states(const std::string& path, std::int64_t round, const std::string& codec,
                  const std::vector<std::pair<std::string, TensorState>>& states, const Attributes& extra = {}) {
  std::vector<io::TensorInfo> plan;
  std::vector<const Tensor*> data;
  for (const auto& [name, st] : states)
    for (const auto& [slot, t] : st.slots) {
      io::TensorInfo o;
      o.group = "state/" + slot;
      o.name = name;
      o.shape = t.shape();
      plan.push_back(std::move(o));
      data.push_back(&t);
    }
  Attributes root;
  root.set("kind", std::string("state"));
  root.set("round", round);
  root.set("codec", codec);
  for (const auto& a : extra) root.set(a.name, a.value);
  auto sink = io::create_sink(path, io::Format::Loco, root, plan);
  for (std::size_t i = 0; i < data.size(); ++i) sink->write(i, *data[i]);
  sink->commit();
}

}  // namespace

CompressSummary compress_file(const std::string& in, const std::string& out, const Codec& codec, std::uint64_t seed,
                              const std::string& state_path, const Feedback* feedback,
                              const std::string& feedback_path) {
  if ((feedback != nullptr) != !feedback_path.empty()) throw_error(ErrorKind::Usage, "--ef and --ef-state go together");
  if (!feedback_path.empty() && (feedback_path == "-" || feedback_path == out || feedback_path == state_path))
    throw_error(ErrorKind::Usage, "--ef-state: {} cannot be the output, the codec state or '-'", feedback_path);
  if (!state_path.empty() && !codec.stateful())
    throw_error(ErrorKind::Usage, "--state: codec {} keeps no state", codec.name());
  if (!state_path.empty() && (state_path == "-" || state_path == out))
    throw_error(ErrorKind::Usage, "--state: {} cannot be the output or '-'", state_path);
  auto src = io::open_source(in);
  const io::Kind kind = io::file_kind(*src);
  if (kind == io::Kind::Compressed) throw_error(ErrorKind::BadInput, "{}: is already compressed", in);
  if (kind == io::Kind::Data)
    throw_error(ErrorKind::BadInput, "{}: is a data file; compress a delta or model file", in);
  const auto tensors = src->group("tensors");
  const std::int64_t round = src->attributes().get_int("round").value_or(0);
  const std::int64_t worker = src->attributes().get_int("worker").value_or(0);
  auto states = state_path.empty() ? std::vector<std::pair<std::string, TensorState>>{} : read_states(state_path);
  auto fb_states = feedback ? read_feedback_states(feedback_path, *src, worker, *feedback)
                            : std::vector<std::pair<std::string, TensorState>>{};
  // The codec of this round: DGC's warm-up lowers the density of the first rounds.
  std::optional<Codec> round_codec;
  if (feedback) round_codec.emplace(feedback->codec_for_round(codec, round));
  const Codec& cd = round_codec ? *round_codec : codec;

  std::vector<io::TensorInfo> plan;
  for (const io::TensorInfo* t : tensors) {
    if (!is_floating(t->dtype))
      throw_error(ErrorKind::BadInput, "{}: tensor {} is {}; codecs take floating-point tensors", in, t->name,
                  dtype_name(t->dtype));
    for (const auto& l : cd.layout(t->shape)) {
      io::TensorInfo o;
      o.group = "tensors/" + t->name;
      o.name = l.name;
      o.shape = l.shape;
      o.dtype = l.dtype;
      plan.push_back(std::move(o));
    }
  }
  if (src->tensors().size() != tensors.size())
    log::warn("{}: only /tensors is compressed; {} tensors in other groups are left out", in,
              src->tensors().size() - tensors.size());

  Attributes root;
  for (const auto& a : src->attributes())
    if (a.name != "loco_format" && a.name != "loco_version" && a.name != "producer" && a.name != "created" &&
        a.name != "kind")
      root.set(a.name, a.value);
  root.set("kind", std::string("compressed"));
  root.set("source_kind", std::string(io::kind_name(kind)));
  root.set("codec", cd.spec());
  if (feedback) root.set("feedback", feedback->spec());
  auto sink = io::create_sink(out, io::Format::Loco, root, plan);

  CompressSummary sum;
  std::size_t index = 0;
  for (const io::TensorInfo* t : tensors) {
    const Tensor x = src->read(*t, DType::F32);
    const std::string what = fmt::format("{}: tensor {}", in, t->name);
    TensorState* st = nullptr;
    if (!state_path.empty()) {
      auto it = std::find_if(states.begin(), states.end(), [&](const auto& s) { return s.first == t->name; });
      if (it == states.end()) it = states.insert(states.end(), {t->name, TensorState{}});
      st = &it->second;
    }
    const RandomKey key = random_key(seed, round, worker, t->name);
    Encoded e;
    if (feedback) {
      auto it = std::find_if(fb_states.begin(), fb_states.end(), [&](const auto& s) { return s.first == t->name; });
      if (it == fb_states.end()) it = fb_states.insert(fb_states.end(), {t->name, TensorState{}});
      const Tensor p = feedback->input(x, it->second, what);
      e = cd.encode(p, key, t->dtype, what, st);
      feedback->update(p, decode(e), it->second);
    } else {
      e = cd.encode(x, key, t->dtype, what, st);
    }
    const std::string group = "tensors/" + t->name;
    for (const auto& a : e.attrs) sink->set_group_attribute(group, a.name, a.value);
    sink->set_group_attribute(group, "raw_bytes", static_cast<std::int64_t>(t->numel() * dtype_size(t->dtype)));
    sink->set_group_attribute(group, "payload_bytes", e.payload_bytes());
    for (const auto& [name, data] : e.datasets) sink->write(index++, data);
    sum.raw_bytes += t->numel() * static_cast<std::int64_t>(dtype_size(t->dtype));
    sum.payload_bytes += e.payload_bytes();
    const auto tb = e.attrs.get_int("templar_bytes");
    sum.templar_bytes = tb && (sum.tensors == 0 || sum.templar_bytes)
                            ? std::optional(sum.templar_bytes.value_or(0) + *tb)
                            : std::nullopt;
    ++sum.tensors;
  }
  sink->set_attribute("raw_bytes", sum.raw_bytes);
  sink->set_attribute("payload_bytes", sum.payload_bytes);
  if (sum.templar_bytes) sink->set_attribute("templar_bytes", *sum.templar_bytes);
  sink->commit();
  // The output first, then the state: a crash in between leaves the old state, and a rerun then
  // writes the same output again.
  if (!state_path.empty()) write_states(state_path, round + 1, codec.spec(), states);
  if (feedback) {
    Attributes extra;
    extra.set("feedback", feedback->spec());
    extra.set("worker", worker);
    if (const std::string mc = io::model_config(*src); !mc.empty()) extra.set("model_config", mc);
    write_states(feedback_path, round + 1, cd.spec(), fb_states, extra);
  }
  return sum;
}

void decompress_file(const std::string& in, const std::string& out) {
  auto src = io::open_source(in);
  const EncodedReader reader(*src);
  std::vector<io::TensorInfo> plan;
  for (const auto& t : reader.tensors()) {
    io::TensorInfo o;
    o.name = t.name;
    o.shape = t.shape;
    o.dtype = t.dtype;
    plan.push_back(std::move(o));
  }
  Attributes root;
  const std::string source_kind = reader.source_kind().empty() ? "delta" : reader.source_kind();
  const auto k = io::parse_kind(source_kind);
  if (!k || *k == io::Kind::Compressed)
    throw_error(ErrorKind::BadInput, "{}: source_kind '{}' is not a dense kind", in, source_kind);
  for (const auto& a : src->attributes()) {
    static const char* skip[] = {"loco_format", "loco_version", "producer",  "created",      "kind",
                                 "source_kind", "codec",        "raw_bytes", "payload_bytes"};
    if (std::find(std::begin(skip), std::end(skip), a.name) == std::end(skip)) root.set(a.name, a.value);
  }
  root.set("kind", source_kind);
  auto sink = io::create_sink(out, io::Format::Loco, root, plan);
  for (std::size_t i = 0; i < plan.size(); ++i) sink->write(i, reader.decode(plan[i].name).values);
  sink->commit();
}

}  // namespace loco::compress
