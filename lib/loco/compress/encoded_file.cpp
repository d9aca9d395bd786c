// write_compressed_file: a compressed loco file from in-memory encodings.
#include "loco/compress/encoded_file.hpp"

#include <set>

#include "loco/core/error.hpp"
#include "loco/io/sink.hpp"

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

}  // namespace loco::compress
