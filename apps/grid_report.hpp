// d3-bench grid, reports: grid.csv and stages.csv, the --check verdict, grid.md (latency tables,
// hpa's speedups measured and predicted, backbone traffic, predicted against measured, the goal
// lines) and the gnuplot charts.
#pragma once

#include <string>
#include <vector>

#include "apps/grid_run.hpp"
#include "base/status.hpp"

namespace d3 {

status write_csv(const std::string& path, const grid_results& r);
// Per cell and stage: the cost model's finish time against the measured median.
status write_stage_csv(const std::string& path, const grid_results& r);

// hpa against the best other strategy of one (model, scenario), within the run's own noise.
struct hpa_verdict {
  bool ok = false;
  std::string best;  // the best baseline's strategy, when one was measured
  bool same_plan = false;  // hpa deployed the best baseline's plan
  std::string text;  // the numbers, one line
};
hpa_verdict judge_hpa(const grid_options& o, const grid_results& r, const std::string& model, const std::string& scenario);

struct check_outcome {
  bool pass = true;
  std::vector<std::string> lines;
};
// --check: every answer exact, every cell planned and deployed, hpa within the noise band of the
// best other strategy in every (model, scenario).
check_outcome run_check(const grid_options& o, const grid_results& r);

// Writes the data files and charts.gp into `folder` and runs gnuplot there. Returns a Markdown
// paragraph naming the charts, or why there are none.
std::string write_charts(const grid_options& o, const grid_results& r, const std::string& folder);

// grid.md; `check` may be null (no --check).
std::string markdown_report(const grid_options& o, const grid_results& r, const check_outcome* check,
                            const std::string& started_utc, double wall_seconds, const std::string& charts);

}  // namespace d3
