#include "actors/planner_actor.hpp"

#include "actors/protocol.hpp"

namespace d3 {

protocol::planner_handle spawn_planner_actor(caf::actor_system& system, std::shared_ptr<adaptive_planner> planner,
                                         std::map<std::string, node_role> roles) {
  return system.spawn([planner, roles]() -> protocol::planner_handle::behavior_type {
    return {
        [planner, roles](protocol::observe_atom, const planner_report& report) -> planner_decision {
          std::vector<link_sample> samples;
          for (const transfer_observation& t : report.transfers) {
            auto from = roles.find(t.from);
            auto to = roles.find(t.to);
            if (from == roles.end() || to == roles.end()) continue;  // e.g. the app's own name
            samples.push_back({from->second, to->second, t.bytes, t.ms, t.clock_error_ms});
          }
          for (const auto& [node, layers] : report.cached)
            planner->note_cached({{node, std::set<int>(layers.begin(), layers.end())}});
          planner->note_serving(report.plan_version);
          planner->observe_compute(report.computes);
          planner->observe(samples);
          planner_decision out;
          if (report.migrating) {
            planner->await_migration();
            return out;
          }
          if (auto decision = planner->decide()) {
            out.migrate = true;
            out.plan = std::move(decision->plan);
            out.current_ms = decision->current_ms;
            out.predicted_ms = decision->predicted_ms;
            out.partial = decision->partial;
          }
          return out;
        },
    };
  });
}

status probe_node_profiles(deployment& dep, const graph& g, cluster_model& cluster, int repeats) {
  std::vector<std::string> names;
  for (const auto& [name, node] : cluster.nodes) names.push_back(name);
  auto probed = dep.probe_profiles(g, names, repeats);
  if (!probed) return probed.error();
  for (auto& [name, node] : cluster.nodes) {
    node.measured = std::make_shared<const layer_profile>(std::move(probed->at(name)));
    node.speed = 1.0;
  }
  return status::ok();
}

deployment::adaptation_hook planner_hook(caf::actor_system& system, protocol::planner_handle planner,
                                         std::chrono::milliseconds timeout) {
  return [&system, planner, timeout](const request_outcome& o) -> std::optional<deployment_plan> {
    const planner_report report{o.id, int32_t(o.plan_version), o.transfers, o.computes, o.standby_arrived, o.migrating};
    std::optional<deployment_plan> plan;
    caf::scoped_actor self{system};
    self->request(planner, timeout, protocol::observe_atom::value, report)
        .receive(
            [&](planner_decision& decision) {
              if (decision.migrate) plan = std::move(decision.plan);
            },
            [](caf::error&) {});  // no answer in time: no change
    return plan;
  };
}

}  // namespace d3
