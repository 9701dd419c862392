// d3-bench adapt, reports: what a run measured (per request, per trace step) and its outputs:
// the summary JSON, adapt.csv, the gnuplot chart and the table on stdout.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "emulation/emulation_trace.hpp"

namespace d3 {

// One request as measured.
struct request_row {
  int index = 0, trace_step = -1, plan_version = 0;
  double start_ms = 0, latency_ms = 0;
  bool verified = false;
};

// Per trace step of an adaptive run.
struct step_figures {
  int requests = 0;
  int requests_to_optimum = -1;  // -1: never within 10% of the optimum measured beside the run
  // The decision apart from the machine: requests until the plan serving is predicted (cost
  // model, this run's cluster for the step: probed profiles, the step's true links and speeds)
  // within 10% of HPA's plan there.
  int requests_to_optimal_plan = -1;  // -1: never
  size_t migrations = 0, layers_moved = 0, layers_shipped = 0, weight_bytes_shipped = 0;
  // Of weight_bytes_shipped, what crossed a link: to nodes other than the app's own (the device
  // node sits beside the app, which holds the model: a copy there crosses no network).
  size_t weight_bytes_over_links = 0;
  double migrate_ms = 0;  // wall time the migrations took on this machine
};

struct run_result {
  std::string name;
  std::vector<request_row> rows;
  std::vector<step_figures> steps;
  int failed = 0, differ = 0;
  std::string error;
  // Standby copies (planner/standby.hpp; partial run): weight bytes sent ahead of need, in all
  // and over links (to nodes other than the app's node), as background traffic.
  size_t standby_bytes = 0, standby_bytes_over_links = 0;
  std::map<std::string, size_t> standby_bytes_per_link;  // by link class ("edge-edge", ...)
  // The run stopped at --max-requests before the trace's end: the steps it did not reach have no
  // requests and no figures (reported as not reached, never as missed).
  bool stopped_at_cap = false;
  double last_start_ms = 0;  // virtual start of its last request
  // Per trace step, the optimum measured beside this run (HPA's plan for the step's true testbed,
  // deployed statically on nodes of its own, requests alternating with the run's): the median
  // virtual latency, how many requests it is the median of, and HPA's predicted latency.
  std::vector<double> optimum_ms, optimum_predicted_ms;
  std::vector<int> optimum_samples;
};

// What the reports say about the trace: the model, the steps, a label per step (its links), the
// tail after the last step, the output folder.
struct adapt_trace_info {
  std::string model;
  const emulation_trace& trace;
  std::vector<std::string> step_labels;
  double tail_ms = 0;
  std::string out;
};

// Per step and per run: requests, requests to within 10% of the optimum, median, migrations,
// layers moved and shipped, bytes; per run: totals and the worst step.
nlohmann::ordered_json adapt_summary(const adapt_trace_info& info, const std::vector<run_result>& runs);
// adapt.csv, adapt.json, and adapt.png with gnuplot (the chart's name goes into `summary`).
void write_adapt_outputs(const adapt_trace_info& info, const std::vector<run_result>& runs,
                         nlohmann::ordered_json& summary);
// The table and the totals on stdout, then the summary as one JSON line.
void print_adapt_summary(const nlohmann::ordered_json& summary, const std::vector<run_result>& runs,
                         const std::string& out);

}  // namespace d3
