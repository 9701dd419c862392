// d3-bench chaos: N requests at K in flight over a 4-edge cluster of real d3-node processes while a
// schedule kills one edge node (SIGKILL), freezes another (SIGSTOP), resumes it (SIGCONT) and
// restarts the killed one. Reports answered / lost / duplicated / verified, detection times, p50
// and p99 latency before, during and after each fault, and RSS per node; then the memory phase:
// RSS over many requests and over many redeployments of the same plan. Both clocks.
#include "apps/bench_chaos.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "actors/deployment.hpp"
#include "actors/protocol.hpp"
#include "apps/app_support.hpp"
#include "apps/local_nodes.hpp"
#include "apps/options.hpp"
#include "emulation/testbed_file.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "planner/profile.hpp"
#include "planner/strategies.hpp"
#include "planner/three_tier_space.hpp"
#include "profiling/message_costs.hpp"

namespace d3 {

namespace {

const char* chaos_usage = R"(usage: d3-bench chaos [options]

Faults while requests flow, on real d3-node processes on loopback (device, edge1..edge4, cloud with
D3's setting's speeds; under --clock virtual the links of D3's setting, WiFi scenario, EMULATED).
HPA's plan is deployed; then N requests run at K in flight while the schedule, counted in answers,
applies (default: at 20% SIGKILL of edge2, at 40% SIGSTOP of edge3, at 60% SIGCONT of edge3, at 70%
a restart of edge2: same port, empty cache; see --schedule). The app detects losses (lost connection, or no
heartbeat answer for --silence-ms), fails over to the plan repaired for the nodes left, re-sends
the requests not yet answered and takes the nodes back when they answer again. Every answer is
compared memcmp-equal with a single-process run. Then the memory phase: --memory-requests
requests and --redeploys deployments of the same plan, RSS per node sampled.

  --model NAME|FILE      model (default resnet18)
  --requests N           requests of the chaos phase (default 600)
  --in-flight K          requests in flight (default 4)
  --clock wall|virtual|both  (default both)
  --silence-ms T         a node silent this long is down (default 1000; heartbeats every T/5)
  --memory-requests N    requests of the memory phase (default 2000; 0: none)
  --redeploys N          deployments of the memory phase (default 100; 0: none)
  --out DIR              chaos.md and chaos.json (default chaos-results)
  --node-binary PATH     d3-node (default: next to d3-bench)
  --tls DIR|false        the cluster's certificates (scripts/make-certs.sh; default: build/certs);
                         false: plaintext between the processes, with a warning
  --timeout-ms T         timeout of every step and answer (default 30000)
  --schedule LIST        the faults: PERCENT%:WHAT:NODE,... with WHAT kill (SIGKILL), freeze
                         (SIGSTOP), resume (SIGCONT) or restart (SIGKILL if it runs, then
                         started again: same port, empty cache) and NODE device, edge1..edge4
                         or cloud; faults at the same percentage apply
                         together (default 20%:kill:edge2,40%:freeze:edge3,60%:resume:edge3,
                         70%:restart:edge2). Under --clock virtual the app sits on the device
                         node (EMULATED): losing it ends the run with an error, which counts as lost
  --help                 this text
)";

// One fault of the schedule: at `percent` of the requests answered, `what` (kill, freeze,
// resume, restart) to `node`.
struct scheduled_fault {
  int percent = 0;
  std::string what, node;
};

// "P%:what:node,..." (e.g. "20%:kill:edge2,40%:freeze:edge3"); errors name the bad entry.
result<std::vector<scheduled_fault>> parse_schedule(const std::string& text) {
  static const std::set<std::string> whats = {"kill", "freeze", "resume", "restart"};
  static const std::set<std::string> nodes = {"device", "edge1", "edge2", "edge3", "edge4", "cloud"};
  std::vector<scheduled_fault> out;
  std::stringstream entries(text);
  for (std::string entry; std::getline(entries, entry, ',');) {
    const std::string bad = "--schedule entry '" + entry + "': ";
    const size_t a = entry.find(':'), b = a == std::string::npos ? a : entry.find(':', a + 1);
    if (b == std::string::npos) return status::error(bad + "expected PERCENT%:WHAT:NODE");
    std::string percent = entry.substr(0, a);
    if (!percent.empty() && percent.back() == '%') percent.pop_back();
    scheduled_fault f{0, entry.substr(a + 1, b - a - 1), entry.substr(b + 1)};
    if (percent.empty() || percent.size() > 3 || percent.find_first_not_of("0123456789") != std::string::npos ||
        (f.percent = std::stoi(percent)) < 1 || f.percent > 100)
      return status::error(bad + "the percentage must be 1..100");
    if (!whats.count(f.what)) return status::error(bad + "WHAT must be kill, freeze, resume or restart");
    if (!nodes.count(f.node)) return status::error(bad + "NODE must be device, edge1..edge4 or cloud");
    out.push_back(f);
  }
  if (out.empty()) return status::error("--schedule is empty");
  return out;
}

struct chaos_options {
  std::vector<scheduled_fault> schedule = {
      {20, "kill", "edge2"}, {40, "freeze", "edge3"}, {60, "resume", "edge3"}, {70, "restart", "edge2"}};
  std::string model = "resnet18", out = "chaos-results", node_binary;
  std::string tls_option;  // --tls
  local_tls tls;
  int requests = 600, in_flight = 4, memory_requests = 2000, redeploys = 100;
  long silence_ms = 1000, timeout_ms = 30000;
  std::vector<std::string> clocks = {"wall", "virtual"};
};

result<chaos_options> parse_chaos_options(int argc, char** argv, bool& help) {
  return parse_options<chaos_options>([&] {
    chaos_options o;
    option_reader in(argc, argv, 2, "see d3-bench chaos --help");
    while (in.next()) {
      if (in.is("--help", "-h")) {
        std::cout << chaos_usage;
        help = true;
        return o;
      }
      if (in.is("--model")) o.model = in.value();
      else if (in.is("--requests")) o.requests = int(in.integer(10, 10000000));
      else if (in.is("--in-flight")) o.in_flight = int(in.integer(1, 1000));
      else if (in.is("--clock")) {
        const std::string c = in.choice({"wall", "virtual", "both"});
        o.clocks = c == "both" ? std::vector<std::string>{"wall", "virtual"} : std::vector<std::string>{c};
      } else if (in.is("--silence-ms")) o.silence_ms = in.integer(100, 60000);
      else if (in.is("--memory-requests")) o.memory_requests = int(in.integer(0, 10000000));
      else if (in.is("--redeploys")) o.redeploys = int(in.integer(0, 100000));
      else if (in.is("--out")) o.out = in.value();
      else if (in.is("--node-binary")) o.node_binary = in.value();
      else if (in.is("--tls")) o.tls_option = in.value();
      else if (in.is("--timeout-ms")) o.timeout_ms = in.integer(1, 3600000);
      else if (in.is("--schedule")) {
        auto schedule = parse_schedule(in.value());
        if (!schedule) in.fail(schedule.message());
        else o.schedule = std::move(schedule.value());
      } else in.unknown();
    }
    if (auto resolved = resolve_local_cluster(o.node_binary, o.tls_option, o.tls); !resolved) in.fail(resolved.message());
    return o;
  });
}

// One fault of the schedule, as applied and as the deployment saw it.
struct applied_fault {
  std::string what, node;  // what: kill, freeze, resume, restart
  int at_answer = 0;
  double wall_ms = 0;      // since the deploy
  std::string error;       // applying it failed
};

struct phase_latency {
  size_t requests = 0;
  double p50 = NAN, p99 = NAN;
};

phase_latency latency_of(const std::vector<request_outcome>& outcomes, double from_ms, double to_ms, bool virtual_clock) {
  std::vector<double> ms;
  for (const request_outcome& o : outcomes)
    if (o.ok && o.wall_start_ms >= from_ms && o.wall_start_ms < to_ms)
      ms.push_back(virtual_clock ? o.virtual_latency_ms : o.latency_ms);
  return {ms.size(), percentile(ms, 0.5), percentile(ms, 0.99)};
}

std::map<std::string, double> rss_mb(const local_nodes& nodes, const std::vector<local_node_spec>& specs) {
  std::map<std::string, double> out;
  for (const local_node_spec& s : specs)
    if (auto rss = nodes.rss_bytes(s.name)) out[s.name] = double(*rss) / 1e6;
  return out;
}

struct bench_setup {
  chaos_options options;
  graph g;
  layer_profile profile;
  testbed links;
  std::vector<local_node_spec> specs;
  std::unique_ptr<executor> local;
};

// Every answer memcmp-equal to a single-process run of its input.
size_t verified(bench_setup& c, const std::vector<std::map<std::string, tensor>>& inputs,
                const std::vector<request_outcome>& outcomes) {
  size_t same = 0;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    if (!outcomes[i].ok) continue;
    std::vector<const tensor*> in;
    for (int l : c.g.input_layers()) in.push_back(&inputs[i].at(c.g.layers[size_t(l)].name));
    auto expected = c.local->run(in);
    if (!expected) continue;
    bool equal = true;
    for (size_t k = 0; k < c.g.outputs.size(); ++k) {
      auto got = outcomes[i].outputs.find(c.g.layers[size_t(c.g.outputs[k])].name);
      equal = equal && got != outcomes[i].outputs.end() && bitwise_equal(got->second, (*expected)[k]);
    }
    same += equal;
  }
  return same;
}

std::vector<std::map<std::string, tensor>> inputs_of(const graph& g, size_t count, uint64_t seed) {
  std::vector<std::map<std::string, tensor>> inputs(count);
  for (size_t i = 0; i < count; ++i)
    for (int l : g.input_layers()) inputs[i][g.layers[size_t(l)].name] = sample_input(g, l, seed + i);
  return inputs;
}

// The chaos phase and the memory phase under one clock.
// Long on purpose: the phases (start, deploy, the schedule, the report, memory) in the order they
// run, sharing the nodes and the deployment.
nlohmann::ordered_json run_clock(caf::actor_system& system, bench_setup& c, const std::string& clock) {
  nlohmann::ordered_json out = {{"clock", clock}};
  const std::string folder = c.options.out + "/nodes-" + clock;
  ::mkdir(folder.c_str(), 0755);
  auto started = local_nodes::start(c.options.node_binary, folder, c.specs, std::chrono::seconds(30), c.options.tls);
  if (!started) return out["error"] = started.message(), out;
  local_nodes& nodes = **started;
  const bool virtual_clock = clock == "virtual";
  deployment_options options;  // the wall clock: real links, unshaped
  if (virtual_clock) options = virtual_clock_options(c.links, c.options.timeout_ms);
  options.timeout = std::chrono::milliseconds(c.options.timeout_ms);
  options.silence = std::chrono::milliseconds(c.options.silence_ms);
  options.heartbeat = std::chrono::milliseconds(std::max(20L, c.options.silence_ms / 5));
  options.reconnect_every = options.heartbeat;
  deployment dep(system, options);
  if (auto s = dep.connect(nodes.endpoints()); !s) return out["error"] = s.message(), out;
  auto planned = hpa_strategy(c.g, c.profile, cluster_model::evaluation(c.links, 4));
  if (!planned) return out["error"] = planned.message(), out;
  out["plan"] = describe(planned->plan);
  if (auto d = dep.deploy(c.g, planned->plan); !d) return out["error"] = d.message(), out;
  dep.run(inputs_of(c.g, 10, 1), c.options.in_flight);  // warm-up
  out["rss_mb_start"] = rss_mb(nodes, c.specs);

  // The schedule, counted in answers, applied from inside the run (the adaptation hook).
  const int n = c.options.requests;
  std::vector<applied_fault> applied;
  std::vector<std::string> relaunched;
  int answered = 0;
  dep.set_adaptation(
      [&](const request_outcome& o) -> std::optional<deployment_plan> {
        ++answered;
        for (const scheduled_fault& planned : c.options.schedule) {
          const int at = std::max(1, n * planned.percent / 100);
          if (at != answered) continue;
          const std::string& what = planned.what;
          applied_fault f{what, planned.node, at, o.wall_start_ms + o.latency_ms, ""};
          if (what == "restart") {  // the app reconnects once it listens: no waiting here
            // A running node crashes first (SIGKILL), then starts again: a restart in a schedule
            // need not follow a kill. A node already killed is only started.
            if (nodes.running(f.node)) (void)nodes.signal(f.node, SIGKILL);
            if (auto s = nodes.relaunch(f.node); !s) f.error = s.message();
            else relaunched.push_back(f.node);
          } else if (auto s = nodes.signal(f.node, what == "kill" ? SIGKILL : what == "freeze" ? SIGSTOP : SIGCONT); !s)
            f.error = s.message();
          applied.push_back(f);
        }
        return std::nullopt;
      },
      &c.g);
  const auto inputs = inputs_of(c.g, size_t(n), 1000);
  auto outcomes = dep.run(inputs, c.options.in_flight);
  dep.set_adaptation(nullptr, nullptr);
  for (const std::string& node : relaunched)
    if (auto s = nodes.wait_relaunched(node, std::chrono::seconds(20)); !s)
      for (applied_fault& f : applied)
        if (f.what == "restart" && f.node == node) f.error = s.message();
  size_t ok = 0, twice = 0;
  std::set<uint64_t> ids;
  nlohmann::ordered_json errors = nlohmann::ordered_json::array();  // why each lost request failed
  for (const request_outcome& o : outcomes) {
    ok += o.ok;
    twice += !ids.insert(o.id).second;  // an id reported twice would be a request answered twice
    if (!o.ok) errors.push_back({{"id", o.id}, {"version", o.plan_version}, {"error", o.error}});
  }
  out["requests"] = n;
  out["in_flight"] = c.options.in_flight;
  out["answered"] = ok;
  out["lost"] = size_t(n) - ok;
  out["answered_twice"] = twice;
  out["errors"] = errors;
  out["late_duplicates_dropped"] = dep.duplicates_dropped();  // second answers of re-sent requests
  out["verified"] = verified(c, inputs, outcomes);
  for (const auto& f : dep.faults())
    out["faults"].push_back({{"node", f.node}, {"what", f.what}, {"cause", f.cause},
                             {"detected_after_ms", f.detected_after_ms}, {"failover_ms", f.recovered_ms},
                             {"to_version", f.new_version}, {"requests_resent", f.requests_resent}, {"error", f.error}});
  // Latency around each fault: 2 s before it, the 2 s after it (during), and from then to the next.
  for (size_t k = 0; k < applied.size(); ++k) {
    const double at = applied[k].wall_ms;
    const double next = k + 1 < applied.size() ? applied[k + 1].wall_ms : 1e18;
    out["schedule"].push_back({{"what", applied[k].what}, {"node", applied[k].node}, {"at_answer", applied[k].at_answer},
                               {"at_wall_ms", at}, {"error", applied[k].error}});
    for (auto [name, from, to] : {std::tuple<const char*, double, double>{"before", at - 2000, at},
                                  {"during", at, at + 2000}, {"after", at + 2000, next}}) {
      const phase_latency p = latency_of(outcomes, from, to, virtual_clock);
      out["schedule"].back()[name] = {{"requests", p.requests}, {"p50_ms", p.p50}, {"p99_ms", p.p99}};
    }
  }
  out["rss_mb_after_chaos"] = rss_mb(nodes, c.specs);

  // Memory: many requests, then many deployments of the same plan (nothing new to ship).
  if (c.options.memory_requests > 0) {
    out["rss_mb_before_requests"] = rss_mb(nodes, c.specs);
    const auto more = inputs_of(c.g, 100, 5000);
    for (int done = 0; done < c.options.memory_requests; done += 100) dep.run(more, c.options.in_flight);
    out["rss_mb_after_requests"] = rss_mb(nodes, c.specs);
  }
  if (c.options.redeploys > 0) {
    out["rss_mb_before_redeploys"] = rss_mb(nodes, c.specs);
    const deployment_plan running = dep.running_plan() ? *dep.running_plan() : planned->plan;
    out["redeployed_plan"] = describe(running);
    for (int r = 0; r < c.options.redeploys; ++r)
      if (auto d = dep.deploy(c.g, running); !d) return out["error"] = "redeploy: " + d.message(), out;
    dep.run(inputs_of(c.g, 4, 9000), 2);
    out["rss_mb_after_redeploys"] = rss_mb(nodes, c.specs);
  }
  dep.teardown();
  return out;
}

std::string markdown(const chaos_options& o, const nlohmann::ordered_json& report) {
  std::string md = "# d3-bench chaos: faults while requests flow\n\nCommand: `" + report.value("command", std::string()) +
                   "`\n\nReal d3-node processes on loopback; the wall clock measures this shared 2-core machine, the virtual "
                   "clock is EMULATED (D3's setting, WiFi scenario). Every answer compared memcmp-equal with one process.\n";
  for (const auto& run : report.at("runs")) {
    md += "\n## Clock: " + run.value("clock", std::string()) + "\n\n";
    if (run.contains("error")) {
      md += "Error: " + run.at("error").get<std::string>() + "\n";
      continue;
    }
    md += "Plan: " + run.value("plan", std::string()) + "\n\n";
    md += format("Requests %d at %d in flight: **%zu answered, %zu lost, %zu answered twice, %zu verified** (late answers "
                 "of re-sent requests dropped: %zu).\n\n",
                 run.at("requests").get<int>(), run.at("in_flight").get<int>(), run.at("answered").get<size_t>(),
                 run.at("lost").get<size_t>(), run.at("answered_twice").get<size_t>(), run.at("verified").get<size_t>(),
                 run.at("late_duplicates_dropped").get<size_t>());
    size_t listed = 0;
    for (const auto& e : run.value("errors", nlohmann::ordered_json::array()))
      if (listed++ < 10)
        md += format("- lost: request %llu (plan version %d): %s\n", (unsigned long long)e.at("id").get<uint64_t>(),
                     e.at("version").get<int>(), e.at("error").get<std::string>().c_str());
    if (listed > 0) md += "\n";
    md += "| fault | at answer | p50 / p99 before (ms) | p50 / p99 during, 2 s (ms) | p50 / p99 after (ms) |\n|---|---|---|---|---|\n";
    for (const auto& s : run.value("schedule", nlohmann::ordered_json::array())) {
      auto cell = [&](const char* k) {
        const auto& p = s.at(k);
        return format("%.1f / %.1f (%zu)", p.at("p50_ms").get<double>(), p.at("p99_ms").get<double>(),
                      p.at("requests").get<size_t>());
      };
      md += "| " + s.at("what").get<std::string>() + " " + s.at("node").get<std::string>() + " | " +
            std::to_string(s.at("at_answer").get<int>()) + " | " + cell("before") + " | " + cell("during") + " | " +
            cell("after") + " |\n";
    }
    md += "\n| node | event | cause | detected after (ms) | failover (ms) | to version | re-sent |\n|---|---|---|---|---|---|---|\n";
    for (const auto& f : run.value("faults", nlohmann::ordered_json::array()))
      md += "| " + f.at("node").get<std::string>() + " | " + f.at("what").get<std::string>() + " | " +
            f.at("cause").get<std::string>() + " | " + format("%.0f", f.at("detected_after_ms").get<double>()) + " | " +
            format("%.0f", f.at("failover_ms").get<double>()) + " | " + std::to_string(f.at("to_version").get<int>()) +
            " | " + std::to_string(f.at("requests_resent").get<size_t>()) + " |\n";
    md += "\n| node | RSS start (MB) | after chaos | before / after " + std::to_string(o.memory_requests) +
          " requests | before / after " + std::to_string(o.redeploys) + " redeploys |\n|---|---|---|---|---|\n";
    for (const auto& [node, start] : run.at("rss_mb_start").items()) {
      auto get = [&](const char* key) {
        return run.contains(key) && run.at(key).contains(node) ? format("%.1f", run.at(key).at(node).get<double>()) : "-";
      };
      md += "| " + node + " | " + format("%.1f", start.get<double>()) + " | " + get("rss_mb_after_chaos") + " | " +
            get("rss_mb_before_requests") + " / " + get("rss_mb_after_requests") + " | " + get("rss_mb_before_redeploys") +
            " / " + get("rss_mb_after_redeploys") + " |\n";
    }
  }
  return md;
}

}  // namespace

int bench_chaos(int argc, char** argv) {
  bool help = false;
  auto parsed = parse_chaos_options(argc, argv, help);
  if (auto code = stop_after_parse(parsed, help, "d3-bench chaos")) return *code;
  bench_setup c;
  c.options = parsed.value();
  auto g = load_model_by_name(c.options.model, default_model_seed);
  if (!g) return std::cerr << "d3-bench chaos: " << g.message() << "\n", 2;
  c.g = std::move(g.value());
  if (::mkdir(c.options.out.c_str(), 0755) != 0 && errno != EEXIST)
    return std::cerr << "d3-bench chaos: cannot create --out folder '" << c.options.out << "'\n", 2;
  const testbed_file bed = testbed_file::d3_setting();
  c.links = bed.with(*bed.scenario("WiFi"));
  c.specs = {{"device", "device", c.links.device_speed}};
  for (int e = 1; e <= 4; ++e) c.specs.push_back({"edge" + std::to_string(e), "edge", c.links.edge_speed});
  c.specs.push_back({"cloud", "cloud", c.links.cloud_speed});
  auto profile = measure_local_profile(c.g, 3);
  auto local = executor::create(c.g);
  if (!profile || !local) return std::cerr << "d3-bench chaos: cannot profile or run the model here\n", 1;
  c.profile = std::move(profile.value());
  c.local = std::move(local.value());

  nlohmann::ordered_json report = {{"bench", "chaos"}, {"model", c.g.name}, {"command", command_line(argc, argv)}};
  caf::actor_system_config cfg;
  configure_local_app(cfg, c.options.tls, "d3-bench chaos");
  int code = 0;
  {
    caf::actor_system system{cfg};
    for (const std::string& clock : c.options.clocks) {
      std::printf("d3-bench chaos: %s clock, %d requests at %d in flight...\n", clock.c_str(), c.options.requests,
                  c.options.in_flight);
      std::fflush(stdout);
      nlohmann::ordered_json run = run_clock(system, c, clock);
      if (run.contains("error") || run.value("lost", size_t(1)) != 0 || run.value("answered_twice", size_t(1)) != 0 ||
          run.value("verified", size_t(0)) != run.value("answered", size_t(1)))
        code = 1;
      report["runs"].push_back(run);
    }
  }
  std::ofstream(c.options.out + "/chaos.json") << report.dump(2) << "\n";
  const std::string md = markdown(c.options, report);
  std::ofstream(c.options.out + "/chaos.md") << md;
  std::cout << md << "\n" << report.dump() << "\n";
  return code;
}

}  // namespace d3
