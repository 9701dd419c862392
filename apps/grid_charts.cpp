// d3-bench grid: the gnuplot charts (data files, charts.gp, PNGs).
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

std::string gnuplot_string(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}

}  // namespace

// Long on purpose: mostly the gnuplot script, written as one piece so it reads as gnuplot does.
std::string write_charts(const grid_options& o, const grid_results& r, const std::string& folder) {
  if (std::system("gnuplot --version >/dev/null 2>&1") != 0) {
    std::printf("gnuplot is not installed: no PNG charts (scripts/install-bench-deps.sh installs gnuplot-nox)\n");
    return "No charts: gnuplot is not installed (scripts/install-bench-deps.sh installs gnuplot-nox).\n";
  }
  // One data file per scenario and metric: rows models, columns strategies ("?" = missing). gnuplot
  // refuses a plot without a single point, so empty panels get a note instead.
  std::set<std::string> has_points;  // "latency-UPLINK", "backbone-UPLINK"
  for (const std::string& scenario : o.scenarios) {
    std::ofstream latency(folder + "/latency-" + file_safe(scenario) + ".dat");
    std::ofstream backbone(folder + "/backbone-" + file_safe(scenario) + ".dat");
    latency << "model";
    backbone << "model";
    for (const std::string& s : o.strategies) {
      latency << ' ' << s;
      backbone << ' ' << s;
    }
    latency << '\n';
    backbone << '\n';
    for (const std::string& model : o.models) {
      latency << file_safe(model);
      backbone << file_safe(model);
      for (const std::string& s : o.strategies) {
        const grid_cell* c = r.find(model, scenario, s);
        latency << ' ' << (c && c->measured() ? format("%.3f", c->median_ms) : "?");
        // Log scale: no bar for zero bytes (strategies that never touch the cloud).
        backbone << ' ' << (c && c->deployed && c->backbone_bytes > 0 ? format("%.3f", c->backbone_bytes / 1e3) : "?");
        if (c && c->measured()) has_points.insert("latency-" + scenario);
        if (c && c->deployed && c->backbone_bytes > 0) has_points.insert("backbone-" + scenario);
      }
      latency << '\n';
      backbone << '\n';
    }
  }
  std::vector<std::string> scattered;  // strategies with points, one index block each
  {
    std::ofstream scatter(folder + "/predicted-vs-measured.dat");
    for (const std::string& s : o.strategies) {
      std::string block;
      for (const grid_cell& c : r.cells)
        if (c.strategy == s && c.measured() && c.predicted_ms > 0)
          block += format("%.3f %.3f ", c.predicted_ms, c.median_ms) + file_safe(c.model) + " " + file_safe(c.scenario) + "\n";
      if (block.empty()) continue;
      scatter << "# " << s << "\n" << block << "\n\n";
      scattered.push_back(s);
    }
  }
  const int panels = int(o.scenarios.size());
  const int columns = panels > 1 ? 2 : 1, rows = (panels + columns - 1) / columns;
  const int strategies = int(o.strategies.size());
  std::string gp;
  gp += "# d3-bench grid charts: gnuplot charts.gp (in this folder)\n";
  gp += "set terminal pngcairo noenhanced size " + std::to_string(700 * columns) + "," +
        std::to_string(420 * rows + 40) + " font 'sans,9'\n";
  // One colour per strategy (gnuplot's default cycle repeats after 8: hpa and the 9th shared one).
  const char* colours[] = {"#9400d3", "#009e73", "#56b4e9", "#e69f00", "#f0e442",
                           "#0072b2", "#d55e00", "#000000", "#cc79a7", "#999999"};
  for (size_t k = 0; k < sizeof colours / sizeof colours[0]; ++k)
    gp += format("set linetype %zu lc rgb '%s'\n", k + 1, colours[k]);
  gp += "set datafile missing '?'\nset style data histograms\nset style histogram clustered gap 1\n";
  gp += "set style fill solid 0.85 border -1\nset boxwidth 0.9\nset logscale y\nset grid ytics\n";
  gp += "set key outside right top vertical\nset xtics nomirror\n";
  auto histograms = [&](const std::string& output, const std::string& prefix, const std::string& title,
                        const std::string& ylabel, const std::string& empty_note) {
    gp += "set output '" + output + "'\n";
    gp += format("set multiplot layout %d,%d title %s\n", rows, columns, gnuplot_string(title).c_str());
    gp += "set ylabel " + gnuplot_string(ylabel) + "\n";
    for (const std::string& scenario : o.scenarios) {
      gp += "set title " + gnuplot_string("scenario " + scenario + " (" + o.bed.describe_scenario(scenario) + ")") + "\n";
      if (has_points.count(prefix + "-" + scenario)) {
        gp += format("plot for [i=2:%d] '%s-%s.dat' using i:xtic(1) title columnheader(i)\n", strategies + 1,
                     prefix.c_str(), file_safe(scenario).c_str());
      } else {
        gp += "set label 1 " + gnuplot_string(empty_note) + " at graph 0.5, graph 0.5 center\n";
        gp += "unset logscale y\nunset xtics\nunset ytics\nset xrange [0:1]\nset yrange [0:1]\nplot -1 notitle\n";
        gp += "unset label 1\nset autoscale x\nset autoscale y\nset logscale y\nset xtics nomirror\nset ytics\n";
      }
    }
    gp += "unset multiplot\n";
  };
  histograms("latency.png", "latency", "Median end-to-end latency per strategy (EMULATED, virtual clock)",
             "latency, ms (log)", "no cell measured");
  histograms("backbone.png", "backbone", "Backbone bytes per request (links touching the cloud; no bar: none)",
             "KB per request (log)", "no backbone traffic in any cell");
  gp += "set output 'predicted-vs-measured.png'\nset terminal pngcairo noenhanced size 800,640 font 'sans,9'\n";
  gp += "set style data points\nset logscale xy\nset key inside left top\n";
  gp += "set title 'Cost model against the runtime (EMULATED): each point a cell'\n";
  gp += "set xlabel 'predicted latency, ms'\nset ylabel 'measured median latency, ms'\n";
  gp += "plot x title 'measured = predicted' with lines lc rgb 'gray'";
  // Each strategy in the colour of its histogram bars (column k + 2 is line type k + 1).
  for (size_t i = 0; i < scattered.size(); ++i) {
    const size_t k = size_t(std::find(o.strategies.begin(), o.strategies.end(), scattered[i]) - o.strategies.begin());
    gp += format(", 'predicted-vs-measured.dat' index %zu using 1:2 with points lt %zu pt 7 ps 1 title %s", i, k + 1,
                 gnuplot_string(scattered[i]).c_str());
  }
  gp += "\n";
  {
    std::ofstream script(folder + "/charts.gp");
    script << gp;
  }
  const std::string command = "cd " + shell_quote(folder) + " && gnuplot charts.gp 2> gnuplot.log";
  if (std::system(command.c_str()) != 0) {
    std::printf("gnuplot failed (see %s/gnuplot.log): charts incomplete\n", folder.c_str());
    return "Charts: gnuplot failed (gnuplot.log in the output folder).\n";
  }
  std::remove((folder + "/gnuplot.log").c_str());
  return "Charts: ![latency](latency.png) ![backbone](backbone.png) "
         "![predicted vs measured](predicted-vs-measured.png) (data: *.dat, script: charts.gp).\n";
}


}  // namespace d3
