// The runtime's CAF protocol, declared in one place: atoms, the typed interfaces of the node
// actor, the stage actors, the app's inbox and the planner actor, and how errors travel. d3-node,
// the app side (actors/deployment.hpp) and the tests share it. Payloads are byte vectors holding
// Cap'n Proto messages (schema/bundle.hpp); CAF only moves them (one memcpy, see
// ../shared/notes/dependencies.md).
//
// Errors: a handler that refuses answers with protocol::refusal(text) (a caf::error of d3's
// category whose context is the text); requesters turn any caf::error into text with
// protocol::describe. Success of a command is ok_atom.
//
// Node actor (node_handle; published on the node's port, one per d3-node process):
//   (info)                                       -> node_info {name, role, arithmetic, clock_domain, speed}
//   (lacks, uint64 model_hash, [string] layers)  -> [string] layers missing from the node's cache
//   (ship, bytes LayerShipment)                  -> ok: stored
//   (ship_part, uint64 upload, uint64 offset, uint64 total, bytes part) -> ok: one part of a
//                 LayerShipment too large for one message (a layer whose weights exceed
//                 max_message_mb: VGG16's first fully connected layer is 411 MB), sent in order
//                 (offset = the bytes of `upload` received so far); the part that completes
//                 `total` bytes is decoded and stored like ship. `total` is checked against the
//                 node's max_upload_mb before anything is allocated; an upload idle for 2 minutes
//                 is dropped when another one starts
//   (peer, string name, string host, uint16 port, app_handle app, uint32 silence_ms) -> ok:
//                 connected to node `name` (direct node-to-node traffic); from then on this node
//                 pings it every silence_ms / 5 and tells `app` (peer_down, this node's name, name,
//                 cause) when the connection is lost or it answers no ping for silence_ms
//                 (deployment_options::peer_silence): the link between two nodes can fail while
//                 both still answer the app. silence_ms 0: connected only, not watched (a pair
//                 the app only probes)
//   (recheck, string name, uint32 max_ms) -> bool: whether watched peer `name` (which this node
//                 reported gone) answered a ping sent now within its silence, counted like the
//                 heartbeats' from when what this node sent it or it announced sending here has
//                 crossed, and never longer than max_ms; if it did, it is watched again. A refusal
//                 if `name` is not a watched peer. The app asks before it acts on a report while it
//                 still hears both nodes: a ping can wait behind traffic the reporter cannot see
//                 (measured: the app's own 47 MB shipment on the device namespace's egress held
//                 the device node's pings to edge1 1.6 s, and a live edge1 was failed over).
//   (tick) -> nothing: the node's own heartbeat timer (pings its peers)
//   (verdict) -> nothing: sent by the node to itself behind a tick's pings: judges its peers'
//                 silence once the answers that arrived before it are read
//   (emul, string JSON)                          -> ok: applied. The emulated testbed (emulation,
//                 emulation/node_emulation.hpp), sent by the app at every deploy:
//                 {"clock": "wall"|"virtual", "links": {"<destination node>": {"mbit_per_s": B,
//                 "latency_ms": L, "receive_ms_per_mb": R}, ...}, "keep_clocks": bool, "speed": S}
//                 (R: the destination's transport work per MB at its speed, emulation::link_clock;
//                 optional); resets the node's link
//                 and node clocks unless keep_clocks. Destinations missing from "links" are
//                 unshaped. The node's speed comes from its own config unless "speed" is given.
//   (probe, echo_handle B, string B's name, uint64 bytes, double send ms) -> double: the ms the
//                 probe took on the emulated link to B (the node sends B (echo, payload, arrival
//                 ms) and B answers the arrival). Light probes of idle links for the planner.
//   (echo, bytes, double arrival)                -> double arrival
//   (ping, uint64 seq) -> (pong, seq, double node_ms): the app's heartbeat (sent without a request:
//                 the pong comes back as a message; a node that stops answering is frozen or
//                 gone); node_ms is the node's monotonic clock, from which the app estimates the
//                 offset of the node's clock to its own (wall-clock reports)
//   (occupy, string node B, double send ms, uint64 bytes) -> double: `bytes` of the app's layer
//                 shipments from this node to B, sent at `send ms` as shared bulk on this node's
//                 emulated link to B (half the link while messages cross it, all of its idle time;
//                 0 bytes asks): when that link's bulk will have arrived
//   (standby, string node B, double send ms, uint64 bytes) -> double: `bytes` of standby copies
//                 sent to B at `send ms` as background traffic on this node's emulated link to B
//                 (they fill its idle time, delaying nothing; 0 bytes asks): when that link's
//                 background backlog will have arrived
//   (promote, string node B, double send ms) -> double: the standby copies to B still on their
//                 way are needed now: sent at `send ms` like any message; their arrival
//   (profile, bytes LayerShipment without weights, int32 repeats, int32 round, int32 rounds)
//                 -> string JSON {"layers": {name: ms}, "messages": {"encode_ms", "encode_ms_per_mb",
//                 "decode_ms", "decode_ms_per_mb", "copy_ms_per_mb"}} (the node's per-layer compute
//                 times over `repeats` runs and what moving tensors costs it, at its speed) or
//                 {"error": text}. Round `round` of `rounds`: the app interleaves a probe's rounds
//                 over its nodes (profiling/profile_probe.hpp).
//   (recv_cost, bytes payload) -> double: the node process's CPU time (ms) when the message is
//                 handled (the payload is not read): the app times what receiving a message costs
//                 the node by alternating payload sizes (deployment::probe_receive_cost)
// Stage actors (stage_handle; remote_spawn by type name with make_message(bytes StageSpec)):
//   (setup, app_handle app) -> ok: ready (operators created); errors of later requests go to app
//   (route, string tensor, data_handle dest, string dest_node, uint8 codec) -> ok: dest, on node
//                 dest_node, receives `tensor` per request, encoded with `codec`
//                 (codec/tensor_codec.hpp; raw where it does not apply); dest_node picks the
//                 emulated link
//   (data, bytes TensorBundle) -> nothing; once every input of a request id is there the stage
//                 computes and sends (data, bundle) to each destination
//   (incoming, string from_node, uint64 bytes) -> nothing: sent by a stage on node from_node
//                 just before a large (data, bundle) of `bytes` to a stage on another node: until
//                 those bytes have crossed, from_node's answers to this node's pings queue behind
//                 them on the same connection (base/send_backlog.hpp; incoming_backlog())
// Node -> app (app_handle): (peer_down, string reporter, string peer, string cause), see peer.
// Stage -> app (app_handle) on failure: (fail, uint64 request_id, bool id_known, int32 stage_id,
//   string what)
// Stage -> app per request (before its data messages):
//   (report, uint64 request_id, int32 stage_id, double ready_ms, double finish_ms, double cpu_ms,
//    uint64 bytes_sent, double messages_ms) -- ready = its last input arrived, finish = its
//    bundles left (inputs decoded, computed, outputs encoded); cpu_ms = its kernels' thread CPU
//    time; bytes_sent = tensor payload bytes sent to other nodes; messages_ms = the time its
//    decoding and encoding took. Virtual clock: virtual times. Wall clock: the node's monotonic
//    clock (emulation/emulation.hpp: monotonic_ms), wall durations.
// Planner actor (planner_handle; in the app process): (observe, planner_report) -> planner_decision.
#pragma once

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "actors/planner_messages.hpp"

namespace d3::protocol {

using bytes = std::vector<uint8_t>;

using ok_atom = caf::atom_constant<caf::atom("d3ok")>;
using info_atom = caf::atom_constant<caf::atom("d3info")>;
using lacks_atom = caf::atom_constant<caf::atom("d3lacks")>;
using ship_atom = caf::atom_constant<caf::atom("d3ship")>;
using ship_part_atom = caf::atom_constant<caf::atom("d3shpart")>;
using peer_atom = caf::atom_constant<caf::atom("d3peer")>;
using setup_atom = caf::atom_constant<caf::atom("d3setup")>;
using route_atom = caf::atom_constant<caf::atom("d3route")>;
using data_atom = caf::atom_constant<caf::atom("d3data")>;
using fail_atom = caf::atom_constant<caf::atom("d3fail")>;
using emul_atom = caf::atom_constant<caf::atom("d3emul")>;
using report_atom = caf::atom_constant<caf::atom("d3report")>;
using probe_atom = caf::atom_constant<caf::atom("d3probe")>;
using echo_atom = caf::atom_constant<caf::atom("d3echo")>;
using profile_atom = caf::atom_constant<caf::atom("d3profile")>;
using observe_atom = caf::atom_constant<caf::atom("d3observe")>;
using occupy_atom = caf::atom_constant<caf::atom("d3occupy")>;
using standby_atom = caf::atom_constant<caf::atom("d3standby")>;
using promote_atom = caf::atom_constant<caf::atom("d3promote")>;
using relay_atom = caf::atom_constant<caf::atom("d3relay")>;
using speed_atom = caf::atom_constant<caf::atom("d3speed")>;
using recv_cost_atom = caf::atom_constant<caf::atom("d3rcvcost")>;
using ping_atom = caf::atom_constant<caf::atom("d3ping")>;
using tick_atom = caf::atom_constant<caf::atom("d3tick")>;
using verdict_atom = caf::atom_constant<caf::atom("d3verdict")>;
using peer_down_atom = caf::atom_constant<caf::atom("d3peerdn")>;
using pong_atom = caf::atom_constant<caf::atom("d3pong")>;
using recheck_atom = caf::atom_constant<caf::atom("d3recheck")>;
using incoming_atom = caf::atom_constant<caf::atom("d3incom")>;
// App-local: a migration's background shipments are done (actors/shipment.hpp).
using shipped_atom = caf::atom_constant<caf::atom("d3shipped")>;

// A node's answer to info. arithmetic: its kernels' fingerprint (kernels/arithmetic_fingerprint.hpp);
// clock_domain: which monotonic clock it reads (emulation.hpp: monotonic_clock_domain).
struct node_info {
  std::string name;
  std::string role;
  std::string arithmetic;
  std::string clock_domain;
  double speed = 1;  // its emulated speed from its config (the virtual clock's, until the app sends one)
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("d3_node_info"), x.name, x.role, x.arithmetic, x.clock_domain, x.speed);
}

// Whatever receives a stage's output bundles: another stage or the app.
using data_handle = caf::typed_actor<caf::reacts_to<data_atom, bytes>, caf::reacts_to<incoming_atom, std::string, uint64_t>>;
// The app's inbox: answers, failures and the virtual-clock reports of the stages.
using app_handle = data_handle::extend<
    caf::reacts_to<fail_atom, uint64_t, bool, int32_t, std::string>,
    caf::reacts_to<report_atom, uint64_t, int32_t, double, double, double, uint64_t, double>,
    caf::reacts_to<peer_down_atom, std::string, std::string, std::string>>;
using stage_handle =
    data_handle::extend<caf::replies_to<setup_atom, app_handle>::with<ok_atom>,
                        caf::replies_to<route_atom, std::string, data_handle, std::string, uint8_t>::with<ok_atom>>;
using echo_handle = caf::typed_actor<caf::replies_to<echo_atom, bytes, double>::with<double>>;
using node_handle = echo_handle::extend<
    caf::replies_to<info_atom>::with<node_info>,
    caf::replies_to<lacks_atom, uint64_t, std::vector<std::string>>::with<std::vector<std::string>>,
    caf::replies_to<ship_atom, bytes>::with<ok_atom>,
    caf::replies_to<ship_part_atom, uint64_t, uint64_t, uint64_t, bytes>::with<ok_atom>,
    caf::replies_to<peer_atom, std::string, std::string, uint16_t, app_handle, uint32_t>::with<ok_atom>,
    caf::replies_to<recheck_atom, std::string, uint32_t>::with<bool>,
    caf::reacts_to<tick_atom>,
    caf::reacts_to<verdict_atom>,
    caf::replies_to<emul_atom, std::string>::with<ok_atom>,
    caf::replies_to<probe_atom, echo_handle, std::string, uint64_t, double>::with<double>,
    caf::replies_to<profile_atom, bytes, int32_t, int32_t, int32_t>::with<std::string>,
    caf::replies_to<occupy_atom, std::string, double, uint64_t>::with<double>,
    caf::replies_to<standby_atom, std::string, double, uint64_t>::with<double>,
    caf::replies_to<promote_atom, std::string, double>::with<double>,
    // Standby copies from this node's cache to a peer (model hash, layers, peer, virtual send
    // time): the peer holds them once answered; the answer is their emulated arrival.
    caf::replies_to<relay_atom, uint64_t, std::vector<std::string>, std::string, double>::with<double>,
    // A light probe of the node's speed: a model fragment without weights, run once (its ms).
    caf::replies_to<speed_atom, bytes>::with<double>,
    caf::replies_to<recv_cost_atom, bytes>::with<double>,
    caf::replies_to<ping_atom, uint64_t>::with<pong_atom, uint64_t, double>>;
using planner_handle = caf::typed_actor<caf::replies_to<observe_atom, planner_report>::with<planner_decision>>;

constexpr const char* segment_type = "d3_segment";
constexpr const char* scatter_type = "d3_scatter";
constexpr const char* tile_type = "d3_tile";
constexpr const char* gather_type = "d3_gather";

// A refusal: the error a handler answers with, carrying `text` (which names what was refused).
caf::error refusal(std::string text);
// Text for an error a request got: a refusal's own text, "no answer within T ms" for a timeout,
// CAF's rendering otherwise.
std::string describe(caf::actor_system& system, const caf::error& e, std::chrono::milliseconds timeout);

// Every process of a deployment (nodes and app): loads the middleman, adds the message types.
void configure_process(caf::actor_system_config& cfg);
// Nodes: the stage actor types remote_spawn may create here.
void add_stage_actor_types(caf::actor_system_config& cfg);

}  // namespace d3::protocol
