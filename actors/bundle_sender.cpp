#include "actors/bundle_sender.hpp"

#include <algorithm>

namespace d3 {

void bundle_routes::add(const std::string& tensor, const protocol::data_handle& dest, const std::string& node,
                        tensor_codec codec) {
  nodes[dest] = node;
  if (codec == tensor_codec::raw)
    codecs.erase({tensor, dest});
  else
    codecs[{tensor, dest}] = codec;
  auto& dests = destinations[tensor];
  if (std::find(dests.begin(), dests.end(), dest) == dests.end()) dests.push_back(dest);
}

result<std::vector<outgoing_bundle>> encode_bundles(const bundle_routes& routes,
                                                    const std::map<std::string, tensor>& tensors, uint64_t id,
                                                    uint32_t plan_version) {
  std::map<protocol::data_handle, std::vector<tensor_ref>> per_destination;
  for (const auto& [name, dests] : routes.destinations) {
    auto t = tensors.find(name);
    if (t == tensors.end()) return status::error("no tensor named '" + name + "' to send");
    for (const protocol::data_handle& d : dests) {
      auto codec = routes.codecs.find({name, d});
      per_destination[d].push_back({name, &t->second, codec == routes.codecs.end() ? tensor_codec::raw : codec->second});
    }
  }
  std::vector<outgoing_bundle> out;
  for (const auto& [dest, refs] : per_destination) {
    outgoing_bundle b;
    b.dest = dest;
    auto node = routes.nodes.find(dest);
    if (node != routes.nodes.end()) b.node = node->second;
    b.message = encode_bundle(id, plan_version, refs, 0, &b.payload_bytes);
    if (b.message.empty()) return status::error("cannot encode the bundle for node '" + b.node + "' (too large)");
    out.push_back(std::move(b));
  }
  return out;
}

status stamp_arrivals(std::vector<outgoing_bundle>& bundles, clock_mode mode,
                      const std::function<double(const std::string& node, size_t bytes)>& link) {
  for (outgoing_bundle& b : bundles) {
    b.arrival_ms = link(b.node, b.payload_bytes);
    if (mode == clock_mode::virtual_time) D3_RETURN_IF_ERROR(set_bundle_virtual_ms(b.message, b.arrival_ms));
  }
  return status::ok();
}

}  // namespace d3
