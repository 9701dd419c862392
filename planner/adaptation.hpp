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
#include <set>
#include <string>
#include <vector>

#include "plan/request_accounting.hpp"
#include "planner/three_tier_space.hpp"

namespace d3 {

// One transfer observed between nodes of two roles: `bytes` took `ms` from send to arrival, a
// time that may be off by clock_error_ms either way (two machines' clocks compared through an
// estimated offset).
struct link_sample {
  node_role from = node_role::device, to = node_role::edge;
  size_t bytes = 0;
  double ms = 0;
  double clock_error_ms = 0;
};


// When a migration is worth it. Every link and node speed estimate carries its uncertainty u (the
// relative spread of its samples around it); the new plan is priced with what it uses at their
// pessimistic ends (bandwidth and speed / (1 + u), latency * (1 + u)) and the running plan at
// their optimistic ends, so estimates of links a plan does not use do not matter and noisy ones
// must be beaten by a margin. Priced that way, the new plan must be faster by the hysteresis
// (relative) and by min_gain_ms, and its gain over the next horizon_requests requests must exceed
// what the migration costs: the weights it ships to nodes that lack them, over the estimated links
// from the app's node, plus spawn_ms per stage. A verdict must hold on `confirmations` answers
// with at most one answer between them that found no move worth it (one sample decides
// nothing; one noisy answer in the middle of a change does not start the count again).
struct adaptation_options {
  double hysteresis = 0.05;     // a new plan must be predicted this much faster (relative)...
  double min_gain_ms = 1.0;     // ...and at least this many ms
  double horizon_requests = 1000;  // requests a migration's gain is counted over
  double spawn_ms = 20;           // per stage of the new plan: spawn, set up, route (wall time)
  int confirmations = 2;          // answers a verdict must hold on (one gap allowed)
  // A move that would serve only after this many answers at the current latency (its shipping
  // and spawning, estimated) goes second when a move serving sooner gains at least quick_share
  // of its gain: the quick one is taken now, the slow one decided again from there.
  double quick_requests = 5;
  double quick_share = 0.5;
  // Quick candidates besides the search's: the best this many plans whose weights are in place
  // or would arrive within the quick_requests (adaptive_planner::ready_choices). 0: none.
  size_t ready_candidates = 3;
  // Interim moves: while the plan last decided waits for its weights (the virtual clock serves
  // earlier versions meanwhile), a quick move from the plan serving may be taken; the plan
  // decided is decided again from there. Off under the wall clock, where the runtime ships in
  // the background and the planner waits (request_outcome::migrating).
  bool interim_moves = true;
  // An idle node's probes are believed beyond its planned speed when they read at least this
  // many times more (0: never; only its stages can show it faster then). 2: as for stages
  // (bounded(): below 2x a node is priced at its planned speed at most, pessimistically anyway).
  // On the virtual clock a probe is the fragment's thread CPU time over the node's speed, run
  // alone on the machine (machine_cpu_lock): a host's load cannot read as speed. Off under the
  // wall clock, where a probe's few ms can run on a cgroup quota's burst or in a quiet phase of a
  // shared host (measured on the namespace cluster: a 0.2-core edge read 4.6x its profile, and a
  // 2.5x exception drew the whole model onto it and back, 3 migrations).
  double probes_beyond_plan = 2.0;
  double max_uncertainty = 1.0;   // cap of one estimate's relative uncertainty
  int cooldown_requests = 2;    // requests observed after a migration before the next decision
  // Damping: each migration decided within this many answers of the current one, but the first,
  // doubles the confirmations the next needs (at most 8x); for a move back to a choice one of them
  // left (three_tier_choice: the same cut, whichever nodes of a role), each one does. The first
  // move after a change is as quick as ever, and so is one more that goes somewhere new (a
  // refinement, or the next change of a trace: vgg16 in D3's setting restores its links 5 answers
  // after the edge slowdown's move, and waited 4 confirmations for it); moves that return, what
  // noisy estimates and a testbed that keeps toggling make (measured on the namespace cluster:
  // the speeds of 0.2-core edges read 0.77 and 1.51 of their profile a few answers apart, and
  // the planner moved the whole model between them and back), must hold across fresh windows.
  // 20: the netns cluster's noisy follow-ups came 6-10 answers after the first move; the
  // default trace's next real change (the LAN restored) 27 answers after the last, and damping
  // it there cost 2 requests to reach the new optimum.
  int damping_requests = 20;
  int local_radius = 2;         // boundary moves of the partial search
  size_t window = 3;            // samples per link (median): follows a change within two requests
  bool partial_search = true;   // false: always a full HPA search (the full re-partition baseline)
  bool ship_everything = false;   // the full re-partition redeploys every layer: its cost counts all
  // Lossless codecs on the links (planner/codec_choice.hpp): every candidate is searched and
  // priced with the codecs choose_codecs gives it on the estimates, so a migration keeps (or
  // gains, or drops) encoded crossings as the links change. Unset: every candidate is raw.
  std::optional<codec_choice_options> codecs;
};

// What a migration would cost (planner's estimate).
struct migration_cost {
  size_t bytes = 0;    // weights shipped to nodes that lack them
  // Those bytes, and the ones an earlier decision is still shipping there, over the estimated
  // links from the app's node, one node after another: until the plan can serve.
  double ship_ms = 0;
  double spawn_ms = 0;
  double total_ms() const { return ship_ms + spawn_ms; }
};

struct adaptation_decision {
  three_tier_choice choice;
  deployment_plan plan;
  double current_ms = 0;    // the running plan, re-priced on the new estimates
  double predicted_ms = 0;  // the new plan
  bool partial = true;      // found by the local search near the current boundaries
  migration_cost cost;      // what moving to it is estimated to cost
  double robust_current_ms = 0, robust_predicted_ms = 0;  // priced at the estimates' bounds
};

class adaptive_planner {
 public:
  // `initial`: the cluster as planned at deploy time (speeds, first link estimates); `current`:
  // the choice of three_tier_space over g that `deployed` came from (`deployed` may be a
  // baseline's plan HPA preferred; it is what is priced as the running plan).
  adaptive_planner(const graph& g, layer_profile profile, cluster_model initial, three_tier_choice current,
                   deployment_plan deployed, adaptation_options options = {});

  void observe(const std::vector<link_sample>& samples);
  // Node speeds: a stage's profile time (speed 1, times the shares) over its observed time is one
  // sample of its node's speed; the estimate is the median of the node's last `window` samples
  // (stages whose profile time is under 0.2 ms are too short to say anything and are skipped).
  // Probes of an idle node (compute_observation::probe): the median of its last three is compared
  // with the median of its first three since its last stage, its reference: within a factor 1.25
  // of it either way, the node is taken
  // to run as it did then (its estimate then is the sample; a node never measured stays
  // unmeasured); beyond, that estimate times the factor. A probe's fragment and a stage's layers
  // differ in what dominates them (measured: alexnet's fully connected part ran at 0.8 of the
  // profile's speed, its convolutional probe at 1.0), so probes are compared only with probes:
  // they tell a node that slowed or recovered while idle, not a few percent.
  void observe_compute(const std::vector<compute_observation>& samples);
  // Called once per answered request, after observe(): a plan to migrate to, or nothing.
  std::optional<adaptation_decision> decide();
  // Instead of decide() while the plan last decided is not serving yet (its weights still on
  // their way): nothing is decided on answers of the plan before it, and the cooldown after a
  // migration counts from when the new plan serves.
  void await_migration() {
    since_migration_ = 0;
    streak_ = 0;
    verdict_ = "waiting for the migration's weights to arrive";
  }

  // Weights the nodes hold besides the plans run so far (standby copies, planner/standby.hpp,
  // once they have arrived: request_outcome::standby_arrived): moving work onto them ships
  // nothing. Copies still on their way are not noted: a move onto them would wait for them.
  void note_cached(const std::map<std::string, std::set<int>>& layers) {
    for (const auto& [node, set] : layers) cached_[node].insert(set.begin(), set.end());
  }

  // The version that answered a request (before decide()): the weights it runs have arrived
  // where it runs them. While it is older than the plan last decided, and that plan waits for
  // weights still crossing, decide() measures moves against it (interim moves).
  void note_serving(int version);

  const cluster_model& estimate() const { return estimate_; }
  // The estimates at their pessimistic (+1: candidates are priced there) or optimistic (-1: the
  // running plan) ends, as the last decide() priced plans (for logs and tests).
  cluster_model bound(int side) const { return bounded(side); }
  // The largest relative uncertainty of a link or node speed estimate (0 before any sample).
  double uncertainty() const { return uncertainty_; }
  // Which estimate has it: "backbone bandwidth lower", "edge1 speed slower", ... ("" when 0).
  const std::string& uncertainty_source() const { return uncertainty_source_; }
  // What migrating from the running plan to `choice` would cost now (layers cached on the nodes
  // are not shipped again).
  const three_tier_choice& current() const { return current_; }
  int plan_version() const { return version_; }
  const deployment_plan& running_plan() const { return running_; }
  int decisions() const { return decisions_; }
  // Why the last decide() did what it did (for logs and tests).
  const std::string& verdict() const { return verdict_; }

 private:
  link_profile estimate_link(const std::deque<link_sample>& samples, link_profile previous) const;
  void update_estimates();
  // What a probe that found `node` faster (`probed`) may raise its speed to, from `known`.
  double probed_ceiling(const std::string& node, double known, double probed) const;
  // The estimates at their pessimistic (+1) or optimistic (-1) ends.
  cluster_model bounded(int side) const;
  // Whether moving from current_ms to ms (both robust prices) clears the hysteresis, min_gain_ms
  // and the migration's cost over the horizon.
  bool worth(double current_ms, double ms, const migration_cost& cost) const;
  // The weighted layers `plan` runs, by node (segments and tiles; empty if it builds no stage graph).
  std::map<std::string, std::set<int>> weights_placed(const deployment_plan& plan) const;
  void remember_layers(const deployment_plan& plan);  // what the nodes now cache
  // The `count` choices of `space` the screening estimate prices best among those whose weights
  // are in place on the nodes that would run them, or could be shipped there from the app's node
  // within `within_ms` on the estimated links (nodes of a role taken in any order, as
  // on_cached_nodes would place them). Layers still crossing (crossing_) are not in place.
  std::vector<three_tier_choice> ready_choices(three_tier_space& space, double within_ms, size_t count) const;
  // `plan` priced on `cluster` (its tiles as deployed, not re-weighted).
  double price(const deployment_plan& plan, const cluster_model& cluster);
  // The plan serving the requests while the plan last decided waits for weights still crossing
  // to its nodes; nullptr when that plan serves, or uses nothing still crossing.
  const deployment_plan* waiting_on() const;
  // What migrating to `plan` costs; `links`: the cluster whose links price the shipping (default
  // the estimates).
  migration_cost cost_of(const deployment_plan& plan, const cluster_model* links = nullptr) const;
  // `plan` with its tiles re-weighted by the estimated speeds (no layer moves).
  deployment_plan reweighted(const deployment_plan& plan) const;
  // `plan` with the nodes of each role permuted onto the nodes of that role that already hold
  // the most of the weights it needs there (the fewest bytes to ship; of those, the one whose
  // shipments cross the links the plan serving sends least over; a tie keeps the plan's own
  // names). A search names the nodes it places by their estimated speed, so two nodes of nearly
  // one speed swap places with noise, and a plan that needs nothing shipped would otherwise be
  // found as one that ships a whole model. Roles of more than 8 nodes are left as they are.
  deployment_plan on_cached_nodes(const deployment_plan& plan) const;

  const graph* g_;
  layer_profile profile_;
  cluster_model estimate_;
  three_tier_choice current_;
  deployment_plan running_;
  int version_;
  stage_graph_memo memo_;
  adaptation_options options_;
  std::map<std::pair<node_role, node_role>, std::deque<link_sample>> samples_;  // by unordered role pair
  std::map<std::string, std::deque<double>> speed_samples_;                      // by node
  // Nodes whose window holds only what their own probes found (a change against their earlier
  // probes), no stage's time since: their departure from the profile is theirs alone.
  std::set<std::string> probe_estimated_;
  // Probe speeds are profile time over probe time; one probe can be 3x off on this shared machine
  // (measured), so both ends of a comparison are medians of three.
  struct probe_reference {
    std::vector<double> first;  // the node's first three probe speeds since its last stage
    std::deque<double> last;    // its last three
    double estimate = 0;        // the node's speed estimate when the first was taken
    double factor_seen = 1.0;   // the last three against the first when a change was last seen
    double window_factor = 1.0;  // the same when the probes last set the node's window
  };
  std::map<std::string, probe_reference> probe_references_;  // by node, since its last stage
  std::map<std::pair<node_role, node_role>, int> last_sampled_;  // decision count at its last sample
  int since_migration_ = 1 << 20;
  int decisions_ = 0;
  int streak_ = 0;             // answers on which some migration was worth it, since a reset
  bool streak_gap_ = false;    // an answer without one came since the streak started
  // Migrations of the last damping_requests answers (for damping): when, and the choice each left.
  struct recent_migration {
    int at = 0;
    three_tier_choice left;
  };
  std::deque<recent_migration> recent_;
  int change_seen_at_ = -1;  // decision count when probes last found an idle node changed
  std::string verdict_;
  double uncertainty_ = 0;
  std::string uncertainty_source_;
  // Per link: the relative spread of the bandwidth its samples imply above and below the
  // estimate, each weighted by its size over the window's largest (small probes imply little
  // about a link's bandwidth), and of their times over and under the estimate's.
  struct link_spread {
    double bandwidth_higher = 0, bandwidth_lower = 0, time_longer = 0, time_shorter = 0;
  };
  std::map<std::pair<node_role, node_role>, link_spread> link_uncertainty_;
  // Per node: the relative spread of its speed samples above the estimate (faster) and below it
  // (slower), apart: a slow outlier says nothing of how fast the node may be.
  struct speed_spread {
    double faster = 0, slower = 0;
    double widest() const { return std::max(faster, slower); }
  };
  std::map<std::string, speed_spread> speed_uncertainty_;
  std::map<std::string, double> planned_speed_;  // by node: its speed when the plan was deployed
  std::map<std::string, std::set<int>> cached_;  // node -> layers (with weights) it holds
  // Of cached_, the layers decided plans shipped that no version serving has run there yet.
  std::map<std::string, std::set<int>> crossing_;
  // The last plans decided (and the first) and their choices, by version.
  std::map<int, std::pair<deployment_plan, three_tier_choice>> decided_;
  int serving_version_ = -1;  // note_serving's (-1: never called, no interim moves)
  // The plans run so far (the running one included), oldest first, at most max_history: a
  // change that reverts is answered by a plan whose weights are in place.
  std::vector<std::pair<deployment_plan, three_tier_choice>> history_;
  static constexpr size_t max_history = 8;
};

}  // namespace d3
