// d3-bench adapt: the links and node speeds follow a trace (default: D3's setting, the backbone
// drops, then the LAN, both restore) while requests flow, one at a time, through a plan that the
// planner actor adapts from what it observes. Two runs in one invocation, each on fresh d3-node
// processes (empty layer caches):
//   partial  the planner actor: local search near the current boundaries first, migration of
//            only the layers whose placement changes;
//   full     every decision a full HPA search and a redeploy of every layer (all shipped again).
// Beside each, on nodes of its own, the optimum: per trace step, the HPA plan for that step's true
// links and speeds, deployed statically, running the run's inputs in alternation with it (the
// latency to converge to, measured on the same machine at the same time; the planner never sees it).
// Every answer is compared bit for bit with a single-process run of the same input.
#include "apps/bench_adapt.hpp"
#include "apps/adapt_report.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/deployment.hpp"
#include "profiling/message_costs.hpp"
#include "emulation/emulation_trace.hpp"
#include "emulation/testbed_file.hpp"
#include "actors/planner_actor.hpp"
#include "actors/protocol.hpp"
#include "apps/app_support.hpp"
#include "apps/local_nodes.hpp"
#include "apps/options.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "planner/adaptation.hpp"
#include "planner/profile.hpp"
#include "planner/standby.hpp"
#include "planner/cost_model.hpp"
#include "planner/three_tier_space.hpp"
#include "topology/topology_log.hpp"

namespace d3 {

namespace {

constexpr int exit_failed = 1;
constexpr int exit_bad_input = 2;

// The default trace (apps/config/d3-backbone-lan.trace.json): D3's setting with a 100 Mbit/s
// backbone that drops to 5 Mbit/s at 5 s, the LAN to 20 Mbit/s at 12 s, both restore at 20 s.
const char* default_trace = R"({"steps": [
  {"at_ms": 0, "links": {"device-edge": {"mbit_per_s": 100, "latency_ms": 2}, "edge-cloud": {"mbit_per_s": 100, "latency_ms": 20}}},
  {"at_ms": 5000, "links": {"edge-cloud": {"mbit_per_s": 5, "latency_ms": 20}}},
  {"at_ms": 12000, "links": {"device-edge": {"mbit_per_s": 20, "latency_ms": 5}}},
  {"at_ms": 20000, "links": {"device-edge": {"mbit_per_s": 100, "latency_ms": 2}, "edge-cloud": {"mbit_per_s": 100, "latency_ms": 20}}}]})";

const char* adapt_usage = R"(usage: d3-bench adapt [options]

Live adaptation on the emulated testbed (virtual clock: EMULATED times, node compute = measured
thread CPU time / node speed, links = latency + bytes / bandwidth): the testbed file's nodes and
links (default D3's setting: device 0.1, 4 edge nodes 0.5 on the device's 100 Mbit/s LAN, cloud 4),
then a trace of link and node speed changes (default apps/config/d3-backbone-lan.trace.json: a
100 Mbit/s backbone drops to 5 Mbit/s at 5 s, the LAN to 20 Mbit/s 5 ms at 12 s, both restore at
20 s). Other traces: apps/config/d3-edge-slow.trace.json, d3-all.trace.json, wifi-3g-wifi.trace.json
(the latter with --testbed apps/config/testbed-mobile-edge.json).

Requests run one at a time until one starts --tail-ms after the trace's last step. Two runs,
each on fresh d3-node processes started here:
  partial  HPA's plan for the first step, then the planner actor: it estimates the links from
           the transfers the stages report, searches near the current boundaries first and
           migrates only the layers whose placement changes (weights shipped only where missing);
  full     the same planner, but every decision is a full HPA search and a redeploy of every
           layer of the new plan (all weights shipped again).
Beside each run, on nodes of its own, the optimum: for each trace step, the HPA plan on that
step's true links and speeds, deployed statically (the reference; the planner never sees it).
After the run's request, the same input runs on it: the first --optimum-requests of each step,
then every 4th; its median per step is the latency to converge to. The two alternate request by
request, so both are measured on the same machine at the same time (an optimum measured in a run
of its own minutes earlier was 10-25% away from the same plan's latency in the adaptive run, on
this shared machine).
Per trace step it reports the requests until the latency is within 10% of the step's optimum
(the count includes the first request under the new links) and, in parentheses, until the plan
serving is one the cost model prices within 10% of HPA's plan on the step's true testbed (the
decision apart from this machine's noise), the migrations, layers moved and
weight bytes shipped, in all and over links (to nodes other than the device node, which sits
beside the app: a copy there crosses no network); under the virtual clock shipped weights occupy
the emulated links from the device, and a new version serves once they have arrived. Every
answer is compared memcmp-equal with a single-process run.

  --model NAME|FILE     model (default resnet18)
  --testbed FILE        testbed file (default: D3's setting, apps/config/testbed-d3.json)
  --scenario NAME       a scenario of the testbed file to start from (default: its base links)
  --trace FILE          the trace (JSON, emulation/emulation_trace.hpp; default the one above)
  --tail-ms T           virtual ms to keep running after the last step (default 6000)
  --optimum-requests N  requests of each step mirrored on the optimum before it samples every 4th
                        (default 8)
  --profile nodes|local per-layer times for planning: probed on every node (default; each node
                        runs the layers with stand-in weights under its clock, once, for every
                        step's optimum and both runs) or measured here once and divided by the
                        node's testbed speed
  --probe-every N       light probes of a link that carried nothing for N answers (default 1:
                        a change on an idle link is seen after two answers, since a link's
                        window holds three samples and one round adds two; 0: none, and a
                        link the plan stops using is never seen again), and of the speed of
                        a node that computed nothing for 8N answers (a small fragment of the
                        model from its input, about 200 MFLOP, run once on it; its first three
                        after it stops computing at once, and every idle node on each of three
                        answers when a latency jumps or a link probe finds its link changed)
  --max-requests N      cap per run (default 3000; a run stopped by it before the trace's end
                        says so, and the steps it did not reach are reported as not reached)
  --standby on|off      partial run: standby copies of weights (planner/standby.hpp: what each node
                        off the device runs is copied onto the other edge nodes, up to 256 MB each,
                        and the device gets every layer), sent as background
                        traffic in the emulated links' idle time (delaying no request) after the
                        first deployment and after each migration; a later move onto them ships
                        nothing and serves once they have arrived. Reported apart from the
                        migrations' shipping (default on; the full re-partition redeploys every
                        layer and sends none)
  --provision           every node starts with the model provisioned (d3-node INI `models`: its
                        weights cached before the first deployment, as on machines where the
                        model file is installed): deployments and migrations then ship no
                        weights, and the app tells the planner which layers each node holds.
                        Not with --images (the preprocess layer makes it another model)
  --codecs              plan, adapt and compute the optimum with lossless codecs on the links
                        (planner/codec_choice.hpp: a tensor travels encoded where its measured ratio
                        and the nodes' codec costs predict it faster)
  --images              8-bit images in: a preprocess layer first, inputs seeded random pixels (with
                        --codecs the first hop can carry them as u8, a quarter of the float bytes)
  --out DIR             writes adapt.csv (latency per request), adapt.json and adapt.png (gnuplot),
                        planner-partial.log and planner-full.log (the planner's verdict after each
                        answer: the candidates, their robust prices and costs; each migration's
                        plan and the node speeds estimated then), topology-partial.jsonl and
                        topology-full.jsonl (the deployments' events: probes, probe bursts,
                        migrations, shipments) (default adapt-results)
  --node-binary PATH    d3-node (default: next to d3-bench)
  --tls DIR|false       the cluster's certificates (scripts/make-certs.sh; default: build/certs);
                        false: plaintext between the processes, with a warning
  --timeout-ms T        timeout of every deployment step and answer (default 30000)
  --help                this text

Output: a summary on stdout, then one JSON line with the figures.
)";

struct adapt_options {
  std::string model = "resnet18", trace_file, out = "adapt-results", node_binary, profile_source = "nodes";
  std::string tls_option;  // --tls
  local_tls tls;
  testbed_file bed = testbed_file::d3_setting();
  std::string scenario;
  double tail_ms = 6000;
  int optimum_requests = 8, max_requests = 3000, probe_every = 1;
  bool images = false;
  bool standby = true;
  bool provision = false;  // --provision
  std::optional<codec_choice_options> codecs;  // --codecs
  long timeout_ms = 30000;
};

// The options, or what is wrong with them; `help` set when --help printed the usage.
result<adapt_options> parse_adapt_options(int argc, char** argv, bool& help) {
  return parse_options<adapt_options>([&] {
    adapt_options o;
    option_reader in(argc, argv, 2, "see d3-bench adapt --help");
    while (in.next()) {
      if (in.is("--help", "-h")) {
        std::cout << adapt_usage;
        help = true;
        return o;
      } else if (in.is("--model")) {
        o.model = in.value();
      } else if (in.is("--trace")) {
        o.trace_file = in.value();
      } else if (in.is("--testbed")) {
        auto bed = load_testbed_file(in.value());
        if (!bed) in.fail(bed.message());
        o.bed = std::move(bed.value());
      } else if (in.is("--scenario")) {
        o.scenario = in.value();
      } else if (in.is("--tail-ms")) {
        o.tail_ms = double(in.integer(0, 10000000));
      } else if (in.is("--optimum-requests")) {
        o.optimum_requests = int(in.integer(1, 10000));
      } else if (in.is("--profile")) {
        o.profile_source = in.choice({"nodes", "local"});
      } else if (in.is("--probe-every")) {
        o.probe_every = int(in.integer(0, 100000));
      } else if (in.is("--max-requests")) {
        o.max_requests = int(in.integer(1, 100000));
      } else if (in.is("--standby")) {
        o.standby = in.choice({"on", "off"}) == "on";
      } else if (in.is("--provision")) {
        o.provision = true;
      } else if (in.is("--codecs")) {
        o.codecs = codec_choice_options{};
      } else if (in.is("--images")) {
        o.images = true;
      } else if (in.is("--out")) {
        o.out = in.value();
      } else if (in.is("--node-binary")) {
        o.node_binary = in.value();
      } else if (in.is("--tls")) {
        o.tls_option = in.value();
      } else if (in.is("--timeout-ms")) {
        o.timeout_ms = in.integer(1, 3600000);
      } else {
        in.unknown();
      }
    }
    if (o.provision && o.images)
      in.fail("--provision with --images: the nodes cache the model without its preprocess layer, another model to the app");
    if (!o.scenario.empty() && !o.bed.scenario(o.scenario))
      in.fail("unknown scenario '" + o.scenario + "' in " + o.bed.source + " (" + join(o.bed.scenario_names(), ", ") + ")");
    if (auto resolved = resolve_local_cluster(o.node_binary, o.tls_option, o.tls); !resolved) in.fail(resolved.message());
    return o;
  });
}

// The true testbed while a trace step is in force: its links and every node's speed.
struct step_state {
  testbed links;
  std::map<std::string, double> speeds;
  bool operator==(const step_state& o) const {
    auto same = [](const link_profile& a, const link_profile& b) {
      return a.bandwidth_mbit_per_s == b.bandwidth_mbit_per_s && a.latency_ms == b.latency_ms;
    };
    const std::vector<node_role> roles = {node_role::device, node_role::edge, node_role::cloud};
    for (node_role a : roles)
      for (node_role b : roles)
        if (!same(links.link(a, b), o.links.link(a, b))) return false;
    return speeds == o.speeds;
  }
};

// What every run shares: the model, its profile, the nodes' specs and the expected answers.
struct bench_context {
  adapt_options options;
  graph g;
  layer_profile profile;
  emulation_trace trace;
  std::vector<step_state> steps;  // the true testbed of each step
  std::vector<local_node_spec> specs;
  std::map<std::string, node_role> roles;
  std::unique_ptr<executor> local;
  // Each node's profile, probed once (--profile nodes) and priced by every step's optimum and
  // both runs: probes taken apart differ by ~10% on this shared machine, which let the partial
  // and the full run start from different plans (one on the cloud, one on the edges) and the
  // comparison say more about the probes than about the planners.
  std::map<std::string, std::shared_ptr<const layer_profile>> probed;
};

// Request `index`'s input and the single-process answer to it, computed once: the adaptive run
// and the optimum beside it both answer the same input.
struct request_case {
  std::map<std::string, tensor> in;
  std::optional<std::vector<tensor>> expected;  // none: the single-process run failed
};

request_case case_for(const bench_context& c, int index) {
  request_case r;
  std::vector<const tensor*> pointers;
  for (int l : c.g.input_layers()) {
    const std::string& name = c.g.layers[size_t(l)].name;
    r.in[name] = sample_input(c.g, l, 1000 + uint64_t(index));
    pointers.push_back(&r.in.at(name));
  }
  if (auto expected = c.local->run(pointers)) r.expected = std::move(expected.value());
  return r;
}

// Whether the answer is memcmp-equal to the single-process one.
bool verify(const bench_context& c, const request_case& r, const request_outcome& o) {
  if (!r.expected || o.outputs.size() != c.g.outputs.size()) return false;
  for (size_t k = 0; k < c.g.outputs.size(); ++k) {
    auto got = o.outputs.find(c.g.layers[size_t(c.g.outputs[k])].name);
    if (got == o.outputs.end() || !bitwise_equal(got->second, (*r.expected)[k])) return false;
  }
  return true;
}

deployment_options deployment_settings(const bench_context& c, const testbed& links) {
  deployment_options d;
  d.timeout = std::chrono::milliseconds(c.options.timeout_ms);
  d.emulation.clock = clock_mode::virtual_time;
  d.emulation.shaped = true;
  d.emulation.links = links;
  d.emulation.app_node = "device";
  return d;
}

result<std::unique_ptr<local_nodes>> fresh_nodes(const bench_context& c, const std::string& run) {
  const std::string folder = c.options.out + "/node-logs-" + run;
  ::mkdir(folder.c_str(), 0755);
  return local_nodes::start(c.options.node_binary, folder, c.specs, std::chrono::seconds(30), c.options.tls);
}

// The cluster the planner would price step `state` with: the testbed's links, every node's
// probed profile (--profile nodes, measured at its configured speed) or the local profile over its
// speed, and the step's speeds relative to the configured ones.
result<cluster_model> cluster_at(deployment& dep, bench_context& c, const step_state& state) {
  cluster_model cluster = cluster_model::evaluation(state.links, int(c.specs.size()) - 2);
  if (c.options.profile_source == "nodes") {
    if (c.probed.empty()) {
      D3_RETURN_IF_ERROR(probe_node_profiles(dep, c.g, cluster));
      for (const auto& [name, node] : cluster.nodes) c.probed[name] = node.measured;
    }
    for (auto& [name, node] : cluster.nodes) {
      auto it = c.probed.find(name);
      if (it == c.probed.end()) return status::error("node '" + name + "' has no probed profile");
      node.measured = it->second;
      node.speed = 1.0;
    }
  }
  for (const local_node_spec& spec : c.specs) {
    auto node = cluster.nodes.find(spec.name);
    auto speed = state.speeds.find(spec.name);
    if (node == cluster.nodes.end() || speed == state.speeds.end()) continue;
    // A probed profile was measured at the node's configured speed (the cluster then says speed
    // 1); the local profile is at speed 1.
    node->second.speed = c.options.profile_source == "nodes" ? speed->second / spec.speed : speed->second;
  }
  return cluster;
}

// The optimum measured beside an adaptive run, on nodes of its own: after the run's request in
// trace step s, the same input runs on HPA's plan for step s's true testbed, deployed statically.
// The two alternate request by request, so both see the same machine: an optimum measured in a
// run of its own minutes earlier put one plan's latency 10-25% away from what the adaptive run
// measured for that same plan on this shared machine, and the comparison then said more about
// the drift than about the planner.
class optimum_beside {
 public:
  // `stages_log`: where each mirrored request's stage times go beside the cost model's.
  optimum_beside(caf::actor_system& system, bench_context& c, std::unique_ptr<local_nodes> nodes,
                 const std::string& stages_log)
      : system_(system),
        c_(c),
        nodes_(std::move(nodes)),
        samples_(c.steps.size()),
        predicted_(c.steps.size(), 0),
        stages_log_(stages_log, std::ios::trunc) {}

  // After the adaptive run's `nth` request (1-based) of `step`, on its case `in`: the first
  // --optimum-requests of each step are mirrored, then every 4th (the counts that matter come at a
  // step's start; later ones keep the median in step with the machine). A step's first mirrored
  // request follows a warm-up on the newly deployed plan, not counted.
  // Precondition: step >= 0.
  status after(int step, int nth, const request_case& in) {
    if (nth > c_.options.optimum_requests && nth % 4 != 0) return status::ok();
    const std::string what = "optimum of step " + std::to_string(step) + ": ";
    if (step != deployed_step_) {
      D3_RETURN_IF_ERROR(deploy(size_t(step)));
      if (auto warm = run(in); !warm) return status::error(what + warm.message());
    }
    auto ms = run(in, step);
    if (!ms) return status::error(what + ms.message());
    samples_[size_t(step)].push_back(*ms);
    return status::ok();
  }

  // The median of the step's mirrored requests (0 where the run never reached the step).
  std::vector<double> medians() const {
    std::vector<double> m;
    for (const std::vector<double>& s : samples_) m.push_back(s.empty() ? 0 : percentile(s, 0.5));
    return m;
  }
  std::vector<int> counts() const {
    std::vector<int> n;
    for (const std::vector<double>& s : samples_) n.push_back(int(s.size()));
    return n;
  }
  const std::vector<double>& predicted() const { return predicted_; }
  // The plan deployed for `step` and its stage graph (none before its first mirrored request).
  const std::pair<deployment_plan, stage_graph>* plan(int step) const {
    auto it = plans_.find(step);
    return it == plans_.end() ? nullptr : &it->second;
  }

  void stop() {
    if (dep_) dep_->teardown();
    dep_.reset();
    nodes_->stop();
  }

 private:
  status deploy(size_t s) {
    const std::string what = "optimum of step " + std::to_string(s) + ": ";
    if (dep_) dep_->teardown();
    dep_ = std::make_unique<deployment>(system_, deployment_settings(c_, c_.steps[s].links));
    deployed_step_ = -1;
    if (status connected = dep_->connect(nodes_->endpoints()); !connected) return status::error(what + connected.message());
    auto cluster = cluster_at(*dep_, c_, c_.steps[s]);
    if (!cluster) return status::error(what + cluster.message());
    hpa_options search;
    search.codecs = c_.options.codecs;
    auto planned = hpa_strategy(c_.g, c_.profile, *cluster, search);
    if (!planned) return status::error(what + planned.message());
    if (auto deployed = dep_->deploy(c_.g, planned->plan); !deployed) return status::error(what + deployed.message());
    if (auto speeds = dep_->update_emulation(c_.steps[s].links, c_.steps[s].speeds); !speeds)
      return status::error(what + speeds.message());
    predicted_[s] = planned->prediction.latency_ms;
    predicted_finish_ = planned->prediction.stage_finish_ms;
    auto stages = build_stage_graph(c_.g, planned->plan);
    if (!stages) return status::error(what + stages.message());
    plans_[int(s)] = {planned->plan, std::move(stages.value())};
    deployed_step_ = int(s);
    return status::ok();
  }

  // One request on the optimum: its virtual latency, once its answer is memcmp-equal to one process.
  // A counted request (`step` >= 0) logs its stages' times beside the cost model's: where a step's
  // optimum measures away from its price, this says which stage the model gets wrong.
  result<double> run(const request_case& in, int step = -1) {
    request_outcome o = dep_->run({in.in}, 1).at(0);
    if (!o.ok) return status::error(o.error);
    if (!verify(c_, in, o)) return status::error("an answer differs");
    if (step >= 0) log_stages(step, o);
    return o.virtual_latency_ms;
  }

  void log_stages(int step, const request_outcome& o) {
    const auto& [plan, sg] = plans_.at(step);
    stages_log_ << "step " << step << ": " << o.virtual_latency_ms << " ms, predicted " << predicted_[size_t(step)]
                << " ms (virtual ms from the request's start; predicted: the cost model on the step's true testbed)\n";
    for (const stage_report& r : o.stage_reports) {
      if (r.stage_id < 0 || size_t(r.stage_id) >= sg.stages.size()) continue;
      const stage& st = sg.stages[size_t(r.stage_id)];
      stages_log_ << "  stage " << r.stage_id << " " << to_string(st.kind) << " on " << st.node;
      if (!st.layers.empty())  // scatters and gathers have none
        stages_log_ << " (" << c_.g.layers[size_t(st.layers.front())].name << ".."
                    << c_.g.layers[size_t(st.layers.back())].name << ")";
      stages_log_ << ": ready " << r.ready_ms - o.virtual_start_ms << " finish " << r.finish_ms - o.virtual_start_ms
                  << " cpu " << r.cpu_ms << " messages " << r.messages_ms;
      if (size_t(r.stage_id) < predicted_finish_.size())
        stages_log_ << "; predicted finish " << predicted_finish_[size_t(r.stage_id)];
      stages_log_ << "\n";
    }
    stages_log_.flush();
  }

  caf::actor_system& system_;
  bench_context& c_;
  std::unique_ptr<local_nodes> nodes_;
  std::unique_ptr<deployment> dep_;
  int deployed_step_ = -1;
  std::vector<std::vector<double>> samples_;  // virtual latencies per step
  std::vector<double> predicted_;             // HPA's predicted latency per step
  std::map<int, std::pair<deployment_plan, stage_graph>> plans_;  // HPA's plan per step
  std::vector<double> predicted_finish_;  // the deployed plan's predicted stage finishes
  std::ofstream stages_log_;
};

// One adaptive run: partial (the planner's local search, moved layers only) or full.
run_result adaptive_run(caf::actor_system& system, bench_context& c, bool partial) {
  run_result run;
  run.name = partial ? "partial" : "full";
  run.steps.resize(c.trace.steps.size());
  run.optimum_ms.assign(c.trace.steps.size(), 0);
  run.optimum_predicted_ms.assign(c.trace.steps.size(), 0);
  run.optimum_samples.assign(c.trace.steps.size(), 0);
  auto nodes = fresh_nodes(c, run.name);
  if (!nodes) {
    run.error = nodes.message();
    return run;
  }
  auto optimum_nodes = fresh_nodes(c, run.name + "-optimum");
  if (!optimum_nodes) {
    run.error = "the optimum's nodes: " + optimum_nodes.message();
    return run;
  }
  optimum_beside optimum(system, c, std::move(optimum_nodes.value()),
                         c.options.out + "/optimum-stages-" + run.name + ".log");
  deployment_options settings = deployment_settings(c, c.steps[0].links);
  settings.idle_probe_every = c.options.probe_every;
  // What the deployment did and why, event by event (probes, bursts, migrations, shipments).
  auto topology = topology_log::open(c.options.out + "/topology-" + run.name + ".jsonl");
  if (!topology) {
    run.error = topology.message();
    return run;
  }
  settings.log = topology->get();
  deployment dep(system, settings);
  if (auto s = dep.connect((*nodes)->endpoints()); !s) {
    run.error = s.message();
    return run;
  }
  auto probed = cluster_at(dep, c, c.steps[0]);
  if (!probed) {
    run.error = probed.message();
    return run;
  }
  const cluster_model initial = probed.value();
  three_tier_choice choice;
  hpa_options search;
  search.codecs = c.options.codecs;
  auto planned = hpa_strategy(c.g, c.profile, initial, search, &choice);
  if (!planned) {
    run.error = "initial plan: " + planned.message();
    return run;
  }
  if (auto d = dep.deploy(c.g, planned->plan); !d) {
    run.error = "deploy: " + d.message();
    return run;
  }
  adaptation_options adapt;
  adapt.codecs = c.options.codecs;
  adapt.partial_search = partial;
  adapt.ship_everything = !partial;  // the full re-partition redeploys every layer: that is its cost
  // Standby copies for every plan run (partial run; the full re-partition redeploys every layer
  // by definition): sent in the links' idle time, they let a later move ship nothing.
  if (partial && c.options.standby) {
    dep.set_standby([&c, initial](const deployment_plan& plan) { return standby_copies(c.g, plan, initial); });
  }
  auto planner = std::make_shared<adaptive_planner>(c.g, c.profile, initial, choice, planned->plan, adapt);
  protocol::planner_handle planner_actor = spawn_planner_actor(system, planner, c.roles);
  dep.set_adaptation(planner_hook(system, planner_actor), &c.g, !partial);
  dep.set_trace(c.trace);
  const double end_ms = c.trace.steps.back().at_ms + c.options.tail_ms;
  size_t migrations_seen = 0;
  // Why the planner did what it did after each answer (its reply to the hook has arrived before
  // run() returns, so reading the planner here races with nothing).
  std::ofstream planner_log(c.options.out + "/planner-" + run.name + ".log", std::ios::trunc);
  std::map<int, deployment_plan> plans;  // by version: what each version serving ran
  std::map<int, int> in_step;            // requests so far per trace step
  int described_step = -1;               // the step whose optimum plan the log last described
  for (int i = 0; i < c.options.max_requests; ++i) {
    const request_case in = case_for(c, i);
    request_outcome o = dep.run({in.in}, 1).at(0);
    if (!o.ok) {
      ++run.failed;
      run.error = "request " + std::to_string(i) + ": " + o.error;
      break;
    }
    request_row row{i, o.trace_step, o.plan_version, o.virtual_start_ms, o.virtual_latency_ms, verify(c, in, o)};
    if (plans.empty()) plans[o.plan_version] = planned->plan;  // no migration before the first answer
    planner_log << "request " << i << " step " << o.trace_step << " v" << o.plan_version << " "
                << o.virtual_latency_ms << " ms: " << planner->verdict() << "\n  estimates:";
    planner_log << " " << describe(planner->estimate()) << "; widest uncertainty " << planner->uncertainty() << " ("
                << planner->uncertainty_source() << ")\n";
    if (planner->verdict().rfind("migrate", 0) == 0) {
      plans[planner->plan_version()] = planner->running_plan();
      planner_log << "  to v" << planner->plan_version() << ": " << describe(planner->running_plan()) << "\n  speeds:";
      for (const auto& [node, n] : planner->estimate().nodes) planner_log << " " << node << " " << n.speed;
      planner_log << "\n";
    }
    if (!row.verified) ++run.differ;
    run.rows.push_back(row);
    // Migrations decided on this answer happened before run() returned: they belong to its step.
    for (; migrations_seen < dep.migrations().size(); ++migrations_seen) {
      const migration_report& m = dep.migrations()[migrations_seen];
      if (row.trace_step < 0) continue;
      step_figures& f = run.steps[size_t(row.trace_step)];
      ++f.migrations;
      f.layers_moved += m.layers_moved.size();
      f.layers_shipped += m.deploy.layers_shipped;
      f.weight_bytes_shipped += m.deploy.weight_bytes_shipped;
      for (const auto& [node, bytes] : m.deploy.weight_bytes_per_node)
        if (node != settings.emulation.app_node) f.weight_bytes_over_links += bytes;
      f.migrate_ms += m.deploy.deploy_ms;
    }
    if (row.trace_step >= 0) {
      const int nth = ++in_step[row.trace_step];
      if (status mirrored = optimum.after(row.trace_step, nth, in); !mirrored) {
        run.error = mirrored.message();
        break;
      }
      // The optimum's plan as the planner prices it: a gap between what that plan measures
      // beside the run and this price is model error, not a late decision.
      if (const auto* best = optimum.plan(row.trace_step)) {
        planner_log << "  the step's optimum (measured beside)";
        if (described_step != row.trace_step) planner_log << ", " << describe(best->first);
        described_step = row.trace_step;
        if (auto priced = predict_plan(c.g, best->second, c.profile, planner->estimate()))
          planner_log << ": the planner's estimates price it at " << priced->latency_ms << " ms";
        const cluster_model pessimistic = planner->bound(+1);
        if (auto priced = predict_plan(c.g, best->second, c.profile, pessimistic))
          planner_log << ", their pessimistic ends at " << priced->latency_ms << " ms (" << describe(pessimistic) << ")";
        planner_log << "\n";
      }
    }

    run.last_start_ms = o.virtual_start_ms;
    if (o.virtual_start_ms >= end_ms) break;
    if (i + 1 == c.options.max_requests) run.stopped_at_cap = true;
  }
  for (const std::string& e : dep.stray_errors())
    if (run.error.empty()) run.error = "stage error: " + e;
  for (const std::string& e : dep.standby_errors())
    if (run.error.empty()) run.error = "standby copies: " + e;
  run.standby_bytes = dep.standby_sent().weight_bytes_shipped;
  run.standby_bytes_per_link = dep.standby_sent().weight_bytes_per_link;
  for (const auto& [node, bytes] : dep.standby_sent().weight_bytes_per_node)
    if (node != settings.emulation.app_node) run.standby_bytes_over_links += bytes;
  run.optimum_ms = optimum.medians();
  run.optimum_samples = optimum.counts();
  run.optimum_predicted_ms = optimum.predicted();
  optimum.stop();
  for (const request_row& r : run.rows) {
    if (r.trace_step < 0) continue;
    step_figures& f = run.steps[size_t(r.trace_step)];
    ++f.requests;
    if (f.requests_to_optimum < 0 && r.latency_ms <= run.optimum_ms[size_t(r.trace_step)] * 1.10)
      f.requests_to_optimum = f.requests;
  }
  // The same decision counted on the cost model: each step's cluster (this run's probed profiles,
  // the step's true links and speeds), HPA's plan there, and the price of the version serving.
  for (size_t s = 0; s < run.steps.size(); ++s) {
    step_figures& f = run.steps[s];
    if (f.requests == 0) continue;
    auto cluster = cluster_at(dep, c, c.steps[s]);
    if (!cluster) {
      if (run.error.empty()) run.error = "step " + std::to_string(s) + ": its cluster: " + cluster.message();
      continue;
    }
    hpa_options search;
    search.codecs = c.options.codecs;
    auto best = hpa_strategy(c.g, c.profile, *cluster, search);
    if (!best) {
      if (run.error.empty()) run.error = "step " + std::to_string(s) + ": pricing the optimum: " + best.message();
      continue;
    }
    std::map<int, double> priced;  // by version
    int count = 0;
    for (const request_row& r : run.rows) {
      if (r.trace_step != int(s)) continue;
      ++count;
      auto it = priced.find(r.plan_version);
      if (it == priced.end()) {
        double ms = std::numeric_limits<double>::infinity();
        if (auto plan = plans.find(r.plan_version); plan != plans.end())
          if (auto sg = build_stage_graph(c.g, plan->second); sg)
            if (auto p = predict_plan(c.g, *sg, c.profile, *cluster); p) ms = p->latency_ms;
        it = priced.emplace(r.plan_version, ms).first;
      }
      if (it->second <= best->prediction.latency_ms * 1.10) {
        f.requests_to_optimal_plan = count;
        break;
      }
    }
  }
  anon_send_exit(planner_actor, caf::exit_reason::user_shutdown);
  dep.teardown();
  return run;
}

}  // namespace

int bench_adapt(int argc, char** argv) {
  auto bad_input = [](const std::string& message) {
    std::cerr << "d3-bench adapt: " << message << "\n";
    return exit_bad_input;
  };
  bench_context c;
  bool help = false;
  auto parsed = parse_adapt_options(argc, argv, help);
  if (auto code = stop_after_parse(parsed, help, "d3-bench adapt")) return *code;
  c.options = std::move(parsed.value());
  const adapt_options& o = c.options;
  auto trace = o.trace_file.empty() ? parse_trace_json(default_trace) : load_trace_file(o.trace_file);
  if (!trace) return bad_input(trace.message());
  c.trace = std::move(trace.value());
  if (c.trace.steps.front().at_ms != 0) return bad_input("the trace's first step must be at 0 ms (the links to start on)");
  step_state state{o.scenario.empty() ? o.bed.base : o.bed.with(*o.bed.scenario(o.scenario)), {}};
  c.specs = {{"device", "device", state.links.device_speed}};
  for (int e = 1; e <= o.bed.edge_nodes; ++e) c.specs.push_back({"edge" + std::to_string(e), "edge", state.links.edge_speed});
  c.specs.push_back({"cloud", "cloud", state.links.cloud_speed});
  for (local_node_spec& spec : c.specs) {
    state.speeds[spec.name] = spec.speed;
    if (o.provision) spec.models = o.model;
  }
  for (size_t s = 0; s < c.trace.steps.size(); ++s) {
    const trace_step& step = c.trace.steps[s];
    state.links = step.apply(state.links);
    for (const auto& [node, speed] : step.speeds) {
      if (!state.speeds.count(node))
        return bad_input("trace step " + std::to_string(s) + ": no node '" + node + "' in the testbed (device, edge1..edge" +
                         std::to_string(o.bed.edge_nodes) + ", cloud)");
      state.speeds[node] = speed;
    }
    c.steps.push_back(state);
  }
  auto g = load_model_by_name(o.model, default_model_seed);
  if (!g) return bad_input(g.message());
  c.g = std::move(g.value());
  if (o.images)
    if (status s = add_image_preprocess(c.g); !s) return bad_input(s.message());
  if (::mkdir(o.out.c_str(), 0755) != 0 && errno != EEXIST) return bad_input("cannot create --out folder '" + o.out + "'");
  auto profile = measure_local_profile(c.g, 3);
  if (!profile) {
    std::cerr << "d3-bench adapt: profile: " << profile.message() << "\n";
    return exit_failed;
  }
  c.profile = std::move(profile.value());
  auto local = executor::create(c.g);
  if (!local) {
    std::cerr << "d3-bench adapt: " << local.message() << "\n";
    return exit_failed;
  }
  c.local = std::move(local.value());
  for (const local_node_spec& s : c.specs) c.roles[s.name] = node_role_from_string(s.role).value();

  std::printf("d3-bench adapt: %s%s%s%s; EMULATED testbed (virtual clock) %s%s: device %g, %d edges %g, cloud %g; trace:",
              c.g.name.c_str(), o.images ? ", 8-bit images in" : "", o.codecs ? ", codecs where predicted faster" : "",
              o.provision ? ", provisioned on every node (weights cached at start)" : "", o.bed.name.c_str(), o.scenario.empty() ? "" : (", scenario " + o.scenario).c_str(),
              c.specs.front().speed, o.bed.edge_nodes, c.specs[1].speed, c.specs.back().speed);
  for (const trace_step& s : c.trace.steps) std::printf(" [%s]", s.describe().c_str());
  std::printf("\n");
  std::fflush(stdout);

  caf::actor_system_config cfg;
  configure_local_app(cfg, c.options.tls, "d3-bench adapt");
  std::vector<run_result> runs;
  {
    caf::actor_system system{cfg};
    runs.push_back(adaptive_run(system, c, true));
    runs.push_back(adaptive_run(system, c, false));
  }

  std::vector<std::string> labels;
  for (const step_state& st : c.steps) labels.push_back(st.links.uplink);
  const adapt_trace_info info{c.g.name, c.trace, labels, o.tail_ms, o.out};
  nlohmann::ordered_json summary = adapt_summary(info, runs);
  summary["provisioned"] = o.provision;
  write_adapt_outputs(info, runs, summary);
  std::ofstream(o.out + "/adapt.json", std::ios::trunc) << summary.dump(2) << "\n";
  print_adapt_summary(summary, runs, o.out);
  int code = 0;
  for (const run_result& r : runs)
    if (r.failed || r.differ || !r.error.empty()) code = exit_failed;
  return code;
}

}  // namespace d3
