// The bash completion of a tool, generated from its CLI11 definition: the data that
// share/completion/loco.bash's _loco_complete reads (docs/decisions.md "Installed like a tool").
#include <fmt/format.h>

#include "loco/cli/tool.hpp"

namespace loco::cli {

std::string Tool::completion() const {
  std::string names, values;
  for (const CLI::Option* o : app_.get_options([](const CLI::Option* o) { return !o->get_group().empty(); })) {
    std::vector<std::string> flags;
    for (const auto& s : o->get_snames()) flags.push_back("-" + s);
    for (const auto& l : o->get_lnames()) flags.push_back("--" + l);
    if (flags.empty()) continue;  // a positional: bash's default (file names)
    for (const auto& f : flags) names += (names.empty() ? "" : " ") + f;
    if (o->get_type_size() == 0) continue;
    // The words of the value: complete_words', else a {a,b} set of a validator, else none.
    std::string words;
    const auto given = words_.find(flags.back());
    if (given != words_.end()) {
      for (const auto& w : given->second) words += (words.empty() ? "" : " ") + w;
    } else if (const std::string type = o->get_type_name(); type.find(":{") != std::string::npos) {
      words = type.substr(type.find(":{") + 2);
      words = words.substr(0, words.find('}'));
      for (char& c : words) c = c == ',' ? ' ' : c;
    }
    for (const auto& f : flags) values += fmt::format("_LOCO_ARG['{} {}']='{}'\n", name_, f, words);
  }
  return fmt::format("_LOCO_OPTS[{}]='{}'\n{}complete -o default -F _loco_complete {}\n", name_, names, values, name_);
}

}  // namespace loco::cli
