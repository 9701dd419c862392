#include "planner/cost_model.hpp"

#include <algorithm>
#include <sstream>
#include <set>

namespace d3 {

cluster_model cluster_model::evaluation(const testbed& t, int edge_nodes) {
  cluster_model c;
  c.links = t;
  c.nodes["device"] = {node_role::device, t.device_speed, nullptr};
  c.nodes["cloud"] = {node_role::cloud, t.cloud_speed, nullptr};
  for (int e = 1; e <= edge_nodes; ++e) c.nodes["edge" + std::to_string(e)] = {node_role::edge, t.edge_speed, nullptr};
  c.app_node = "device";
  return c;
}

namespace {

// The layer whose output `tensor` is (a tile part "T@tile<k>" counts as T): -1 when none.
int layer_of_tensor(const graph& g, const std::string& tensor) { return g.find(whole_tensor(tensor)); }

}  // namespace

double encoded_bytes(const graph& g, const stage_graph& sg, const layer_profile& profile, const std::string& tensor,
                     tensor_codec codec) {
  const double raw = double(tensor_bytes(g, sg, tensor));
  if (codec == tensor_codec::raw) return raw;
  const double fraction = profile.fraction(layer_of_tensor(g, tensor), codec);
  return fraction > 0 ? raw * fraction : raw;  // a codec that does not apply sends raw
}

result<plan_prediction> predict_plan(const graph& g, const stage_graph& sg, const layer_profile& profile,
                                     const cluster_model& cluster) {
  auto node_of = [&](const std::string& name) -> result<const cluster_node*> {
    auto it = cluster.nodes.find(name);
    if (it == cluster.nodes.end()) return status::error("cost model: the cluster has no node '" + name + "'");
    return &it->second;
  };
  std::map<std::string, node_clock> nodes;
  for (const auto& [name, node] : cluster.nodes) nodes.emplace(name, node_clock(node.speed));
  std::map<std::pair<std::string, std::string>, link_clock> links;
  std::map<std::pair<std::string, std::string>, size_t> bytes;
  // When each tensor is available on each node: (tensor, node) -> ms.
  std::map<std::pair<std::string, std::string>, double> available;
  std::map<std::string, std::pair<std::string, double>> produced;  // tensor -> (node, finish ms)
  for (const std::string& in : sg.graph_inputs) produced[in] = {cluster.app_node, 0.0};

  std::map<std::string, int> producer;  // tensor -> stage id, -1 for the app's graph inputs
  auto producer_of = [&](const std::string& tensor) {
    auto p = producer.find(tensor);
    return p == producer.end() ? -1 : p->second;
  };
  auto arrive = [&](const std::string& tensor, const std::string& to) -> double {
    auto key = std::make_pair(tensor, to);
    auto it = available.find(key);
    if (it != available.end()) return it->second;
    const auto& [from, produced_at] = produced.at(tensor);
    double ready = produced_at;
    double at = ready;
    const cluster_node& receiver = cluster.nodes.at(to);
    const double receive_ms_per_mb = receiver.profile_or(profile).messages.receive_ms_per_mb / receiver.speed;
    // The app's inputs to a stage on the app's node still cross the transport (the app is its own
    // process): unshaped, but the receiving node's work per byte is paid (link_clock).
    const bool app_to_own_node = from == to && producer_of(tensor) < 0 && receive_ms_per_mb > 0;
    if (from != to || app_to_own_node) {
      auto link_key = std::make_pair(app_to_own_node ? std::string() : from, to);
      auto link = links.find(link_key);
      if (link == links.end()) {
        const link_profile p =
            app_to_own_node ? link_profile{} : cluster.links.link(cluster.nodes.at(from).role, receiver.role);
        link = links.emplace(link_key, link_clock(p, receive_ms_per_mb)).first;
      }
      // Encoded crossings: the codec's bytes on the link; the app encodes its inputs before they
      // leave (stages charge their own encoding and decoding below).
      const tensor_codec codec = sg.codecs.empty() ? tensor_codec::raw : codec_for(sg.codecs, tensor, to);
      const size_t n = size_t(encoded_bytes(g, sg, profile, tensor, codec) + 0.5);
      if (codec != tensor_codec::raw && producer_of(tensor) < 0)
        ready += cluster.nodes.at(from).profile_or(profile).messages.codec_encode_ms_per_mb[size_t(codec)] *
                 double(tensor_bytes(g, sg, tensor)) * 1e-6 / cluster.nodes.at(from).speed;
      at = link->second.send(ready, n);
      if (!app_to_own_node) bytes[link_key] += n;
    }
    available[key] = at;
    return at;
  };

  // Bundles: a stage receives one per producer stage (the app's graph inputs: one) and sends one
  // per destination stage, and one to the app for graph outputs; each costs its node to decode or
  // encode (message_costs), as the virtual clock charges.
  for (const std::string& in : sg.graph_inputs) producer[in] = -1;
  std::map<int, std::map<int, size_t>> sent;  // stage -> destination stage (-1: the app) -> payload bytes
  for (const route& r : sg.routes) {
    if (r.from_stage < 0) continue;
    const size_t n = tensor_bytes(g, sg, r.tensor);
    for (int to : r.to_stages) sent[r.from_stage][to] += n;
    if (r.to_app) sent[r.from_stage][-1] += n;
  }

  plan_prediction prediction;
  for (const stage& s : sg.stages) {
    auto node = node_of(s.node);
    if (!node) return node.error();
    double ready = 0;
    for (const std::string& in : s.inputs) ready = std::max(ready, arrive(in, s.node));
    double work_ms = 0;
    const layer_profile& times = (*node)->profile_or(profile);
    const std::vector<double> shares = layer_shares(g, sg, s);
    // Tiles at their measured cost beyond their area: the planning profile's (a node's probed
    // profile times its layers whole).
    for (size_t k = 0; k < shares.size(); ++k)
      work_ms += times.milliseconds[size_t(s.layers[k])] * profile.tile_cost(s.layers[k], shares[k]);
    std::map<int, size_t> received;
    for (const std::string& in : s.inputs) received[producer.at(in)] += tensor_bytes(g, sg, in);
    for (const auto& [from, n] : received) work_ms += times.messages.decode(n);
    // The codecs' own work per MB of raw tensor: decoding what arrives encoded, encoding what
    // leaves encoded (once per destination stage, as each bundle is encoded on its own).
    if (!sg.codecs.empty()) {
      for (const std::string& in : s.inputs) {
        const int from = producer.at(in);
        const std::string& from_node = from < 0 ? cluster.app_node : sg.stages[size_t(from)].node;
        const tensor_codec codec = from_node == s.node ? tensor_codec::raw : codec_for(sg.codecs, in, s.node);
        if (codec != tensor_codec::raw)
          work_ms += times.messages.codec_decode_ms_per_mb[size_t(codec)] * double(tensor_bytes(g, sg, in)) * 1e-6;
      }
      for (const route& r : sg.routes) {
        if (r.from_stage != s.id) continue;
        auto charge = [&](const std::string& to_node) {
          const tensor_codec codec = to_node == s.node ? tensor_codec::raw : codec_for(sg.codecs, r.tensor, to_node);
          if (codec != tensor_codec::raw)
            work_ms += times.messages.codec_encode_ms_per_mb[size_t(codec)] * double(tensor_bytes(g, sg, r.tensor)) * 1e-6;
        };
        for (int to : r.to_stages) charge(sg.stages[size_t(to)].node);
        if (r.to_app) charge(cluster.app_node);
      }
    }
    if (s.kind == stage_kind::scatter || s.kind == stage_kind::gather) {
      size_t copied = 0;  // a scatter's parts, a gather's whole output
      for (const std::string& out : s.outputs) copied += tensor_bytes(g, sg, out);
      work_ms += times.messages.copy(copied);
    }
    if (auto out = sent.find(s.id); out != sent.end())
      for (const auto& [to, n] : out->second) work_ms += times.messages.encode(n);
    const double finish = nodes.at(s.node).compute(ready, work_ms);
    prediction.stage_finish_ms.push_back(finish);
    for (const std::string& out : s.outputs) {
      produced[out] = {s.node, finish};
      producer[out] = s.id;
    }
  }
  for (const std::string& out : sg.graph_outputs)
    prediction.latency_ms = std::max(prediction.latency_ms, arrive(out, cluster.app_node));
  for (const auto& [key, n] : bytes) prediction.bytes.push_back({key.first, key.second, n});
  return prediction;
}

std::string describe(const cluster_model& cluster) {
  std::ostringstream out;
  const testbed& t = cluster.links;
  auto link = [&](const char* name, const link_profile& l) {
    out << name << " " << l.bandwidth_mbit_per_s << " Mbit/s " << l.latency_ms << " ms; ";
  };
  link("LAN", t.device_edge);
  link("edge-edge", t.edge_edge);
  link("backbone", t.edge_cloud);
  if (t.device_cloud) link("device-cloud", *t.device_cloud);
  out << "speeds";
  for (const auto& [name, node] : cluster.nodes) out << " " << name << " " << node.speed;
  return out.str();
}

}  // namespace d3
