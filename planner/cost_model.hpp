// Predicted end-to-end latency and per-link bytes of a deployment, before deploying it: the stage
// graph (plan/plan.hpp) replayed with the emulated testbed's arithmetic (emulation/emulation.hpp),
// the same arithmetic the runtime's virtual clock applies to real measurements. A stage starts
// when its last input has arrived at its node and the node is free; it takes, divided by the
// node's speed: its layers' profile time (a tile: each layer's time scaled by the share of the
// layer's output the tile computes, halo included, plus the overhead the planning profile measured
// for tiles of that layer: layer_profile::tile_cost), decoding each bundle it receives (one per
// producer stage), a scatter's or gather's region copies, and encoding each bundle it sends (one
// per destination stage, one to the app), per message and per byte as the node's profile
// measured them (planner/profile.hpp: message_costs). A tensor crosses each link once per
// destination node, queued in order on that link, and takes at least the receiving node's
// transport work (message_costs::receive_ms_per_mb, pipelined with the link: link_clock); the
// app's inputs to a stage on the app's node cross an unshaped link at that work (the app is a
// process of its own); the result returns to the app's node, received at that node's cost (from a
// stage on the app's node: for free).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "emulation/emulation.hpp"
#include "plan/plan.hpp"
#include "planner/profile.hpp"

namespace d3 {

// A node's compute: layer l takes profile[l] / speed, where profile is the node's own measured
// profile when it has one (probed on the node, already at the speed it ran at; speed then starts
// at 1 and moves only when the node is seen to speed up or slow down) and the planning profile
// (speed 1, e.g. measured in the planning process) otherwise.
struct cluster_node {
  node_role role = node_role::edge;
  double speed = 1.0;
  std::shared_ptr<const layer_profile> measured;  // optional

  const layer_profile& profile_or(const layer_profile& planning) const { return measured ? *measured : planning; }
};

struct cluster_model {
  std::map<std::string, cluster_node> nodes;  // by name
  testbed links;                              // link profiles by role pair
  std::string app_node = "device";            // where requests start and results return

  // The evaluation testbed: device, edge1..edgeK, cloud with the testbed's speeds.
  static cluster_model evaluation(const testbed& t, int edge_nodes = 4);
};

// One line for logs: "LAN 100 Mbit/s 2 ms; edge-edge ...; backbone ...; device-cloud ...; speeds
// cloud 4 device 0.1 ..." (device-cloud only where the testbed has its own entry).
std::string describe(const cluster_model& cluster);

struct plan_prediction {
  double latency_ms = 0;
  std::vector<link_bytes> bytes;      // per (from node, to node)
  std::vector<double> stage_finish_ms;  // per stage
};

// Bytes `tensor` (a layer's output or a tile part of one) takes on a link encoded with `codec`,
// by the profile's measured ratio of that layer (raw bytes where unmeasured or not applicable).
double encoded_bytes(const graph& g, const stage_graph& sg, const layer_profile& profile, const std::string& tensor,
                     tensor_codec codec);

// Encoded crossings (sg.codecs) are priced by encoded_bytes on the link and by the codecs' work
// (message_costs) on the sending and receiving nodes.
// Errors name a stage whose node the cluster lacks.
result<plan_prediction> predict_plan(const graph& g, const stage_graph& stages, const layer_profile& profile,
                                     const cluster_model& cluster);

}  // namespace d3
