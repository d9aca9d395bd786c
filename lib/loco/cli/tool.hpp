// The one run wrapper every loco tool's main hands its work to: option parsing, logging, thread
// limit, provenance, and the mapping of errors to exit codes (style.md).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace loco::cli {

// The groups --help and the man page list the options in, in this order. By default positionals are
// inputs, --output an output, --threads execution, -h, -v, -q and --version common, and the rest
// algorithm; Tool::group moves an option elsewhere.
enum class Group { Inputs, Outputs, Algorithm, Execution, Common };
std::string group_title(Group g);
const std::vector<std::string>& group_titles();  // "Inputs", ..., "Common"

// The width --help wraps to: $COLUMNS, else the terminal's, else 80; between 40 and 100.
int help_width();
// TEXT's words in lines of at most WIDTH columns; a longer word is cut after ',', '|' or '+'.
std::vector<std::string> wrap(std::string_view text, std::size_t width);

class Tool {
 public:
  // name: "loco-inspect"; summary: one line for --help and the man page's NAME section.
  Tool(std::string name, std::string summary);

  CLI::App& app() { return app_; }
  // The man page's DESCRIPTION (--help shows only the summary) and EXAMPLES (the first
  // kHelpExamples also in --help).
  void set_description(std::string text);
  void add_example(std::string command, std::string explanation);
  static constexpr std::size_t kHelpExamples = 3;
  // Moves the named options ("--metrics", "OUT") to a help group (see Group).
  void group(Group g, std::initializer_list<std::string_view> names);
  // The words bash completes for OPTION's value: the names its specs start with (--codec: topk,
  // quant, ...). A {a,b} set of a CLI::IsMember check is completed without this.
  void complete_words(std::string_view option, std::vector<std::string> words);

  // Thread limit in force while the body runs (--threads, LOCO_THREADS, default: all cores).
  int threads() const { return threads_; }

  // Parses argv, sets up logging, TBB and provenance, runs body and returns the exit code:
  // body's return value, 2 for usage errors, the table's code for a loco::Error, 70 for any other
  // exception. A broken pipe on stdout ends quietly with 0 (like `rg | head`).
  int run(int argc, char** argv, const std::function<int()>& body);

  // The man page (roff) generated from the option definitions.
  std::string man_page() const;
  // --help, wrapped to WIDTH columns.
  std::string help_text(int width) const;
  // The bash completion of this tool (--generate-completion): data for share/completion/loco.bash.
  std::string completion() const;

 private:
  void settle_groups();  // the default groups of the options not placed by group()

  std::string name_, summary_, description_;
  std::vector<std::pair<std::string, std::string>> examples_;
  std::map<std::string, std::vector<std::string>, std::less<>> words_;
  CLI::App app_;
  int verbose_ = 0;
  bool quiet_ = false;
  bool generate_man_ = false;
  int threads_ = 0;
};

// Marks an option whose values are files the run writes, or reads and then replaces (a state
// file). Before the body runs, Tool::run refuses (exit 2) an output that is the same file as
// another output or as any other option's value (io::check_output_paths), so that no input is
// overwritten and no output replaces another: checked up front, before anything is written.
CLI::Option* output_path(CLI::Option* opt);

// Validators and helpers shared by tools.
// Adds the common "-o,--output FILE" option (required, "-" for stdout).
CLI::Option* add_output_option(CLI::App& app, std::string& out, const std::string& what = "output file");

}  // namespace loco::cli
