// The per-tensor sink interface every format writer implements, and create_sink(), which picks
// the format from the output's extension. Sinks write atomically: nothing appears under the
// final name until commit(), and a sink destroyed without commit() leaves nothing behind.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loco/core/attributes.hpp"
#include "loco/core/tensor.hpp"
#include "loco/io/source.hpp"

namespace loco::io {

enum class Format { Loco, Safetensors, Gguf };

// Output format from the path: .safetensors → Safetensors; .gguf → Gguf; .h5/.hdf5/.loco and "-" → Loco.
// Throws Error(Usage) for another extension.
Format format_for_output(const std::string& path);

class TensorSink {
 public:
  virtual ~TensorSink() = default;
  // The tensors as declared to create_sink, in the same order.
  virtual const std::vector<TensorInfo>& plan() const = 0;
  // Writes rows [row0, row0 + nrows) of tensor `index` of the plan, given in its dtype.
  // Tensors and row blocks may be written in any order; every row must be written once.
  virtual void write_rows(std::size_t index, std::int64_t row0, std::int64_t nrows,
                          std::span<const std::byte> data) = 0;
  // Adds or replaces a root attribute. Loco files take attributes until commit(); formats
  // whose header precedes the data (safetensors) take them only at creation.
  virtual void set_attribute(std::string_view name, AttrValue value) = 0;
  // Adds an attribute to a group (loco only), e.g. "state" scalars or compressed-tensor groups.
  virtual void set_group_attribute(std::string_view group, std::string_view name, AttrValue value) = 0;
  // Finishes the file and moves it under its final name (or writes it to stdout for "-").
  virtual void commit() = 0;

  // Whole tensor `index`, converted to the planned dtype when it differs.
  void write(std::size_t index, const Tensor& t);
  // Index of group/name in the plan; throws Error(Internal) when absent.
  std::size_t index_of(std::string_view name, std::string_view group = "tensors") const;
};

// Creates the output. root holds the root attributes (for loco files: at least "kind"; the
// format marker, version and producer are added here). Throws Error(Usage) when the path is an
// input of this run (see forbid_overwrite_inputs) and Error(Io) when it cannot be created.
std::unique_ptr<TensorSink> create_sink(const std::string& path, Format format, const Attributes& root,
                                        std::vector<TensorInfo> plan);
inline std::unique_ptr<TensorSink> create_sink(const std::string& path, const Attributes& root,
                                               std::vector<TensorInfo> plan) {
  return create_sink(path, format_for_output(path), root, std::move(plan));
}

// Convenience: writes a whole tensor set (and optional state slots) as one loco file.
void write_tensor_set(const std::string& path, const Attributes& root, const TensorSet& tensors);

}  // namespace loco::io
