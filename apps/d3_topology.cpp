// d3-topology: shows a deployment's topology log as a tree per node, and as Graphviz DOT/PNG.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "apps/options.hpp"
#include "topology/topology_log.hpp"

namespace {

const char* usage = R"(usage: d3-topology LOG [--as-deployed] [--dot FILE] [--png FILE]

Reads a topology log (JSON Lines written by d3-infer: nodes up/down, plans deployed, actors
spawned and exited, layers shipped and migrated) and prints the deployment as it stands at the
end of the log: per node, each live actor with the layers or tile it runs and since when.

  --as-deployed  shows the last deployment while it ran (the log up to its teardown) rather
               than the state at the end of the log
  --dot FILE   also writes the topology as Graphviz DOT (one cluster per node, arrows along the
               data flow)
  --png FILE   also renders it to PNG with Graphviz's `dot` (apt-get install graphviz)
  --help       this text

Exit codes: 0 success, 2 unreadable or malformed log, bad option; 1 when `dot` fails.
)";

int fail(int code, const std::string& message) {
  std::cerr << "d3-topology: " << message << "\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  std::string log_path, dot_path, png_path;
  bool deployed_view = false;
  bool help = false;
  auto parsed = d3::parse_options<bool>([&] {
    d3::option_reader in(argc, argv, 1, "see --help");
    while (in.next()) {
      if (in.is("--help", "-h")) return help = true;
      if (in.is("--as-deployed")) deployed_view = true;
      else if (in.is("--dot")) dot_path = in.value();
      else if (in.is("--png")) png_path = in.value();
      else if (!in.name().empty() && in.name()[0] == '-') in.unknown();
      else if (log_path.empty()) log_path = in.name();
      else in.fail("one log at a time (got '" + log_path + "' and '" + in.name() + "')");
    }
    return true;
  });
  if (auto code = d3::stop_after_parse(parsed, help, "d3-topology")) {
    if (help) std::cout << usage;
    return *code;
  }
  if (log_path.empty()) return fail(2, "which log? (see --help)");
  auto events = d3::read_topology_log(log_path);
  if (!events) return fail(2, events.message());
  if (deployed_view) *events = d3::as_deployed(*events);
  std::cout << d3::render_topology_tree(*events);
  const std::string dot = d3::render_topology_dot(*events);
  if (!dot_path.empty()) {
    std::ofstream out(dot_path);
    out << dot;
    if (!out) return fail(1, "cannot write '" + dot_path + "'");
  }
  if (!png_path.empty()) {
    FILE* pipe = popen(("dot -Tpng -o '" + png_path + "'").c_str(), "w");
    if (pipe == nullptr) return fail(1, "cannot run Graphviz's dot");
    std::fputs(dot.c_str(), pipe);
    if (pclose(pipe) != 0) return fail(1, "Graphviz's dot failed (is graphviz installed? apt-get install graphviz)");
  }
  return 0;
}
