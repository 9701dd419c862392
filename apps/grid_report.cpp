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

bool contains(const std::vector<std::string>& list, const std::string& name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

// A ratio with where its maximum was, over the cells where both sides were measured.
struct ratio_summary {
  std::vector<double> values;
  double max = NAN;
  std::string max_at;
  int infinite = 0;  // the denominator was zero (hpa sent nothing over the backbone)
  void add(double v, const std::string& at) {
    if (std::isinf(v)) {
      ++infinite;
      return;
    }
    values.push_back(v);
    if (std::isnan(max) || v > max) {
      max = v;
      max_at = at;
    }
  }
  std::string text() const {
    if (values.empty() && infinite == 0) return "no cell with both measured";
    std::string s = values.empty() ? "" : format("max %.2fx (%s), geometric mean %.2fx over %zu cell%s", max, max_at.c_str(),
                                                   geometric_mean(values), values.size(), values.size() == 1 ? "" : "s");
    if (infinite) s += (s.empty() ? "" : "; ") + format("%d cell%s where hpa sends nothing (unbounded)", infinite, infinite == 1 ? "" : "s");
    return s;
  }
};

// A model's and a scenario's best measured cell among `names` (lowest median); null when none.
const grid_cell* best_of(const grid_results& r, const std::string& model, const std::string& scenario,
                         const std::vector<std::string>& names) {
  const grid_cell* best = nullptr;
  for (const std::string& s : names) {
    const grid_cell* c = r.find(model, scenario, s);
    if (c && c->clean() && (!best || c->median_ms < best->median_ms)) best = c;
  }
  return best;
}

}  // namespace

// The noise band of a comparison: the larger relative spread (p90 - p10) / median of the two
// cells' repeated requests; and, since cells that deployed the same plan measure the same thing,
// the relative spread of the medians of same-plan cells of this (model, scenario) (it shows noise
// between cells, e.g. other load on the machine, that the requests of one cell do not); plus the
// floor.
hpa_verdict judge_hpa(const grid_options& o, const grid_results& r, const std::string& model, const std::string& scenario) {
  hpa_verdict v;
  const std::string where = model + " " + scenario;
  const grid_cell* hpa = r.find(model, scenario, "hpa");
  if (!hpa) {
    v.text = where + ": hpa is not in --strategies; the check compares it with the baselines";
    return v;
  }
  if (!hpa->clean()) {
    v.text = where + ": hpa has no clean measurement (" + hpa->error + ")";
    return v;
  }
  std::vector<std::string> others;
  for (const std::string& s : o.strategies)
    if (s != "hpa") others.push_back(s);
  const grid_cell* best = best_of(r, model, scenario, others);
  if (!best) {
    v.text = where + ": no baseline measured to compare hpa with";
    return v;
  }
  std::map<std::string, std::pair<double, double>> plan_medians;  // plan -> (min, max) median
  std::map<std::string, int> plan_cells;
  for (const std::string& s : o.strategies) {
    const grid_cell* c = r.find(model, scenario, s);
    if (!c || !c->clean()) continue;
    auto [it, fresh] = plan_medians.emplace(c->plan, std::make_pair(c->median_ms, c->median_ms));
    it->second.first = std::min(it->second.first, c->median_ms);
    it->second.second = std::max(it->second.second, c->median_ms);
    ++plan_cells[c->plan];
  }
  double same_plan_spread = 0;
  for (const auto& [plan, range] : plan_medians)
    if (plan_cells[plan] > 1) same_plan_spread = std::max(same_plan_spread, (range.second - range.first) / range.first);
  const double band = std::max({hpa->spread(), best->spread(), same_plan_spread}) + o.noise_floor;
  const double ratio = hpa->median_ms / best->median_ms;
  const bool same_plan = hpa->plan == best->plan;
  v.best = best->strategy;
  v.same_plan = same_plan;
  v.ok = same_plan || ratio <= 1 + band;
  v.text = format("%s: hpa median %.2f ms, best baseline %s %.2f ms, hpa/best %.3f; noise band %.1f%% = max of "
                  "spread (p90-p10)/median (hpa %.1f%%, %s %.1f%%) and same-plan cells' spread %.1f%%, + floor %.1f%%",
                  where.c_str(), hpa->median_ms, best->strategy.c_str(), best->median_ms, ratio, 100 * band,
                  100 * hpa->spread(), best->strategy.c_str(), 100 * best->spread(), 100 * same_plan_spread,
                  100 * o.noise_floor);
  if (same_plan) v.text += "; hpa deployed the same plan as " + best->strategy;
  if (hpa->confirmation > 0 || best->confirmation > 0)
    v.text += format("; after %d more requests of hpa and %s each, alternating (the first %d did not place hpa within "
                     "the band)", std::max(hpa->confirmation, best->confirmation), best->strategy.c_str(), o.requests);
  return v;
}

check_outcome run_check(const grid_options& o, const grid_results& r) {
  check_outcome out;
  for (const grid_cell& c : r.cells)
    if (!c.clean()) {
      out.pass = false;
      out.lines.push_back(format("FAIL %s %s %s: ", c.model.c_str(), c.scenario.c_str(), c.strategy.c_str()) +
                          (c.differ ? format("%d answers differ from the single-process run; ", c.differ) : "") +
                          (c.failed ? format("%d requests failed; ", c.failed) : "") + c.error);
    }
  for (const std::string& model : o.models)
    for (const std::string& scenario : o.scenarios) {
      const hpa_verdict v = judge_hpa(o, r, model, scenario);
      if (!v.ok) out.pass = false;
      out.lines.push_back((v.ok ? "ok   " : "FAIL ") + v.text);
    }
  out.lines.push_back(out.pass ? "check: PASS" : "check: FAIL");
  return out;
}

namespace {

std::string testbed_text(const grid_options& o) {
  const testbed_file& b = o.bed;
  std::string s;
  s += "Testbed: " + b.name + " (" + b.source + "). EMULATED, not real devices or links:\n\n";
  s += "| node | count | speed (x one core of this machine) |\n|---|---|---|\n";
  s += format("| device | 1 | %g |\n| edge (edge1..edge%d) | %d | %g |\n| cloud | 1 | %g |\n\n", b.base.device_speed,
              b.edge_nodes, b.edge_nodes, b.base.edge_speed, b.base.cloud_speed);
  s += "| scenario | device<->edge | edge<->edge | edge<->cloud (backbone) | device<->cloud |\n|---|---|---|---|---|\n";
  for (const std::string& u : o.scenarios) {
    const testbed t = b.with(*b.scenario(u));
    s += "| " + u + " | " + describe(t.device_edge) + " | " + describe(t.edge_edge) + " | " +
         describe(t.edge_cloud) + " | " + describe(t.link(node_role::device, node_role::cloud)) +
         (t.device_cloud ? "" : " (device<->edge, then edge<->cloud)") + " |\n";
  }
  s += "\n";
  s += "Times are EMULATED on the virtual clock: a node's compute = the measured thread CPU time of its kernels on this "
       "machine / the node's speed; a link = latency + bytes / bandwidth, queued per link. Backbone bytes = bytes per "
       "request on links touching the cloud node (edge<->cloud, device<->cloud; the app sits on the device, so inputs "
       "start and answers end there).\n";
  return s;
}

std::string md_header(const std::vector<std::string>& columns) {
  std::string h = "|";
  for (const std::string& c : columns) h += " " + c + " |";
  h += "\n|";
  for (size_t i = 0; i < columns.size(); ++i) h += "---|";
  return h + "\n";
}

std::string md_cell_latency(const grid_cell* c) {
  if (!c) return "";
  if (!c->measured()) return c->error.rfind("plan: ", 0) == 0 ? "no plan" : "error";
  std::string s = format("%.1f", c->median_ms);
  if (c->failed || c->differ) s += format(" (%d bad)", c->failed + c->differ);
  return s;
}

// What the report's sections share: the comparison groups that ran, and the summaries the goal
// section reads back.
struct report_context {
  const grid_options& o;
  const grid_results& r;
  bool has_hpa = false;
  std::vector<std::string> baselines, two_tier, papers_two, cloud_bound;  // of the strategies that ran
  std::string two_tier_label, papers_label;
  ratio_summary over_two_tier, least_backbone_reduction, predicted_over_two_tier;

  report_context(const grid_options& options, const grid_results& results) : o(options), r(results) {
    has_hpa = contains(o.strategies, "hpa");
    for (const std::string& s : o.strategies)
      if (s != "hpa") baselines.push_back(s);
    for (const std::string& b : two_tier_names())
      if (contains(baselines, b)) two_tier.push_back(b);
    for (const std::string& b : papers_two_tier)
      if (contains(baselines, b)) papers_two.push_back(b);
    for (const std::string& b : cloud_bound_names())
      if (contains(baselines, b)) cloud_bound.push_back(b);
    two_tier_label = "best two-tier (" + join(two_tier, ", ") + ")";
    papers_label = "best of the papers' two (" + join(papers_two, ", ") + ")";
  }

  // The report's sections, in order (goal_section reads what speedup_section and
  // backbone_section summarised).
  std::string latency_section();
  std::string speedup_section();
  std::string backbone_section();
  std::string predicted_section();
  std::string goal_section();
};

// Median latency per scenario, the fastest strategy of each row in bold.
std::string report_context::latency_section() {
  std::string md;
  md += "## Median end-to-end latency, ms (EMULATED)\n\n";
  md += "Bold: the fastest strategy of the row. \"no plan\": the strategy returned no plan (see Errors).\n\n";
  for (const std::string& scenario : o.scenarios) {
    md += "### Scenario " + scenario + " (" + o.bed.describe_scenario(scenario) + ")\n\n";
    std::vector<std::string> columns = {"model"};
    for (const std::string& s : o.strategies) columns.push_back(s);
    md += md_header(columns);
    for (const std::string& model : o.models) {
      const grid_cell* best = best_of(r, model, scenario, o.strategies);
      md += "| " + model + " |";
      for (const std::string& s : o.strategies) {
        const grid_cell* c = r.find(model, scenario, s);
        const std::string text = md_cell_latency(c);
        md += " " + (c && c == best ? "**" + text + "**" : text) + " |";
      }
      md += "\n";
    }
    md += "\n";
  }

  return md;
}

// hpa's speedups, measured and predicted (fills the context's summaries).
std::string report_context::speedup_section() {
  std::string md;
  md += "## hpa's speedup (baseline median / hpa median)\n\n";
  if (!has_hpa) {
    md += "hpa was not in --strategies.\n\n";
  } else {
    std::map<std::string, ratio_summary> summaries;
    ratio_summary over_best, over_papers;
    std::vector<std::string> columns = {"scenario", "model"};
    for (const std::string& b : baselines) columns.push_back(b);
    columns.push_back(two_tier_label);
    columns.push_back(papers_label);
    columns.push_back("best baseline");
    md += md_header(columns);
    for (const std::string& scenario : o.scenarios)
      for (const std::string& model : o.models) {
        const grid_cell* hpa = r.find(model, scenario, "hpa");
        const std::string at = model + " " + scenario;
        const bool hpa_measured = hpa && hpa->measured();
        md += "| " + scenario + " | " + model + (hpa_measured ? "" : " (hpa: " + md_cell_latency(hpa) + ")") + " |";
        auto speedup = [&](const grid_cell* base, ratio_summary& summary) -> std::string {
          if (!hpa_measured || !base || !base->measured()) return "";
          const double v = base->median_ms / hpa->median_ms;
          summary.add(v, at + ", vs " + base->strategy);
          return format("%.2fx", v);
        };
        for (const std::string& b : baselines) md += " " + speedup(r.find(model, scenario, b), summaries[b]) + " |";
        const grid_cell* best_two = best_of(r, model, scenario, two_tier);
        const grid_cell* best_papers = best_of(r, model, scenario, papers_two);
        const grid_cell* best_any = best_of(r, model, scenario, baselines);
        md += " " + speedup(best_two, over_two_tier) + (hpa_measured && best_two ? " (" + best_two->strategy + ")" : "") + " |";
        md += " " + speedup(best_papers, over_papers) + (hpa_measured && best_papers ? " (" + best_papers->strategy + ")" : "") + " |";
        md += " " + speedup(best_any, over_best) + (hpa_measured && best_any ? " (" + best_any->strategy + ")" : "") + " |\n";
      }
    md += "\nOver all cells where both were measured:\n\n";
    for (const std::string& b : baselines) md += "- vs " + b + ": " + summaries[b].text() + "\n";
    md += "- vs the " + two_tier_label + " of each cell: " + over_two_tier.text() + "\n";
    md += "- vs the " + papers_label + " of each cell: " + over_papers.text() + "\n";
    md += "- vs the best baseline of each cell: " + over_best.text() + "\n\n";
    // The cost model's view carries no measurement noise: the speedup hpa's planner predicted.
    md += "Predicted by the cost model (no measurement noise), hpa's speedup over the " + two_tier_label + ":\n\n";
    std::vector<std::string> pcolumns = {"model"};
    for (const std::string& scenario : o.scenarios) pcolumns.push_back(scenario);
    md += md_header(pcolumns);
    for (const std::string& model : o.models) {
      md += "| " + model + " |";
      for (const std::string& scenario : o.scenarios) {
        const grid_cell* hpa = r.find(model, scenario, "hpa");
        double best = std::numeric_limits<double>::infinity();
        for (const std::string& b : two_tier)
          if (const grid_cell* c = r.find(model, scenario, b); c && c->predicted_ms > 0) best = std::min(best, c->predicted_ms);
        if (hpa && hpa->predicted_ms > 0 && std::isfinite(best)) {
          predicted_over_two_tier.add(best / hpa->predicted_ms, model + " " + scenario);
          md += format(" %.2fx |", best / hpa->predicted_ms);
        } else {
          md += " |";
        }
      }
      md += "\n";
    }
    md += "\nPredicted over all cells: " + predicted_over_two_tier.text() + "\n\n";
  }

  return md;
}

// Backbone bytes per request and hpa's reductions against the cloud-bound baselines.
std::string report_context::backbone_section() {
  std::string md;
  md += "## Backbone traffic per request (links touching the cloud node)\n\n";
  {
    std::vector<std::string> columns = {"scenario", "model"};
    for (const std::string& s : o.strategies) columns.push_back(s);
    if (has_hpa)
      for (const std::string& b : cloud_bound) columns.push_back("hpa reduction vs " + b);
    if (has_hpa && !cloud_bound.empty()) columns.push_back("vs the least of them");
    md += md_header(columns);
    std::map<std::string, ratio_summary> reductions;
    for (const std::string& scenario : o.scenarios)
      for (const std::string& model : o.models) {
        md += "| " + scenario + " | " + model + " |";
        for (const std::string& s : o.strategies) {
          const grid_cell* c = r.find(model, scenario, s);
          md += " " + (c && c->deployed ? human_bytes(double(c->backbone_bytes)) : md_cell_latency(c)) + " |";
        }
        if (has_hpa) {
          const grid_cell* hpa = r.find(model, scenario, "hpa");
          const grid_cell* least = nullptr;  // the cloud-bound baseline with the least backbone traffic
          // baseline bytes / hpa bytes; nothing when neither uses the backbone (no ratio to speak of).
          auto reduction = [&](const grid_cell* base, ratio_summary& summary) -> std::string {
            if (!hpa || !hpa->deployed || !base || !base->deployed) return "";
            if (base->backbone_bytes == 0 && hpa->backbone_bytes == 0) return "none (0 B both)";
            const double v = hpa->backbone_bytes == 0 ? std::numeric_limits<double>::infinity()
                                                      : double(base->backbone_bytes) / double(hpa->backbone_bytes);
            summary.add(v, model + " " + scenario + ", vs " + base->strategy);
            return std::isinf(v) ? "unbounded (hpa: 0 B)" : format("%.2fx", v);
          };
          for (const std::string& b : cloud_bound) {
            const grid_cell* base = r.find(model, scenario, b);
            md += " " + reduction(base, reductions[b]) + " |";
            if (base && base->deployed && (!least || base->backbone_bytes < least->backbone_bytes)) least = base;
          }
          if (!cloud_bound.empty())
            md += " " + reduction(least, least_backbone_reduction) +
                  (least && least->backbone_bytes > 0 ? " (" + least->strategy + ")" : "") + " |";
        }
        md += "\n";
      }
    if (has_hpa && !cloud_bound.empty()) {
      md += "\nhpa's backbone traffic reduction (baseline bytes / hpa bytes), over all cells where both deployed:\n\n";
      for (const std::string& b : cloud_bound) md += "- vs " + b + ": " + reductions[b].text() + "\n";
      md += "- vs the cloud-bound baseline with the least backbone traffic in each cell: " +
            least_backbone_reduction.text() + "\n";
    }
    md += "\n";
  }

  return md;
}

// The cost model against the measured medians.
std::string report_context::predicted_section() {
  std::string md;
  md += "## Predicted (cost model) against measured latency, ms\n\n";
  md += "Each cell: predicted -> measured median (measured / predicted - 1).\n\n";
  {
    std::vector<std::string> columns = {"scenario", "model"};
    for (const std::string& s : o.strategies) columns.push_back(s);
    md += md_header(columns);
    std::vector<double> errors;
    std::string worst_at;
    double worst = 0;
    for (const std::string& scenario : o.scenarios)
      for (const std::string& model : o.models) {
        md += "| " + scenario + " | " + model + " |";
        for (const std::string& s : o.strategies) {
          const grid_cell* c = r.find(model, scenario, s);
          if (c && c->measured() && c->predicted_ms > 0) {
            const double e = c->median_ms / c->predicted_ms - 1;
            errors.push_back(std::fabs(e));
            if (std::fabs(e) >= worst) {
              worst = std::fabs(e);
              worst_at = model + " " + scenario + " " + s;
            }
            md += format(" %.1f -> %.1f (%+.1f%%) |", c->predicted_ms, c->median_ms, 100 * e);
          } else {
            md += " " + md_cell_latency(c) + " |";
          }
        }
        md += "\n";
      }
    if (!errors.empty())
      md += format("\n|measured / predicted - 1| over %zu cells: median %.1f%%, max %.1f%% (%s).\n", errors.size(),
                   100 * percentile(errors, 0.5), 100 * worst, worst_at.c_str());
    md += "\n";
  }

  return md;
}

// The goal lines (after speedup_section and backbone_section).
std::string report_context::goal_section() {
  std::string md;
  if (has_hpa) {
    md += "## Against the goal (issue 12)\n\n";
    std::vector<std::string> slower;
    for (const std::string& scenario : o.scenarios)
      for (const std::string& model : o.models) {
        const hpa_verdict v = judge_hpa(o, r, model, scenario);
        if (!v.ok) slower.push_back(v.text);
      }
    md += "- hpa no slower than the best baseline in any cell (within the noise band): " +
          (slower.empty() ? std::string("met") : "missed:\n  - " + join(slower, "\n  - ")) + "\n";
    std::vector<std::string> predicted_behind;
    std::vector<double> model_errors;
    for (const std::string& scenario : o.scenarios)
      for (const std::string& model : o.models) {
        const grid_cell* hpa = r.find(model, scenario, "hpa");
        for (const std::string& b : baselines) {
          const grid_cell* c = r.find(model, scenario, b);
          if (hpa && c && hpa->predicted_ms > 0 && c->predicted_ms > 0 && hpa->predicted_ms > c->predicted_ms * (1 + 1e-9))
            predicted_behind.push_back(format("%s %s: hpa %.2f ms, %s %.2f ms", model.c_str(), scenario.c_str(),
                                              hpa->predicted_ms, b.c_str(), c->predicted_ms));
        }
        for (const std::string& st : o.strategies)
          if (const grid_cell* c = r.find(model, scenario, st); c && c->measured() && c->predicted_ms > 0)
            model_errors.push_back(std::fabs(c->median_ms / c->predicted_ms - 1));
      }
    md += "- hpa never predicted behind any baseline: " +
          (predicted_behind.empty() ? std::string("met") : "missed:\n  - " + join(predicted_behind, "\n  - ")) + "\n";
    if (!model_errors.empty()) {
      const double median = percentile(model_errors, 0.5), worst = *std::max_element(model_errors.begin(), model_errors.end());
      md += format("- cost model within 3%% median and 10%% max of the measured latency: %s (median %.1f%%, max %.1f%% "
                   "over %zu cells)\n",
                   median <= 0.03 && worst <= 0.10 ? "met" : "missed", 100 * median, 100 * worst, model_errors.size());
    }
    auto reached = [](const ratio_summary& summary, double goal) {
      const std::string finite =
          summary.values.empty() ? "" : format("max %.2fx (%s)", summary.max, summary.max_at.c_str());
      if (summary.infinite)
        return format("met: in %d cell%s hpa sends nothing over the backbone and the baseline does (an unbounded "
                      "ratio)",
                      summary.infinite, summary.infinite == 1 ? "" : "s") +
               (finite.empty() ? "" : "; finite ratios: " + finite);
      if (summary.values.empty()) return std::string("not measured");
      return std::string(summary.max >= goal ? "met: " : "missed: ") + finite;
    };
    md += "- somewhere >= 3.4x faster than the " + two_tier_label + " of the cell: " + reached(over_two_tier, 3.4) +
          (over_two_tier.values.empty() ? "" : format(" (geometric mean %.2fx)", geometric_mean(over_two_tier.values))) + "\n";
    md += "- somewhere >= 3.68x less backbone traffic than the cloud-bound baselines (" + join(cloud_bound, ", ") +
          "; against the one with the least traffic in the cell): " + reached(least_backbone_reduction, 3.68) + "\n\n";
  }

  return md;
}

// Each strategy S next to S+codecs (d3-bench grid --codecs): latency, the device link's bytes,
// every link's bytes per request as measured, exactness.
std::string compression_section(const grid_options& o, const grid_results& r) {
  std::string md;
  int rows = 0, worse = 0, encoded = 0;
  double max_noise = 0;
  double best_speedup = 0, best_first_hop = 0;
  for (const grid_cell& with : r.cells) {
    if (!with_codecs_suffix(with.strategy)) continue;
    const grid_cell* raw = r.find(with.model, with.scenario, without_codecs_suffix(with.strategy));
    if (!raw) continue;
    if (rows++ == 0) {
      md += "## Compression: each strategy with and without codecs\n\n";
      md += std::string("Side by side, same cells' rounds. Codecs (lossless; u8 for 8-bit images, sparse bitmaps, zstd "
                        "over byte planes) are chosen per tensor and link by the planner where its measured ratios and "
                        "codec costs predict them faster. ") +
            (o.images ? "Inputs are 8-bit images (the models' preprocess layer normalises them). "
                      : "Inputs are float32 tensors (no 8-bit images: --images not given). ") +
            "Device-link bytes: the cost model's per request (with codecs, from the ratios measured on a sample "
            "input); measured: what the requests really sent between nodes (median per request, as encoded).\n\n";
      md += "| model | scenario | strategy | latency raw | with codecs | speedup | device-link bytes raw -> codecs "
            "| measured bytes raw -> codecs | codecs chosen | exact |\n";
      md += "|---|---|---|---|---|---|---|---|---|---|\n";
    }
    const double speedup = raw->median_ms / with.median_ms;
    if (raw->measured() && with.measured()) {
      best_speedup = std::max(best_speedup, speedup);
      // A pair without codecs runs the same plan twice: its difference is this machine's noise.
      if (!with.encoded) max_noise = std::max(max_noise, std::abs(speedup - 1.0));
      else if (with.median_ms > raw->median_ms * (1 + o.noise_floor)) ++worse;
      if (with.encoded) ++encoded;
    }
    if (with.device_link_bytes > 0)
      best_first_hop = std::max(best_first_hop, double(raw->device_link_bytes) / double(with.device_link_bytes));
    const std::string codecs = with.plan.find("; codecs ") == std::string::npos
                                   ? "none"
                                   : with.plan.substr(with.plan.find("; codecs ") + 9);
    md += format("| %s | %s | %s | %s | %s | %.2fx | %s -> %s | %s -> %s | %s | %s |\n", with.model.c_str(),
                 with.scenario.c_str(), raw->strategy.c_str(), md_cell_latency(raw).c_str(), md_cell_latency(&with).c_str(),
                 speedup, human_bytes(double(raw->device_link_bytes)).c_str(),
                 human_bytes(double(with.device_link_bytes)).c_str(),
                 raw->measured() ? human_bytes(percentile(raw->measured_bytes, 0.5)).c_str() : "-",
                 with.measured() ? human_bytes(percentile(with.measured_bytes, 0.5)).c_str() : "-", codecs.c_str(),
                 with.clean() && raw->clean() ? "yes" : "NO");
  }
  if (rows)
    md += format("\n%d pairs, %d with codecs chosen: up to %.2fx faster, device-link bytes up to %.2fx fewer; %d of "
                 "them slower than without beyond the %.0f%% noise floor. %s\n\n",
                 rows, encoded, best_speedup, best_first_hop, worse, o.noise_floor * 100,
                 rows == encoded ? "Every pair chose a codec."
                                 : format("The %d pair%s without a codec run%s the same plan twice: they differ by up to "
                                          "%.1f%%, this run's noise.", rows - encoded, rows - encoded == 1 ? "" : "s",
                                          rows - encoded == 1 ? "s" : "", max_noise * 100).c_str());
  return md;
}

}  // namespace

std::string markdown_report(const grid_options& o, const grid_results& r, const check_outcome* check,
                            const std::string& started_utc, double wall_seconds, const std::string& charts) {
  std::string md;
  md += "# d3-bench grid: latency and backbone traffic per model, scenario and strategy\n\n";
  md += "Command: `" + o.command_line + "`\n\n";
  md += format("Started %s (UTC), %.0f s of wall time on %ld cores. Each cell: %d warm-up + %d timed requests, one in "
               "flight, inputs seeded %llu + i, every answer compared memcmp-equal with a single-process d3::executor "
               "run of the same input. Latency = median virtual end-to-end time of the timed requests. Predicted = the "
               "planner's cost model for the plan the strategy chose, with per-layer times %s "
               "(%d runs, single thread).\n\n",
               started_utc.c_str(), wall_seconds, ::sysconf(_SC_NPROCESSORS_ONLN), o.warmup, o.requests,
               (unsigned long long)o.seed,
               o.profile_source == "nodes"    ? "probed on each node under its clock (thread CPU time / speed)"
               : o.profile_source == "pooled" ? "probed on each node under its clock (thread CPU time / speed), each "
                                                "layer's median over the nodes of one role and speed"
                                              : "measured in this process over each node's speed",
               o.profile_repeats);
  md += testbed_text(o) + "\n";

  report_context sections(o, r);
  md += sections.latency_section();
  md += sections.speedup_section();
  md += sections.backbone_section();
  md += sections.predicted_section();
  md += sections.goal_section();
  md += compression_section(o, r);
  if (check) {
    md += "## --check\n\n```\n";
    for (const std::string& line : check->lines) md += line + "\n";
    md += "```\n\n";
  }

  md += "## Errors\n\n";
  int errors = 0;
  for (const grid_cell& c : r.cells)
    if (!c.error.empty()) {
      md += "- " + c.model + " " + c.scenario + " " + c.strategy + ": " + c.error + "\n";
      ++errors;
    }
  if (!errors) md += "None: every cell planned, deployed and answered memcmp-equal.\n";
  md += "\n## Plans chosen\n\n";
  for (const grid_cell& c : r.cells)
    if (!c.plan.empty()) md += "- " + c.model + " " + c.scenario + " " + c.strategy + ": " + c.plan + "\n";
  md += "\n" + charts;
  return md;
}

// --- Charts (gnuplot) ----------------------------------------------------------------------------

}  // namespace d3
