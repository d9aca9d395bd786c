// Compressed loco files: writing one from tensors encoded in memory (what a worker that compresses as
// it trains, such as DeMo's, sends), in the layout loco-compress writes, and reading one back with its
// contract checked (the group attributes of each tensor), so no other concern parses that layout.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loco/compress/codec.hpp"
#include "loco/core/attributes.hpp"

namespace loco::io {
class TensorSource;
}

namespace loco::compress {

// One encoded tensor of a compressed file and the bytes of its dense form.
struct NamedEncoded {
  std::string name;
  Encoded encoded;
  std::int64_t raw_bytes = 0;
};

// Writes `path` atomically ("-" for stdout): kind compressed, the root attributes `root` (which should
// hold source_kind, codec and what the source kind needs, e.g. a delta's model_config, round, worker,
// samples, base_checksum), then per tensor the group /tensors/<name> with the encoding's attributes,
// raw_bytes and payload_bytes, and its datasets; the root gets the totals raw_bytes and payload_bytes.
// Throws Error(Usage) for a name given twice, Error(Io) when the file cannot be written.
void write_compressed_file(const std::string& path, Attributes root, const std::vector<NamedEncoded>& tensors);

class Feedback;

// One compressed tensor as its group /tensors/<name> records it, checked by EncodedReader.
struct EncodedTensorInfo {
  std::string name;
  Shape shape;                     // of the decoded tensor
  DType dtype = DType::F32;        // the (floating) dtype the decoded tensor is written in
  std::string spec;                // the canonical codec spec
  std::int64_t payload_bytes = 0;  // bytes of its datasets
  Selection selection = Selection::All;
  // The coefficient domain of a codec with Selection::Coefficients (dct_topk), else nullopt.
  std::optional<CoefficientDomain> domain;
};

// One tensor decoded by EncodedReader::decode.
struct DecodedTensor {
  Tensor values;                   // float32: the tensor's shape, or {domain size} in Domain::Coefficients
  Tensor mask;                     // with a mask asked for and a selecting codec: 1 where kept, 0 elsewhere; else empty
  std::int64_t payload_bytes = 0;  // bytes of the datasets read
};

// A compressed file (kind compressed) opened for reading over a source the caller keeps open.
class EncodedReader {
 public:
  // Checks the file: kind compressed; for every group /tensors/<name> the codec, a spec that parses,
  // a floating dtype and a shape (ndim and shape attributes that agree; ndim 0 and no shape for a
  // scalar); a feedback attribute, when present, that parse_feedback accepts. Throws Error(BadInput)
  // naming the file and, for a tensor's attributes, the tensor.
  explicit EncodedReader(const io::TensorSource& src);
  EncodedReader(EncodedReader&&) noexcept;
  ~EncodedReader();

  const std::string& path() const;
  // The kind of file it was made from (root source_kind; empty when absent).
  std::string source_kind() const;
  // The root codec attribute ("unknown" when absent).
  std::string codec() const;
  // The error feedback it was compressed with (root feedback attribute), or nullptr.
  const Feedback* feedback() const;
  // Root payload_bytes, or the sum over its tensors when absent.
  std::int64_t payload_bytes() const;
  // Its tensors in file order.
  const std::vector<EncodedTensorInfo>& tensors() const;
  // nullptr when the file holds no compressed tensor of that name.
  const EncodedTensorInfo* find(std::string_view name) const;

  // Reads and decodes tensor `name` (compress::decode in that domain) and, with mask, its selection
  // mask (selection_mask). Throws Error(BadInput) "PATH: tensor NAME: ..." when it is absent or does not
  // decode.
  DecodedTensor decode(std::string_view name, Domain domain = Domain::Tensor, bool mask = false) const;

 private:
  const io::TensorSource* src_;
  std::vector<EncodedTensorInfo> tensors_;
  std::unique_ptr<Feedback> feedback_;
};

}  // namespace loco::compress
