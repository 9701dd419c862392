// d3-bench regimes: what a run holds (options, priced cells, measured points) and its reports
// (heatmap data, gnuplot charts, regimes.md).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "apps/app_support.hpp"
#include "apps/local_nodes.hpp"
#include "emulation/testbed_file.hpp"
#include "kernels/model_zoo.hpp"
#include "planner/strategies.hpp"

namespace d3 {

struct regimes_options {
  std::vector<std::string> models;
  testbed_file bed = testbed_file::d3_setting();
  std::vector<double> lan, cloud, device_speeds;
  int measure = 10, requests = 5, warmup = 1, profile_repeats = 5;
  long timeout_ms = 60000;
  uint64_t seed = 1, model_seed = default_model_seed;
  std::string out = "regimes-results", node_binary, command_line;
  std::string tls_option;  // --tls
  local_tls tls;
};

struct priced_cell {
  double x = 0, y = 0;  // the map's axes (Mbit/s or speed, Mbit/s)
  double hpa_ms = NAN, two_tier_ms = NAN;
  std::string two_tier;  // which of the four was best
  planned hpa, best;
  double speedup() const { return two_tier_ms / hpa_ms; }
};

struct measured_point {
  std::string model;
  priced_cell cell;
  std::vector<double> hpa_ms, two_tier_ms;  // virtual latency per timed round
  int verified = 0, failed = 0;
  std::string error;
  double median(const std::vector<double>& v) const { return v.empty() ? NAN : percentile(v, 0.5); }
  double measured_speedup() const { return median(two_tier_ms) / median(hpa_ms); }
};

struct model_maps {
  std::string model;
  std::vector<priced_cell> bandwidth, device;
  std::string error;
};

// One map's heatmap data (x y speedup per line, a blank line per row of y).
status write_map_data(const std::string& path, const std::vector<priced_cell>& map, size_t ny);
// The largest predicted speedup of a map (and where), the fraction of cells at `goal` or more.
double max_speedup(const std::vector<priced_cell>& map, const priced_cell** where = nullptr);
double fraction_at_least(const std::vector<priced_cell>& map, double goal);
// Writes regimes.gp and the data, runs gnuplot in o.out; a Markdown line naming the charts.
std::string regimes_charts(const regimes_options& o, const std::vector<model_maps>& maps);
std::string regimes_markdown(const regimes_options& o, const std::vector<model_maps>& maps,
                             const std::vector<measured_point>& points, const std::string& charts);

}  // namespace d3
