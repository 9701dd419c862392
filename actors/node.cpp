#include "actors/node.hpp"

// The node actor (published on the node's port): the layer cache protocol, peers, the emulation
// settings, link and profile probes. Stage actors: actors/stage_actor.cpp.
#include <string>
#include <tuple>

#include "actors/layer_cache.hpp"
#include "actors/planner_actor.hpp"
#include "actors/protocol.hpp"
#include "actors/stage_actor.hpp"
#include "emulation/node_emulation.hpp"
#include "profiling/profile_probe.hpp"
#include "schema/bundle.hpp"

namespace d3 {

namespace protocol {

void configure_process(caf::actor_system_config& cfg) {
  cfg.load<caf::io::middleman>();
  cfg.add_message_type<bytes>("d3_bytes");
  add_planner_message_types(cfg);
  // Workers that wait on a condition variable: the default work-stealing workers fall back to
  // sleeping up to 10 ms between polls when idle, which a request pays at every hop (measured:
  // resnet18 over 3 nodes 57.7 ms with stealing vs 45.6 ms with sharing on the nodes).
  // A config file or the CLI still overrides it (--scheduler.policy=stealing).
  cfg.set("scheduler.policy", caf::atom("sharing"));
}

}  // namespace protocol

namespace {

using protocol::bytes;

}  // namespace

// ------------------------------------------------------------------ the node actor

caf::behavior node_actor(caf::event_based_actor* self, node_identity identity) {
  emulation().set_identity(identity.name, identity.speed);
  return {
      [=](protocol::emul_atom, const std::string& settings) -> std::string {
        auto applied = emulation().configure(settings);
        if (!applied) return "node " + identity.name + ": " + applied.message();
        print_node_event("emulation (not real links or devices): " + emulation().describe());
        return "";
      },
      [=](protocol::info_atom) { return std::make_tuple(identity.name, identity.role); },
      // A light probe of this node's link to `dest_name`: a real message of `size` bytes crosses
      // to that node; its time on the link is what the emulated link clock gives (virtual clock:
      // from `send_ms`; wall clock: from now), the same arithmetic a stage's send pays.
      [=](protocol::probe_atom, const caf::actor& dest, const std::string& dest_name, uint64_t size,
          double send_ms) -> caf::result<std::string, double> {
        if (!dest || size > (uint64_t(1) << 26))
          return caf::result<std::string, double>("node " + identity.name + ": bad probe of '" + dest_name + "'", -1.0);
        const double start = emulation().mode() == clock_mode::virtual_time ? send_ms : emulation().now_ms();
        const double arrival = emulation().send(dest_name, start, size_t(size));
        auto rp = self->make_response_promise<std::string, double>();
        self->request(dest, std::chrono::seconds(10), protocol::echo_atom::value, bytes(size_t(size)), arrival)
            .then([=](double echoed) mutable { rp.deliver(std::string(), echoed - start); },
                  [=](caf::error& e) mutable {
                    rp.deliver("node " + identity.name + ": probe of node '" + dest_name +
                                   "' got no echo: " + self->home_system().render(e),
                               -1.0);
                  });
        return rp;
      },
      [=](protocol::echo_atom, const bytes&, double arrival) { return arrival; },
      [=](protocol::profile_atom, const bytes& fragment, int32_t repeats) {
        std::string result = profile_fragment(fragment, int(repeats));
        print_node_event("profile probe answered (" + std::to_string(result.size()) + " bytes of JSON)");
        return result;
      },
      [=](protocol::lacks_atom, uint64_t model_hash, const std::vector<std::string>& names) {
        return layer_cache::process().lacking(model_hash, names);
      },
      [=](protocol::ship_atom, const bytes& payload) -> std::string {
        auto shipment = decode_shipment(payload.data(), payload.size());
        if (!shipment) return "node " + identity.name + ": " + shipment.message();
        auto stored = layer_cache::process().store(std::move(shipment.value()));
        if (!stored) return "node " + identity.name + ": " + stored.message();
        print_node_event("cached " + std::to_string(stored.value()) + " layers (" +
                    std::to_string(layer_cache::process().layer_count()) + " in the cache, " +
                    std::to_string(layer_cache::process().weight_bytes()) + " weight bytes)");
        return "";
      },
      [=](protocol::peer_atom, const std::string& host, uint16_t port) -> caf::result<std::string> {
        auto rp = self->make_response_promise<std::string>();
        const std::string where = host + ":" + std::to_string(port);
        self->request(self->home_system().middleman().actor_handle(), std::chrono::seconds(10),
                      caf::connect_atom::value, host, port)
            .then([=](const caf::node_id&, caf::strong_actor_ptr&, const std::set<std::string>&) mutable {
                    rp.deliver(std::string());
                  },
                  [=](caf::error& e) mutable {
                    rp.deliver("node " + identity.name + ": cannot connect to peer " + where + ": " +
                               self->home_system().render(e));
                  });
        return rp;
      },
  };
}

}  // namespace d3
