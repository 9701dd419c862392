#include "actors/protocol.hpp"

namespace d3::protocol {

namespace {

// d3's error category: code 1 is a refusal whose context is one string.
const caf::atom_value error_category = caf::atom("d3");
constexpr uint8_t refused_code = 1;

}  // namespace

caf::error refusal(std::string text) {
  return caf::error(refused_code, error_category, caf::make_message(std::move(text)));
}

std::string describe(caf::actor_system& system, const caf::error& e, std::chrono::milliseconds timeout) {
  if (e.category() == error_category && e.context().match_elements<std::string>()) return e.context().get_as<std::string>(0);
  if (e == caf::sec::request_timeout) return "no answer within " + std::to_string(timeout.count()) + " ms";
  return system.render(e);
}

void configure_process(caf::actor_system_config& cfg) {
  cfg.load<caf::io::middleman>();
  cfg.add_message_type<bytes>("d3_bytes");
  cfg.add_message_type<node_info>("d3_node_info");
  cfg.add_message_type<data_handle>("d3_data_handle");
  cfg.add_message_type<app_handle>("d3_app_handle");
  cfg.add_message_type<echo_handle>("d3_echo_handle");
  cfg.add_message_type<transfer_observation>("d3_transfer_observation");
  cfg.add_message_type<compute_observation>("d3_compute_observation");
  cfg.add_message_type<planner_report>("d3_planner_report");
  cfg.add_message_type<deployment_plan>("d3_deployment_plan");
  cfg.add_message_type<planner_decision>("d3_planner_decision");
  cfg.add_error_category(error_category, [](uint8_t code, caf::atom_value, const caf::message& context) -> std::string {
    if (code == refused_code && context.match_elements<std::string>()) return context.get_as<std::string>(0);
    return "d3 error " + std::to_string(code);
  });
  // Workers that wait on a condition variable: the default work-stealing workers fall back to
  // sleeping up to 10 ms between polls when idle, which a request pays at every hop (measured:
  // resnet18 over 3 nodes 57.7 ms with stealing vs 45.6 ms with sharing on the nodes).
  // A config file or the CLI still overrides it (--scheduler.policy=stealing).
  cfg.set("scheduler.policy", caf::atom("sharing"));
}

}  // namespace d3::protocol
