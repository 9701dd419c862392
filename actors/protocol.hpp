// The runtime's CAF protocol: atoms, message types and actor type names, shared by d3-node, the
// app side (actors/deployment.hpp) and the tests. Payloads are byte vectors holding Cap'n Proto
// messages (schema/bundle.hpp); CAF only moves them (one memcpy, see
// ../shared/notes/dependencies.md).
//
// Node actor (published on the node's port; one per d3-node process):
//   (info)                                     -> (string name, string role)
//   (lacks, uint64 model_hash, [string] layers) -> [string] layers missing from the node's cache
//   (ship, bytes LayerShipment)                -> string: "" stored, else the error
//   (peer, string host, uint16 port)           -> string: "" connected (direct node-to-node
//                                                  traffic), else the error
//   (emul, string JSON)                        -> string: "" applied, else the error. The emulated
//                 testbed (emulation, emulation/emulation.hpp), sent by the app at every deploy:
//                 {"clock": "wall"|"virtual", "links": {"<destination node>": {"mbit_per_s": B,
//                 "latency_ms": L}, ...}}; resets the node's link and node clocks. Destinations
//                 missing from "links" are unshaped. The node's speed comes from its own config.
// Stage actors (remote_spawn by type name with make_message(bytes StageSpec)):
//   (setup, actor app) -> string: "" ready (operators created), else the error; errors of later
//                         requests go to `app`
//   (route, string tensor, actor dest, string dest_node) -> string: "" (dest, on node dest_node,
//                         receives `tensor` per request; dest_node picks the emulated link)
//   (data, bytes TensorBundle)         -> nothing; once every input of a request id is there
//                         the stage computes and sends (data, bundle) to each destination
// Stage -> app on failure: (fail, uint64 request_id, bool id_known, int32 stage_id, string what)
// Stage -> app per request under the virtual clock (before its data messages):
//   (report, uint64 request_id, int32 stage_id, double ready_ms, double finish_ms, double cpu_ms,
//    uint64 bytes_sent, double messages_ms) -- virtual times: ready = its last input arrived,
//    finish = its bundles left (inputs decoded, computed, outputs encoded); cpu_ms = its kernels'
//    thread CPU time; bytes_sent = tensor payload bytes sent to other nodes; messages_ms = the
//    virtual time its decoding and encoding took
#pragma once

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <cstdint>
#include <vector>

namespace d3::protocol {

using bytes = std::vector<uint8_t>;

using info_atom = caf::atom_constant<caf::atom("d3info")>;
using lacks_atom = caf::atom_constant<caf::atom("d3lacks")>;
using ship_atom = caf::atom_constant<caf::atom("d3ship")>;
using peer_atom = caf::atom_constant<caf::atom("d3peer")>;
using setup_atom = caf::atom_constant<caf::atom("d3setup")>;
using route_atom = caf::atom_constant<caf::atom("d3route")>;
using data_atom = caf::atom_constant<caf::atom("d3data")>;
using fail_atom = caf::atom_constant<caf::atom("d3fail")>;
using emul_atom = caf::atom_constant<caf::atom("d3emul")>;
using report_atom = caf::atom_constant<caf::atom("d3report")>;
// Light link probes (idle links): app -> node A (probe, node B's actor, B's name, bytes, send ms)
// -> A sends B (echo, payload, arrival ms) over its emulated link -> B answers the arrival -> A
// answers the app with "" and the ms the probe took on the link (or an error text and -1).
using probe_atom = caf::atom_constant<caf::atom("d3probe")>;
using echo_atom = caf::atom_constant<caf::atom("d3echo")>;
// Profile probe: app -> node (profile, layer shipment without weights, repeats) -> JSON
// {"layers": {name: ms}, "messages": {"encode_ms", "encode_ms_per_mb", "decode_ms",
// "decode_ms_per_mb", "copy_ms_per_mb"}} (the node's per-layer compute times and what moving
// tensors costs it, at its speed) or {"error": text}.
using profile_atom = caf::atom_constant<caf::atom("d3profile")>;
// App-side planner actor (typed: actors/planner_actor.hpp, planner_actor_handle):
// (observe, planner_report) -> planner_decision.
using observe_atom = caf::atom_constant<caf::atom("d3observe")>;

constexpr const char* segment_type = "d3_segment";
constexpr const char* scatter_type = "d3_scatter";
constexpr const char* tile_type = "d3_tile";
constexpr const char* gather_type = "d3_gather";

// Every process of a deployment (nodes and app): loads the middleman, adds the message types.
void configure_process(caf::actor_system_config& cfg);
// Nodes: the stage actor types remote_spawn may create here.
void add_stage_actor_types(caf::actor_system_config& cfg);

}  // namespace d3::protocol
