#include "actors/node.hpp"

// The node actor (published on the node's port): the layer cache protocol, peers, the emulation
// settings, link and profile probes. Stage actors: actors/stage_actor.cpp.
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <tuple>

#include <nlohmann/json.hpp>

#include "actors/layer_cache.hpp"
#include "actors/protocol.hpp"
#include "actors/stage_actor.hpp"
#include "actors/transport.hpp"
#include "emulation/node_emulation.hpp"
#include "profiling/profile_probe.hpp"
#include "schema/bundle.hpp"

namespace d3 {


namespace {

using protocol::bytes;
using node_pointer = protocol::node_handle::stateful_pointer<node_state>;

// How a node watches its peers: a heartbeat round every `peer_heartbeat`; a peer is gone after
// its silence (deployment_options::peer_silence, given with the peer command) without an answer,
// and is pinged every fifth of it.
constexpr std::chrono::milliseconds peer_heartbeat{250};
constexpr std::chrono::milliseconds min_peer_silence{250};

node_limits limits_in_force;

void report_peer(node_pointer self, const std::string& me, const std::string& peer, const std::string& cause) {
  auto it = self->state.peers.find(peer);
  if (it == self->state.peers.end() || it->second.reported) return;
  it->second.reported = true;
  print_node_event("peer " + peer + " is gone: " + cause);
  if (self->state.app) self->send(self->state.app, protocol::peer_down_atom::value, me, peer, cause);
}

// One heartbeat round over the peers: pings, then a verdict message to itself. The verdict is
// judged when that message is read, so after every answer that arrived before it (measured: a
// device node under a 0.1-core quota read its timer before the pongs waiting behind it and
// reported two live edges silent).
void ping_peers(node_pointer self) {
  const auto now = std::chrono::steady_clock::now();
  const uint64_t seq = ++self->state.seq;
  for (auto& [name, p] : self->state.peers) {
    if (p.reported) continue;
    if (seq % std::max<uint64_t>(1, uint64_t(p.silence / peer_heartbeat / 5)) != 0) continue;
    if (!p.unanswered_since) p.unanswered_since = now;
    self->request(p.handle, p.silence, protocol::ping_atom::value, seq)
        .then([self, name = name, now](protocol::pong_atom, uint64_t, double) {
                // This node's stages sent their tensors to the peer before the ping on the same
                // connection: those have crossed.
                peer_backlog().crossed_before(name, now);
                auto it = self->state.peers.find(name);
                if (it == self->state.peers.end()) return;
                it->second.last_answer = std::chrono::steady_clock::now();
                it->second.unanswered_since.reset();
              },
              [](caf::error&) {});  // silence is judged by the verdicts
  }
  self->state.verdicts_due.push_back(now);
  self->send(self, protocol::verdict_atom::value);
  self->delayed_send(self, peer_heartbeat, protocol::tick_atom::value);
}

// Reports the peers that left a ping unanswered for their silence, as of when the verdict was
// sent: answers read since then arrived after it (this node may have been starved meanwhile).
void judge_peers(node_pointer self, const std::string& me) {
  if (self->state.verdicts_due.empty()) return;  // not one of this node's own
  const auto now = self->state.verdicts_due.front();
  self->state.verdicts_due.pop_front();
  for (auto& [name, p] : self->state.peers) {
    if (p.reported || !p.unanswered_since) continue;
    // A ping queued behind this node's own data to the peer waits for it, and the peer's answer
    // behind the data it announced it was sending here: silence counts from the later.
    const auto quiet_since =
        std::max({*p.unanswered_since, peer_backlog().drained_by(name), incoming_backlog().drained_by(name)});
    if (now - quiet_since <= p.silence) continue;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - p.last_answer).count();
    report_peer(self, me, name, "no heartbeat answer for " + std::to_string(ms) + " ms");
  }
}

// Work that can take seconds (storing a shipment, a probe round) runs on a one-shot worker actor,
// on a scheduler thread of its own (spare workers: d3_node.cpp), so that the node actor keeps
// answering its peers' and the app's heartbeats; the worker's answer (or error) is the node's.
// `work`: () -> caf::result<T>.
template <class T, class Work>
caf::result<T> answer_from_worker(node_pointer self, Work work) {
  auto worker = self->spawn([work](caf::event_based_actor* w) -> caf::behavior {
    return {[=](protocol::ok_atom) -> caf::result<T> {
      w->quit();
      return work();
    }};
  });
  auto rp = self->make_response_promise<T>();
  self->request(worker, caf::infinite, protocol::ok_atom::value)
      .then([=](T answer) mutable { rp.deliver(std::move(answer)); },
            [=](caf::error& e) mutable { rp.deliver(std::move(e)); });
  return rp;
}

// Decoding and storing a shipment can take seconds (AlexNet's fully connected layers are 200 MB):
// measured, a node storing a large shipment in its own actor answered no ping for 1.25 s and its
// peers reported it gone in the middle of a deployment. The payload moves to the worker (a
// message from the network is not shared: no copy).
caf::result<protocol::ok_atom> store_shipment(node_pointer self, std::shared_ptr<bytes> payload, const std::string& me) {
  return answer_from_worker<protocol::ok_atom>(self, [payload, me]() -> caf::result<protocol::ok_atom> {
    auto shipment = decode_shipment(payload->data(), payload->size(), limits_in_force.max_layers);
    payload->clear();
    payload->shrink_to_fit();
    if (!shipment) return protocol::refusal(me + shipment.message());
    auto stored = layer_cache::process().store(std::move(shipment.value()));
    if (!stored) return protocol::refusal(me + stored.message());
    print_node_event("cached " + std::to_string(stored.value()) + " layers (" +
                     std::to_string(layer_cache::process().layer_count()) + " in the cache, " +
                     std::to_string(layer_cache::process().weight_bytes()) + " weight bytes)");
    return protocol::ok_atom::value;
  });
}

// Sends an encoded layer shipment to a peer node as the app does (actors/shipment.hpp): one
// message, or parts of at most part_bytes in order, each acknowledged before the next. `done`
// gets "" once the peer holds it, else the error. The peer applies its own limits.
void ship_to_peer(node_pointer self, protocol::node_handle dest, std::shared_ptr<bytes> payload, uint64_t upload,
                  size_t offset, size_t part_bytes, std::function<void(std::string)> done) {
  constexpr auto timeout = std::chrono::seconds(60);
  auto failed = [self, done](caf::error& e) { done(self->home_system().render(e)); };
  if (offset == 0 && payload->size() <= part_bytes) {
    self->request(dest, timeout, protocol::ship_atom::value, *payload).then([done](protocol::ok_atom) { done(""); }, failed);
    return;
  }
  const size_t n = std::min(part_bytes, payload->size() - offset);
  bytes part(payload->begin() + ptrdiff_t(offset), payload->begin() + ptrdiff_t(offset + n));
  self->request(dest, timeout, protocol::ship_part_atom::value, upload, uint64_t(offset), uint64_t(payload->size()),
                std::move(part))
      .then(
          [=](protocol::ok_atom) {
            if (offset + n >= payload->size()) return done("");
            ship_to_peer(self, dest, payload, upload, offset + n, part_bytes, done);
          },
          failed);
}

// Standby copies of cached layers handed to a peer: encoded on a worker (AlexNet's fully connected
// layers are 234 MB; the node keeps answering heartbeats meanwhile), shipped over the node's own
// connection to the peer, their emulated arrival charged to this node's link to it as background
// traffic (what the app's copies pay on its node's links).
caf::result<double> relay_layers(node_pointer self, uint64_t model_hash, std::vector<std::string> names,
                                 const std::string& dest_name, double send_ms, const std::string& me) {
  auto peer = self->state.peers.find(dest_name);
  if (peer == self->state.peers.end() || !peer->second.handle)
    return protocol::refusal(me + "cannot copy layers to node '" + dest_name + "': not connected to it");
  if (names.size() > limits_in_force.max_layers)
    return protocol::refusal(me + "a copy of " + std::to_string(names.size()) + " layers exceeds max_layers (" +
                             std::to_string(limits_in_force.max_layers) + ")");
  const protocol::node_handle dest = peer->second.handle;
  const std::string what = "copied " + std::to_string(names.size()) + " layers to node '" + dest_name + "'";
  auto weight = std::make_shared<size_t>(0);
  auto wanted = std::make_shared<std::vector<std::string>>(std::move(names));
  auto worker = self->spawn([=](caf::event_based_actor* w) -> caf::behavior {
    return {[=](protocol::ok_atom) -> caf::result<bytes> {
      w->quit();
      auto shipment = layer_cache::process().extract(model_hash, *wanted);
      if (!shipment) return protocol::refusal(me + shipment.message());
      for (size_t i = 0; i < shipment->fragment.layers.size(); ++i)
        if (shipment->weights_included[i]) *weight += weight_bytes(shipment->fragment.layers[i]);
      bytes payload = encode_shipment(*shipment);
      if (payload.empty()) return protocol::refusal(me + "cannot encode the layers");
      return payload;
    }};
  });
  auto rp = self->make_response_promise<double>();
  const size_t part_bytes = std::max<size_t>(1, std::min(limits_in_force.max_message_bytes, size_t(32) << 20));
  const uint64_t upload = std::random_device{}() * (uint64_t(1) << 32) + std::random_device{}();
  self->request(worker, caf::infinite, protocol::ok_atom::value)
      .then(
          [=](bytes& payload) mutable {
            ship_to_peer(self, dest, std::make_shared<bytes>(std::move(payload)), upload, 0, part_bytes,
                         [=](std::string error) mutable {
                           if (!error.empty()) {
                             rp.deliver(protocol::refusal(me + error));
                             return;
                           }
                           print_node_event(what + " (" + std::to_string(*weight) + " weight bytes)");
                           rp.deliver(emulation().send_background(dest_name, send_ms, *weight));
                         });
          },
          [=](caf::error& e) mutable { rp.deliver(std::move(e)); });
  return rp;
}

// Appends one part of a shipment sent in parts. The whole shipment once its last part is in
// (the upload is then forgotten), nullptr while parts are missing, an error (the upload dropped)
// for a part out of order, past `total`, or a total the limits refuse, checked before the buffer
// is reserved. Uploads idle for upload_idle are dropped when a new one starts (an app that died
// mid-upload leaves nothing behind for long).
constexpr std::chrono::minutes upload_idle{2};
result<std::shared_ptr<bytes>> add_part(node_state& state, uint64_t id, uint64_t offset, uint64_t total,
                                        const bytes& part) {
  const auto now = std::chrono::steady_clock::now();
  auto it = state.uploads.find(id);
  if (it == state.uploads.end()) {
    if (offset != 0) return status::error("a part at offset " + std::to_string(offset) + " of an upload not begun");
    for (auto u = state.uploads.begin(); u != state.uploads.end();)
      u = now - u->second.last_part > upload_idle ? state.uploads.erase(u) : std::next(u);
    size_t pending = 0;
    for (const auto& [other, u] : state.uploads) pending += u.total;
    const size_t limit = limits_in_force.max_upload_bytes;
    if (total == 0 || total > limit || pending + total > limit)
      return status::error("a layer shipment of " + std::to_string(total) + " bytes (" + std::to_string(pending) +
                           " more in uploads in progress) exceeds max_upload_mb (" + std::to_string(limit >> 20) +
                           " MB)");
    it = state.uploads.emplace(id, node_state::pending_upload{}).first;
    it->second.total = size_t(total);
    it->second.data.reserve(size_t(total));
  }
  node_state::pending_upload& u = it->second;
  if (offset != u.data.size() || total != u.total || part.size() > u.total - u.data.size() ||
      (part.empty() && u.data.size() < u.total)) {
    const std::string what = "part of " + std::to_string(part.size()) + " bytes at offset " + std::to_string(offset) +
                             " of " + std::to_string(total) + " does not follow the " +
                             std::to_string(u.data.size()) + " of " + std::to_string(u.total) + " bytes received";
    state.uploads.erase(it);
    return status::error(what);
  }
  u.data.insert(u.data.end(), part.begin(), part.end());
  u.last_part = now;
  if (u.data.size() < u.total) return std::shared_ptr<bytes>{};
  auto whole = std::make_shared<bytes>(std::move(u.data));
  state.uploads.erase(it);
  return whole;
}

}  // namespace

void set_node_limits(const node_limits& limits) { limits_in_force = limits; }
const node_limits& current_node_limits() { return limits_in_force; }

std::string message_over_limit(const char* what, size_t size) {
  const size_t limit = limits_in_force.max_message_bytes;
  if (size <= limit) return "";
  return std::string(what) + " of " + std::to_string(size) + " bytes exceeds max_message_mb (" +
         std::to_string(limit >> 20) + " MB)";
}

// ------------------------------------------------------------------ the node actor

// The node's behavior: one handler per message of node_handle (protocol.hpp), a table.
protocol::node_handle::behavior_type node_actor(node_pointer self, node_identity identity) {
  using protocol::ok_atom;
  using protocol::refusal;
  emulation().set_identity(identity.name, identity.speed);
  const std::string me = "node " + identity.name + ": ";
  const std::string clock_domain = monotonic_clock_domain();
  self->set_down_handler([self, name = identity.name](caf::down_msg& down) {
    for (auto& [peer, p] : self->state.peers)
      if (p.handle.address() == down.source) {
        p.connection_lost = true;
        return report_peer(self, name, peer, "connection lost: " + self->home_system().render(down.reason));
      }
  });
  return {
      [=](protocol::emul_atom, const std::string& settings) -> caf::result<ok_atom> {
        auto applied = emulation().configure(settings);
        if (!applied) return refusal(me + applied.message());
        print_node_event("emulation (not real links or devices): " + emulation().describe());
        return ok_atom::value;
      },
      [=](protocol::info_atom) {
        return protocol::node_info{identity.name, identity.role, identity.arithmetic, clock_domain, identity.speed};
      },
      // A light probe of this node's link to `dest_name`: a real message of `size` bytes crosses
      // to that node. Virtual clock: its time on the link is what the emulated link clock gives
      // from `send_ms`, the same arithmetic a stage's send pays. Wall clock: the real time from
      // its send to its arrival (the destination's monotonic clock minus this one's: the app
      // corrects for the two clocks' offset) plus the emulated link's time for it, which a
      // stage's send waits before it leaves (latency only where the kernel shapes bandwidth).
      [=](protocol::probe_atom, const protocol::echo_handle& dest, const std::string& dest_name, uint64_t size,
          double send_ms) -> caf::result<double> {
        if (!dest || size > (uint64_t(1) << 26)) return refusal(me + "bad probe of '" + dest_name + "'");
        const bool virtual_clock = emulation().mode() == clock_mode::virtual_time;
        const double now = emulation().now_ms();
        const double start = virtual_clock ? send_ms : monotonic_ms();
        const double emulated_ms = emulation().send(dest_name, virtual_clock ? send_ms : now, size_t(size)) - (virtual_clock ? 0 : now);
        auto rp = self->make_response_promise<double>();
        self->request(dest, std::chrono::seconds(10), protocol::echo_atom::value, bytes(size_t(size)),
                      virtual_clock ? emulated_ms : -1.0)
            .then([=](double echoed) mutable { rp.deliver(virtual_clock ? echoed - start : echoed - start + emulated_ms); },
                  [=](caf::error& e) mutable {
                    rp.deliver(refusal(me + "probe of node '" + dest_name +
                                       "' got no echo: " + self->home_system().render(e)));
                  });
        return rp;
      },
      // The probe's arrival: the one given (virtual clock), else (-1) now on this node's clock.
      [=](protocol::echo_atom, const bytes&, double arrival) { return arrival < 0 ? monotonic_ms() : arrival; },
      [=](protocol::ping_atom, uint64_t seq) { return std::make_tuple(protocol::pong_atom::value, seq, monotonic_ms()); },
      [=](protocol::occupy_atom, const std::string& dest_name, double send_ms, uint64_t size) {
        return emulation().send_shared(dest_name, send_ms, size_t(size));
      },
      [=](protocol::standby_atom, const std::string& dest_name, double send_ms, uint64_t size) {
        return emulation().send_background(dest_name, send_ms, size_t(size));
      },
      [=](protocol::promote_atom, const std::string& dest_name, double send_ms) {
        return emulation().promote_background(dest_name, send_ms);
      },
      [=](protocol::relay_atom, uint64_t model_hash, std::vector<std::string>& names, const std::string& dest_name,
          double send_ms) -> caf::result<double> {
        return relay_layers(self, model_hash, std::move(names), dest_name, send_ms, me);
      },
      // A probe round runs the model twice at this node's speed (seconds on a slow device).
      // profile_fragment serializes concurrent probes itself.
      [=](protocol::profile_atom, bytes& fragment, int32_t repeats, int32_t round, int32_t rounds) -> caf::result<std::string> {
        if (std::string over = message_over_limit("profile fragment", fragment.size()); !over.empty())
          return nlohmann::json{{"error", me + over}}.dump();
        auto payload = std::make_shared<bytes>(std::move(fragment));
        return answer_from_worker<std::string>(self, [payload, repeats, round, rounds] {
          std::string result = profile_fragment(*payload, int(repeats), int(round), int(rounds));
          print_node_event("profile probe round " + std::to_string(round + 1) + "/" + std::to_string(rounds) +
                           " answered (" + std::to_string(result.size()) + " bytes of JSON)");
          return result;
        });
      },
      [=](protocol::speed_atom, bytes& fragment) -> caf::result<double> {
        if (std::string over = message_over_limit("speed probe fragment", fragment.size()); !over.empty())
          return refusal(me + over);
        auto payload = std::make_shared<bytes>(std::move(fragment));
        return answer_from_worker<double>(self, [payload, me]() -> caf::result<double> {
          auto ms = time_fragment(*payload, limits_in_force.max_layers);
          if (!ms) return refusal(me + ms.message());
          return ms.value();
        });
      },
      [=](protocol::recv_cost_atom, const bytes& payload) -> caf::result<double> {
        if (std::string over = message_over_limit("receive cost probe", payload.size()); !over.empty())
          return refusal(me + over);
        return process_cpu_ms();
      },
      [=](protocol::lacks_atom, uint64_t model_hash, const std::vector<std::string>& names) {
        return layer_cache::process().lacking(model_hash, names);
      },
      [=](protocol::ship_atom, bytes& payload) -> caf::result<ok_atom> {
        if (std::string over = message_over_limit("layer shipment", payload.size()); !over.empty()) return refusal(me + over);
        return store_shipment(self, std::make_shared<bytes>(std::move(payload)), me);
      },
      [=](protocol::ship_part_atom, uint64_t upload, uint64_t offset, uint64_t total, bytes& part) -> caf::result<ok_atom> {
        if (std::string over = message_over_limit("layer shipment part", part.size()); !over.empty()) {
          self->state.uploads.erase(upload);
          return refusal(me + over);
        }
        auto assembled = add_part(self->state, upload, offset, total, part);
        if (!assembled) return refusal(me + "upload " + std::to_string(upload) + ": " + assembled.message());
        if (!assembled.value()) return ok_atom::value;
        return store_shipment(self, std::move(assembled.value()), me);
      },
      [=](protocol::peer_atom, const std::string& peer, const std::string& host, uint16_t port,
          const protocol::app_handle& app, uint32_t silence_ms) -> caf::result<ok_atom> {
        // silence_ms 0: connect only (a pair the app just probes); the peer is not watched.
        const bool watch = silence_ms > 0;
        const auto silence = std::max(min_peer_silence, std::chrono::milliseconds(silence_ms));
        auto rp = self->make_response_promise<ok_atom>();
        const std::string where = host + ":" + std::to_string(port);
        // The peers watched belong to the app session that asked: a new app starts a new list
        // (else a device kept watching edges for an app long gone, and reported them to the
        // next one while its own plan used none of them).
        if (self->state.app != app) self->state.peers.clear();
        self->state.app = app;
        self->request(transport::connector(self->home_system()), std::chrono::seconds(10),
                      caf::connect_atom::value, host, port)
            .then([=](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) mutable {
                    auto handle = caf::actor_cast<protocol::node_handle>(ptr);
                    if (handle && watch) {
                      self->state.peers[peer] = {handle, std::chrono::steady_clock::now(), std::nullopt, false, false, silence};
                      self->monitor(handle);
                      if (!self->state.ticking) {
                        self->state.ticking = true;
                        self->delayed_send(self, peer_heartbeat, protocol::tick_atom::value);
                      }
                    }
                    rp.deliver(ok_atom::value);
                  },
                  [=](caf::error& e) mutable {
                    rp.deliver(refusal(me + "cannot connect to peer " + where + ": " +
                                                transport::connect_failure(self->home_system(), e, host, port, std::chrono::seconds(10))));
                  });
        return rp;
      },
      [=](protocol::recheck_atom, const std::string& peer, uint32_t max_ms) -> caf::result<bool> {
        auto it = self->state.peers.find(peer);
        if (it == self->state.peers.end()) return refusal(me + "recheck: '" + peer + "' is not a watched peer");
        if (it->second.connection_lost) return false;
        // The ping queues behind what crosses between the two nodes, as the heartbeats' do.
        const auto now = std::chrono::steady_clock::now();
        const auto from = std::max({now, peer_backlog().drained_by(peer), incoming_backlog().drained_by(peer)});
        const auto wait = std::min(std::chrono::milliseconds(max_ms),
                                   std::chrono::duration_cast<std::chrono::milliseconds>(from - now) + it->second.silence);
        auto rp = self->make_response_promise<bool>();
        self->request(it->second.handle, wait, protocol::ping_atom::value, uint64_t(0))
            .then(
                [=](protocol::pong_atom, uint64_t, double) mutable {
                  auto p = self->state.peers.find(peer);
                  if (p != self->state.peers.end()) {
                    p->second.last_answer = std::chrono::steady_clock::now();
                    p->second.unanswered_since.reset();
                    if (p->second.reported) print_node_event("peer " + peer + " answers again (rechecked): watched again");
                    p->second.reported = false;
                  }
                  rp.deliver(true);
                },
                [=](caf::error& e) mutable {
                  print_node_event("peer " + peer + " answered no recheck within " + std::to_string(wait.count()) +
                                   " ms: " + self->home_system().render(e));
                  rp.deliver(false);
                });
        return rp;
      },
      [=](protocol::tick_atom) { ping_peers(self); },
      [=](protocol::verdict_atom) { judge_peers(self, identity.name); },
  };
}

}  // namespace d3
