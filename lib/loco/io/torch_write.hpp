// Writing torch.save-compatible checkpoints: a dict of scalars and tensors as a zip archive that
// torch.load (weights_only=True) reads, the tensors streamed from a TensorSource row block by row
// block so memory stays at one block.
//
// The archive is what torch.save writes: every member stored (not compressed) under one record
// folder (the file's stem, as torch.save names it), data.pkl (a protocol-2 pickle), byteorder
// ("little"), data/<k> (one storage per tensor, 64-byte aligned through an "FB" padding extra field
// in the local header, as PyTorch's writer does) and version ("3"); ZIP64 records where sizes or
// offsets pass 4 GiB. The pickle is a plain dict (EMPTY_DICT, SETITEMS) whose tensors are
// torch._utils._rebuild_tensor_v2(('storage', torch.<X>Storage, '<k>', 'cpu', numel), 0, size,
// stride, False, collections.OrderedDict()) over contiguous storages.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "loco/io/source.hpp"

namespace loco::io {

// A value of the dict torch.save writes: an int, bool, float or str scalar, a DeepSpeed
// SubparamShape object (sub_param_shape_json, see ucp.hpp), or a tensor of a source.
struct TorchValue {
  enum class Kind { Int, Bool, Float, String, SubparamShape, Tensor } kind = Kind::Int;
  std::int64_t integer = 0;
  double real = 0;
  std::string text;  // String, or the SubparamShape JSON
  const TensorSource* source = nullptr;
  const TensorInfo* tensor = nullptr;
};

struct TorchItem {
  std::string key;
  TorchValue value;
};

// The torch.Storage class name of a dtype ("FloatStorage"); nullopt for the unsigned types
// above 8 bits, which torch.save stores in untyped storages this writer does not produce.
std::optional<std::string> torch_storage_class(DType t) noexcept;

// Writes items as a torch.save archive of one dict, in order, to path (atomically, temp + rename).
// record is the archive's record folder (torch.save uses the file's stem). Tensors are copied in
// row blocks of about block_bytes. Throws Error(Usage) for a dtype torch's typed storages cannot
// hold, Error(BadInput)/Error(Io) from the reads and Error(Io) when the file cannot be written.
void write_torch_dict(const std::string& path, const std::string& record, const std::vector<TorchItem>& items,
                      std::size_t block_bytes = 4u << 20);

// Writes a bare value (torch.save(5), torch.save(torch.tensor(5.0))): an Int or Float scalar, or a
// rank-0 tensor of dtype `dtype` holding `value` when dtype is given. For DeepSpeed's step.pt.
void write_torch_scalar(const std::string& path, const std::string& record, double value, bool integer,
                        std::optional<DType> dtype);

// CRC-32 (ISO-HDLC, as zip) of data, continuing from crc (0 to start).
std::uint32_t crc32(std::uint32_t crc, std::span<const std::byte> data) noexcept;

}  // namespace loco::io
