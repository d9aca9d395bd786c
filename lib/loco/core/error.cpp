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

}  // namespace loco
