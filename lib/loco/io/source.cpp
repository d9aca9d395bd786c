// Format detection and the TensorSource conveniences shared by every reader.
#include "loco/io/source.hpp"

#include <algorithm>
#include <array>
#include <filesystem>

#include "loco/core/error.hpp"
#include "loco/io/byte_source.hpp"
#include "loco/io/gguf.hpp"
#include "loco/io/loco_file.hpp"
#include "loco/io/output.hpp"
#include "loco/io/safetensors.hpp"
#include "loco/io/safetensors_index.hpp"
#include "loco/io/torch_zip.hpp"
#include "loco/io/ucp.hpp"

namespace loco::io {
std::int64_t TensorInfo::row_elements() const {
  if (shape.size() <= 1) return 1;
  return shape_numel(Shape(shape.begin() + 1, shape.end()));
}

std::int64_t rows_per_block(const TensorInfo& t, std::size_t max_bytes) {
  const std::size_t row_bytes = static_cast<std::size_t>(t.row_elements()) * dtype_size(t.dtype);
  if (row_bytes == 0) return std::max<std::int64_t>(t.rows(), 1);
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(max_bytes / row_bytes));
}

Tensor TensorSource::read(const TensorInfo& t) const {
  Tensor out = Tensor::uninitialized(t.shape, t.dtype);
  read_rows(t, 0, t.rows(), out.bytes());
  return out;
}

Tensor TensorSource::read(const TensorInfo& t, DType as) const {
  Tensor stored = read(t);
  return stored.dtype() == as ? std::move(stored) : stored.to(as);
}

const TensorInfo* TensorSource::find(std::string_view name, std::string_view grp) const {
  for (const auto& t : tensors())
    if (t.name == name && t.group == grp) return &t;
  return nullptr;
}

const TensorInfo& TensorSource::get(std::string_view name, std::string_view grp) const {
  if (const TensorInfo* t = find(name, grp)) return *t;
  throw_error(ErrorKind::BadInput, "{}: no tensor {}/{}", path(), grp, name);
}

std::vector<const TensorInfo*> TensorSource::group(std::string_view grp) const {
  std::vector<const TensorInfo*> out;
  for (const auto& t : tensors())
    if (t.group == grp) out.push_back(&t);
  return out;
}

std::unique_ptr<TensorSource> open_source(const std::string& path, bool as_input) {
  if (path != "-" && std::filesystem::is_directory(path)) {
    if (!is_ucp_folder(path))
      throw_error(ErrorKind::BadInput,
                  "{}: is a folder but not a DeepSpeed universal checkpoint (zero/<param>/fp32.pt)", path);
    if (as_input) register_input(path);
    return open_ucp(path);
  }
  if (as_input) register_input(path);
  std::unique_ptr<ByteSource> bytes = open_bytes(path);
  std::array<std::byte, 16> head{};
  const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(bytes->size(), head.size()));
  bytes->read_at(0, std::span(head.data(), n));
  if (n == 0) throw_error(ErrorKind::BadInput, "{}: empty file, expected a tensor file", bytes->name());
  if (has_hdf5_signature(std::span(head.data(), n))) return open_loco(std::move(bytes));
  if (looks_like_safetensors(std::span(head.data(), n))) return open_safetensors(std::move(bytes));
  if (looks_like_gguf(std::span(head.data(), n))) return open_gguf(std::move(bytes));
  if (looks_like_zip(std::span(head.data(), n))) return open_torch(std::move(bytes));
  if (looks_like_json_object(std::span(head.data(), n))) return open_safetensors_index(std::move(bytes));
  if (looks_like_legacy_torch(std::span(head.data(), n)))
    throw_error(ErrorKind::BadInput,
                "{}: a legacy (pre-1.6) torch.save file, which loco does not read; re-save it "
                "with PyTorch >= 1.6 (zip format)",
                bytes->name());
  throw_error(ErrorKind::BadInput,
              "{}: not a tensor file loco reads (expected loco HDF5, safetensors, a safetensors index JSON, GGUF or a "
              "PyTorch .pt)",
              bytes->name());
}

}  // namespace loco::io
