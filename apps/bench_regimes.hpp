// d3-bench regimes: where three tiers pay. hpa's predicted speedup over the best two-tier baseline
// across link bandwidths and device speeds (node-probed profiles), as heatmaps with the 3.4x
// contour, and points of the map measured on real d3-node processes (virtual clock).
#pragma once

namespace d3 {

// Runs `d3-bench regimes ...` (argv[1] is "regimes"); returns the process exit code: 0 done, 1 a
// measured answer differed or failed or outputs could not be written, 2 bad input.
int bench_regimes(int argc, char** argv);

}  // namespace d3
