// The GGUF reader and writer (io/gguf.hpp): header and tensor infos checked against the file's
// size, data read on demand (dequantized for Q8_0, Q4_0 and Q4_1), outputs written in place.
#include "loco/io/gguf.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include <fmt/ranges.h>

#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/io/detail/gguf_kv.hpp"
#include "loco/io/detail/untrusted.hpp"
#include "loco/io/output.hpp"

namespace loco::io {
namespace {

using detail::FileDescriptor;
using detail::FlatSource;
using detail::pwrite_all;
using detail::RowLedger;
using detail::shown;
using detail::utf8_error_at;

// Tensor data and header fields are little-endian and copied to and from memory as they are.
static_assert(std::endian::native == std::endian::little, "GGUF I/O assumes a little-endian machine");

// ggml's limits (ggml.h): GGML_MAX_DIMS dimensions, names shorter than GGML_MAX_NAME bytes.
constexpr std::uint32_t kMaxDims = 4;
constexpr std::size_t kMaxName = 64;
// loco indexes elements in int64 (shape_numel's bound).
constexpr std::uint64_t kMaxLocoElements = std::uint64_t{1} << 62;
// The smallest tensor info: name length, n_dims, type, offset.
constexpr std::uint64_t kMinTensorInfo = 8 + 4 + 4 + 8;

// ggml types by id (ggml-org/ggml docs/gguf.md, enum ggml_type): block elements, bytes per
// block, and the dtype loco reads it as (none: refused).
struct GgmlType {
  std::string_view name;
  std::uint32_t block = 0, bytes = 0;
  std::optional<DType> loco;
};
// A type loco does not read.
constexpr GgmlType none(std::string_view name) { return {name, 0, 0, std::nullopt}; }
constexpr std::uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8, kI8 = 24, kI16 = 25, kI32 = 26, kI64 = 27,
                        kF64 = 28, kBF16 = 30;
constexpr std::array<GgmlType, 40> kGgmlTypes{{
    {"F32", 1, 4, DType::F32},
    {"F16", 1, 2, DType::F16},
    {"Q4_0", 32, 18, DType::F32},
    {"Q4_1", 32, 20, DType::F32},
    none("Q4_2 (removed)"),
    none("Q4_3 (removed)"),
    none("Q5_0"),
    none("Q5_1"),
    {"Q8_0", 32, 34, DType::F32},
    none("Q8_1"),
    none("Q2_K"),
    none("Q3_K"),
    none("Q4_K"),
    none("Q5_K"),
    none("Q6_K"),
    none("Q8_K"),
    none("IQ2_XXS"),
    none("IQ2_XS"),
    none("IQ3_XXS"),
    none("IQ1_S"),
    none("IQ4_NL"),
    none("IQ3_S"),
    none("IQ2_S"),
    none("IQ4_XS"),
    {"I8", 1, 1, DType::I8},
    {"I16", 1, 2, DType::I16},
    {"I32", 1, 4, DType::I32},
    {"I64", 1, 8, DType::I64},
    {"F64", 1, 8, DType::F64},
    none("IQ1_M"),
    {"BF16", 1, 2, DType::BF16},
    none("Q4_0_4_4 (removed)"),
    none("Q4_0_4_8 (removed)"),
    none("Q4_0_8_8 (removed)"),
    none("TQ1_0"),
    none("TQ2_0"),
    none("IQ4_NL_4_4 (removed)"),
    none("IQ4_NL_4_8 (removed)"),
    none("IQ4_NL_8_8 (removed)"),
    none("MXFP4"),
}};

std::string type_name(std::uint32_t id) {
  return id < kGgmlTypes.size() ? std::string(kGgmlTypes[id].name) : fmt::format("{} (not a ggml type)", id);
}

// The ggml type loco writes a dtype as; nullopt where GGUF has none (unsigned, bool).
std::optional<std::uint32_t> ggml_type_of(DType t) {
  switch (t) {
    case DType::F32: return kF32;
    case DType::F16: return kF16;
    case DType::BF16: return kBF16;
    case DType::F64: return kF64;
    case DType::I8: return kI8;
    case DType::I16: return kI16;
    case DType::I32: return kI32;
    case DType::I64: return kI64;
    default: return std::nullopt;
  }
}

bool quantized(std::uint32_t id) { return id == kQ4_0 || id == kQ4_1 || id == kQ8_0; }

std::uint64_t align_up(std::uint64_t x, std::uint64_t a) { return (x + a - 1) / a * a; }

std::uint16_t load16(const std::byte* p) {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// One block of 32 values, as ggml-org/llama.cpp ggml/src/ggml-quants.c dequantize_row_q8_0,
// dequantize_row_q4_0 and dequantize_row_q4_1 compute them (block layouts block_q8_0 {f16 d;
// int8 qs[32]}, block_q4_0 {f16 d; u8 qs[16]}, block_q4_1 {f16 d; f16 m; u8 qs[16]} of
// ggml-common.h): Q8_0 x = d·q; Q4_0 x = d·(q − 8); Q4_1 x = d·q + m, where byte j of qs holds
// element j in its low nibble and element j + 16 in its high nibble. Each product of a small
// integer and an f16 is exact in float32, so the results are ggml's bit for bit.
void dequantize_block(std::uint32_t type, const std::byte* b, float* y) {
  const float d = half_to_float(load16(b));
  const auto* u = reinterpret_cast<const std::uint8_t*>(b);
  if (type == kQ8_0) {
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<std::int8_t>(u[2 + j])) * d;
  } else if (type == kQ4_0) {
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((u[2 + j] & 0x0F) - 8) * d;
      y[j + 16] = static_cast<float>((u[2 + j] >> 4) - 8) * d;
    }
  } else {  // kQ4_1
    const float m = half_to_float(load16(b + 2));
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(u[4 + j] & 0x0F) * d + m;
      y[j + 16] = static_cast<float>(u[4 + j] >> 4) * d + m;
    }
  }
}

struct Stored {
  std::uint32_t type = 0;
  std::uint64_t at = 0;  // absolute file offset of the tensor's data
};

class GgufSource final : public FlatSource {
 public:
  GgufSource(std::unique_ptr<ByteSource> bytes, Attributes attrs, std::vector<TensorInfo> tensors,
             std::vector<Stored> stored)
      : FlatSource(std::move(bytes), std::move(attrs), std::move(tensors)), stored_(std::move(stored)) {}

  std::string_view format() const override { return "gguf"; }

  void read_rows(const TensorInfo& t, std::int64_t row0, std::int64_t nrows, std::span<std::byte> out) const override {
    const Stored& s = stored_[check_read(t, row0, nrows, out.size())];
    const std::uint64_t count = static_cast<std::uint64_t>(nrows) * static_cast<std::uint64_t>(t.row_elements());
    if (count == 0) return;
    const std::uint64_t first = static_cast<std::uint64_t>(row0) * static_cast<std::uint64_t>(t.row_elements());
    if (!quantized(s.type)) {
      bytes().read_at(s.at + first * dtype_size(t.dtype), out);
      return;
    }
    // Elements [first, first + count) lie in blocks [first / 32, ...); read a bounded run of blocks
    // at a time and keep the part of each block that is asked for.
    const GgmlType& g = kGgmlTypes[s.type];
    constexpr std::uint64_t kRun = 4096;  // blocks per read: 136 KiB of Q8_0
    std::vector<std::byte> run;
    std::array<float, 32> y;
    std::uint64_t block = first / 32, skip = first % 32, done = 0;
    while (done < count) {
      const std::uint64_t blocks = std::min(kRun, (skip + (count - done) + 31) / 32);
      run.resize(static_cast<std::size_t>(blocks * g.bytes));
      bytes().read_at(s.at + block * g.bytes, run);
      for (std::uint64_t k = 0; k < blocks; ++k) {
        dequantize_block(s.type, run.data() + k * g.bytes, y.data());
        const std::uint64_t take = std::min<std::uint64_t>(32 - skip, count - done);
        std::memcpy(out.data() + done * 4, y.data() + skip, take * 4);
        done += take;
        skip = 0;
      }
      block += blocks;
    }
  }

 private:
  std::vector<Stored> stored_;
};

// ---------------------------------------------------------------------------------------------
// Writing

// llama.cpp's LLAMA_FTYPE for the written tensors: 0 all F32, 1 mostly F16, 32 mostly BF16 (by
// elements among the float tensors).
std::uint32_t file_type(const std::vector<TensorInfo>& plan) {
  std::uint64_t f16 = 0, bf16 = 0;
  for (const TensorInfo& t : plan) {
    if (t.dtype == DType::F16) f16 += static_cast<std::uint64_t>(t.numel());
    if (t.dtype == DType::BF16) bf16 += static_cast<std::uint64_t>(t.numel());
  }
  if (f16 == 0 && bf16 == 0) return 0;
  return bf16 > f16 ? 32 : 1;
}

class GgufSink final : public TensorSink {
 public:
  GgufSink(const std::string& path, const Attributes& root, std::vector<TensorInfo> plan)
      : out_(path), plan_(std::move(plan)) {
    const std::vector<std::byte> header = build_header(root);
    ledger_ = std::make_unique<RowLedger>(plan_, row_bytes_);
    file_.fd = ::open(out_.temp_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (file_.fd < 0)
      throw_error(ErrorKind::Io, "{}: cannot create {}: {}", path, out_.temp_path(), std::strerror(errno));
    // The file at its full size first: the padding between tensors is then zeros.
    if (::ftruncate(file_.fd, static_cast<off_t>(file_size_)) != 0)
      throw_error(ErrorKind::Io, "{}: cannot size the file to {} bytes: {}", path, file_size_, std::strerror(errno));
    pwrite_all(file_.fd, header.data(), header.size(), 0, path);
  }

  const std::vector<TensorInfo>& plan() const override { return plan_; }

  void write_rows(std::size_t index, std::int64_t row0, std::int64_t nrows, std::span<const std::byte> data) override {
    const std::string& path = out_.final_path();
    if (committed_) throw_error(ErrorKind::Internal, "{}: write after commit", path);
    const std::uint64_t within = ledger_->claim(path, index, row0, nrows, data.size());
    if (!data.empty()) pwrite_all(file_.fd, data.data(), data.size(), data_at_[index] + within, path);
  }

  void set_attribute(std::string_view name, AttrValue) override {
    throw_error(ErrorKind::Usage,
                "{}: cannot add attribute '{}': a GGUF header precedes the data, so its key/values "
                "are fixed when the file is created",
                out_.final_path(), name);
  }
  void set_group_attribute(std::string_view group, std::string_view name, AttrValue) override {
    throw_error(ErrorKind::Usage, "{}: cannot add attribute '{}' to group '{}': GGUF files have no groups",
                out_.final_path(), name, group);
  }

  void commit() override {
    const std::string& path = out_.final_path();
    if (committed_) throw_error(ErrorKind::Internal, "{}: committed twice", path);
    ledger_->check_complete(path);
    const int fd = file_.fd;
    file_.fd = -1;
    if (::close(fd) != 0) throw_error(ErrorKind::Io, "{}: write failed on close: {}", path, std::strerror(errno));
    out_.commit();
    committed_ = true;
  }

 private:
  // Validates the plan, lays the tensors out in plan order and returns the padded header.
  std::vector<std::byte> build_header(const Attributes& root) {
    const std::string& path = out_.final_path();
    std::unordered_set<std::string_view> names;
    std::size_t with_attrs = 0;
    std::vector<std::uint32_t> types;
    for (const TensorInfo& t : plan_) {
      if (t.group != "tensors")
        throw_error(ErrorKind::Usage, "{}: GGUF holds only model tensors; {} is in group '{}'", path, t.key(), t.group);
      if (!names.insert(t.name).second) throw_error(ErrorKind::Usage, "{}: tensor '{}' is planned twice", path, t.name);
      if (t.name.size() >= kMaxName)
        throw_error(ErrorKind::Usage, "{}: tensor name {} has {} bytes; GGUF readers (ggml) take names of at most {}",
                    path, shown(t.name), t.name.size(), kMaxName - 1);
      if (utf8_error_at(t.name) != std::string_view::npos)
        throw_error(ErrorKind::BadInput, "{}: tensor name {} is not valid UTF-8, which GGUF needs", path,
                    shown(t.name));
      if (t.shape.size() > kMaxDims)
        throw_error(ErrorKind::Usage, "{}: tensor {} has shape {}; GGUF (ggml) tensors have at most {} dimensions",
                    path, t.name, shape_string(t.shape), kMaxDims);
      const auto type = ggml_type_of(t.dtype);
      if (!type)
        throw_error(ErrorKind::Usage,
                    "{}: tensor {} is {}, which GGUF has no type for (it stores float32, float16, "
                    "bfloat16, float64 and signed integers)",
                    path, t.name, dtype_name(t.dtype));
      types.push_back(*type);
      if (!t.attrs.empty()) ++with_attrs;
    }
    if (with_attrs > 0)
      log::warn("{}: GGUF has no per-tensor attributes; those of {} tensor(s) are not written", path, with_attrs);

    const gguf::WrittenMetadata meta = gguf::write_metadata(root, file_type(plan_), path);
    std::vector<std::byte> h(4);
    std::memcpy(h.data(), "GGUF", 4);
    auto raw = [&](const void* p, std::size_t n) {
      const auto* b = static_cast<const std::byte*>(p);
      h.insert(h.end(), b, b + n);
    };
    auto put = [&](auto v) { raw(&v, sizeof v); };
    put(std::uint32_t{3});
    put(static_cast<std::uint64_t>(plan_.size()));
    put(meta.count);
    raw(meta.bytes.data(), meta.bytes.size());
    std::uint64_t offset = 0;
    data_at_.assign(plan_.size(), 0);
    row_bytes_.assign(plan_.size(), 0);
    for (std::size_t i = 0; i < plan_.size(); ++i) {
      const TensorInfo& t = plan_[i];
      put(static_cast<std::uint64_t>(t.name.size()));
      raw(t.name.data(), t.name.size());
      put(static_cast<std::uint32_t>(t.shape.size()));
      for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) put(static_cast<std::uint64_t>(*d));  // innermost first
      put(types[i]);
      put(offset);
      data_at_[i] = offset;
      row_bytes_[i] = static_cast<std::uint64_t>(t.row_elements()) * dtype_size(t.dtype);
      offset += align_up(static_cast<std::uint64_t>(t.numel()) * dtype_size(t.dtype), meta.alignment);
    }
    h.resize(static_cast<std::size_t>(align_up(h.size(), meta.alignment)), std::byte{0});
    for (auto& at : data_at_) at += h.size();
    file_size_ = h.size() + offset;
    return h;
  }

  AtomicOutput out_;
  std::vector<TensorInfo> plan_;
  std::vector<std::uint64_t> data_at_;    // absolute file offset of each planned tensor
  std::vector<std::uint64_t> row_bytes_;  // bytes per leading-dimension row
  std::unique_ptr<RowLedger> ledger_;
  std::uint64_t file_size_ = 0;
  FileDescriptor file_;  // declared after out_: closed before the temporary file is removed
  bool committed_ = false;
};

}  // namespace

bool looks_like_gguf(std::span<const std::byte> head) noexcept {
  return head.size() >= 4 && std::memcmp(head.data(), "GGUF", 4) == 0;
}

std::unique_ptr<TensorSource> open_gguf(std::unique_ptr<ByteSource> bytes) {
  const std::string& file = bytes->name();
  gguf::Cursor c(*bytes);
  std::array<char, 4> magic{};
  c.read(magic.data(), 4, "the magic");
  if (std::memcmp(magic.data(), "GGUF", 4) != 0) c.fail("the file does not start with \"GGUF\"");
  const auto version = c.get<std::uint32_t>("the version");
  const std::uint32_t swapped = __builtin_bswap32(version);
  if (swapped == 2 || swapped == 3)
    throw_error(ErrorKind::BadInput,
                "{}: a big-endian GGUF file (version {} stored byte-swapped); loco reads "
                "little-endian GGUF only",
                file, swapped);
  if (version == 1)
    throw_error(ErrorKind::BadInput, "{}: GGUF version 1, which loco does not read (it reads versions 2 and 3)", file);
  if (version != 2 && version != 3)
    throw_error(ErrorKind::BadInput, "{}: GGUF version {}; loco reads versions 2 and 3", file, version);
  const auto n_tensors = c.get<std::uint64_t>("the tensor count");
  const auto n_kv = c.get<std::uint64_t>("the key/value count");
  if (n_tensors > c.remaining() / kMinTensorInfo)
    c.fail("it declares {} tensors, more than the {} bytes after it can describe", n_tensors, c.remaining());
  gguf::ReadMetadata meta = gguf::read_metadata(c, n_kv);
  if (n_tensors > c.remaining() / kMinTensorInfo)
    c.fail("it declares {} tensors, more than the {} bytes after the key/values can describe", n_tensors,
           c.remaining());

  std::vector<TensorInfo> tensors;
  std::vector<Stored> stored;
  std::vector<std::uint64_t> offsets, sizes;
  std::unordered_set<std::string> names;
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    t.name = c.string(fmt::format("the name of tensor {}", i));
    const std::string name = shown(t.name);
    if (utf8_error_at(t.name) != std::string_view::npos) c.fail("tensor name {} is not UTF-8", name);
    if (!names.insert(t.name).second) c.fail("tensor {} appears twice", name);
    const auto n_dims = c.get<std::uint32_t>("a dimension count");
    if (n_dims > kMaxDims) c.fail("tensor {} has {} dimensions; GGUF (ggml) allows at most {}", name, n_dims, kMaxDims);
    std::array<std::uint64_t, kMaxDims> ne{};
    std::uint64_t numel = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      ne[d] = c.get<std::uint64_t>("a dimension");
      if (ne[d] > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        c.fail("tensor {}: dimension {} is {}, above 2^63-1", name, d, ne[d]);
    }
    for (std::uint32_t d = 0; d < n_dims; ++d)
      if (__builtin_mul_overflow(numel, ne[d], &numel) || numel > kMaxLocoElements)
        c.fail("tensor {}: dimensions (innermost first) {} hold more elements than loco indexes (2^62)", name,
               fmt::join(std::span(ne.data(), n_dims), ", "));
    for (std::uint32_t d = n_dims; d-- > 0;) t.shape.push_back(static_cast<std::int64_t>(ne[d]));  // outermost first
    const auto type = c.get<std::uint32_t>("a tensor type");
    if (type >= kGgmlTypes.size() || !kGgmlTypes[type].loco)
      throw_error(ErrorKind::BadInput,
                  "{}: tensor {} has ggml type {}, which loco does not read (it reads F32, F16, "
                  "BF16, F64, I8, I16, I32 and I64, and dequantizes Q8_0, Q4_0 and Q4_1)",
                  file, name, type_name(type));
    const GgmlType& g = kGgmlTypes[type];
    if (quantized(type) && (n_dims == 0 || ne[0] % g.block != 0))
      c.fail("tensor {} of type {} has {} elements per row, not a multiple of its block of {}", name, g.name,
             n_dims == 0 ? 1 : ne[0], g.block);
    const std::uint64_t nbytes = numel / g.block * g.bytes;  // numel < 2^62 and bytes ≤ 34 blocks of 32: no overflow
    const auto offset = c.get<std::uint64_t>("a tensor offset");
    if (offset % meta.alignment != 0)
      c.fail("tensor {} has offset {}, not a multiple of the alignment {}", name, offset, meta.alignment);
    t.dtype = *g.loco;
    tensors.push_back(std::move(t));
    stored.push_back({type, 0});
    offsets.push_back(offset);
    sizes.push_back(nbytes);
  }
  // The data section starts at the next multiple of the alignment.
  const std::uint64_t data = align_up(c.pos(), meta.alignment);
  if (n_tensors > 0 && data > c.size())
    c.fail("the data section would start at byte {}, past the end of the {}-byte file", data, c.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::uint64_t room = c.size() - data;
    if (offsets[i] > room || sizes[i] > room - offsets[i])
      c.fail("tensor {}: its {} bytes at offset {} of the data section (byte {}) run past the end of the {}-byte file",
             shown(tensors[i].name), sizes[i], offsets[i], data, c.size());
    stored[i].at = data + offsets[i];
  }
  Attributes attrs = std::move(meta.loco);
  if (!meta.json.empty()) attrs.set(kGgufMetadataAttribute, std::move(meta.json));
  return std::make_unique<GgufSource>(std::move(bytes), std::move(attrs), std::move(tensors), std::move(stored));
}

std::unique_ptr<TensorSink> create_gguf_sink(const std::string& path, const Attributes& root,
                                             std::vector<TensorInfo> plan) {
  return std::make_unique<GgufSink>(path, root, std::move(plan));
}

}  // namespace loco::io
