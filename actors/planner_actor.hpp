// The planner actor: lives in the app process next to the deployment, receives one report per
// answered request (the transfers and compute times the stages' virtual times show), keeps the adaptive
// planner's estimates (planner/adaptation.hpp) and answers with the plan to migrate to, if any.
// The deployment migrates (actors/deployment.hpp); the actor never touches sockets or nodes.
#pragma once

#include <caf/all.hpp>

#include <map>
#include <memory>
#include <string>

#include "actors/deployment.hpp"
#include "actors/protocol.hpp"
#include "planner/adaptation.hpp"

namespace d3 {

protocol::planner_handle spawn_planner_actor(caf::actor_system& system, std::shared_ptr<adaptive_planner> planner,
                                                  std::map<std::string, node_role> roles);

// Gives every node of `cluster` its own per-layer profile, probed on it (deployment::
// probe_profile; cached by the node per model), and speed 1 (the probe ran at its speed). Errors
// name the node.
status probe_node_profiles(deployment& dep, const graph& g, cluster_model& cluster, int repeats = 3);

// A deployment adaptation hook that asks the planner actor after every answered request (one
// round trip within `timeout`; no answer means no change).
deployment::adaptation_hook planner_hook(caf::actor_system& system, protocol::planner_handle planner,
                                         std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

}  // namespace d3
