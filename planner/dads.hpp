// DADS (Hu et al., INFOCOM 2019): the latency-optimal two-tier split of a DAG model as a minimum
// s-t cut. Source = the device, sink = the server (the cloud in the paper); a vertex per layer; arc s->v costs v's cloud time
// (plus returning v's output to the device when v is a graph output), v->t costs v's device time,
// u->w costs the transfer of u's output over the device->cloud path; a layer with several
// readers gets an auxiliary vertex so its output is paid once. Infinite reverse arcs keep data
// moving forward only: the device side is closed under predecessors.
#pragma once

#include <vector>

#include "planner/strategies.hpp"

namespace d3 {

// The layers DADS places on the device (a set closed under predecessors; graph inputs included),
// as a flag per layer index, and the cut's value (its own additive latency model, in ms).
struct dads_cut {
  std::vector<bool> on_device;
  double cut_ms = 0;
};
// The server is the sink: "cloud" in the paper's setting, or an edge node (device|edge variant).
result<dads_cut> dads_min_cut(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                              const std::string& server = "cloud");

// The deployable plan of the cut: device segment then server segment, with an explicit layer order
// when the device set is not a prefix of the graph's topological order. Plan strategy "dads".
result<planned> dads_strategy(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                              const std::string& server = "cloud");

}  // namespace d3
