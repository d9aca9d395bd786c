// Tensor-parallel split and consolidation of checkpoints by the universal-checkpoint patterns.
#include "loco/io/reshard.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "loco/core/error.hpp"
#include "loco/core/spec.hpp"
#include "loco/core/json.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::io {
namespace {

// How a tensor is cut: along dim of the full view (the tensor reshaped, vocabulary padding
// included), whose extent along dim is the concatenation of subs.
struct Cut {
  int dim = -1;  // -1: replicated
  Shape view;
  std::vector<std::int64_t> subs;
};

bool written_by_sink(const std::string& name) {
  return name == "loco_format" || name == "loco_version" || name == "producer" || name == "created";
}

bool is_tp_attr(const std::string& name) {
  return name == "tp_dim" || name == "tp_subs" || name == "tp_view" || name == "tp_full_shape";
}

Cut cut_of(const TensorInfo& t, const ReshardOptions& opt, const std::vector<std::regex>& rules,
           const std::string& file) {
  const int T = opt.degree;
  auto bad = [&](const std::string& why) -> Cut {
    throw_error(ErrorKind::BadInput, "{}: tensor {} (shape {}): {}", file, t.key(), shape_string(t.shape), why);
  };
  Cut c;
  c.view = t.shape;
  if (const auto sps = t.attrs.get_string("sub_param_shape")) {
    const nlohmann::json j = parse_json(*sps, fmt::format("{}: tensor {}: sub_param_shape", file, t.key()));
    if (!j.is_object() || !j.contains("shape") || !j["shape"].is_array() || !j.contains("partition_dim") ||
        !j["partition_dim"].is_number_integer())
      return bad("sub_param_shape without shape and partition_dim");
    c.view.clear();
    std::vector<std::vector<std::int64_t>> entries;
    for (const auto& d : j["shape"]) {
      std::vector<std::int64_t> e;
      if (d.is_number_integer()) e.push_back(d.get<std::int64_t>());
      else if (d.is_array())
        for (const auto& x : d) {
          if (!x.is_number_integer()) return bad("sub_param_shape entry is not integers");
          e.push_back(x.get<std::int64_t>());
        }
      else return bad("sub_param_shape entry is neither an integer nor a tuple");
      std::int64_t sum = 0;
      for (auto x : e) {
        if (x <= 0) return bad("sub_param_shape sizes must be positive");
        sum += x;
      }
      c.view.push_back(sum);
      entries.push_back(std::move(e));
    }
    const auto pd = j["partition_dim"].get<std::int64_t>();
    if (pd < 0 || pd >= static_cast<std::int64_t>(c.view.size())) return bad("partition_dim outside the shape");
    if (shape_numel(c.view) != t.numel())
      return bad(fmt::format("sub_param_shape {} does not hold its {} elements", shape_string(c.view), t.numel()));
    c.dim = static_cast<int>(pd);
    c.subs = entries[static_cast<std::size_t>(pd)];
  } else {
    const auto n = t.attrs.get_int("param_n_sub_params").value_or(1);
    std::optional<std::int64_t> dim = t.attrs.get_int("cat_dim");
    if (!dim && n <= 1)
      for (std::size_t k = 0; k < rules.size(); ++k)
        if (std::regex_search(t.name, rules[k], std::regex_constants::match_continuous)) {
          dim = opt.rules[k].dim;
          break;
        }
    if (n > 1 && !dim) dim = 0;
    if (!dim || *dim < 0) {
      c.dim = -1;
      return c;
    }
    if (*dim >= static_cast<std::int64_t>(t.shape.size()))
      return bad(fmt::format("cat_dim {} outside the shape", *dim));
    c.dim = static_cast<int>(*dim);
    const std::int64_t size = t.shape[static_cast<std::size_t>(c.dim)];
    if (n < 1 || size % n != 0) return bad(fmt::format("{} sub-parameters do not divide dimension {}", n, c.dim));
    c.subs.assign(static_cast<std::size_t>(n), size / n);
  }
  if (t.attrs.get_int("vocab_tensor").value_or(0) != 0) {
    if (c.dim != 0 || c.subs.size() != 1)
      return bad("vocab_tensor cut along a dimension other than 0 or with sub-parameters");
    const std::int64_t m = opt.vocab_divisible_by * T;
    const std::int64_t padded = (c.view[0] + m - 1) / m * m;
    c.view[0] = padded;
    c.subs = {padded};
  }
  for (auto s : c.subs)
    if (s % T != 0)
      return bad(fmt::format("a size of {} along dimension {} is not divisible by the degree {}", s, c.dim, T));
  return c;
}

// Element counts of the view around dim: outer · extent · inner.
void around(const Cut& c, std::int64_t& outer, std::int64_t& extent, std::int64_t& inner) {
  const auto d = static_cast<std::size_t>(c.dim);
  outer = 1, inner = 1;
  for (std::size_t i = 0; i < d; ++i) outer *= c.view[i];
  for (std::size_t i = d + 1; i < c.view.size(); ++i) inner *= c.view[i];
  extent = c.view[d];
}

// Copies between the full view and rank r's slice; to_slice chooses the direction.
void move_slice(const Cut& c, int T, int r, std::size_t esz, std::byte* full, std::byte* slice, bool to_slice) {
  std::int64_t outer, extent, inner;
  around(c, outer, extent, inner);
  std::size_t o = 0;
  for (std::int64_t i = 0; i < outer; ++i) {
    std::int64_t off = 0;
    for (auto s : c.subs) {
      const std::int64_t piece = s / T;
      const auto n = static_cast<std::size_t>(piece * inner) * esz;
      std::byte* f = full + static_cast<std::size_t>((i * extent + off + r * piece) * inner) * esz;
      if (to_slice) std::memcpy(slice + o, f, n);
      else std::memcpy(f, slice + o, n);
      o += n;
      off += s;
    }
  }
}

Shape slice_shape(const Cut& c, int T) {
  Shape s = c.view;
  std::int64_t e = 0;
  for (auto x : c.subs) e += x / T;
  s[static_cast<std::size_t>(c.dim)] = e;
  return s;
}

void copy_group_attributes(const TensorSource& src, TensorSink& sink, const std::vector<TensorInfo>& plan) {
  std::vector<std::string> groups;
  for (const auto& t : plan)
    for (std::size_t p = t.group.find('/');; p = t.group.find('/', p + 1)) {
      const std::string g = t.group.substr(0, p);
      if (std::find(groups.begin(), groups.end(), g) == groups.end()) groups.push_back(g);
      if (p == std::string::npos) break;
    }
  for (const auto& g : groups)
    for (const auto& e : src.group_attributes(g)) sink.set_group_attribute(g, e.name, e.value);
}

void require_h5(const std::string& path, std::string_view what) {
  if (format_for_output(path) != Format::Loco || path == "-")
    throw_error(ErrorKind::Usage, "{}: {} are written as loco HDF5 files (.h5), which keep the per-tensor attributes",
                path, what);
}

}  // namespace

TpRule parse_tp_rule(const std::string& text) {
  const auto eq = text.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    throw_error(ErrorKind::Usage, "--cat-dim '{}': expected REGEX=DIM or REGEX=replicate", text);
  TpRule r;
  r.pattern = text.substr(0, eq);
  try {
    (void)std::regex(r.pattern);
  } catch (const std::regex_error& e) {
    throw_error(ErrorKind::Usage, "--cat-dim '{}': bad regular expression: {}", text, e.what());
  }
  const std::string d = text.substr(eq + 1);
  if (d == "replicate") return r;
  r.dim = static_cast<int>(
      parse_int(d, fmt::format("--cat-dim '{}': DIM (a dimension 0, 1, ... or 'replicate')", text), 0, 99));
  return r;
}

std::vector<std::string> tp_shard_paths(const std::string& out, int degree) {
  if (degree < 1) throw_error(ErrorKind::Usage, "tensor-parallel degree {} must be at least 1", degree);
  const std::filesystem::path p(out);
  const std::string ext = p.extension().string();
  const std::string stem = out.substr(0, out.size() - ext.size());
  std::vector<std::string> v;
  for (int r = 1; r <= degree; ++r) v.push_back(fmt::format("{}-{:05d}-of-{:05d}{}", stem, r, degree, ext));
  return v;
}

std::vector<std::string> split_tensor_parallel(const std::string& in, const std::string& out,
                                               const ReshardOptions& opt) {
  if (opt.degree < 2) throw_error(ErrorKind::Usage, "--tp {}: the degree must be at least 2", opt.degree);
  require_h5(out, "tensor-parallel shards");
  if (opt.vocab_divisible_by < 1) throw_error(ErrorKind::Usage, "--vocab-divisible-by must be at least 1");
  const int T = opt.degree;
  std::vector<std::regex> rules;
  for (const TpRule& r : opt.rules) {
    try {
      rules.emplace_back(r.pattern);
    } catch (const std::regex_error& e) {
      throw_error(ErrorKind::Usage, "--cat-dim '{}': bad regular expression: {}", r.pattern, e.what());
    }
  }
  auto src = open_source(in);
  std::vector<Cut> cuts;
  std::vector<std::vector<TensorInfo>> plans(static_cast<std::size_t>(T));
  for (const TensorInfo& t : src->tensors()) {
    if (t.group != "tensors" && t.group.rfind("state/", 0) != 0)
      throw_error(ErrorKind::Usage,
                  "{}: tensor {} is neither a parameter nor optimizer state; only checkpoints are resharded", in,
                  t.key());
    Cut c = cut_of(t, opt, rules, in);
    TensorInfo s = t;
    s.attrs.set("tp_dim", std::int64_t{c.dim});
    if (c.dim >= 0) {
      s.attrs.set("tp_subs", c.subs);
      s.attrs.set("tp_view", std::vector<std::int64_t>(c.view.begin(), c.view.end()));
      s.attrs.set("tp_full_shape", std::vector<std::int64_t>(t.shape.begin(), t.shape.end()));
      s.shape = slice_shape(c, T);
    }
    for (auto& p : plans) p.push_back(s);
    cuts.push_back(std::move(c));
  }
  const auto paths = tp_shard_paths(out, T);
  std::vector<std::unique_ptr<TensorSink>> sinks;
  for (int r = 0; r < T; ++r) {
    Attributes root;
    root.set("kind", std::string(kind_name(file_kind(*src))));
    for (const auto& e : src->attributes())
      if (!written_by_sink(e.name) && e.name != "kind" && e.name != "tp_rank" && e.name != "tp_degree")
        root.set(e.name, e.value);
    if (src->format() != "loco" && !root.contains("source_format"))
      root.set("source_format", std::string(src->format()));
    root.set("tp_rank", std::int64_t{r});
    root.set("tp_degree", std::int64_t{T});
    sinks.push_back(
        create_sink(paths[static_cast<std::size_t>(r)], Format::Loco, root, plans[static_cast<std::size_t>(r)]));
    copy_group_attributes(*src, *sinks.back(), plans[static_cast<std::size_t>(r)]);
  }
  std::vector<std::byte> full, slice;
  for (std::size_t i = 0; i < src->tensors().size(); ++i) {
    const TensorInfo& t = src->tensors()[i];
    const Cut& c = cuts[i];
    const std::size_t esz = dtype_size(t.dtype);
    full.assign(static_cast<std::size_t>(shape_numel(c.view)) * esz, std::byte{0});
    // The tensor fills the start of the view (vocabulary padding, rows at the end, stays zero).
    src->read_rows(t, 0, t.rows(), std::span(full.data(), static_cast<std::size_t>(t.numel()) * esz));
    for (int r = 0; r < T; ++r) {
      const TensorInfo& s = plans[static_cast<std::size_t>(r)][i];
      if (c.dim < 0) {
        sinks[static_cast<std::size_t>(r)]->write_rows(
            i, 0, s.rows(), std::span(full.data(), static_cast<std::size_t>(t.numel()) * esz));
        continue;
      }
      slice.resize(static_cast<std::size_t>(s.numel()) * esz);
      move_slice(c, T, r, esz, full.data(), slice.data(), true);
      sinks[static_cast<std::size_t>(r)]->write_rows(i, 0, s.rows(), slice);
    }
  }
  for (auto& s : sinks) s->commit();
  return paths;
}

namespace {

nlohmann::json attrs_to_json(const Attributes& a) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& e : a) std::visit([&](const auto& v) { j[e.name] = v; }, e.value);
  return j;
}

Attributes attrs_from_json(const nlohmann::json& j, const std::string& file) {
  Attributes a;
  for (const auto& [k, v] : j.items()) {
    if (v.is_number_integer()) a.set(k, v.get<std::int64_t>());
    else if (v.is_number_float()) a.set(k, v.get<double>());
    else if (v.is_string()) a.set(k, v.get<std::string>());
    else if (v.is_array() && std::all_of(v.begin(), v.end(), [](const auto& x) { return x.is_number_integer(); }))
      a.set(k, v.get<std::vector<std::int64_t>>());
    else if (v.is_array() && std::all_of(v.begin(), v.end(), [](const auto& x) { return x.is_number(); }))
      a.set(k, v.get<std::vector<double>>());
    else throw_error(ErrorKind::BadInput, "{}: zero_layout: attribute {} is not a number, string or array", file, k);
  }
  return a;
}

constexpr std::string_view kFlat = "zero_flat";

void consolidate_zero(std::vector<std::unique_ptr<TensorSource>>& shards, const std::vector<std::string>& paths,
                      const std::string& out) {
  const TensorSource& s0 = *shards[0];
  const auto D = static_cast<std::int64_t>(shards.size());
  const auto text = s0.attributes().get_string("zero_layout");
  if (!text) throw_error(ErrorKind::BadInput, "{}: no zero_layout attribute", paths[0]);
  for (std::size_t r = 1; r < shards.size(); ++r)
    if (shards[r]->attributes().get_string("zero_layout") != text)
      throw_error(ErrorKind::BadInput, "{}: zero_layout differs from {}'s", paths[r], paths[0]);
  std::vector<TensorInfo> plan;
  std::vector<std::int64_t> offset;  // of each tensor in its group's flat vector
  try {
    const auto j = parse_json(*text, paths[0] + ": zero_layout");
    std::map<std::string, std::int64_t> used;
    for (const auto& e : j) {
      TensorInfo t;
      t.group = e.at("group").get<std::string>();
      t.name = e.at("name").get<std::string>();
      t.shape = e.at("shape").get<Shape>();
      const auto dt = parse_dtype(e.at("dtype").get<std::string>());
      if (!dt) throw_error(ErrorKind::BadInput, "{}: zero_layout: unknown dtype", paths[0]);
      t.dtype = *dt;
      t.attrs = attrs_from_json(e.at("attrs"), paths[0]);
      for (auto d : t.shape)
        if (d < 0) throw_error(ErrorKind::BadInput, "{}: zero_layout: negative dimension", paths[0]);
      offset.push_back(used[t.group]);
      used[t.group] += t.numel();
      plan.push_back(std::move(t));
    }
    for (const auto& [g, n] : used)
      for (std::size_t r = 0; r < shards.size(); ++r) {
        const TensorInfo* f = shards[r]->find(kFlat, g);
        const std::int64_t part = (n + D - 1) / D;
        if (f == nullptr || f->shape != Shape{part})
          throw_error(ErrorKind::BadInput, "{}: {}/{} missing or not of {} elements", paths[r], g, kFlat, part);
      }
  } catch (const nlohmann::json::exception& e) {
    throw_error(ErrorKind::BadInput, "{}: zero_layout is not the layout JSON: {}", paths[0], excerpt(e.what()));
  }
  Attributes root;
  root.set("kind", std::string(kind_name(file_kind(s0))));
  for (const auto& e : s0.attributes())
    if (!written_by_sink(e.name) && e.name != "kind" && e.name != "zero_rank" && e.name != "zero_degree" &&
        e.name != "zero_layout")
      root.set(e.name, e.value);
  auto sink = create_sink(out, Format::Loco, root, plan);
  copy_group_attributes(s0, *sink, plan);
  std::vector<std::byte> buf;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const TensorInfo& t = plan[i];
    const std::size_t esz = dtype_size(t.dtype);
    buf.resize(static_cast<std::size_t>(t.numel()) * esz);
    std::int64_t pos = offset[i], done = 0;
    while (done < t.numel()) {
      const TensorInfo& f = *shards[0]->find(kFlat, t.group);
      const std::int64_t part = f.shape[0];
      const auto r = static_cast<std::size_t>(pos / part);
      const TensorInfo& fr = *shards[r]->find(kFlat, t.group);
      if (fr.dtype != t.dtype)
        throw_error(ErrorKind::BadInput, "{}: {}/{} is not {}", paths[r], t.group, kFlat, dtype_name(t.dtype));
      const std::int64_t n = std::min(t.numel() - done, part - pos % part);
      shards[r]->read_rows(
          fr, pos % part, n,
          std::span(buf.data() + static_cast<std::size_t>(done) * esz, static_cast<std::size_t>(n) * esz));
      done += n, pos += n;
    }
    sink->write_rows(i, 0, t.rows(), buf);
  }
  sink->commit();
}

}  // namespace

std::vector<std::string> split_zero(const std::string& in, const std::string& out, int degree) {
  if (degree < 2) throw_error(ErrorKind::Usage, "--zero {}: the degree must be at least 2", degree);
  require_h5(out, "ZeRO flat shards");
  const std::int64_t D = degree;
  auto src = open_source(in);
  // Groups in order of first appearance, each one dtype.
  std::vector<std::string> groups;
  std::map<std::string, std::pair<DType, std::int64_t>> total;
  nlohmann::json layout = nlohmann::json::array();
  for (const TensorInfo& t : src->tensors()) {
    if (t.group != "tensors" && t.group.rfind("state/", 0) != 0)
      throw_error(ErrorKind::Usage,
                  "{}: tensor {} is neither a parameter nor optimizer state; only checkpoints are sharded", in,
                  t.key());
    auto [it, fresh] = total.try_emplace(t.group, t.dtype, 0);
    if (fresh) groups.push_back(t.group);
    if (it->second.first != t.dtype)
      throw_error(ErrorKind::BadInput, "{}: group {} mixes {} and {} ({}): a flat partition holds one dtype", in,
                  t.group, dtype_name(it->second.first), dtype_name(t.dtype), t.name);
    it->second.second += t.numel();
    layout.push_back({{"group", t.group},
                      {"name", t.name},
                      {"shape", t.shape},
                      {"dtype", std::string(dtype_name(t.dtype))},
                      {"attrs", attrs_to_json(t.attrs)}});
  }
  std::vector<TensorInfo> plan;
  for (const auto& g : groups)
    plan.push_back({g, std::string(kFlat), {(total[g].second + D - 1) / D}, total[g].first, {}});
  const auto paths = tp_shard_paths(out, degree);
  std::vector<std::unique_ptr<TensorSink>> sinks;
  for (int r = 0; r < degree; ++r) {
    Attributes root;
    root.set("kind", std::string(kind_name(file_kind(*src))));
    for (const auto& e : src->attributes())
      if (!written_by_sink(e.name) && e.name != "kind" && e.name != "zero_rank" && e.name != "zero_degree" &&
          e.name != "zero_layout")
        root.set(e.name, e.value);
    if (src->format() != "loco" && !root.contains("source_format"))
      root.set("source_format", std::string(src->format()));
    root.set("zero_rank", std::int64_t{r});
    root.set("zero_degree", D);
    root.set("zero_layout", layout.dump());
    sinks.push_back(create_sink(paths[static_cast<std::size_t>(r)], Format::Loco, root, plan));
    copy_group_attributes(*src, *sinks.back(), plan);
  }
  std::vector<std::byte> buf;
  std::map<std::string, std::int64_t> pos;
  for (const TensorInfo& t : src->tensors()) {
    const std::size_t gi = static_cast<std::size_t>(std::find(groups.begin(), groups.end(), t.group) - groups.begin());
    const std::int64_t part = plan[gi].shape[0];
    const std::size_t esz = dtype_size(t.dtype);
    buf.resize(static_cast<std::size_t>(t.numel()) * esz);
    src->read_rows(t, 0, t.rows(), buf);
    std::int64_t& p = pos[t.group];
    for (std::int64_t done = 0; done < t.numel();) {
      const std::int64_t n = std::min(t.numel() - done, part - p % part);
      sinks[static_cast<std::size_t>(p / part)]->write_rows(
          gi, p % part, n,
          std::span(buf.data() + static_cast<std::size_t>(done) * esz, static_cast<std::size_t>(n) * esz));
      done += n, p += n;
    }
  }
  // The padding at the end of the last partitions.
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    const std::int64_t part = plan[gi].shape[0];
    std::int64_t& p = pos[groups[gi]];
    while (p < part * D) {
      const std::int64_t n = part - p % part;
      buf.assign(static_cast<std::size_t>(n) * dtype_size(plan[gi].dtype), std::byte{0});
      sinks[static_cast<std::size_t>(p / part)]->write_rows(gi, p % part, n, buf);
      p += n;
    }
  }
  for (auto& s : sinks) s->commit();
  return paths;
}

void consolidate_tensor_parallel(const std::string& first, const std::string& out) {
  require_h5(out, "consolidated checkpoints");
  static const std::regex kName(R"(^(.*)-(\d{5})-of-(\d{5})(\.[A-Za-z0-9]+)$)");
  std::smatch m;
  if (!std::regex_match(first, m, kName))
    throw_error(ErrorKind::Usage, "{}: expected a shard named <stem>-0000r-of-0000T.h5", first);
  const int T = std::stoi(m[3].str());
  if (T < 1) throw_error(ErrorKind::Usage, "{}: degree 0 in the name", first);
  const auto paths = tp_shard_paths(m[1].str() + m[4].str(), T);
  std::vector<std::unique_ptr<TensorSource>> shards;
  bool zero = false;
  for (int r = 0; r < T; ++r) {
    const std::string& p = paths[static_cast<std::size_t>(r)];
    if (!std::filesystem::exists(p)) throw_error(ErrorKind::BadInput, "{}: shard {} of {} is missing", p, r + 1, T);
    shards.push_back(open_source(p));
    const auto& a = shards.back()->attributes();
    if (r == 0) zero = a.contains("zero_degree");
    const char* kind = zero ? "zero" : "tp";
    if (a.get_int(fmt::format("{}_rank", kind)) != r || a.get_int(fmt::format("{}_degree", kind)) != T)
      throw_error(ErrorKind::BadInput,
                  "{}: expected {}_rank {} and {}_degree {} (a shard written by loco-convert --{})", p, kind, r, kind,
                  T, kind);
    if (shards.back()->tensors().size() != shards[0]->tensors().size())
      throw_error(ErrorKind::BadInput, "{}: {} tensors, where {} has {}", p, shards.back()->tensors().size(), paths[0],
                  shards[0]->tensors().size());
  }
  if (zero) return consolidate_zero(shards, paths, out);
  const TensorSource& s0 = *shards[0];
  std::vector<TensorInfo> plan;
  std::vector<Cut> cuts;
  for (const TensorInfo& t : s0.tensors()) {
    for (int r = 1; r < T; ++r) {
      const TensorInfo* o = shards[static_cast<std::size_t>(r)]->find(t.name, t.group);
      if (o == nullptr || o->shape != t.shape || o->dtype != t.dtype)
        throw_error(ErrorKind::BadInput, "{}: tensor {} missing or of another shape or dtype than in {}",
                    paths[static_cast<std::size_t>(r)], t.key(), paths[0]);
    }
    const auto dim = t.attrs.get_int("tp_dim");
    if (!dim) throw_error(ErrorKind::BadInput, "{}: tensor {} has no tp_dim attribute", paths[0], t.key());
    Cut c;
    c.dim = static_cast<int>(*dim);
    TensorInfo f = t;
    if (c.dim >= 0) {
      auto arr = [&](const char* name) {
        const AttrValue* v = t.attrs.find(name);
        if (v == nullptr || !std::holds_alternative<std::vector<std::int64_t>>(*v))
          throw_error(ErrorKind::BadInput, "{}: tensor {} has no {} attribute", paths[0], t.key(), name);
        return std::get<std::vector<std::int64_t>>(*v);
      };
      c.subs = arr("tp_subs");
      const auto view = arr("tp_view"), full = arr("tp_full_shape");
      c.view.assign(view.begin(), view.end());
      f.shape.assign(full.begin(), full.end());
      bool ok =
          c.dim < static_cast<int>(c.view.size()) && !c.subs.empty() && shape_numel(c.view) >= shape_numel(f.shape);
      std::int64_t sum = 0;
      for (auto x : c.subs) ok = ok && x > 0 && x % T == 0, sum += x;
      ok = ok && sum == c.view[static_cast<std::size_t>(c.dim)] && slice_shape(c, T) == t.shape;
      if (!ok) throw_error(ErrorKind::BadInput, "{}: tensor {}: inconsistent tp_* attributes", paths[0], t.key());
    }
    Attributes kept;
    for (const auto& e : t.attrs)
      if (!is_tp_attr(e.name)) kept.set(e.name, e.value);
    f.attrs = std::move(kept);
    plan.push_back(std::move(f));
    cuts.push_back(std::move(c));
  }
  Attributes root;
  root.set("kind", std::string(kind_name(file_kind(s0))));
  for (const auto& e : s0.attributes())
    if (!written_by_sink(e.name) && e.name != "kind" && e.name != "tp_rank" && e.name != "tp_degree")
      root.set(e.name, e.value);
  auto sink = create_sink(out, Format::Loco, root, plan);
  copy_group_attributes(s0, *sink, plan);
  std::vector<std::byte> full, slice, other;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const TensorInfo& t = s0.tensors()[i];
    const Cut& c = cuts[i];
    const std::size_t esz = dtype_size(t.dtype);
    if (c.dim < 0) {
      slice.resize(static_cast<std::size_t>(t.numel()) * esz);
      s0.read_rows(t, 0, t.rows(), slice);
      for (int r = 1; r < T; ++r) {
        const TensorSource& sr = *shards[static_cast<std::size_t>(r)];
        other.resize(slice.size());
        sr.read_rows(*sr.find(t.name, t.group), 0, t.rows(), other);
        if (other != slice)
          throw_error(ErrorKind::BadInput, "{}: replicated tensor {} differs from its copy in {}",
                      paths[static_cast<std::size_t>(r)], t.key(), paths[0]);
      }
      sink->write_rows(i, 0, plan[i].rows(), slice);
      continue;
    }
    full.assign(static_cast<std::size_t>(shape_numel(c.view)) * esz, std::byte{0});
    for (int r = 0; r < T; ++r) {
      const TensorSource& sr = *shards[static_cast<std::size_t>(r)];
      slice.resize(static_cast<std::size_t>(t.numel()) * esz);
      sr.read_rows(*sr.find(t.name, t.group), 0, t.rows(), slice);
      move_slice(c, T, r, esz, full.data(), slice.data(), false);
    }
    // Vocabulary padding: the rows past the tensor's own extent at the end of the view.
    sink->write_rows(i, 0, plan[i].rows(), std::span(full.data(), static_cast<std::size_t>(plan[i].numel()) * esz));
  }
  sink->commit();
}

}  // namespace loco::io
