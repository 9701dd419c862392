// The topology log: JSON Lines, one event per line, appended as the deployment changes, so a
// user can see which actor runs which layers (or tile) on which node since when. Events, with
// the fields the runtime writes (actors/deployment.cpp, installer.cpp, failover.cpp):
//   {"time": T, "event": "node_up",           "node": N, "role": R, "address": "host:port"}
//   {"time": T, "event": "node_down",         "node": N, "reason": "connection lost: ...|no heartbeat
//    answer for N ms (frozen?)", "detected_after_ms": ms (since its last heartbeat answer)}
//   {"time": T, "event": "node_rejoined",     "node": N, "role": R, "address": "host:port",
//    "how": "reconnected (restarted)|answers heartbeats again (was frozen)"}
//   {"time": T, "event": "failover",          "why": "...", "to_version": V, "plan": "..."}
//   {"time": T, "event": "plan_deployed",     "version": V, "strategy": S, "model": M}
//   {"time": T, "event": "layers_shipped",    "node": N, "layers": K, "bytes": B, "cached": C}
//   {"time": T, "event": "actor_spawned",     "actor": ID, "kind": "segment|scatter|tile|gather",
//    "node": N, "layers": [first, last], "tile": K, "region": "rows [..) cols [..)",
//    "plan_version": V, "sends_to": [ID, ...]}
//   {"time": T, "event": "layers_migrated",   "from_version": V, "to_version": V, "layers": [names],
//    "layers_moved": K, "layers_unchanged": K, "weight_bytes_shipped": B, "layers_shipped": K,
//    "strategy": S, "redeploy_everything": bool, "migrate_ms": ms, "ready_virtual_ms": ms,
//    "ship_virtual_ms": ms}
//   {"time": T, "event": "migration_failed",  "version": V, "error": "..."}
//   {"time": T, "event": "plan_retired",      "version": V, "actors": K, "reason": "..."}
//   {"time": T, "event": "emulation_changed", "uplink": NAME, "device_edge_mbit_per_s": B,
//    "speed": {node: speed}}
//   {"time": T, "event": "trace_step",        "step": K, "at_ms": ms, "change": "..."}
//   {"time": T, "event": "link_probed",       "from": N, "to": N}
//   {"time": T, "event": "probe_burst",       "because": "..."}
//   {"time": T, "event": "profile_probed",    "node": N, "total_ms": ms}
//   {"time": T, "event": "actor_exited",      "actor": ID, "node": N, "plan_version": V, "reason": "..."}
// Actor ids count from 0 in every plan version: (plan_version, actor) names one; plan_retired
// ends every actor of its version.
// T is UTC ISO 8601 with milliseconds. Unknown events and fields are kept and ignored by readers.
#pragma once

#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.hpp"

namespace d3 {

using topology_event = nlohmann::json;

// Appends events to a file; thread-safe; each event is flushed as it is written (nothing lost
// when a deployment dies half way).
class topology_log {
 public:
  static result<std::unique_ptr<topology_log>> open(const std::string& path);
  // Adds "time" (now) unless the event has one, then writes it as one line.
  void write(topology_event event);

 private:
  std::mutex mutex_;
  std::ofstream out_;
};

std::string utc_now_iso8601();

// Reads a log; a malformed line is an error naming its line number.
result<std::vector<topology_event>> read_topology_log(const std::string& path);
// The same from a stream; errors name `path`.
result<std::vector<topology_event>> read_topology_log(std::istream& in, const std::string& path);

// The log up to the teardown of its last deployment: every event before the first actor_exited
// that follows the last plan_deployed (what was running while requests flowed).
std::vector<topology_event> as_deployed(const std::vector<topology_event>& events);

// The deployment as it stands at the end of the log: per node, its live actors (what they run,
// since when), as an indented tree.
std::string render_topology_tree(const std::vector<topology_event>& events);
// The same as Graphviz DOT: one cluster per node, one box per live actor, arrows along sends_to.
std::string render_topology_dot(const std::vector<topology_event>& events);

}  // namespace d3
