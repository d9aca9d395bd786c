// Sharded safetensors: the byte-budget sink with its index JSON, and the index as a TensorSource.
#include "loco/io/safetensors_index.hpp"

#include <filesystem>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "loco/core/error.hpp"
#include "loco/core/json.hpp"
#include "loco/io/output.hpp"
#include "loco/io/safetensors.hpp"

namespace loco::io {
namespace fs = std::filesystem;

namespace {

class ShardedSink final : public TensorSink {
 public:
  ShardedSink(std::string path, const Attributes& root, std::vector<TensorInfo> plan, std::vector<std::size_t> shard_of,
              std::size_t shards)
      : path_(std::move(path)), plan_(std::move(plan)), shard_of_(std::move(shard_of)) {
    std::string stem = path_;
    if (stem.size() > 12 && stem.ends_with(".safetensors")) stem.resize(stem.size() - 12);
    std::vector<std::vector<TensorInfo>> sub(shards);
    local_.resize(plan_.size());
    for (std::size_t i = 0; i < plan_.size(); ++i) {
      local_[i] = sub[shard_of_[i]].size();
      sub[shard_of_[i]].push_back(plan_[i]);
    }
    for (std::size_t s = 0; s < shards; ++s) {
      names_.push_back(fmt::format("{}-{:05d}-of-{:05d}.safetensors", stem, s + 1, shards));
      sinks_.push_back(create_safetensors_sink(names_.back(), root, std::move(sub[s])));
    }
  }
  const std::vector<TensorInfo>& plan() const override { return plan_; }
  void write_rows(std::size_t index, std::int64_t row0, std::int64_t nrows, std::span<const std::byte> data) override {
    sinks_.at(shard_of_.at(index))->write_rows(local_[index], row0, nrows, data);
  }
  void set_attribute(std::string_view name, AttrValue) override {
    throw_error(ErrorKind::Usage, "{}: safetensors takes attributes only at creation ({})", path_, name);
  }
  void set_group_attribute(std::string_view group, std::string_view name, AttrValue) override {
    throw_error(ErrorKind::Usage, "{}: safetensors has no group attributes ({}/{})", path_, group, name);
  }
  void commit() override {
    nlohmann::json weight_map = nlohmann::json::object();  // sorted by name, as huggingface writes it
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < plan_.size(); ++i) {
      weight_map[plan_[i].name] = fs::path(names_[shard_of_[i]]).filename().string();
      total += static_cast<std::uint64_t>(plan_[i].numel()) * dtype_size(plan_[i].dtype);
    }
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = weight_map;
    const std::string text = index.dump(2) + "\n";
    AtomicOutput out(path_ + ".index.json");
    for (auto& s : sinks_) s->commit();
    std::FILE* f = std::fopen(out.temp_path().c_str(), "wb");
    if (f == nullptr) throw_error(ErrorKind::Io, "{}: cannot create", out.final_path());
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    if ((std::fclose(f) != 0) || !ok) throw_error(ErrorKind::Io, "{}: write failed", out.final_path());
    out.commit();
  }

 private:
  std::string path_;
  std::vector<TensorInfo> plan_;
  std::vector<std::size_t> shard_of_, local_;
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<TensorSink>> sinks_;
};

class IndexSource final : public TensorSource {
 public:
  explicit IndexSource(std::unique_ptr<ByteSource> bytes) : path_(bytes->name()) { load(*bytes); }
  const std::string& path() const override { return path_; }
  std::string_view format() const override { return "safetensors-index"; }
  const Attributes& attributes() const override { return shards_.front()->attributes(); }
  const std::vector<TensorInfo>& tensors() const override { return infos_; }
  void read_rows(const TensorInfo& t, std::int64_t row0, std::int64_t nrows, std::span<std::byte> out) const override {
    const std::size_t i = static_cast<std::size_t>(&t - infos_.data());
    if (i >= infos_.size()) throw_error(ErrorKind::Internal, "{}: tensor {} is not this source's", path_, t.name);
    shards_[where_[i].first]->read_rows(*where_[i].second, row0, nrows, out);
  }

 private:
  [[noreturn]] void bad(const std::string& what) const { throw_error(ErrorKind::BadInput, "{}: {}", path_, what); }
  void load(const ByteSource& bytes) {
    if (bytes.size() > (64u << 20)) bad("larger than 64 MiB: not a safetensors index");
    std::vector<std::byte> data(static_cast<std::size_t>(bytes.size()));
    bytes.read_at(0, data);
    const auto j = parse_json<nlohmann::ordered_json>(
        std::string_view(reinterpret_cast<const char*>(data.data()), data.size()), path_);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      bad("JSON without a \"weight_map\" object: not a safetensors index (model.safetensors.index.json)");
    const fs::path dir = path_ == "-" ? fs::path(".") : fs::path(path_).parent_path();
    std::vector<std::string> files;
    std::unordered_map<std::string, std::string> shard_of;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) bad("weight_map entry " + name + " is not a file name");
      const std::string f = file.get<std::string>();
      const fs::path rel = fs::path(f).lexically_normal();
      if (f.empty() || rel.is_absolute() || (!rel.empty() && *rel.begin() == ".."))
        bad("shard '" + f + "' lies outside the index's folder");
      if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(f);
      shard_of.emplace(name, f);
    }
    if (files.empty()) bad("empty weight_map");
    std::size_t found = 0;
    for (std::size_t s = 0; s < files.size(); ++s) {
      const std::string p = (dir / files[s]).string();
      register_input(p);
      shards_.push_back(open_safetensors(open_bytes(p)));
      for (const TensorInfo& t : shards_.back()->tensors()) {
        const auto it = shard_of.find(t.name);
        if (it == shard_of.end() || it->second != files[s])
          bad(fmt::format("shard {} holds tensor {}, which the weight_map {}", files[s], t.name,
                          it == shard_of.end() ? "does not name" : "places in " + it->second));
        infos_.push_back(t);
        where_.emplace_back(s, &t);
        ++found;
      }
    }
    if (found != shard_of.size())
      for (const auto& [name, f] : shard_of) {
        const auto& ts = shards_[static_cast<std::size_t>(std::find(files.begin(), files.end(), f) - files.begin())];
        if (ts->find(name) == nullptr) bad("tensor " + name + " is missing from its shard " + f);
      }
  }

  std::string path_;
  std::vector<std::unique_ptr<TensorSource>> shards_;
  std::vector<TensorInfo> infos_;
  std::vector<std::pair<std::size_t, const TensorInfo*>> where_;
};

}  // namespace

std::unique_ptr<TensorSink> create_sharded_safetensors_sink(const std::string& path, const Attributes& root,
                                                            std::vector<TensorInfo> plan,
                                                            std::uint64_t max_shard_bytes) {
  std::vector<std::size_t> shard_of(plan.size(), 0);
  std::size_t shard = 0;
  std::uint64_t used = 0;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const std::uint64_t b = static_cast<std::uint64_t>(plan[i].numel()) * dtype_size(plan[i].dtype);
    if (used > 0 && used + b > max_shard_bytes) ++shard, used = 0;
    shard_of[i] = shard;
    used += b;
  }
  if (shard == 0) return create_safetensors_sink(path, root, std::move(plan));
  if (path == "-") throw_error(ErrorKind::Usage, "a sharded safetensors checkpoint cannot be written to stdout");
  if (path.size() <= 12 || !path.ends_with(".safetensors"))
    throw_error(ErrorKind::Usage, "{}: a sharded safetensors output must end in .safetensors", path);
  return std::make_unique<ShardedSink>(path, root, std::move(plan), std::move(shard_of), shard + 1);
}

bool looks_like_json_object(std::span<const std::byte> head) noexcept {
  for (const std::byte b : head) {
    const auto c = std::to_integer<unsigned char>(b);
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    return c == '{';
  }
  return false;
}

std::unique_ptr<TensorSource> open_safetensors_index(std::unique_ptr<ByteSource> bytes) {
  return std::make_unique<IndexSource>(std::move(bytes));
}

}  // namespace loco::io
