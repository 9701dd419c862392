#include "actors/planner_actor.hpp"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "actors/protocol.hpp"

namespace d3 {

caf::actor spawn_planner_actor(caf::actor_system& system, std::shared_ptr<adaptive_planner> planner,
                               std::map<std::string, node_role> roles) {
  return system.spawn([planner, roles](caf::event_based_actor*) -> caf::behavior {
    return {
        [planner, roles](protocol::observe_atom, const std::string& report) -> std::string {
          std::vector<link_sample> samples;
          std::vector<compute_sample> computes;
          try {
            const nlohmann::json parsed = nlohmann::json::parse(report);  // outlives the loop
            for (const nlohmann::json& t : parsed.at("transfers")) {
              auto from = roles.find(t.at("from").get<std::string>());
              auto to = roles.find(t.at("to").get<std::string>());
              if (from == roles.end() || to == roles.end()) continue;
              samples.push_back({from->second, to->second, t.at("bytes").get<size_t>(), t.at("ms").get<double>()});
            }
            if (parsed.contains("computes"))
              for (const nlohmann::json& c : parsed.at("computes"))
                computes.push_back({c.at("node").get<std::string>(), c.at("layers").get<std::vector<int>>(),
                                    c.at("shares").get<std::vector<double>>(), c.at("ms").get<double>()});
          } catch (const std::exception& e) {
            std::fprintf(stderr, "planner actor: malformed report ignored: %s\n", e.what());
            return "";  // a malformed report changes nothing
          }
          planner->observe_compute(computes);
          planner->observe(samples);
          auto decision = planner->decide();
          if (!decision) return "";
          return nlohmann::json{{"plan", nlohmann::json::parse(to_json(decision->plan))},
                                {"current_ms", decision->current_ms},
                                {"predicted_ms", decision->predicted_ms},
                                {"partial", decision->partial}}
              .dump();
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

deployment::adaptation_hook planner_hook(caf::actor_system& system, caf::actor planner,
                                         std::chrono::milliseconds timeout) {
  return [&system, planner, timeout](const request_outcome& o) -> std::optional<deployment_plan> {
    nlohmann::json report = {{"request", o.id}, {"plan_version", o.plan_version}, {"transfers", nlohmann::json::array()}};
    for (const transfer_observation& t : o.transfers)
      report["transfers"].push_back({{"from", t.from}, {"to", t.to}, {"bytes", t.bytes}, {"ms", t.ms}});
    report["computes"] = nlohmann::json::array();
    for (const compute_observation& c : o.computes)
      report["computes"].push_back({{"node", c.node}, {"layers", c.layers}, {"shares", c.shares}, {"ms", c.ms}});
    std::string answer;
    caf::scoped_actor self{system};
    self->request(planner, timeout, protocol::observe_atom::value, report.dump())
        .receive([&](std::string& decision) { answer = std::move(decision); }, [](caf::error&) {});
    if (answer.empty()) return std::nullopt;
    auto decision = nlohmann::json::parse(answer, nullptr, false);
    if (decision.is_discarded() || !decision.contains("plan")) return std::nullopt;
    auto plan = parse_plan_json(decision.at("plan").dump());
    if (!plan) return std::nullopt;
    return plan.value();
  };
}

}  // namespace d3
