// d3-bench grid: the evaluation grid (models x uplinks x strategies) deployed on real d3-node
// processes under the virtual clock, with CSV, Markdown and gnuplot outputs and a CI check.
#pragma once

namespace d3 {

// Runs `d3-bench grid ...` (argv[1] is "grid"); returns the process exit code: 0 done, 1 an
// answer differed or failed, a deployment failed or --check failed, 2 bad input.
int bench_grid(int argc, char** argv);

}  // namespace d3
