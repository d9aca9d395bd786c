// Data files: a shard of feature rows or tokens from a loco file of kind data.
#include "loco/data/file.hpp"

#include "loco/core/error.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/source.hpp"

namespace loco::data {

DataFile read_data(const std::string& path) {
  auto src = io::open_source(path);
  io::expect_kind(*src, {io::Kind::Data});
  DataFile d;
  d.path = src->path();
  d.attributes = src->attributes();
  if (const io::TensorInfo* t = src->find("tokens", "data")) {
    if (t->shape.size() != 1)
      throw_error(ErrorKind::BadInput, "{}: /data/tokens must be 1-D, is {}", d.path, shape_string(t->shape));
    d.tokens = true;
    d.stream.source = d.path;
    d.stream.vocab = static_cast<std::int32_t>(d.attributes.get_int("vocab").value_or(256));
    if (t->dtype == DType::U8) {
      Tensor v = src->read(*t);
      d.stream.tokens.assign(v.as<std::uint8_t>().begin(), v.as<std::uint8_t>().end());
    } else if (t->dtype == DType::U16) {
      Tensor v = src->read(*t);
      for (std::uint16_t x : v.as<std::uint16_t>()) {
        if (x > 255)
          throw_error(ErrorKind::BadInput, "{}: token {} does not fit byte-level models (vocab 256)", d.path, x);
        d.stream.tokens.push_back(static_cast<std::uint8_t>(x));
      }
    } else {
      throw_error(ErrorKind::BadInput, "{}: /data/tokens is {}, expected uint8 or uint16", d.path,
                  dtype_name(t->dtype));
    }
    return d;
  }
  const io::TensorInfo* tx = src->find("x", "data");
  const io::TensorInfo* ty = src->find("y", "data");
  if (tx == nullptr || ty == nullptr)
    throw_error(ErrorKind::BadInput, "{}: a data file needs /data/tokens or both /data/x and /data/y", d.path);
  if (tx->shape.size() != 2 || ty->shape.size() != 1 || tx->shape[0] != ty->shape[0])
    throw_error(ErrorKind::BadInput, "{}: /data/x {} and /data/y {} do not describe N examples of D features", d.path,
                shape_string(tx->shape), shape_string(ty->shape));
  auto& r = d.rows;
  r.n = tx->shape[0];
  r.d = tx->shape[1];
  r.source = d.path;
  const auto classes = d.attributes.get_int("classes");
  if (!classes || *classes < 1) throw_error(ErrorKind::BadInput, "{}: no positive 'classes' attribute", d.path);
  r.classes = static_cast<std::int32_t>(*classes);
  Tensor x = src->read(*tx, DType::F32);
  if (tx->dtype == DType::U8) {
    const double scale = tx->attrs.get_double("scale").value_or(1.0);
    for (float& v : x.f32()) v = static_cast<float>(v * scale);
  }
  r.x.assign(x.f32().begin(), x.f32().end());
  Tensor y = src->read(*ty, DType::I32);
  r.y.assign(y.as<std::int32_t>().begin(), y.as<std::int32_t>().end());
  validate(r);
  return d;
}

}  // namespace loco::data
