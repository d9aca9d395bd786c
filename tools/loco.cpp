// loco: the git-style front end. `loco VERB ARGS...` runs the tool loco-VERB or the pipeline VERB
// installed beside this binary; `loco --list` lists them with the line each prints for
// --print-summary (what is installed, not a table kept here); `loco help VERB` shows VERB's man page.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "loco/cli/tool.hpp"
#include "loco/core/cpu.hpp"  // links the start-up CPU check (core/cpu_check.c) into this binary too

namespace fs = std::filesystem;

namespace {

struct Verb {
  std::string name;
  fs::path program;
  bool pipeline = false;
};

fs::path self_dir() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : self.parent_path();
}

// The pipelines' folder: LOCO_PIPELINE_DIR (relative to the binaries' folder, e.g. ../libexec/loco).
fs::path pipeline_dir() { return self_dir() / LOCO_PIPELINE_DIR; }

bool is_program(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

// The tools (loco-* beside this binary) and the pipelines (the programs of pipeline_dir()), by name.
// A pipeline named like a tool (gossip) is the verb NAME-pipeline, as it is installed on PATH.
std::vector<Verb> installed_verbs() {
  std::vector<Verb> verbs;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(self_dir(), ec)) {
    const std::string file = e.path().filename().string();
    const fs::path target = fs::weakly_canonical(e.path(), ec);
    if (file.rfind("loco-", 0) == 0 && is_program(e.path()) && target.parent_path() == self_dir())
      verbs.push_back({file.substr(5), e.path(), false});
  }
  const std::size_t tools = verbs.size();
  for (const auto& e : fs::directory_iterator(pipeline_dir(), ec)) {
    if (!is_program(e.path())) continue;
    std::string name = e.path().filename().string();
    if (std::any_of(verbs.begin(), verbs.begin() + static_cast<std::ptrdiff_t>(tools),
                    [&](const Verb& v) { return v.name == name; }))
      name += "-pipeline";
    verbs.push_back({name, e.path(), true});
  }
  std::sort(verbs.begin(), verbs.end(),
            [](const Verb& a, const Verb& b) { return a.pipeline != b.pipeline ? !a.pipeline : a.name < b.name; });
  return verbs;
}

// The first line PROGRAM --print-summary writes ("" when it fails).
std::string summary_of(const fs::path& program) {
  int fd[2];
  if (::pipe(fd) != 0) return "";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fd[1], STDOUT_FILENO);
    ::close(fd[0]);
    ::close(fd[1]);
    std::freopen("/dev/null", "w", stderr);
    ::execl(program.c_str(), program.c_str(), "--print-summary", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fd[1]);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = ::read(fd[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd[0]);
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return "";
  return out.substr(0, out.find('\n'));
}

std::string verb_list(int width) {
  std::string out;
  const auto verbs = installed_verbs();
  std::size_t column = 4;
  for (const auto& v : verbs) column = std::max(column, v.name.size() + 4);
  for (int pipelines = 0; pipelines < 2; ++pipelines) {
    bool first = true;
    for (const auto& v : verbs) {
      if (v.pipeline != (pipelines == 1)) continue;
      if (std::exchange(first, false)) out += pipelines ? "\nPipelines:\n" : "Tools:\n";
      const auto lines = loco::cli::wrap(summary_of(v.program), static_cast<std::size_t>(width) - column);
      out += fmt::format("  {:<{}}{}\n", v.name, column - 2, lines.empty() ? "" : lines[0]);
      for (std::size_t k = 1; k < lines.size(); ++k) out += std::string(column, ' ') + lines[k] + "\n";
    }
  }
  if (verbs.empty()) out += fmt::format("No tools or pipelines beside {}.\n", self_dir().string());
  return out;
}

void usage(std::FILE* to, bool list) {
  const int width = loco::cli::help_width();
  const auto paragraph = [&](std::string_view text) {
    for (const auto& line : loco::cli::wrap(text, static_cast<std::size_t>(width))) fmt::print(to, "{}\n", line);
  };
  fmt::print(to, "Usage: loco VERB [ARGS...]\n       loco help VERB | --list | --version\n");
  paragraph(
      "Run a loco tool or pipeline by its verb: 'loco worker' runs loco-worker, 'loco diloco' the diloco "
      "pipeline, from beside loco (else loco-VERB on PATH).");
  if (list) fmt::print(to, "\n{}", verb_list(width));
  fmt::print(to, "\n");
  paragraph("'loco VERB --help' shows a verb's options, 'loco help VERB' its manual.");
  fmt::print(to, "See 'man loco' for the details.\n");
}

// Runs PROGRAM with ARGS (argv[0] NAME); returns only when it cannot be run.
void run(const fs::path& program, const std::string& name, char** args, int count) {
  std::vector<char*> argv{const_cast<char*>(name.c_str())};
  for (int i = 0; i < count; ++i) argv.push_back(args[i]);
  argv.push_back(nullptr);
  ::execv(program.c_str(), argv.data());
}

// The man page of V beside the binaries: installed (../share/man) or in the build tree (../man).
fs::path man_page_of(const Verb& v) {
  const fs::path dir = self_dir();
  const std::string page = v.name == "loco" ? "loco" : "loco-" + (v.pipeline ? v.program.filename().string() : v.name);
  const std::string section = v.pipeline ? "7" : "1";
  for (const fs::path& p :
       {dir / "../share/man" / ("man" + section) / (page + "." + section), dir / "../man" / (page + "." + section)})
    if (fs::exists(p)) return p;
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr, false);
    return 2;
  }
  std::string verb = argv[1];
  if (verb == "--help" || verb == "-h") {
    usage(stdout, true);
    return 0;
  }
  if (verb == "--list") {
    fmt::print("{}", verb_list(loco::cli::help_width()));
    return 0;
  }
  if (verb == "--version") {
    const char* features = loco_cpu_build_features();
    fmt::print("loco {}\nbuilt for {}: {}\n", LOCO_VERSION, loco_cpu_build_target(),
               *features ? features : "baseline x86-64");
    return 0;
  }
  if (verb == "--print-summary") {
    fmt::print("Run a loco tool or pipeline by its verb\n");
    return 0;
  }
  if (verb == "--generate-man") {
    fmt::print(
        ".TH loco 1 \"\" \"loco {}\" \"loco manual\"\n.SH NAME\nloco \\- run a loco tool or pipeline by its verb\n"
        ".SH SYNOPSIS\n.B loco\n\\fIVERB\\fR [\\fIARGS\\fR...]\n.br\n.B loco help\n\\fIVERB\\fR\n.br\n"
        ".B loco\n[\\fB\\-\\-list\\fR] [\\fB\\-\\-help\\fR] [\\fB\\-\\-version\\fR]\n.SH DESCRIPTION\n"
        "Runs the tool \\fBloco\\-VERB\\fR, or the pipeline VERB (diloco, fedavg, gossip, ...), with ARGS. "
        "Tools are looked up beside the loco binary, then on PATH; pipelines in the pipelines' folder "
        "beside it (\\fI{}\\fR relative to the binary's folder), where they are also installed as "
        "\\fBloco\\-VERB\\fR; a pipeline named like a tool is the verb NAME\\-pipeline (the gossip "
        "pipeline: \\fBloco gossip\\-pipeline\\fR, its page \\fBloco\\-gossip\\fR(7)). "
        "The verbs are what is installed: \\fBloco \\-\\-list\\fR lists them.\n"
        ".SH COMMANDS\n.TP\n.B help \\fIVERB\\fR\nShow the manual of VERB (\\fBman\\fR of the page installed "
        "beside loco), or VERB's \\-\\-help when there is no page or no man.\n"
        ".SH OPTIONS\n.TP\n.B \\-\\-list\nList the installed tools and pipelines, one line each, and exit.\n"
        ".TP\n.B \\-h, \\-\\-help\nPrint the usage and the verbs and exit.\n"
        ".TP\n.B \\-\\-version\nPrint the version and exit.\n"
        ".SH EXIT STATUS\nThat of the tool or pipeline run; 2 for an unknown verb.\n"
        ".SH SEE ALSO\n.BR loco-diloco (7),\n.BR loco-worker (1),\n.BR loco-format (5)\n",
        LOCO_VERSION, LOCO_PIPELINE_DIR);
    return 0;
  }
  int first_arg = 2;
  bool help = false;
  if (verb == "help") {
    if (argc < 3) {
      usage(stdout, true);
      return 0;
    }
    verb = argv[2];
    help = true;
    first_arg = 3;
  }
  if (verb.empty() || verb[0] == '-' || verb.find('/') != std::string::npos) {
    fmt::print(stderr, "loco: error: '{}' is not a verb\n", verb);
    usage(stderr, false);
    return 2;
  }
  const std::string tool = "loco-" + verb;
  Verb v{verb, {}, false};
  for (const Verb& installed : installed_verbs())
    if (installed.name == verb) v = installed;
  if (help) {
    const fs::path page = man_page_of(v);
    if (!page.empty()) {
      const char* man[] = {"man", "-l", page.c_str(), nullptr};
      ::execvp("man", const_cast<char**>(man));  // no man: the verb's --help below
    }
    if (verb == "loco") {
      usage(stdout, true);
      return 0;
    }
  }
  char help_flag[] = "--help";
  char* help_args[] = {help_flag};
  char** args = help ? help_args : argv + first_arg;
  const int count = help ? 1 : argc - first_arg;
  // A script's $0 is its path, so a pipeline learns the name it was run by from LOCO_INVOKED_AS.
  if (v.pipeline) ::setenv("LOCO_INVOKED_AS", ("loco " + verb).c_str(), 1);
  if (!v.program.empty()) run(v.program, tool, args, count);
  std::vector<char*> path_argv{const_cast<char*>(tool.c_str())};
  path_argv.insert(path_argv.end(), args, args + count);
  path_argv.push_back(nullptr);
  ::execvp(tool.c_str(), path_argv.data());
  if (errno == ENOENT) {
    fmt::print(stderr, "loco: error: unknown verb '{}' (no {} beside loco or on PATH; 'loco --list' lists them)\n",
               verb, tool);
    usage(stderr, false);
    return 2;
  }
  fmt::print(stderr, "loco: error: cannot run {}: {}\n", tool, std::strerror(errno));
  return 3;
}
