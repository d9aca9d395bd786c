// The per-tensor source interface every format reader implements (loco HDF5, safetensors, ...),
// and open_source(), which picks the reader from the file's magic bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loco/core/attributes.hpp"
#include "loco/core/tensor.hpp"

namespace loco::io {

// One stored tensor. group is its parent's path without a leading slash ("tensors",
// "state/exp_avg", "data"); name is its link name ("blocks.0.attn.qkv.weight").
struct TensorInfo {
  std::string group = "tensors";
  std::string name;
  Shape shape;
  DType dtype = DType::F32;
  Attributes attrs;  // per-tensor attributes (format-specific markers are not listed)

  std::string key() const { return group + "/" + name; }
  std::int64_t numel() const { return shape_numel(shape); }
  // Elements per leading-dimension row (1 for rank 0 and 1), and the number of rows.
  std::int64_t row_elements() const;
  std::int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
};

// A file of named tensors, read tensor by tensor or in row blocks so memory stays bounded.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual const std::string& path() const = 0;
  // "loco" (HDF5), "safetensors", "safetensors-index", "gguf", "torch" or "ucp".
  virtual std::string_view format() const = 0;
  // Root attributes (loco) or __metadata__ entries (safetensors, all strings).
  virtual const Attributes& attributes() const = 0;
  // Every tensor, groups in file order and tensors in creation order within a group.
  virtual const std::vector<TensorInfo>& tensors() const = 0;
  // Attributes of a group ("tensors", "state", "tensors/wte.weight" for compressed tensors).
  virtual Attributes group_attributes(std::string_view group) const { return {}; }

  // Reads rows [row0, row0 + nrows) of the leading dimension in the stored dtype into out,
  // which must hold nrows · row_elements() elements. Throws Error(BadInput/Io) naming file and tensor.
  virtual void read_rows(const TensorInfo& t, std::int64_t row0, std::int64_t nrows,
                         std::span<std::byte> out) const = 0;

  // Whole tensor in its stored dtype, or converted.
  Tensor read(const TensorInfo& t) const;
  Tensor read(const TensorInfo& t, DType as) const;
  // Looks up group/name; nullptr when absent.
  const TensorInfo* find(std::string_view name, std::string_view group = "tensors") const;
  // Throws Error(BadInput) naming the file when absent.
  const TensorInfo& get(std::string_view name, std::string_view group = "tensors") const;
  // The tensors of one group, in order.
  std::vector<const TensorInfo*> group(std::string_view group) const;
};

// Opens any supported tensor file by its content ("-" reads stdin): loco HDF5, safetensors, a
// safetensors index JSON (over its shards), GGUF (gguf.hpp), a torch.save archive; a folder is opened as a DeepSpeed
// universal checkpoint (ucp.hpp). Throws Error(Io) when it
// cannot be read and Error(BadInput) when it is no format loco reads, naming the path.
// The path is registered as an input of this run (outputs may not replace it) unless
// register_input is false: for files a step reads and then replaces on purpose (worker state).
std::unique_ptr<TensorSource> open_source(const std::string& path, bool register_input = true);

// Rows per block when streaming t with at most max_bytes per block (at least one row).
std::int64_t rows_per_block(const TensorInfo& t, std::size_t max_bytes);

}  // namespace loco::io
