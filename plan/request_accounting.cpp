#include "plan/request_accounting.hpp"

namespace d3 {

request_accounting::request_accounting(const graph& g, const stage_graph& sg, std::string app_node)
    : stages_(sg.stages), app_node_(std::move(app_node)) {
  for (const stage& st : sg.stages) shares_.push_back(layer_shares(g, sg, st));
  remote_inputs_.resize(sg.stages.size());
  for (const route& r : sg.routes) {
    const std::string& from = r.from_stage < 0 ? app_node_ : sg.stages[size_t(r.from_stage)].node;
    for (int to : r.to_stages)
      if (sg.stages[size_t(to)].node != from) remote_inputs_[size_t(to)][r.from_stage] += tensor_bytes(g, sg, r.tensor);
    if (r.to_app && r.from_stage >= 0 && from != app_node_) answer_bytes_[r.from_stage] += tensor_bytes(g, sg, r.tensor);
  }
}

std::vector<transfer_observation> request_accounting::transfers(const std::vector<stage_report>& reports,
                                                                double virtual_start_ms, double virtual_end_ms) const {
  std::vector<transfer_observation> out;
  std::map<int, const stage_report*> by_stage;
  for (const stage_report& r : reports) by_stage[r.stage_id] = &r;
  for (const auto& [id, report] : by_stage) {
    if (id < 0 || size_t(id) >= remote_inputs_.size()) continue;
    const auto& remote = remote_inputs_[size_t(id)];
    if (remote.size() != 1) continue;  // one remote producer: its arrival is this stage's ready time
    const auto& [from_stage, bytes] = *remote.begin();
    double sent = virtual_start_ms;
    std::string from = app_node_;
    if (from_stage >= 0) {
      auto producer = by_stage.find(from_stage);
      if (producer == by_stage.end()) continue;
      sent = producer->second->finish_ms;
      from = stages_[size_t(from_stage)].node;
    }
    out.push_back({from, stages_[size_t(id)].node, bytes, report->ready_ms - sent});
  }
  if (answer_bytes_.size() == 1) {
    const auto& [from_stage, bytes] = *answer_bytes_.begin();
    auto producer = by_stage.find(from_stage);
    if (producer != by_stage.end())
      out.push_back({stages_[size_t(from_stage)].node, app_node_, bytes, virtual_end_ms - producer->second->finish_ms});
  }
  return out;
}

std::vector<compute_observation> request_accounting::computes(const std::vector<stage_report>& reports) const {
  std::vector<compute_observation> out;
  for (const stage_report& r : reports) {
    if (r.stage_id < 0 || size_t(r.stage_id) >= stages_.size()) continue;
    const stage& st = stages_[size_t(r.stage_id)];
    if (st.kind == stage_kind::segment || st.kind == stage_kind::tile)
      out.push_back({st.node, st.layers, shares_[size_t(r.stage_id)], r.finish_ms - r.ready_ms - r.messages_ms});
  }
  return out;
}

}  // namespace d3
