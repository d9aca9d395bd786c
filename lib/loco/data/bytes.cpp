// Whole-file reads and the raw-bytes token reader.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "loco/core/error.hpp"
#include "loco/data/readers.hpp"

namespace loco::data {

std::vector<std::byte> read_file(const std::string& path) {
  struct Close {
    void operator()(std::FILE* f) const noexcept { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Close> f(std::fopen(path.c_str(), "rb"));
  if (!f) throw_error(ErrorKind::Io, "{}: cannot open: {}", path, std::strerror(errno));
  std::vector<std::byte> out;
  std::byte buf[1 << 16];
  for (;;) {
    const std::size_t got = std::fread(buf, 1, sizeof buf, f.get());
    out.insert(out.end(), buf, buf + got);
    if (got < sizeof buf) {
      if (std::ferror(f.get())) throw_error(ErrorKind::Io, "{}: read failed: {}", path, std::strerror(errno));
      break;
    }
  }
  return out;
}

TokenData tokens_from_bytes(std::span<const std::byte> bytes, std::string source) {
  if (bytes.empty()) throw_error(ErrorKind::BadInput, "{}: empty: no tokens", source);
  TokenData data;
  data.tokens.resize(bytes.size());
  std::memcpy(data.tokens.data(), bytes.data(), bytes.size());
  data.vocab = 256;
  data.source = std::move(source);
  return data;
}

TokenData read_bytes(const std::string& path) { return tokens_from_bytes(read_file(path), "bytes:" + path); }

}  // namespace loco::data
