// RAII over HDF5 C API handles and the type and attribute mappings loco uses (private to io/).
#pragma once

#include <hdf5.h>

#include <optional>
#include <string>
#include <string_view>

#include "loco/core/attributes.hpp"
#include "loco/core/dtype.hpp"
#include "loco/core/error.hpp"

namespace loco::io::h5 {

// Turns off HDF5's automatic error printing and its termination at exit (once per process, before
// any other HDF5 call). Idempotent.
void silence_errors();

// Throws Error(kind, message); with -v (verbosity ≥ 2) prints HDF5's error stack first.
[[noreturn]] void fail(ErrorKind kind, std::string message);

// An owned hid_t with its matching close function.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), close_(closer) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  hid_t get() const noexcept { return id_; }
  explicit operator bool() const noexcept { return id_ >= 0; }
  void reset() noexcept {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
    id_ = H5I_INVALID_HID;
  }
  // Closes now and reports failure (for files, whose close flushes).
  herr_t close() noexcept {
    herr_t rc = 0;
    if (id_ >= 0 && close_ != nullptr) rc = close_(id_);
    id_ = H5I_INVALID_HID;
    return rc;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// Wraps a freshly returned id, throwing with `what` when it is negative.
Handle check(hid_t id, Handle::Closer close, ErrorKind kind, const std::string& what);

// The loco dtype of a stored HDF5 type; nullopt for types loco cannot hold. bf16_marker: the
// dataset carries dtype = "bfloat16".
std::optional<DType> dtype_of(hid_t type, bool bf16_marker);
// Little-endian HDF5 type to store a dtype (float16 as an IEEE binary16 float type, bfloat16 as
// uint16, bool as h5py's int8 enum).
Handle type_for(DType t);
// Memory type for reading a stored type into loco's native layout of dtype t.
Handle memory_type(hid_t stored, DType t);

// All attributes of an object whose values loco understands (integer, float, string scalars and
// 1-D integer and float arrays); others are skipped.
Attributes read_attributes(hid_t obj);
void write_attribute(hid_t obj, std::string_view name, const AttrValue& value, const std::string& where);

}  // namespace loco::io::h5
