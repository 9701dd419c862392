// The planner actor: lives in the app process next to the deployment, receives one report per
// answered request (the transfers the stages' virtual times show, as JSON), keeps the adaptive
// planner's estimates (planner/adaptation.hpp) and answers with the plan to migrate to, if any.
// The deployment migrates (actors/deployment.hpp); the actor never touches sockets or nodes.
#pragma once

#include <caf/all.hpp>

#include <map>
#include <memory>
#include <string>

#include "actors/deployment.hpp"
#include "planner/adaptation.hpp"

namespace d3 {

// Messages: (observe_atom, std::string report) -> std::string decision. The report is
// {"transfers": [{"from": node, "to": node, "bytes": n, "ms": t}, ...],
//  "computes": [{"node": node, "layers": [layer indices], "shares": [...], "ms": t}, ...]}; the
// decision is "" or
// {"plan": <plan JSON>, "current_ms": x, "predicted_ms": y, "partial": true}.
caf::actor spawn_planner_actor(caf::actor_system& system, std::shared_ptr<adaptive_planner> planner,
                               std::map<std::string, node_role> roles);

// Gives every node of `cluster` its own per-layer profile, probed on it (deployment::
// probe_profile; cached by the node per model), and speed 1 (the probe ran at its speed). Errors
// name the node.
status probe_node_profiles(deployment& dep, const graph& g, cluster_model& cluster, int repeats = 3);

// A deployment adaptation hook that asks the planner actor after every answered request (one
// round trip within `timeout`; no answer means no change).
deployment::adaptation_hook planner_hook(caf::actor_system& system, caf::actor planner,
                                         std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

}  // namespace d3
