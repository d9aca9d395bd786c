// torch.save zip archives: the zip directory, the state-dict tree of data.pkl, and in-place
// strided reads of tensor storages.
#include "loco/io/torch_zip.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/io/pickle.hpp"

namespace loco::io {
namespace {

constexpr std::uint64_t kMaxPickleBytes = std::uint64_t{1} << 30;
constexpr std::uint64_t kMaxIndex = std::uint64_t{1} << 62;
// Containers and tensor wrappers (_rebuild_parameter, _rebuild_from_type_v2) nested in data.pkl:
// the walk recurses once per level, and real checkpoints need fewer than 10.
constexpr int kMaxDepth = 64;
// Elements of a view that repeats its storage's elements (an expanded tensor): 1 GiB of float32.
constexpr std::int64_t kMaxRepeatedView = std::int64_t{1} << 28;

std::uint64_t le_at(const std::byte* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t(std::to_integer<std::uint8_t>(p[i])) << (8 * i);
  return v;
}

std::vector<std::byte> read_range(const ByteSource& b, std::uint64_t offset, std::uint64_t n) {
  std::vector<std::byte> out(static_cast<std::size_t>(n));
  if (n > 0) b.read_at(offset, out);
  return out;
}

}  // namespace

bool looks_like_zip(std::span<const std::byte> head) noexcept {
  static constexpr unsigned char kSig[] = {'P', 'K', 3, 4};
  return head.size() >= 4 && std::memcmp(head.data(), kSig, 4) == 0;
}

bool looks_like_legacy_torch(std::span<const std::byte> head) noexcept {
  // PROTO 2, LONG1 of 10 bytes: the magic number, little-endian.
  static constexpr unsigned char kSig[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                           0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  return head.size() >= sizeof kSig && std::memcmp(head.data(), kSig, sizeof kSig) == 0;
}

std::vector<ZipEntry> read_zip_directory(const ByteSource& bytes) {
  const std::string& file = bytes.name();
  const std::uint64_t size = bytes.size();
  if (size < 22) throw_error(ErrorKind::BadInput, "{}: zip archive shorter than its end record", file);
  // The end-of-central-directory record: 22 bytes plus a comment of up to 65535 bytes, at the end.
  const std::uint64_t tail_len = std::min<std::uint64_t>(size, 22 + 65535);
  const std::vector<std::byte> tail = read_range(bytes, size - tail_len, tail_len);
  std::optional<std::uint64_t> eocd;
  for (std::uint64_t i = tail_len - 22 + 1; i-- > 0;) {
    const std::byte* p = tail.data() + i;
    if (le_at(p, 4) == 0x06054b50 && i + 22 + le_at(p + 20, 2) == tail_len) {
      eocd = i;
      break;
    }
  }
  if (!eocd) throw_error(ErrorKind::BadInput, "{}: no zip end-of-central-directory record (truncated archive?)", file);
  const std::byte* e = tail.data() + *eocd;
  const std::uint64_t eocd_pos = size - tail_len + *eocd;
  std::uint64_t count = le_at(e + 10, 2), cd_size = le_at(e + 12, 4), cd_offset = le_at(e + 16, 4);
  if (le_at(e + 4, 2) != 0 || le_at(e + 6, 2) != 0)
    throw_error(ErrorKind::BadInput, "{}: multi-volume zip archives are not supported", file);
  if (count == 0xffff || cd_size == 0xffffffff || cd_offset == 0xffffffff) {
    if (eocd_pos < 20) throw_error(ErrorKind::BadInput, "{}: ZIP64 end record locator missing", file);
    const std::vector<std::byte> loc = read_range(bytes, eocd_pos - 20, 20);
    if (le_at(loc.data(), 4) != 0x07064b50)
      throw_error(ErrorKind::BadInput, "{}: ZIP64 end record locator missing", file);
    const std::uint64_t z = le_at(loc.data() + 8, 8);
    if (z > size || size - z < 56) throw_error(ErrorKind::BadInput, "{}: ZIP64 end record outside the file", file);
    const std::vector<std::byte> rec = read_range(bytes, z, 56);
    if (le_at(rec.data(), 4) != 0x06064b50)
      throw_error(ErrorKind::BadInput, "{}: bad ZIP64 end record signature", file);
    count = le_at(rec.data() + 32, 8);
    cd_size = le_at(rec.data() + 40, 8);
    cd_offset = le_at(rec.data() + 48, 8);
  }
  if (cd_offset > size || cd_size > size - cd_offset)
    throw_error(ErrorKind::BadInput, "{}: zip central directory outside the file", file);
  if (count > cd_size / 46)
    throw_error(ErrorKind::BadInput, "{}: zip central directory too small for its {} entries", file, count);
  const std::vector<std::byte> cd = read_range(bytes, cd_offset, cd_size);
  std::vector<ZipEntry> out;
  out.reserve(static_cast<std::size_t>(count));
  std::size_t pos = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    if (cd.size() - pos < 46 || le_at(cd.data() + pos, 4) != 0x02014b50)
      throw_error(ErrorKind::BadInput, "{}: zip central directory entry {} is malformed", file, i);
    const std::byte* h = cd.data() + pos;
    const auto flags = le_at(h + 8, 2);
    ZipEntry z;
    z.method = static_cast<std::uint16_t>(le_at(h + 10, 2));
    z.size = le_at(h + 20, 4);
    z.uncompressed_size = le_at(h + 24, 4);
    const std::size_t name_len = le_at(h + 28, 2), extra_len = le_at(h + 30, 2), comment_len = le_at(h + 32, 2);
    std::uint64_t lho = le_at(h + 42, 4);
    if (cd.size() - pos - 46 < name_len + extra_len + comment_len)
      throw_error(ErrorKind::BadInput, "{}: zip central directory entry {} runs past the directory", file, i);
    z.name.assign(reinterpret_cast<const char*>(h + 46), name_len);
    if (flags & 1) throw_error(ErrorKind::BadInput, "{}: zip member {} is encrypted", file, z.name);
    // ZIP64 extended information: the 64-bit values of the fields that hold 0xffffffff, in order.
    const std::byte* x = h + 46 + name_len;
    for (std::size_t q = 0; q + 4 <= extra_len;) {
      const auto id = le_at(x + q, 2), len = le_at(x + q + 2, 2);
      if (q + 4 + len > extra_len) throw_error(ErrorKind::BadInput, "{}: zip member {}: bad extra field", file, z.name);
      if (id == 0x0001) {
        std::size_t f = q + 4;
        auto next = [&](std::uint64_t& field) {
          if (field != 0xffffffff) return;
          if (f + 8 > q + 4 + len)
            throw_error(ErrorKind::BadInput, "{}: zip member {}: short ZIP64 field", file, z.name);
          field = le_at(x + f, 8);
          f += 8;
        };
        next(z.uncompressed_size);
        next(z.size);
        next(lho);
      }
      q += 4 + len;
    }
    pos += 46 + name_len + extra_len + comment_len;
    if (lho > size || size - lho < 30)
      throw_error(ErrorKind::BadInput, "{}: zip member {}: local header outside the file", file, z.name);
    std::array<std::byte, 30> local{};
    bytes.read_at(lho, local);
    if (le_at(local.data(), 4) != 0x04034b50)
      throw_error(ErrorKind::BadInput, "{}: zip member {}: bad local header signature", file, z.name);
    z.data_offset = lho + 30 + le_at(local.data() + 26, 2) + le_at(local.data() + 28, 2);
    if (z.data_offset > size || z.size > size - z.data_offset)
      throw_error(ErrorKind::BadInput, "{}: zip member {}: data runs past the end of the file (truncated?)", file,
                  z.name);
    out.push_back(std::move(z));
  }
  return out;
}

namespace {

using pickle::Value;
using VKind = Value::Kind;

struct Storage {
  const ZipEntry* entry = nullptr;
  std::optional<DType> dtype;  // nullopt for UntypedStorage (the tensor's dtype decides)
  std::uint64_t numel = 0;     // elements, or bytes for UntypedStorage
};

struct TorchTensor {
  std::uint64_t data_offset = 0;    // the storage's first byte in the file
  std::int64_t storage_offset = 0;  // elements
  std::vector<std::int64_t> stride;
};

std::optional<DType> storage_dtype(std::string_view cls) {
  static constexpr std::pair<std::string_view, DType> kMap[] = {
      {"DoubleStorage", DType::F64},    {"FloatStorage", DType::F32}, {"HalfStorage", DType::F16},
      {"BFloat16Storage", DType::BF16}, {"LongStorage", DType::I64},  {"IntStorage", DType::I32},
      {"ShortStorage", DType::I16},     {"CharStorage", DType::I8},   {"ByteStorage", DType::U8},
      {"BoolStorage", DType::Bool}};
  for (const auto& [n, d] : kMap)
    if (n == cls) return d;
  return std::nullopt;
}

std::optional<DType> torch_dtype(std::string_view name) {
  static constexpr std::pair<std::string_view, DType> kMap[] = {
      {"float32", DType::F32},   {"float", DType::F32},   {"float16", DType::F16}, {"half", DType::F16},
      {"bfloat16", DType::BF16}, {"float64", DType::F64}, {"double", DType::F64},  {"int64", DType::I64},
      {"long", DType::I64},      {"int32", DType::I32},   {"int", DType::I32},     {"int16", DType::I16},
      {"short", DType::I16},     {"int8", DType::I8},     {"uint8", DType::U8},    {"bool", DType::Bool},
      {"uint16", DType::U16},    {"uint32", DType::U32},  {"uint64", DType::U64}};
  for (const auto& [n, d] : kMap)
    if (n == name) return d;
  return std::nullopt;
}

class TorchSource final : public TensorSource {
 public:
  explicit TorchSource(std::unique_ptr<ByteSource> bytes) : bytes_(std::move(bytes)) { load(); }

  const std::string& path() const override { return bytes_->name(); }
  std::string_view format() const override { return "torch"; }
  const Attributes& attributes() const override { return attrs_; }
  const std::vector<TensorInfo>& tensors() const override { return infos_; }

  void read_rows(const TensorInfo& t, std::int64_t row0, std::int64_t nrows, std::span<std::byte> out) const override;

 private:
  [[noreturn]] void bad(std::string_view what) const { throw_error(ErrorKind::BadInput, "{}: {}", path(), what); }
  void load();
  void flatten(const Value& v, const std::string& name, int depth);
  bool add_tensor(const Value& v, const std::string& name, int depth);
  std::int64_t int_arg(const Value* v, const std::string& tensor, std::string_view what) const;
  const Storage& storage(const Value* pid, const std::string& tensor);

  std::unique_ptr<ByteSource> bytes_;
  std::vector<ZipEntry> entries_;
  std::string prefix_;
  std::unordered_map<std::string, Storage> storages_;
  std::vector<TensorInfo> infos_;
  std::vector<TorchTensor> layout_;
  Attributes attrs_;
  std::unordered_set<std::string> names_;
  std::size_t visits_ = 0, visit_limit_ = 0;
};

void TorchSource::load() {
  entries_ = read_zip_directory(*bytes_);
  if (entries_.empty()) bad("empty zip archive, expected a torch.save checkpoint");
  const std::size_t slash = entries_[0].name.find('/');
  if (slash == std::string::npos) bad("zip archive without a record folder: not a torch.save checkpoint");
  prefix_ = entries_[0].name.substr(0, slash + 1);
  std::unordered_map<std::string, const ZipEntry*> by_name;
  for (const auto& e : entries_) {
    if (e.name.rfind(prefix_, 0) != 0) continue;
    by_name.emplace(e.name.substr(prefix_.size()), &e);
  }
  if (by_name.count("constants.pkl"))
    bad("a TorchScript archive (torch.jit.save); loco reads torch.save checkpoints only");
  auto it = by_name.find("data.pkl");
  if (it == by_name.end()) bad("zip archive without " + prefix_ + "data.pkl: not a torch.save checkpoint");
  if (auto bo = by_name.find("byteorder"); bo != by_name.end()) {
    const ZipEntry& e = *bo->second;
    if (e.method != 0 || e.size > 16) bad("unreadable byteorder record");
    std::vector<std::byte> b = read_range(*bytes_, e.data_offset, e.size);
    const std::string order(reinterpret_cast<const char*>(b.data()), b.size());
    if (order != "little") bad("byteorder '" + order + "': only little-endian checkpoints are read");
  }
  const ZipEntry& pkl = *it->second;
  if (pkl.method != 0) bad("data.pkl is compressed; torch.save stores its records uncompressed");
  if (pkl.size > kMaxPickleBytes) bad("data.pkl larger than 1 GiB");
  for (const auto& [name, e] : by_name)
    if (name.rfind("data/", 0) == 0) storages_.emplace(name.substr(5), Storage{e, std::nullopt, 0});

  const std::vector<std::byte> data = read_range(*bytes_, pkl.data_offset, pkl.size);
  const pickle::Pickle p = pickle::parse(data, path() + ":" + pkl.name);
  visit_limit_ = 4 * p.node_count() + 1024;
  const Value& root = p.root();
  if (!root.is(VKind::Dict) && !root.is(VKind::List) && !root.is(VKind::Tuple) && !add_tensor(root, "", 0))
    bad("data.pkl holds a " + pickle::describe(root) + ", expected a state dict");
  if (root.is(VKind::Dict) || root.is(VKind::List) || root.is(VKind::Tuple)) flatten(root, "", 0);
  else infos_.back().name = "tensor";
}

void TorchSource::flatten(const Value& v, const std::string& name, int depth) {
  if (++visits_ > visit_limit_) bad("data.pkl refers to the same objects too many times");
  if (depth > kMaxDepth) bad(fmt::format("data.pkl nests deeper than {} levels at {}", kMaxDepth, name));
  auto child = [&](const std::string& key) { return name.empty() ? key : name + "." + key; };
  auto claim = [&](const std::string& n) {
    if (!names_.insert(n).second) bad("the name '" + n + "' appears twice in the flattened state dict");
  };
  switch (v.kind) {
    case VKind::Dict:
      for (std::size_t i = 0; i + 1 < v.items.size(); i += 2) {
        const Value& k = *v.items[i];
        std::string key;
        if (k.is(VKind::String)) key = k.text;
        else if (k.is(VKind::Int)) key = std::to_string(k.integer);
        else {
          log::debug("{}: skipping {} with a {} key", path(), name.empty() ? "an entry" : name, pickle::describe(k));
          continue;
        }
        flatten(*v.items[i + 1], child(key), depth + 1);
      }
      return;
    case VKind::List:
    case VKind::Tuple:
      for (std::size_t i = 0; i < v.items.size(); ++i) flatten(*v.items[i], child(std::to_string(i)), depth + 1);
      return;
    case VKind::Int:
      claim(name);
      attrs_.set(name, v.integer);
      return;
    case VKind::Bool:
      claim(name);
      attrs_.set(name, std::int64_t{v.boolean ? 1 : 0});
      return;
    case VKind::Float:
      claim(name);
      attrs_.set(name, v.real);
      return;
    case VKind::String:
      claim(name);
      attrs_.set(name, v.text);
      return;
    default:
      if (add_tensor(v, name, depth)) {
        claim(name);
        return;
      }
      log::debug("{}: skipping {} ({})", path(), name, pickle::describe(v));
  }
}

std::int64_t TorchSource::int_arg(const Value* v, const std::string& tensor, std::string_view what) const {
  if (!v->is(VKind::Int) || v->integer < 0 || static_cast<std::uint64_t>(v->integer) >= kMaxIndex)
    bad(fmt::format("tensor {}: {} is a {}, expected a non-negative integer below 2^62", tensor, what,
                    pickle::describe(*v)));
  return v->integer;
}

const Storage& TorchSource::storage(const Value* pid, const std::string& tensor) {
  if (!pid->is(VKind::PersistentId)) bad("tensor " + tensor + ": storage is a " + pickle::describe(*pid));
  const auto& id = pid->items[0]->items;
  if (id.size() != 5 || !id[0]->is(VKind::String) || id[0]->text != "storage")
    bad("tensor " + tensor + ": persistent id other than ('storage', class, key, location, numel)");
  if (!id[1]->is(VKind::Global) || id[1]->text != "torch" || !id[2]->is(VKind::String))
    bad("tensor " + tensor + ": malformed storage persistent id");
  auto it = storages_.find(id[2]->text);
  if (it == storages_.end()) bad("tensor " + tensor + ": no record " + prefix_ + "data/" + id[2]->text);
  Storage& s = it->second;
  const std::string& cls = id[1]->name;
  std::optional<DType> dt;
  if (cls != "UntypedStorage") {
    dt = storage_dtype(cls);
    if (!dt)
      bad(fmt::format("tensor {}: storage torch.{} holds a dtype loco does not read (quantized or complex)", tensor,
                      cls));
  }
  const auto numel = static_cast<std::uint64_t>(int_arg(id[4], tensor, "storage size"));
  const std::uint64_t need = numel * (dt ? dtype_size(*dt) : 1);
  if (s.entry->method != 0) bad("storage " + s.entry->name + " is compressed; torch.save stores it uncompressed");
  if (s.entry->size < need)
    bad(fmt::format("tensor {}: storage {} holds {} bytes, expected at least {}", tensor, s.entry->name, s.entry->size,
                    need));
  if (s.numel != 0 && (s.dtype != dt)) bad("storage " + s.entry->name + " is used with two different storage classes");
  s.dtype = dt;
  s.numel = std::max(s.numel, numel);
  return s;
}

bool TorchSource::add_tensor(const Value& v, const std::string& name, int depth) {
  if (!v.is(VKind::Call)) return false;
  if (depth > kMaxDepth)
    bad(fmt::format("tensor {}: tensor wrappers nest deeper than {} levels", name.empty() ? "at the root" : name,
                    kMaxDepth));
  const std::string fn = v.callable();
  auto args = v.args();
  if (fn == "torch._utils._rebuild_parameter" || fn == "torch._utils._rebuild_parameter_with_state") {
    if (args.empty() || !add_tensor(*args[0], name, depth + 1)) bad("parameter " + name + " does not wrap a tensor");
    return true;
  }
  if (fn == "torch._tensor._rebuild_from_type_v2") {
    // (func, type, args, state): func(*args) is the tensor; type is a subclass marker.
    if (args.size() < 3 || !args[0]->is(VKind::Global) || !args[2]->is(VKind::Tuple))
      bad("tensor " + name + ": malformed _rebuild_from_type_v2");
    Value call;
    call.kind = VKind::Call;
    call.items = {args[0], args[2]};
    if (!add_tensor(call, name, depth + 1)) bad("tensor " + name + ": _rebuild_from_type_v2 of " + args[0]->name);
    return true;
  }
  const bool v2 = fn == "torch._utils._rebuild_tensor_v2", v3 = fn == "torch._utils._rebuild_tensor_v3";
  if (!v2 && !v3) return false;
  if (args.size() < (v3 ? 7u : 6u)) bad("tensor " + name + ": " + fn + " with too few arguments");
  const Storage& st = storage(args[0], name);
  std::optional<DType> dt = st.dtype;
  if (v3) {
    if (!args[6]->is(VKind::Global) || args[6]->text != "torch") bad("tensor " + name + ": dtype is not a torch dtype");
    const auto d3 = torch_dtype(args[6]->name);
    if (!d3) bad(fmt::format("tensor {}: dtype torch.{} is not one loco reads", name, args[6]->name));
    if (dt && *dt != *d3) bad("tensor " + name + ": dtype disagrees with its storage class");
    dt = d3;
  }
  if (!dt) bad("tensor " + name + ": untyped storage without a dtype");
  const std::uint64_t esz = dtype_size(*dt);
  const std::uint64_t storage_bytes = st.dtype ? st.numel * esz : st.numel;
  if (!args[2]->is(VKind::Tuple) || !args[3]->is(VKind::Tuple) || args[2]->items.size() != args[3]->items.size())
    bad("tensor " + name + ": size and stride must be tuples of the same length");
  TensorInfo info;
  info.name = name;
  info.dtype = *dt;
  TorchTensor lay;
  lay.data_offset = st.entry->data_offset;
  lay.storage_offset = int_arg(args[1], name, "storage offset");
  for (std::size_t i = 0; i < args[2]->items.size(); ++i) {
    info.shape.push_back(int_arg(args[2]->items[i], name, "size"));
    lay.stride.push_back(int_arg(args[3]->items[i], name, "stride"));
  }
  const std::int64_t numel = shape_numel(info.shape);
  if (numel > 0) {
    // Last element reached: offset + Σ (size_i - 1) · stride_i, checked against the storage.
    __extension__ typedef unsigned __int128 u128;  // products of two int64 cannot overflow it
    u128 last = static_cast<u128>(lay.storage_offset);
    for (std::size_t i = 0; i < info.shape.size(); ++i)
      last += static_cast<u128>(info.shape[i] - 1) * static_cast<u128>(lay.stride[i]);
    if ((last + 1) * esz > storage_bytes)
      bad(fmt::format("tensor {}: view of shape {} at offset {} reaches past its storage of {} bytes", name,
                      shape_string(info.shape), lay.storage_offset, storage_bytes));
    // Work stays bounded by what the file holds: a view with more elements than its storage
    // repeats them (stride 0 of expand(), overlapping strides), which a 500-byte file can make
    // 2^40 elements long. Such views are read up to kMaxRepeatedView elements.
    if (static_cast<std::uint64_t>(numel) > storage_bytes / esz && numel > kMaxRepeatedView)
      bad(fmt::format(
          "tensor {}: view of shape {} (strides {}) has {} elements but its storage holds {}: a "
          "broadcast or overlapping view larger than loco reads ({} elements; save it with "
          ".contiguous())",
          name, shape_string(info.shape), shape_string(lay.stride), numel, storage_bytes / esz, kMaxRepeatedView));
  }
  infos_.push_back(std::move(info));
  layout_.push_back(std::move(lay));
  return true;
}

void TorchSource::read_rows(const TensorInfo& t, std::int64_t row0, std::int64_t nrows,
                            std::span<std::byte> out) const {
  const std::size_t index = static_cast<std::size_t>(&t - infos_.data());
  if (index >= infos_.size())
    throw_error(ErrorKind::Internal, "{}: tensor {} is not one of this source's", path(), t.name);
  const TorchTensor& lay = layout_[index];
  const std::size_t esz = dtype_size(t.dtype);
  if (row0 < 0 || nrows < 0 || row0 > t.rows() - nrows)
    throw_error(ErrorKind::Internal, "{}: tensor {}: rows [{}, {}) outside [0, {})", path(), t.name, row0, row0 + nrows,
                t.rows());
  const std::size_t want = static_cast<std::size_t>(nrows * t.row_elements()) * esz;
  if (out.size() != want)
    throw_error(ErrorKind::Internal, "{}: tensor {}: buffer of {} bytes for {} bytes of rows", path(), t.name,
                out.size(), want);
  if (want == 0) return;
  // The block as a view: shape [nrows, shape[1:]], strides unchanged, first element moved by row0.
  Shape shape = t.shape.empty() ? Shape{1} : t.shape;
  std::vector<std::int64_t> stride = t.shape.empty() ? std::vector<std::int64_t>{1} : lay.stride;
  shape[0] = nrows;
  const std::uint64_t first = static_cast<std::uint64_t>(lay.storage_offset + row0 * stride[0]);
  // Innermost run of elements contiguous in the storage (dimensions of size 1 do not break it).
  std::int64_t run = 1;
  std::size_t k = shape.size();
  while (k > 0 && (shape[k - 1] == 1 || stride[k - 1] == run)) {
    run *= shape[k - 1];
    --k;
  }
  if (k == 0) {
    bytes_->read_at(lay.data_offset + first * esz, out);
    return;
  }
  std::uint64_t span_elems = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) span_elems += static_cast<std::uint64_t>(shape[i] - 1) * stride[i];
  const std::size_t run_bytes = static_cast<std::size_t>(run) * esz;
  const bool whole_span = span_elems * esz <= 2 * want + (1u << 20);
  std::vector<std::byte> span_buf;
  if (whole_span) {
    span_buf.resize(static_cast<std::size_t>(span_elems * esz));
    bytes_->read_at(lay.data_offset + first * esz, span_buf);
  }
  // Odometer over the outer dimensions [0, k).
  std::vector<std::int64_t> idx(k, 0);
  std::size_t o = 0;
  while (true) {
    std::uint64_t off = 0;
    for (std::size_t i = 0; i < k; ++i) off += static_cast<std::uint64_t>(idx[i] * stride[i]);
    if (whole_span) std::memcpy(out.data() + o, span_buf.data() + off * esz, run_bytes);
    else bytes_->read_at(lay.data_offset + (first + off) * esz, out.subspan(o, run_bytes));
    o += run_bytes;
    std::size_t d = k;
    while (d > 0 && ++idx[d - 1] == shape[d - 1]) idx[--d] = 0;
    if (d == 0) break;
  }
}

}  // namespace

std::unique_ptr<TensorSource> open_torch(std::unique_ptr<ByteSource> bytes) {
  return std::make_unique<TorchSource>(std::move(bytes));
}

}  // namespace loco::io
