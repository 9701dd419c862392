// d3-bench regimes: where three tiers pay. On the cost model with every node's probed profile, hpa's
// predicted speedup over the best two-tier baseline across device<->edge x edge<->cloud bandwidth,
// and across the device's speed x edge<->cloud bandwidth; heatmaps with the 3.4x contour; and a
// set of points measured on real d3-node processes (virtual clock) to show the map's error.
#include "apps/bench_regimes.hpp"
#include "apps/regimes_report.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "actors/deployment.hpp"
#include "profiling/message_costs.hpp"
#include "actors/planner_actor.hpp"
#include "actors/protocol.hpp"
#include "emulation/testbed_file.hpp"
#include "apps/app_support.hpp"
#include "apps/local_nodes.hpp"
#include "apps/options.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "planner/cost_model.hpp"
#include "planner/strategies.hpp"

namespace d3 {

namespace {

constexpr int exit_failed = 1;
constexpr int exit_bad_input = 2;

const char* regimes_usage = R"(usage: d3-bench regimes [options]

Where three tiers pay: hpa's speedup over the best two-tier baseline (the best of neurosurgeon,
dads, neurosurgeon-edge, dads-edge in each cell), predicted by the planner's cost model. Per model
the bench starts d3-node processes (device, edge1..edgeK, cloud with the testbed's speeds, on free
loopback ports), probes every node's per-layer profile and message costs (as d3-bench grid does),
then prices, with those profiles, every cell of two maps:
  bandwidth: device<->edge bandwidth (--lan) x edge<->cloud bandwidth (--cloud); device<->cloud
             is the two in series; latencies, speeds and edge<->edge stay the testbed's base;
  device:    the device's speed (--device-speeds; its probed profile scaled by the testbed's
             device speed over it) x edge<->cloud bandwidth, device<->edge as in the base.
Each map is written as data and drawn with gnuplot (heatmap, log axes, the 3.4x contour). Then
--measure points of the bandwidth map (a spread over it and its best cell) are deployed for real:
hpa's plan and the best two-tier plan of the cell run side by side (alternating, --requests
rounds after --warmup), every answer memcmp-equal to a single-process run, and the measured
speedup is set against the predicted one.

All times are EMULATED (virtual clock): a node's compute is its kernels' thread CPU time on this
machine divided by its speed; links are latency + bytes / bandwidth.

  --models LIST         built-in models or model files (default: the five built-ins)
  --testbed FILE        base testbed (default: D3's setting, apps/config/testbed-d3.json; its base
                        links, not a scenario)
  --lan LIST            device<->edge Mbit/s (default 13 points, 1..1000, log-spaced)
  --cloud LIST          edge<->cloud Mbit/s (default 17 points, 0.1..1000, log-spaced)
  --device-speeds LIST  device speeds (default 9 points, 0.01..1, log-spaced)
  --measure N           points measured on real nodes per model (default 10; 0: none)
  --requests R          timed rounds per measured point (default 5)
  --warmup W            untimed rounds first (default 1)
  --profile-repeats R   rounds of the nodes' profile probe, one timed run per node each
                        (default 5, at most 100)
  --timeout-ms T        timeout of every connect, deployment step and answer (default 60000)
  --seed S              request i's input is seeded S + i (default 1)
  --model-seed S        seed of the built-in models' weights (default 2021)
  --out DIR             output folder (default regimes-results): regimes.csv, measured.csv,
                        regimes.md, <model>-bandwidth.png, <model>-device.png (with .dat files and
                        regimes.gp), node-logs/
  --node-binary FILE    the d3-node executable (default: d3-node next to d3-bench)
  --tls DIR|false       the cluster's certificates (scripts/make-certs.sh; default: build/certs);
                        false: plaintext between the processes, with a warning
  --help                this text

Exit codes: 0 done; 1 a measured answer differed or failed, a node could not start, outputs could
not be written; 2 bad options.
)";


// `per_decade` points per decade from `low` to `high` (both included).
std::vector<double> log_spaced(double low, double high, int per_decade) {
  std::vector<double> out;
  const int steps = int(std::lround(std::log10(high / low) * per_decade));
  for (int k = 0; k <= steps; ++k) out.push_back(low * std::pow(10.0, double(k) / per_decade));
  return out;
}

// Ascending, each value once.
std::vector<double> sorted_unique(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// The options, or what is wrong with them; `help` set when --help printed the usage.
result<regimes_options> parse_regimes_options(int argc, char** argv, bool& help) {
  return parse_options<regimes_options>([&] {
    regimes_options o;
    o.command_line = command_line(argc, argv);
    std::string models;
    option_reader in(argc, argv, 2, "see d3-bench regimes --help");
    while (in.next()) {
      if (in.is("--help", "-h")) {
        std::cout << regimes_usage;
        help = true;
        return o;
      } else if (in.is("--models")) {
        models = in.value();
      } else if (in.is("--testbed")) {
        auto bed = load_testbed_file(in.value());
        if (!bed) in.fail(bed.message());
        o.bed = std::move(bed.value());
      } else if (in.is("--lan")) {
        o.lan = sorted_unique(in.positive_numbers());
      } else if (in.is("--cloud")) {
        o.cloud = sorted_unique(in.positive_numbers());
      } else if (in.is("--device-speeds")) {
        o.device_speeds = sorted_unique(in.positive_numbers());
      } else if (in.is("--measure")) {
        o.measure = int(in.integer(0, 1000));
      } else if (in.is("--requests")) {
        o.requests = int(in.integer(1, 10000));
      } else if (in.is("--warmup")) {
        o.warmup = int(in.integer(0, 1000));
      } else if (in.is("--profile-repeats")) {
        o.profile_repeats = int(in.integer(1, 100));
      } else if (in.is("--timeout-ms")) {
        o.timeout_ms = in.integer(1, 3600000);
      } else if (in.is("--seed")) {
        o.seed = uint64_t(in.integer(0, 0x7fffffffffffffffL));
      } else if (in.is("--model-seed")) {
        o.model_seed = uint64_t(in.integer(0, 0x7fffffffffffffffL));
      } else if (in.is("--out")) {
        o.out = in.value();
        if (o.out.empty()) in.fail("--out needs a folder");
      } else if (in.is("--node-binary")) {
        o.node_binary = in.value();
      } else if (in.is("--tls")) {
        o.tls_option = in.value();
      } else {
        in.unknown();
      }
    }
    if (o.lan.empty()) o.lan = log_spaced(1, 1000, 4);
    if (o.cloud.empty()) o.cloud = log_spaced(0.1, 1000, 4);
    if (o.device_speeds.empty()) o.device_speeds = log_spaced(0.01, 1, 4);
    o.models = models.empty() ? builtin_model_names() : split_list(models);
    if (auto known = check_model_names(o.models); !known) in.fail(known.message());
    if (auto resolved = resolve_local_cluster(o.node_binary, o.tls_option, o.tls); !resolved) in.fail(resolved.message());
    return o;
  });
}

// --- Prices ---------------------------------------------------------------------------------------

// One cell of a map, on the cost model.

// The cluster with every node's probed profile, the testbed's links `t`, and the device's speed
// scaled to `device_speed` (its profile and message costs times base speed / device_speed).
cluster_model cluster_at(const cluster_model& probed, const testbed& t, double base_device_speed, double device_speed) {
  cluster_model c = probed;
  c.links = t;
  cluster_node& device = c.nodes.at("device");
  const double factor = base_device_speed / device_speed;
  if (device.measured) {
    layer_profile scaled = *device.measured;
    for (double& ms : scaled.milliseconds) ms *= factor;
    scaled.messages = at_speed(scaled.messages, 1.0 / factor);
    device.measured = std::make_shared<const layer_profile>(std::move(scaled));
  } else {
    device.speed = device_speed;
  }
  return c;
}

result<priced_cell> price(const graph& g, const layer_profile& profile, const cluster_model& c) {
  priced_cell cell;
  auto hpa = plan_with_strategy("hpa", g, profile, c);
  if (!hpa) return status::error("hpa: " + hpa.message());
  cell.hpa = std::move(hpa.value());
  cell.hpa_ms = cell.hpa.prediction.latency_ms;
  for (const std::string& name : two_tier_names()) {
    auto b = plan_with_strategy(name, g, profile, c);
    if (b && (cell.two_tier.empty() || b->prediction.latency_ms < cell.two_tier_ms)) {
      cell.two_tier_ms = b->prediction.latency_ms;
      cell.two_tier = name;
      cell.best = std::move(b.value());
    }
  }
  if (cell.two_tier.empty()) return status::error("no two-tier baseline found a plan");
  return cell;
}

// --- Measured points -------------------------------------------------------------------------------


// Deploys the cell's two plans in turn (round r: hpa's request r, then the two-tier's, the order
// alternating) over `nodes` with the cell's links, each answer compared with `expected`.
void measure_point(measured_point& p, const regimes_options& o, caf::actor_system& system, local_nodes& nodes,
                   const graph& g, const std::vector<std::map<std::string, tensor>>& inputs,
                   const std::vector<std::map<std::string, tensor>>& expected, const testbed& t) {
  deployment_options dopts = virtual_clock_options(t, o.timeout_ms);
  deployment dep(system, dopts);
  if (auto s = dep.connect(nodes.endpoints()); !s) {
    p.error = "connect: " + s.message();
    return;
  }
  const deployment_plan* plans[2] = {&p.cell.hpa.plan, &p.cell.best.plan};
  std::vector<double>* latencies[2] = {&p.hpa_ms, &p.two_tier_ms};
  for (int round = 0; round < o.warmup + o.requests; ++round)
    for (int turn = 0; turn < 2; ++turn) {
      const int k = (turn + round) % 2;
      if (auto report = dep.deploy(g, *plans[k]); !report) {
        p.error = "deploy: " + report.message();
        return;
      }
      const request_outcome r = dep.run({inputs[size_t(round)]}, 1).at(0);
      dep.teardown();
      if (!r.ok) {
        ++p.failed;
        p.error = "request: " + r.error;
        return;
      }
      bool same = r.outputs.size() == expected[size_t(round)].size();
      for (const auto& [name, want] : expected[size_t(round)]) {
        auto got = r.outputs.find(name);
        same = same && got != r.outputs.end() && bitwise_equal(got->second, want);
      }
      if (!same) {
        ++p.failed;
        p.error = "an answer differs from the single-process run";
        return;
      }
      ++p.verified;
      if (round >= o.warmup) latencies[k]->push_back(r.virtual_latency_ms);
    }
}

// `count` cells of the bandwidth map (fewer only when the map is smaller): its best cell, then
// lattices spread over the map, corners included, each finer than the last, in a fixed order.
std::vector<size_t> points_to_measure(const std::vector<priced_cell>& map, size_t nx, size_t ny, int count) {
  std::vector<size_t> chosen;
  if (map.empty() || count <= 0) return chosen;
  size_t best = 0;
  for (size_t k = 0; k < map.size(); ++k)
    if (map[k].speedup() > map[best].speedup()) best = k;
  chosen.push_back(best);
  for (int side = std::max(2, int(std::ceil(std::sqrt(double(count - 1))))); int(chosen.size()) < count; ++side) {
    for (int a = 0; a < side && int(chosen.size()) < count; ++a)
      for (int b = 0; b < side && int(chosen.size()) < count; ++b) {
        const size_t ix = size_t(std::lround(double(a) * double(nx - 1) / double(side - 1)));
        const size_t iy = size_t(std::lround(double(b) * double(ny - 1) / double(side - 1)));
        const size_t k = ix * ny + iy;
        if (std::find(chosen.begin(), chosen.end(), k) == chosen.end()) chosen.push_back(k);
      }
    if (size_t(side) > std::max(nx, ny)) break;  // every cell is in the lattice
  }
  return chosen;
}

// --- Outputs ---------------------------------------------------------------------------------------

// gnuplot's pm3d wants one block per x value, blank lines between blocks.
// The two maps of one model on the cost model: device<->edge x edge<->cloud bandwidth, and the
// device's speed x edge<->cloud bandwidth. An error stops the model's maps (m.error).
void price_maps(model_maps& m, const graph& g, const cluster_model& probed, const regimes_options& o) {
  // Every node prices with its own probed profile; this one is only the fallback the API takes.
  const layer_profile fallback_profile = profile_from_flops(g, 100.0);
  auto priced = [&](const testbed& t, double device_speed, double x, double y) -> result<priced_cell> {
    auto cell = price(g, fallback_profile, cluster_at(probed, t, o.bed.base.device_speed, device_speed));
    if (cell) cell->x = x, cell->y = y;
    return cell;
  };
  for (double lan : o.lan)
    for (double cloud : o.cloud) {
      testbed t = o.bed.base;
      t.device_edge.bandwidth_mbit_per_s = lan;
      t.edge_cloud.bandwidth_mbit_per_s = cloud;
      t.device_cloud.reset();
      auto cell = priced(t, o.bed.base.device_speed, lan, cloud);
      if (!cell) {
        m.error = cell.message();
        break;
      }
      m.bandwidth.push_back(std::move(cell.value()));
    }
  for (double speed : o.device_speeds)
    for (double cloud : o.cloud) {
      if (!m.error.empty()) break;
      testbed t = o.bed.base;
      t.edge_cloud.bandwidth_mbit_per_s = cloud;
      t.device_cloud.reset();
      auto cell = priced(t, speed, speed, cloud);
      if (!cell) {
        m.error = cell.message();
        break;
      }
      m.device.push_back(std::move(cell.value()));
    }
}

// The measured points of one model's bandwidth map: hpa's plan and the best two-tier plan of each
// chosen cell side by side on `nodes`, answers against single-process runs. False when a point
// failed (recorded in it); an error when nothing could run.
result<bool> measure_points(const model_maps& m, const graph& g, const regimes_options& o, caf::actor_system& system,
                            local_nodes& nodes, std::vector<measured_point>& points) {
  bool clean = true;
  const size_t count = size_t(o.warmup + o.requests);
  std::vector<std::map<std::string, tensor>> inputs(count), expected;
  for (size_t i = 0; i < count; ++i)
    for (int in : g.input_layers())
      inputs[i][g.layers[size_t(in)].name] = sample_input(g, in, o.seed + i);
  {
    auto local = executor::create(g);
    if (!local) return local.error();
    for (const auto& in : inputs) expected.push_back((*local)->run(in).value());
  }
  for (size_t k : points_to_measure(m.bandwidth, o.lan.size(), o.cloud.size(), o.measure)) {
    measured_point p;
    p.model = m.model;
    p.cell = m.bandwidth[k];
    testbed t = o.bed.base;
    t.device_edge.bandwidth_mbit_per_s = p.cell.x;
    t.edge_cloud.bandwidth_mbit_per_s = p.cell.y;
    t.device_cloud.reset();
    measure_point(p, o, system, nodes, g, inputs, expected, t);
    if (!p.error.empty()) clean = false;
    std::printf("  measured device<->edge %g, edge<->cloud %g Mbit/s: predicted %.2fx, measured %.2fx%s\n", p.cell.x,
                p.cell.y, p.cell.speedup(), p.measured_speedup(), p.error.empty() ? "" : (" ERROR " + p.error).c_str());
    std::fflush(stdout);
    points.push_back(std::move(p));
    if (!nodes.exited().empty()) break;
  }
  return clean;
}

void write_measured_csv(const std::string& path, const std::vector<measured_point>& points) {
  std::ofstream out(path);
  out << "model,lan_mbit_per_s,cloud_mbit_per_s,best_two_tier,predicted_hpa_ms,predicted_two_tier_ms,measured_hpa_ms,"
         "measured_two_tier_ms,predicted_speedup,measured_speedup,verified,failed,error\n";
  for (const measured_point& p : points)
    out << p.model << ',' << p.cell.x << ',' << p.cell.y << ',' << p.cell.two_tier << ',' << p.cell.hpa_ms << ','
        << p.cell.two_tier_ms << ',' << p.median(p.hpa_ms) << ',' << p.median(p.two_tier_ms) << ','
        << p.cell.speedup() << ',' << p.measured_speedup() << ',' << p.verified << ',' << p.failed << ",\""
        << p.error << "\"\n";
}

}  // namespace

int bench_regimes(int argc, char** argv) {
  bool help = false;
  auto parsed = parse_regimes_options(argc, argv, help);
  if (auto code = stop_after_parse(parsed, help, "d3-bench regimes")) return *code;
  const regimes_options& o = parsed.value();
  if (auto made = make_folder(o.out); !made) {
    std::cerr << "d3-bench regimes: --out: " << made.message() << "\n";
    return exit_bad_input;
  }
  const std::string logs = o.out + "/node-logs";
  ::mkdir(logs.c_str(), 0755);
  std::printf("d3-bench regimes: %zu models; bandwidth map %zu x %zu, device map %zu x %zu; %d measured points per "
              "model; testbed %s (EMULATED)\n",
              o.models.size(), o.lan.size(), o.cloud.size(), o.device_speeds.size(), o.cloud.size(), o.measure,
              o.bed.name.c_str());
  std::fflush(stdout);
  caf::actor_system_config cfg;
  configure_local_app(cfg, o.tls, "d3-bench regimes");
  caf::actor_system system{cfg};
  std::vector<local_node_spec> specs = {{"device", "device", o.bed.base.device_speed}};
  for (int e = 1; e <= o.bed.edge_nodes; ++e) specs.push_back({"edge" + std::to_string(e), "edge", o.bed.base.edge_speed});
  specs.push_back({"cloud", "cloud", o.bed.base.cloud_speed});

  std::vector<model_maps> maps;
  std::vector<measured_point> points;
  int code = 0;
  std::ofstream csv(o.out + "/regimes.csv");
  csv << "model,map,x,y,hpa_ms,best_two_tier_ms,best_two_tier,speedup\n";
  for (const std::string& name : o.models) {
    model_maps m;
    m.model = name;
    auto g = load_model_by_name(name, o.model_seed);
    if (!g) {
      m.error = g.message();
      maps.push_back(m);
      code = exit_failed;
      continue;
    }
    auto nodes = local_nodes::start(o.node_binary, logs, specs, std::chrono::seconds(30), o.tls);
    if (!nodes) {
      std::cerr << "d3-bench regimes: " << nodes.message() << "\n";
      return exit_failed;
    }
    // Every node's profile, probed under the base testbed's clock.
    cluster_model probed = cluster_model::evaluation(o.bed.base, o.bed.edge_nodes);
    {
      deployment_options dopts = virtual_clock_options(o.bed.base, o.timeout_ms);
      deployment dep(system, dopts);
      status s = dep.connect((*nodes)->endpoints());
      if (s) s = probe_node_profiles(dep, *g, probed, o.profile_repeats);
      if (!s) {
        m.error = s.message();
        maps.push_back(m);
        code = exit_failed;
        continue;
      }
    }
    price_maps(m, *g, probed, o);
    for (const auto& [map_name, map] : {std::pair<const char*, const std::vector<priced_cell>*>{"bandwidth", &m.bandwidth},
                                        {"device", &m.device}})
      for (const priced_cell& c : *map)
        csv << name << ',' << map_name << ',' << c.x << ',' << c.y << ',' << c.hpa_ms << ',' << c.two_tier_ms << ','
            << c.two_tier << ',' << c.speedup() << '\n';
    const priced_cell* best = nullptr;
    const double peak = max_speedup(m.bandwidth, &best);
    std::printf("%-13s bandwidth map: max %.2fx", name.c_str(), peak);
    if (best) std::printf(" at device<->edge %g, edge<->cloud %g Mbit/s (vs %s)", best->x, best->y, best->two_tier.c_str());
    std::printf("; device map: max %.2fx%s\n", max_speedup(m.device), m.error.empty() ? "" : (" ERROR " + m.error).c_str());
    std::fflush(stdout);

    // Measured points: the cells side by side on the nodes.
    if (m.error.empty() && o.measure > 0) {
      auto measured = measure_points(m, *g, o, system, **nodes, points);
      if (!measured) {
        std::cerr << "d3-bench regimes: " << measured.message() << "\n";
        return exit_failed;
      }
      if (!*measured) code = exit_failed;
    }
    maps.push_back(std::move(m));
  }
  write_measured_csv(o.out + "/measured.csv", points);
  const std::string charts = regimes_charts(o, maps);
  std::ofstream(o.out + "/regimes.md") << regimes_markdown(o, maps, points, charts);
  if (!csv) code = exit_failed;
  std::printf("wrote %s/regimes.csv, measured.csv, regimes.md; %s\n", o.out.c_str(), charts.c_str());
  return code;
}

}  // namespace d3
