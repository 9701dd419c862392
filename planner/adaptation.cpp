#include "planner/adaptation.hpp"

#include <algorithm>

#include "planner/link_estimator.hpp"

namespace d3 {

adaptive_planner::adaptive_planner(const graph& g, layer_profile profile, cluster_model initial,
                                   three_tier_choice current, int plan_version, adaptation_options options)
    : g_(&g), profile_(std::move(profile)), estimate_(std::move(initial)), current_(current), version_(plan_version),
      options_(options) {}

void adaptive_planner::observe(const std::vector<link_sample>& samples) {
  for (const link_sample& s : samples) {
    if (s.bytes == 0 || s.ms < 0 || (s.from == s.to && s.from != node_role::edge)) continue;
    // The testbed's links are symmetric by role pair. Device<->cloud is the uplink and the
    // backbone in series: with the backbone's latency taken off, it measures the uplink (the
    // slower of the two in every testbed setting).
    std::pair<node_role, node_role> key = std::minmax(s.from, s.to);
    link_sample sample = s;
    if (key == std::make_pair(node_role::device, node_role::cloud)) {
      sample.ms -= estimate_.links.edge_cloud.latency_ms;
      key = {node_role::device, node_role::edge};
    }
    std::deque<link_sample>& window = samples_[key];
    window.push_back(sample);
    while (window.size() > options_.window) window.pop_front();
  }
  ++since_migration_;
}

void adaptive_planner::observe_compute(const std::vector<compute_observation>& samples) {
  for (const compute_observation& c : samples) {
    auto node = estimate_.nodes.find(c.node);
    if (node == estimate_.nodes.end() || !(c.ms > 0)) continue;
    const layer_profile& times = node->second.profile_or(profile_);
    double profile_ms = 0;
    for (size_t k = 0; k < c.layers.size() && k < c.shares.size(); ++k)
      if (c.layers[k] >= 0 && size_t(c.layers[k]) < times.milliseconds.size())
        profile_ms += times.milliseconds[size_t(c.layers[k])] * c.shares[k];
    if (profile_ms < 0.2) continue;
    std::deque<double>& window = speed_samples_[c.node];
    window.push_back(profile_ms / c.ms);
    while (window.size() > options_.window) window.pop_front();
  }
}

link_profile adaptive_planner::estimate_link(const std::deque<link_sample>& samples, link_profile previous) const {
  if (samples.empty()) return previous;
  // Two sizes or more: the least-squares line (latency and bandwidth). One size: the bandwidth
  // from the median time, latency kept at its previous estimate.
  link_estimator fit(samples.size());
  for (const link_sample& s : samples) fit.observe(s.bytes, s.ms);
  if (fit.ready()) {
    const link_profile line = fit.estimate();
    if (line.bandwidth_mbit_per_s > 0) return line;
  }
  std::vector<double> per_byte;
  for (const link_sample& s : samples)
    if (s.ms > previous.latency_ms) per_byte.push_back((s.ms - previous.latency_ms) / double(s.bytes));
  if (per_byte.empty()) return previous;
  std::nth_element(per_byte.begin(), per_byte.begin() + long(per_byte.size() / 2), per_byte.end());
  const double ms_per_byte = per_byte[per_byte.size() / 2];
  return {8.0 / (ms_per_byte * 1e3), previous.latency_ms};
}

std::optional<adaptation_decision> adaptive_planner::decide() {
  ++decisions_;
  for (const auto& [key, window] : samples_) {
    if (key == std::make_pair(node_role::device, node_role::edge))
      estimate_.links.device_edge = estimate_link(window, estimate_.links.device_edge);
    else if (key == std::make_pair(node_role::edge, node_role::cloud))
      estimate_.links.edge_cloud = estimate_link(window, estimate_.links.edge_cloud);
    else if (key == std::make_pair(node_role::edge, node_role::edge))
      estimate_.links.edge_edge = estimate_link(window, estimate_.links.edge_edge);
  }
  for (const auto& [node, window] : speed_samples_) {
    std::vector<double> sorted(window.begin(), window.end());
    std::nth_element(sorted.begin(), sorted.begin() + long(sorted.size() / 2), sorted.end());
    estimate_.nodes[node].speed = sorted[sorted.size() / 2];
  }
  if (since_migration_ <= options_.cooldown_requests) return std::nullopt;
  auto created = three_tier_space::create(*g_, profile_, estimate_);
  if (!created) return std::nullopt;
  three_tier_space& space = created.value();
  const double current_ms = space.latency(current_);
  auto worth = [&](double ms) {
    return ms < current_ms * (1.0 - options_.hysteresis) && current_ms - ms >= options_.min_gain_ms;
  };
  adaptation_decision d;
  d.current_ms = current_ms;
  d.choice = options_.partial_search ? hpa_local_search(space, current_, options_.local_radius) : current_;
  d.predicted_ms = space.latency(d.choice);
  if (!options_.partial_search || !worth(d.predicted_ms)) {
    three_tier_choice full;
    auto planned = hpa_strategy(*g_, profile_, estimate_, {}, &full);
    if (!planned || !worth(planned->prediction.latency_ms)) return std::nullopt;
    d.choice = full;
    d.predicted_ms = planned->prediction.latency_ms;
    d.partial = false;
  }
  d.plan = space.plan_of(d.choice);
  d.plan.strategy = "hpa";
  d.plan.version = ++version_;
  current_ = d.choice;
  since_migration_ = 0;
  return d;
}

}  // namespace d3
