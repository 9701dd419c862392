#include "planner/adaptation.hpp"

#include <algorithm>
#include <cmath>

#include "planner/link_estimator.hpp"

namespace d3 {

adaptive_planner::adaptive_planner(const graph& g, layer_profile profile, cluster_model initial,
                                   three_tier_choice current, int plan_version, adaptation_options options)
    : g_(&g), profile_(std::move(profile)), estimate_(std::move(initial)), current_(current), version_(plan_version),
      options_(options) {
  if (auto space = three_tier_space::create(g, profile_, estimate_)) remember_layers(space->plan_of(current_));
}

void adaptive_planner::remember_layers(const deployment_plan& plan) {
  auto sg = build_stage_graph(*g_, plan);
  if (!sg) return;
  for (const stage& st : sg->stages)
    if (st.kind == stage_kind::segment || st.kind == stage_kind::tile)
      for (int l : st.layers)
        if (weight_bytes(g_->layers[size_t(l)]) > 0) cached_[st.node].insert(l);
}

migration_cost adaptive_planner::cost_of(const three_tier_space& space, const three_tier_choice& choice) const {
  migration_cost cost;
  auto sg = build_stage_graph(*g_, space.plan_of(choice));
  if (!sg) return cost;
  std::map<std::string, size_t> bytes;  // per node
  for (const stage& st : sg->stages) {
    cost.spawn_ms += options_.spawn_ms;
    if (st.kind != stage_kind::segment && st.kind != stage_kind::tile) continue;
    auto cached = cached_.find(st.node);
    for (int l : st.layers) {
      const size_t b = weight_bytes(g_->layers[size_t(l)]);
      if (b == 0) continue;
      if (!options_.ship_everything && cached != cached_.end() && cached->second.count(l)) continue;
      bytes[st.node] += b;
    }
  }
  auto app = estimate_.nodes.find(estimate_.app_node);
  for (const auto& [node, b] : bytes) {
    cost.bytes += b;
    auto to = estimate_.nodes.find(node);
    if (node == estimate_.app_node || app == estimate_.nodes.end() || to == estimate_.nodes.end()) continue;
    const link_profile link = estimate_.links.link(app->second.role, to->second.role);
    cost.ship_ms += link.latency_ms + double(b) * 8.0 / (link.bandwidth_mbit_per_s * 1e3);
  }
  return cost;
}

bool adaptive_planner::worth(double current_ms, double ms, const migration_cost& cost) const {
  const double required = options_.hysteresis;
  const double gain = current_ms - ms;
  return ms < current_ms * (1.0 - required) && gain >= options_.min_gain_ms &&
         gain * options_.horizon_requests >= cost.total_ms();
}

void adaptive_planner::observe(const std::vector<link_sample>& samples) {
  for (const link_sample& s : samples) {
    if (s.bytes == 0 || s.ms < 0 || (s.from == s.to && s.from != node_role::edge)) continue;
    // The testbed's links are symmetric by role pair. Device<->cloud is estimated as a link of
    // its own: it is two links in series, and which of them a slow transfer is slow on cannot
    // be told from it (the uplink in one setting, the backbone in the other).
    std::deque<link_sample>& window = samples_[std::minmax(s.from, s.to)];
    window.push_back(s);
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

namespace {

// The median of |x - center| / center over `values` (a robust relative spread).
double relative_spread(const std::vector<double>& values, double center) {
  if (values.size() < 2 || !(center > 0)) return 0;
  std::vector<double> d;
  for (double v : values) d.push_back(std::abs(v - center) / center);
  std::nth_element(d.begin(), d.begin() + long(d.size() / 2), d.end());
  return d[d.size() / 2];
}

}  // namespace

cluster_model adaptive_planner::bounded(int side) const {
  cluster_model c = estimate_;
  auto widen = [&](link_profile p, double u) {
    const double f = 1.0 + std::min(u, options_.max_uncertainty);
    if (side > 0) return link_profile{p.bandwidth_mbit_per_s / f, p.latency_ms * f};
    return link_profile{p.bandwidth_mbit_per_s * f, p.latency_ms / f};
  };
  for (const auto& [key, u] : link_uncertainty_) {
    if (key == std::make_pair(node_role::device, node_role::edge)) c.links.device_edge = widen(c.links.device_edge, u);
    else if (key == std::make_pair(node_role::edge, node_role::cloud)) c.links.edge_cloud = widen(c.links.edge_cloud, u);
    else if (key == std::make_pair(node_role::edge, node_role::edge)) c.links.edge_edge = widen(c.links.edge_edge, u);
    else if (key == std::make_pair(node_role::device, node_role::cloud) && c.links.device_cloud)
      c.links.device_cloud = widen(*c.links.device_cloud, u);
  }
  for (const auto& [node, u] : speed_uncertainty_) {
    auto it = c.nodes.find(node);
    if (it == c.nodes.end()) continue;
    const double f = 1.0 + std::min(u, options_.max_uncertainty);
    it->second.speed = side > 0 ? it->second.speed / f : it->second.speed * f;
  }
  return c;
}

void adaptive_planner::update_estimates() {
  for (const auto& [key, window] : samples_) {
    if (key == std::make_pair(node_role::device, node_role::edge))
      estimate_.links.device_edge = estimate_link(window, estimate_.links.device_edge);
    else if (key == std::make_pair(node_role::edge, node_role::cloud))
      estimate_.links.edge_cloud = estimate_link(window, estimate_.links.edge_cloud);
    else if (key == std::make_pair(node_role::edge, node_role::edge))
      estimate_.links.edge_edge = estimate_link(window, estimate_.links.edge_edge);
    else if (key == std::make_pair(node_role::device, node_role::cloud))
      estimate_.links.device_cloud =
          estimate_link(window, estimate_.links.link(node_role::device, node_role::cloud));
    else
      continue;
    // The samples' times against the estimate's prediction for their sizes.
    const link_profile fitted = estimate_.links.link(key.first, key.second);
    std::vector<double> ratios;
    for (const link_sample& x : window) {
      const double predicted = fitted.latency_ms + double(x.bytes) * 8.0 / (fitted.bandwidth_mbit_per_s * 1e3);
      if (predicted > 0) ratios.push_back(x.ms / predicted);
    }
    link_uncertainty_[key] = relative_spread(ratios, 1.0);
  }
  for (const auto& [node, window] : speed_samples_) {
    std::vector<double> sorted(window.begin(), window.end());
    std::nth_element(sorted.begin(), sorted.begin() + long(sorted.size() / 2), sorted.end());
    estimate_.nodes[node].speed = sorted[sorted.size() / 2];
    speed_uncertainty_[node] =
        relative_spread(std::vector<double>(window.begin(), window.end()), estimate_.nodes[node].speed);
  }
  uncertainty_ = 0;
  for (const auto& [key, u] : link_uncertainty_) uncertainty_ = std::max(uncertainty_, u);
  for (const auto& [node, u] : speed_uncertainty_) uncertainty_ = std::max(uncertainty_, u);
}

std::optional<adaptation_decision> adaptive_planner::decide() {
  ++decisions_;
  update_estimates();
  // Estimates still moving (a change half seen, or noise) decide nothing.
  if (since_migration_ <= options_.cooldown_requests) {
    streak_ = 0;
    return std::nullopt;
  }
  auto created = three_tier_space::create(*g_, profile_, estimate_);
  const cluster_model high = bounded(+1), low = bounded(-1);  // the spaces keep pointers to these
  auto pessimistic = three_tier_space::create(*g_, profile_, high);
  auto optimistic = three_tier_space::create(*g_, profile_, low);
  if (!created || !pessimistic || !optimistic) return std::nullopt;
  three_tier_space& space = created.value();
  adaptation_decision d;
  d.current_ms = space.latency(current_);
  d.robust_current_ms = optimistic->latency(current_);
  auto robust = [&](const three_tier_choice& c) { return pessimistic->latency(c); };
  // Candidates: the partial adjustment near the current boundaries and the full HPA search; the
  // one whose gain over the horizon minus its cost is larger wins (moving fewer layers is
  // cheaper, so the partial one wins unless the full one gains more than it costs extra).
  auto net = [&](double ms, const migration_cost& cost) {
    return (d.robust_current_ms - ms) * options_.horizon_requests - cost.total_ms();
  };
  bool found = false;
  if (options_.partial_search) {
    const three_tier_choice local = hpa_local_search(space, current_, options_.local_radius);
    const double ms = robust(local);
    const migration_cost cost = cost_of(space, local);
    if (worth(d.robust_current_ms, ms, cost)) {
      d.choice = local;
      d.robust_predicted_ms = ms;
      d.cost = cost;
      found = true;
    }
  }
  three_tier_choice full;
  auto planned = hpa_strategy(*g_, profile_, estimate_, {}, &full);
  if (planned) {
    const migration_cost cost = cost_of(space, full);
    const double ms = robust(full);
    if (worth(d.robust_current_ms, ms, cost) && (!found || net(ms, cost) > net(d.robust_predicted_ms, d.cost))) {
      d.choice = full;
      d.robust_predicted_ms = ms;
      d.cost = cost;
      d.partial = false;
      found = true;
    }
  }
  if (!found) {
    streak_ = 0;
    return std::nullopt;
  }
  d.predicted_ms = space.latency(d.choice);
  // One verdict is one sample's worth: it must hold on `confirmations` answers in a row.
  if (++streak_ < options_.confirmations) return std::nullopt;
  streak_ = 0;
  d.plan = space.plan_of(d.choice);
  d.plan.strategy = "hpa";
  d.plan.version = ++version_;
  current_ = d.choice;
  remember_layers(d.plan);
  since_migration_ = 0;
  return d;
}

}  // namespace d3
