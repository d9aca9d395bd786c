// libFuzzer target: the loco HDF5 file validator and reader on arbitrary bytes. It must only ever
// throw loco::Error. HDF5's own parser is part of what runs: open_loco reads the metadata in a
// child process first, so a crash or hang inside libhdf5 on a hostile file becomes an Error here,
// and a crash that remains is a finding (in the data reads, or in loco).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "loco/core/error.hpp"
#include "loco/io/byte_source.hpp"
#include "loco/io/loco_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data),
                               reinterpret_cast<const std::byte*>(data) + size);
  try {
    auto src = loco::io::open_loco(loco::io::memory_bytes(std::move(bytes), "<fuzz>"));
    for (const auto& t : src->tensors()) {
      if (t.numel() > (std::int64_t{1} << 24)) continue;  // a claimed shape is not an allocation to make
      (void)src->read(t);
    }
    (void)loco::io::model_config(*src);
  } catch (const loco::Error&) {
  }
  return 0;
}
