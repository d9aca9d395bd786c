// Man pages generated from a tool's CLI11 definition, so --help and the page cannot drift.
#include <fmt/format.h>

#include <sstream>
#include <utility>

#include "loco/cli/tool.hpp"

namespace loco::cli {
namespace {

// Escapes text for roff: backslashes, and leading dots or quotes that roff reads as requests.
std::string roff(const std::string& s) {
  std::string out;
  bool line_start = true;
  for (char c : s) {
    if (line_start && (c == '.' || c == '\'')) out += "\\&";
    if (c == '\\') out += "\\e";
    else if (c == '-') out += "\\-";
    else out += c;
    line_start = c == '\n';
  }
  return out;
}

std::string option_names(const CLI::Option* o) {
  std::string names;
  for (const auto& s : o->get_snames()) names += (names.empty() ? "" : ", ") + std::string("-") + s;
  for (const auto& l : o->get_lnames()) names += (names.empty() ? "" : ", ") + std::string("--") + l;
  if (names.empty()) names = o->get_name();
  return names;
}

std::string man_option(const CLI::Option* o) {
  std::ostringstream m;
  m << ".TP\n.B " << roff(option_names(o));
  if (o->get_type_size() != 0 && !o->get_type_name().empty()) m << " \\fI" << roff(o->get_type_name()) << "\\fR";
  m << "\n" << roff(o->get_description());
  if (!o->get_default_str().empty()) m << " (default: " << roff(o->get_default_str()) << ")";
  if (!o->get_envname().empty()) m << " [env: " << roff(o->get_envname()) << "]";
  if (o->get_required()) m << " Required.";
  m << "\n";
  return m.str();
}

}  // namespace

std::string Tool::man_page() const {
  std::ostringstream m;
  m << fmt::format(".TH {} 1 \"\" \"loco {}\" \"loco manual\"\n", name_, LOCO_VERSION);
  m << ".SH NAME\n" << roff(name_) << " \\- " << roff(summary_) << "\n";
  m << ".SH SYNOPSIS\n.B " << roff(name_) << "\n";
  std::vector<const CLI::Option*> positionals, options;
  for (const CLI::Option* o : app_.get_options([](const CLI::Option* o) { return !o->get_group().empty(); })) {
    (o->get_lnames().empty() && o->get_snames().empty() ? positionals : options).push_back(o);
  }
  m << "[\\fIOPTIONS\\fR]";
  for (const CLI::Option* o : positionals) {
    std::string p = o->get_name();
    if (o->get_items_expected_max() > 1) p += "...";
    m << (o->get_required() ? " \\fI" + roff(p) + "\\fR" : " [\\fI" + roff(p) + "\\fR]");
  }
  m << "\n";
  if (!description_.empty()) m << ".SH DESCRIPTION\n" << roff(description_) << "\n";
  if (!positionals.empty()) {
    m << ".SH ARGUMENTS\n";
    for (const CLI::Option* o : positionals)
      m << ".TP\n.I " << roff(o->get_name()) << "\n" << roff(o->get_description()) << "\n";
  }
  m << ".SH OPTIONS\n";
  for (const std::string& title : group_titles()) {
    bool first = true;
    for (const CLI::Option* o : options) {
      if (o->get_group() != title) continue;
      if (std::exchange(first, false)) m << ".SS " << title << "\n";
      m << man_option(o);
    }
  }
  if (!examples_.empty()) {
    m << ".SH EXAMPLES\n";
    for (const auto& [cmd, what] : examples_) m << ".TP\n.B " << roff(cmd) << "\n" << roff(what) << "\n";
  }
  m << ".SH EXIT STATUS\n"
       ".TP\n0\nsuccess\n"
       ".TP\n1\na check ran and failed (a diff found differences, a threshold was missed)\n"
       ".TP\n2\nusage error\n"
       ".TP\n3\nI/O error\n"
       ".TP\n4\nbad or incompatible input file (malformed, truncated, wrong kind, mismatched shapes or model configs)\n"
       ".TP\n5\nnumerical failure (NaN/Inf where forbidden, divergence)\n"
       ".TP\n70\ninternal error (a bug in loco)\n"
       ".TP\n128+N\nended by signal N (SIGHUP 129, SIGINT 130, SIGTERM 143) after removing its temporary files\n";
  m << ".SH SEE ALSO\n.BR loco (1),\n.BR loco-format (5)\n";
  return m.str();
}

}  // namespace loco::cli
