// DeepSpeed universal checkpoint folders: the per-parameter torch.save files as one TensorSource,
// and the writer of the same layout.
#include "loco/io/ucp.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "loco/core/cleanup.hpp"
#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/io/byte_source.hpp"
#include "loco/io/output.hpp"
#include "loco/io/pickle.hpp"
#include "loco/io/torch_write.hpp"
#include "loco/io/torch_zip.hpp"

namespace loco::io {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kStepAttr = "step";
constexpr std::string_view kStepTypeAttr = "ucp_step_type";

// "layers.2" < "layers.10": runs of digits compare as numbers.
bool natural_less(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const bool da = std::isdigit(static_cast<unsigned char>(a[i])), db = std::isdigit(static_cast<unsigned char>(b[j]));
    if (da && db) {
      std::size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      std::size_t ia = i, jb = j;  // skip leading zeros
      while (ia + 1 < ie && a[ia] == '0') ++ia;
      while (jb + 1 < je && b[jb] == '0') ++jb;
      if (ie - ia != je - jb) return ie - ia < je - jb;
      const int c = a.compare(ia, ie - ia, b, jb, je - jb);
      if (c != 0) return c < 0;
      i = ie, j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  return a.size() - i < b.size() - j || (a.size() - i == b.size() - j && a < b);
}

// The zero/ folder of a UCP path, or nullopt.
std::optional<fs::path> zero_folder(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_directory(p, ec)) return std::nullopt;
  if (fs::is_directory(p / "zero", ec)) return p / "zero";
  if (!fs::exists(p / "zero", ec) && fs::is_regular_file(p / "latest_universal", ec)) {
    std::ifstream f(p / "latest_universal");
    std::string tag;
    std::getline(f, tag);
    while (!tag.empty() && std::isspace(static_cast<unsigned char>(tag.back()))) tag.pop_back();
    if (!tag.empty() && tag.find('/') == std::string::npos && tag != "." && tag != ".." &&
        fs::is_directory(p / tag / "zero", ec))
      return p / tag / "zero";
    return std::nullopt;
  }
  for (const auto& e : fs::directory_iterator(p, ec))
    if (e.is_directory(ec) && fs::is_regular_file(e.path() / "fp32.pt", ec)) return p;
  return std::nullopt;
}

// The parsed data.pkl of a torch.save archive.
pickle::Pickle archive_pickle(const ByteSource& bytes) {
  const std::vector<ZipEntry> entries = read_zip_directory(bytes);
  if (entries.empty() || entries[0].name.find('/') == std::string::npos)
    throw_error(ErrorKind::BadInput, "{}: not a torch.save archive", bytes.name());
  const std::string prefix = entries[0].name.substr(0, entries[0].name.find('/') + 1);
  for (const auto& e : entries)
    if (e.name == prefix + "data.pkl") {
      if (e.method != 0 || e.size > (1u << 24))
        throw_error(ErrorKind::BadInput, "{}: data.pkl compressed or larger than 16 MiB", bytes.name());
      std::vector<std::byte> data(static_cast<std::size_t>(e.size));
      if (!data.empty()) bytes.read_at(e.data_offset, data);
      return pickle::parse(data, bytes.name() + ":" + e.name);
    }
  throw_error(ErrorKind::BadInput, "{}: no {}data.pkl: not a torch.save archive", bytes.name(), prefix);
}

// SubparamShape(patterns, shape, partition_dim) → its JSON form (ucp.hpp).
std::string subparam_json(const pickle::Value& v, const std::string& file) {
  using K = pickle::Value::Kind;
  auto bad = [&](std::string_view why) -> std::string {
    throw_error(ErrorKind::BadInput, "{}: sub_param_shape: {}", file, why);
  };
  if (!v.is(K::Call) || v.state == nullptr || !v.state->is(K::Dict)) return bad("expected a SubparamShape object");
  nlohmann::ordered_json j;
  j["patterns"] = nlohmann::ordered_json::array();
  const auto& kv = v.state->items;
  bool shape = false, dim = false;
  for (std::size_t i = 0; i + 1 < kv.size(); i += 2) {
    if (!kv[i]->is(K::String)) return bad("a non-string field name");
    const std::string& key = kv[i]->text;
    const pickle::Value& x = *kv[i + 1];
    if (key == "patterns") {
      if (!x.is(K::List) && !x.is(K::Tuple)) return bad("patterns is not a list");
      for (const auto* p : x.items) {
        if (!p->is(K::String)) return bad("a pattern that is not a string");
        j["patterns"].push_back(p->text);
      }
    } else if (key == "shape") {
      if (!x.is(K::List) && !x.is(K::Tuple)) return bad("shape is not a tuple");
      j["shape"] = nlohmann::ordered_json::array();
      for (const auto* d : x.items) {
        if (d->is(K::Int)) {
          j["shape"].push_back(d->integer);
        } else if (d->is(K::List) || d->is(K::Tuple)) {
          nlohmann::ordered_json sub = nlohmann::ordered_json::array();
          for (const auto* s : d->items) {
            if (!s->is(K::Int)) return bad("a sub-size that is not an integer");
            sub.push_back(s->integer);
          }
          j["shape"].push_back(sub);
        } else {
          return bad("a shape entry that is neither an integer nor a tuple");
        }
      }
      shape = true;
    } else if (key == "partition_dim") {
      if (!x.is(K::Int)) return bad("partition_dim is not an integer");
      j["partition_dim"] = x.integer;
      dim = true;
    }
  }
  if (!shape || !dim) return bad("shape or partition_dim missing");
  return j.dump();
}

struct StepValue {
  double value = 0;
  std::string type;  // "int", "float" or a dtype name
};

StepValue read_step(const std::string& file) {
  auto bytes = open_bytes(file);
  const pickle::Pickle p = archive_pickle(*bytes);
  const pickle::Value& r = p.root();
  if (r.is(pickle::Value::Kind::Int)) return {static_cast<double>(r.integer), "int"};
  if (r.is(pickle::Value::Kind::Float)) return {r.real, "float"};
  auto src = open_torch(open_bytes(file));
  if (src->tensors().size() != 1 || src->tensors()[0].numel() != 1)
    throw_error(ErrorKind::BadInput, "{}: expected a step (an int, a float or a one-element tensor), got {}", file,
                pickle::describe(r));
  const TensorInfo& t = src->tensors()[0];
  const Tensor v = src->read(t, DType::F64);
  return {v.as<double>()[0], std::string(dtype_name(t.dtype))};
}

struct Entry {
  std::string file;       // the .pt
  std::size_t param = 0;  // index of "param" in the file's tensors
};

class UcpSource final : public TensorSource {
 public:
  explicit UcpSource(const std::string& path) : path_(path) { load(); }

  const std::string& path() const override { return path_; }
  std::string_view format() const override { return "ucp"; }
  const Attributes& attributes() const override { return attrs_; }
  const std::vector<TensorInfo>& tensors() const override { return infos_; }
  Attributes group_attributes(std::string_view group) const override {
    return group == "state" ? state_attrs_ : Attributes{};
  }

  void read_rows(const TensorInfo& t, std::int64_t row0, std::int64_t nrows, std::span<std::byte> out) const override {
    const std::size_t index = static_cast<std::size_t>(&t - infos_.data());
    if (index >= infos_.size()) throw_error(ErrorKind::Internal, "{}: tensor {} is not this source's", path_, t.name);
    const Entry& e = entries_[index];
    std::lock_guard lock(mu_);
    if (open_file_ != e.file) {
      open_.reset();
      open_file_.clear();
      open_ = open_torch(open_bytes(e.file));
      open_file_ = e.file;
    }
    const auto& ts = open_->tensors();
    if (e.param >= ts.size() || ts[e.param].name != "param" || ts[e.param].shape != t.shape ||
        ts[e.param].dtype != t.dtype)
      throw_error(ErrorKind::BadInput, "{}: changed while being read", e.file);
    open_->read_rows(ts[e.param], row0, nrows, out);
  }

 private:
  void load();

  std::string path_;
  Attributes attrs_, state_attrs_;
  std::vector<TensorInfo> infos_;
  std::vector<Entry> entries_;
  mutable std::mutex mu_;
  mutable std::unique_ptr<TensorSource> open_;
  mutable std::string open_file_;
};

void UcpSource::load() {
  const auto zero = zero_folder(path_);
  if (!zero)
    throw_error(ErrorKind::BadInput, "{}: not a DeepSpeed universal checkpoint folder (no zero/<param>/fp32.pt)",
                path_);
  std::vector<std::string> params;
  for (const auto& e : fs::directory_iterator(*zero))
    if (e.is_directory()) params.push_back(e.path().filename().string());
  std::sort(params.begin(), params.end(), natural_less);
  // state slot → (param, file); fp32 first.
  struct Item {
    std::string group, name, file;
  };
  std::vector<Item> fp32;
  std::vector<std::pair<std::string, std::vector<Item>>> slots;
  std::optional<StepValue> step;
  std::string step_param;
  for (const auto& p : params) {
    const fs::path dir = *zero / p;
    if (!fs::is_regular_file(dir / "fp32.pt"))
      throw_error(ErrorKind::BadInput, "{}: parameter folder {} has no fp32.pt", path_, dir.string());
    fp32.push_back({"tensors", p, (dir / "fp32.pt").string()});
    std::vector<std::string> states;
    for (const auto& f : fs::directory_iterator(dir)) {
      const std::string n = f.path().filename().string();
      if (!f.is_regular_file() || f.path().extension() != ".pt" || n == "fp32.pt") continue;
      if (n == "step.pt") {
        const StepValue s = read_step(f.path().string());
        if (step && (s.value != step->value || s.type != step->type))
          throw_error(ErrorKind::BadInput, "{}: parameters {} and {} have different steps ({} and {})", path_,
                      step_param, p, step->value, s.value);
        if (!step) step = s, step_param = p;
        continue;
      }
      states.push_back(f.path().stem().string());
    }
    std::sort(states.begin(), states.end());
    for (const auto& s : states) {
      auto it = std::find_if(slots.begin(), slots.end(), [&](const auto& x) { return x.first == s; });
      if (it == slots.end()) it = slots.insert(slots.end(), {s, {}});
      it->second.push_back({"state/" + s, p, (dir / (s + ".pt")).string()});
    }
  }
  if (fp32.empty())
    throw_error(ErrorKind::BadInput, "{}: universal checkpoint folder {} holds no parameters", path_, zero->string());
  std::vector<Item> all = fp32;
  for (auto& [s, items] : slots) all.insert(all.end(), items.begin(), items.end());
  infos_.reserve(all.size());
  std::unordered_map<std::string, std::size_t> fp32_index;
  for (const Item& it : all) {
    auto bytes = open_bytes(it.file);
    const pickle::Pickle pk = archive_pickle(*bytes);
    auto src = open_torch(std::move(bytes));
    const TensorInfo* param = src->find("param");
    if (param == nullptr)
      throw_error(ErrorKind::BadInput, "{}: no 'param' tensor (expected DeepSpeed's {{'param': tensor, ...}})",
                  it.file);
    TensorInfo info;
    info.group = it.group;
    info.name = it.name;
    info.shape = param->shape;
    info.dtype = param->dtype;
    // The dict's other entries, in order: scalars as they are, vocab_tensor as 1, sub_param_shape as JSON.
    const pickle::Value& root = pk.root();
    for (std::size_t i = 0; root.is(pickle::Value::Kind::Dict) && i + 1 < root.items.size(); i += 2) {
      const pickle::Value& k = *root.items[i];
      const pickle::Value& v = *root.items[i + 1];
      if (!k.is(pickle::Value::Kind::String) || k.text == "param") continue;
      using K = pickle::Value::Kind;
      if (k.text == "sub_param_shape") info.attrs.set(k.text, subparam_json(v, it.file));
      else if (v.is(K::Int)) info.attrs.set(k.text, v.integer);
      else if (v.is(K::Bool)) info.attrs.set(k.text, std::int64_t{v.boolean ? 1 : 0});
      else if (v.is(K::Float)) info.attrs.set(k.text, v.real);
      else if (v.is(K::String)) info.attrs.set(k.text, v.text);
      else log::debug("{}: entry {} ({}) has no place in a loco file; not read", it.file, k.text, pickle::describe(v));
    }
    if (info.group != "tensors") {
      const TensorInfo& f = infos_[fp32_index.at(info.name)];
      if (info.shape != f.shape)
        throw_error(ErrorKind::BadInput, "{}: shape {} differs from fp32.pt's {}", it.file, shape_string(info.shape),
                    shape_string(f.shape));
    } else {
      fp32_index.emplace(info.name, infos_.size());
    }
    infos_.push_back(std::move(info));
    entries_.push_back({it.file, static_cast<std::size_t>(param - src->tensors().data())});
  }
  if (step) {
    if (step->value != std::floor(step->value) || std::fabs(step->value) > 9.0e15)
      throw_error(ErrorKind::BadInput, "{}: step {} is not an integer", path_, step->value);
    state_attrs_.set(kStepAttr, static_cast<std::int64_t>(step->value));
    state_attrs_.set(kStepTypeAttr, step->type);
  }
  attrs_.set("source_format", std::string("ucp"));
}

// A name the file system takes as one folder: not empty, "." or "..", no '/' or NUL, and at most
// NAME_MAX (255) bytes, the limit of Linux file systems.
bool valid_folder_name(const std::string& n) {
  return !n.empty() && n.size() <= 255 && n != "." && n != ".." && n.find('/') == std::string::npos &&
         n.find('\0') == std::string::npos;
}

void fsync_dir(const fs::path& dir) {
  const char* v = std::getenv("LOCO_FSYNC");
  if (v != nullptr && std::string_view(v) == "0") return;
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);  // some file systems refuse fsync on folders; the rename is atomic regardless
  ::close(fd);
}

}  // namespace

bool is_ucp_folder(const std::string& path) noexcept {
  try {
    return zero_folder(path).has_value();
  } catch (...) {
    return false;
  }
}

std::unique_ptr<TensorSource> open_ucp(const std::string& path) { return std::make_unique<UcpSource>(path); }

void write_ucp(const TensorSource& src, const std::string& dir, std::size_t block_bytes) {
  fs::path out = fs::path(dir).lexically_normal();
  if (out.has_filename() == false) out = out.parent_path();
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!fs::is_directory(out, ec) || !fs::is_empty(out, ec))
      throw_error(ErrorKind::Usage, "{}: exists and is not an empty folder; loco does not write into it", dir);
  }
  check_not_input(out.string());
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  if (!fs::is_directory(parent, ec)) throw_error(ErrorKind::Io, "{}: folder {} does not exist", dir, parent.string());
  const fs::path tmp = parent / fmt::format(".{}.tmp-{}", out.filename().string(), ::getpid());
  struct Cleanup {
    fs::path p;
    bool keep = false;
    explicit Cleanup(fs::path path) : p(std::move(path)) { register_temporary(p.string()); }
    ~Cleanup() {
      unregister_temporary(p.string());
      std::error_code e;
      if (!keep) fs::remove_all(p, e);
    }
  } cleanup{tmp};
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp / "zero", ec))
    throw_error(ErrorKind::Io, "{}: cannot create: {}", (tmp / "zero").string(), ec.message());

  const Attributes state = src.group_attributes("state");
  const auto step = state.get_int(kStepAttr);
  const std::string step_type = state.get_string(kStepTypeAttr).value_or("int");
  std::optional<DType> step_dtype;
  if (step_type != "int" && step_type != "float") {
    step_dtype = parse_dtype(step_type);
    if (!step_dtype)
      throw_error(ErrorKind::BadInput, "{}: state attribute {} = '{}' is not int, float or a dtype", src.path(),
                  kStepTypeAttr, step_type);
  }
  std::size_t written = 0;
  std::vector<std::string> params;
  for (const TensorInfo& t : src.tensors()) {
    std::string file;
    if (t.group == "tensors") {
      file = "fp32";
    } else if (t.group.rfind("state/", 0) == 0 && valid_folder_name(t.group.substr(6)) && t.group.substr(6) != "step") {
      file = t.group.substr(6);
    } else {
      log::warn("{}: tensor {} has no place in a universal checkpoint; not written", src.path(), t.key());
      continue;
    }
    if (!valid_folder_name(t.name))
      throw_error(ErrorKind::BadInput,
                  "{}: tensor name '{}' cannot be a folder name of a universal checkpoint (empty, '.', '..', a '/' "
                  "or longer than 255 bytes)",
                  src.path(), excerpt(t.name));
    const fs::path pdir = tmp / "zero" / t.name;
    if (!fs::exists(pdir)) {
      fs::create_directory(pdir, ec);
      if (ec) throw_error(ErrorKind::Io, "{}: cannot create: {}", pdir.string(), ec.message());
      params.push_back(t.name);
    }
    std::vector<TorchItem> items;
    for (const auto& a : t.attrs) {
      TorchValue v;
      if (a.name == "sub_param_shape" && std::holds_alternative<std::string>(a.value)) {
        v.kind = TorchValue::Kind::SubparamShape;
        v.text = std::get<std::string>(a.value);
      } else if (a.name == "vocab_tensor" && std::holds_alternative<std::int64_t>(a.value)) {
        v.kind = TorchValue::Kind::Bool;
        v.integer = std::get<std::int64_t>(a.value);
      } else if (std::holds_alternative<std::int64_t>(a.value)) {
        v.integer = std::get<std::int64_t>(a.value);
      } else if (std::holds_alternative<double>(a.value)) {
        v.kind = TorchValue::Kind::Float;
        v.real = std::get<double>(a.value);
      } else if (std::holds_alternative<std::string>(a.value)) {
        v.kind = TorchValue::Kind::String;
        v.text = std::get<std::string>(a.value);
      } else {
        log::debug("{}: array attribute {} of {} not written", src.path(), a.name, t.key());
        continue;
      }
      items.push_back({a.name, std::move(v)});
    }
    TorchValue param;
    param.kind = TorchValue::Kind::Tensor;
    param.source = &src;
    param.tensor = &t;
    items.push_back({"param", param});
    write_torch_dict((pdir / (file + ".pt")).string(), file, items, block_bytes);
    ++written;
  }
  if (written == 0) throw_error(ErrorKind::BadInput, "{}: no tensors to write as a universal checkpoint", src.path());
  if (step)
    for (const auto& p : params)
      write_torch_scalar((tmp / "zero" / p / "step.pt").string(), "step", static_cast<double>(*step),
                         step_type == "int", step_dtype);
  fsync_dir(tmp / "zero");
  fsync_dir(tmp);
  if (fs::exists(out, ec)) fs::remove(out, ec);  // the empty folder it replaces
  fs::rename(tmp, out, ec);
  if (ec) throw_error(ErrorKind::Io, "{}: cannot rename the finished folder into place: {}", dir, ec.message());
  cleanup.keep = true;
  fsync_dir(parent);
}

}  // namespace loco::io
