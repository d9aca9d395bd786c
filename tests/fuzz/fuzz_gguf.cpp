// libFuzzer target: the GGUF reader on arbitrary bytes (header, key/values, tensor infos, dequantization) may throw loco::Error, nothing else.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "loco/core/error.hpp"
#include "loco/io/byte_source.hpp"
#include "loco/io/gguf.hpp"
#include "read_all.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(size);
  if (size > 0) std::memcpy(bytes.data(), data, size);
  try {
    fuzz_read_all(*loco::io::open_gguf(loco::io::memory_bytes(std::move(bytes), "<fuzz>")));
  } catch (const loco::Error&) {
    // Rejected input: the expected outcome for most fuzz cases.
  }
  return 0;
}
