// torch.save archives written without Python: a protocol-2 pickle encoder for the few objects a
// checkpoint dict needs and a zip writer (stored members, 64-byte aligned data, ZIP64 when needed).
#include "loco/io/torch_write.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "loco/core/error.hpp"
#include "loco/core/json.hpp"
#include "loco/io/output.hpp"

namespace loco::io {

namespace {

constexpr std::array<std::uint32_t, 8 * 256> make_crc_table() {
  std::array<std::uint32_t, 8 * 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  // Slicing by 8: table k advances a byte followed by k zero bytes.
  for (std::uint32_t i = 0; i < 256; ++i)
    for (int k = 1; k < 8; ++k) t[k * 256 + i] = (t[(k - 1) * 256 + i] >> 8) ^ t[t[(k - 1) * 256 + i] & 0xff];
  return t;
}
constexpr auto kCrc = make_crc_table();

}  // namespace

std::uint32_t crc32(std::uint32_t crc, std::span<const std::byte> data) noexcept {
  std::uint32_t c = ~crc;
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t n = data.size();
  while (n >= 8) {
    std::uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    if constexpr (std::endian::native == std::endian::big) {
      lo = __builtin_bswap32(lo);
      hi = __builtin_bswap32(hi);
    }
    lo ^= c;
    c = kCrc[7 * 256 + (lo & 0xff)] ^ kCrc[6 * 256 + ((lo >> 8) & 0xff)] ^ kCrc[5 * 256 + ((lo >> 16) & 0xff)] ^
        kCrc[4 * 256 + (lo >> 24)] ^ kCrc[3 * 256 + (hi & 0xff)] ^ kCrc[2 * 256 + ((hi >> 8) & 0xff)] ^
        kCrc[1 * 256 + ((hi >> 16) & 0xff)] ^ kCrc[hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = kCrc[(c ^ *p++) & 0xff] ^ (c >> 8);
  return ~c;
}

std::optional<std::string> torch_storage_class(DType t) noexcept {
  switch (t) {
    case DType::F32: return "FloatStorage";
    case DType::F16: return "HalfStorage";
    case DType::BF16: return "BFloat16Storage";
    case DType::F64: return "DoubleStorage";
    case DType::I64: return "LongStorage";
    case DType::I32: return "IntStorage";
    case DType::I16: return "ShortStorage";
    case DType::I8: return "CharStorage";
    case DType::U8: return "ByteStorage";
    case DType::Bool: return "BoolStorage";
    default: return std::nullopt;
  }
}

namespace {

// --- pickle encoding (protocol 2) ---------------------------------------------------------------

class PickleOut {
 public:
  PickleOut() { op(0x80), op(2); }
  void op(unsigned char c) { b_.push_back(static_cast<char>(c)); }
  void le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void integer(std::int64_t v) {
    if (v >= 0 && v < 256) op('K'), le(static_cast<std::uint64_t>(v), 1);
    else if (v >= 0 && v < 65536) op('M'), le(static_cast<std::uint64_t>(v), 2);
    else if (v >= INT32_MIN && v <= INT32_MAX) op('J'), le(static_cast<std::uint32_t>(static_cast<std::int32_t>(v)), 4);
    else op(0x8a), op(8), le(static_cast<std::uint64_t>(v), 8);  // LONG1, two's complement
  }
  void real(double v) {
    op('G');
    const auto bits = std::bit_cast<std::uint64_t>(v);
    for (int i = 7; i >= 0; --i) b_.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
  }
  void boolean(bool v) { op(v ? 0x88 : 0x89); }
  void str(std::string_view s) {
    op('X');
    le(s.size(), 4);
    b_.append(s);
  }
  void global(std::string_view module, std::string_view name) {
    op('c');
    b_.append(module), b_.push_back('\n');
    b_.append(name), b_.push_back('\n');
  }
  void tuple_of_ints(const std::vector<std::int64_t>& v) {
    if (v.empty()) return op(')');
    if (v.size() > 3) op('(');
    for (auto x : v) integer(x);
    op(v.size() == 1 ? 0x85 : v.size() == 2 ? 0x86 : v.size() == 3 ? 0x87 : 't');
  }
  // torch._utils._rebuild_tensor_v2 of a contiguous storage data/<key>.
  void tensor(const std::string& key, const std::string& storage, const Shape& shape) {
    global("torch._utils", "_rebuild_tensor_v2");
    op('(');
    op('(');
    str("storage");
    global("torch", storage);
    str(key);
    str("cpu");
    integer(shape_numel(shape));
    op('t');
    op('Q');  // BINPERSID
    integer(0);
    tuple_of_ints(std::vector<std::int64_t>(shape.begin(), shape.end()));
    std::vector<std::int64_t> stride(shape.size(), 1);
    for (std::size_t i = shape.size(); i-- > 1;) stride[i - 1] = stride[i] * std::max<std::int64_t>(shape[i], 1);
    tuple_of_ints(stride);
    boolean(false);
    global("collections", "OrderedDict");
    op(')');
    op('R');
    op('t');
    op('R');
  }
  // DeepSpeed's SubparamShape dataclass, as pickle protocol 2 saves an object: NEWOBJ + BUILD.
  void subparam_shape(const std::string& json_text, const std::string& where) {
    const nlohmann::json j = parse_json(json_text, where + ": sub_param_shape");
    auto bad = [&] {
      throw_error(ErrorKind::BadInput,
                  "{}: sub_param_shape must be {{\"patterns\": [str...], \"shape\": [int or [int...]...], "
                  "\"partition_dim\": int}}, got {}",
                  where, json_text);
    };
    if (!j.is_object() || !j.contains("shape") || !j.contains("partition_dim") || !j["shape"].is_array() ||
        !j["partition_dim"].is_number_integer())
      bad();
    global("deepspeed.checkpoint.universal_checkpoint", "SubparamShape");
    op(')');
    op(0x81);  // NEWOBJ
    op('}');
    op('(');
    str("patterns");
    op(']');
    if (j.contains("patterns")) {
      if (!j["patterns"].is_array()) bad();
      if (!j["patterns"].empty()) {
        op('(');
        for (const auto& p : j["patterns"]) {
          if (!p.is_string()) bad();
          str(p.get<std::string>());
        }
        op('e');
      }
    }
    str("shape");
    op('(');
    for (const auto& d : j["shape"]) {
      if (d.is_number_integer()) {
        integer(d.get<std::int64_t>());
      } else if (d.is_array()) {
        std::vector<std::int64_t> v;
        for (const auto& x : d) {
          if (!x.is_number_integer()) bad();
          v.push_back(x.get<std::int64_t>());
        }
        tuple_of_ints(v);
      } else {
        bad();
      }
    }
    op('t');
    str("partition_dim");
    integer(j["partition_dim"].get<std::int64_t>());
    op('u');
    op('b');  // BUILD
  }
  std::span<const std::byte> bytes() const { return {reinterpret_cast<const std::byte*>(b_.data()), b_.size()}; }

 private:
  std::string b_;
};

// --- zip writing --------------------------------------------------------------------------------

struct Member {
  std::string name;
  std::uint64_t header_offset = 0, size = 0;
  std::uint32_t crc = 0;
};

class ZipOut {
 public:
  explicit ZipOut(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw_error(ErrorKind::Io, "{}: cannot create: {}", path, std::strerror(errno));
  }
  ~ZipOut() {
    if (fd_ >= 0) ::close(fd_);
  }
  ZipOut(const ZipOut&) = delete;
  ZipOut& operator=(const ZipOut&) = delete;

  // Starts member name of size bytes; its data follows through write(), then end_member().
  void begin_member(const std::string& name, std::uint64_t size) {
    Member m{name, pos_, size, 0};
    const bool big = size >= 0xffffffffu;
    std::string h;
    auto put = [&](std::uint64_t v, int n) {
      for (int i = 0; i < n; ++i) h.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    };
    put(0x04034b50, 4);
    put(big ? 45 : 20, 2);
    put(0, 2);     // flags
    put(0, 2);     // stored
    put(0, 2);     // time
    put(0x21, 2);  // date: 1980-01-01
    put(0, 4);     // crc, patched by end_member
    put(big ? 0xffffffffu : size, 4);
    put(big ? 0xffffffffu : size, 4);
    put(name.size(), 2);
    const std::size_t z64 = big ? 20 : 0;
    const std::uint64_t base = pos_ + 30 + name.size() + z64 + 4;
    const std::size_t pad = static_cast<std::size_t>((64 - base % 64) % 64);
    put(z64 + 4 + pad, 2);
    h += name;
    if (big) put(0x0001, 2), put(16, 2), put(size, 8), put(size, 8);
    put(0x4246, 2);  // "FB": PyTorch's alignment padding
    put(pad, 2);
    h.append(pad, 'Z');
    raw(h.data(), h.size());
    members_.push_back(std::move(m));
    left_ = size;
    crc_ = 0;
  }
  void write(std::span<const std::byte> data) {
    if (data.size() > left_) throw_error(ErrorKind::Internal, "{}: zip member written past its size", path_);
    crc_ = crc32(crc_, data);
    left_ -= data.size();
    raw(data.data(), data.size());
  }
  void end_member() {
    if (left_ != 0) throw_error(ErrorKind::Internal, "{}: zip member {} is short", path_, members_.back().name);
    Member& m = members_.back();
    m.crc = crc_;
    std::array<unsigned char, 4> c{};
    for (int i = 0; i < 4; ++i) c[i] = static_cast<unsigned char>((crc_ >> (8 * i)) & 0xff);
    if (::pwrite(fd_, c.data(), 4, static_cast<off_t>(m.header_offset + 14)) != 4)
      throw_error(ErrorKind::Io, "{}: write failed: {}", path_, std::strerror(errno));
  }
  void member(const std::string& name, std::span<const std::byte> data) {
    begin_member(name, data.size());
    write(data);
    end_member();
  }
  // The central directory and end records; closes the file.
  void finish() {
    const std::uint64_t cd_offset = pos_;
    for (const Member& m : members_) {
      const bool big_size = m.size >= 0xffffffffu, big_off = m.header_offset >= 0xffffffffu;
      std::string h;
      auto put = [&](std::uint64_t v, int n) {
        for (int i = 0; i < n; ++i) h.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
      };
      const std::size_t z64 = (big_size ? 16 : 0) + (big_off ? 8 : 0);
      put(0x02014b50, 4);
      put(z64 ? 45 : 20, 2);
      put(z64 ? 45 : 20, 2);
      put(0, 2), put(0, 2), put(0, 2), put(0x21, 2);
      put(m.crc, 4);
      put(big_size ? 0xffffffffu : m.size, 4);
      put(big_size ? 0xffffffffu : m.size, 4);
      put(m.name.size(), 2);
      put(z64 ? z64 + 4 : 0, 2);
      put(0, 2), put(0, 2), put(0, 2), put(0, 4);
      put(big_off ? 0xffffffffu : m.header_offset, 4);
      h += m.name;
      if (z64) {
        put(0x0001, 2), put(z64, 2);
        if (big_size) put(m.size, 8), put(m.size, 8);
        if (big_off) put(m.header_offset, 8);
      }
      raw(h.data(), h.size());
    }
    const std::uint64_t cd_size = pos_ - cd_offset, count = members_.size();
    std::string e;
    auto put = [&](std::uint64_t v, int n) {
      for (int i = 0; i < n; ++i) e.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    };
    const bool z64 = count >= 0xffff || cd_size >= 0xffffffffu || cd_offset >= 0xffffffffu;
    if (z64) {
      const std::uint64_t rec = pos_;
      put(0x06064b50, 4), put(44, 8), put(45, 2), put(45, 2), put(0, 4), put(0, 4);
      put(count, 8), put(count, 8), put(cd_size, 8), put(cd_offset, 8);
      put(0x07064b50, 4), put(0, 4), put(rec, 8), put(1, 4);
    }
    put(0x06054b50, 4), put(0, 2), put(0, 2);
    put(z64 ? 0xffff : count, 2), put(z64 ? 0xffff : count, 2);
    put(z64 ? 0xffffffffu : cd_size, 4), put(z64 ? 0xffffffffu : cd_offset, 4);
    put(0, 2);
    raw(e.data(), e.size());
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw_error(ErrorKind::Io, "{}: write failed: {}", path_, std::strerror(errno));
  }

 private:
  void raw(const void* p, std::size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t w = ::write(fd_, c, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw_error(ErrorKind::Io, "{}: write failed: {}", path_, std::strerror(errno));
      }
      c += w;
      n -= static_cast<std::size_t>(w);
      pos_ += static_cast<std::uint64_t>(w);
    }
  }

  std::string path_;
  int fd_ = -1;
  std::uint64_t pos_ = 0, left_ = 0;
  std::uint32_t crc_ = 0;
  std::vector<Member> members_;
};

std::span<const std::byte> text_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

void write_torch_dict(const std::string& path, const std::string& record, const std::vector<TorchItem>& items,
                      std::size_t block_bytes) {
  PickleOut pk;
  pk.op('}');
  std::vector<const TorchItem*> tensors;
  if (!items.empty()) pk.op('(');
  for (const TorchItem& it : items) {
    pk.str(it.key);
    const TorchValue& v = it.value;
    switch (v.kind) {
      case TorchValue::Kind::Int: pk.integer(v.integer); break;
      case TorchValue::Kind::Bool: pk.boolean(v.integer != 0); break;
      case TorchValue::Kind::Float: pk.real(v.real); break;
      case TorchValue::Kind::String: pk.str(v.text); break;
      case TorchValue::Kind::SubparamShape: pk.subparam_shape(v.text, path); break;
      case TorchValue::Kind::Tensor: {
        const auto cls = torch_storage_class(v.tensor->dtype);
        if (!cls)
          throw_error(ErrorKind::Usage, "{}: tensor {} is {}, which torch.save's typed storages do not hold", path,
                      v.tensor->key(), dtype_name(v.tensor->dtype));
        pk.tensor(std::to_string(tensors.size()), *cls, v.tensor->shape);
        tensors.push_back(&it);
        break;
      }
    }
  }
  if (!items.empty()) pk.op('u');
  pk.op('.');

  AtomicOutput out(path);
  ZipOut zip(out.temp_path());
  const std::string pre = record + "/";
  zip.member(pre + "data.pkl", pk.bytes());
  zip.member(pre + "byteorder", text_bytes("little"));
  std::vector<std::byte> block;
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    const TensorSource& src = *tensors[k]->value.source;
    const TensorInfo& t = *tensors[k]->value.tensor;
    const std::size_t esz = dtype_size(t.dtype);
    zip.begin_member(pre + "data/" + std::to_string(k), static_cast<std::uint64_t>(t.numel()) * esz);
    if (t.numel() > 0) {
      const std::int64_t step = rows_per_block(t, block_bytes);
      for (std::int64_t r = 0; r < t.rows(); r += step) {
        const std::int64_t n = std::min(step, t.rows() - r);
        block.resize(static_cast<std::size_t>(n * t.row_elements()) * esz);
        src.read_rows(t, r, n, block);
        zip.write(block);
      }
    }
    zip.end_member();
  }
  zip.member(pre + "version", text_bytes("3\n"));
  zip.finish();
  out.commit();
}

void write_torch_scalar(const std::string& path, const std::string& record, double value, bool integer,
                        std::optional<DType> dtype) {
  PickleOut pk;
  std::vector<std::byte> storage;
  if (dtype) {
    const auto cls = torch_storage_class(*dtype);
    if (!cls) throw_error(ErrorKind::Usage, "{}: a {} scalar tensor cannot be written", path, dtype_name(*dtype));
    pk.tensor("0", *cls, {});
    storage.resize(dtype_size(*dtype));
    convert_elements(DType::F64, reinterpret_cast<const std::byte*>(&value), *dtype, storage.data(), 1);
  } else if (integer) {
    pk.integer(static_cast<std::int64_t>(value));
  } else {
    pk.real(value);
  }
  pk.op('.');
  AtomicOutput out(path);
  ZipOut zip(out.temp_path());
  const std::string pre = record + "/";
  zip.member(pre + "data.pkl", pk.bytes());
  zip.member(pre + "byteorder", text_bytes("little"));
  if (dtype) zip.member(pre + "data/0", storage);
  zip.member(pre + "version", text_bytes("3\n"));
  zip.finish();
  out.commit();
}

}  // namespace loco::io
