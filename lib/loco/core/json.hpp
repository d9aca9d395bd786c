// JSON read from files and command lines. nlohmann's parser is iterative, but dump(), comparison,
// copies and conversions recurse once per nesting level, so a document nested 100,000 levels
// deep (a few hundred KB of brackets) overflows the stack later. parse_json refuses nesting
// beyond kMaxJsonDepth while parsing; every JSON text loco reads goes through it.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "loco/core/error.hpp"

namespace loco {

// Containers inside containers: {"a": [1]} has depth 2. Model configs, safetensors indexes,
// DeepSpeed layouts and ledgers need fewer than 8.
inline constexpr int kMaxJsonDepth = 64;

// Parses text (nlohmann::json or nlohmann::ordered_json). Throws Error(BadInput)
// "<where>: not valid JSON: ..." or "<where>: JSON nests deeper than 64 levels".
template <typename Json = nlohmann::json>
Json parse_json(std::string_view text, std::string_view where) {
  bool too_deep = false;
  // depth counts the containers enclosing the value being started; a container that would nest
  // deeper than the limit is discarded, and the parse goes on iteratively to its end.
  const typename Json::parser_callback_t limit = [&too_deep](int depth, typename Json::parse_event_t event, Json&) {
    if ((event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth) {
      too_deep = true;
      return false;
    }
    return true;
  };
  Json j;
  try {
    j = Json::parse(text.begin(), text.end(), limit);
  } catch (const nlohmann::json::exception& e) {
    // nlohmann quotes the last token read, which a hostile file makes megabytes long.
    throw_error(ErrorKind::BadInput, "{}: not valid JSON: {}", where, excerpt(e.what()));
  }
  if (too_deep) throw_error(ErrorKind::BadInput, "{}: JSON nests deeper than {} levels", where, kMaxJsonDepth);
  return j;
}

}  // namespace loco
