// d3-bench realnet: the emulation and the cost model checked against a real cluster. The plans of
// hpa and of the baselines run on a cluster of d3-node processes in network namespaces
// (scripts/netns-cluster.sh: bandwidth shaped by tc, speeds as cgroup cpu quotas) with the wall
// clock, d3 adding only the one-way latency the kernel cannot (no netem); the same plans on the
// same nodes under the virtual clock (d3's emulation of the testbed); and the cost model's
// prediction with the same scaled speeds. Per plan: measured, virtual and predicted latency and
// their errors, as JSON and a Markdown report (scripts/realnet.sh runs it per scenario).
#pragma once

namespace d3 {

// Runs `d3-bench realnet ...` (argv[1] is "realnet"); returns the process exit code: 0 done,
// 1 an answer differed or failed, or a deployment failed, 2 bad input.
int bench_realnet(int argc, char** argv);

}  // namespace d3
