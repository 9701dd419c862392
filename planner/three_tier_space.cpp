#include "planner/three_tier_space.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <tuple>

#include "kernels/tiling.hpp"

namespace d3 {

namespace {

constexpr double infinity = std::numeric_limits<double>::infinity();

// Where a layer's output counts for tier `t` in an untiled choice, or null: bytes[from][t] when
// it crosses to another tier (graph outputs count as going to tier 0, the app's node),
// input_bytes[t] for graph inputs a tier reads (tier 0 included: the app sends the device's stage
// its bundle too), bytes[0][0] for the device tier's graph outputs (to the app on its node: no
// link, but a bundle to encode).
size_t* crossing_cell(bool graph_input, int from, int t, bool read_in_t, bool graph_output, size_t bytes[3][3],
                      size_t input_bytes[3]) {
  if (graph_input) return read_in_t ? &input_bytes[t] : nullptr;
  const bool to = read_in_t || (t == 0 && graph_output);
  if (!to) return nullptr;
  if (t != from) return &bytes[from][t];
  return t == 0 && graph_output ? &bytes[0][0] : nullptr;
}

}  // namespace

bool three_tier_choice::operator<(const three_tier_choice& o) const {
  return std::tie(device_end, edge_end, tiled_end, tile_nodes) <
         std::tie(o.device_end, o.edge_end, o.tiled_end, o.tile_nodes);
}

result<three_tier_space> three_tier_space::create(const graph& g, const layer_profile& profile,
                                                  const cluster_model& cluster, const codec_choice_options* codecs) {
  for (const char* needed : {"device", "cloud"})
    if (!cluster.nodes.count(needed)) return status::error(std::string("three-tier planning: the cluster has no node '") + needed + "'");
  three_tier_space space;
  space.g_ = &g;
  space.profile_ = &profile;
  space.cluster_ = &cluster;
  for (const auto& [name, node] : cluster.nodes)
    if (node.role == node_role::edge) space.edges_.push_back(name);
  if (space.edges_.empty()) return status::error("three-tier planning: the cluster has no edge node");
  auto topo = topological_order(g);
  if (!topo) return topo.error();
  space.position_.assign(g.layers.size(), -1);
  for (int l : *topo)
    if (g.layers[size_t(l)].kind != layer_kind::input) {
      space.position_[size_t(l)] = int(space.order_.size());
      space.order_.push_back(l);
    }
  if (space.order_.empty()) return status::error("three-tier planning: the model has no computed layers");
  if (profile.milliseconds.size() != g.layers.size())
    return status::error("three-tier planning: the profile has " + std::to_string(profile.milliseconds.size()) +
                         " layers, the model " + std::to_string(g.layers.size()));
  const std::vector<std::vector<int>> readers = g.consumers();
  space.reader_positions_.resize(g.layers.size());
  space.is_graph_output_.assign(g.layers.size(), false);
  for (size_t l = 0; l < g.layers.size(); ++l) {
    for (int r : readers[l]) space.reader_positions_[l].push_back(space.position_[size_t(r)]);
    double fraction = 1.0;  // screening with codecs: the smallest measured encoding
    if (codecs)
      for (tensor_codec c : codecs->allowed) {
        const double f = profile.fraction(int(l), c);
        if (f > 0) fraction = std::min(fraction, f);
      }
    space.output_bytes_.push_back(size_t(double(g.layers[l].output_shape.bytes()) * fraction));
  }
  if (codecs) space.codecs_ = *codecs;
  for (int out : g.outputs) space.is_graph_output_[size_t(out)] = true;
  // Per node, the prefix sums of its layer times (its own measured profile or the planning one,
  // over its speed).
  for (const auto& [name, node] : cluster.nodes) {
    const layer_profile& times = node.profile_or(profile);
    if (times.milliseconds.size() != g.layers.size())
      return status::error("three-tier planning: node '" + name + "' has a profile of " +
                           std::to_string(times.milliseconds.size()) + " layers, the model " + std::to_string(g.layers.size()));
    std::vector<double>& prefix = space.node_prefix_[name];
    prefix.assign(1, 0.0);
    for (int l : space.order_) prefix.push_back(prefix.back() + times.milliseconds[size_t(l)] / node.speed);
  }
  // Fastest first (the edge segment's node, then the tiles' nodes): by the whole model's time on
  // each; among equals "edge2" before "edge10": by length, then by name.
  const int n = space.layers();
  std::sort(space.edges_.begin(), space.edges_.end(), [&](const std::string& a, const std::string& b) {
    const double ta = space.node_ms(a, 0, n), tb = space.node_ms(b, 0, n);
    return ta != tb ? ta < tb : node_name_less(a, b);
  });
  space.tier_prefix_[0] = space.node_prefix_.at("device");
  space.tier_prefix_[1] = space.node_prefix_.at(space.edges_[0]);
  space.tier_prefix_[2] = space.node_prefix_.at("cloud");
  const std::string tier_nodes[3] = {"device", space.edges_[0], "cloud"};
  for (int t = 0; t < 3; ++t) {
    const cluster_node& node = cluster.nodes.at(tier_nodes[t]);
    const message_costs& m = node.profile_or(profile).messages;
    space.tier_messages_[t] = {m.encode_ms / node.speed, m.encode_ms_per_mb / node.speed, m.decode_ms / node.speed,
                               m.decode_ms_per_mb / node.speed, m.copy_ms_per_mb / node.speed};
  }
  return space;
}

const std::vector<int>& three_tier_space::tileable_ends(int i) {
  auto it = tileable_ends_.find(i);
  if (it != tileable_ends_.end()) return it->second;
  // make_tiled_run's conditions, incrementally over b (kernels/tiling.hpp): every layer tileable;
  // every tensor before the end read inside the run and by nothing after it, and not a graph
  // output. The test checks this against make_tiled_run.
  std::vector<int> ends;
  int furthest_reader = -1;      // of the tensors produced in [i, b)
  bool earlier_output = false;   // a graph output in [i, b)
  int nearest_unresolved = -1;   // smallest "first reader" position among layers in [i, b)
  for (int b = i; b < layers() && tileable_layer(*g_, order_[size_t(b)]); ++b) {
    if (b > i) {
      const int prev = order_[size_t(b - 1)];
      int first_reader = std::numeric_limits<int>::max();
      for (int r : reader_positions_[size_t(prev)]) {
        furthest_reader = std::max(furthest_reader, r);
        first_reader = std::min(first_reader, r);
      }
      earlier_output |= is_graph_output_[size_t(prev)];
      nearest_unresolved = std::max(nearest_unresolved, first_reader);
    }
    if (!earlier_output && furthest_reader <= b && nearest_unresolved <= b) ends.push_back(b);
  }
  return tileable_ends_.emplace(i, std::move(ends)).first->second;
}

deployment_plan three_tier_space::plan_of(const three_tier_choice& c) const {
  deployment_plan plan = three_tier_plan(*g_, c.device_end, c.edge_end, edges_[0]);
  plan.strategy = "three-tier";
  if (c.tiled_end >= 0 && c.tile_nodes >= 2) {
    plan_tiled_run run;
    run.first = g_->layers[size_t(order_[size_t(c.device_end)])].name;
    run.last = g_->layers[size_t(order_[size_t(c.tiled_end)])].name;
    run.grid = near_square_grid(c.tile_nodes);
    run.nodes.assign(edges_.begin(), edges_.begin() + c.tile_nodes);
    run.scatter_node = edges_[0];
    // Uneven nodes get uneven tiles: a row's height follows its nodes' summed speed on the run
    // (1 / the run's time there), a column's width likewise (exact for one row or one column of
    // tiles). Nodes within 2% of each other count as equal (measured profiles differ by noise).
    const auto [rows, cols] = near_square_shape(c.tile_nodes);
    std::vector<double> row_weights(size_t(rows), 0.0), col_weights(size_t(cols), 0.0);
    double slowest = 0, fastest = infinity;
    for (int t = 0; t < c.tile_nodes; ++t) {
      const double run_ms = node_ms(run.nodes[size_t(t)], c.device_end, c.tiled_end + 1);
      const double speed = run_ms > 0 ? 1.0 / run_ms : 1.0;
      row_weights[size_t(t / cols)] += speed;
      col_weights[size_t(t % cols)] += speed;
      slowest = std::max(slowest, run_ms);
      fastest = std::min(fastest, run_ms);
    }
    if (slowest > fastest * 1.02) {
      run.row_weights = row_weights;
      run.col_weights = col_weights;
    }
    plan.tiled_runs.push_back(run);
  }
  return plan;
}

result<planned> three_tier_space::evaluate(const three_tier_choice& c) const {
  const int n = layers();
  if (c.device_end < 0 || c.device_end > c.edge_end || c.edge_end > n)
    return status::error("three-tier choice out of range");
  const bool tiled = c.tiled_end >= 0;
  if (tiled && (c.device_end >= c.edge_end || c.tiled_end < c.device_end || c.tiled_end >= c.edge_end ||
                c.tile_nodes < 2 || c.tile_nodes > edge_nodes()))
    return status::error("three-tier choice: tiled run out of range");
  deployment_plan plan = plan_of(c);
  if (codecs_) {
    D3_ASSIGN_OR_RETURN(auto priced, priced_with_codecs(*g_, std::move(plan), *profile_, *cluster_, *codecs_, &stage_memo_));
    return planned{std::move(priced.first), std::move(priced.second)};
  }
  D3_ASSIGN_OR_RETURN(const stage_graph stages, build_stage_graph(*g_, plan, &stage_memo_));
  D3_ASSIGN_OR_RETURN(plan_prediction prediction, predict_plan(*g_, stages, *profile_, *cluster_));
  return planned{std::move(plan), std::move(prediction)};
}

double three_tier_space::latency(const three_tier_choice& c) {
  auto it = memo_.find(c);
  if (it != memo_.end()) return it->second;
  ++evaluations_;
  double ms = infinity;
  if (!codecs_ && c.tiled_end < 0 && c.device_end >= 0 && c.device_end <= c.edge_end && c.edge_end <= layers()) {
    ms = screen_untiled(c.device_end, c.edge_end);  // equal to the cost model on untiled plans (tested)
  } else {
    auto e = evaluate(c);
    if (e) ms = e->prediction.latency_ms;
  }
  memo_.emplace(c, ms);
  return ms;
}

int three_tier_space::tileable_end_at_most(int i, int limit) {
  int best = -1;
  for (int b : tileable_ends(i))
    if (b <= limit) best = b;
  return best;
}

const three_tier_space::tile_times& three_tier_space::tile_times_of(int i, int b, int k) const {
  const auto key = std::make_pair(b, k);
  auto it = tile_times_.find(key);
  // A layer's tile region depends only on the run's end (regions propagate back from it), so the
  // times of a run from `first` serve every run to b that starts later.
  if (it != tile_times_.end() && it->second.first <= i) return it->second;
  tile_times times;
  times.first = i;
  const tensor_shape& out = g_->layers[size_t(order_[size_t(b)])].output_shape;
  const auto [rows, cols] = near_square_shape(k);
  auto run = make_tiled_run(*g_, order_[size_t(i)], order_[size_t(b)]);
  auto grid = run ? tile_grid::uniform(rows, cols, out.h, out.w) : result<tile_grid>(run.error());
  auto tiles = grid ? plan_tiles(*g_, *run, *grid) : result<std::vector<tile_geometry>>(grid.error());
  if (tiles && int(tiles->size()) == k && k <= edge_nodes()) {
    for (int t = 0; t < k; ++t) {  // tile t on the t-th fastest edge, as plan_of places them
      const cluster_node& node = cluster_->nodes.at(edges_[size_t(t)]);
      const layer_profile& profile = node.profile_or(*profile_);
      std::vector<double> prefix(1, 0.0);
      for (int p = i; p <= b; ++p) {
        const int l = order_[size_t(p)];
        const double share = computed_share(*g_, (*tiles)[size_t(t)], l);
        prefix.push_back(prefix.back() + profile.milliseconds[size_t(l)] * profile.tile_cost(l, share) / node.speed);
      }
      times.prefix.push_back(std::move(prefix));
    }
  }
  return tile_times_[key] = std::move(times);
}

double three_tier_space::tiling_saving_ms(const three_tier_choice& c) const {
  if (c.tiled_end < 0) return 0;
  const int begin = c.device_end, end = c.tiled_end + 1;
  const tile_times& times = tile_times_of(begin, c.tiled_end, c.tile_nodes);
  if (times.prefix.empty()) return -infinity;  // not deployable: screened last
  // Each tile as the cost model computes it (its halo-inclusive share of every layer, plus the
  // profile's tile overhead), balanced over the nodes' rates as plan_of's weights balance them:
  // K uniform tiles' work done at the summed rate. A fixed 15% halo overhead ranked DenseNet's
  // long runs (whose 7x7 tiles recompute most of their inputs) first, and the local search never
  // reached its short runs, 11% faster.
  double summed_rate = 0;
  for (const std::vector<double>& prefix : times.prefix)
    summed_rate += 1.0 / std::max(1e-12, prefix[size_t(end - times.first)] - prefix[size_t(begin - times.first)]);
  double saving = node_ms(edges_[0], begin, end) - double(c.tile_nodes) / summed_rate;
  // A run that ends the edge segment is gathered on the cloud (plan/plan.hpp): its K parts cross
  // the backbone from K edges at once, each over its own link, not one after another from one.
  const int output = order_[size_t(c.tiled_end)];
  if (end == c.edge_end && c.edge_end < layers()) {
    bool cloud_reads = false;
    for (int r : reader_positions_[size_t(output)]) cloud_reads |= r >= c.edge_end;
    if (cloud_reads) {
      const link_profile backbone = cluster_->links.link(node_role::edge, node_role::cloud);
      saving += transfer_ms({backbone.bandwidth_mbit_per_s, 0.0}, output_bytes_[size_t(output)]) *
                (1.0 - 1.0 / double(c.tile_nodes));
    }
  }
  return saving;
}

double three_tier_space::screen_untiled(int i, int j) const {
  auto tier_of_position = [&](int p) { return p < i ? 0 : p < j ? 1 : 2; };
  // Bytes per (from tier, to tier); graph inputs leave the device at 0, before the device's own
  // outputs, which leave when the device finishes (the link sends in that order).
  size_t bytes[3][3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}};
  size_t input_bytes[3] = {0, 0, 0};  // graph inputs, device to tier
  for (size_t l = 0; l < position_.size(); ++l) {
    const bool graph_input = position_[l] < 0;
    const int from = graph_input ? 0 : tier_of_position(position_[l]);
    int readers[3] = {0, 0, 0};
    for (int r : reader_positions_[l]) ++readers[tier_of_position(r)];
    for (int t = 0; t < 3; ++t)
      if (size_t* cell = crossing_cell(graph_input, from, t, readers[t] > 0, is_graph_output_[l], bytes, input_bytes))
        *cell += output_bytes_[l];
  }
  return untiled_latency(i, j, bytes, input_bytes);
}

double three_tier_space::untiled_latency(int i, int j, const size_t bytes[3][3], const size_t input_bytes[3]) const {
  const int n = layers();
  auto span = [&](int tier, int begin, int end) { return tier_prefix_[tier][size_t(end)] - tier_prefix_[tier][size_t(begin)]; };
  // Each tier's stage also decodes one bundle per producer (the app, an earlier tier) and encodes
  // one per destination (a later tier, the app), as the cost model prices stages.
  double messages[3] = {0, 0, 0};
  for (int t = 0; t < 3; ++t) {
    const message_costs& m = tier_messages_[t];
    if (input_bytes[t]) messages[t] += m.decode(input_bytes[t]);
    for (int f = 1; f < t; ++f)
      if (bytes[f][t]) messages[t] += m.decode(bytes[f][t]);
    if (t > 0 && bytes[0][t]) messages[t] += m.decode(bytes[0][t]);
    for (int u = t + 1; u < 3; ++u)
      if (bytes[t][u]) messages[t] += m.encode(bytes[t][u]);
    if (bytes[t][0]) messages[t] += m.encode(bytes[t][0]);  // graph outputs to the app
  }
  const double compute[3] = {span(0, 0, i) + messages[0], span(1, i, j) + messages[1], span(2, j, n) + messages[2]};
  const node_role roles[3] = {node_role::device, node_role::edge, node_role::cloud};
  // Arrival of the last tensor from tier `from` (done at `done`) at tier `to`; 0 when none.
  auto arrival = [&](int from, int to, double done) {
    const size_t early = from == 0 ? input_bytes[to] : 0;
    if (early == 0 && bytes[from][to] == 0) return 0.0;
    const link_profile link = cluster_->links.link(roles[from], roles[to]);
    auto transmission = [&](size_t n) { return transfer_ms({link.bandwidth_mbit_per_s, 0.0}, n); };
    const double early_free = transmission(early);
    double last = early ? early_free + link.latency_ms : 0.0;
    if (bytes[from][to])
      last = std::max(last, std::max(done, early_free) + transmission(bytes[from][to]) + link.latency_ms);
    return last;
  };
  const double device_done = compute[0];
  const double edge_done = j > i ? std::max(device_done, arrival(0, 1, device_done)) + compute[1]
                                          : device_done;
  const double cloud_ready = std::max({device_done, arrival(0, 2, device_done), arrival(1, 2, edge_done)});
  const double cloud_done = n > j ? cloud_ready + compute[2] : cloud_ready;
  return std::max({device_done, arrival(1, 0, edge_done), arrival(2, 0, cloud_done)});
}

std::vector<double> three_tier_space::screen_all_untiled() const {
  const int n = layers();
  const size_t count = position_.size();
  // Per position, the layers it reads (once per reading, as reader_positions_ lists them).
  std::vector<std::vector<int>> reads(static_cast<size_t>(n));
  for (size_t l = 0; l < count; ++l)
    for (int r : reader_positions_[l]) reads[size_t(r)].push_back(int(l));
  std::vector<double> out(size_t(n + 1) * size_t(n + 1), infinity);
  std::vector<int> from(count);
  std::vector<std::array<int, 3>> readers(count);  // per layer: its readers per tier
  size_t bytes[3][3];
  size_t input_bytes[3];
  // A layer's crossing bytes, added (sign +1) or taken away (-1).
  auto account = [&](size_t l, int sign) {
    const bool graph_input = position_[l] < 0;
    for (int t = 0; t < 3; ++t) {
      size_t* cell = crossing_cell(graph_input, from[l], t, readers[l][size_t(t)] > 0, is_graph_output_[l], bytes, input_bytes);
      if (cell) *cell = sign > 0 ? *cell + output_bytes_[l] : *cell - output_bytes_[l];
    }
  };
  for (int i = 0; i <= n; ++i) {
    // j = i: positions before i on the device, the rest in the cloud; the edge is empty.
    std::fill(&bytes[0][0], &bytes[0][0] + 9, size_t(0));
    std::fill(input_bytes, input_bytes + 3, size_t(0));
    for (size_t l = 0; l < count; ++l) {
      from[l] = position_[l] < 0 || position_[l] < i ? 0 : 2;
      readers[l] = {0, 0, 0};
      for (int r : reader_positions_[l]) ++readers[l][r < i ? 0 : 2];
      account(l, +1);
    }
    for (int j = i;; ++j) {
      out[size_t(i) * size_t(n + 1) + size_t(j)] = untiled_latency(i, j, bytes, input_bytes);
      if (j == n) break;
      // Position j moves from the cloud to the edge: its own tensor's crossings, and its readings.
      const size_t moved = size_t(order_[size_t(j)]);
      account(moved, -1);
      from[moved] = 1;
      account(moved, +1);
      for (int l : reads[size_t(j)]) {
        account(size_t(l), -1);
        --readers[size_t(l)][2];
        ++readers[size_t(l)][1];
        account(size_t(l), +1);
      }
    }
  }
  return out;
}

int layers_placed_differently(const three_tier_choice& a, const three_tier_choice& b, int layers) {
  // Placement of position p: 0 device, 1 the edge segment's node, 2 cloud, 10 + K the tiled run.
  auto placement = [](const three_tier_choice& c, int p) {
    if (p < c.device_end) return 0;
    if (p >= c.edge_end) return 2;
    return c.tiled_end >= p ? 10 + c.tile_nodes : 1;
  };
  int moved = 0;
  for (int p = 0; p < layers; ++p) moved += placement(a, p) != placement(b, p);
  return moved;
}

result<planned> three_tier_exact(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                                 three_tier_choice* chosen) {
  auto created = three_tier_space::create(g, profile, cluster);
  if (!created) return created.error();
  three_tier_space& space = created.value();
  const int n = space.layers();
  three_tier_choice best;
  double best_ms = infinity;
  auto consider = [&](const three_tier_choice& c) {
    const double ms = space.latency(c);
    if (ms < best_ms) best_ms = ms, best = c;
  };
  for (int i = 0; i <= n; ++i)
    for (int j = i; j <= n; ++j) {
      consider({i, j, -1, 1});
      if (i == j) continue;
      for (int b : space.tileable_ends(i)) {
        if (b >= j) break;
        for (int k = 2; k <= space.edge_nodes(); ++k) consider({i, j, b, k});
      }
    }
  if (best_ms == infinity) return status::error("three-tier exact: no deployable plan");
  auto result = space.evaluate(best);
  if (result) result->plan.strategy = "exact";
  if (chosen) *chosen = best;
  return result;
}

three_tier_choice hpa_local_search(three_tier_space& space, three_tier_choice current, int radius) {
  const int n = space.layers();
  double current_ms = space.latency(current);
  for (;;) {
    std::vector<three_tier_choice> moves;
    auto with_tiling_kept = [&](three_tier_choice c) {
      // A tiled run starts at the edge segment's first layer; keep it when it still fits.
      if (c.tiled_end >= 0) {
        const std::vector<int>& ends = c.device_end < n ? space.tileable_ends(c.device_end) : std::vector<int>{};
        if (c.device_end >= c.edge_end || std::find(ends.begin(), ends.end(), c.tiled_end) == ends.end() ||
            c.tiled_end >= c.edge_end) {
          // Else the tileable end nearest the old one inside the new segment, or none.
          int nearest = -1;
          for (int b : ends)
            if (b < c.edge_end && (nearest < 0 || std::abs(b - c.tiled_end) < std::abs(nearest - c.tiled_end))) nearest = b;
          c.tiled_end = nearest;
          if (nearest < 0) c.tile_nodes = 1;
        }
      }
      moves.push_back(c);
    };
    for (int d = -radius; d <= radius; ++d) {
      if (d == 0) continue;
      three_tier_choice c = current;
      c.device_end += d;
      if (c.device_end >= 0 && c.device_end <= c.edge_end) with_tiling_kept(c);
      c = current;
      c.edge_end += d;
      if (c.edge_end >= c.device_end && c.edge_end <= n) with_tiling_kept(c);
      c = current;  // both boundaries together: the edge segment slides
      c.device_end += d;
      c.edge_end += d;
      if (c.device_end >= 0 && c.edge_end <= n) with_tiling_kept(c);
    }
    if (current.device_end < current.edge_end) {
      const std::vector<int>& ends = space.tileable_ends(current.device_end);
      if (current.tiled_end >= 0) {
        three_tier_choice untiled = current;
        untiled.tiled_end = -1;
        untiled.tile_nodes = 1;
        moves.push_back(untiled);
        auto at = std::find(ends.begin(), ends.end(), current.tiled_end);
        for (int step = 1; step <= radius && at != ends.end(); ++step) {
          const long index = long(at - ends.begin());
          for (long other : {index - step, index + step})
            if (other >= 0 && other < long(ends.size()) && ends[size_t(other)] < current.edge_end)
              moves.push_back({current.device_end, current.edge_end, ends[size_t(other)], current.tile_nodes});
        }
        for (int k = 2; k <= space.edge_nodes(); ++k)
          if (k != current.tile_nodes) moves.push_back({current.device_end, current.edge_end, current.tiled_end, k});
      } else {
        // Tiling on: the longest run that fits, over each K (later moves shorten it).
        const int b = space.tileable_end_at_most(current.device_end, current.edge_end - 1);
        for (int k = 2; b >= 0 && k <= space.edge_nodes(); ++k) moves.push_back({current.device_end, current.edge_end, b, k});
      }
    }
    three_tier_choice best = current;
    double best_ms = current_ms;
    for (const three_tier_choice& m : moves) {
      const double ms = space.latency(m);
      if (ms < best_ms) best_ms = ms, best = m;
    }
    if (best == current) return current;
    current = best;
    current_ms = best_ms;
  }
}

result<planned> hpa_strategy(const graph& g, const layer_profile& profile, const cluster_model& cluster,
                             hpa_options options, three_tier_choice* chosen) {
  auto created = three_tier_space::create(g, profile, cluster, options.codecs ? &*options.codecs : nullptr);
  if (!created) return created.error();
  three_tier_space& space = created.value();
  const int n = space.layers();
  // 1. Screen every (i, j), untiled and with the edge segment's longest tileable leading run over
  // K = 2.. edge nodes, with the fast estimate; keep the best few.
  std::vector<std::pair<double, three_tier_choice>> screened;
  const std::vector<double> untiled_ms = space.screen_all_untiled();
  for (int i = 0; i <= n; ++i) {
    const int longest_from_i = space.longest_run_end(i);
    for (int j = i; j <= n; ++j) {
      const double untiled = untiled_ms[size_t(i) * size_t(n + 1) + size_t(j)];
      screened.push_back({untiled, {i, j, -1, 1}});
      if (std::min(longest_from_i, j - 1) < i) continue;
      // Every tileable end of the leading run (DeepThings' fusing depths are among them).
      for (int b : space.tileable_ends(i)) {
        if (b >= j) break;
        for (int k = 2; k <= space.edge_nodes(); ++k) {
          three_tier_choice tiled{i, j, b, k};
          screened.push_back({untiled - space.tiling_saving_ms(tiled), tiled});
        }
      }
    }
  }
  const size_t keep = std::min(screened.size(), size_t(std::max(1, options.screened)));
  std::partial_sort(screened.begin(), screened.begin() + long(keep), screened.end(),
                    [](const auto& a, const auto& b) { return a.first < b.first; });
  // The best untiled choice is always a start: its screening is exact, so HPA is never worse than
  // the best untiled three-tier plan (which contains device-only, cloud-only and every
  // Neurosurgeon split), whatever the tiling estimates say.
  std::pair<double, three_tier_choice> best_untiled{infinity, {}};
  for (const auto& entry : screened)
    if (entry.second.tiled_end < 0 && entry.first < best_untiled.first) best_untiled = entry;
  bool untiled_kept = false;
  for (size_t s = 0; s < keep; ++s) untiled_kept |= screened[s].second == best_untiled.second;
  if (!untiled_kept && best_untiled.first < infinity) screened[keep - 1] = best_untiled;
  // 2. Local search from each on the cost model (boundaries, tiling end, K); the best wins.
  three_tier_choice best;
  double best_ms = infinity;
  for (size_t s = 0; s < keep; ++s) {
    three_tier_choice start = screened[s].second;
    if (start.tiled_end >= 0) {
      start.tiled_end = space.tileable_end_at_most(start.device_end, start.tiled_end);
      if (start.tiled_end < 0) start.tile_nodes = 1;
    }
    three_tier_choice c = hpa_local_search(space, start, options.refine_radius);
    const double ms = space.latency(c);
    if (ms < best_ms) best_ms = ms, best = c;
  }
  if (best_ms == infinity) return status::error("hpa: no deployable plan");
  auto result = space.evaluate(best);
  if (!result) return result;
  if (chosen) {
    *chosen = best;
  } else if (options.baseline_candidates) {
    // 3. Every baseline's plan is a candidate too: two tiers are three with an empty one, but DADS
    // may cut in another topological order and DeepThings scatters from the device over a square
    // grid, which the choices above do not express. So HPA is never predicted behind a baseline.
    for (const std::string& name : baseline_names()) {
      auto candidate = plan_with_strategy(name, g, profile, cluster);
      if (candidate && options.codecs) {
        auto priced = priced_with_codecs(g, candidate->plan, profile, cluster, *options.codecs);
        if (!priced) continue;
        candidate = planned{std::move(priced->first), std::move(priced->second)};
      }
      if (candidate && candidate->prediction.latency_ms < result->prediction.latency_ms) result = std::move(candidate);
    }
  }
  result->plan.strategy = "hpa";
  return result;
}

}  // namespace d3
