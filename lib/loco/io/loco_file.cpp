// Reader and writer of the loco HDF5 file (man 5 loco-format, version 1).
#include "loco/io/loco_file.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <map>

#include <nlohmann/json.hpp>
#include <tbb/parallel_for.h>
#include <tbb/parallel_pipeline.h>

#include "loco/core/checksum.hpp"
#include "loco/core/cleanup.hpp"
#include "loco/core/error.hpp"
#include "loco/core/spec.hpp"
#include "loco/core/json.hpp"
#include "loco/core/log.hpp"
#include "loco/core/provenance.hpp"
#include "loco/io/detail/hdf5.hpp"
#include "loco/io/output.hpp"

#include <H5LTpublic.h>

namespace loco::io {

std::string_view kind_name(Kind k) noexcept {
  switch (k) {
    case Kind::Model: return "model";
    case Kind::Delta: return "delta";
    case Kind::Compressed: return "compressed";
    case Kind::State: return "state";
    case Kind::Data: return "data";
  }
  return "?";
}

std::optional<Kind> parse_kind(std::string_view s) noexcept {
  for (Kind k : {Kind::Model, Kind::Delta, Kind::Compressed, Kind::State, Kind::Data})
    if (kind_name(k) == s) return k;
  return std::nullopt;
}

bool has_hdf5_signature(std::span<const std::byte> first8) {
  static constexpr unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  return first8.size() >= 8 && std::memcmp(first8.data(), sig, 8) == 0;
}

namespace {

using h5::Handle;

// Walks a group recursively, adding every dataset in creation order (name order when the file
// does not track creation order, as files from other programs may not).
class Walker {
 public:
  Walker(hid_t file, const std::string& path, std::vector<TensorInfo>& out) : file_(file), path_(path), out_(out) {}

  void walk(const std::string& group_path) {
    Handle g = h5::check(H5Gopen2(file_, group_path.empty() ? "/" : ("/" + group_path).c_str(), H5P_DEFAULT), H5Gclose,
                         ErrorKind::BadInput, fmt::format("{}: cannot open group /{}", path_, group_path));
    H5_index_t index = H5_INDEX_NAME;
    Handle gcpl(H5Gget_create_plist(g.get()), H5Pclose);
    unsigned flags = 0;
    if (gcpl && H5Pget_link_creation_order(gcpl.get(), &flags) >= 0 && (flags & H5P_CRT_ORDER_INDEXED))
      index = H5_INDEX_CRT_ORDER;
    std::vector<std::string> names;
    hsize_t idx = 0;
    if (H5Literate(g.get(), index, H5_ITER_INC, &idx, &collect, &names) < 0)
      h5::fail(ErrorKind::BadInput, fmt::format("{}: cannot list group /{} (corrupt file?)", path_, group_path));
    for (const auto& name : names) {
      const std::string child = group_path.empty() ? name : group_path + "/" + name;
      H5O_info_t info;
      if (H5Oget_info_by_name2(g.get(), name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
        h5::fail(ErrorKind::BadInput, fmt::format("{}: cannot read object /{} (corrupt file?)", path_, child));
      if (info.type == H5O_TYPE_GROUP) walk(child);
      else if (info.type == H5O_TYPE_DATASET) add_dataset(g.get(), group_path, name);
    }
  }

 private:
  static herr_t collect(hid_t, const char* name, const H5L_info_t* info, void* data) {
    // Only hard links: soft and external links could point outside the file.
    if (info->type == H5L_TYPE_HARD) static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    else log::warn("ignoring link '{}', which is not a hard link", name);
    return 0;
  }

  void add_dataset(hid_t group, const std::string& group_path, const std::string& name) {
    const std::string where = fmt::format("{}: tensor /{}/{}", path_, group_path, name);
    Handle ds = h5::check(H5Dopen2(group, name.c_str(), H5P_DEFAULT), H5Dclose, ErrorKind::BadInput,
                          where + ": cannot open dataset");
    Handle type = h5::check(H5Dget_type(ds.get()), H5Tclose, ErrorKind::BadInput, where + ": cannot read type");
    Handle space = h5::check(H5Dget_space(ds.get()), H5Sclose, ErrorKind::BadInput, where + ": cannot read shape");
    TensorInfo t;
    t.group = group_path;
    t.name = name;
    t.attrs = h5::read_attributes(ds.get());
    const auto marker = t.attrs.get_string("dtype");
    const auto dtype = h5::dtype_of(type.get(), marker && *marker == "bfloat16");
    if (!dtype)
      throw_error(ErrorKind::BadInput, "{}: stored type (HDF5 class {}, {} bytes) is not one loco reads", where,
                  static_cast<int>(H5Tget_class(type.get())), H5Tget_size(type.get()));
    t.dtype = *dtype;
    if (t.dtype == DType::BF16) t.attrs.erase("dtype");
    const int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0) h5::fail(ErrorKind::BadInput, where + ": cannot read shape");
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
    H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    for (hsize_t d : dims) t.shape.push_back(static_cast<std::int64_t>(d));
    shape_numel(t.shape);
    check_storage(ds.get(), t, dims, where);
    out_.push_back(std::move(t));
  }

  // Work on a tensor is bounded by what the file holds: every element a dataset declares must be
  // stored in this file. A dataset never written (contiguous storage not allocated, chunks
  // missing) would read as fill values, so a tiny file could declare 2^60 elements for a
  // checksum or a sum to walk through; external and virtual layouts read other files.
  static void check_storage(hid_t ds, const TensorInfo& t, const std::vector<hsize_t>& dims, const std::string& where) {
    Handle dcpl = h5::check(H5Dget_create_plist(ds), H5Pclose, ErrorKind::BadInput, where + ": cannot read its layout");
    const H5D_layout_t layout = H5Pget_layout(dcpl.get());
    if (H5Pget_external_count(dcpl.get()) != 0 || layout == H5D_VIRTUAL)
      throw_error(ErrorKind::BadInput,
                  "{}: stored in other files (external or virtual layout), which loco does not read", where);
    const std::int64_t numel = t.numel();
    if (numel == 0) return;
    if (layout == H5D_CHUNKED) {
      std::vector<hsize_t> chunk(dims.size());
      if (H5Pget_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()) != static_cast<int>(chunk.size()))
        h5::fail(ErrorKind::BadInput, where + ": cannot read its chunk shape");
      // Chunks covering the shape; at most numel, which shape_numel bounded to 2^62.
      std::uint64_t total = 1;
      for (std::size_t i = 0; i < dims.size(); ++i) {
        if (chunk[i] == 0) throw_error(ErrorKind::BadInput, "{}: chunk of extent 0 in dimension {}", where, i);
        total *= (dims[i] + chunk[i] - 1) / chunk[i];
      }
      hsize_t stored = 0;  // a dataset never written has no chunk index to count
      if (H5Dget_storage_size(ds) > 0) {
        Handle space(H5Dget_space(ds), H5Sclose);  // HDF5 1.10 takes no H5S_ALL here
        if (!space || H5Dget_num_chunks(ds, space.get(), &stored) < 0)
          h5::fail(ErrorKind::BadInput, where + ": cannot read its chunk index");
      }
      if (stored < total)
        throw_error(ErrorKind::BadInput, "{}: shape {} needs {} chunks but the file stores {} (never written?)", where,
                    shape_string(t.shape), total, stored);
      return;
    }
    const std::uint64_t nbytes = static_cast<std::uint64_t>(numel) * dtype_size(t.dtype);
    const hsize_t stored = H5Dget_storage_size(ds);
    if (stored < nbytes)
      throw_error(ErrorKind::BadInput, "{}: shape {} needs {} bytes but the file stores {} (never written?)", where,
                  shape_string(t.shape), nbytes, stored);
  }

  hid_t file_;
  const std::string& path_;
  std::vector<TensorInfo>& out_;
};

// Selects rows [row0, row0 + nrows) of the leading dimension in a dataset's file space and
// returns the matching flat memory space.
Handle select_rows(hid_t fspace, const TensorInfo& t, std::int64_t row0, std::int64_t nrows, const std::string& where) {
  const hsize_t mcount = static_cast<hsize_t>(nrows * t.row_elements());
  Handle mspace(H5Screate_simple(1, &mcount, nullptr), H5Sclose);
  if (!t.shape.empty()) {
    std::vector<hsize_t> start(t.shape.size(), 0), count(t.shape.begin(), t.shape.end());
    start[0] = static_cast<hsize_t>(row0);
    count[0] = static_cast<hsize_t>(nrows);
    if (H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0)
      h5::fail(ErrorKind::Internal, where + ": cannot select rows");
  }
  return mspace;
}

class LocoSource final : public TensorSource {
 public:
  explicit LocoSource(std::unique_ptr<ByteSource> bytes) : bytes_(std::move(bytes)), path_(bytes_->name()) {
    h5::silence_errors();
    parse_in_child();
    load();
  }

  const std::string& path() const override { return path_; }
  std::string_view format() const override { return "loco"; }
  const Attributes& attributes() const override { return attrs_; }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }

  Attributes group_attributes(std::string_view group) const override {
    const std::string p = "/" + std::string(group);
    if (H5Lexists(file_.get(), p.c_str(), H5P_DEFAULT) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return {};
    }
    Handle obj(H5Oopen(file_.get(), p.c_str(), H5P_DEFAULT), H5Oclose);
    return obj ? h5::read_attributes(obj.get()) : Attributes{};
  }

  void read_rows(const TensorInfo& t, std::int64_t row0, std::int64_t nrows, std::span<std::byte> out) const override {
    const std::string where = fmt::format("{}: tensor {}", path_, t.key());
    const std::int64_t row_el = t.row_elements();
    if (row0 < 0 || nrows < 0 || row0 + nrows > t.rows())
      throw_error(ErrorKind::Internal, "{}: rows [{}, {}) out of range {}", where, row0, row0 + nrows, t.rows());
    if (out.size() != static_cast<std::size_t>(nrows * row_el) * dtype_size(t.dtype))
      throw_error(ErrorKind::Internal, "{}: read buffer of {} bytes for {} rows", where, out.size(), nrows);
    if (nrows == 0 || row_el == 0) return;
    const std::string ds_path = "/" + t.group + "/" + t.name;
    Handle ds = h5::check(H5Dopen2(file_.get(), ds_path.c_str(), H5P_DEFAULT), H5Dclose, ErrorKind::BadInput,
                          where + ": cannot open dataset");
    Handle ftype(H5Dget_type(ds.get()), H5Tclose);
    Handle mtype = h5::memory_type(ftype.get(), t.dtype);
    Handle fspace(H5Dget_space(ds.get()), H5Sclose);
    Handle mspace = select_rows(fspace.get(), t, row0, nrows, where);
    if (H5Dread(ds.get(), mtype.get(), mspace.get(), fspace.get(), H5P_DEFAULT, out.data()) < 0)
      h5::fail(ErrorKind::BadInput, where + ": cannot read data (truncated or corrupt file)");
  }

  std::optional<std::uint64_t> contiguous_offset(const TensorInfo& t) const {
    if (t.numel() == 0) return std::nullopt;
    const std::string ds_path = "/" + t.group + "/" + t.name;
    Handle ds(H5Dopen2(file_.get(), ds_path.c_str(), H5P_DEFAULT), H5Dclose);
    if (!ds) return std::nullopt;
    Handle dcpl(H5Dget_create_plist(ds.get()), H5Pclose);
    Handle ftype(H5Dget_type(ds.get()), H5Tclose);
    if (!dcpl || !ftype || H5Pget_layout(dcpl.get()) != H5D_CONTIGUOUS || H5Pget_external_count(dcpl.get()) != 0)
      return std::nullopt;
    // The condition under which h5::memory_type reads the stored type as it is (a raw copy).
    if (H5Tget_size(ftype.get()) != dtype_size(t.dtype) ||
        (H5Tget_size(ftype.get()) != 1 && H5Tget_order(ftype.get()) != H5T_ORDER_LE))
      return std::nullopt;
    const haddr_t offset = H5Dget_offset(ds.get());  // includes the user block, if any
    H5Eclear2(H5E_DEFAULT);
    const std::uint64_t nbytes = static_cast<std::uint64_t>(t.numel()) * dtype_size(t.dtype);
    if (offset == HADDR_UNDEF || H5Dget_storage_size(ds.get()) != nbytes || offset > bytes_->size() ||
        nbytes > bytes_->size() - offset)
      return std::nullopt;
    return static_cast<std::uint64_t>(offset);
  }

  void read_raw(std::uint64_t offset, std::span<std::byte> out) const { bytes_->read_at(offset, out); }

 private:
  // Opens the file and reads its metadata: root attributes, groups, datasets and their attributes.
  void load() {
    hid_t f;
    if (const std::byte* mem = bytes_->memory()) {
      f = H5LTopen_file_image(const_cast<std::byte*>(mem), bytes_->size(),
                              H5LT_FILE_IMAGE_DONT_COPY | H5LT_FILE_IMAGE_DONT_RELEASE);
    } else {
      f = H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    }
    file_ = h5::check(f, H5Fclose, ErrorKind::BadInput,
                      fmt::format("{}: not a readable HDF5 file (truncated or corrupt)", path_));
    attrs_ = h5::read_attributes(file_.get());
    validate_header();
    Walker(file_.get(), path_, tensors_).walk("");
  }

  // libhdf5 1.10 trusts the metadata it reads: on some corrupt files it dereferences a damaged
  // global heap (a variable-length string attribute) and dies with SIGSEGV, or loops forever. So
  // the metadata is read first in a child process (load() and every object's attributes, which
  // group_attributes() reads later), and a child killed by a signal or outliving
  // LOCO_PARSE_TIMEOUT seconds (default 60) makes the file a bad input here (docs/decisions.md,
  // "Hostile inputs"). Once the child got through, the same reads here are safe.
  void parse_in_child() {
    // The child holds the write end of a pipe until it exits: poll() on the read end returns the
    // moment it ends (crashed or not), or at the deadline.
    double seconds = 60;  // LOCO_PARSE_TIMEOUT; 0 or less: no limit
    if (const char* v = std::getenv("LOCO_PARSE_TIMEOUT"); v != nullptr && *v != '\0')
      seconds = parse_real(v, "LOCO_PARSE_TIMEOUT");
    int done[2];
    if (::pipe2(done, O_CLOEXEC) != 0)
      throw_error(ErrorKind::Io, "{}: cannot start a process to check its metadata: {}", path_, std::strerror(errno));
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int e = errno;
      ::close(done[0]);
      ::close(done[1]);
      throw_error(ErrorKind::Io, "{}: cannot start a process to check its metadata: {}", path_, std::strerror(e));
    }
    if (pid == 0) {
      ::close(done[0]);
      log::set_verbosity(0);  // the parent's parse prints any warnings
      try {
        load();
        H5Ovisit2(file_.get(), H5_INDEX_NAME, H5_ITER_NATIVE, &visit_attributes, nullptr, H5O_INFO_BASIC);
      } catch (...) {  // the parent meets the same error and reports it
      }
      ::_exit(0);
    }
    ::close(done[1]);
    const int timeout_ms = seconds > 0 ? static_cast<int>(std::min(seconds, 1e6) * 1000) : -1;
    pollfd p{done[0], POLLIN, 0};
    int ready;
    do {
      ready = ::poll(&p, 1, timeout_ms);
    } while (ready < 0 && errno == EINTR);
    ::close(done[0]);
    if (ready == 0) ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (ready == 0)
      throw_error(ErrorKind::BadInput,
                  "{}: corrupt file: HDF5 did not finish reading its metadata in time "
                  "(LOCO_PARSE_TIMEOUT seconds, default 60)",
                  path_);
    if (WIFSIGNALED(status))
      throw_error(ErrorKind::BadInput, "{}: corrupt file: HDF5 crashed reading its metadata (signal {})", path_,
                  WTERMSIG(status));
  }

  static herr_t visit_attributes(hid_t obj, const char* name, const H5O_info_t*, void*) {
    Handle o(H5Oopen(obj, name, H5P_DEFAULT), H5Oclose);
    if (o) h5::read_attributes(o.get());
    return 0;
  }

  void validate_header() {
    const auto marker = attrs_.get_string("loco_format");
    if (!marker || *marker != "loco")
      throw_error(ErrorKind::BadInput, "{}: an HDF5 file but not a loco file (no loco_format = \"loco\" attribute)",
                  path_);
    const auto version = attrs_.get_int("loco_version");
    if (!version) throw_error(ErrorKind::BadInput, "{}: loco file without an integer loco_version attribute", path_);
    if (*version != kFormatVersion)
      throw_error(ErrorKind::BadInput, "{}: loco format version {}, this loco reads version {}", path_, *version,
                  kFormatVersion);
    const auto kind = attrs_.get_string("kind");
    if (!kind || !parse_kind(*kind))
      throw_error(ErrorKind::BadInput, "{}: kind '{}' is not one of model, delta, compressed, state, data", path_,
                  kind.value_or(""));
  }

  std::unique_ptr<ByteSource> bytes_;  // keeps a file image alive
  std::string path_;
  Handle file_;
  Attributes attrs_;
  std::vector<TensorInfo> tensors_;
};

Handle ordered_group_plist() {
  Handle gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  H5Pset_attr_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  return gcpl;
}

class LocoSink final : public TensorSink {
 public:
  LocoSink(const std::string& path, const Attributes& root, std::vector<TensorInfo> plan)
      : out_(path), plan_(std::move(plan)), rows_written_(plan_.size(), 0) {
    h5::silence_errors();
    const auto kind = root.get_string("kind");
    if (!kind || !parse_kind(*kind))
      throw_error(ErrorKind::Internal, "loco file {} created without a valid kind", path);
    root_.set("loco_format", std::string("loco"));
    root_.set("loco_version", kFormatVersion);
    for (const auto& e : root) root_.set(e.name, e.value);
    root_.set("producer", producer());
    root_.set("created", utc_timestamp());

    Handle fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
    H5Pset_link_creation_order(fcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    H5Pset_attr_creation_order(fcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    file_ = h5::check(H5Fcreate(out_.temp_path().c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()), H5Fclose,
                      ErrorKind::Io, fmt::format("{}: cannot create file", path));
    for (std::size_t i = 0; i < plan_.size(); ++i) create_dataset(i);
  }

  const std::vector<TensorInfo>& plan() const override { return plan_; }

  void write_rows(std::size_t index, std::int64_t row0, std::int64_t nrows, std::span<const std::byte> data) override {
    const TensorInfo& t = plan_.at(index);
    const std::string where = fmt::format("{}: tensor {}", out_.final_path(), t.key());
    const std::int64_t row_el = t.row_elements();
    if (row0 < 0 || nrows < 0 || row0 + nrows > t.rows())
      throw_error(ErrorKind::Internal, "{}: rows [{}, {}) out of range {}", where, row0, row0 + nrows, t.rows());
    if (data.size() != static_cast<std::size_t>(nrows * row_el) * dtype_size(t.dtype))
      throw_error(ErrorKind::Internal, "{}: {} bytes given for {} rows", where, data.size(), nrows);
    rows_written_[index] += nrows;
    if (nrows == 0 || row_el == 0) return;
    const std::string ds_path = "/" + t.group + "/" + t.name;
    Handle dataset = h5::check(H5Dopen2(file_.get(), ds_path.c_str(), H5P_DEFAULT), H5Dclose, ErrorKind::Io,
                               where + ": cannot reopen dataset");
    const hid_t ds = dataset.get();
    Handle fspace(H5Dget_space(ds), H5Sclose);
    Handle mspace = select_rows(fspace.get(), t, row0, nrows, where);
    Handle mtype = h5::type_for(t.dtype);
    if (H5Dwrite(ds, mtype.get(), mspace.get(), fspace.get(), H5P_DEFAULT, data.data()) < 0)
      h5::fail(ErrorKind::Io, where + ": write failed (disk full?)");
  }

  void set_attribute(std::string_view name, AttrValue value) override { root_.set(name, std::move(value)); }

  void set_group_attribute(std::string_view group, std::string_view name, AttrValue value) override {
    Handle g = group_for(std::string(group));
    h5::write_attribute(g.get(), name, value, fmt::format("{}: group /{}", out_.final_path(), group));
  }

  void commit() override {
    for (std::size_t i = 0; i < plan_.size(); ++i)
      if (rows_written_[i] != plan_[i].rows())
        throw_error(ErrorKind::Internal, "{}: tensor {}: {} of {} rows written", out_.final_path(), plan_[i].key(),
                    rows_written_[i], plan_[i].rows());
    for (const auto& e : root_) h5::write_attribute(file_.get(), e.name, e.value, out_.final_path());
    if (file_.close() < 0)
      h5::fail(ErrorKind::Io, fmt::format("{}: cannot finish the file (disk full?)", out_.final_path()));
    out_.commit();
  }

 private:
  Handle group_for(const std::string& path) {
    Handle g(H5Gopen2(file_.get(), "/", H5P_DEFAULT), H5Gclose);
    std::size_t pos = 0;
    while (pos < path.size()) {
      const std::size_t next = std::min(path.find('/', pos), path.size());
      const std::string part = path.substr(pos, next - pos);
      if (part.empty() || part == "." || part == "..")
        throw_error(ErrorKind::Usage, "{}: bad group path '{}'", out_.final_path(), path);
      if (H5Lexists(g.get(), part.c_str(), H5P_DEFAULT) > 0) {
        g = Handle(H5Gopen2(g.get(), part.c_str(), H5P_DEFAULT), H5Gclose);
      } else {
        Handle gcpl = ordered_group_plist();
        g = h5::check(H5Gcreate2(g.get(), part.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose, ErrorKind::Io,
                      fmt::format("{}: cannot create group /{}", out_.final_path(), path));
      }
      pos = next + 1;
    }
    return g;
  }

  void create_dataset(std::size_t i) {
    const TensorInfo& t = plan_[i];
    if (t.name.empty() || t.name.find('/') != std::string::npos || t.name == "." || t.name == "..")
      throw_error(ErrorKind::BadInput, "{}: tensor name '{}' cannot be an HDF5 link name", out_.final_path(),
                  excerpt(t.name));
    shape_numel(t.shape);
    Handle g = group_for(t.group);
    if (H5Lexists(g.get(), t.name.c_str(), H5P_DEFAULT) > 0)
      throw_error(ErrorKind::BadInput, "{}: duplicate tensor {}", out_.final_path(), t.key());
    Handle type = h5::type_for(t.dtype);
    std::vector<hsize_t> dims(t.shape.begin(), t.shape.end());
    Handle space(
        t.shape.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
        H5Sclose);
    Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER);  // every row is written; skip the fill pass
    // Closed once created and reopened for each block written: an open dataset holds about
    // 12 KB of HDF5 caches, 480 MB for a file of 40,000 (small) tensors.
    Handle ds =
        h5::check(H5Dcreate2(g.get(), t.name.c_str(), type.get(), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                  H5Dclose, ErrorKind::Io, fmt::format("{}: cannot create tensor {}", out_.final_path(), t.key()));
    if (t.dtype == DType::BF16) h5::write_attribute(ds.get(), "dtype", std::string("bfloat16"), out_.final_path());
    for (const auto& e : t.attrs)
      if (e.name != "dtype") h5::write_attribute(ds.get(), e.name, e.value, out_.final_path());
  }

  AtomicOutput out_;
  std::vector<TensorInfo> plan_;
  std::vector<std::int64_t> rows_written_;
  Attributes root_;
  Handle file_;
};

}  // namespace

std::unique_ptr<TensorSource> open_loco(std::unique_ptr<ByteSource> bytes) {
  return std::make_unique<LocoSource>(std::move(bytes));
}

std::unique_ptr<TensorSink> create_loco_sink(const std::string& path, const Attributes& root,
                                             std::vector<TensorInfo> plan) {
  return std::make_unique<LocoSink>(path, root, std::move(plan));
}

Kind file_kind(const TensorSource& s) {
  const auto name = s.attributes().get_string("kind");
  if (s.format() == "loco") return *parse_kind(name.value_or("model"));  // validated when opened
  // Other formats hold one flat set of tensors: a model, or a delta that a trainer wrote with
  // kind=delta in its metadata (safetensors' __metadata__).
  if (!name) return Kind::Model;
  const auto kind = parse_kind(*name);
  if (kind != Kind::Model && kind != Kind::Delta)
    throw_error(ErrorKind::BadInput,
                "{}: kind \"{}\" in a {} file: only model and delta files can be {} (the others "
                "need loco's groups)",
                s.path(), name->size() > 32 ? name->substr(0, 32) + "..." : *name, s.format(), s.format());
  return *kind;
}

void expect_kind(const TensorSource& s, std::initializer_list<Kind> allowed) {
  const Kind k = file_kind(s);
  if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) return;
  std::string want;
  for (Kind a : allowed) want += (want.empty() ? "" : " or ") + std::string(kind_name(a));
  throw_error(ErrorKind::BadInput, "{}: is a {} file, expected {}", s.path(), kind_name(k), want);
}

std::string canonical_json(std::string_view json, const std::string& where) {
  const nlohmann::json j = parse_json(json, where + ": model_config");
  if (!j.is_object()) throw_error(ErrorKind::BadInput, "{}: model_config is not a JSON object", where);
  return j.dump();  // nlohmann's objects are key-sorted maps: dump() is canonical
}

std::string model_config(const TensorSource& s) {
  const auto c = s.attributes().get_string("model_config");
  return c ? canonical_json(*c, s.path()) : std::string();
}

void check_same_config(const TensorSource& a, const TensorSource& b) {
  const std::string ca = model_config(a), cb = model_config(b);
  if (ca == cb) return;
  if (ca.empty() || cb.empty())
    throw_error(ErrorKind::BadInput, "{} has {} model_config but {} has {}", a.path(), ca.empty() ? "no" : "a",
                b.path(), cb.empty() ? "none" : "one");
  const auto ja = parse_json(ca, a.path()), jb = parse_json(cb, b.path());
  std::string key;
  for (const auto& [k, v] : ja.items())
    if (!jb.contains(k) || jb[k] != v) {
      key = k;
      break;
    }
  if (key.empty())
    for (const auto& [k, v] : jb.items())
      if (!ja.contains(k)) {
        key = k;
        break;
      }
  throw_error(ErrorKind::BadInput, "{} and {} are for different models: model_config key '{}' is {} vs {}", a.path(),
              b.path(), key, ja.contains(key) ? excerpt(ja[key].dump()) : "absent",
              jb.contains(key) ? excerpt(jb[key].dump()) : "absent");
}

namespace {
const LocoSource& as_loco(const TensorSource& s, std::string_view what) {
  const auto* loco = dynamic_cast<const LocoSource*>(&s);
  if (loco == nullptr)
    throw_error(ErrorKind::Internal, "{}: {} needs a loco (HDF5) source, not {}", s.path(), what, s.format());
  return *loco;
}
}  // namespace

std::optional<std::uint64_t> contiguous_offset(const TensorSource& s, const TensorInfo& t) {
  const auto* loco = dynamic_cast<const LocoSource*>(&s);
  return loco != nullptr ? loco->contiguous_offset(t) : std::nullopt;
}

void read_raw(const TensorSource& s, std::uint64_t offset, std::span<std::byte> out) {
  as_loco(s, "read_raw").read_raw(offset, out);
}

std::uint64_t tensor_checksum(const TensorSource& s, const TensorInfo& t) {
  // Read block k+1 while block k is hashed: a pipeline of two stages over a ring of three cache-
  // sized blocks. Only the read stage touches the source, so this is safe for HDF5 too; contiguous
  // loco datasets are read raw, past HDF5's per-call overhead.
  Xxh64 h = tensor_hasher(t.dtype, t.shape);
  const std::size_t row_bytes = static_cast<std::size_t>(t.row_elements()) * dtype_size(t.dtype);
  const std::int64_t step = rows_per_block(t, 4u << 20);
  const std::optional<std::uint64_t> raw =
      s.format() == "loco" && t.numel() > 0 ? contiguous_offset(s, t) : std::optional<std::uint64_t>();
  std::vector<std::vector<std::byte>> ring(3);
  std::size_t pos = 0;
  std::int64_t next = 0;
  tbb::parallel_pipeline(ring.size() - 1,
                         tbb::make_filter<void, std::vector<std::byte>*>(
                             tbb::filter_mode::serial_in_order,
                             [&](tbb::flow_control& fc) -> std::vector<std::byte>* {
                               if (next >= t.rows()) {
                                 fc.stop();
                                 return nullptr;
                               }
                               const std::int64_t n = std::min(step, t.rows() - next);
                               auto& b = ring[pos++ % ring.size()];
                               b.resize(static_cast<std::size_t>(n) * row_bytes);
                               if (raw) {
                                 if (!b.empty()) read_raw(s, *raw + static_cast<std::uint64_t>(next) * row_bytes, b);
                               } else {
                                 s.read_rows(t, next, n, b);
                               }
                               next += n;
                               return &b;
                             }) &
                             tbb::make_filter<std::vector<std::byte>*, void>(
                                 tbb::filter_mode::serial_in_order, [&](std::vector<std::byte>* b) { h.update(*b); }));
  return h.digest();
}

std::vector<std::uint64_t> tensor_checksums(const TensorSource& s, const std::vector<const TensorInfo*>& tensors) {
  std::vector<std::uint64_t> out(tensors.size());
  // XXH64 is one sequential stream per tensor (about 5 GB/s here, below the page cache's read
  // rate), so tensors are hashed in parallel when their reads need not enter HDF5 at once.
  bool concurrent = s.format() == "safetensors" || s.format() == "gguf";
  if (s.format() == "loco") {
    concurrent = true;
    for (const TensorInfo* t : tensors) concurrent = concurrent && (t->numel() == 0 || contiguous_offset(s, *t));
  }
  if (concurrent) {
    tbb::parallel_for(std::size_t{0}, tensors.size(), [&](std::size_t i) { out[i] = tensor_checksum(s, *tensors[i]); });
  } else {
    for (std::size_t i = 0; i < tensors.size(); ++i) out[i] = tensor_checksum(s, *tensors[i]);
  }
  return out;
}

std::string tensors_checksum(const TensorSource& s) {
  const auto tensors = s.group("tensors");
  const auto sums = tensor_checksums(s, tensors);
  SetChecksum set;
  for (std::size_t i = 0; i < tensors.size(); ++i) set.add(tensors[i]->name, sums[i]);
  return format_checksum(set.digest());
}

}  // namespace loco::io
