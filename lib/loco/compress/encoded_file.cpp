// write_compressed_file: a compressed loco file from in-memory encodings; EncodedReader: one read back.
#include "loco/compress/encoded_file.hpp"

#include <algorithm>
#include <set>

#include "loco/compress/detail/stage.hpp"
#include "loco/compress/feedback.hpp"
#include "loco/core/error.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/sink.hpp"
#include "loco/io/source.hpp"

namespace loco::compress {

void write_compressed_file(const std::string& path, Attributes root, const std::vector<NamedEncoded>& tensors) {
  std::set<std::string> seen;
  std::vector<io::TensorInfo> plan;
  std::int64_t raw = 0, payload = 0;
  for (const auto& t : tensors) {
    if (!seen.insert(t.name).second) throw_error(ErrorKind::Usage, "{}: tensor {} given twice", path, t.name);
    for (const auto& [name, data] : t.encoded.datasets) {
      io::TensorInfo o;
      o.group = "tensors/" + t.name;
      o.name = name;
      o.shape = data.shape();
      o.dtype = data.dtype();
      plan.push_back(std::move(o));
    }
    raw += t.raw_bytes;
    payload += t.encoded.payload_bytes();
  }
  root.set("kind", std::string("compressed"));
  root.set("raw_bytes", raw);
  root.set("payload_bytes", payload);
  auto sink = io::create_sink(path, io::Format::Loco, root, plan);
  std::size_t index = 0;
  for (const auto& t : tensors) {
    const std::string group = "tensors/" + t.name;
    for (const auto& a : t.encoded.attrs) sink->set_group_attribute(group, a.name, a.value);
    sink->set_group_attribute(group, "raw_bytes", t.raw_bytes);
    sink->set_group_attribute(group, "payload_bytes", t.encoded.payload_bytes());
    for (const auto& [name, data] : t.encoded.datasets) sink->write(index++, data);
  }
  sink->commit();
}

EncodedReader::EncodedReader(const io::TensorSource& src) : src_(&src) {
  const std::string& path = src.path();
  io::expect_kind(src, {io::Kind::Compressed});
  if (const auto fb = src.attributes().get_string("feedback")) {
    try {
      feedback_ = parse_feedback(*fb);
    } catch (const Error& err) {
      if (err.kind() != ErrorKind::Usage) throw;
      throw_error(ErrorKind::BadInput, "{}: compressed with an error feedback this build does not know: {}", path,
                  err.what());
    }
  }
  for (const std::string& name : encoded_tensor_names(src)) {
    const std::string group = "tensors/" + name;
    const Attributes a = src.group_attributes(group);
    const auto shape = recorded_shape(a);
    const auto spec = a.get_string("spec");
    const auto dt = parse_dtype(a.get_string("dtype").value_or(""));
    if (!shape || !spec || !dt || !a.contains("codec"))
      throw_error(ErrorKind::BadInput,
                  "{}: /{} lacks the codec, spec, dtype and shape attributes of a compressed tensor", path, group);
    if (!is_floating(*dt))
      throw_error(ErrorKind::BadInput, "{}: tensor {} is {}, expected a floating-point type", path, name,
                  dtype_name(*dt));
    EncodedTensorInfo t;
    t.name = name;
    t.shape = *shape;
    t.dtype = *dt;
    t.spec = *spec;
    try {
      const Codec codec = Codec::parse(*spec);
      t.selection = codec.selection();
      t.domain = codec.coefficient_domain(t.shape);
    } catch (const Error& err) {
      throw_error(ErrorKind::BadInput, "{}: tensor {}: unusable codec spec: {}", path, name, err.what());
    }
    for (const io::TensorInfo* d : src.group(group))
      t.payload_bytes += d->numel() * static_cast<std::int64_t>(dtype_size(d->dtype));
    tensors_.push_back(std::move(t));
  }
}

EncodedReader::EncodedReader(EncodedReader&&) noexcept = default;
EncodedReader::~EncodedReader() = default;

const std::string& EncodedReader::path() const { return src_->path(); }

std::string EncodedReader::source_kind() const { return src_->attributes().get_string("source_kind").value_or(""); }

std::string EncodedReader::codec() const { return src_->attributes().get_string("codec").value_or("unknown"); }

const Feedback* EncodedReader::feedback() const { return feedback_.get(); }

std::int64_t EncodedReader::payload_bytes() const {
  if (const auto p = src_->attributes().get_int("payload_bytes")) return *p;
  std::int64_t sum = 0;
  for (const auto& t : tensors_) sum += t.payload_bytes;
  return sum;
}

const std::vector<EncodedTensorInfo>& EncodedReader::tensors() const { return tensors_; }

const EncodedTensorInfo* EncodedReader::find(std::string_view name) const {
  const auto it = std::find_if(tensors_.begin(), tensors_.end(), [&](const auto& t) { return t.name == name; });
  return it == tensors_.end() ? nullptr : &*it;
}

DecodedTensor EncodedReader::decode(std::string_view name, Domain domain, bool mask) const {
  DecodedTensor out;
  try {
    if (!find(name)) throw_error(ErrorKind::BadInput, "no such compressed tensor");
    const Encoded e = read_encoded(*src_, name);
    out.payload_bytes = e.payload_bytes();
    out.values = compress::decode(e, domain);
    if (mask) out.mask = selection_mask(e, domain);
  } catch (const Error& err) {
    if (err.kind() != ErrorKind::BadInput) throw;
    throw_error(ErrorKind::BadInput, "{}: tensor {}: {}", path(), name, err.what());
  }
  return out;
}

}  // namespace loco::compress
