#include "planner/dads.hpp"

#include <algorithm>
#include <deque>
#include <limits>

namespace d3 {

namespace {

constexpr double infinite_capacity = 1e300;

// Dinic's maximum flow on a small dense-enough graph (a few hundred vertices).
class flow_network {
 public:
  explicit flow_network(int vertices) : adjacency_(size_t(vertices)) {}

  void add_arc(int from, int to, double capacity) {
    adjacency_[size_t(from)].push_back(int(arcs_.size()));
    arcs_.push_back({to, capacity});
    adjacency_[size_t(to)].push_back(int(arcs_.size()));
    arcs_.push_back({from, 0.0});
  }

  double max_flow(int source, int sink) {
    double total = 0;
    while (levels(source, sink)) {
      next_arc_.assign(adjacency_.size(), 0);
      while (double pushed = push(source, sink, infinite_capacity)) total += pushed;
    }
    return total;
  }

  // After max_flow: vertices reachable from the source in the residual graph (the source side).
  std::vector<bool> source_side(int source) const {
    std::vector<bool> seen(adjacency_.size(), false);
    std::deque<int> queue{source};
    seen[size_t(source)] = true;
    while (!queue.empty()) {
      const int v = queue.front();
      queue.pop_front();
      for (int a : adjacency_[size_t(v)])
        if (arcs_[size_t(a)].capacity > epsilon && !seen[size_t(arcs_[size_t(a)].to)]) {
          seen[size_t(arcs_[size_t(a)].to)] = true;
          queue.push_back(arcs_[size_t(a)].to);
        }
    }
    return seen;
  }

 private:
  static constexpr double epsilon = 1e-12;
  struct arc {
    int to;
    double capacity;  // residual
  };

  bool levels(int source, int sink) {
    level_.assign(adjacency_.size(), -1);
    std::deque<int> queue{source};
    level_[size_t(source)] = 0;
    while (!queue.empty()) {
      const int v = queue.front();
      queue.pop_front();
      for (int a : adjacency_[size_t(v)]) {
        const arc& e = arcs_[size_t(a)];
        if (e.capacity > epsilon && level_[size_t(e.to)] < 0) {
          level_[size_t(e.to)] = level_[size_t(v)] + 1;
          queue.push_back(e.to);
        }
      }
    }
    return level_[size_t(sink)] >= 0;
  }

  double push(int v, int sink, double limit) {
    if (v == sink) return limit;
    for (size_t& i = next_arc_[size_t(v)]; i < adjacency_[size_t(v)].size(); ++i) {
      const int a = adjacency_[size_t(v)][i];
      arc& e = arcs_[size_t(a)];
      if (e.capacity <= epsilon || level_[size_t(e.to)] != level_[size_t(v)] + 1) continue;
      const double pushed = push(e.to, sink, std::min(limit, e.capacity));
      if (pushed > 0) {
        e.capacity -= pushed;
        arcs_[size_t(a ^ 1)].capacity += pushed;
        return pushed;
      }
    }
    return 0;
  }

  std::vector<std::vector<int>> adjacency_;
  std::vector<arc> arcs_;
  std::vector<int> level_;
  std::vector<size_t> next_arc_;
};

}  // namespace

result<dads_cut> dads_min_cut(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                              const std::string& server) {
  auto device = cluster.nodes.find("device");
  auto server_node = cluster.nodes.find(server);
  if (device == cluster.nodes.end() || server_node == cluster.nodes.end())
    return status::error("dads: the cluster needs nodes 'device' and '" + server + "'");
  if (profile.milliseconds.size() != g.layers.size()) return status::error("dads: the profile does not match the model");
  const node_role server_role = server_node->second.role;
  const link_profile up = cluster.links.link(node_role::device, server_role);
  const link_profile down = cluster.links.link(server_role, node_role::device);
  const int layers = int(g.layers.size());
  const int source = layers, sink = layers + 1;
  const std::vector<std::vector<int>> readers = g.consumers();
  // Auxiliary vertices for layers read by several layers: numbered after the sink.
  std::vector<int> auxiliary(size_t(layers), -1);
  int vertices = layers + 2;
  for (int l = 0; l < layers; ++l)
    if (readers[size_t(l)].size() > 1) auxiliary[size_t(l)] = vertices++;
  flow_network net(vertices);
  for (int l = 0; l < layers; ++l) {
    const layer& L = g.layers[size_t(l)];
    const bool is_output = std::find(g.outputs.begin(), g.outputs.end(), l) != g.outputs.end();
    if (L.kind == layer_kind::input) {
      net.add_arc(source, l, infinite_capacity);  // inputs are born on the device
    } else {
      const double server_ms = server_node->second.profile_or(profile).milliseconds[size_t(l)] / server_node->second.speed +
                              (is_output ? transfer_ms(down, L.output_shape.bytes()) : 0.0);
      net.add_arc(source, l, server_ms);
      net.add_arc(l, sink, device->second.profile_or(profile).milliseconds[size_t(l)] / device->second.speed);
    }
    if (readers[size_t(l)].empty()) continue;
    const double send_ms = transfer_ms(up, L.output_shape.bytes());
    if (auxiliary[size_t(l)] < 0) {
      const int w = readers[size_t(l)][0];
      net.add_arc(l, w, send_ms);
      net.add_arc(w, l, infinite_capacity);
    } else {
      const int a = auxiliary[size_t(l)];
      net.add_arc(l, a, send_ms);
      net.add_arc(a, l, infinite_capacity);
      for (int w : readers[size_t(l)]) {
        net.add_arc(a, w, infinite_capacity);
        net.add_arc(w, l, infinite_capacity);
      }
    }
  }
  dads_cut cut;
  cut.cut_ms = net.max_flow(source, sink);
  std::vector<bool> side = net.source_side(source);
  cut.on_device.assign(side.begin(), side.begin() + layers);
  return cut;
}

result<planned> dads_strategy(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                              const std::string& server) {
  auto cut = dads_min_cut(g, profile, cluster, server);
  if (!cut) return cut.error();
  auto topo = topological_order(g);
  if (!topo) return topo.error();
  std::vector<int> device_layers, server_layers;
  for (int l : *topo) {
    if (g.layers[size_t(l)].kind == layer_kind::input) continue;
    (cut->on_device[size_t(l)] ? device_layers : server_layers).push_back(l);
  }
  deployment_plan plan;
  plan.strategy = "dads";
  auto name = [&](int l) { return g.layers[size_t(l)].name; };
  if (!device_layers.empty()) plan.segments.push_back({"device", name(device_layers.front()), name(device_layers.back())});
  if (!server_layers.empty()) plan.segments.push_back({server, name(server_layers.front()), name(server_layers.back())});
  // An explicit order only when the device set is not already a prefix of the graph's order.
  bool prefix = true;
  for (size_t p = 0, seen_server = 0; p < topo->size(); ++p) {
    const int l = (*topo)[p];
    if (g.layers[size_t(l)].kind == layer_kind::input) continue;
    if (!cut->on_device[size_t(l)]) seen_server = 1;
    else if (seen_server) prefix = false;
  }
  if (!prefix) {
    for (int l : device_layers) plan.order.push_back(name(l));
    for (int l : server_layers) plan.order.push_back(name(l));
  }
  auto stages = build_stage_graph(g, plan);
  if (!stages) return status::error("dads: " + stages.message());
  auto prediction = predict_plan(g, *stages, profile, cluster);
  if (!prediction) return prediction.error();
  return planned{std::move(plan), std::move(prediction.value())};
}

}  // namespace d3
