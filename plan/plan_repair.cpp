#include "plan/plan_repair.hpp"

#include <algorithm>
#include <vector>

namespace d3 {

namespace {

// The node that takes over `node` (of `role`), or "" when none is left: the same role, else the
// nearest other tier. The device's work goes to an edge, else the cloud: the app outlives its
// device node process (a crash of d3-node, not of the device), and its requests must not be lost.
std::string substitute(const std::string& role, const std::map<std::string, std::string>& available) {
  std::vector<std::string> order = {role};
  if (role == "edge") order.insert(order.end(), {"cloud", "device"});
  if (role == "cloud") order.insert(order.end(), {"edge", "device"});
  if (role == "device") order.insert(order.end(), {"edge", "cloud"});
  for (const std::string& r : order) {
    std::vector<std::string> names;
    for (const auto& [name, node_role] : available)
      if (node_role == r) names.push_back(name);
    // edge2 before edge10: shorter names first, then by name.
    std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
      return a.size() != b.size() ? a.size() < b.size() : a < b;
    });
    if (!names.empty()) return names.front();
  }
  return "";
}

}  // namespace

std::set<std::string> plan_nodes(const deployment_plan& plan) {
  std::set<std::string> nodes;
  for (const plan_segment& s : plan.segments) nodes.insert(s.node);
  for (const plan_tiled_run& r : plan.tiled_runs) {
    nodes.insert(r.nodes.begin(), r.nodes.end());
    if (!r.scatter_node.empty()) nodes.insert(r.scatter_node);
    if (!r.gather_node.empty()) nodes.insert(r.gather_node);
  }
  return nodes;
}

result<deployment_plan> repair_plan(const graph& g, const deployment_plan& plan,
                                    const std::map<std::string, std::string>& available) {
  // The role of every node the plan names: from `available`, or guessed from the name for nodes
  // that are gone (device, edgeN, cloud: the names the cluster files use).
  auto role_of = [&](const std::string& node) -> std::string {
    auto it = available.find(node);
    if (it != available.end()) return it->second;
    if (node.rfind("edge", 0) == 0) return "edge";
    return node == "cloud" || node == "device" ? node : "edge";
  };
  auto place = [&](const std::string& node) -> result<std::string> {
    if (available.count(node)) return node;
    std::string sub = substitute(role_of(node), available);
    if (sub.empty()) return status::error("no node is left to take over the work of node '" + node + "'");
    return sub;
  };
  deployment_plan out = plan;
  for (plan_segment& s : out.segments) {
    auto node = place(s.node);
    if (!node) return node.error();
    s.node = node.value();
  }
  std::vector<plan_tiled_run> runs;
  for (plan_tiled_run r : out.tiled_runs) {
    std::vector<std::string> left;
    for (const std::string& n : r.nodes)
      if (available.count(n)) left.push_back(n);
    if (!r.scatter_node.empty() && !available.count(r.scatter_node)) r.scatter_node.clear();
    if (!r.gather_node.empty() && !available.count(r.gather_node)) r.gather_node.clear();
    if (left.size() == r.nodes.size()) {
      runs.push_back(r);
      continue;
    }
    if (left.size() < 2) continue;  // dropped: its segment runs it whole
    r.nodes = left;
    r.row_weights.clear();
    r.col_weights.clear();
    const std::string k = std::to_string(left.size());
    bool placed = false;
    for (const std::string& grid : {k + "x1", "1x" + k}) {
      r.grid = grid;
      deployment_plan trial = out;
      trial.tiled_runs = runs;
      trial.tiled_runs.push_back(r);
      if (build_stage_graph(g, trial)) {
        placed = true;
        break;
      }
    }
    if (placed) runs.push_back(r);
  }
  out.tiled_runs = runs;
  auto checked = build_stage_graph(g, out);
  if (!checked) return status::error("the repaired plan does not build: " + checked.message());
  return out;
}

}  // namespace d3
