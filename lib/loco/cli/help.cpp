// --help of every tool: the summary, the usage, the options in groups with their help wrapped to the
// terminal, a few examples, and a pointer to the man page (which has the long description).
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include <fmt/format.h>

#include "loco/cli/tool.hpp"

namespace loco::cli {

const std::vector<std::string>& group_titles() {
  static const std::vector<std::string> titles = {"Inputs", "Outputs", "Algorithm", "Execution", "Common"};
  return titles;
}

std::string group_title(Group g) { return group_titles().at(static_cast<std::size_t>(g)); }

int help_width() {
  int width = 0;
  if (const char* c = std::getenv("COLUMNS")) width = std::atoi(c);
  winsize ws{};
  if (width <= 0 && ::isatty(STDOUT_FILENO) && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) width = ws.ws_col;
  if (width <= 0) width = 80;
  return std::clamp(width, 40, 100);  // lines longer than 100 columns read badly, whatever the terminal
}

std::vector<std::string> wrap(std::string_view text, std::size_t width) {
  std::vector<std::string> lines;
  std::string line;
  std::size_t i = 0;
  width = std::max<std::size_t>(width, 10);
  while (i < text.size()) {
    while (i < text.size() && text[i] == ' ') ++i;
    std::size_t j = text.find(' ', i);
    if (j == std::string_view::npos) j = text.size();
    std::string_view word = text.substr(i, j - i);
    i = j;
    if (word.empty()) break;
    if (!line.empty() && line.size() + 1 + word.size() <= width) {
      line += ' ';
      line += word;
      continue;
    }
    if (!line.empty()) lines.push_back(std::move(line));
    line.clear();
    // A word longer than a line is cut after a ',', '|' or '+' where it can be, else at the width.
    while (word.size() > width) {
      std::size_t cut = word.find_last_of(",|+", width - 1);
      cut = cut == std::string_view::npos || cut == 0 ? width : cut + 1;
      lines.emplace_back(word.substr(0, cut));
      word.remove_prefix(cut);
    }
    line = word;
  }
  if (!line.empty()) lines.push_back(std::move(line));
  return lines;
}

namespace {

// "-o, --output FILE": the names, then the value's type (a {a,b} set when a validator gives one).
std::string option_label(const CLI::Option* o) {
  if (o->get_lnames().empty() && o->get_snames().empty()) return o->get_name();
  std::string label;
  for (const auto& s : o->get_snames()) label += (label.empty() ? "-" : ", -") + s;
  for (const auto& l : o->get_lnames()) label += (label.empty() ? "--" : ", --") + l;
  if (o->get_type_size() == 0) return label;
  const std::string type = o->get_type_name();
  const std::size_t set = type.find(":{");
  label += ' ';
  label += set != std::string::npos ? type.substr(set + 1) : type.substr(0, type.find(':'));
  if (o->get_items_expected_max() > 1) label += "...";
  return label;
}

std::string option_text(const CLI::Option* o) {
  std::string text = o->get_description();
  if (o->get_required()) text += " (required)";
  if (!o->get_default_str().empty()) text += " [default: " + o->get_default_str() + "]";
  if (!o->get_envname().empty()) text += " [env: " + o->get_envname() + "]";
  return text;
}

// The command of an example broken at spaces into lines of at most WIDTH, continued with " \".
std::vector<std::string> wrap_command(std::string_view cmd, std::size_t width) {
  std::vector<std::string> lines = wrap(cmd, width - 8);  // 6 columns of indent, " \\" after
  for (std::size_t k = 0; k < lines.size(); ++k) {
    if (k + 1 < lines.size()) lines[k] += " \\";
    lines[k].insert(0, k == 0 ? "  " : "      ");
  }
  return lines;
}

}  // namespace

std::string Tool::help_text(int width) const {
  const std::size_t w = static_cast<std::size_t>(width), column = 26;
  std::string out = "Usage: " + name_;
  std::vector<const CLI::Option*> positionals;
  for (const CLI::Option* o : app_.get_options())
    if (o->get_lnames().empty() && o->get_snames().empty() && !o->get_group().empty()) positionals.push_back(o);
  std::string usage = "[OPTIONS]";
  for (const CLI::Option* o : positionals) {
    std::string p = o->get_name() + (o->get_items_expected_max() > 1 ? "..." : "");
    usage += o->get_required() ? " " + p : " [" + p + "]";
  }
  const auto usage_lines = wrap(usage, w - out.size() - 1);
  for (std::size_t k = 0; k < usage_lines.size(); ++k)
    out += (k == 0 ? " " : "\n" + std::string(name_.size() + 8, ' ')) + usage_lines[k];
  out += "\n";
  for (const auto& line : wrap(summary_, w)) out += line + "\n";

  for (const std::string& title : group_titles()) {
    auto opts = app_.get_options([&](const CLI::Option* o) { return o->get_group() == title; });
    if (opts.empty()) continue;
    out += "\n" + title + ":\n";
    for (const CLI::Option* o : opts) {
      const std::string label = "  " + option_label(o);
      auto text = wrap(option_text(o), w - column);
      if (label.size() + 2 > column) {
        for (const auto& line : wrap(label, w - 2)) out += "  " + line + "\n";
        for (const auto& line : text) out += std::string(column, ' ') + line + "\n";
        continue;
      }
      for (std::size_t k = 0; k < text.size(); ++k)
        out += fmt::format("{:<{}}{}\n", k == 0 ? label : "", column, text[k]);
      if (text.empty()) out += label + "\n";
    }
  }
  if (!examples_.empty()) {
    out += "\nExamples:\n";
    const std::size_t shown = std::min<std::size_t>(examples_.size(), kHelpExamples);
    for (std::size_t e = 0; e < shown; ++e) {
      for (const auto& line : wrap_command(examples_[e].first, w)) out += line + "\n";
      for (const auto& line : wrap(examples_[e].second, w - 4)) out += "    " + line + "\n";
    }
  }
  const std::string more = examples_.size() > kHelpExamples ? " and more examples" : "";
  out += "\n";
  for (const auto& line : wrap(fmt::format("See 'man {}' for the details{}.", name_, more), w)) out += line + "\n";
  return out;
}

}  // namespace loco::cli
