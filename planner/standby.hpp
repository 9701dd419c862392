// Standby copies: which weights to copy ahead of need onto nodes that do not run them, so that a
// later migration (a link or node change, a node lost) can move work there without shipping.
// A migration that must ship weights waits for them to cross the links (resnet18's edge part
// over a 100 Mbit/s LAN: ~4 s; alexnet's fully connected layers: ~19 s), often longer than the
// change lasts; a copy sent beforehand, as background traffic in the links' idle time, costs no
// request anything, only link bytes: hence few copies, on the LAN only by default. Pure logic on
// the model graph and the plan.
#pragma once

#include <map>
#include <set>
#include <string>

#include "kernels/graph.hpp"
#include "plan/plan.hpp"
#include "planner/cost_model.hpp"

namespace d3 {

struct standby_options {
  // Edge nodes that get a copy of what each node off the app's node runs (its "buddies": the
  // edge nodes after it in name order, cyclically; for a cloud node, from the first edge node).
  // 0: every other edge node, so that any edges that slow down or fail together leave copies on
  // the rest (measured: one buddy each, an edge and its buddy slowing at once left resnet18's
  // part nowhere but on them, and 47 MB crossed the LAN in the middle of the change).
  int edge_replicas = 0;
  // Whether the cloud also gets what the edge nodes run (it can then take their work when the
  // LAN or the edges degrade), at the price of those bytes over the backbone.
  bool cloud = false;
  // At most this many weight bytes of standby copies per node (what the plan runs there does not
  // count); layers are taken in graph order until the next would exceed it. The default holds
  // the edge part of alexnet (fully connected layers included: 245 MB), resnet18 or googlenet
  // (47 and 26 MB): a copy of what an edge runs comes from that edge over the edge-edge link
  // (deployment::prestage; in D3's setting 1 Gbit/s, alexnet's part in 2 s), not VGG16's 480 MB
  // of fully connected layers.
  size_t max_bytes_per_node = size_t(256) << 20;
};

// For every node of `cluster`, the weighted layers of g it should hold besides the ones `plan`
// runs on it: the app's node (requests start there; a copy crosses no link) every layer; what
// the app's node runs, the first edge node (in name order); each
// node off the app's node that runs layers has them copied onto `edge_replicas` other edge nodes
// (all by default)
// (an edge that slows down or is lost hands its work to a buddy; when the backbone degrades, the
// cloud's work moves to an edge); with `cloud`, the cloud gets every layer the edges run. Tiles
// of one run already hold the same weights: a tile node's buddy among them copies nothing. Nodes
// with nothing to add are left out. Precondition: `plan` builds a stage graph on g (else the
// result is empty).
std::map<std::string, std::set<int>> standby_copies(const graph& g, const deployment_plan& plan,
                                                    const cluster_model& cluster, const standby_options& options = {});

}  // namespace d3
