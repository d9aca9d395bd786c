// libFuzzer target: the pickle reader and the torch zip reader on arbitrary bytes may throw
// loco::Error, nothing else, and every tensor they accept reads inside the file.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "loco/core/error.hpp"
#include "loco/io/byte_source.hpp"
#include "loco/io/pickle.hpp"
#include "loco/io/torch_zip.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(size);
  if (size > 0) std::memcpy(bytes.data(), data, size);
  try {
    // The bytes as a bare pickle.
    (void)loco::io::pickle::parse(bytes, "<fuzz>");
  } catch (const loco::Error&) {
  }
  try {
    // The bytes as a torch.save archive: every tensor read whole and row by row.
    auto src = loco::io::open_torch(loco::io::memory_bytes(std::move(bytes), "<fuzz>"));
    std::vector<std::byte> block;
    for (const loco::io::TensorInfo& t : src->tensors()) {
      if (t.numel() > (1 << 20)) continue;  // a valid view of a huge expanded storage: skip the allocation
      const loco::Tensor whole = src->read(t);
      const std::size_t row_bytes = static_cast<std::size_t>(t.row_elements()) * loco::dtype_size(t.dtype);
      for (std::int64_t r = 0; r < t.rows(); ++r) {
        block.resize(row_bytes);
        src->read_rows(t, r, 1, block);
        if (row_bytes > 0 && std::memcmp(block.data(), whole.bytes().data() + r * row_bytes, row_bytes) != 0)
          __builtin_trap();
      }
    }
  } catch (const loco::Error&) {
  }
  return 0;
}
