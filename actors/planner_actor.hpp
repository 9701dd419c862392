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

// The planner actor's interface: one answered request's observations in (the transfers and the
// stages' compute times its virtual times show), the decision out.
struct planner_report {
  uint64_t request = 0;
  int32_t plan_version = 0;
  std::vector<transfer_observation> transfers;
  std::vector<compute_observation> computes;
};
struct planner_decision {
  bool migrate = false;  // false: keep the running plan (the fields below are unset)
  deployment_plan plan;
  double current_ms = 0, predicted_ms = 0;
  bool partial = false;  // found by the local search near the current boundaries
};
using planner_actor_handle =
    caf::typed_actor<caf::replies_to<protocol::observe_atom, planner_report>::with<planner_decision>>;

// CAF inspection of the messages above (and of the plan they carry); registered by
// protocol::configure_process.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, transfer_observation& x) {
  return f(caf::meta::type_name("transfer_observation"), x.from, x.to, x.bytes, x.ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, compute_observation& x) {
  return f(caf::meta::type_name("compute_observation"), x.node, x.layers, x.shares, x.ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, planner_report& x) {
  return f(caf::meta::type_name("planner_report"), x.request, x.plan_version, x.transfers, x.computes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, plan_segment& x) {
  return f(caf::meta::type_name("plan_segment"), x.node, x.first, x.last);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, plan_tiled_run& x) {
  return f(caf::meta::type_name("plan_tiled_run"), x.first, x.last, x.grid, x.nodes, x.scatter_node, x.gather_node,
           x.row_weights, x.col_weights);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, deployment_plan& x) {
  return f(caf::meta::type_name("deployment_plan"), x.version, x.strategy, x.segments, x.tiled_runs, x.order);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, planner_decision& x) {
  return f(caf::meta::type_name("planner_decision"), x.migrate, x.plan, x.current_ms, x.predicted_ms, x.partial);
}
void add_planner_message_types(caf::actor_system_config& cfg);

planner_actor_handle spawn_planner_actor(caf::actor_system& system, std::shared_ptr<adaptive_planner> planner,
                                         std::map<std::string, node_role> roles);

// Gives every node of `cluster` its own per-layer profile, probed on it (deployment::
// probe_profile; cached by the node per model), and speed 1 (the probe ran at its speed). Errors
// name the node.
status probe_node_profiles(deployment& dep, const graph& g, cluster_model& cluster, int repeats = 3);

// A deployment adaptation hook that asks the planner actor after every answered request (one
// round trip within `timeout`; no answer means no change).
deployment::adaptation_hook planner_hook(caf::actor_system& system, planner_actor_handle planner,
                                         std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

}  // namespace d3
