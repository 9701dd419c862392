// d3-bench grid: grid.csv (one row per cell and strategy) and stages.csv (predicted against
// measured stage finish times).
// d3-bench grid, reports: see grid_report.hpp.
#include "apps/grid_report.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <set>

#include "apps/app_support.hpp"

namespace d3 {

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

std::string csv_number(double v, const char* pattern = "%.3f") { return std::isnan(v) ? "" : format(pattern, v); }

}  // namespace

status write_stage_csv(const std::string& path, const grid_results& r) {
  std::ofstream out(path);
  if (!out) return status::error("cannot write '" + path + "'");
  out << "model,scenario,strategy,stage,kind,node,predicted_finish_ms,measured_finish_ms,cpu_ms\n";
  for (const grid_cell& c : r.cells)
    for (size_t k = 0; k < c.stages.size(); ++k) {
      const grid_cell::stage_timing& t = c.stages[k];
      out << csv_field(c.model) << ',' << csv_field(c.scenario) << ',' << c.strategy << ',' << k << ',' << t.kind << ','
          << t.node << ',' << csv_number(t.predicted_finish_ms) << ','
          << (t.finish_ms.empty() ? "" : csv_number(percentile(t.finish_ms, 0.5))) << ','
          << (t.cpu_ms.empty() ? "" : csv_number(percentile(t.cpu_ms, 0.5))) << '\n';
    }
  return out ? status::ok() : status::error("cannot write '" + path + "'");
}

status write_csv(const std::string& path, const grid_results& r) {
  std::ofstream out(path, std::ios::trunc);
  out << "model,scenario,strategy,requests,warmup,verified,failed,differ,median_ms,p10_ms,p90_ms,min_ms,max_ms,"
         "predicted_ms,backbone_bytes,device_link_bytes,total_link_bytes,links,weights_shipped_bytes,wall_median_ms,plan,error\n";
  for (const grid_cell& c : r.cells) {
    std::vector<std::string> links;
    for (const link_bytes& l : c.links) links.push_back(l.from + "->" + l.to + "=" + std::to_string(l.bytes));
    const bool deployed = c.deployed;
    out << csv_field(c.model) << ',' << csv_field(c.scenario) << ',' << c.strategy << ',' << c.requests << ','
        << c.warmup << ',' << c.verified << ',' << c.failed << ',' << c.differ << ',' << csv_number(c.median_ms) << ','
        << csv_number(c.p10_ms) << ',' << csv_number(c.p90_ms) << ',' << csv_number(c.min_ms) << ','
        << csv_number(c.max_ms) << ',' << csv_number(c.predicted_ms) << ','
        << (deployed ? std::to_string(c.backbone_bytes) : "") << ',' << (deployed ? std::to_string(c.device_link_bytes) : "")
        << ',' << (deployed ? std::to_string(c.total_bytes) : "") << ',' << csv_field(join(links, ";")) << ','
        << (deployed ? std::to_string(c.weights_shipped) : "") << ',' << csv_number(c.wall_median_ms) << ','
        << csv_field(c.plan) << ',' << csv_field(c.error) << '\n';
  }
  out.close();
  if (!out) return status::error("cannot write '" + path + "'");
  return status::ok();
}

}  // namespace d3
