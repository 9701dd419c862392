// d3-bench realnet: see bench_realnet.hpp.
#include "apps/bench_realnet.hpp"

#include <dirent.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "actors/deployment.hpp"
#include "actors/planner_actor.hpp"
#include "actors/protocol.hpp"
#include "actors/transport.hpp"
#include "apps/bench_support.hpp"
#include "apps/grid_run.hpp"
#include "apps/local_nodes.hpp"
#include "emulation/cluster_file.hpp"
#include "emulation/testbed_file.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "planner/cost_model.hpp"
#include "planner/strategies.hpp"
#include "profiling/message_costs.hpp"
#include "security/tls_identity.hpp"

namespace d3 {

namespace {

const char* const realnet_usage = R"(usage: d3-bench realnet --cluster FILE --speed-scale X [options]

The emulation and the cost model checked against a real cluster: run it in the device's network
namespace of a cluster made by scripts/netns-cluster.sh (scripts/realnet.sh does all of it, per
scenario). For each model, the plans of hpa and of the baselines (picked on the cost model, plans
picked by several strategies run once) are deployed on the cluster's nodes, one request at a
time, in rounds that rotate the plans and alternate two clocks:
  measured  wall clock: bandwidth shaped by the kernel (tc htb), speeds by cgroup cpu quotas;
            d3 adds only each link's one-way latency (EMULATED: the kernel has no netem)
  virtual   d3's emulation of the same testbed (node speeds from each d3-node's config)
and next to them the cost model's prediction with the same scaled speeds. The kernel's rates count
Ethernet frames: both models carry d3's bytes at 1448/1514 of them (full TCP segments). Every
answer is compared memcmp with a single-process run.

  --cluster FILE       the cluster file (netns-cluster.sh writes OUT/cluster.json)
  --testbed FILE       the testbed the cluster was shaped from (default apps/config/testbed-d3.json)
  --scenario NAME      its scenario the cluster was shaped for (default: the file's first)
  --speed-scale X      the scale netns-cluster.sh gave the speeds (it prints it); required
  --models LIST        built-in models (default resnet18)
  --strategies LIST    default: hpa and every baseline; S+codecs plans S with the planner's lossless
                       tensor codecs (e.g. hpa,hpa+codecs measures both side by side)
  --images             the models take 8-bit images (a preprocess layer first; u8 on the wire)
  --requests N         timed requests per plan and clock (default 8)
  --warmup N           untimed rounds first (default 1)
  --settle N           untimed requests on every fresh deployment before its timed one (default
                       0); their first's wall-clock latency is reported apart ("first"). The
                       bench deploys each plan anew for every request (plans and clocks
                       alternate): this tells a first request's cost from the steady state's
  --profile-repeats N  the planning profile's rounds, one timed run per node each (default 5,
                       at most 100)
  --timeout-ms T       every deployment step and answer (default 120000)
  --quotas FILE        the cpu quotas netns-cluster.sh set (its /run/d3-netns/quotas: lines
                       `CGROUP QUOTA_US`): lifted while a virtual-clock request runs, set again
                       for a measured one. The virtual clock emulates each speed itself from the
                       nodes' CPU time, and a throttled node's CPU time per inference grows 1.5-2x
                       (its caches go cold in every throttled spell). Needs the host's cgroup
                       tree: run the bench with nsenter --net, not ip netns exec (realnet.sh does)
  --silence-ms T       a node (or a link between two) silent this long is down (default 5000: the
                       nodes run under cpu quotas of a fraction of a core, and a throttled node
                       busy with a stage answered no heartbeat for 1.3 s on a slow machine)
  --out DIR            writes realnet-MODEL-SCENARIO.json there and rewrites realnet.md from
                       every such file in DIR (default realnet-results)
  --help               this text
)";

struct realnet_options {
  std::string cluster, testbed_path = "apps/config/testbed-d3.json", scenario, out = "realnet-results", command, quotas;
  std::vector<std::string> models = {"resnet18"}, strategies = default_strategies();
  double speed_scale = 0;
  int requests = 8, warmup = 1, settle = 0, profile_repeats = 5;
  long timeout_ms = 120000, silence_ms = 5000;
  bool images = false;
};

// The namespace cluster's cpu quotas, switched off for the virtual clock's requests and on for the
// measured ones (--quotas). Errors name the file that could not be read or written.
class cpu_quotas {
 public:
  static result<cpu_quotas> load(const std::string& path) {
    cpu_quotas q;
    if (path.empty()) return q;
    std::ifstream in(path);
    if (!in) return status::error("--quotas: cannot read " + path);
    std::string cgroup;
    long quota = 0;
    while (in >> cgroup >> quota) {
      if (quota < 1000) return status::error("--quotas: " + path + ": quota " + std::to_string(quota) + " us of " + cgroup +
                                     " is below the kernel's 1000 us");
      q.entries_.emplace_back(cgroup + "/cpu.cfs_quota_us", quota);
    }
    if (!in.eof()) return status::error("--quotas: " + path + ": expected lines `CGROUP QUOTA_US`");
    if (q.entries_.empty()) return status::error("--quotas: " + path + " lists no cgroup");
    return q;
  }
  // Quotas set (on) or lifted (off); does nothing without a file or when already so.
  status set(bool on) {
    if (entries_.empty() || state_ == on) return {};
    for (const auto& [file, quota] : entries_) {
      std::ofstream out(file, std::ios::trunc);
      if (!(out << (on ? quota : -1L) << "\n") || !out.flush())
        return status::error("--quotas: cannot write " + file + " (run as root, in the host's mount namespace)");
    }
    state_ = on;
    return {};
  }

 private:
  std::vector<std::pair<std::string, long>> entries_;  // cpu.cfs_quota_us file, its quota
  std::optional<bool> state_;                           // on, off; unset: not written yet
};

realnet_options parse_options(int argc, char** argv, bool& help) {
  realnet_options o;
  o.command = command_line(argc, argv);
  read_bench_options(argc, argv, "see d3-bench realnet --help", [&](option_reader& in) {
    if (in.is("--help", "-h")) help = true;
    else if (in.is("--cluster")) o.cluster = in.value();
    else if (in.is("--testbed")) o.testbed_path = in.value();
    else if (in.is("--scenario")) o.scenario = in.value();
    else if (in.is("--speed-scale")) o.speed_scale = in.number(1e-6, 1000);
    else if (in.is("--models")) {
      o.models = split_list(in.value());
      if (auto known = check_model_names(o.models); !known) in.fail(known.message());
    } else if (in.is("--strategies")) o.strategies = split_list(in.value());
    else if (in.is("--requests")) o.requests = int(in.integer(1, 100000));
    else if (in.is("--warmup")) o.warmup = int(in.integer(0, 1000));
    else if (in.is("--settle")) o.settle = int(in.integer(0, 100));
    else if (in.is("--profile-repeats")) o.profile_repeats = int(in.integer(1, 100));
    else if (in.is("--timeout-ms")) o.timeout_ms = in.integer(1, 3600000);
    else if (in.is("--silence-ms")) o.silence_ms = in.integer(250, 3600000);
    else if (in.is("--out")) o.out = in.value();
    else if (in.is("--quotas")) o.quotas = in.value();
    else if (in.is("--images")) o.images = true;
    else in.unknown();
  });
  if (help) return o;
  if (o.cluster.empty()) bench_fail(bench_exit_bad_input, "--cluster FILE is required (see d3-bench realnet --help)");
  if (o.speed_scale <= 0) bench_fail(bench_exit_bad_input, "--speed-scale X is required: the scale netns-cluster.sh printed");
  for (const std::string& s : o.strategies)
    if (std::find(strategy_names().begin(), strategy_names().end(), without_codecs_suffix(s)) == strategy_names().end())
      bench_fail(bench_exit_bad_input, "--strategies: unknown strategy '" + s + "' (" + join(strategy_names(), ", ") + ")");
  return o;
}

// One stage of a plan: when it finished, since the request started, per clock and predicted.
struct realnet_stage {
  std::string what;  // "tile@edge2"
  double predicted_finish_ms = NAN, probed_finish_ms = NAN;
  std::vector<double> measured_finish_ms, virtual_finish_ms;
  std::vector<double> measured_ready_ms, virtual_ready_ms;  // when its last input had arrived
};

// One distinct plan and the strategies that picked it.
struct realnet_plan {
  std::vector<realnet_stage> stages;  // stage id order
  std::vector<std::string> strategies;
  deployment_plan plan;
  std::string text;  // describe(plan)
  // The cost model, testbed speeds x scale, on the profile measured alongside the requests (one
  // run per timed round, per-layer medians: the machine's speed while the requests ran).
  double predicted_ms = NAN;
  double predicted_at_start_ms = NAN;  // the same on the planning profile, measured before them
  double probed_predicted_ms = NAN;  // the cost model on the nodes' own profiles (wall clock)
  std::vector<double> measured_ms, virtual_ms;
  std::vector<double> first_measured_ms;  // wall clock: the first (settling) request of a deployment
  double predicted_bytes = NAN;        // per request between nodes, the cost model (encoded)
  std::vector<double> measured_bytes;  // per timed wall-clock request: what was sent between nodes
  int verified = 0, differ = 0, failed = 0;
  std::string error;
};

// `t` with `change` applied to each of its four link classes (device<->cloud made explicit).
template <class F>
testbed with_each_link(const testbed& t, F change) {
  testbed out = t;
  out.device_cloud = t.link(node_role::device, node_role::cloud);
  for (link_profile* l : {&out.device_edge, &out.edge_edge, &out.edge_cloud, &*out.device_cloud}) change(*l);
  return out;
}

// The testbed's links with bandwidth left to the kernel: the one-way latency only.
testbed latency_only(const testbed& t) {
  return with_each_link(t, [](link_profile& l) { l.bandwidth_mbit_per_s = 0; });
}

// The kernel shapes frames: htb counts each packet from its Ethernet header on, and a full TCP
// segment carries 1448 bytes of payload in 1514 (MTU 1500, IPv4, TCP with timestamps, as Linux
// sends them). d3's messages therefore cross a link shaped to R at this share of R, and the
// virtual clock and the cost model are given those payload rates. (Measured: resnet18's input
// reached the cloud over a 5.85 Mbit/s link 37 ms after the virtual clock's time for it, whose
// raw 828.9 ms grow by 37.8 ms at this share; 11 ms at 18.88 Mbit/s, against 11.7.)
constexpr double tcp_payload_share = 1448.0 / 1514.0;

testbed payload_rates(const testbed& t) {
  return with_each_link(t, [](link_profile& l) { l.bandwidth_mbit_per_s *= tcp_payload_share; });
}

double relative_error(double estimate, double measured) { return estimate / measured - 1.0; }

// Each plan priced by the cost model on `profile` and `cluster`, into its `latency` field and
// its stages' `finish` fields (a plan the model cannot price keeps what it had).
void reprice(const graph& g, std::vector<realnet_plan>& plans, const layer_profile& profile, const cluster_model& cluster,
             double realnet_plan::*latency, double realnet_stage::*finish) {
  for (realnet_plan& p : plans) {
    auto stages = build_stage_graph(g, p.plan);
    auto predicted = stages ? predict_plan(g, *stages, profile, cluster) : result<plan_prediction>(stages.error());
    if (!predicted) continue;
    p.*latency = predicted->latency_ms;
    for (size_t k = 0; k < p.stages.size() && k < predicted->stage_finish_ms.size(); ++k)
      p.stages[k].*finish = predicted->stage_finish_ms[k];
  }
}

// Runs request `i` of `p` on `dep` (deployed) and records it (untimed: only a settling request's
// wall-clock latency, if `settling`); false when the plan must stop.
bool run_one(realnet_plan& p, deployment& dep, const std::map<std::string, tensor>& input,
             const std::map<std::string, tensor>& expected, int version, bool virtual_clock, bool timed,
             bool settling = false) {
  const size_t faults_before = dep.faults().size();
  std::vector<request_outcome> outcomes = dep.run({input}, 1);
  const request_outcome& r = outcomes.at(0);
  // A node taken for down moves the request to another plan: its time is not this plan's.
  if (dep.faults().size() > faults_before || r.plan_version != version) {
    ++p.failed;
    if (p.error.empty())
      p.error = std::string(virtual_clock ? "virtual: " : "measured: ") +
                (dep.faults().size() > faults_before ? "node " + dep.faults()[faults_before].node + " taken for down (" +
                                                           dep.faults()[faults_before].cause + ")"
                                                     : std::string("answered by another plan version"));
    return false;
  }
  if (!r.ok) {
    ++p.failed;
    if (p.error.empty()) p.error = std::string(virtual_clock ? "virtual: " : "measured: ") + r.error;
    return false;
  }
  bool same = r.outputs.size() == expected.size();
  for (const auto& [name, want] : expected) {
    auto got = r.outputs.find(name);
    same = same && got != r.outputs.end() && bitwise_equal(got->second, want);
  }
  if (!same) {
    ++p.differ;
    if (p.error.empty()) p.error = "an answer differs from the single-process run";
  } else {
    ++p.verified;
  }
  if (!timed) {
    if (settling && !virtual_clock) p.first_measured_ms.push_back(r.latency_ms);
    return true;
  }
  (virtual_clock ? p.virtual_ms : p.measured_ms).push_back(virtual_clock ? r.virtual_latency_ms : r.latency_ms);
  if (!virtual_clock) {
    double sent = double(r.app_bytes_sent);
    for (const stage_report& s : r.stage_reports) sent += double(s.bytes_sent);
    p.measured_bytes.push_back(sent);
  }
  const double start = virtual_clock ? r.virtual_start_ms : r.wall_start_ms;
  for (const stage_report& s : r.stage_reports)
    if (s.stage_id >= 0 && size_t(s.stage_id) < p.stages.size()) {
      realnet_stage& st = p.stages[size_t(s.stage_id)];
      (virtual_clock ? st.virtual_finish_ms : st.measured_finish_ms).push_back(s.finish_ms - start);
      (virtual_clock ? st.virtual_ready_ms : st.measured_ready_ms).push_back(s.ready_ms - start);
    }
  return true;
}

nlohmann::ordered_json plan_json(const realnet_plan& p) {
  const double measured = median(p.measured_ms), emulated = median(p.virtual_ms);
  nlohmann::ordered_json j = {{"strategies", p.strategies},
                              {"plan", p.text},
                              {"predicted_ms", p.predicted_ms},
                              {"predicted_at_start_ms", p.predicted_at_start_ms},
                              {"probed_predicted_ms", p.probed_predicted_ms},
                              {"measured_median_ms", p.measured_ms.empty() ? NAN : measured},
                              {"measured_p10_ms", p.measured_ms.empty() ? NAN : percentile(p.measured_ms, 0.1)},
                              {"measured_p90_ms", p.measured_ms.empty() ? NAN : percentile(p.measured_ms, 0.9)},
                              {"virtual_median_ms", p.virtual_ms.empty() ? NAN : emulated},
                              {"predicted_bytes", p.predicted_bytes},
                              {"measured_bytes_median", p.measured_bytes.empty() ? NAN : median(p.measured_bytes)},
                              {"measured_ms", p.measured_ms},
                              {"virtual_ms", p.virtual_ms},
                              {"first_after_deploy_ms", p.first_measured_ms},
                              {"first_after_deploy_median_ms", p.first_measured_ms.empty() ? NAN : median(p.first_measured_ms)},
                              {"verified", p.verified},
                              {"differ", p.differ},
                              {"failed", p.failed}};
  if (!p.measured_ms.empty() && !p.virtual_ms.empty()) {
    j["virtual_error"] = relative_error(emulated, measured);
    j["predicted_error"] = relative_error(p.predicted_ms, measured);
    j["predicted_at_start_error"] = relative_error(p.predicted_at_start_ms, measured);
    j["probed_predicted_error"] = relative_error(p.probed_predicted_ms, measured);
  }
  if (!p.error.empty()) j["error"] = p.error;
  j["stages"] = nlohmann::ordered_json::array();
  for (const realnet_stage& s : p.stages)
    j["stages"].push_back({{"stage", s.what},
                           {"measured_ready_ms", s.measured_ready_ms.empty() ? NAN : median(s.measured_ready_ms)},
                           {"virtual_ready_ms", s.virtual_ready_ms.empty() ? NAN : median(s.virtual_ready_ms)},
                           {"measured_finish_ms", s.measured_finish_ms.empty() ? NAN : median(s.measured_finish_ms)},
                           {"virtual_finish_ms", s.virtual_finish_ms.empty() ? NAN : median(s.virtual_finish_ms)},
                           {"predicted_finish_ms", s.predicted_finish_ms},
                           {"probed_finish_ms", s.probed_finish_ms},
                           // Per request, in the order of measured_ms / virtual_ms: what the medians hide (a
                           // node under a quota that sends one period late on some requests only).
                           {"measured_ready_each_ms", s.measured_ready_ms},
                           {"measured_finish_each_ms", s.measured_finish_ms},
                           {"virtual_ready_each_ms", s.virtual_ready_ms},
                           {"virtual_finish_each_ms", s.virtual_finish_ms}});
  return j;
}

// realnet.md from every realnet-*.json in `folder`.
void write_report(const std::string& folder) {
  std::vector<std::string> files;
  if (DIR* d = ::opendir(folder.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.rfind("realnet-", 0) == 0 && name.size() > 5 && name.substr(name.size() - 5) == ".json") files.push_back(name);
    }
    ::closedir(d);
  }
  std::sort(files.begin(), files.end());
  std::ostringstream md;
  md << "# Real network: measured against the virtual clock and the cost model\n\n"
     << "Written by `d3-bench realnet` (scripts/realnet.sh). Each node in its own network namespace "
        "(scripts/netns-cluster.sh): bandwidth shaped by the kernel (tc htb per link class), node speeds as "
        "cgroup v1 cpu quotas (the testbed's speeds times the scale; scripts/realnet.sh calibrates each quota "
        "to its speed and lists them in cluster.txt). **measured**: wall clock, d3 adds only "
        "each link's one-way latency (EMULATED: this kernel has no netem). **virtual**: d3's emulation of the "
        "same testbed on the same nodes (their quotas lifted, with --quotas). **predicted**: the cost model with the same scaled speeds, "
        "on per-layer times measured alongside the requests (one run of the model in the bench's process per timed round, "
        "medians); **error at start**: the same on the planning profile measured once before the requests. Errors are "
        "relative to measured. Medians of the timed requests; plans and clocks alternate request by request, "
        "each deployed anew, and its timed request follows --settle untimed ones on the same deployment "
        "(**first**: the wall-clock latency of a deployment's first request).\n";
  double worst_virtual = 0, worst_predicted = 0, worst_probed = 0;
  std::ostringstream stage_notes;  // where the time goes, per plan with more than one stage
  stage_notes << "## Per stage\n\nWhen each stage's last input had arrived (in: measured / virtual) and when its outputs "
                 "left (out: measured / virtual / predicted with the testbed's speeds / predicted on the probed "
                 "profiles), ms since the request started (medians; measured: each node's clock mapped onto the "
                 "app's through the heartbeats).\n";
  size_t rows = 0;
  for (const std::string& file : files) {
    std::ifstream in(folder + "/" + file);
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(in, nullptr, false);
    if (j.is_discarded()) continue;
    md << "\n## " << j.value("model", "?") << ", scenario " << j.value("scenario", "?") << "\n\n"
       << j.value("setting", "") << "\n\n`" << j.value("command", "") << "`\n\n"
       << "| plan | strategies | measured ms (p10-p90) | first ms | virtual ms | error | predicted ms | error | "
          "error at start | predicted, probed ms | error | bytes/request measured (predicted) | exact |\n"
       << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
    for (const auto& p : j["plans"]) {
      auto num = [&](const char* key, const char* pattern, double scale = 1.0) {
        return p.contains(key) && p[key].is_number() ? format(pattern, scale * p[key].get<double>()) : std::string("-");
      };
      md << "| " << p.value("plan", "") << " | " << join(p["strategies"].get<std::vector<std::string>>(), ", ") << " | "
         << num("measured_median_ms", "%.1f") << " (" << num("measured_p10_ms", "%.0f") << "-" << num("measured_p90_ms", "%.0f")
         << ") | " << num("first_after_deploy_median_ms", "%.1f") << " | " << num("virtual_median_ms", "%.1f") << " | "
         << num("virtual_error", "%+.1f%%", 100) << " | "
         << num("predicted_ms", "%.1f") << " | " << num("predicted_error", "%+.1f%%", 100) << " | "
         << num("predicted_at_start_error", "%+.1f%%", 100) << " | "
         << num("probed_predicted_ms", "%.1f") << " | " << num("probed_predicted_error", "%+.1f%%", 100) << " | "
         << num("measured_bytes_median", "%.0f") << " (" << num("predicted_bytes", "%.0f") << ") | "
         << p.value("verified", 0) << "/" << p.value("verified", 0) + p.value("differ", 0) + p.value("failed", 0)
         << (p.contains("error") ? " " + p.value("error", "") : "") << " |\n";
      if (p.contains("stages") && !p["stages"].empty()) {
        stage_notes << "\n- " << j.value("scenario", "?") << ", " << p.value("plan", "") << ":";
        for (const auto& s : p["stages"]) {
          auto ms = [&](const char* key) {
            return s.contains(key) && s[key].is_number() ? format("%.0f", s[key].get<double>()) : std::string("-");
          };
          stage_notes << " " << s.value("stage", "?") << " in " << ms("measured_ready_ms") << "/" << ms("virtual_ready_ms")
                      << ", out " << ms("measured_finish_ms") << "/" << ms("virtual_finish_ms") << "/"
                      << ms("predicted_finish_ms") << "/" << ms("probed_finish_ms") << ";";
        }
        stage_notes << "\n";
      }
      if (p.contains("virtual_error")) {
        worst_virtual = std::max(worst_virtual, std::fabs(p["virtual_error"].get<double>()));
        worst_predicted = std::max(worst_predicted, std::fabs(p["predicted_error"].get<double>()));
        worst_probed = std::max(worst_probed, std::fabs(p["probed_predicted_error"].get<double>()));
        ++rows;
      }
    }
  }
  md << "\n" << stage_notes.str();
  md << "\nOver " << rows << " plans: largest |error| of the virtual clock " << format("%.1f%%", 100 * worst_virtual)
     << ", of the cost model " << format("%.1f%%", 100 * worst_predicted) << " (testbed speeds), "
     << format("%.1f%%", 100 * worst_probed) << " (the nodes' probed profiles).\n";
  std::ofstream(folder + "/realnet.md", std::ios::trunc) << md.str();
}

}  // namespace

int bench_realnet(int argc, char** argv) {
  bool help = false;
  const realnet_options o = parse_options(argc, argv, help);
  if (help) {
    std::cout << realnet_usage;
    return 0;
  }
  auto cluster_file = load_cluster_file(o.cluster);
  if (!cluster_file) bench_fail(bench_exit_bad_input, cluster_file.message());
  auto bed = load_testbed_file(o.testbed_path);
  if (!bed) bench_fail(bench_exit_bad_input, bed.message());
  const std::string scenario = o.scenario.empty() ? bed->scenarios.front().name : o.scenario;
  const testbed_scenario* sc = bed->scenario(scenario);
  if (!sc) bench_fail(bench_exit_bad_input, "--scenario: " + o.testbed_path + " has no scenario '" + scenario + "'");
  testbed t = bed->with(*sc);
  t.device_speed *= o.speed_scale;
  t.edge_speed *= o.speed_scale;
  t.cloud_speed *= o.speed_scale;
  // The cluster's nodes must be the evaluation's: device, edge1..K, cloud.
  int edges = 0;
  std::vector<node_endpoint> endpoints;
  for (const cluster_member& n : cluster_file->nodes) {
    endpoints.push_back({n.name, n.host, n.port});
    if (n.role == "edge") ++edges;
  }
  const testbed payload = payload_rates(t);
  const cluster_model cluster = cluster_model::evaluation(payload, edges);
  for (const auto& [name, node] : cluster.nodes)
    if (std::none_of(endpoints.begin(), endpoints.end(), [&](const node_endpoint& e) { return e.name == name; }))
      bench_fail(bench_exit_bad_input, o.cluster + " has no node '" + name + "' (expected device, edge1.." +
                                           "edgeK and cloud, as netns-cluster.sh writes)");
  if (auto s = make_folder(o.out); !s) bench_fail(bench_exit_bad_input, "--out: " + s.message());
  auto quotas = cpu_quotas::load(o.quotas);
  if (!quotas) bench_fail(bench_exit_bad_input, quotas.message());
  if (auto s = quotas->set(true); !s) bench_fail(bench_exit_bad_input, s.message());

  const tls_settings tls = cluster_file->has_tls ? cluster_file->tls : tls_settings{};
  if (auto checked = check_tls_identity(tls, "TLS"); !checked) bench_fail(bench_exit_bad_input, checked.message());
  if (!tls.enabled) std::fprintf(stderr, "%s\n", plaintext_warning("d3-bench realnet").c_str());
  caf::actor_system_config cfg;
  protocol::configure_process(cfg);
  transport::configure_tls(cfg, tls);
  caf::actor_system system{cfg};

  deployment_options measured_options;
  measured_options.timeout = std::chrono::milliseconds(o.timeout_ms);
  measured_options.emulation.clock = clock_mode::wall;
  measured_options.emulation.shaped = true;
  measured_options.emulation.links = latency_only(t);
  measured_options.emulation.app_node = "device";
  // The kernel carries the testbed's rates under both clocks: heartbeats allow for the slowest.
  measured_options.heartbeat_floor_mbit = std::min(measured_options.heartbeat_floor_mbit, t.slowest_bandwidth_mbit());
  deployment_options virtual_options = virtual_clock_options(payload, o.timeout_ms);
  virtual_options.heartbeat_floor_mbit = measured_options.heartbeat_floor_mbit;
  for (deployment_options* d : {&measured_options, &virtual_options})
    d->silence = d->peer_silence = std::chrono::milliseconds(o.silence_ms);
  deployment measured(system, measured_options);
  if (auto s = measured.connect(endpoints); !s) bench_fail(bench_exit_failed, "connect: " + s.message());
  // What receiving costs a node (TLS, socket, framing), timed on the device node under its quota
  // in CPU time (what a core spends): the app's input to it crosses loopback, where nothing but the
  // device's own work paces it. Every node here is a process of this machine.
  auto receive = measured.probe_receive_cost("device");
  if (!receive) bench_fail(bench_exit_failed, "receive cost probe: " + receive.message());
  const double receive_ms_per_mb = receive->ms_per_mb;
  virtual_options.emulation.receive_ms_per_mb = receive_ms_per_mb;
  deployment emulated(system, virtual_options);
  if (auto s = emulated.connect(endpoints); !s) bench_fail(bench_exit_failed, "connect: " + s.message());

  std::string setting =
      format("Testbed %s, scenario %s, speed scale %g: device %.4f, edges %.4f, cloud %.4f cores; links device-edge %s, "
             "edge-edge %s, edge-cloud %s, device-cloud %s; %d edge nodes; TLS %s.",
             bed->name.c_str(), scenario.c_str(), o.speed_scale, t.device_speed, t.edge_speed, t.cloud_speed,
             describe(t.device_edge).c_str(), describe(t.edge_edge).c_str(), describe(t.edge_cloud).c_str(),
             describe(t.link(node_role::device, node_role::cloud)).c_str(), edges, tls.enabled ? "on" : "off");
  setting += format(" The virtual clock and the cost model carry d3's messages at %.4f of these rates (TCP/IP framing).",
                    tcp_payload_share);
  setting += format(" Receiving a message costs a node %.2f ms of CPU per MB at speed 1 (TLS, socket, framing; probed "
                    "on the device node), paid at its speed while the bytes arrive, in both models; a small message "
                    "in and its answer out cost it %.3f ms.",
                    receive_ms_per_mb, receive->ms_per_message);
  setting += o.quotas.empty() ? " Virtual clock on the throttled nodes (no --quotas)."
                              : " Quotas lifted for the virtual clock's requests (--quotas).";
  std::printf("d3-bench realnet: %s\n", setting.c_str());
  std::fflush(stdout);
  bool clean = true;
  for (const std::string& model : o.models) {
    auto g = load_model_by_name(model, default_model_seed);
    if (!g) bench_fail(bench_exit_bad_input, g.message());
    if (o.images) {
      if (status s = add_image_preprocess(*g); !s) bench_fail(bench_exit_bad_input, s.message());
    }
    auto profile = measure_local_profile(*g, o.profile_repeats);
    if (!profile) bench_fail(bench_exit_failed, "profile: " + profile.message());
    profile->messages.receive_ms_per_mb = receive_ms_per_mb;
    std::vector<realnet_plan> plans;
    for (const std::string& strategy : o.strategies) {
      const codec_choice_options codecs;
      auto chosen = plan_with_strategy(without_codecs_suffix(strategy), *g, *profile, cluster,
                                       with_codecs_suffix(strategy) ? &codecs : nullptr);
      if (!chosen) {
        std::fprintf(stderr, "d3-bench realnet: %s: %s: %s\n", model.c_str(), strategy.c_str(), chosen.message().c_str());
        continue;
      }
      std::string text = describe(chosen->plan);
      for (const plan_codec& c : chosen->plan.codecs) text += "; " + c.tensor + "->" + c.to + " " + to_string(c.codec);
      auto same = std::find_if(plans.begin(), plans.end(), [&](const realnet_plan& p) { return p.text == text; });
      if (same != plans.end()) {
        same->strategies.push_back(strategy);
        continue;
      }
      realnet_plan p;
      p.strategies = {strategy};
      p.plan = chosen->plan;
      p.text = text;
      p.predicted_ms = p.predicted_at_start_ms = chosen->prediction.latency_ms;
      p.predicted_bytes = 0;
      for (const link_bytes& b : chosen->prediction.bytes) p.predicted_bytes += double(b.bytes);
      if (auto stages = build_stage_graph(*g, p.plan))
        for (size_t k = 0; k < stages->stages.size(); ++k) {
          realnet_stage s;
          s.what = std::string(to_string(stages->stages[k].kind)) + "@" + stages->stages[k].node;
          if (k < chosen->prediction.stage_finish_ms.size()) s.predicted_finish_ms = chosen->prediction.stage_finish_ms[k];
          p.stages.push_back(std::move(s));
        }
      plans.push_back(std::move(p));
    }
    // The cost model on what the nodes measure of themselves under the wall clock (their cpu
    // quotas included), as a deployment plans with by default.
    cluster_model probed = cluster;
    // The previous model's last request may have left them lifted.
    if (auto s = quotas->set(true); !s) bench_fail(bench_exit_failed, s.message());
    if (auto s = probe_node_profiles(measured, *g, probed, o.profile_repeats); !s)
      bench_fail(bench_exit_failed, "probing the nodes' profiles: " + s.message());
    // A node's probe times its compute at its own speed, not what receiving costs it: that is the
    // device's probe above at each node's speed.
    for (auto& [name, node] : probed.nodes) {
      layer_profile at_its_speed = *node.measured;
      at_its_speed.messages.receive_ms_per_mb = receive_ms_per_mb / cluster.nodes.at(name).speed;
      node.measured = std::make_shared<const layer_profile>(std::move(at_its_speed));
    }
    reprice(*g, plans, *profile, probed, &realnet_plan::probed_predicted_ms, &realnet_stage::probed_finish_ms);
    const int total = o.warmup + o.requests;
    std::vector<std::map<std::string, tensor>> inputs{size_t(total)}, expected{size_t(total)};
    auto local = executor::create(*g);
    if (!local) bench_fail(bench_exit_failed, "single-process executor: " + local.message());
    for (int i = 0; i < total; ++i) {
      for (int in : g->input_layers())
        inputs[size_t(i)][g->layers[size_t(in)].name] = sample_input(*g, in, 1000 + uint64_t(i));
      auto out = (*local)->run(inputs[size_t(i)]);
      if (!out) bench_fail(bench_exit_failed, "single-process run: " + out.message());
      expected[size_t(i)] = std::move(out.value());
    }
    // The planning profile above was measured once, before the requests: on this shared machine
    // one run of it swings +-20% with its neighbours' load, and the nodes' quota-limited speeds
    // swing with it. So each timed round also runs the model once here, and the predictions are
    // made again from the per-layer medians of those runs (side by side with the requests).
    std::vector<const tensor*> profile_inputs;
    for (int in : g->input_layers()) profile_inputs.push_back(&inputs[0].at(g->layers[size_t(in)].name));
    std::vector<std::vector<double>> alongside(g->layers.size());
    std::vector<double> alongside_totals;
    std::printf("%s: %zu distinct plans, %d rounds\n", model.c_str(), plans.size(), total);
    std::fflush(stdout);
    std::vector<bool> stopped(plans.size(), false);
    for (int round = 0; round < total; ++round) {
      if (round >= o.warmup) {
        std::vector<layer_timing> timings;
        if (auto out = (*local)->run(profile_inputs, &timings); !out)
          bench_fail(bench_exit_failed, "profile alongside the requests: " + out.message());
        double sum = 0;
        for (const layer_timing& t : timings) {
          alongside[size_t(t.layer)].push_back(t.milliseconds);
          sum += t.milliseconds;
        }
        alongside_totals.push_back(sum);
      }
      for (size_t turn = 0; turn < plans.size(); ++turn) {
        const size_t k = (turn + size_t(round)) % plans.size();
        realnet_plan& p = plans[k];
        if (stopped[k]) continue;
        for (int c = 0; c < 2 && !stopped[k]; ++c) {
          const bool virtual_clock = (c + round) % 2 == 1;
          deployment& dep = virtual_clock ? emulated : measured;
          if (auto s = quotas->set(!virtual_clock); !s) bench_fail(bench_exit_failed, s.message());
          auto deployed = dep.deploy(*g, p.plan);
          if (!deployed) {
            p.error = std::string(virtual_clock ? "virtual" : "measured") + " deploy: " + deployed.message();
            stopped[k] = true;
            break;
          }
          // --settle untimed requests (the first one's latency kept apart), then the timed one.
          for (int n = 0; n <= o.settle && !stopped[k]; ++n) {
            const bool last = n == o.settle;
            stopped[k] = !run_one(p, dep, inputs[size_t(round)], expected[size_t(round)], deployed->plan_version,
                                  virtual_clock, last && round >= o.warmup, !last && n == 0 && round >= o.warmup);
          }
          dep.teardown();
        }
      }
      std::fprintf(stderr, "d3-bench realnet: %s round %d/%d\n", model.c_str(), round + 1, total);
    }
    local->reset();
    if (!alongside_totals.empty()) {
      layer_profile during = *profile;
      for (size_t l = 0; l < alongside.size(); ++l)
        if (!alongside[l].empty()) during.milliseconds[l] = median(alongside[l]);
      reprice(*g, plans, during, cluster, &realnet_plan::predicted_ms, &realnet_stage::predicted_finish_ms);
      std::printf("%s: the model's one-core time %.2f ms in the planning profile, %.2f ms alongside the requests "
                  "(median of %zu, %.2f-%.2f)\n",
                  model.c_str(), profile->total(), median(alongside_totals), alongside_totals.size(),
                  *std::min_element(alongside_totals.begin(), alongside_totals.end()),
                  *std::max_element(alongside_totals.begin(), alongside_totals.end()));
    }
    nlohmann::ordered_json report = {{"bench", "realnet"}, {"model", model},       {"scenario", scenario},
                                     {"setting", setting}, {"command", o.command}, {"requests", o.requests},
                                     {"warmup", o.warmup}, {"settle", o.settle},
                                     {"profile_total_ms", profile->total()},
                                     {"alongside_total_ms", alongside_totals},
                                     {"plans", nlohmann::ordered_json::array()}};
    for (const realnet_plan& p : plans) {
      report["plans"].push_back(plan_json(p));
      clean = clean && p.error.empty();
      std::printf("%-60s measured %8.1f ms  virtual %8.1f ms (%+5.1f%%)  predicted %8.1f ms (%+5.1f%%), probed %8.1f ms "
                  "(%+5.1f%%)  exact %d/%d%s%s\n",
                  p.text.substr(0, 60).c_str(), median(p.measured_ms), median(p.virtual_ms),
                  100 * relative_error(median(p.virtual_ms), median(p.measured_ms)), p.predicted_ms,
                  100 * relative_error(p.predicted_ms, median(p.measured_ms)), p.probed_predicted_ms,
                  100 * relative_error(p.probed_predicted_ms, median(p.measured_ms)), p.verified,
                  p.verified + p.differ + p.failed, p.error.empty() ? "" : "  ERROR ", p.error.c_str());
    }
    std::fflush(stdout);
    std::ofstream(o.out + "/realnet-" + file_safe(model) + "-" + file_safe(scenario) + ".json", std::ios::trunc)
        << report.dump(2) << "\n";
  }
  if (auto s = quotas->set(true); !s) bench_fail(bench_exit_failed, s.message());
  write_report(o.out);
  std::printf("report: %s/realnet.md\n", o.out.c_str());
  return clean ? 0 : bench_exit_failed;
}

}  // namespace d3
