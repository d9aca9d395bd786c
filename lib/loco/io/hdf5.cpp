// HDF5 handles, error handling, and the dtype and attribute mappings of the loco format.
#include "loco/io/detail/hdf5.hpp"

#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include "loco/core/log.hpp"

namespace loco::io::h5 {

void silence_errors() {
  static std::once_flag once;
  std::call_once(once, [] {
    // No H5_term_library at exit: when H5Fclose fails (a full disk), HDF5 1.10 frees the file
    // but leaves its id in the table, and the termination's close callback then dereferences the
    // freed file (SIGSEGV after the right message). loco closes every handle it opens (RAII), so
    // nothing is left for the termination to flush. Must precede the library's initialization.
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  });
}

void fail(ErrorKind kind, std::string message) {
  if (log::verbosity() >= 2) H5Eprint2(H5E_DEFAULT, stderr);
  H5Eclear2(H5E_DEFAULT);
  throw Error(kind, std::move(message));
}

Handle check(hid_t id, Handle::Closer close, ErrorKind kind, const std::string& what) {
  if (id < 0) fail(kind, what);
  return Handle(id, close);
}

std::optional<DType> dtype_of(hid_t type, bool bf16_marker) {
  const H5T_class_t cls = H5Tget_class(type);
  const std::size_t size = H5Tget_size(type);
  if (cls == H5T_FLOAT) {
    if (size == 4) return DType::F32;
    if (size == 8) return DType::F64;
    if (size == 2) {
      std::size_t spos, epos, esize, mpos, msize;
      if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0) return std::nullopt;
      if (spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10 && H5Tget_ebias(type) == 15)
        return DType::F16;
    }
    return std::nullopt;
  }
  if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
    switch (size) {
      case 1: return is_signed ? DType::I8 : DType::U8;
      case 2: return is_signed ? DType::I16 : (bf16_marker ? DType::BF16 : DType::U16);
      case 4: return is_signed ? DType::I32 : DType::U32;
      case 8: return is_signed ? DType::I64 : DType::U64;
      default: return std::nullopt;
    }
  }
  if (cls == H5T_ENUM && size == 1 && H5Tget_nmembers(type) == 2) {
    // h5py's bool: an int8 enum {FALSE: 0, TRUE: 1}.
    char name[8] = {};
    std::int8_t v = -1;
    if (H5Tget_member_value(type, 0, &v) >= 0 && v == 0 && H5Tenum_nameof(type, &v, name, sizeof name) >= 0 &&
        std::strcmp(name, "FALSE") == 0)
      return DType::Bool;
  }
  return std::nullopt;
}

Handle type_for(DType t) {
  auto copy = [](hid_t base) { return Handle(H5Tcopy(base), H5Tclose); };
  switch (t) {
    case DType::F32: return copy(H5T_IEEE_F32LE);
    case DType::F64: return copy(H5T_IEEE_F64LE);
    case DType::F16: {
      Handle h = copy(H5T_IEEE_F32LE);
      // IEEE binary16: sign bit 15, exponent bits 10-14 (bias 15), mantissa bits 0-9. The order
      // of calls matters: fields must fit the size at every step.
      H5Tset_fields(h.get(), 15, 10, 5, 0, 10);
      H5Tset_size(h.get(), 2);
      H5Tset_ebias(h.get(), 15);
      return h;
    }
    case DType::BF16:
    case DType::U16: return copy(H5T_STD_U16LE);
    case DType::I8: return copy(H5T_STD_I8LE);
    case DType::I16: return copy(H5T_STD_I16LE);
    case DType::I32: return copy(H5T_STD_I32LE);
    case DType::I64: return copy(H5T_STD_I64LE);
    case DType::U8: return copy(H5T_STD_U8LE);
    case DType::U32: return copy(H5T_STD_U32LE);
    case DType::U64: return copy(H5T_STD_U64LE);
    case DType::Bool: {
      Handle h(H5Tenum_create(H5T_NATIVE_INT8), H5Tclose);
      std::int8_t f = 0, tr = 1;
      H5Tenum_insert(h.get(), "FALSE", &f);
      H5Tenum_insert(h.get(), "TRUE", &tr);
      return h;
    }
  }
  fail(ErrorKind::Internal, "no HDF5 type for dtype");
}

Handle memory_type(hid_t stored, DType t) {
  // Stored little-endian (or single-byte) types are read as they are: a raw copy, no conversion.
  if (H5Tget_size(stored) == 1 || H5Tget_order(stored) == H5T_ORDER_LE) return Handle(H5Tcopy(stored), H5Tclose);
  return type_for(t);
}

namespace {

std::optional<AttrValue> read_attribute(hid_t attr) {
  Handle type(H5Aget_type(attr), H5Tclose);
  Handle space(H5Aget_space(attr), H5Sclose);
  if (!type || !space) return std::nullopt;
  const int rank = H5Sget_simple_extent_ndims(space.get());
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (rank < 0 || rank > 1 || n < 0) return std::nullopt;
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls == H5T_STRING && rank == 0) {
    if (H5Tis_variable_str(type.get()) > 0) {
      Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mem.get(), H5T_VARIABLE);
      H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
      char* s = nullptr;
      if (H5Aread(attr, mem.get(), &s) < 0) return std::nullopt;
      std::string out = s != nullptr ? s : "";
      H5free_memory(s);
      return out;
    }
    std::vector<char> buf(H5Tget_size(type.get()) + 1, '\0');
    Handle mem(H5Tcopy(type.get()), H5Tclose);
    if (H5Aread(attr, mem.get(), buf.data()) < 0) return std::nullopt;
    std::string out(buf.data(), strnlen(buf.data(), buf.size() - 1));
    while (!out.empty() && out.back() == ' ' && H5Tget_strpad(type.get()) == H5T_STR_SPACEPAD) out.pop_back();
    return out;
  }
  if (cls == H5T_INTEGER) {
    std::vector<std::int64_t> v(static_cast<std::size_t>(n));
    if (H5Aread(attr, H5T_NATIVE_INT64, v.data()) < 0) return std::nullopt;
    if (rank == 0) return v.at(0);
    return v;
  }
  if (cls == H5T_FLOAT) {
    std::vector<double> v(static_cast<std::size_t>(n));
    if (H5Aread(attr, H5T_NATIVE_DOUBLE, v.data()) < 0) return std::nullopt;
    if (rank == 0) return v.at(0);
    return v;
  }
  return std::nullopt;
}

}  // namespace

Attributes read_attributes(hid_t obj) {
  Attributes out;
  H5O_info_t info;
  if (H5Oget_info2(obj, &info, H5O_INFO_NUM_ATTRS) < 0) return out;
  // Creation order where the file tracks it (loco's files do), else name order.
  H5_index_t index = H5_INDEX_CRT_ORDER;
  if (info.num_attrs > 0) {
    Handle probe(H5Aopen_by_idx(obj, ".", index, H5_ITER_INC, 0, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (!probe) index = H5_INDEX_NAME;
  }
  for (hsize_t i = 0; i < info.num_attrs; ++i) {
    Handle attr(H5Aopen_by_idx(obj, ".", index, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (!attr) continue;
    const ssize_t len = H5Aget_name(attr.get(), 0, nullptr);
    if (len < 0) continue;
    std::string name(static_cast<std::size_t>(len), '\0');
    H5Aget_name(attr.get(), name.size() + 1, name.data());
    if (auto v = read_attribute(attr.get())) out.set(name, std::move(*v));
    else log::debug("skipping attribute '{}' of a type loco does not read", name);
  }
  H5Eclear2(H5E_DEFAULT);
  return out;
}

void write_attribute(hid_t obj, std::string_view name_view, const AttrValue& value, const std::string& where) {
  const std::string name(name_view);
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  auto put = [&](hid_t file_type, hid_t mem_type, hid_t space, const void* data) {
    Handle attr = check(H5Acreate2(obj, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                        ErrorKind::Io, fmt::format("{}: cannot create attribute '{}'", where, name));
    if (H5Awrite(attr.get(), mem_type, data) < 0)
      fail(ErrorKind::Io, fmt::format("{}: cannot write attribute '{}'", where, name));
  };
  Handle scalar(H5Screate(H5S_SCALAR), H5Sclose);
  if (const auto* s = std::get_if<std::string>(&value)) {
    Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(type.get(), H5T_VARIABLE);
    H5Tset_cset(type.get(), H5T_CSET_UTF8);
    const char* p = s->c_str();
    put(type.get(), type.get(), scalar.get(), &p);
  } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
    put(H5T_STD_I64LE, H5T_NATIVE_INT64, scalar.get(), i);
  } else if (const auto* d = std::get_if<double>(&value)) {
    put(H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, scalar.get(), d);
  } else if (const auto* vi = std::get_if<std::vector<std::int64_t>>(&value)) {
    const hsize_t n = vi->size();
    Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
    put(H5T_STD_I64LE, H5T_NATIVE_INT64, space.get(), vi->data());
  } else if (const auto* vd = std::get_if<std::vector<double>>(&value)) {
    const hsize_t n = vd->size();
    Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
    put(H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, space.get(), vd->data());
  }
}

}  // namespace loco::io::h5
