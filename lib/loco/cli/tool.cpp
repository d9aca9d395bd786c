// The shared main of every loco tool.
#include "loco/cli/tool.hpp"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <tbb/global_control.h>

#include "loco/core/cleanup.hpp"
#include "loco/core/cpu.hpp"
#include "loco/core/error.hpp"
#include "loco/core/log.hpp"
#include "loco/core/provenance.hpp"
#include "loco/io/output.hpp"

namespace loco::cli {

Tool::Tool(std::string name, std::string summary)
    : name_(std::move(name)), summary_(std::move(summary)), app_(summary_, name_) {
  const std::string common = group_title(Group::Common);
  app_.set_help_flag("-h,--help", "Print this help and exit")->group(common);
  // The build's target CPU is part of the version: which binary runs where is a property of it.
  app_.set_version_flag("--version",
                        fmt::format("{} {}\nbuilt for {}: {}", name_, LOCO_VERSION, loco_cpu_build_target(),
                                    *loco_cpu_build_features() ? loco_cpu_build_features() : "baseline x86-64"),
                        "Print the version and the CPU the build is for, and exit")
      ->group(common);
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
  app_.formatter_fn(
      [this](const CLI::App*, const std::string&, CLI::AppFormatMode) { return help_text(help_width()); });
}

void Tool::set_description(std::string text) { description_ = std::move(text); }

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

// Whether text as a whole reads as a floating-point number that is NaN or infinite ("nan",
// "-inf", "infinity", "nan(1)", "1e999").
bool non_finite_number(const std::string& text) {
  if (text.empty()) return false;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  return end != text.c_str() && *end == '\0' && !std::isfinite(v);
}

// The one check on every option value (docs/decisions.md, "Hostile inputs"): neither the value
// nor any part of it between '=', ',' and ':' (settings such as adamw:lr=0.1,wd=0) may be NaN or
// infinite. CLI11 reads "nan" into a double, and a NaN passes every comparison a range check makes.
const CLI::Validator& finite_values() {
  static const CLI::Validator check(
      [](std::string& value) -> std::string {
        std::size_t begin = 0;
        for (;;) {
          const std::size_t end = value.find_first_of("=,:", begin);
          const std::string part = value.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
          if (non_finite_number(part))
            return part == value ? fmt::format("{} is not a finite number", value)
                                 : fmt::format("{} in {} is not a finite number", part, value);
          if (end == std::string::npos) return {};
          begin = end + 1;
        }
      },
      "", "finite");
  return check;
}

std::set<const CLI::Option*>& output_options() {
  static std::set<const CLI::Option*> marked;
  return marked;
}

// Every given value of every option of app and its subcommands, split into outputs and others.
void collect_paths(const CLI::App& app, std::vector<io::NamedPath>& outputs, std::vector<io::NamedPath>& others) {
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->get_type_size() == 0 || opt->count() == 0) continue;
    const std::string name = opt->get_name();
    auto& into = output_options().count(opt) ? outputs : others;
    for (const std::string& v : opt->results()) into.push_back({name, v});
  }
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    collect_paths(*sub, outputs, others);
}

void check_finite(CLI::App& app) {
  for (CLI::Option* opt : app.get_options())
    if (opt->get_type_size() != 0) opt->transform(finite_values());  // first, before range checks
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) check_finite(*sub);
}
}  // namespace

int Tool::run(int argc, char** argv, const std::function<int()>& body) {
  std::signal(SIGPIPE, SIG_IGN);
  remove_temporaries_on_signals();
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
  check_finite(app_);
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
    std::vector<io::NamedPath> outputs, others;
    collect_paths(app_, outputs, others);
    io::check_output_paths(outputs, others);
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
  return output_path(app.add_option("-o,--output", out, "The " + what + " ('-' for stdout); written atomically")
                         ->required()
                         ->type_name("FILE"));
}

CLI::Option* output_path(CLI::Option* opt) {
  output_options().insert(opt);
  return opt;
}

}  // namespace loco::cli
