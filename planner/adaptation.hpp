// Live adaptation (HPA's partial adjustment): the planner keeps smoothed estimates of the links
// from transfers the runtime observes, re-prices the running plan, and proposes a new one only
// when its predicted gain clears a hysteresis. It searches near the current boundaries first
// (hpa_local_search) and falls back to a full HPA search when that finds nothing worth moving.
// Pure logic on the model graph and measurements: the planner actor (actors/planner_actor.hpp)
// feeds it and the deployment migrates.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "plan/request_accounting.hpp"
#include "planner/three_tier_space.hpp"

namespace d3 {

// One transfer observed between nodes of two roles: `bytes` took `ms` from send to arrival.
struct link_sample {
  node_role from = node_role::device, to = node_role::edge;
  size_t bytes = 0;
  double ms = 0;
};


struct adaptation_options {
  double hysteresis = 0.05;     // a new plan must be predicted this much faster (relative)...
  double min_gain_ms = 1.0;     // ...and at least this many ms
  int cooldown_requests = 2;    // requests observed after a migration before the next decision
  int local_radius = 2;         // boundary moves of the partial search
  size_t window = 3;            // samples per link (median): follows a change within two requests
  bool partial_search = true;   // false: always a full HPA search (the full re-partition baseline)
};

struct adaptation_decision {
  three_tier_choice choice;
  deployment_plan plan;
  double current_ms = 0;    // the running plan, re-priced on the new estimates
  double predicted_ms = 0;  // the new plan
  bool partial = true;      // found by the local search near the current boundaries
};

class adaptive_planner {
 public:
  // `initial`: the cluster as planned at deploy time (speeds, first link estimates); `current`:
  // the deployed choice of three_tier_space over g.
  adaptive_planner(const graph& g, layer_profile profile, cluster_model initial, three_tier_choice current,
                   int plan_version, adaptation_options options = {});

  void observe(const std::vector<link_sample>& samples);
  // Node speeds: a stage's profile time (speed 1, times the shares) over its observed time is one
  // sample of its node's speed; the estimate is the median of the node's last `window` samples
  // (stages whose profile time is under 0.2 ms are too short to say anything and are skipped).
  void observe_compute(const std::vector<compute_observation>& samples);
  // Called once per answered request, after observe(): a plan to migrate to, or nothing.
  std::optional<adaptation_decision> decide();

  const cluster_model& estimate() const { return estimate_; }
  const three_tier_choice& current() const { return current_; }
  int plan_version() const { return version_; }
  int decisions() const { return decisions_; }

 private:
  link_profile estimate_link(const std::deque<link_sample>& samples, link_profile previous) const;

  const graph* g_;
  layer_profile profile_;
  cluster_model estimate_;
  three_tier_choice current_;
  int version_;
  adaptation_options options_;
  std::map<std::pair<node_role, node_role>, std::deque<link_sample>> samples_;  // by unordered role pair
  std::map<std::string, std::deque<double>> speed_samples_;                      // by node
  int since_migration_ = 1 << 20;
  int decisions_ = 0;
};

}  // namespace d3
