// loco: the git-style front end; `loco VERB ARGS...` runs loco-VERB from beside this binary or PATH.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "loco/core/cpu.hpp"  // links the start-up CPU check (core/cpu_check.c) into this binary too

namespace {

constexpr const char* kVerbs[][2] = {
    {"shard", "split a data set into worker shards"},        {"init", "build and seed a model"},
    {"worker", "run H inner steps and write a delta"},        {"compress", "encode a delta with a codec"},
    {"decompress", "decode a compressed delta"},              {"aggregate", "reduce deltas and take the outer step"},
    {"gossip", "mix a node's model with its neighbours'"},    {"merge", "merge several models into one"},
    {"convert", "convert between HDF5 and safetensors"},      {"eval", "loss, accuracy, perplexity of a model"},
    {"inspect", "show tensors, attributes, stats, checksums"}, {"fragment", "split a model into fragments, join them"},
    {"delta", "make a delta from a model your trainer wrote"}};

void usage(std::FILE* to) {
  fmt::print(to, "usage: loco [--version] [--help] VERB [ARGS...]\n\nRuns loco-VERB. Verbs:\n");
  for (const auto& v : kVerbs) fmt::print(to, "  {:<11} {}\n", v[0], v[1]);
  fmt::print(to, "\n'loco VERB --help' shows a verb's options; man loco-VERB has the details.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string verb = argv[1];
  if (verb == "--help" || verb == "-h" || verb == "help") {
    usage(stdout);
    return 0;
  }
  if (verb == "--version") {
    const char* features = loco_cpu_build_features();
    fmt::print("loco {}\nbuilt for {}: {}\n", LOCO_VERSION, loco_cpu_build_target(), *features ? features : "baseline x86-64");
    return 0;
  }
  if (verb == "--generate-man") {
    fmt::print(".TH loco 1 \"\" \"loco {}\" \"loco manual\"\n.SH NAME\nloco \\- run a loco tool by its verb\n"
               ".SH SYNOPSIS\n.B loco\n[\\fB\\-\\-version\\fR] [\\fB\\-\\-help\\fR] \\fIVERB\\fR [\\fIARGS\\fR...]\n.SH DESCRIPTION\n"
               "Runs \\fBloco\\-VERB\\fR with ARGS, looking first beside the loco binary, then on PATH.\n.SH VERBS\n",
               LOCO_VERSION);
    for (const auto& v : kVerbs) fmt::print(".TP\n.B {}\n{}\n", v[0], v[1]);
    fmt::print(".SH OPTIONS\n.TP\n.B \\-\\-help\nList the verbs and exit.\n.TP\n.B \\-\\-version\nPrint the version and exit.\n");
    fmt::print(".SH EXIT STATUS\nThat of the tool run; 2 for an unknown verb.\n.SH SEE ALSO\n.BR loco-format (5)\n");
    return 0;
  }
  if (verb.empty() || verb[0] == '-' || verb.find('/') != std::string::npos) {
    fmt::print(stderr, "loco: error: '{}' is not a verb\n", verb);
    usage(stderr);
    return 2;
  }
  const std::string tool = "loco-" + verb;
  std::vector<char*> args{const_cast<char*>(tool.c_str())};
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto beside = self.parent_path() / tool;
    if (std::filesystem::exists(beside)) execv(beside.c_str(), args.data());
  }
  execvp(tool.c_str(), args.data());
  if (errno == ENOENT) {
    fmt::print(stderr, "loco: error: unknown verb '{}' (no {} beside loco or on PATH)\n", verb, tool);
    usage(stderr);
    return 2;
  }
  fmt::print(stderr, "loco: error: cannot run {}: {}\n", tool, std::strerror(errno));
  return 3;
}
