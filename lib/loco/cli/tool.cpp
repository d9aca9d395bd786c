// The shared main of every loco tool.
#include "loco/cli/tool.hpp"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include <fmt/format.h>
#include <tbb/global_control.h>

#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/core/provenance.hpp"

namespace loco::cli {

Tool::Tool(std::string name, std::string summary)
    : name_(std::move(name)), summary_(std::move(summary)), app_(summary_, name_) {
  const std::string common = group_title(Group::Common);
  app_.set_help_flag("-h,--help", "Print this help and exit")->group(common);
  app_.set_version_flag("--version", std::string(name_) + " " + LOCO_VERSION, "Print the version and exit")->group(common);
  app_.add_flag("-v,--verbose", verbose_, "More diagnostics on stderr (repeat for debug output)")->group(common);
  app_.add_flag("-q,--quiet", quiet_, "Only errors on stderr")->group(common);
  app_.add_option("--threads", threads_, "Worker threads (0: all cores); results do not depend on it")
      ->envname("LOCO_THREADS")
      ->check(CLI::Range(0, 4096))
      ->default_val(0)
      ->group(group_title(Group::Execution));
  // Hidden: the man page (the build); run() also answers --print-summary (the one line of
  // `loco --list`) and --generate-completion (the bash completion, made by the build).
  app_.add_flag("--generate-man", generate_man_, "Print this tool's man page (roff) and exit")->group("");
  app_.formatter_fn([this](const CLI::App*, const std::string&, CLI::AppFormatMode) { return help_text(help_width()); });
}

void Tool::set_description(std::string text) {
  description_ = std::move(text);
}

void Tool::add_example(std::string command, std::string explanation) {
  examples_.emplace_back(std::move(command), std::move(explanation));
}

void Tool::group(Group g, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names) app_.get_option(std::string(n))->group(group_title(g));
}

void Tool::complete_words(std::string_view option, std::vector<std::string> words) {
  words_[std::string(option)] = std::move(words);
}

void Tool::settle_groups() {
  for (CLI::Option* o : app_.get_options([](const CLI::Option* o) { return o->get_group() == "Options"; })) {
    const bool positional = o->get_lnames().empty() && o->get_snames().empty();
    const Group g = positional ? Group::Inputs : o->check_lname("output") ? Group::Outputs : Group::Algorithm;
    o->group(group_title(g));
  }
}

namespace {
bool is_epipe(const Error& e) { return std::strstr(e.what(), "broken pipe") != nullptr; }
}  // namespace

int Tool::run(int argc, char** argv, const std::function<int()>& body) {
  std::signal(SIGPIPE, SIG_IGN);
  log::set_program(name_);
  settle_groups();
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--generate-man") == 0) {
      fmt::print("{}", man_page());
      return 0;
    }
    if (std::strcmp(argv[i], "--generate-completion") == 0) {
      fmt::print("{}", completion());
      return 0;
    }
    if (std::strcmp(argv[i], "--print-summary") == 0) {
      fmt::print("{}\n", summary_);
      return 0;
    }
  }
  try {
    app_.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app_.exit(e);  // --help, --version
    fmt::print(stderr, "{}: error: {}\nRun '{} --help' for usage.\n", name_, e.what(), name_);
    return exit_code(ErrorKind::Usage);
  }
  log::set_verbosity(quiet_ ? 0 : 1 + verbose_);
  std::vector<std::string> args(argv, argv + argc);
  set_producer(name_, args);
  threads_ = threads_ > 0 ? threads_ : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads_));

  int code = 0;
  try {
    code = body();
  } catch (const Error& e) {
    if (is_epipe(e)) return 0;
    fmt::print(stderr, "{}: error: {}\n", name_, e.what());
    code = exit_code(e.kind());
    if (e.kind() == ErrorKind::Usage) fmt::print(stderr, "Run '{} --help' for usage.\n", name_);
    return code;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "{}: error: out of memory\n", name_);
    return exit_code(ErrorKind::Io);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: internal error (a bug in loco; please report it): {}\n", name_, e.what());
    return exit_code(ErrorKind::Internal);
  }
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    if (errno == EPIPE) return 0;
    fmt::print(stderr, "{}: error: <stdout>: write failed: {}\n", name_, std::strerror(errno));
    return exit_code(ErrorKind::Io);
  }
  return code;
}

CLI::Option* add_output_option(CLI::App& app, std::string& out, const std::string& what) {
  return app.add_option("-o,--output", out, "The " + what + " ('-' for stdout); written atomically")
      ->required()
      ->type_name("FILE");
}

}  // namespace loco::cli
