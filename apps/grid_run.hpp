// d3-bench grid, running: the grid's options, its cells, and the run that fills them (models x
// testbed scenarios x strategies deployed on d3-node processes under the virtual clock, requests
// side by side in rounds, every answer compared with a single-process run).
#pragma once

#include <caf/all.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "apps/local_nodes.hpp"
#include "emulation/testbed_file.hpp"
#include "kernels/model_zoo.hpp"
#include "plan/plan.hpp"
#include "planner/strategies.hpp"

namespace d3 {

struct grid_options {
  std::vector<std::string> models, scenarios, strategies;
  int requests = 10, warmup = 1, profile_repeats = 5;
  long timeout_ms = 60000;
  uint64_t seed = 1, model_seed = default_model_seed;
  double noise_floor = 0.02;
  bool check = false;
  bool images = false;  // --images: every model takes 8-bit images (a preprocess layer first)
  bool tile_overhead = true;  // --tile-overhead off: tiles priced by their area share alone
  std::string out = "grid-results", node_binary, profile_source = "nodes";
  std::string tls_option;  // --tls
  local_tls tls;
  testbed_file bed = testbed_file::d3_setting();
  std::string command_line;
};

// The strategies, in its order; "three-tier" may be asked for too.
inline std::vector<std::string> default_strategies() {
  std::vector<std::string> names = {"hpa"};
  for (const std::string& b : baseline_names()) names.push_back(b);
  return names;
}
// The two partitioners in their papers' own setting (the cloud as the server).
inline const std::vector<std::string> papers_two_tier = {"neurosurgeon", "dads"};

struct grid_cell {
  std::string model, scenario, strategy;
  int requests = 0, warmup = 0;
  int verified = 0, failed = 0, differ = 0;
  std::vector<double> virtual_ms, wall_ms;  // timed requests answered
  double median_ms = NAN, p10_ms = NAN, p90_ms = NAN, min_ms = NAN, max_ms = NAN, wall_median_ms = NAN;
  double predicted_ms = NAN;
  std::vector<link_bytes> links;  // per request, the app folded into its node
  size_t backbone_bytes = 0, device_link_bytes = 0, total_bytes = 0, weights_shipped = 0;
  // Encoded crossings: `links` (and the sums above) are the cost model's encoded bytes, from the
  // codecs' ratios measured on a sample input; measured_bytes is what the requests really sent
  // (the app's inputs and every stage's sends to other nodes, as encoded), per timed request.
  bool encoded = false;
  std::vector<double> measured_bytes;
  bool deployed = false;
  // Timed requests added by --check's confirmation (in virtual_ms with the first `requests`).
  int confirmation = 0;
  std::string plan;   // what the strategy chose, one line
  std::string error;  // first error: "plan: ...", "deploy: ...", "request 3: ..."
  // Per stage of the plan (stage id order): where the cost model's error comes from.
  struct stage_timing {
    std::string kind, node;
    double predicted_finish_ms = NAN;   // cost model, since the request started
    std::vector<double> finish_ms;      // measured (virtual) finish - request start, timed requests
    std::vector<double> cpu_ms;         // measured thread CPU time on this machine
  };
  std::vector<stage_timing> stages;

  bool measured() const { return !virtual_ms.empty(); }
  // Planned, deployed, and every request answered memcmp-equal.
  bool clean() const { return error.empty() && failed == 0 && differ == 0 && measured(); }
  // Relative spread of the timed requests, the noise of this cell.
  double spread() const { return measured() && median_ms > 0 ? (p90_ms - p10_ms) / median_ms : 0; }
};

struct grid_results {
  std::vector<grid_cell> cells;
  const grid_cell* find(const std::string& model, const std::string& scenario, const std::string& strategy) const {
    for (const grid_cell& c : cells)
      if (c.model == model && c.scenario == scenario && c.strategy == strategy) return &c;
    return nullptr;
  }
};

// Runs every cell of `o` (nodes started fresh per model); prints a line per cell on stdout and a
// progress bar on stderr. A cell that fails records why and the grid goes on.
grid_results run_grid(const grid_options& o, caf::actor_system& system);

}  // namespace d3
