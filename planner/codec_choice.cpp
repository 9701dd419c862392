#include "planner/codec_choice.hpp"

#include <map>
#include <set>

namespace d3 {

namespace {

// The per-crossing rule alone (no end-to-end comparison).
result<std::vector<plan_codec>> crossing_codecs(const graph& g, const stage_graph& sg, const layer_profile& profile,
                                                const cluster_model& cluster, const codec_choice_options& options) {
  if (profile.encoded_fraction.empty()) return std::vector<plan_codec>{};  // no ratios measured: all raw
  auto node = [&](const std::string& name) -> result<const cluster_node*> {
    auto it = cluster.nodes.find(name);
    if (it == cluster.nodes.end()) return status::error("codec choice: the cluster has no node '" + name + "'");
    return &it->second;
  };
  // Every crossing: (whole tensor, from node, to node) -> the tensor names that cross (tile parts).
  std::map<std::tuple<std::string, std::string, std::string>, std::set<std::string>> crossings;
  for (const route& r : sg.routes) {
    const std::string& from = r.from_stage < 0 ? cluster.app_node : sg.stages[size_t(r.from_stage)].node;
    for (int to : r.to_stages) {
      const std::string& to_node = sg.stages[size_t(to)].node;
      if (to_node != from) crossings[{whole_tensor(r.tensor), from, to_node}].insert(r.tensor);
    }
    if (r.to_app && from != cluster.app_node) crossings[{whole_tensor(r.tensor), from, cluster.app_node}].insert(r.tensor);
  }
  std::vector<plan_codec> chosen;
  for (const auto& [key, tensors] : crossings) {
    const auto& [whole, from, to] = key;
    auto a = node(from);
    if (!a) return a.error();
    auto b = node(to);
    if (!b) return b.error();
    const link_profile link = cluster.links.link((*a)->role, (*b)->role);
    const message_costs& sender = (*a)->profile_or(profile).messages;
    const message_costs& receiver = (*b)->profile_or(profile).messages;
    double raw_bytes = 0;
    for (const std::string& t : tensors) raw_bytes += double(tensor_bytes(g, sg, t));
    const double raw_ms = transfer_ms(link, size_t(raw_bytes));
    tensor_codec best = tensor_codec::raw;
    double best_ms = raw_ms;
    for (tensor_codec codec : options.allowed) {
      double encoded = 0;
      for (const std::string& t : tensors) encoded += encoded_bytes(g, sg, profile, t, codec);
      if (encoded >= raw_bytes) continue;  // not applicable, or no smaller
      const double mb = raw_bytes * 1e-6;
      const double ms = sender.codec_encode_ms_per_mb[size_t(codec)] * mb / (*a)->speed +
                        transfer_ms(link, size_t(encoded)) +
                        receiver.codec_decode_ms_per_mb[size_t(codec)] * mb / (*b)->speed;
      if (ms < best_ms) {
        best_ms = ms;
        best = codec;
      }
    }
    const double gain = raw_ms - best_ms;
    if (best != tensor_codec::raw && gain >= options.min_gain_ms && gain >= options.min_gain_fraction * raw_ms)
      chosen.push_back({whole, to, best});
  }
  return chosen;
}

}  // namespace

result<std::vector<plan_codec>> choose_codecs(const graph& g, const stage_graph& sg, const layer_profile& profile,
                                              const cluster_model& cluster, const codec_choice_options& options) {
  D3_ASSIGN_OR_RETURN(std::vector<plan_codec> chosen, crossing_codecs(g, sg, profile, cluster, options));
  if (chosen.empty()) return chosen;
  // End to end: the codecs must be predicted faster for the whole plan, or none is used.
  auto without = predict_plan(g, sg, profile, cluster);
  if (!without) return without.error();
  stage_graph encoded = sg;
  encoded.codecs = chosen;
  auto with = predict_plan(g, encoded, profile, cluster);
  if (!with) return with.error();
  if (with->latency_ms >= without->latency_ms) chosen.clear();
  return chosen;
}

result<std::pair<deployment_plan, plan_prediction>> priced_with_codecs(const graph& g, deployment_plan plan,
                                                                      const layer_profile& profile,
                                                                      const cluster_model& cluster,
                                                                      const codec_choice_options& options,
                                                                      stage_graph_memo* memo) {
  plan.codecs.clear();
  D3_ASSIGN_OR_RETURN(stage_graph sg, build_stage_graph(g, plan, memo));
  D3_ASSIGN_OR_RETURN(plan_prediction raw, predict_plan(g, sg, profile, cluster));
  D3_ASSIGN_OR_RETURN(std::vector<plan_codec> chosen, crossing_codecs(g, sg, profile, cluster, options));
  if (chosen.empty()) return std::make_pair(std::move(plan), std::move(raw));
  sg.codecs = chosen;
  D3_ASSIGN_OR_RETURN(plan_prediction encoded, predict_plan(g, sg, profile, cluster));
  if (encoded.latency_ms >= raw.latency_ms) return std::make_pair(std::move(plan), std::move(raw));
  plan.codecs = std::move(chosen);
  return std::make_pair(std::move(plan), std::move(encoded));
}

result<deployment_plan> with_codecs(const graph& g, deployment_plan plan, const layer_profile& profile,
                                    const cluster_model& cluster, const codec_choice_options& options,
                                    stage_graph_memo* memo) {
  plan.codecs.clear();
  auto sg = build_stage_graph(g, plan, memo);
  if (!sg) return sg.error();
  auto codecs = choose_codecs(g, *sg, profile, cluster, options);
  if (!codecs) return codecs.error();
  plan.codecs = std::move(codecs.value());
  return plan;
}

}  // namespace d3
