// Listing, statistics, checksums and diffs of tensor files, streamed in row blocks.
#include "loco/io/inspect.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <tbb/parallel_for.h>

#include "loco/core/checksum.hpp"
#include "loco/io/loco_file.hpp"

namespace loco::io {
namespace {

// Blocks small enough to stay in cache between the read copy and the pass over them.
constexpr std::size_t kBlockBytes = 4u << 20;
constexpr std::size_t kChunk = 1u << 16;  // elements per parallel partial: fixed, so sums are too

// Calls fn(block_bytes, elements) for consecutive row blocks of t.
template <typename Fn>
void for_each_block(const TensorSource& s, const TensorInfo& t, Fn&& fn) {
  const std::int64_t step = rows_per_block(t, kBlockBytes);
  std::vector<std::byte> buf;
  for (std::int64_t r = 0; r < t.rows(); r += step) {
    const std::int64_t n = std::min(step, t.rows() - r);
    const std::size_t elems = static_cast<std::size_t>(n * t.row_elements());
    buf.resize(elems * dtype_size(t.dtype));
    s.read_rows(t, r, n, buf);
    fn(std::span<const std::byte>(buf), elems);
  }
}

// Elements [i0, i1) of a block as float64.
void load_doubles(DType dt, std::span<const std::byte> block, std::size_t i0, std::size_t i1,
                  std::vector<double>& out) {
  out.resize(i1 - i0);
  convert_elements(dt, block.data() + i0 * dtype_size(dt), DType::F64, reinterpret_cast<std::byte*>(out.data()),
                   i1 - i0);
}

// Accumulated in long double (x87 extended: 15-bit exponent), so squares of float64 values near
// its range do not overflow before the final square root.
struct Partial {
  std::int64_t n = 0, nan = 0, inf = 0;
  long double mean = 0, m2 = 0, sumsq = 0;
  double min = std::numeric_limits<double>::infinity(), max = -std::numeric_limits<double>::infinity();

  void merge(const Partial& o) {  // Chan et al.'s pairwise combination of mean and M2
    if (o.n > 0) {
      const long double total = static_cast<long double>(n + o.n);
      const long double delta = o.mean - mean;
      mean += delta * static_cast<long double>(o.n) / total;
      m2 += o.m2 + delta * delta * static_cast<long double>(n) * static_cast<long double>(o.n) / total;
      min = std::min(min, o.min);
      max = std::max(max, o.max);
    }
    n += o.n, nan += o.nan, inf += o.inf, sumsq += o.sumsq;
  }
};

nlohmann::json attr_json(const AttrValue& v) {
  return std::visit([](const auto& x) { return nlohmann::json(x); }, v);
}

nlohmann::json attrs_json(const Attributes& a) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& e : a) j[e.name] = attr_json(e.value);
  return j;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.1f} {}", b, units[u]);
}

}  // namespace

TensorStats tensor_stats(const TensorSource& s, const TensorInfo& t) {
  Partial total;
  std::vector<Partial> parts;
  for_each_block(s, t, [&](std::span<const std::byte> block, std::size_t elems) {
    const std::size_t chunks = (elems + kChunk - 1) / kChunk;
    parts.assign(chunks, Partial{});
    tbb::parallel_for(std::size_t{0}, chunks, [&](std::size_t c) {
      thread_local std::vector<double> vals;
      load_doubles(t.dtype, block, c * kChunk, std::min(elems, (c + 1) * kChunk), vals);
      Partial p;
      for (double x : vals) {
        if (std::isnan(x)) {
          ++p.nan;
          continue;
        }
        if (std::isinf(x)) {
          ++p.inf;
          continue;
        }
        ++p.n;
        const long double v = x;
        const long double d = v - p.mean;
        p.mean += d / static_cast<long double>(p.n);
        p.m2 += d * (v - p.mean);
        p.sumsq += v * v;
        p.min = std::min(p.min, x);
        p.max = std::max(p.max, x);
      }
      parts[c] = p;
    });
    for (const Partial& p : parts) total.merge(p);
  });
  TensorStats st;
  st.count = total.n + total.nan + total.inf;
  st.nan = total.nan;
  st.inf = total.inf;
  if (total.n > 0) {
    st.min = total.min, st.max = total.max, st.mean = static_cast<double>(total.mean);
    st.stddev = static_cast<double>(std::sqrt(total.m2 / static_cast<long double>(total.n)));
    st.l2 = static_cast<double>(std::sqrt(total.sumsq));
  }
  return st;
}

nlohmann::json inspect_json(const TensorSource& s, const InspectOptions& opt) {
  nlohmann::json j;
  j["file"] = s.path();
  j["format"] = s.format();
  j["kind"] = kind_name(file_kind(s));
  j["attributes"] = attrs_json(s.attributes());
  nlohmann::json groups = nlohmann::json::object();
  nlohmann::json tensors = nlohmann::json::array();
  std::int64_t total_bytes = 0;
  SetChecksum set;
  std::vector<std::uint64_t> sums;
  if (opt.checksum) {
    std::vector<const TensorInfo*> all;
    for (const auto& t : s.tensors()) all.push_back(&t);
    sums = tensor_checksums(s, all);
  }
  std::size_t index = 0;
  for (const auto& t : s.tensors()) {
    nlohmann::json e;
    e["group"] = t.group;
    e["name"] = t.name;
    e["dtype"] = dtype_name(t.dtype);
    e["shape"] = t.shape;
    const std::int64_t bytes = t.numel() * static_cast<std::int64_t>(dtype_size(t.dtype));
    e["bytes"] = bytes;
    total_bytes += bytes;
    if (!t.attrs.empty()) e["attributes"] = attrs_json(t.attrs);
    if (opt.stats) {
      const TensorStats st = tensor_stats(s, t);
      e["stats"] = {{"count", st.count}, {"min", st.min},    {"max", st.max}, {"mean", st.mean},
                    {"std", st.stddev},  {"l2_norm", st.l2}, {"nan", st.nan}, {"inf", st.inf}};
    }
    if (opt.checksum) {
      const std::uint64_t c = sums[index];
      e["checksum"] = format_checksum(c);
      if (t.group == "tensors") set.add(t.name, c);
    }
    if (!groups.contains(t.group)) {
      const Attributes ga = s.group_attributes(t.group);
      if (!ga.empty()) groups[t.group] = attrs_json(ga);
    }
    tensors.push_back(std::move(e));
    ++index;
  }
  for (const char* g : {"state", "tensors"})
    if (!groups.contains(g)) {
      const Attributes ga = s.group_attributes(g);
      if (!ga.empty()) groups[g] = attrs_json(ga);
    }
  if (!groups.empty()) j["group_attributes"] = groups;
  j["tensors"] = tensors;
  j["tensor_count"] = s.tensors().size();
  j["total_bytes"] = total_bytes;
  if (opt.checksum && !s.group("tensors").empty()) j["tensors_checksum"] = format_checksum(set.digest());
  return j;
}

std::string inspect_text(const TensorSource& s, const InspectOptions& opt) {
  const nlohmann::json j = inspect_json(s, opt);
  std::string out =
      fmt::format("{}: {} file, kind {}, {} tensors, {}\n", s.path(), s.format(), j["kind"].get<std::string>(),
                  s.tensors().size(), human_bytes(static_cast<double>(j["total_bytes"].get<std::int64_t>())));
  auto print_attrs = [&](const nlohmann::json& a, const std::string& indent) {
    std::size_t w = 0;
    for (const auto& [k, v] : a.items()) w = std::max(w, k.size());
    for (const auto& [k, v] : a.items())
      out += fmt::format("{}{:<{}}  {}\n", indent, k, w, v.is_string() ? v.get<std::string>() : v.dump());
  };
  if (!j["attributes"].empty()) {
    out += "attributes:\n";
    print_attrs(j["attributes"], "  ");
  }
  if (j.contains("group_attributes"))
    for (const auto& [g, a] : j["group_attributes"].items()) {
      out += fmt::format("attributes of /{}:\n", g);
      print_attrs(a, "  ");
    }
  std::size_t wn = 4, ws = 5;
  for (const auto& t : j["tensors"]) {
    wn = std::max(wn, (t["group"].get<std::string>() + "/" + t["name"].get<std::string>()).size());
    ws = std::max(ws, shape_string(t["shape"].get<Shape>()).size());
  }
  out += fmt::format("{:<{}}  {:<8}  {:<{}}  {:>10}", "name", wn, "dtype", "shape", ws, "size");
  if (opt.stats)
    out += fmt::format("  {:>12} {:>12} {:>12} {:>12} {:>12} {:>6}", "min", "max", "mean", "std", "l2", "nan/inf");
  if (opt.checksum) out += "  checksum";
  out += "\n";
  for (const auto& t : j["tensors"]) {
    out +=
        fmt::format("{:<{}}  {:<8}  {:<{}}  {:>10}", t["group"].get<std::string>() + "/" + t["name"].get<std::string>(),
                    wn, t["dtype"].get<std::string>(), shape_string(t["shape"].get<Shape>()), ws,
                    human_bytes(static_cast<double>(t["bytes"].get<std::int64_t>())));
    if (opt.stats) {
      const auto& st = t["stats"];
      out += fmt::format("  {:>12.5g} {:>12.5g} {:>12.5g} {:>12.5g} {:>12.5g} {:>6}", st["min"].get<double>(),
                         st["max"].get<double>(), st["mean"].get<double>(), st["std"].get<double>(),
                         st["l2_norm"].get<double>(),
                         fmt::format("{}/{}", st["nan"].get<std::int64_t>(), st["inf"].get<std::int64_t>()));
    }
    if (opt.checksum) out += "  " + t["checksum"].get<std::string>();
    out += "\n";
  }
  if (j.contains("tensors_checksum"))
    out += fmt::format("tensors checksum: {}\n", j["tensors_checksum"].get<std::string>());
  return out;
}

std::vector<TensorDiff> diff_sources(const TensorSource& a, const TensorSource& b, const DiffOptions& opt) {
  std::vector<TensorDiff> out;
  std::map<std::string, const TensorInfo*> in_b;
  for (const auto& t : b.tensors()) in_b[t.key()] = &t;
  std::vector<std::byte> ba, bb;
  std::vector<double> va, vb;
  for (const auto& ta : a.tensors()) {
    auto it = in_b.find(ta.key());
    if (it == in_b.end()) {
      out.push_back({ta.key(), "only in A", a.path()});
      continue;
    }
    const TensorInfo& tb = *it->second;
    in_b.erase(it);
    if (ta.shape != tb.shape) {
      out.push_back({ta.key(), "shape", fmt::format("{} vs {}", shape_string(ta.shape), shape_string(tb.shape))});
      continue;
    }
    if (ta.dtype != tb.dtype) {
      out.push_back({ta.key(), "dtype", fmt::format("{} vs {}", dtype_name(ta.dtype), dtype_name(tb.dtype))});
      continue;
    }
    TensorDiff d{ta.key(), "values", ""};
    const std::int64_t step = rows_per_block(ta, kBlockBytes);
    for (std::int64_t r = 0; r < ta.rows(); r += step) {
      const std::int64_t n = std::min(step, ta.rows() - r);
      const std::size_t elems = static_cast<std::size_t>(n * ta.row_elements());
      ba.resize(elems * dtype_size(ta.dtype));
      bb.resize(ba.size());
      a.read_rows(ta, r, n, ba);
      b.read_rows(tb, r, n, bb);
      load_doubles(ta.dtype, ba, 0, elems, va);
      load_doubles(tb.dtype, bb, 0, elems, vb);
      for (std::size_t i = 0; i < elems; ++i) {
        const double x = va[i], y = vb[i];
        if (std::isnan(x) || std::isnan(y)) {
          if (std::isnan(x) != std::isnan(y))
            ++d.mismatches, d.max_abs = d.max_rel = std::numeric_limits<double>::infinity();
          continue;
        }
        if (std::isinf(x) || std::isinf(y)) {
          if (x != y) ++d.mismatches, d.max_abs = d.max_rel = std::numeric_limits<double>::infinity();
          continue;
        }
        const double diff = std::fabs(x - y);
        if (diff > opt.atol + opt.rtol * std::fabs(y)) {
          ++d.mismatches;
          d.max_abs = std::max(d.max_abs, diff);
          d.max_rel = std::max(d.max_rel, y != 0 ? diff / std::fabs(y) : std::numeric_limits<double>::infinity());
        }
      }
    }
    if (d.mismatches > 0) {
      d.detail = fmt::format("{} of {} elements differ (max abs {:.6g}, max rel {:.6g})", d.mismatches, ta.numel(),
                             d.max_abs, d.max_rel);
      out.push_back(std::move(d));
    }
  }
  for (const auto& t : b.tensors())
    if (in_b.contains(t.key())) out.push_back({t.key(), "only in B", b.path()});
  return out;
}

nlohmann::json diff_json(const std::vector<TensorDiff>& diffs) {
  nlohmann::json j;
  j["equal"] = diffs.empty();
  j["differences"] = nlohmann::json::array();
  for (const auto& d : diffs) {
    nlohmann::json e = {{"tensor", d.key}, {"problem", d.problem}, {"detail", d.detail}};
    if (d.problem == "values") e["mismatches"] = d.mismatches, e["max_abs"] = d.max_abs, e["max_rel"] = d.max_rel;
    j["differences"].push_back(e);
  }
  return j;
}

std::string diff_text(const TensorSource& a, const TensorSource& b, const std::vector<TensorDiff>& diffs) {
  if (diffs.empty()) return fmt::format("{} and {}: tensors match\n", a.path(), b.path());
  std::string out = fmt::format("{} (A) and {} (B): {} tensors differ\n", a.path(), b.path(), diffs.size());
  for (const auto& d : diffs) out += fmt::format("  {}: {}: {}\n", d.key, d.problem, d.detail);
  return out;
}

}  // namespace loco::io
