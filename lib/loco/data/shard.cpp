// loco-shard's work: read a raw data set, hold out a test split, partition it and write loco data files.
#include "loco/data/shard.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

#include "loco/core/attributes.hpp"
#include "loco/core/error.hpp"
#include "loco/core/tensor.hpp"
#include "loco/data/readers.hpp"
#include "loco/io/output.hpp"
#include "loco/io/sink.hpp"

namespace loco::data {
namespace {

bool parse_int(const std::string& s, std::int64_t& out) {
  const char* b = s.data();
  const char* e = s.data() + s.size();
  auto [p, ec] = std::from_chars(b, e, out);
  return ec == std::errc() && p == e && !s.empty();
}

ClassificationData read_classification(const ShardingOptions& o) {
  switch (o.source) {
    case ShardSource::MnistIdx:
      if (o.labels.empty()) throw_error(ErrorKind::Usage, "--source mnist-idx needs --labels PATH");
      return read_mnist_idx(o.input, o.labels);
    case ShardSource::MnistJson: return read_mnist_json(o.input);
    case ShardSource::Libsvm: return read_libsvm(o.input);
    case ShardSource::Csv: {
      CsvOptions c;
      std::int64_t index = 0;
      if (o.label_column.empty()) c.label_index = -1;
      else if (parse_int(o.label_column, index)) c.label_index = index;
      else c.label_name = o.label_column;
      try {
        return read_csv(o.input, c);
      } catch (const Error& e) {
        // A label column the file does not have is a mismatch between the option and this file.
        if (e.kind() == ErrorKind::Usage) throw Error(ErrorKind::BadInput, e.what());
        throw;
      }
    }
    case ShardSource::Text: break;
  }
  throw_error(ErrorKind::Internal, "read_classification called for text");
}

Attributes common_root(const ShardingOptions& o, const std::string& source, const std::string& partition, int shard) {
  Attributes a;
  a.set("kind", std::string("data"));
  a.set("source", source);
  a.set("partition", partition);
  a.set("shard", static_cast<std::int64_t>(shard));
  a.set("shards", static_cast<std::int64_t>(o.shards));
  a.set("seed", static_cast<std::int64_t>(o.seed));
  a.set("split", std::string(shard == 0 ? "test" : "train"));
  return a;
}

void write_classification(const std::string& path, Attributes root, const ClassificationData& d) {
  const bool bytes = d.byte_scale > 0.0f;
  std::vector<io::TensorInfo> plan(2);
  plan[0].group = "data";
  plan[0].name = "x";
  plan[0].shape = {d.n, d.d};
  plan[0].dtype = bytes ? DType::U8 : DType::F32;
  if (bytes) plan[0].attrs.set("scale", static_cast<double>(d.byte_scale));
  plan[1].group = "data";
  plan[1].name = "y";
  plan[1].shape = {d.n};
  plan[1].dtype = DType::I32;
  Tensor x = Tensor::uninitialized({d.n, d.d}, plan[0].dtype);
  if (bytes) {
    auto out = x.as<std::uint8_t>();
    const float inv = 1.0f / d.byte_scale;
    for (std::size_t i = 0; i < out.size(); ++i) {
      const long k = std::lround(d.x[i] * inv);
      if (k < 0 || k > 255)
        throw_error(ErrorKind::Internal, "{}: feature {} is not a byte multiple of scale {}", d.source, d.x[i],
                    d.byte_scale);
      out[i] = static_cast<std::uint8_t>(k);
    }
  } else {
    std::copy(d.x.begin(), d.x.end(), x.f32().begin());
  }
  Tensor y = Tensor::uninitialized({d.n}, DType::I32);
  std::copy(d.y.begin(), d.y.end(), y.as<std::int32_t>().begin());
  root.set("classes", static_cast<std::int64_t>(d.classes));
  if (!d.preprocessing.empty()) root.set("preprocessing", d.preprocessing);
  if (!d.label_names.empty()) root.set("label_names", nlohmann::json(d.label_names).dump());
  auto sink = io::create_sink(path, root, std::move(plan));
  sink->write(0, x);
  sink->write(1, y);
  sink->commit();
}

void write_tokens(const std::string& path, Attributes root, const TokenData& t) {
  std::vector<io::TensorInfo> plan(1);
  plan[0].group = "data";
  plan[0].name = "tokens";
  plan[0].shape = {static_cast<std::int64_t>(t.tokens.size())};
  plan[0].dtype = DType::U8;
  Tensor x = Tensor::uninitialized(plan[0].shape, DType::U8);
  std::copy(t.tokens.begin(), t.tokens.end(), x.as<std::uint8_t>().begin());
  root.set("vocab", static_cast<std::int64_t>(t.vocab));
  auto sink = io::create_sink(path, root, std::move(plan));
  sink->write(0, x);
  sink->commit();
}

std::int64_t range_tokens(const std::vector<TokenRange>& rs) {
  std::int64_t n = 0;
  for (const auto& r : rs) n += r.end - r.begin;
  return n;
}

void check_options(const ShardingOptions& o) {
  if (o.shards < 1) throw_error(ErrorKind::Usage, "--shards must be at least 1, got {}", o.shards);
  if (!(o.test_fraction >= 0.0 && o.test_fraction < 1.0))
    throw_error(ErrorKind::Usage, "--test-fraction must be in [0, 1), got {}", o.test_fraction);
  if (o.stem.empty()) throw_error(ErrorKind::Usage, "-o STEM is empty");
  if (o.source != ShardSource::MnistIdx && !o.labels.empty())
    throw_error(ErrorKind::Usage, "--labels applies only to --source mnist-idx");
  if (o.source != ShardSource::Csv && !o.label_column.empty())
    throw_error(ErrorKind::Usage, "--label-column applies only to --source csv");
}

ShardReport shard_text(const ShardingOptions& o) {
  const TokenData data = read_bytes(o.input);
  const auto n = static_cast<std::int64_t>(data.tokens.size());
  const TextSplit split = split_text(n, o.shards, o.test_fraction, o.text_layout, o.block);
  ShardReport r;
  r.text = true;
  r.source = data.source;
  r.total = n;
  r.classes = data.vocab;
  r.partition = split.description;
  for (int i = 0; i < o.shards; ++i)
    r.shards.push_back({shard_path(o.stem, i, o.shards), range_tokens(split.workers[static_cast<std::size_t>(i)]), {}});
  r.test.size = split.test.end - split.test.begin;
  if (r.test.size > 0) r.test.path = o.stem + "-test.h5";
  if (o.dry_run) return r;
  for (int i = 0; i < o.shards; ++i)
    write_tokens(r.shards[static_cast<std::size_t>(i)].path, common_root(o, data.source, split.description, i + 1),
                 gather(data, split.workers[static_cast<std::size_t>(i)]));
  if (r.test.size > 0) {
    const TokenRange t[1] = {split.test};
    write_tokens(r.test.path, common_root(o, data.source, split.description, 0), gather(data, t));
  }
  r.written = true;
  return r;
}

ShardReport shard_classification(const ShardingOptions& o) {
  const PartitionSpec spec = parse_partition_spec(o.partition);  // before the (slow) read
  const ClassificationData data = read_classification(o);
  validate(data);
  const Holdout h = split_holdout(data.n, holdout_count(data.n, o.test_fraction), o.seed);
  const Partition p = partition(spec, data.y, data.classes, h.pool, o.shards, o.seed);
  ShardReport r;
  r.source = data.source;
  r.total = data.n;
  r.features = data.d;
  r.classes = data.classes;
  r.x_dtype = data.byte_scale > 0.0f ? "uint8" : "float32";
  r.partition = p.description;
  r.unused = static_cast<std::int64_t>(p.unused.size());
  auto histogram = [&](const IndexList& idx) {
    std::vector<std::int64_t> c(static_cast<std::size_t>(data.classes), 0);
    for (auto i : idx) ++c[static_cast<std::size_t>(data.y[static_cast<std::size_t>(i)])];
    return c;
  };
  for (int i = 0; i < o.shards; ++i) {
    const auto& idx = p.clients[static_cast<std::size_t>(i)];
    r.shards.push_back({shard_path(o.stem, i, o.shards), static_cast<std::int64_t>(idx.size()), histogram(idx)});
  }
  r.test.size = static_cast<std::int64_t>(h.test.size());
  r.test.classes = histogram(h.test);
  if (r.test.size > 0) r.test.path = o.stem + "-test.h5";
  if (o.dry_run) return r;
  for (int i = 0; i < o.shards; ++i)
    write_classification(r.shards[static_cast<std::size_t>(i)].path, common_root(o, data.source, p.description, i + 1),
                         select(data, p.clients[static_cast<std::size_t>(i)]));
  if (r.test.size > 0)
    write_classification(r.test.path, common_root(o, data.source, p.description, 0), select(data, h.test));
  r.written = true;
  return r;
}

std::string histogram_text(const std::vector<std::int64_t>& c) {
  std::string s;
  for (std::size_t k = 0; k < c.size(); ++k) s += fmt::format("{}{}:{}", k ? " " : "", k, c[k]);
  return s;
}

}  // namespace

ShardSource parse_shard_source(const std::string& name) {
  if (name == "mnist-idx") return ShardSource::MnistIdx;
  if (name == "mnist-json") return ShardSource::MnistJson;
  if (name == "csv") return ShardSource::Csv;
  if (name == "libsvm") return ShardSource::Libsvm;
  if (name == "text") return ShardSource::Text;
  throw_error(ErrorKind::Usage, "unknown source '{}' (mnist-idx, mnist-json, csv, libsvm, text)", name);
}

std::string shard_path(const std::string& stem, int index, int count) {
  return fmt::format("{}-{:05d}-of-{:05d}.h5", stem, index + 1, count);
}

ShardReport shard(const ShardingOptions& options) {
  check_options(options);
  // Outputs that would replace an input are refused when they are created (io/output.hpp).
  io::register_input(options.input);
  if (!options.labels.empty()) io::register_input(options.labels);
  return options.source == ShardSource::Text ? shard_text(options) : shard_classification(options);
}

std::string summary_text(const ShardReport& r) {
  std::string s;
  if (r.text) s += fmt::format("{}: {} tokens (vocab {})\nsplit: {}\n", r.source, r.total, r.classes, r.partition);
  else
    s += fmt::format("{}: {} examples × {} features, {} classes (x stored as {})\npartition: {}\n", r.source, r.total,
                     r.features, r.classes, r.x_dtype, r.partition);
  const char* unit = r.text ? "tokens" : "examples";
  for (const auto& sh : r.shards) {
    s += fmt::format("  {}: {} {}", sh.path, sh.size, unit);
    if (!r.text) s += "  [" + histogram_text(sh.classes) + "]";
    s += "\n";
  }
  s += fmt::format("  {}: {} {}", r.test.path.empty() ? "test (not written)" : r.test.path, r.test.size, unit);
  if (!r.text) s += "  [" + histogram_text(r.test.classes) + "]";
  s += "\n";
  if (r.unused > 0) s += fmt::format("  unused: {} examples no shard received\n", r.unused);
  if (!r.written) s += "dry run: nothing written\n";
  return s;
}

std::string summary_json(const ShardReport& r) {
  nlohmann::ordered_json j;
  j["kind"] = r.text ? "text" : "classification";
  j["source"] = r.source;
  j[r.text ? "tokens" : "examples"] = r.total;
  if (r.text) {
    j["vocab"] = r.classes;
  } else {
    j["features"] = r.features;
    j["classes"] = r.classes;
    j["x_dtype"] = r.x_dtype;
  }
  j["partition"] = nlohmann::json::parse(r.partition);
  auto one = [&](const ShardStats& s) {
    nlohmann::ordered_json o;
    o["path"] = s.path.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(s.path);
    o["size"] = s.size;
    if (!r.text) o["class_counts"] = s.classes;
    return o;
  };
  j["shards"] = nlohmann::ordered_json::array();
  for (const auto& s : r.shards) j["shards"].push_back(one(s));
  j["test"] = one(r.test);
  j["unused"] = r.unused;
  j["written"] = r.written;
  return j.dump();
}

}  // namespace loco::data
