// d3-bench regimes: reports (see regimes_report.hpp).
#include "apps/regimes_report.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>

namespace d3 {

status write_map_data(const std::string& path, const std::vector<priced_cell>& map, size_t ny) {
  std::ofstream out(path);
  for (size_t k = 0; k < map.size(); ++k) {
    if (k > 0 && k % ny == 0) out << "\n";
    out << map[k].x << " " << map[k].y << " " << map[k].speedup() << "\n";
  }
  return out ? status::ok() : status::error("cannot write '" + path + "'");
}


double max_speedup(const std::vector<priced_cell>& map, const priced_cell** where) {
  double best = 0;
  for (const priced_cell& c : map)
    if (c.speedup() > best) {
      best = c.speedup();
      if (where) *where = &c;
    }
  return best;
}

double fraction_at_least(const std::vector<priced_cell>& map, double goal) {
  if (map.empty()) return 0;
  size_t n = 0;
  for (const priced_cell& c : map) n += c.speedup() >= goal;
  return double(n) / double(map.size());
}

// Writes the .dat files and regimes.gp, runs gnuplot; returns a note on the charts.
std::string regimes_charts(const regimes_options& o, const std::vector<model_maps>& maps) {
  std::string gp = "set terminal pngcairo size 900,700 noenhanced\nset logscale xy\nset pm3d map\n"
                   "set palette rgbformulae 33,13,10\nset cbrange [1:*]\nset cblabel 'hpa speedup over the best two-tier'\n"
                   "set contour base\nset cntrparam levels discrete 3.4\nunset clabel\n";
  for (const model_maps& m : maps) {
    if (!m.error.empty()) continue;
    const std::string base = file_safe(m.model);
    for (const auto& [kind, map, ny, xlabel] :
         {std::tuple<std::string, const std::vector<priced_cell>*, size_t, std::string>{
              "bandwidth", &m.bandwidth, o.cloud.size(), "device<->edge Mbit/s"},
          {"device", &m.device, o.cloud.size(), "device speed (x one core)"}}) {
      const std::string dat = base + "-" + kind + ".dat";
      if (!write_map_data(o.out + "/" + dat, *map, ny)) continue;
      const double peak = max_speedup(*map);
      gp += "set output '" + base + "-" + kind + ".png'\n";
      gp += "set title '" + m.model + ": hpa / best two-tier, predicted (max " + format("%.2f", peak) + "x" +
            (peak >= 3.4 ? "; line: 3.4x" : "; 3.4x not reached") + ")'\n";
      gp += "set xlabel '" + xlabel + "'\nset ylabel 'edge<->cloud Mbit/s'\n";
      gp += "splot '" + dat + "' using 1:2:3 with pm3d notitle, '' using 1:2:3 nosurface with lines lw 2 lc rgb 'black' notitle\n";
    }
  }
  std::ofstream(o.out + "/regimes.gp") << gp;
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    return "Charts skipped: gnuplot is not installed (scripts/install-bench-deps.sh installs gnuplot-nox).";
  const std::string command = "cd '" + o.out + "' && gnuplot regimes.gp >gnuplot.log 2>&1";
  if (std::system(command.c_str()) != 0) return "gnuplot failed (see " + o.out + "/gnuplot.log).";
  return "Charts: <model>-bandwidth.png and <model>-device.png (data: *.dat, script: regimes.gp).";
}

std::string regimes_markdown(const regimes_options& o, const std::vector<model_maps>& maps,
                     const std::vector<measured_point>& points, const std::string& charts) {
  std::string md = "# d3-bench regimes: where three tiers pay\n\n";
  md += "Command: `" + o.command_line + "`\n\n";
  md += "Base testbed: " + o.bed.name + " (" + o.bed.source + "), its base links; EMULATED. hpa's speedup = the "
        "best two-tier baseline's predicted latency (neurosurgeon, dads, neurosurgeon-edge, dads-edge) / hpa's, on "
        "the cost model with every node's probed profile.\n\n";
  md += "| model | bandwidth map: max (device<->edge, edge<->cloud Mbit/s, vs) | geometric mean | cells >= 3.4x | "
        "device map: max (device speed, edge<->cloud Mbit/s) | cells >= 3.4x |\n|---|---|---|---|---|---|\n";
  for (const model_maps& m : maps) {
    if (!m.error.empty()) {
      md += "| " + m.model + " | error: " + m.error + " | | | | |\n";
      continue;
    }
    const priced_cell* at = nullptr;
    const double peak = max_speedup(m.bandwidth, &at);
    double log_sum = 0;
    for (const priced_cell& c : m.bandwidth) log_sum += std::log(c.speedup());
    const priced_cell* dat = nullptr;
    const double dpeak = max_speedup(m.device, &dat);
    md += "| " + m.model + " | " + format("%.2fx", peak) + (at ? " (" + format("%g", at->x) + ", " + format("%g", at->y) + ", " + at->two_tier + ")" : "") +
          " | " + format("%.2fx", std::exp(log_sum / double(std::max<size_t>(1, m.bandwidth.size())))) + " | " +
          format("%.0f%%", 100 * fraction_at_least(m.bandwidth, 3.4)) + " | " + format("%.2fx", dpeak) +
          (dat ? " (" + format("%g", dat->x) + ", " + format("%g", dat->y) + ")" : "") + " | " +
          format("%.0f%%", 100 * fraction_at_least(m.device, 3.4)) + " |\n";
  }
  md += "\n## Measured points (real d3-node processes, virtual clock)\n\n";
  md += "| model | device<->edge Mbit/s | edge<->cloud Mbit/s | best two-tier | predicted hpa / two-tier ms | measured "
        "hpa / two-tier ms (median) | predicted speedup | measured speedup | error | hpa plan |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n";
  std::vector<double> errors, latency_errors;
  for (const measured_point& p : points) {
    md += "| " + p.model + " | " + format("%g", p.cell.x) + " | " + format("%g", p.cell.y) + " | " + p.cell.two_tier + " | ";
    if (!p.error.empty() || p.hpa_ms.empty() || p.two_tier_ms.empty()) {
      md += format("%.1f", p.cell.hpa_ms) + " / " + format("%.1f", p.cell.two_tier_ms) + " | error: " + p.error + " | | | | |\n";
      continue;
    }
    const double e = p.measured_speedup() / p.cell.speedup() - 1;
    errors.push_back(std::fabs(e));
    latency_errors.push_back(std::fabs(p.median(p.hpa_ms) / p.cell.hpa_ms - 1));
    latency_errors.push_back(std::fabs(p.median(p.two_tier_ms) / p.cell.two_tier_ms - 1));
    md += format("%.1f", p.cell.hpa_ms) + " / " + format("%.1f", p.cell.two_tier_ms) + " | " + format("%.1f", p.median(p.hpa_ms)) +
          " / " + format("%.1f", p.median(p.two_tier_ms)) + " | " + format("%.2fx", p.cell.speedup()) + " | " +
          format("%.2fx", p.measured_speedup()) + " | " + format("%+.1f%%", 100 * e) + " | " + describe(p.cell.hpa.plan) + " |\n";
  }
  if (!errors.empty())
    md += "\n|measured speedup / predicted - 1| over " + std::to_string(errors.size()) + " points: median " +
          format("%.1f%%", 100 * percentile(errors, 0.5)) + ", max " +
          format("%.1f%%", 100 * *std::max_element(errors.begin(), errors.end())) +
          "; |measured latency / predicted - 1| over both plans: median " +
          format("%.1f%%", 100 * percentile(latency_errors, 0.5)) + ", max " +
          format("%.1f%%", 100 * *std::max_element(latency_errors.begin(), latency_errors.end())) + ".\n";
  md += "\n" + charts + "\n";
  return md;
}

}  // namespace d3
