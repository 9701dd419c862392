// d3-infer's options: the command line and the inference config file (JSON) it may name, read
// into one struct; every problem is an error naming the option or key (no exits here).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "kernels/model_zoo.hpp"

namespace d3 {

struct infer_options {
  std::string nodes, cluster, model = default_model_name, plan, strategy, log, clock = "wall", uplink, input, trace;
  int requests = 10, in_flight = 1;
  bool adapt = false;
  bool standby = false;  // --standby on: with --adapt under --clock virtual, standby copies of weights
  std::string profile_source = "nodes";
  long timeout_ms = 10000;
  long silence_ms = 1250;  // heartbeat silence that marks a node down
  uint64_t seed = 1, model_seed = default_model_seed;
  bool verify = false, redeploy = false;
  bool same_arithmetic = false;  // --same-arithmetic: refuse nodes whose kernels compute other bits
  std::string tls;              // --tls DIR|false ("" : the cluster file's "tls")
  std::string tls_name = "app";  // --tls-name: whose files in the --tls folder
  std::vector<std::string> images;  // --image FILE (repeatable): request i uses images[i % count]
  std::string labels;               // --labels FILE: class names for the top-5 of --image
  std::string codecs;               // --codecs auto|none: with --strategy, whether the planner
                                    // may encode tensors on links (a plan file names its own);
                                    // default auto, none with --adapt
  bool help = false;  // --help: print infer_usage and stop
};

// Whether the planner may encode tensors: --codecs auto, or by default when not adapting (adapting
// with codecs is opt-in: on the namespace cluster, with real links and cpu quotas, the planner
// actor flapped between encoded and raw plans whose predictions lie close; docs/results.md).
inline bool codecs_on(const infer_options& o) { return o.codecs == "auto" || (o.codecs.empty() && !o.adapt); }

extern const char* const infer_usage;

// An inference config's JSON `text` (read from `path`: relative paths in it are relative to its
// folder) into `o`. Errors name the config and the key.
status parse_infer_config_json(const std::string& text, const std::string& path, infer_options& o);

// The options of argv[1..argc): --config FILE is read first, so the command line overrides it.
result<infer_options> parse_infer_options(int argc, char** argv);

}  // namespace d3
