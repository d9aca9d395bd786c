// Shared by the fuzz targets of tensor readers: reads every tensor of a source whole, then in
// small row blocks, and traps when the two disagree; both paths must stay inside the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "loco/io/source.hpp"

inline void fuzz_read_all(const loco::io::TensorSource& src) {
  std::vector<std::byte> block;
  for (const loco::io::TensorInfo& t : src.tensors()) {
    const loco::Tensor whole = src.read(t);
    const std::int64_t rows = t.rows();
    const std::int64_t step = loco::io::rows_per_block(t, 64);
    const std::size_t row_bytes = static_cast<std::size_t>(t.row_elements()) * loco::dtype_size(t.dtype);
    for (std::int64_t r = 0; r < rows; r += step) {
      const std::int64_t n = rows - r < step ? rows - r : step;
      block.resize(static_cast<std::size_t>(n) * row_bytes);
      src.read_rows(t, r, n, block);
      if (block.size() > 0 && std::memcmp(block.data(), whole.bytes().data() + r * row_bytes, block.size()) != 0)
        __builtin_trap();  // a row block disagrees with the whole read
    }
  }
}
