// Output-format choice and the TensorSink conveniences shared by every writer.
#include "loco/io/sink.hpp"

#include <filesystem>

#include "loco/core/error.hpp"
#include "loco/io/gguf.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/safetensors.hpp"

namespace loco::io {

Format format_for_output(const std::string& path) {
  if (path == "-") return Format::Loco;
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext == ".h5" || ext == ".hdf5" || ext == ".loco") return Format::Loco;
  if (ext == ".safetensors") return Format::Safetensors;
  if (ext == ".gguf") return Format::Gguf;
  throw_error(ErrorKind::Usage,
              "{}: cannot tell the output format from the extension '{}' (use .h5, .safetensors or .gguf)", path, ext);
}

void TensorSink::write(std::size_t index, const Tensor& t) {
  const TensorInfo& info = plan().at(index);
  if (t.shape() != info.shape)
    throw_error(ErrorKind::Internal, "tensor {}: shape {} written where {} was planned", info.key(),
                shape_string(t.shape()), shape_string(info.shape));
  if (t.dtype() != info.dtype) {
    Tensor converted = t.to(info.dtype);
    write_rows(index, 0, info.rows(), converted.bytes());
  } else {
    write_rows(index, 0, info.rows(), t.bytes());
  }
}

std::size_t TensorSink::index_of(std::string_view name, std::string_view group) const {
  const auto& p = plan();
  for (std::size_t i = 0; i < p.size(); ++i)
    if (p[i].name == name && p[i].group == group) return i;
  throw_error(ErrorKind::Internal, "tensor {}/{} is not in the output's plan", group, name);
}

std::unique_ptr<TensorSink> create_sink(const std::string& path, Format format, const Attributes& root,
                                        std::vector<TensorInfo> plan) {
  switch (format) {
    case Format::Loco: return create_loco_sink(path, root, std::move(plan));
    case Format::Safetensors: return create_safetensors_sink(path, root, std::move(plan));
    case Format::Gguf: return create_gguf_sink(path, root, std::move(plan));
  }
  throw_error(ErrorKind::Internal, "unknown output format");
}

void write_tensor_set(const std::string& path, const Attributes& root, const TensorSet& tensors) {
  std::vector<TensorInfo> plan;
  for (const auto& e : tensors) plan.push_back({"tensors", e.name, e.tensor.shape(), e.tensor.dtype(), {}});
  auto sink = create_sink(path, root, std::move(plan));
  for (std::size_t i = 0; i < tensors.size(); ++i) sink->write(i, tensors[i].tensor);
  sink->commit();
}

}  // namespace loco::io
