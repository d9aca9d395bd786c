// loco::Error, the one exception type of the library, and its mapping to exit codes.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace loco {

// What went wrong, in the terms a user acts on. Each maps to one exit code.
enum class ErrorKind {
  Check,     // a check ran and failed (a diff found differences): exit 1
  Usage,     // the command line is wrong: exit 2
  Io,        // a file could not be opened, read or written: exit 3
  BadInput,  // a file is malformed, truncated, of the wrong kind or incompatible: exit 4
  Numeric,   // NaN/Inf where forbidden, divergence: exit 5
  Internal,  // a bug in loco: exit 70
};

// The exit code of the house table (style.md) for an error kind.
int exit_code(ErrorKind kind) noexcept;

// The library's exception. The message names the file, the tensor and what was
// expected; the tool wrapper prints it as "loco-<tool>: error: <message>".
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message) : std::runtime_error(std::move(message)), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

// Throw helpers with fmt formatting: throw_error(ErrorKind::BadInput, "{}: bad shape", path).
template <typename... Args>
[[noreturn]] void throw_error(ErrorKind kind, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(kind, fmt::format(f, std::forward<Args>(args)...));
}

// Text from an input quoted in a message: whole when short, else its first max_bytes bytes and
// how long it was, so a 64 MiB attribute is never echoed into an error.
std::string excerpt(std::string_view text, std::size_t max_bytes = 200);

}  // namespace loco
