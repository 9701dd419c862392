// Plans chosen on the cost model (planner/cost_model.hpp). Each strategy returns a deployment plan
// (plan/plan.hpp) over the nodes of a cluster model; the runtime deploys any of them the same
// way, so they are compared on the same cost model and the same runtime.
//
// Plan space of the searches here: the model's computed layers in topological order cut at two
// positions 0 <= i <= j <= n into device [0, i), edge [i, j) and cloud [j, n) (data only moves
// forward through the tiers; an empty tier is skipped). DAG tensors that cross a cut are paid once
// per destination node; a tensor from the device to the cloud goes over the uplink and the backbone.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "plan/plan.hpp"
#include "planner/codec_choice.hpp"
#include "planner/cost_model.hpp"

namespace d3 {

struct planned {
  deployment_plan plan;
  plan_prediction prediction;
};

// Everything on one node (device-only, edge-only, cloud-only).
result<planned> single_node_strategy(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                                     const std::string& node);

// The edge node a two-tier baseline uses as its server, and HPA's edge segment: the one that runs
// the whole model fastest on the cost model (its own profile over its speed); among equals "edge2"
// before "edge10". Errors when the cluster has no edge node.
result<std::string> fastest_edge_node(const graph& g, const layer_profile& profile, const cluster_model& cluster);

// Neurosurgeon (ASPLOS 2017): two tiers, the device then a server, the best single split point of
// the model's layer order. The server is "cloud" in the paper's setting; an edge node gives the
// device|edge variant (Edgent's setting, without early exit).
result<planned> neurosurgeon_strategy(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                                      const std::string& server = "cloud");

// DeepThings-style Fused Tile Partitioning (TCAD 2018): every layer on the edge cluster; a run of
// layers from the first one is fused and tiled over all edge nodes of the cluster (a near-square
// grid: 2 -> 2x1, 4 -> 2x2), the rest runs on edge1. The fusing depth (where the tiled run ends)
// is the one with the lowest predicted latency, including no tiling at all.
result<planned> ftp_strategy(const graph& g, const layer_profile& profile, const cluster_model& cluster);

// The best untiled three-tier partition (device, "edge1", cloud), by exhaustive search over both
// cut positions: O(n^2) cost-model evaluations.
result<planned> three_tier_exhaustive(const graph& g, const layer_profile& profile, const cluster_model& cluster);

// Every strategy by name, in the order benchmarks list them: "hpa"; the two-tier partitioners with
// the cloud as the server (their papers' setting), "neurosurgeon" and "dads", and with the fastest
// edge node as the server, "neurosurgeon-edge" and "dads-edge"; "ftp" (DeepThings, the edge cluster
// alone); "device", "edge" (the fastest edge node), "cloud"; then "three-tier" (untiled
// exhaustive).
const std::vector<std::string>& strategy_names();
// The baselines HPA is measured against: every strategy but "hpa" and "three-tier".
const std::vector<std::string>& baseline_names();
// The two-tier partitioners: neurosurgeon, dads, neurosurgeon-edge, dads-edge ("best two-tier" in
// reports is the best of these four).
const std::vector<std::string>& two_tier_names();
// The baselines whose data goes to the cloud in their papers' setting: neurosurgeon, dads, cloud.
const std::vector<std::string>& cloud_bound_names();

// The plan strategy `name` picks on the cost model; the plan's `strategy` field is `name`.
// With `codecs`, the plan's tensors are encoded where choose_codecs predicts it faster
// (planner/codec_choice.hpp); hpa then searches with codec-priced plans (hpa_options::codecs), the
// others keep their partition and only gain the codecs. Errors name an unknown strategy or why
// the strategy found no plan.
result<planned> plan_with_strategy(const std::string& name, const graph& g, const layer_profile& profile,
                                   const cluster_model& cluster, const codec_choice_options* codecs = nullptr);

// A strategy name with this suffix ("hpa+codecs") asks the benchmarks for that strategy with codecs
// (plan_with_strategy's `codecs`).
constexpr const char* codecs_suffix = "+codecs";
inline bool with_codecs_suffix(const std::string& s) {
  return s.size() > 7 && s.compare(s.size() - 7, 7, codecs_suffix) == 0;
}
inline std::string without_codecs_suffix(const std::string& s) {
  return with_codecs_suffix(s) ? s.substr(0, s.size() - 7) : s;
}

// A near-square grid of k tiles with at least as many rows as columns ("2x1", "3x1", "2x2"):
// rows cut the feature maps where they are tallest first.
std::string near_square_grid(int k);
// The same as (rows, columns).
std::pair<int, int> near_square_shape(int k);

// The plan with segments device [0, i), edge [i, j), cloud [j, n) (empty tiers left out).
deployment_plan three_tier_plan(const graph& g, int i, int j, const std::string& edge_node = "edge1");

}  // namespace d3
