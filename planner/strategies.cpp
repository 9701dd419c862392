#include "planner/strategies.hpp"

#include <algorithm>

#include "planner/dads.hpp"
#include "planner/three_tier_space.hpp"

namespace d3 {

namespace {

std::vector<int> computed_layers(const graph& g) {
  std::vector<int> order;
  auto topo = topological_order(g);
  if (!topo) return order;
  for (int l : *topo)
    if (g.layers[size_t(l)].kind != layer_kind::input) order.push_back(l);
  return order;
}

result<planned> evaluate(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                         deployment_plan plan) {
  D3_ASSIGN_OR_RETURN(const stage_graph stages, build_stage_graph(g, plan));
  D3_ASSIGN_OR_RETURN(plan_prediction prediction, predict_plan(g, stages, profile, cluster));
  return planned{std::move(plan), std::move(prediction)};
}

}  // namespace

std::pair<int, int> near_square_shape(int k) {
  int cols = 1;
  for (int c = 1; c * c <= k; ++c)
    if (k % c == 0) cols = c;
  return {k / cols, cols};
}

std::string near_square_grid(int k) {
  const auto [rows, cols] = near_square_shape(k);
  return std::to_string(rows) + "x" + std::to_string(cols);
}

deployment_plan three_tier_plan(const graph& g, int i, int j, const std::string& edge_node) {
  const std::vector<int> order = computed_layers(g);
  const int n = int(order.size());
  deployment_plan plan;
  auto add = [&](const std::string& node, int begin, int end) {  // [begin, end)
    if (begin < end) plan.segments.push_back({node, g.layers[size_t(order[size_t(begin)])].name, g.layers[size_t(order[size_t(end - 1)])].name});
  };
  add("device", 0, i);
  add(edge_node, i, j);
  add("cloud", j, n);
  return plan;
}

result<planned> single_node_strategy(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                                     const std::string& node) {
  const int n = int(computed_layers(g).size());
  deployment_plan plan = node == "device" ? three_tier_plan(g, n, n) : node == "cloud" ? three_tier_plan(g, 0, 0)
                                                                                         : three_tier_plan(g, 0, n, node);
  plan.strategy = node + "-only";
  return evaluate(g, profile, cluster, std::move(plan));
}

result<std::string> fastest_edge_node(const graph& g, const layer_profile& profile, const cluster_model& cluster) {
  std::string best;
  double best_ms = 0;
  for (const auto& [name, node] : cluster.nodes) {
    if (node.role != node_role::edge) continue;
    const layer_profile& times = node.profile_or(profile);
    double ms = 0;
    for (int l : computed_layers(g)) ms += times.milliseconds.at(size_t(l)) / node.speed;
    if (best.empty() || ms < best_ms || (ms == best_ms && node_name_less(name, best))) best = name, best_ms = ms;
  }
  if (best.empty()) return status::error("the cluster has no edge node");
  return best;
}

result<planned> neurosurgeon_strategy(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                                      const std::string& server) {
  const int n = int(computed_layers(g).size());
  auto server_node = cluster.nodes.find(server);
  if (server_node == cluster.nodes.end()) return status::error("neurosurgeon: the cluster has no node '" + server + "'");
  const bool to_cloud = server_node->second.role == node_role::cloud;
  result<planned> best = status::error("neurosurgeon: the model has no layers");
  for (int split = 0; split <= n; ++split) {
    // device [0, split), then the server: the cloud tier, or the edge tier with an empty cloud.
    auto candidate = evaluate(g, profile, cluster, to_cloud ? three_tier_plan(g, split, split) : three_tier_plan(g, split, n, server));
    if (!candidate) return candidate.error();
    if (!best || candidate->prediction.latency_ms < best->prediction.latency_ms) best = std::move(candidate);
  }
  if (best) best->plan.strategy = "neurosurgeon";
  return best;
}

result<planned> ftp_strategy(const graph& g, const layer_profile& profile, const cluster_model& cluster) {
  const std::vector<int> order = computed_layers(g);
  if (order.empty()) return status::error("ftp: the model has no layers");
  std::vector<std::string> edges;
  for (const auto& [name, node] : cluster.nodes)
    if (node.role == node_role::edge) edges.push_back(name);
  std::sort(edges.begin(), edges.end());
  if (edges.empty()) return status::error("ftp: the cluster has no edge node");
  const int k = int(edges.size());
  const std::string grid = near_square_grid(k);

  deployment_plan untiled = three_tier_plan(g, 0, int(order.size()), edges[0]);
  auto best = evaluate(g, profile, cluster, untiled);
  if (!best) return best.error();
  const int first = order.front();
  for (size_t p = 0; k > 1 && p < order.size(); ++p) {
    if (!make_tiled_run(g, first, order[p])) continue;
    deployment_plan plan = untiled;
    plan.tiled_runs.push_back({g.layers[size_t(first)].name, g.layers[size_t(order[p])].name, grid, edges, "", "", {}, {}});
    auto candidate = evaluate(g, profile, cluster, plan);
    if (!candidate) continue;  // e.g. a grid with more tiles than the run's output has rows
    if (candidate->prediction.latency_ms < best->prediction.latency_ms) best = std::move(candidate);
  }
  best->plan.strategy = "ftp";
  return best;
}

result<planned> three_tier_exhaustive(const graph& g, const layer_profile& profile, const cluster_model& cluster) {
  const int n = int(computed_layers(g).size());
  result<planned> best = status::error("three-tier search: the model has no layers");
  for (int i = 0; i <= n; ++i)
    for (int j = i; j <= n; ++j) {
      auto candidate = evaluate(g, profile, cluster, three_tier_plan(g, i, j));
      if (!candidate) return candidate.error();
      if (!best || candidate->prediction.latency_ms < best->prediction.latency_ms) best = std::move(candidate);
    }
  if (best) best->plan.strategy = "three-tier exhaustive";
  return best;
}

const std::vector<std::string>& strategy_names() {
  static const std::vector<std::string> names = {"hpa",  "neurosurgeon", "dads",  "neurosurgeon-edge", "dads-edge",
                                                 "ftp",  "device",       "edge",  "cloud",             "three-tier"};
  return names;
}

const std::vector<std::string>& baseline_names() {
  static const std::vector<std::string> names = {"neurosurgeon", "dads", "neurosurgeon-edge", "dads-edge",
                                                 "ftp",          "device", "edge",            "cloud"};
  return names;
}

const std::vector<std::string>& two_tier_names() {
  static const std::vector<std::string> names = {"neurosurgeon", "dads", "neurosurgeon-edge", "dads-edge"};
  return names;
}

const std::vector<std::string>& cloud_bound_names() {
  static const std::vector<std::string> names = {"neurosurgeon", "dads", "cloud"};
  return names;
}

result<planned> plan_with_strategy(const std::string& name, const graph& g, const layer_profile& profile,
                                   const cluster_model& cluster, const codec_choice_options* codecs) {
  if (codecs && name == "hpa") {
    hpa_options options;
    options.codecs = *codecs;
    auto chosen = hpa_strategy(g, profile, cluster, options);
    if (chosen) chosen->plan.strategy = name;
    return chosen;
  }
  if (codecs) {
    auto chosen = plan_with_strategy(name, g, profile, cluster);
    if (!chosen) return chosen;
    D3_ASSIGN_OR_RETURN(auto priced, priced_with_codecs(g, chosen->plan, profile, cluster, *codecs));
    return planned{std::move(priced.first), std::move(priced.second)};
  }
  result<planned> chosen = status::error("unknown strategy '" + name + "'");
  const bool on_edge = name == "edge" || name == "neurosurgeon-edge" || name == "dads-edge";
  std::string edge;
  if (on_edge) {
    auto fastest = fastest_edge_node(g, profile, cluster);
    if (!fastest) return status::error(name + ": " + fastest.message());
    edge = fastest.value();
  }
  if (name == "device" || name == "cloud") chosen = single_node_strategy(g, profile, cluster, name);
  else if (name == "edge") chosen = single_node_strategy(g, profile, cluster, edge);
  else if (name == "neurosurgeon") chosen = neurosurgeon_strategy(g, profile, cluster);
  else if (name == "neurosurgeon-edge") chosen = neurosurgeon_strategy(g, profile, cluster, edge);
  else if (name == "ftp") chosen = ftp_strategy(g, profile, cluster);
  else if (name == "three-tier") chosen = three_tier_exhaustive(g, profile, cluster);
  else if (name == "hpa") chosen = hpa_strategy(g, profile, cluster);
  else if (name == "dads") chosen = dads_strategy(g, profile, cluster);
  else if (name == "dads-edge") chosen = dads_strategy(g, profile, cluster, edge);
  if (chosen) chosen->plan.strategy = name;
  return chosen;
}

}  // namespace d3
