// Per-layer compute profiles: what each layer costs on one core of the machine that measured it
// (speed 1.0). A node of speed s takes ms / s (the emulated testbed's model).
#pragma once

#include <vector>

#include "kernels/graph.hpp"
#include "kernels/status.hpp"

namespace d3 {

struct layer_profile {
  std::vector<double> milliseconds;  // per layer index; 0 for input layers
  double total() const;
};

// Median over `repeats` single-threaded runs of the whole graph (after one warm-up) of each
// layer's time. Precondition: g prepared.
result<layer_profile> measure_profile(const graph& g, int repeats = 5);

// A profile from FLOPs alone at `gflop_per_s` (for tests and planning before a measurement).
layer_profile profile_from_flops(const graph& g, double gflop_per_s);

}  // namespace d3
