// Exit codes of the error kinds (the table in style.md and every man page).
#include "loco/core/error.hpp"

namespace loco {

int exit_code(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::Check: return 1;
    case ErrorKind::Usage: return 2;
    case ErrorKind::Io: return 3;
    case ErrorKind::BadInput: return 4;
    case ErrorKind::Numeric: return 5;
    case ErrorKind::Internal: return 70;
  }
  return 70;
}

std::string excerpt(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  // Cut at a UTF-8 character boundary.
  std::size_t n = max_bytes;
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return fmt::format("{}... ({} bytes)", text.substr(0, n), text.size());
}

}  // namespace loco
