#include "planner/standby.hpp"

#include <algorithm>
#include <vector>

namespace d3 {

std::map<std::string, std::set<int>> standby_copies(const graph& g, const deployment_plan& plan,
                                                    const cluster_model& cluster, const standby_options& options) {
  std::map<std::string, std::set<int>> out;
  auto sg = build_stage_graph(g, plan);
  if (!sg) return out;
  std::vector<std::string> edges;  // in name order: edge2 before edge10
  for (const auto& [name, node] : cluster.nodes)
    if (node.role == node_role::edge && name != cluster.app_node) edges.push_back(name);
  std::sort(edges.begin(), edges.end(), node_name_less);
  std::map<std::string, std::set<int>> runs;  // node -> weighted layers the plan runs there
  for (const stage& st : sg->stages) {
    if (st.kind != stage_kind::segment && st.kind != stage_kind::tile) continue;
    for (int l : st.layers)
      if (weight_bytes(g.layers[size_t(l)]) > 0) runs[st.node].insert(l);
  }
  std::map<std::string, std::set<int>> wanted;
  for (size_t l = 0; l < g.layers.size(); ++l)
    if (weight_bytes(g.layers[l]) > 0) wanted[cluster.app_node].insert(int(l));
  for (const auto& [node, layers] : runs) {
    // The app's node's part goes to one edge: the app's node is one node, and what slows it
    // (or its LAN) leaves any edge able to take its work; one copy hedges that at the least
    // bytes (measured: mobilenet_v2 all on a device that slowed to a fifth, 13.7 MB had to
    // cross a 30 Mbit/s LAN first, and the plan was within 10% only 38 requests later).
    if (node == cluster.app_node) {
      if (!edges.empty()) wanted[edges.front()].insert(layers.begin(), layers.end());
      continue;
    }
    auto role = cluster.nodes.find(node);
    if (options.cloud && role != cluster.nodes.end() && role->second.role == node_role::edge)
      for (const auto& [name, n] : cluster.nodes)
        if (n.role == node_role::cloud) wanted[name].insert(layers.begin(), layers.end());
    // The buddies: the edge nodes after this one in name order (from the first for others).
    const auto at = std::find(edges.begin(), edges.end(), node);
    const size_t first = at == edges.end() ? 0 : size_t(at - edges.begin()) + 1;
    const size_t replicas = options.edge_replicas > 0 ? size_t(options.edge_replicas) : edges.size();
    for (size_t k = 0, taken = 0; k < edges.size() && taken < replicas; ++k) {
      const std::string& buddy = edges[(first + k) % edges.size()];
      if (buddy == node) continue;
      wanted[buddy].insert(layers.begin(), layers.end());
      ++taken;
    }
  }
  for (const auto& [node, layers] : wanted) {
    const std::set<int>& has = runs[node];
    size_t bytes = 0;
    for (int l : layers) {  // graph order: the layers nearest the input first
      if (has.count(l)) continue;
      const size_t b = weight_bytes(g.layers[size_t(l)]);
      if (bytes + b > options.max_bytes_per_node) break;
      bytes += b;
      out[node].insert(l);
    }
  }
  return out;
}

}  // namespace d3
