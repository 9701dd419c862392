// d3-bench plan: HPA's planning time per model and uplink.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "apps/bench_support.hpp"
#include "apps/app_support.hpp"
#include "apps/child_process.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "kernels/reference.hpp"
#include "kernels/tile_executor.hpp"
#include "kernels/tiling.hpp"
#include "planner/cost_model.hpp"
#include "planner/profile.hpp"
#include "planner/three_tier_space.hpp"
#include "onnx/onnx_import.hpp"

namespace d3 {

namespace {

const char* plan_usage = R"(usage: d3-bench plan [options]

How long planning takes: for each model and uplink of the evaluation testbed (device 0.1, 4 edges
0.5, cloud 4), HPA (planner/three_tier_space.hpp) plans on a FLOP profile (100 GFLOP/s) on one
thread, --repeat times after one warm-up; prints one JSON object per row with the median and
minimum milliseconds and the plan's predicted latency. The goal: googlenet <= 5 ms.

  --models LIST       comma-separated built-in models (default: the five)
  --uplinks LIST      CAT1,3G,4G,WiFi (default: all)
  --repeat R          timed plannings per row (default 20)
  --help              this text
)";

}  // namespace

int bench_plan(int argc, char** argv) {
  std::vector<std::string> models = d3::builtin_model_names(), uplinks = {"CAT1", "3G", "4G", "WiFi"};
  int repeat = 20;
  bool help = false;
  read_bench_options(argc, argv, "see d3-bench plan --help", [&](option_reader& in) {
    if (in.is("--help", "-h")) help = true;
    else if (in.is("--models")) models = split_list(in.value());
    else if (in.is("--uplinks")) uplinks = split_list(in.value());
    else if (in.is("--repeat")) repeat = int(in.integer(1, 100000));
    else in.unknown();
  });
  if (help) {
    std::cout << plan_usage;
    return 0;
  }
  for (const std::string& name : models) {
    auto g = d3::builtin_model(name);
    if (!g) bench_fail(bench_exit_bad_input, g.message());
    const d3::layer_profile profile = d3::profile_from_flops(g.value(), 100.0);
    for (const std::string& uplink : uplinks) {
      auto t = d3::testbed::with_uplink(uplink);
      if (!t) bench_fail(bench_exit_bad_input, t.message());
      const d3::cluster_model cluster = d3::cluster_model::evaluation(t.value(), 4);
      std::vector<double> ms;
      double predicted = 0;
      for (int r = 0; r <= repeat; ++r) {
        const auto start = std::chrono::steady_clock::now();
        auto planned = d3::hpa_strategy(g.value(), profile, cluster);
        const double took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        if (!planned) bench_fail(bench_exit_failed, name + " " + uplink + ": " + planned.message());
        predicted = planned->prediction.latency_ms;
        if (r > 0) ms.push_back(took);
      }
      std::sort(ms.begin(), ms.end());
      std::printf("{\"model\": \"%s\", \"uplink\": \"%s\", \"layers\": %zu, \"repeat\": %d, \"median_ms\": %.3f, "
                  "\"min_ms\": %.3f, \"predicted_ms\": %.2f}\n",
                  name.c_str(), uplink.c_str(), g->layers.size(), repeat, ms[ms.size() / 2], ms.front(), predicted);
      std::fflush(stdout);
    }
  }
  return 0;
}


}  // namespace d3
