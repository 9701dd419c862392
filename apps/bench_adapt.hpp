// d3-bench adapt: live adaptation under a changing uplink (an emulation trace), on real d3-node
// processes under the virtual clock: the planner actor's partial adjustment against a full
// re-partition that redeploys everything, and against the per-step optimum deployed statically.
#pragma once

namespace d3 {

// Runs `d3-bench adapt ...` (argv[1] is "adapt"); returns the process exit code: 0 done, 1 an
// answer differed or a request or deployment failed, 2 bad input.
int bench_adapt(int argc, char** argv);

}  // namespace d3
