#include "apps/bench_tls.hpp"

#include <sys/stat.h>

#include <chrono>
#include <array>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "actors/deployment.hpp"
#include "actors/protocol.hpp"
#include "apps/bench_support.hpp"
#include "apps/local_nodes.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "plan/plan.hpp"

namespace d3 {

namespace {

const char* const tls_usage = R"(usage: d3-bench tls [options]

What mutual TLS costs: the same plan deployed on two local clusters of d3-node processes
(device, edge1, edge2, cloud on 127.0.0.1), one with TLS (the cluster's certificates) and one
without (tls=false), next to a single-process run (d3::executor, one thread) of the same inputs.
Each round runs one request on each of the three, one at a time, in a rotating order; wall clock,
unshaped loopback links. Every answer is compared memcmp with the single-process one.

  --model NAME|FILE     built-in model, d3 model file or ONNX file (default resnet18)
  --plan FILE           the plan (JSON); default for resnet18: device conv1..maxpool, layer1..
                        layer2 tiled 2x1 over edge1 and edge2, cloud layer3..fc (the demo's plan)
  --rounds N            timed rounds (default 60)
  --warmup N            untimed requests on each before (default 5)
  --node-binary PATH    d3-node (default: next to d3-bench)
  --tls DIR             the TLS cluster's certificates (scripts/make-certs.sh; default: build/certs)
  --out DIR             writes tls.json and the nodes' logs (default tls-results)
  --timeout-ms T        timeout of every deployment step and answer (default 30000)
  --help                this text

Output: medians and p90 of each, the ratios of medians, and the median of the per-round ratios;
then one JSON line with the figures.
)";

struct tls_bench_options {
  std::string model = "resnet18", plan_file, out = "tls-results", node_binary, tls_option;
  local_tls tls;
  int rounds = 60, warmup = 5;
  long timeout_ms = 30000;
  std::string command;
};

tls_bench_options parse_options(int argc, char** argv, bool& help) {
  tls_bench_options o;
  o.command = command_line(argc, argv);
  read_bench_options(argc, argv, "see d3-bench tls --help", [&](option_reader& in) {
    if (in.is("--help", "-h")) help = true;
    else if (in.is("--model")) o.model = in.value();
    else if (in.is("--plan")) o.plan_file = in.value();
    else if (in.is("--rounds")) o.rounds = int(in.integer(1, 1000000));
    else if (in.is("--warmup")) o.warmup = int(in.integer(0, 10000));
    else if (in.is("--node-binary")) o.node_binary = in.value();
    else if (in.is("--tls")) o.tls_option = in.value();
    else if (in.is("--out")) o.out = in.value();
    else if (in.is("--timeout-ms")) o.timeout_ms = in.integer(1, 3600000);
    else in.unknown();
  });
  if (help) return o;
  if (o.tls_option == "false") bench_fail(bench_exit_bad_input, "--tls false: this benchmark compares TLS with plaintext");
  if (auto s = resolve_local_cluster(o.node_binary, o.tls_option, o.tls); !s) bench_fail(bench_exit_bad_input, s.message());
  if (o.plan_file.empty() && o.model != "resnet18") bench_fail(bench_exit_bad_input, "--plan FILE is needed for " + o.model);
  return o;
}

deployment_plan demo_plan() {
  deployment_plan plan;
  plan.segments = {{"device", "conv1", "maxpool"}, {"edge1", "layer1.0.conv1", "layer2.1.add"}, {"cloud", "layer3.0.conv1", "fc"}};
  plan_tiled_run run;
  run.first = "layer1.0.conv1";
  run.last = "layer2.1.add";
  run.grid = "2x1";
  run.nodes = {"edge1", "edge2"};
  plan.tiled_runs.push_back(run);
  return plan;
}

// One side of the comparison: a cluster, the app's actor system for it and the deployment.
struct cluster_side {
  std::string name;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> system;
  std::unique_ptr<local_nodes> nodes;
  std::unique_ptr<deployment> dep;
  std::vector<double> ms;
  // Per stage id, per timed request: ready and finish (ms since the request left the app), the
  // kernels' CPU ms and the ms spent decoding inputs and encoding outputs.
  std::map<int, std::array<std::vector<double>, 4>> stage_ms;
};

void start_side(cluster_side& side, const tls_bench_options& o, const local_tls& tls, const graph& g,
                const deployment_plan& plan) {
  const std::string folder = o.out + "/nodes-" + side.name;
  ::mkdir(folder.c_str(), 0755);
  const std::vector<local_node_spec> specs = {{"device", "device", 1.0}, {"edge1", "edge", 1.0}, {"edge2", "edge", 1.0},
                                              {"cloud", "cloud", 1.0}};
  auto started = local_nodes::start(o.node_binary, folder, specs, std::chrono::seconds(30), tls);
  if (!started) bench_fail(bench_exit_failed, side.name + " cluster: " + started.message());
  side.nodes = std::move(started.value());
  configure_local_app(side.cfg, tls, "d3-bench tls (" + side.name + " cluster)");
  side.system = std::make_unique<caf::actor_system>(side.cfg);
  deployment_options options;  // wall clock, unshaped
  options.timeout = std::chrono::milliseconds(o.timeout_ms);
  side.dep = std::make_unique<deployment>(*side.system, options);
  if (auto s = side.dep->connect(side.nodes->endpoints()); !s) bench_fail(bench_exit_failed, side.name + ": " + s.message());
  if (auto d = side.dep->deploy(g, plan); !d) bench_fail(bench_exit_failed, side.name + ": " + d.message());
}

nlohmann::ordered_json summary(const std::vector<double>& ms) {
  return {{"median_ms", median(ms)}, {"p90_ms", percentile(ms, 0.9)}, {"requests", ms.size()}};
}

}  // namespace

int bench_tls(int argc, char** argv) {
  bool help = false;
  const tls_bench_options o = parse_options(argc, argv, help);
  if (help) {
    std::cout << tls_usage;
    return 0;
  }
  if (auto s = make_folder(o.out); !s) bench_fail(bench_exit_bad_input, "--out: " + s.message());
  auto model = load_model_by_name(o.model, default_model_seed);
  if (!model) bench_fail(bench_exit_bad_input, model.message());
  const graph& g = model.value();
  deployment_plan plan = demo_plan();
  if (!o.plan_file.empty()) {
    auto loaded = load_plan_file(o.plan_file);
    if (!loaded) bench_fail(bench_exit_bad_input, loaded.message());
    plan = loaded.value();
  }
  auto local = executor::create(g);
  if (!local) bench_fail(bench_exit_failed, local.message());

  std::printf("d3-bench tls: %s, plan %s; %d rounds of one request each on: one process, the TLS cluster, the "
              "plaintext cluster (rotating order); wall clock, unshaped loopback\n",
              g.name.c_str(), describe(plan).c_str(), o.rounds);
  std::fflush(stdout);
  cluster_side secure, plain;
  secure.name = "tls";
  plain.name = "plaintext";
  local_tls off;
  off.enabled = false;
  start_side(secure, o, o.tls, g, plan);
  start_side(plain, o, off, g, plan);

  std::vector<double> single_ms, tls_over_single, tls_over_plain;
  size_t differing = 0, failed = 0;
  // One round: the same input (seed `seed`) on the three, in the order rotated by `rotation`
  // (0 one process, 1 TLS, 2 plaintext). The single-process answer, whenever it ran, is the one
  // the other two are compared with; per-round ratios count only rounds where all three answered.
  auto round = [&](uint64_t seed, int rotation, bool timed) {
    std::map<std::string, tensor> input;
    std::vector<const tensor*> in;
    for (int l : g.input_layers()) input[g.layers[size_t(l)].name] = sample_input(g, l, seed);
    for (int l : g.input_layers()) in.push_back(&input.at(g.layers[size_t(l)].name));
    std::vector<tensor> expected;
    double ms[3] = {0, 0, 0};
    std::vector<request_outcome> answers[3];
    for (int k = 0; k < 3; ++k) {
      const int which = (rotation + k) % 3;
      if (which == 0) {
        const auto start = std::chrono::steady_clock::now();
        auto out = (*local)->run(in);
        ms[0] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        if (!out) bench_fail(bench_exit_failed, "single process: " + out.message());
        expected = std::move(out.value());
      } else {
        answers[which] = (which == 1 ? secure : plain).dep->run({input}, 1);
      }
    }
    bool all_answered = true;
    for (int which : {1, 2}) {
      cluster_side& side = which == 1 ? secure : plain;
      const request_outcome& r = answers[which].front();
      if (!r.ok) {
        ++failed;
        all_answered = false;
        std::fprintf(stderr, "d3-bench tls: %s cluster: %s\n", side.name.c_str(), r.error.c_str());
        continue;
      }
      for (size_t k = 0; k < g.outputs.size(); ++k) {
        auto got = r.outputs.find(g.layers[size_t(g.outputs[k])].name);
        differing += got == r.outputs.end() || !bitwise_equal(got->second, expected[k]);
      }
      ms[which] = r.latency_ms;
      if (!timed) continue;
      side.ms.push_back(r.latency_ms);
      for (const stage_report& s : r.stage_reports) {
        auto& per = side.stage_ms[s.stage_id];
        per[0].push_back(s.ready_ms - r.wall_start_ms);
        per[1].push_back(s.finish_ms - r.wall_start_ms);
        per[2].push_back(s.cpu_ms);
        per[3].push_back(s.messages_ms);
      }
    }
    if (!timed) return;
    single_ms.push_back(ms[0]);
    if (all_answered) {
      tls_over_single.push_back(ms[1] / ms[0]);
      tls_over_plain.push_back(ms[1] / ms[2]);
    }
  };
  for (int w = 0; w < o.warmup; ++w) round(uint64_t(w) + 1, 0, false);
  for (int r = 0; r < o.rounds; ++r) round(1000 + uint64_t(r), r % 3, true);
  const double single = median(single_ms), with_tls = median(secure.ms), without = median(plain.ms);
  std::printf("one process          median %7.2f ms  p90 %7.2f ms\n", single, percentile(single_ms, 0.9));
  std::printf("distributed, TLS     median %7.2f ms  p90 %7.2f ms  (%.3fx one process)\n", with_tls,
              percentile(secure.ms, 0.9), with_tls / single);
  std::printf("distributed, no TLS  median %7.2f ms  p90 %7.2f ms  (%.3fx one process)\n", without,
              percentile(plain.ms, 0.9), without / single);
  // Where the distributed time goes: each stage's medians (its clock mapped onto the app's
  // through the heartbeats' offset estimate, so ready/finish carry that estimate's error).
  for (cluster_side* side : {&secure, &plain}) {
    std::printf("stages, %s cluster (medians; ready/finish: ms after the request left the app):\n", side->name.c_str());
    for (const stage& st : side->dep->stages().stages) {
      auto per = side->stage_ms.find(st.id);
      if (per == side->stage_ms.end()) continue;
      std::printf("  stage %d %-8s on %-6s ready %6.2f  finish %6.2f  kernels %6.2f  messages %5.2f\n", st.id,
                  to_string(st.kind), st.node.c_str(), median(per->second[0]), median(per->second[1]),
                  median(per->second[2]), median(per->second[3]));
    }
  }
  std::printf("TLS / no TLS %.3fx (ratio of medians), %.3fx (median of per-round ratios); answers: %zu differing, %zu "
              "failed\n",
              with_tls / without, median(tls_over_plain), differing, failed);
  nlohmann::ordered_json report = {{"bench", "tls"},
                                   {"model", g.name},
                                   {"plan", describe(plan)},
                                   {"command", o.command},
                                   {"rounds", o.rounds},
                                   {"single_process", summary(single_ms)},
                                   {"distributed_tls", summary(secure.ms)},
                                   {"distributed_plaintext", summary(plain.ms)},
                                   {"tls_over_single", with_tls / single},
                                   {"plaintext_over_single", without / single},
                                   {"tls_over_plaintext", with_tls / without},
                                   {"tls_over_single_per_round_median", median(tls_over_single)},
                                   {"tls_over_plaintext_per_round_median", median(tls_over_plain)},
                                   {"answers_differing", differing},
                                   {"answers_failed", failed}};
  std::ofstream(o.out + "/tls.json", std::ios::trunc) << report.dump(2) << "\n";
  std::printf("%s\n", report.dump().c_str());
  secure.dep.reset();
  plain.dep.reset();
  return differing == 0 && failed == 0 ? 0 : bench_exit_failed;
}

}  // namespace d3
