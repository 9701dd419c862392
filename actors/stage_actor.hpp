// Stage actors: one per segment, scatter, tile and gather of a deployment, spawned by the app on
// a node with remote_spawn (type names in actors/protocol.hpp). live_stage_count, stop_all_stages
// and set_stage_event_printing are declared in actors/node.hpp.
#pragma once

#include <string>

namespace d3 {

// One line on stdout when stage event printing is on (d3-node --d3.verbose).
void print_node_event(const std::string& line);

}  // namespace d3
