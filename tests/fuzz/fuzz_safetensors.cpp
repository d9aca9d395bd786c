// libFuzzer target: the safetensors reader on arbitrary bytes may throw loco::Error, nothing else.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "loco/core/error.hpp"
#include "loco/io/byte_source.hpp"
#include "loco/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(size);
  if (size > 0) std::memcpy(bytes.data(), data, size);
  try {
    auto src = loco::io::open_safetensors(loco::io::memory_bytes(std::move(bytes), "<fuzz>"));
    std::vector<std::byte> block;
    for (const loco::io::TensorInfo& t : src->tensors()) {
      // Whole, then in small row blocks: both paths must stay inside the file.
      const loco::Tensor whole = src->read(t);
      const std::int64_t rows = t.rows();
      const std::int64_t step = loco::io::rows_per_block(t, 64);
      const std::size_t row_bytes = static_cast<std::size_t>(t.row_elements()) * loco::dtype_size(t.dtype);
      for (std::int64_t r = 0; r < rows; r += step) {
        const std::int64_t n = rows - r < step ? rows - r : step;
        block.resize(static_cast<std::size_t>(n) * row_bytes);
        src->read_rows(t, r, n, block);
        if (block.size() > 0 && std::memcmp(block.data(), whole.bytes().data() + r * row_bytes, block.size()) != 0)
          __builtin_trap();  // a row block disagrees with the whole read
      }
    }
  } catch (const loco::Error&) {
    // Rejected input: the expected outcome for most fuzz cases.
  }
  return 0;
}
