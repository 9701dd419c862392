// What a d3-node process hosts: the node actor (published on the node's port; answers the layer
// cache protocol and connects to peers) and the stage actors (segment, scatter, tile, gather)
// the app spawns on it with remote_spawn. Protocol: actors/protocol.hpp.
#pragma once

#include <caf/all.hpp>

#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <string>

#include "actors/protocol.hpp"

namespace d3 {

struct node_identity {
  std::string name;
  std::string role;
  double speed = 1.0;  // emulated compute capacity relative to one core (virtual clock)
  std::string arithmetic;  // the node's arithmetic_fingerprint()
};

// The node actor's own state: the peers it watches for the app.
struct node_state {
  struct watched_peer {
    protocol::node_handle handle;
    std::chrono::steady_clock::time_point last_answer;
    // When the oldest ping not answered since last_answer was sent (unset: none waits). Silence
    // counts from it: while this node itself is starved (a cpu quota, a long install) it sends
    // no pings, and that is not the peer's silence.
    std::optional<std::chrono::steady_clock::time_point> unanswered_since;
    bool reported = false;  // the app was told it is gone (until it is peered again)
    bool connection_lost = false;  // CAF's down message: a recheck's ping could only time out
    std::chrono::milliseconds silence{1250};  // no answer this long: gone (the peer command's)
  };
  std::map<std::string, watched_peer> peers;  // by node name
  // Layer shipments arriving in parts (ship_part), by upload id. Invariant: data.size() bytes of
  // `total` have arrived, in order; the sum of the totals is within max_upload_bytes.
  struct pending_upload {
    protocol::bytes data;
    size_t total = 0;
    std::chrono::steady_clock::time_point last_part;
  };
  std::map<uint64_t, pending_upload> uploads;
  protocol::app_handle app;                   // where peer trouble is reported
  uint64_t seq = 0;
  bool ticking = false;
  // When each verdict message still in the mailbox was sent (oldest first): a verdict judges as
  // of then, when every answer that had arrived was ahead of it in the mailbox.
  std::deque<std::chrono::steady_clock::time_point> verdicts_due;
  static inline const char* name = "d3_node";
};

protocol::node_handle::behavior_type node_actor(protocol::node_handle::stateful_pointer<node_state> self,
                                                node_identity identity);

// What a node accepts from its peers (INI max_message_mb, max_upload_mb, max_stages, max_layers), checked before a message's
// contents are decoded: a payload larger than max_message_bytes (a layer shipment, a profile
// fragment, a tensor bundle) is refused with an error reply; a stage set up while max_stages are
// live refuses. The node keeps serving. The layer cache's budget is layer_cache::set_budget.
struct node_limits {
  size_t max_message_bytes = size_t(256) << 20;
  size_t max_stages = 1024;
  size_t max_layers = 4096;  // per layer shipment (one upload)
  // A layer shipment sent in parts (one layer larger than max_message_bytes); also the most
  // bytes of all the uploads in progress at once.
  size_t max_upload_bytes = size_t(2048) << 20;
};
void set_node_limits(const node_limits& limits);
const node_limits& current_node_limits();
// "" when a message of `size` bytes is within max_message_bytes, else the refusal's text naming
// `what` ("layer shipment", "tensor bundle", ...).
std::string message_over_limit(const char* what, size_t size);

// Stage actors alive in this process (registered at spawn, removed at exit).
size_t live_stage_count();
// Sends every live stage an exit (node shutdown).
void stop_all_stages();

// Diagnostics of this process's stages, printed by d3-node (one line per event) when enabled.
void set_stage_event_printing(bool on);

}  // namespace d3
