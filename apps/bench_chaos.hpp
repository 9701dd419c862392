// d3-bench chaos: faults (kill, freeze, resume, restart) while requests flow over real d3-node
// processes, and the nodes' memory over many requests and redeployments.
#pragma once

namespace d3 {

// Runs `d3-bench chaos ...` (argv[1] is "chaos"); the exit code: 0 every request answered once and
// verified, 1 a request lost or differing, or a step failed, 2 bad input.
int bench_chaos(int argc, char** argv);

}  // namespace d3
