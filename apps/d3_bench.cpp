// d3-bench: benchmarks that print JSON. Subcommands:
//   engine   d3 against ONNX Runtime on the same ONNX files, runs alternating, one process each
//            (apps/bench_engine.cpp).
//   tiling   vertical separation: halo FLOP overhead and the summed time of a run's tiles against
//            the same run untiled, on one thread (apps/bench_tiling.cpp).
//   grid     the evaluation grid: models x uplinks x strategies deployed on d3-node processes under
//            the virtual clock (apps/bench_grid.cpp).
//   adapt    live adaptation under a trace: partial adjustment against a full re-partition and the
//            per-step optimum (apps/bench_adapt.cpp).
//   regimes  where three tiers pay: hpa over the best two-tier baseline across bandwidths and
//            device speeds, on the cost model, with measured points (apps/bench_regimes.cpp).
//   plan     HPA's planning time per model and uplink (apps/bench_plan.cpp).
//   codecs   the wire codecs on every tensor of a model: ratios and speeds (apps/bench_codecs.cpp).
//   chaos    faults while requests flow, and memory over time (apps/bench_chaos.cpp).
//   tls      what mutual TLS costs: TLS and plaintext clusters next to one process (apps/bench_tls.cpp).
//   realnet  a cluster in network namespaces: measured against the virtual clock and the cost model
//            (apps/bench_realnet.cpp).
#include <iostream>
#include <string>

#include "kernels/memory.hpp"
#include "apps/bench_adapt.hpp"
#include "apps/bench_chaos.hpp"
#include "apps/bench_grid.hpp"
#include "apps/bench_realnet.hpp"
#include "apps/bench_regimes.hpp"
#include "apps/bench_support.hpp"
#include "apps/bench_tls.hpp"

namespace {

const char* usage = R"(usage: d3-bench SUBCOMMAND [options]   (d3-bench SUBCOMMAND --help for each)

  engine   d3 against ONNX Runtime on the same ONNX files, runs alternating
  tiling   vertical separation: halo FLOP overhead and tiled against untiled time
  grid     the evaluation grid: models x scenarios x strategies on d3-node processes
  adapt    live adaptation under a trace: partial adjustment, full re-partition, optimum
  regimes  where three tiers pay, across bandwidths and device speeds
  plan     HPA's planning time per model and uplink
  codecs   the wire codecs on every tensor of a model: ratios, speeds, round trips checked
  chaos    nodes killed, frozen, resumed and restarted while requests flow; memory over time
  tls      what mutual TLS costs: a TLS and a plaintext cluster next to one process, alternating
  realnet  a cluster in network namespaces: measured, virtual clock and cost model per plan

Exit codes: 0 done, 1 a failure (an engine, a deployment, an answer), 2 bad input.
)";

int dispatch(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "engine") return d3::bench_engine(argc, argv);
  if (command == "tiling") return d3::bench_tiling(argc, argv);
  if (command == "grid") return d3::bench_grid(argc, argv);
  if (command == "adapt") return d3::bench_adapt(argc, argv);
  if (command == "regimes") return d3::bench_regimes(argc, argv);
  if (command == "plan") return d3::bench_plan(argc, argv);
  if (command == "codecs") return d3::bench_codecs(argc, argv);
  if (command == "chaos") return d3::bench_chaos(argc, argv);
  if (command == "tls") return d3::bench_tls(argc, argv);
  if (command == "realnet") return d3::bench_realnet(argc, argv);
  if (command == "--help" || command == "-h" || command.empty()) {
    std::cout << usage;
    return command.empty() ? d3::bench_exit_bad_input : 0;
  }
  d3::bench_fail(d3::bench_exit_bad_input,
                 "unknown benchmark '" + command + "' (available: engine, tiling, grid, adapt, regimes, plan, codecs, chaos, tls, realnet; see --help)");
}

}  // namespace

int main(int argc, char** argv) {
  d3::retain_freed_memory();
  try {
    return dispatch(argc, argv);
  } catch (const d3::bench_failure& f) {
    std::cerr << "d3-bench: " << f.message << "\n";
    return f.code;
  }
}
