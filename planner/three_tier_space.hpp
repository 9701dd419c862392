// The plan space of HPA and of its exact solver (the D3 literature, field.md): three tiers in the
// model's topological order, device [0, i), edge [i, j), cloud [j, n) (data only moves forward
// through the tiers; an empty tier is skipped), and optionally the edge segment's leading run
// [i, b] tiled (vertical separation) over the K fastest edge nodes of the cluster. Tile heights
// follow the edge nodes' speeds (uniform when they are equal); the scatter runs on the edge node
// that receives the segment's input, so halos travel over edge<->edge links, not the uplink.
//
// Every choice is priced by the one cost model (planner/cost_model.hpp) on the stage graph the
// runtime would deploy, so the planner and the exact solver agree on what a plan costs.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "planner/codec_choice.hpp"
#include "planner/strategies.hpp"

namespace d3 {

struct three_tier_choice {
  int device_end = 0;  // i
  int edge_end = 0;    // j >= i
  int tiled_end = -1;  // b in [i, j): the tiled run is [i, b]; -1: no tiled run
  int tile_nodes = 1;  // K >= 2 when tiled
  bool operator==(const three_tier_choice& o) const {
    return device_end == o.device_end && edge_end == o.edge_end && tiled_end == o.tiled_end && tile_nodes == o.tile_nodes;
  }
  bool operator<(const three_tier_choice& o) const;
};

class three_tier_space {
 public:
  // Precondition: g prepared; the cluster has nodes "device" and "cloud" and at least one edge
  // node (edges ordered fastest first, then by name: edge1, edge2, ...).
  // `codecs` (optional): plans are priced with the codecs choose_codecs gives them
  // (planner/codec_choice.hpp), and screening counts each tensor at its smallest measured encoding.
  static result<three_tier_space> create(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                                         const codec_choice_options* codecs = nullptr);

  int layers() const { return int(order_.size()); }  // n, computed layers
  int edge_nodes() const { return int(edges_.size()); }
  // b values with [i, b] tileable (ascending); cached.
  const std::vector<int>& tileable_ends(int i);

  deployment_plan plan_of(const three_tier_choice& c) const;
  // The cost model's latency (ms) of a choice; +infinity when the choice is not deployable (e.g.
  // more tiles than output rows). Memoized: searches revisit choices. Untiled choices take the
  // closed form of screen_untiled, which equals the stage-graph replay on them (tested).
  double latency(const three_tier_choice& c);
  result<planned> evaluate(const three_tier_choice& c) const;
  size_t evaluations() const { return evaluations_; }

  // An untiled choice in closed form, O(n) without allocation: each tier's compute, and per link
  // the graph inputs sent at 0 then the tier's crossing tensors sent when it finishes.
  double screen_untiled(int i, int j) const;
  // screen_untiled for every i <= j at once, [i * (n + 1) + j] (+infinity for i > j), in
  // O(n^2 + n * edges): for each i, j sweeps up and moves one layer from the cloud to the edge at
  // a time, updating the crossing bytes of that layer and of what it reads (tested equal).
  std::vector<double> screen_all_untiled() const;
  // Screening a tiled choice: screen_untiled minus this estimate of what tiling saves: the run's
  // time on the segment's edge minus its K tiles' (each at its halo-inclusive share of every layer
  // plus the profile's tile overhead) spread over the K fastest edges' summed rate, and, for a run
  // ending the edge segment, its output crossing the backbone from K edges in parallel. Other
  // tile messages are left to the cost model. -infinity when K tiles do not fit the run's output.
  double tiling_saving_ms(const three_tier_choice& c) const;
  // The end of the longest tileable run from position i, or -1.
  int longest_run_end(int i) {
    if (i >= layers()) return -1;
    const std::vector<int>& ends = tileable_ends(i);
    return ends.empty() ? -1 : ends.back();
  }
  // The largest b <= limit with [i, b] tileable, or -1.
  int tileable_end_at_most(int i, int limit);

  const std::vector<int>& order() const { return order_; }

 private:
  const graph* g_ = nullptr;
  const layer_profile* profile_ = nullptr;
  const cluster_model* cluster_ = nullptr;
  std::vector<int> order_;            // computed layers, topological
  std::vector<int> position_;         // layer -> position (-1 for inputs)
  // For screening without allocation: per layer, its readers' positions, its output bytes and
  // whether the graph returns it; per node, the prefix sums of its compute.
  std::vector<std::vector<int>> reader_positions_;
  std::vector<size_t> output_bytes_;
  std::optional<codec_choice_options> codecs_;
  std::vector<bool> is_graph_output_;
  std::map<std::string, std::vector<double>> node_prefix_;  // per node: prefix sums of its layer times
  // Per (b, K): tile t's time on the t-th fastest edge over positions [first, b] as prefix sums
  // (its computed share of each layer, halo included, priced by layer_profile::tile_cost); empty
  // when K uniform tiles do not fit the run's output. Filled as screening asks (const).
  struct tile_times {
    int first = 0;
    std::vector<std::vector<double>> prefix;
  };
  mutable std::map<std::pair<int, int>, tile_times> tile_times_;
  const tile_times& tile_times_of(int i, int b, int k) const;
  std::vector<double> tier_prefix_[3];  // screening's copies: device, the edge segment's node, cloud
  message_costs tier_messages_[3];      // the same tiers' message costs, over their speeds
  // An untiled choice's latency from its crossing bytes per (from tier, to tier) and the graph
  // inputs' bytes per destination tier (see crossing_cell in the .cpp: [0][0] and input_bytes[0]
  // are the device tier's bundles from and to the app, which cross no link).
  double untiled_latency(int i, int j, const size_t bytes[3][3], const size_t input_bytes[3]) const;
  // Time node `name` takes for positions [begin, end).
  double node_ms(const std::string& name, int begin, int end) const {
    const std::vector<double>& prefix = node_prefix_.at(name);
    return prefix[size_t(end)] - prefix[size_t(begin)];
  }
  std::vector<std::string> edges_;    // edge node names, sorted
  std::map<int, std::vector<int>> tileable_ends_;
  std::map<three_tier_choice, double> memo_;
  mutable stage_graph_memo stage_memo_;  // tiled runs' geometry, shared by the choices priced
  size_t evaluations_ = 0;
};

// How many of the first `layers` positions run on different nodes under `a` and `b` (device, the
// edge segment's node, the tiled run's K nodes, cloud): the layers a migration between the two
// moves.
int layers_placed_differently(const three_tier_choice& a, const three_tier_choice& b, int layers);

// The exact optimum over the whole space (every i <= j, every tileable [i, b] inside the edge
// segment, every K from 2 to the number of edge nodes): O(n^3 K) cost-model evaluations. For
// validation; its plan's strategy is "exact".
result<planned> three_tier_exact(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                                 three_tier_choice* chosen = nullptr);

struct hpa_options {
  int screened = 4;           // screened choices (untiled or tiled) the local search starts from
  int refine_radius = 1;      // local search: boundary moves of up to this many positions
  // The baselines' plans (strategies.hpp: baseline_names) are candidates too, so HPA's plan is
  // never predicted slower than any baseline's. Not when a `chosen` choice is asked for: a
  // baseline's plan may lie outside the three-tier space (the planner actor adapts inside it).
  bool baseline_candidates = true;
  // Plans carry codecs (planner/codec_choice.hpp): the search prices every plan with the codecs
  // choose_codecs gives it, so a partition that pays off only with its tensors encoded (e.g. an
  // 8-bit image offloaded) is found; the baselines' candidates get codecs the same way.
  std::optional<codec_choice_options> codecs;
};

// HPA: screens every (i, j), untiled and with every tileable leading edge run over each K, with
// the O(n) estimate; then, from each of the best few, a local search on the cost model over
// boundary, tiling end and K moves until no move helps; then the baselines' plans (see
// hpa_options). Plan strategy "hpa".
result<planned> hpa_strategy(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                             hpa_options options = {}, three_tier_choice* chosen = nullptr);

// The search HPA runs at adaptation time: local search from `start` only (partial adjustment near
// the current boundaries), over moves of up to `radius` positions.
three_tier_choice hpa_local_search(three_tier_space& space, three_tier_choice start, int radius);

}  // namespace d3
