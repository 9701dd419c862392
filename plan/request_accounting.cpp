#include "plan/request_accounting.hpp"

namespace d3 {

request_accounting::request_accounting(const graph& g, const stage_graph& sg, std::string app_node)
    : stages_(sg.stages), app_node_(std::move(app_node)) {
  for (const stage& st : sg.stages) shares_.push_back(layer_shares(g, sg, st));
  remote_inputs_.resize(sg.stages.size());
  local_inputs_.resize(sg.stages.size());
  encoded_inputs_.resize(sg.stages.size());
  std::map<int, std::set<int>> receivers;  // sender -> remote receiving stages (-2: the app)
  for (const route& r : sg.routes) {
    const std::string& from = r.from_stage < 0 ? app_node_ : sg.stages[size_t(r.from_stage)].node;
    for (int to : r.to_stages) {
      const std::string& node = sg.stages[size_t(to)].node;
      if (node == from) {
        local_inputs_[size_t(to)].insert(r.from_stage);
        continue;
      }
      remote_inputs_[size_t(to)][r.from_stage] += tensor_bytes(g, sg, r.tensor);
      receivers[r.from_stage].insert(to);
      if (codec_for(sg.codecs, r.tensor, node) != tensor_codec::raw) encoded_inputs_[size_t(to)].insert(r.from_stage);
    }
    if (r.to_app && r.from_stage >= 0 && from == app_node_) {
      local_answers_.insert(r.from_stage);
    } else if (r.to_app && r.from_stage >= 0) {
      answer_bytes_[r.from_stage] += tensor_bytes(g, sg, r.tensor);
      receivers[r.from_stage].insert(-2);
      if (codec_for(sg.codecs, r.tensor, app_node_) != tensor_codec::raw) encoded_answers_.insert(r.from_stage);
    }
  }
  for (const auto& [sender, to] : receivers) remote_destinations_[sender] = int(to.size());
}

std::vector<transfer_observation> request_accounting::transfers(const std::vector<stage_report>& reports,
                                                                double virtual_start_ms, double virtual_end_ms,
                                                                uint64_t app_bytes_sent,
                                                                const std::function<double(const std::string&)>& clock_error) const {
  std::vector<transfer_observation> out;
  auto error_of = [&](const std::string& node) { return clock_error ? clock_error(node) : 0.0; };
  std::map<int, const stage_report*> by_stage;
  for (const stage_report& r : reports) by_stage[r.stage_id] = &r;
  // True when one of `producers` on the receiver's own node finished (its tensors there need no
  // link) within local_margin_ms of `ready_ms`, or is unreported: the receiver may then have
  // waited for that tensor, not for the remote one, whose arrival is only known to be no later.
  // Why: a gather on edge2 whose local tile finished 12 ms after edge4's tile arrived reported
  // those 12 ms as edge4->edge2 transfer time (measured, vgg16 tiled over edge2 at 0.78 and edge4
  // at 0.99 of their speeds): the edge<->edge fit read 1,800-10,000 Mbit/s at 9-19 ms for a
  // 1000 Mbit/s 0.2 ms link, and 24-46 Mbit/s at 0 ms when the tiles' speeds changed places.
  // The margin covers a local message's delivery on the wall clock (on the virtual clock a
  // same-node tensor arrives when its producer finishes).
  constexpr double local_margin_ms = 1.0;
  auto waited_locally = [&](const std::set<int>& producers, double ready_ms) {
    for (int p : producers) {
      double finish = virtual_start_ms;  // the app's own inputs, sent at the start
      if (p >= 0) {
        auto it = by_stage.find(p);
        if (it == by_stage.end()) return true;
        finish = it->second->finish_ms;
      }
      if (finish >= ready_ms - local_margin_ms) return true;
    }
    return false;
  };
  // The bytes of an encoded crossing from `sender`: its whole remote traffic, if this is all of it.
  auto encoded_bytes = [&](int sender, const stage_report* report) -> size_t {
    auto n = remote_destinations_.find(sender);
    if (n == remote_destinations_.end() || n->second != 1) return 0;
    return size_t(sender < 0 ? app_bytes_sent : report ? report->bytes_sent : 0);
  };
  for (const auto& [id, report] : by_stage) {
    if (id < 0 || size_t(id) >= remote_inputs_.size()) continue;
    const auto& remote = remote_inputs_[size_t(id)];
    if (remote.size() != 1) continue;  // one remote producer: its arrival is this stage's ready time
    const auto& [from_stage, raw_bytes] = *remote.begin();
    size_t bytes = raw_bytes;
    double sent = virtual_start_ms;
    std::string from = app_node_;
    const stage_report* producer_report = nullptr;
    if (from_stage >= 0) {
      auto producer = by_stage.find(from_stage);
      if (producer == by_stage.end()) continue;
      producer_report = producer->second;
      sent = producer->second->finish_ms;
      from = stages_[size_t(from_stage)].node;
    }
    if (encoded_inputs_[size_t(id)].count(from_stage) && (bytes = encoded_bytes(from_stage, producer_report)) == 0)
      continue;
    if (waited_locally(local_inputs_[size_t(id)], report->ready_ms)) continue;
    const std::string& to = stages_[size_t(id)].node;
    out.push_back({from, to, bytes, report->ready_ms - sent, (from_stage >= 0 ? error_of(from) : 0.0) + error_of(to)});
  }
  if (answer_bytes_.size() == 1) {
    const auto& [from_stage, raw_bytes] = *answer_bytes_.begin();
    auto producer = by_stage.find(from_stage);
    size_t bytes = raw_bytes;
    if (producer != by_stage.end() && encoded_answers_.count(from_stage)) bytes = encoded_bytes(from_stage, producer->second);
    if (producer != by_stage.end() && bytes != 0 && !waited_locally(local_answers_, virtual_end_ms))
      out.push_back({stages_[size_t(from_stage)].node, app_node_, bytes, virtual_end_ms - producer->second->finish_ms,
                     error_of(stages_[size_t(from_stage)].node)});
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
