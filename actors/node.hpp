// What a d3-node process hosts: the node actor (published on the node's port; answers the layer
// cache protocol and connects to peers) and the stage actors (segment, scatter, tile, gather)
// the app spawns on it with remote_spawn. Protocol: actors/protocol.hpp.
#pragma once

#include <caf/all.hpp>

#include <string>

#include "actors/protocol.hpp"

namespace d3 {

struct node_identity {
  std::string name;
  std::string role;
  double speed = 1.0;  // emulated compute capacity relative to one core (virtual clock)
};

protocol::node_handle::behavior_type node_actor(protocol::node_handle::pointer self, node_identity identity);

// Stage actors alive in this process (registered at spawn, removed at exit).
size_t live_stage_count();
// Sends every live stage an exit (node shutdown).
void stop_all_stages();

// Diagnostics of this process's stages, printed by d3-node (one line per event) when enabled.
void set_stage_event_printing(bool on);

}  // namespace d3
