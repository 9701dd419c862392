#include "apps/adapt_report.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "apps/app_support.hpp"

namespace d3 {

nlohmann::ordered_json adapt_summary(const adapt_trace_info& info, const std::vector<run_result>& runs) {
  nlohmann::ordered_json summary;
  summary["bench"] = "adapt";
  summary["model"] = info.model;
  summary["emulated"] = "virtual clock: node compute = measured thread CPU time / speed; links = latency + bytes / bandwidth";
  for (size_t s = 0; s < info.trace.steps.size(); ++s) {
    nlohmann::ordered_json step = {{"step", s}, {"change", info.trace.steps[s].describe()}};
    for (const run_result& r : runs) {
      const step_figures& f = r.steps[s];
      std::vector<double> latencies;
      for (const request_row& row : r.rows)
        if (row.trace_step == int(s)) latencies.push_back(row.latency_ms);
      step[r.name] = {{"requests", f.requests},
                      {"reached", f.requests > 0},
                      {"optimum_ms", r.optimum_ms.at(s)},
                      {"optimum_requests", r.optimum_samples.at(s)},
                      {"optimum_predicted_ms", r.optimum_predicted_ms.at(s)},
                      {"requests_to_within_10pct_of_optimum", f.requests_to_optimum},
                      {"requests_to_plan_predicted_within_10pct", f.requests_to_optimal_plan},
                      {"median_ms", percentile(latencies, 0.5)},
                      {"migrations", f.migrations},
                      {"layers_moved", f.layers_moved},
                      {"layers_shipped", f.layers_shipped},
                      {"weight_bytes_shipped", f.weight_bytes_shipped},
                      {"weight_bytes_over_links", f.weight_bytes_over_links},
                      {"migrate_wall_ms", f.migrate_ms}};
    }
    summary["steps"].push_back(step);
  }
  for (const run_result& r : runs) {
    size_t verified = 0, migrations = 0, max_migrations = 0, bytes = 0, link_bytes = 0;
    int worst_to_optimum = 0;  // -1 once a step it reached never came within 10%
    int worst_to_plan = 0;     // the same for requests_to_optimal_plan
    size_t not_reached = 0;
    for (const request_row& row : r.rows) verified += row.verified;
    for (const step_figures& f : r.steps) {
      if (f.requests == 0) {
        ++not_reached;
        continue;
      }
      migrations += f.migrations;
      max_migrations = std::max(max_migrations, f.migrations);
      bytes += f.weight_bytes_shipped;
      link_bytes += f.weight_bytes_over_links;
      if (worst_to_optimum >= 0) worst_to_optimum = f.requests_to_optimum < 0 ? -1 : std::max(worst_to_optimum, f.requests_to_optimum);
      if (worst_to_plan >= 0) worst_to_plan = f.requests_to_optimal_plan < 0 ? -1 : std::max(worst_to_plan, f.requests_to_optimal_plan);
    }
    summary["runs"][r.name] = {{"requests", r.rows.size()}, {"verified", verified}, {"failed", r.failed},
                               {"differ", r.differ}, {"error", r.error}, {"migrations", migrations},
                               {"max_migrations_per_step", max_migrations}, {"weight_bytes_shipped", bytes},
                               {"weight_bytes_over_links", link_bytes},
                               {"standby_bytes", r.standby_bytes},
                               {"standby_bytes_over_links", r.standby_bytes_over_links},
                               {"standby_bytes_per_link", r.standby_bytes_per_link},
                               {"worst_requests_to_within_10pct", worst_to_optimum},
                               {"worst_requests_to_plan_predicted_within_10pct", worst_to_plan},
                               {"steps_not_reached", not_reached},
                               {"stopped_at_max_requests", r.stopped_at_cap}};
  }
  if (runs.size() == 2) {
    auto partial_over_full = [&](const char* key) {
      const double partial = summary["runs"]["partial"][key].get<double>();
      const double full = summary["runs"]["full"][key].get<double>();
      return full > 0 ? partial / full : 0.0;
    };
    summary["partial_over_full_bytes"] = partial_over_full("weight_bytes_shipped");
    summary["partial_over_full_link_bytes"] = partial_over_full("weight_bytes_over_links");
  }
  return summary;
}

void write_adapt_outputs(const adapt_trace_info& c, const std::vector<run_result>& runs,
                         nlohmann::ordered_json& summary) {
  const std::string csv_path = c.out + "/adapt.csv";
  {
    std::ofstream csv(csv_path, std::ios::trunc);
    csv << "run,request,trace_step,uplink,plan_version,virtual_start_ms,virtual_latency_ms,optimum_ms,verified\n";
    for (const run_result& r : runs)
      for (const request_row& row : r.rows) {
        const size_t s = row.trace_step < 0 ? 0 : size_t(row.trace_step);
        csv << r.name << ',' << row.index << ',' << row.trace_step << ',' << c.step_labels[s] << ','
            << row.plan_version << ',' << row.start_ms << ',' << row.latency_ms << ',' << r.optimum_ms.at(s) << ','
            << (row.verified ? "true" : "false") << '\n';
      }
  }
  if (std::system("gnuplot --version >/dev/null 2>&1") != 0) {
    summary["chart"] = "none: gnuplot is not installed (scripts/install-bench-deps.sh installs gnuplot-nox)";
    return;
  }
  // One data block per run: virtual start time (s) and latency (ms).
  const std::string data = c.out + "/adapt.dat", script = c.out + "/adapt.gp";
  {
    std::ofstream out(data, std::ios::trunc);
    for (const run_result& r : runs) {
      out << "# " << r.name << "\n";
      for (const request_row& row : r.rows) out << row.start_ms / 1000 << ' ' << row.latency_ms << '\n';
      out << "\n\n";
    }
    for (const run_result& r : runs) {
      out << "# optimum beside the " << r.name << " run\n";
      for (size_t s = 0; s < c.trace.steps.size(); ++s) {
        const double from = c.trace.steps[s].at_ms / 1000;
        const double to = s + 1 < c.trace.steps.size() ? c.trace.steps[s + 1].at_ms / 1000
                                                        : (c.trace.steps.back().at_ms + c.tail_ms) / 1000;
        out << from << ' ' << r.optimum_ms.at(s) << '\n' << to << ' ' << r.optimum_ms.at(s) << '\n';
      }
      out << "\n\n";
    }
  }
  {
    std::ofstream gp(script, std::ios::trunc);
    gp << "set terminal pngcairo size 1000,500 noenhanced\nset output '" << c.out << "/adapt.png'\n"
       << "set title '" << c.model << ": trace, EMULATED virtual-clock latency per request'\n"
       << "set xlabel 'virtual time at request start (s)'\nset ylabel 'end-to-end latency (ms)'\nset logscale y\n"
       << "set key top right\nset grid\n"
       << "plot '" << data << "' index 0 with linespoints title 'partial (planner actor)', "
       << "'" << data << "' index 1 with linespoints title 'full re-partition', "
       << "'" << data << "' index 2 with lines dashtype 2 lw 2 title 'optimum per step, beside the partial run', "
       << "'" << data << "' index 3 with lines dashtype 3 lw 2 title 'optimum per step, beside the full run'\n";
  }
  if (std::system(("gnuplot '" + script + "' 2>/dev/null").c_str()) == 0)
    summary["chart"] = c.out + "/adapt.png";
  else
    summary["chart"] = "none: gnuplot failed (pngcairo terminal missing?)";
}


void print_adapt_summary(const nlohmann::ordered_json& summary, const std::vector<run_result>& runs,
                         const std::string& out) {
  // Per run: the optimum measured beside it, the requests to within 10% of it, and (in
  // parentheses) to a plan the cost model puts within 10% of HPA's (requests_to_optimal_plan).
  std::printf("\n%-5s %-40s | %-44s | %-44s\n", "step", "change", "partial: optimum / reqs to 10% (plan) / layers / MB",
              "full: optimum / reqs to 10% (plan) / layers / MB");
  for (const auto& step : summary["steps"]) {
    auto cell = [&](const char* run) {
      const auto& f = step.at(run);
      if (!f.at("reached").get<bool>()) return std::string("not reached (--max-requests)");
      char text[96];
      std::snprintf(text, sizeof text, "%7.1f ms / %3d (%3d) / %3zu / %7.2f", f.at("optimum_ms").get<double>(),
                    f.at("requests_to_within_10pct_of_optimum").get<int>(),
                    f.at("requests_to_plan_predicted_within_10pct").get<int>(), f.at("layers_moved").get<size_t>(),
                    f.at("weight_bytes_shipped").get<double>() / 1e6);
      return std::string(text);
    };
    std::printf("%-5d %-40s | %-44s | %-44s\n", step.at("step").get<int>(), step.at("change").get<std::string>().c_str(),
                cell("partial").c_str(), cell("full").c_str());
  }
  for (const run_result& r : runs)
    if (!r.error.empty() || r.failed || r.differ)
      std::printf("%s run: %d failed, %d differ%s%s\n", r.name.c_str(), r.failed, r.differ, r.error.empty() ? "" : ": ",
                  r.error.c_str());
  for (const run_result& r : runs) {
    const auto& t = summary["runs"][r.name];
    std::printf("%s: %zu migrations (at most %zu in a step), %.2f MB of weights shipped (%.2f MB over links, the rest "
                "to the app's own node), worst step within 10%% after %d requests (a plan predicted within 10%%: %d)\n",
                r.name.c_str(), t["migrations"].get<size_t>(), t["max_migrations_per_step"].get<size_t>(),
                t["weight_bytes_shipped"].get<double>() / 1e6, t["weight_bytes_over_links"].get<double>() / 1e6,
                t["worst_requests_to_within_10pct"].get<int>(),
                t["worst_requests_to_plan_predicted_within_10pct"].get<int>());
    if (r.stopped_at_cap)
      std::printf("%s: WARNING: stopped at the --max-requests cap (%zu requests, the last at virtual %.1f s) before "
                  "%zu of the trace's steps: raise --max-requests to cover the whole trace\n",
                  r.name.c_str(), r.rows.size(), r.last_start_ms / 1000, t["steps_not_reached"].get<size_t>());
    if (r.standby_bytes > 0) {
      std::string per_link;
      for (const auto& [link, bytes] : r.standby_bytes_per_link) {
        char part[96];
        std::snprintf(part, sizeof part, "%s%s %.2f", per_link.empty() ? "" : ", ", link.c_str(), double(bytes) / 1e6);
        per_link += part;
      }
      std::printf("%s: standby copies %.2f MB (%.2f MB over links: %s), sent as background traffic in the links' "
                  "idle time\n",
                  r.name.c_str(), double(r.standby_bytes) / 1e6, double(r.standby_bytes_over_links) / 1e6,
                  per_link.empty() ? "none" : per_link.c_str());
    }
  }
  std::printf("latency per request: %s/adapt.csv; chart: %s\n", out.c_str(),
              summary.value("chart", std::string("none")).c_str());
  std::printf("%s\n", summary.dump().c_str());
}

}  // namespace d3
