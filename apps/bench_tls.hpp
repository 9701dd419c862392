// d3-bench tls: what mutual TLS costs. The same plan deployed on two local clusters of d3-node
// processes, one with TLS and one without, next to a single-process run of the same inputs:
// requests alternate among the three, one at a time, wall clock, unshaped loopback links.
#pragma once

namespace d3 {

// Runs `d3-bench tls ...` (argv[1] is "tls"); the exit code: 0 done and every answer memcmp-equal
// to the single-process run, 1 a failure or a differing answer, 2 bad input.
int bench_tls(int argc, char** argv);

}  // namespace d3
