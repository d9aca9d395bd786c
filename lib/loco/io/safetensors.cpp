// The safetensors reader and writer, following the reference implementation's checks and bytes.
#include "loco/io/safetensors.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/io/detail/untrusted.hpp"
#include "loco/io/metadata.hpp"
#include "loco/io/output.hpp"

namespace loco::io {
namespace {

using detail::append_json_string;
using detail::FileDescriptor;
using detail::FlatSource;
using detail::pwrite_all;
using detail::RowLedger;
using detail::shown;
using detail::utf8_error_at;

// Tensor data is stored little-endian and is copied to and from memory without conversion.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian machine");

// The reference's dtype table in its enum order, which is the writer's alignment order
// (BOOL lowest, U64 highest). bits is the element width; loco is the dtype loco holds it as.
struct StDType {
  std::string_view name;
  unsigned bits;
  std::optional<DType> loco;
};
constexpr std::array<StDType, 22> kStDTypes{{
    {"BOOL", 8, DType::Bool},
    {"F4", 4, std::nullopt},
    {"F6_E2M3", 6, std::nullopt},
    {"F6_E3M2", 6, std::nullopt},
    {"U8", 8, DType::U8},
    {"I8", 8, DType::I8},
    {"F8_E5M2", 8, std::nullopt},
    {"F8_E4M3", 8, std::nullopt},
    {"F8_E8M0", 8, std::nullopt},
    {"F8_E4M3FNUZ", 8, std::nullopt},
    {"F8_E5M2FNUZ", 8, std::nullopt},
    {"I16", 16, DType::I16},
    {"U16", 16, DType::U16},
    {"F16", 16, DType::F16},
    {"BF16", 16, DType::BF16},
    {"I32", 32, DType::I32},
    {"U32", 32, DType::U32},
    {"F32", 32, DType::F32},
    {"C64", 64, std::nullopt},
    {"F64", 64, DType::F64},
    {"I64", 64, DType::I64},
    {"U64", 64, DType::U64},
}};

std::optional<std::size_t> find_st_dtype(std::string_view name) {
  for (std::size_t i = 0; i < kStDTypes.size(); ++i)
    if (kStDTypes[i].name == name) return i;
  return std::nullopt;
}

// Position of a loco dtype in the reference enum (its alignment rank).
std::size_t st_rank(DType t) {
  for (std::size_t i = 0; i < kStDTypes.size(); ++i)
    if (kStDTypes[i].loco == t) return i;
  throw_error(ErrorKind::Internal, "dtype {} has no safetensors name", dtype_name(t));
}

std::string shape_text(const std::vector<std::uint64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// Attributes are a list with a linear lookup per insertion; this bound keeps a hostile header with
// millions of __metadata__ entries from taking hours (real files carry a handful).
constexpr std::size_t kMaxMetadataEntries = 10'000;

// shape_numel's bound on element counts.
constexpr std::uint64_t kMaxLocoElements = std::uint64_t{1} << 62;

std::uint64_t load_le64(const std::byte* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Reading

// One header entry as parsed, before validation.
struct RawEntry {
  std::string name;
  std::size_t dtype = 0;  // index into kStDTypes
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0, end = 0;
};

// Builds the entries straight from nlohmann's SAX events, so no document tree is made and every
// structural error stops the parse where it occurs (nesting is bounded by the format's three levels).
class HeaderParser {
 public:
  using json = nlohmann::json;

  explicit HeaderParser(const std::string& file) : file_(file) {}

  std::vector<RawEntry> entries;
  Attributes metadata;
  bool finished() const { return state_ == State::Done; }

  bool null() {
    if (state_ == State::RootValue && in_metadata_) {  // the reference reads "__metadata__": null as none
      state_ = State::Root;
      return true;
    }
    return unexpected("null");
  }
  bool boolean(bool v) { return unexpected(v ? "true" : "false"); }
  bool number_integer(json::number_integer_t v) {
    if (v >= 0) return number_unsigned(static_cast<json::number_unsigned_t>(v));
    return unexpected(fmt::format("the negative number {}", v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (state_ != State::Shape && state_ != State::Offsets) return unexpected(fmt::format("the number {}", v));
    const char* field = state_ == State::Shape ? "shape" : "data_offsets";
    if (v > kSafetensorsMaxInt)
      fail("tensor {}: {} entry {} exceeds the format's limit 2^48-1 = {}", shown(entry_.name), field, v,
           kSafetensorsMaxInt);
    if (state_ == State::Shape) {
      entry_.shape.push_back(v);
    } else {
      if (offsets_seen_ == 2)
        fail("tensor {}: data_offsets must hold exactly two integers [BEGIN, END]", shown(entry_.name));
      (offsets_seen_ == 0 ? entry_.begin : entry_.end) = v;
      ++offsets_seen_;
    }
    return true;
  }
  bool number_float(json::number_float_t, const json::string_t& text) {
    return unexpected(fmt::format("the non-integer number {}", text));
  }
  bool string(json::string_t& s) {
    switch (state_) {
      case State::MetaValue:
        metadata.set(meta_key_, std::move(s));
        state_ = State::Meta;
        return true;
      case State::DtypeValue: {
        const auto d = find_st_dtype(s);
        if (!d) fail("tensor {}: unknown dtype {}", shown(entry_.name), shown(s));
        entry_.dtype = *d;
        state_ = State::Entry;
        return true;
      }
      default: return unexpected(fmt::format("the string {}", shown(s)));
    }
  }
  bool binary(json::binary_t&) { return unexpected("binary data"); }

  bool start_object(std::size_t) {
    switch (state_) {
      case State::Start: state_ = State::Root; return true;
      case State::RootValue:
        if (in_metadata_) {
          state_ = State::Meta;
        } else {
          entry_ = RawEntry{};
          entry_.name = std::move(root_key_);
          entry_keys_ = 0;
          state_ = State::Entry;
        }
        return true;
      default: return unexpected("an object");
    }
  }
  bool key(json::string_t& k) {
    switch (state_) {
      case State::Root:
        if (!root_keys_.insert(k).second) fail("duplicate key {} in the header", shown(k));
        in_metadata_ = k == "__metadata__";
        root_key_ = std::move(k);
        state_ = State::RootValue;
        return true;
      case State::Meta:
        if (!meta_keys_.insert(k).second) fail("duplicate key {} in __metadata__", shown(k));
        if (meta_keys_.size() > kMaxMetadataEntries)
          fail("__metadata__ has more than {} entries, more than loco keeps as attributes", kMaxMetadataEntries);
        meta_key_ = std::move(k);
        state_ = State::MetaValue;
        return true;
      case State::Entry: {
        unsigned bit = 0;
        if (k == "dtype") bit = 1, state_ = State::DtypeValue;
        else if (k == "shape") bit = 2, state_ = State::ShapeValue;
        else if (k == "data_offsets") bit = 4, state_ = State::OffsetsValue;
        else
          fail("tensor {}: unexpected key {} (an entry holds exactly dtype, shape and data_offsets)",
               shown(entry_.name), shown(k));
        if (entry_keys_ & bit) fail("tensor {}: duplicate key {}", shown(entry_.name), shown(k));
        entry_keys_ |= bit;
        return true;
      }
      default: fail("unexpected key {}", shown(k));
    }
  }
  bool end_object() {
    switch (state_) {
      case State::Root: state_ = State::Done; return true;
      case State::Meta: state_ = State::Root; return true;
      case State::Entry:
        for (auto [bit, name] : {std::pair{1u, "dtype"}, std::pair{2u, "shape"}, std::pair{4u, "data_offsets"}})
          if (!(entry_keys_ & bit)) fail("tensor {}: missing key '{}'", shown(entry_.name), name);
        entries.push_back(std::move(entry_));
        state_ = State::Root;
        return true;
      default: fail("unexpected end of object");
    }
  }
  bool start_array(std::size_t) {
    switch (state_) {
      case State::ShapeValue: state_ = State::Shape; return true;
      case State::OffsetsValue:
        state_ = State::Offsets;
        offsets_seen_ = 0;
        return true;
      default: return unexpected("an array");
    }
  }
  bool end_array() {
    if (state_ == State::Shape) {
      state_ = State::Entry;
      return true;
    }
    if (state_ == State::Offsets) {
      if (offsets_seen_ != 2)
        fail("tensor {}: data_offsets must hold exactly two integers [BEGIN, END]", shown(entry_.name));
      state_ = State::Entry;
      return true;
    }
    fail("unexpected end of array");
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    std::string_view what = ex.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " prefix.
    if (!what.empty() && what.front() == '[') {
      const auto close = what.find("] ");
      if (close != std::string_view::npos) what.remove_prefix(close + 2);
    }
    throw_error(ErrorKind::BadInput, "{}: safetensors header is not valid JSON: {}", file_, what);
  }

 private:
  enum class State {
    Start,
    Root,
    RootValue,
    Meta,
    MetaValue,
    Entry,
    DtypeValue,
    ShapeValue,
    Shape,
    OffsetsValue,
    Offsets,
    Done
  };

  template <typename... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) const {
    throw_error(ErrorKind::BadInput, "{}: bad safetensors header: {}", file_,
                fmt::format(f, std::forward<Args>(args)...));
  }

  // A value of the wrong kind for the current place.
  [[noreturn]] bool unexpected(std::string_view what) const {
    const std::string name = shown(entry_.name);
    switch (state_) {
      case State::Start: fail("the header must be a JSON object, found {}", what);
      case State::RootValue:
        if (in_metadata_) fail("__metadata__ must be an object of strings, found {}", what);
        fail("tensor {}: expected an object with dtype, shape and data_offsets, found {}", shown(root_key_), what);
      case State::MetaValue: fail("__metadata__ entry {} must be a string, found {}", shown(meta_key_), what);
      case State::DtypeValue: fail("tensor {}: dtype must be a string, found {}", name, what);
      case State::ShapeValue: fail("tensor {}: shape must be an array of integers, found {}", name, what);
      case State::Shape: fail("tensor {}: shape entries must be integers in [0, 2^48-1], found {}", name, what);
      case State::OffsetsValue: fail("tensor {}: data_offsets must be an array [BEGIN, END], found {}", name, what);
      case State::Offsets:
        fail("tensor {}: data_offsets entries must be integers in [0, 2^48-1], found {}", name, what);
      default: fail("unexpected {}", what);
    }
  }

  const std::string& file_;
  State state_ = State::Start;
  bool in_metadata_ = false;
  std::string root_key_, meta_key_;
  std::unordered_set<std::string> root_keys_, meta_keys_;
  RawEntry entry_;
  unsigned entry_keys_ = 0;
  int offsets_seen_ = 0;
};

class SafetensorsSource final : public FlatSource {
 public:
  SafetensorsSource(std::unique_ptr<ByteSource> bytes, Attributes attrs, std::vector<TensorInfo> tensors,
                    std::vector<std::uint64_t> data_at)
      : FlatSource(std::move(bytes), std::move(attrs), std::move(tensors)), data_at_(std::move(data_at)) {}

  std::string_view format() const override { return "safetensors"; }

  void read_rows(const TensorInfo& t, std::int64_t row0, std::int64_t nrows, std::span<std::byte> out) const override {
    const std::size_t i = check_read(t, row0, nrows, out.size());
    if (out.empty()) return;
    const std::uint64_t row_bytes = static_cast<std::uint64_t>(t.row_elements()) * dtype_size(t.dtype);
    bytes().read_at(data_at_[i] + static_cast<std::uint64_t>(row0) * row_bytes, out);
  }

 private:
  std::vector<std::uint64_t> data_at_;  // absolute file offset of each tensor's first byte
};

// ---------------------------------------------------------------------------------------------
// Writing

class SafetensorsSink final : public TensorSink {
 public:
  SafetensorsSink(const std::string& path, const Attributes& root, std::vector<TensorInfo> plan)
      : out_(path), plan_(std::move(plan)) {
    const std::string header = build_header(root);
    ledger_ = std::make_unique<RowLedger>(plan_, row_bytes_);
    file_size_ = 8 + header.size() + data_size_;
    const std::uint64_t n = header.size();
    std::array<std::byte, 8> prefix;
    std::memcpy(prefix.data(), &n, 8);
    if (out_.to_stdout()) {
      image_.resize(file_size_);
      std::memcpy(image_.data(), prefix.data(), 8);
      std::memcpy(image_.data() + 8, header.data(), header.size());
      return;
    }
    file_.fd = ::open(out_.temp_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (file_.fd < 0)
      throw_error(ErrorKind::Io, "{}: cannot create {}: {}", path, out_.temp_path(), std::strerror(errno));
    if (::ftruncate(file_.fd, static_cast<off_t>(file_size_)) != 0)
      throw_error(ErrorKind::Io, "{}: cannot size the file to {} bytes: {}", path, file_size_, std::strerror(errno));
    pwrite_all(file_.fd, prefix.data(), 8, 0, path);
    pwrite_all(file_.fd, reinterpret_cast<const std::byte*>(header.data()), header.size(), 8, path);
  }

  const std::vector<TensorInfo>& plan() const override { return plan_; }

  void write_rows(std::size_t index, std::int64_t row0, std::int64_t nrows, std::span<const std::byte> data) override {
    const std::string& path = out_.final_path();
    if (committed_) throw_error(ErrorKind::Internal, "{}: write after commit", path);
    if (index >= plan_.size())
      throw_error(ErrorKind::Internal, "{}: tensor index {} is outside the plan of {}", path, index, plan_.size());
    const std::uint64_t at = data_at_[index] + ledger_->claim(path, index, row0, nrows, data.size());
    const std::size_t want = data.size();
    if (want == 0) return;
    if (out_.to_stdout()) std::memcpy(image_.data() + at, data.data(), want);
    else pwrite_all(file_.fd, data.data(), want, at, path);
  }

  void set_attribute(std::string_view name, AttrValue) override {
    throw_error(ErrorKind::Usage,
                "{}: cannot add attribute '{}': a safetensors header precedes the data, so its __metadata__ is "
                "fixed when the file is created",
                out_.final_path(), name);
  }
  void set_group_attribute(std::string_view group, std::string_view name, AttrValue) override {
    throw_error(ErrorKind::Usage, "{}: cannot add attribute '{}' to group '{}': safetensors files have no groups",
                out_.final_path(), name, group);
  }

  void commit() override {
    const std::string& path = out_.final_path();
    if (committed_) throw_error(ErrorKind::Internal, "{}: committed twice", path);
    ledger_->check_complete(path);
    if (out_.to_stdout()) {
      out_.commit_bytes(image_);
    } else {
      const int fd = file_.fd;
      file_.fd = -1;
      if (::close(fd) != 0) throw_error(ErrorKind::Io, "{}: write failed on close: {}", path, std::strerror(errno));
      out_.commit();
    }
    committed_ = true;
  }

 private:
  // Validates the plan, assigns offsets in the reference's order and returns the padded header.
  std::string build_header(const Attributes& root) {
    const std::string& path = out_.final_path();
    const std::size_t count = plan_.size();
    data_at_.assign(count, 0);
    row_bytes_.assign(count, 0);

    std::unordered_set<std::string_view> names;
    std::size_t with_attrs = 0;
    for (const TensorInfo& t : plan_) {
      if (t.group != "tensors")
        throw_error(ErrorKind::Usage, "{}: safetensors holds only model tensors; {} is in group '{}'", path, t.key(),
                    t.group);
      if (!names.insert(t.name).second) throw_error(ErrorKind::Usage, "{}: tensor '{}' is planned twice", path, t.name);
      if (t.name == "__metadata__")
        throw_error(ErrorKind::Usage, "{}: '__metadata__' is reserved in safetensors and cannot name a tensor", path);
      if (utf8_error_at(t.name) != std::string_view::npos)
        throw_error(ErrorKind::BadInput, "{}: tensor name {} is not valid UTF-8, which a safetensors header needs",
                    path, shown(t.name));
      for (const std::int64_t d : t.shape)
        if (d < 0 || static_cast<std::uint64_t>(d) > kSafetensorsMaxInt)
          throw_error(ErrorKind::Usage, "{}: tensor {} has shape {}; safetensors dimensions lie in [0, 2^48-1]", path,
                      t.name, shape_string(t.shape));
      if (!t.attrs.empty()) ++with_attrs;
    }
    if (with_attrs > 0)
      log::warn("{}: safetensors has no per-tensor attributes; those of {} tensor(s) are not written", path,
                with_attrs);

    // Reference order: descending dtype rank, then name (byte order).
    std::vector<std::size_t> order(count);
    for (std::size_t i = 0; i < count; ++i) order[i] = i;
    std::vector<std::size_t> rank(count);
    for (std::size_t i = 0; i < count; ++i) rank[i] = st_rank(plan_[i].dtype);
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      if (rank[a] != rank[b]) return rank[a] > rank[b];
      return plan_[a].name < plan_[b].name;
    });

    std::string header = "{";
    if (!root.empty()) {
      auto meta = attributes_to_metadata(root);  // typed attributes survive as text plus their types
      for (const auto& [name, value] : meta)
        for (const std::string_view s : {std::string_view(name), std::string_view(value)})
          if (utf8_error_at(s) != std::string_view::npos)
            throw_error(ErrorKind::BadInput, "{}: attribute {} is not valid UTF-8, which a safetensors header needs",
                        path, shown(name));
      std::sort(meta.begin(), meta.end());
      header += "\"__metadata__\":{";
      for (std::size_t i = 0; i < meta.size(); ++i) {
        if (i > 0) header += ',';
        append_json_string(header, meta[i].first);
        header += ':';
        append_json_string(header, meta[i].second);
      }
      header += '}';
    }

    std::uint64_t offset = 0;
    for (const std::size_t i : order) {
      const TensorInfo& t = plan_[i];
      const std::uint64_t esize = dtype_size(t.dtype);
      const std::uint64_t numel = static_cast<std::uint64_t>(t.numel());
      if (numel > kSafetensorsMaxInt / esize || offset + numel * esize > kSafetensorsMaxInt)
        throw_error(ErrorKind::Usage, "{}: the data would pass the safetensors limit of 2^48-1 bytes at tensor {}",
                    path, t.name);
      const std::uint64_t nbytes = numel * esize;
      row_bytes_[i] = static_cast<std::uint64_t>(t.row_elements()) * esize;
      if (header.size() > 1) header += ',';
      append_json_string(header, t.name);
      header += fmt::format(R"(:{{"dtype":"{}","shape":[{}],"data_offsets":[{},{}]}})", kStDTypes[rank[i]].name,
                            fmt::join(t.shape, ","), offset, offset + nbytes);
      data_at_[i] = offset;
      offset += nbytes;
    }
    header += '}';
    header.resize((header.size() + 7) / 8 * 8, ' ');
    if (header.size() > kSafetensorsMaxHeader)
      throw_error(ErrorKind::Usage,
                  "{}: the safetensors header would be {} bytes, over the {}-byte limit readers accept", path,
                  header.size(), kSafetensorsMaxHeader);
    for (auto& at : data_at_) at += 8 + header.size();
    data_size_ = offset;
    return header;
  }

  AtomicOutput out_;
  std::vector<TensorInfo> plan_;
  std::vector<std::uint64_t> data_at_;    // absolute file offset of each planned tensor
  std::vector<std::uint64_t> row_bytes_;  // bytes per leading-dimension row
  std::unique_ptr<RowLedger> ledger_;     // made once row_bytes_ is known
  std::uint64_t data_size_ = 0;
  std::uint64_t file_size_ = 0;
  std::vector<std::byte> image_;  // the whole file, for stdout
  FileDescriptor file_;           // declared after out_: closed before the temporary file is removed
  bool committed_ = false;
};

}  // namespace

bool looks_like_safetensors(std::span<const std::byte> head) noexcept {
  if (head.size() < 9) return false;
  const std::uint64_t n = load_le64(head.data());
  if (n < 2 || n > kSafetensorsMaxHeader) return false;
  const std::size_t stop = static_cast<std::size_t>(std::min<std::uint64_t>(head.size(), 8 + n));
  for (std::size_t i = 8; i < std::min<std::size_t>(stop, 16); ++i) {
    const auto c = static_cast<unsigned char>(head[i]);
    if (c == '{') return true;
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return false;
  }
  return false;
}

std::unique_ptr<TensorSource> open_safetensors(std::unique_ptr<ByteSource> bytes) {
  const std::string& file = bytes->name();
  const std::uint64_t size = bytes->size();

  // 1-3: the length prefix.
  if (size < 8)
    throw_error(ErrorKind::BadInput, "{}: not a safetensors file: {} bytes, shorter than the 8-byte header length",
                file, size);
  std::array<std::byte, 8> prefix;
  bytes->read_at(0, prefix);
  const std::uint64_t n = load_le64(prefix.data());
  if (n > kSafetensorsMaxHeader)
    throw_error(ErrorKind::BadInput, "{}: safetensors header length {} is over the {}-byte limit", file, n,
                kSafetensorsMaxHeader);
  if (n > size - 8)
    throw_error(ErrorKind::BadInput, "{}: safetensors header length {} runs past the end of the {}-byte file", file, n,
                size);

  // 4: UTF-8, then JSON with the entry schema.
  std::string header(static_cast<std::size_t>(n), '\0');
  bytes->read_at(8, std::as_writable_bytes(std::span(header)));
  if (const std::size_t bad = utf8_error_at(header); bad != std::string_view::npos)
    throw_error(ErrorKind::BadInput, "{}: safetensors header is not valid UTF-8 (byte {} of the header)", file, bad);
  if (header.starts_with("\xEF\xBB\xBF"))
    throw_error(ErrorKind::BadInput, "{}: safetensors header is not valid JSON: it starts with a byte-order mark",
                file);
  HeaderParser parser(file);
  nlohmann::json::sax_parse(header.data(), header.data() + header.size(), &parser);
  if (!parser.finished()) throw_error(ErrorKind::Internal, "{}: safetensors header parse stopped early", file);
  std::vector<RawEntry>& entries = parser.entries;

  // 5-6: sorted by (BEGIN, END), the entries must tile the buffer from 0 and match their sizes.
  std::sort(entries.begin(), entries.end(), [](const RawEntry& a, const RawEntry& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.name < b.name;
  });
  std::uint64_t start = 0;
  for (const RawEntry& e : entries) {
    if (e.begin == start && e.end < e.begin)
      throw_error(ErrorKind::BadInput, "{}: tensor {} has data_offsets [{}, {}], whose END lies before its BEGIN", file,
                  shown(e.name), e.begin, e.end);
    if (e.begin != start)
      throw_error(ErrorKind::BadInput,
                  "{}: tensor {} has data_offsets [{}, {}], expected to begin at byte {} (tensors must cover the data "
                  "from 0 without gaps or overlaps)",
                  file, shown(e.name), e.begin, e.end, start);
    start = e.end;
    const StDType& d = kStDTypes[e.dtype];
    std::uint64_t numel = 1;
    for (const std::uint64_t dim : e.shape)
      if (__builtin_mul_overflow(numel, dim, &numel))
        throw_error(ErrorKind::BadInput, "{}: tensor {}: element count of shape {} overflows", file, shown(e.name),
                    shape_text(e.shape));
    std::uint64_t bits = 0;
    if (__builtin_mul_overflow(numel, std::uint64_t{d.bits}, &bits))
      throw_error(ErrorKind::BadInput, "{}: tensor {}: byte size of shape {} overflows", file, shown(e.name),
                  shape_text(e.shape));
    if (bits % 8 != 0)
      throw_error(ErrorKind::BadInput, "{}: tensor {}: {} elements of {} do not fill whole bytes", file, shown(e.name),
                  numel, d.name);
    if (e.end - e.begin != bits / 8)
      throw_error(ErrorKind::BadInput,
                  "{}: tensor {}: data_offsets [{}, {}] hold {} bytes, but {} of shape {} needs {}", file,
                  shown(e.name), e.begin, e.end, e.end - e.begin, d.name, shape_text(e.shape), bits / 8);
  }

  // 7: the data buffer ends exactly at the end of the file.
  const std::uint64_t expected = 8 + n + start;
  if (expected != size) {
    if (size < expected)
      throw_error(ErrorKind::BadInput, "{}: truncated: the safetensors header describes {} bytes, the file has {}",
                  file, expected, size);
    throw_error(ErrorKind::BadInput,
                "{}: {} unexpected bytes after the safetensors data (file {} bytes, header describes {})", file,
                size - expected, size, expected);
  }

  // The file is valid safetensors; now what loco can hold.
  std::vector<TensorInfo> tensors;
  std::vector<std::uint64_t> data_at;
  tensors.reserve(entries.size());
  data_at.reserve(entries.size());
  for (RawEntry& e : entries) {
    const StDType& d = kStDTypes[e.dtype];
    if (!d.loco)
      throw_error(ErrorKind::BadInput, "{}: dtype {} of tensor {} is not supported by loco", file, d.name,
                  shown(e.name));
    // A zero-size tensor may have huge other dimensions; loco indexes rows and elements in int64.
    std::uint64_t nonzero = 1;
    for (const std::uint64_t dim : e.shape)
      if (dim != 0 && (__builtin_mul_overflow(nonzero, dim, &nonzero) || nonzero > kMaxLocoElements))
        throw_error(ErrorKind::BadInput, "{}: tensor {}: shape {} has more elements per row than loco can index", file,
                    shown(e.name), shape_text(e.shape));
    TensorInfo t;
    t.group = "tensors";
    t.name = std::move(e.name);
    t.shape.assign(e.shape.begin(), e.shape.end());
    t.dtype = *d.loco;
    tensors.push_back(std::move(t));
    data_at.push_back(8 + n + e.begin);
  }
  Attributes attrs = attributes_from_metadata(parser.metadata, file);
  return std::make_unique<SafetensorsSource>(std::move(bytes), std::move(attrs), std::move(tensors),
                                             std::move(data_at));
}

std::unique_ptr<TensorSink> create_safetensors_sink(const std::string& path, const Attributes& root,
                                                    std::vector<TensorInfo> plan) {
  return std::make_unique<SafetensorsSink>(path, root, std::move(plan));
}

}  // namespace loco::io
