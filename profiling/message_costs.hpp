// Measuring what moving tensors costs this machine's CPU (planner/profile.hpp: message_costs):
// tensor bundles encoded and decoded (schema/bundle.hpp) and regions copied as scatter and gather
// stages copy them, timed in thread CPU time at two payload sizes and fitted per message and per
// MB. No actors: the node's profile probe and the apps' local profiles both use it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "kernels/tensor.hpp"
#include "planner/profile.hpp"

namespace d3 {

// Medians over `repeats` (>= 1) of each operation at 64 KB and 1 MB, on the calling thread, in
// milliseconds of thread CPU time (speed 1: divide by a node's speed for its clock).
result<message_costs> measure_message_costs(int repeats = 5);

// measure_profile (planner/profile.hpp) with the message costs, the codecs' ratios and the tiles'
// overheads (profiling/tile_overhead.hpp) measured too: the whole profile of this machine at
// speed 1, as the apps plan with when they do not probe the nodes.
result<layer_profile> measure_local_profile(const graph& g, int repeats);

// Every field divided by `speed` (> 0).
message_costs at_speed(const message_costs& costs, double speed);

// Each field's median over `samples` (several measurements of one node); zero when empty.
message_costs median_of(const std::vector<message_costs>& samples);

// Every tensor of one run of `g` (prepared) on its sample input (kernels: sample_input), by
// name: each layer's output and each graph input.
result<std::map<std::string, tensor>> tensors_of_sample_run(const graph& g);

// Fills profile.encoded_fraction from tensors_of_sample_run: each codec's encoded size of every
// layer's output and of every graph input.
status measure_codec_ratios(const graph& g, layer_profile& profile);
// The same on tensors_of_sample_run(g)'s result, computed once by the caller.
status measure_codec_ratios(const graph& g, const std::map<std::string, tensor>& tensors, layer_profile& profile);

}  // namespace d3
