// The one run wrapper every loco tool's main hands its work to: option parsing, logging, thread
// limit, provenance, and the mapping of errors to exit codes (style.md).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace loco::cli {

class Tool {
 public:
  // name: "loco-inspect"; summary: one line for --help and the man page's NAME section.
  Tool(std::string name, std::string summary);

  CLI::App& app() { return app_; }
  // Extra sections for the man page (DESCRIPTION paragraphs, EXAMPLES), also shown after --help.
  void set_description(std::string text);
  void add_example(std::string command, std::string explanation);

  // Thread limit in force while the body runs (--threads, LOCO_THREADS, default: all cores).
  int threads() const { return threads_; }

  // Parses argv, sets up logging, TBB and provenance, runs body and returns the exit code:
  // body's return value, 2 for usage errors, the table's code for a loco::Error, 70 for any other
  // exception. A broken pipe on stdout ends quietly with 0 (like `rg | head`).
  int run(int argc, char** argv, const std::function<int()>& body);

  // The man page (roff) generated from the option definitions.
  std::string man_page() const;

 private:
  std::string name_, summary_, description_;
  std::vector<std::pair<std::string, std::string>> examples_;
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
