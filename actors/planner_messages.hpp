// The planner actor's messages (its interface: actors/protocol.hpp, planner_handle) and their CAF
// inspection, registered by protocol::configure_process.
#pragma once

#include <caf/all.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "plan/plan.hpp"
#include "plan/request_accounting.hpp"

namespace d3 {

// The planner actor's interface: one answered request's observations in (the transfers and the
// stages' compute times its virtual times show), the decision out.
struct planner_report {
  uint64_t request = 0;
  int32_t plan_version = 0;
  std::vector<transfer_observation> transfers;
  std::vector<compute_observation> computes;
  std::map<std::string, std::vector<int32_t>> cached;  // standby copies arrived: node -> layers
  bool migrating = false;  // the plan last chosen is not serving yet (request_outcome::migrating)
};
struct planner_decision {
  bool migrate = false;  // false: keep the running plan (the fields below are unset)
  deployment_plan plan;
  double current_ms = 0, predicted_ms = 0;
  bool partial = false;  // found by the local search near the current boundaries
};
// CAF inspection of the messages above (and of the plan they carry); registered by
// protocol::configure_process.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, transfer_observation& x) {
  return f(caf::meta::type_name("transfer_observation"), x.from, x.to, x.bytes, x.ms, x.clock_error_ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, compute_observation& x) {
  return f(caf::meta::type_name("compute_observation"), x.node, x.layers, x.shares, x.ms, x.probe);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, planner_report& x) {
  return f(caf::meta::type_name("planner_report"), x.request, x.plan_version, x.transfers, x.computes, x.cached,
           x.migrating);
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
}  // namespace d3
