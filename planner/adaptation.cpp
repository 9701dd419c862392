#include "planner/adaptation.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <cstdlib>
#include <limits>
#include <set>

#include "planner/link_estimator.hpp"

namespace d3 {

adaptive_planner::adaptive_planner(const graph& g, layer_profile profile, cluster_model initial,
                                   three_tier_choice current, deployment_plan deployed, adaptation_options options)
    : g_(&g), profile_(std::move(profile)), estimate_(std::move(initial)), current_(current),
      running_(std::move(deployed)), version_(running_.version), options_(options) {
  for (const auto& [name, n] : estimate_.nodes) planned_speed_[name] = n.speed;
  remember_layers(running_);
  history_.emplace_back(running_, current_);
  decided_[version_] = {running_, current_};
}

double adaptive_planner::price(const deployment_plan& plan, const cluster_model& cluster) {
  auto sg = build_stage_graph(*g_, plan, &memo_);
  if (!sg) return std::numeric_limits<double>::infinity();
  auto predicted = predict_plan(*g_, *sg, profile_, cluster);
  return predicted ? predicted->latency_ms : std::numeric_limits<double>::infinity();
}

deployment_plan adaptive_planner::reweighted(const deployment_plan& of) const {
  deployment_plan plan = of;
  auto sg = build_stage_graph(*g_, of);
  if (!sg) return plan;
  for (size_t r = 0; r < plan.tiled_runs.size() && r < sg->runs.size(); ++r) {
    plan_tiled_run& run = plan.tiled_runs[r];
    const size_t x = run.grid.find('x');
    if (x == std::string::npos) continue;
    const int rows = std::atoi(run.grid.c_str()), cols = std::atoi(run.grid.c_str() + x + 1);
    if (rows < 1 || cols < 1 || size_t(rows * cols) != run.nodes.size()) continue;
    // A row's height follows its nodes' summed speed on the run (1 / the run's time there), a
    // column's width likewise, as three_tier_space::plan_of weighs them.
    std::vector<double> row_weights(size_t(rows), 0.0), col_weights(size_t(cols), 0.0);
    for (int t = 0; t < rows * cols; ++t) {
      auto node = estimate_.nodes.find(run.nodes[size_t(t)]);
      if (node == estimate_.nodes.end()) return of;
      const layer_profile& times = node->second.profile_or(profile_);
      double ms = 0;
      for (int l : sg->runs[r].layers) ms += times.milliseconds[size_t(l)];
      const double speed = ms > 0 ? node->second.speed / ms : 1.0;
      row_weights[size_t(t / cols)] += speed;
      col_weights[size_t(t % cols)] += speed;
    }
    run.row_weights = row_weights;
    run.col_weights = col_weights;
  }
  return plan;
}

std::map<std::string, std::set<int>> adaptive_planner::weights_placed(const deployment_plan& plan) const {
  std::map<std::string, std::set<int>> out;
  auto sg = build_stage_graph(*g_, plan);
  if (!sg) return out;
  for (const stage& st : sg->stages)
    if (st.kind == stage_kind::segment || st.kind == stage_kind::tile)
      for (int l : st.layers)
        if (weight_bytes(g_->layers[size_t(l)]) > 0) out[st.node].insert(l);
  return out;
}

deployment_plan adaptive_planner::on_cached_nodes(const deployment_plan& plan) const {
  const std::map<std::string, std::set<int>> needs = weights_placed(plan);
  if (needs.empty()) return plan;
  // The bytes node `to` lacks of what the plan runs on node `from`.
  auto lacking = [&](const std::string& from, const std::string& to) {
    auto need = needs.find(from);
    if (need == needs.end()) return size_t(0);
    auto held = cached_.find(to);
    size_t bytes = 0;
    for (int l : need->second)
      if (held == cached_.end() || !held->second.count(l)) bytes += weight_bytes(g_->layers[size_t(l)]);
    return bytes;
  };
  // Per node: the bytes per request the plan serving sends it from the app's node. Weights
  // shipped to a node share that link with those requests (link_clock::send_shared) and slow
  // them, so of placements that ship as much, the one shipping over the least used links wins
  // (measured: vgg16's 494.6 MB of fully connected weights sent to the edge every request's
  // input went to, which then answered in 857 ms instead of 612 for the ~40 s they crossed).
  std::map<std::string, double> busy;
  const deployment_plan* waiting = waiting_on();
  if (auto sg = build_stage_graph(*g_, waiting ? *waiting : running_))
    for (const link_bytes& b : bytes_between_nodes(*g_, *sg, estimate_.app_node))
      if (b.from == estimate_.app_node) busy[b.to] += double(b.bytes);
  std::map<std::string, std::string> rename;
  for (node_role role : {node_role::device, node_role::edge, node_role::cloud}) {
    std::vector<std::string> names;
    for (const auto& [name, node] : estimate_.nodes)
      if (node.role == role) names.push_back(name);
    if (names.size() < 2 || names.size() > 8) continue;
    const size_t n = names.size();
    std::vector<size_t> matrix(n * n);  // [i * n + j]: what names[j] lacks of names[i]'s part
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < n; ++j) matrix[i * n + j] = lacking(names[i], names[j]);
    std::vector<double> load(n, 0.0);  // names[j]'s share of the serving plan's sends
    for (size_t j = 0; j < n; ++j)
      if (auto b = busy.find(names[j]); b != busy.end()) load[j] = b->second;
    std::vector<size_t> perm(n), best;
    for (size_t i = 0; i < n; ++i) perm[i] = i;
    size_t best_bytes = std::numeric_limits<size_t>::max();
    double best_overlap = std::numeric_limits<double>::infinity();
    do {  // the identity first: a tie keeps it
      size_t bytes = 0;
      double overlap = 0;
      for (size_t i = 0; i < n && bytes <= best_bytes; ++i) {
        bytes += matrix[i * n + perm[i]];
        overlap += double(matrix[i * n + perm[i]]) * load[perm[i]];
      }
      if (bytes < best_bytes || (bytes == best_bytes && overlap < best_overlap))
        best_bytes = bytes, best_overlap = overlap, best = perm;
    } while (best_bytes > 0 && std::next_permutation(perm.begin(), perm.end()));
    for (size_t i = 0; i < n; ++i)
      if (best[i] != i) rename[names[i]] = names[best[i]];
  }
  return rename.empty() ? plan : with_nodes_renamed(plan, rename);
}

void adaptive_planner::note_serving(int version) {
  serving_version_ = version;
  if (crossing_.empty()) return;
  auto plan = decided_.find(version);
  if (plan == decided_.end()) {
    // Not a version this planner decided (a failover's): what crossed is not known to be
    // anywhere else; the versions after the last decided one have it all in place.
    if (version >= version_) crossing_.clear();
    return;
  }
  // The version serves: what it runs has arrived where it runs it.
  for (const auto& [name, layers] : weights_placed(plan->second.first)) {
    auto node = crossing_.find(name);
    if (node == crossing_.end()) continue;
    for (int l : layers) node->second.erase(l);
    if (node->second.empty()) crossing_.erase(node);
  }
}

const deployment_plan* adaptive_planner::waiting_on() const {
  if (!options_.interim_moves || serving_version_ >= version_ || crossing_.empty()) return nullptr;
  auto serving = decided_.find(serving_version_);
  if (serving == decided_.end()) return nullptr;
  for (const auto& [name, layers] : weights_placed(running_)) {
    auto node = crossing_.find(name);
    if (node != crossing_.end())
      for (int l : layers)
        if (node->second.count(l)) return &serving->second.first;
  }
  return nullptr;
}

std::vector<three_tier_choice> adaptive_planner::ready_choices(three_tier_space& space, double within_ms,
                                                              size_t count) const {
  const int n = space.layers();
  const std::vector<int>& order = space.order();
  auto app = estimate_.nodes.find(estimate_.app_node);
  // Per node, prefix sums over the positions of the time shipping what it lacks would take from
  // the app's node (which holds every layer); layers still crossing to it count as lacking.
  std::map<std::string, std::vector<double>> lack;
  std::vector<std::string> edges;
  for (const auto& [name, node] : estimate_.nodes) {
    if (node.role == node_role::edge) edges.push_back(name);
    double ms_per_byte = 0;
    if (name != estimate_.app_node && app != estimate_.nodes.end()) {
      const link_profile link = estimate_.links.link(app->second.role, node.role);
      ms_per_byte = 8.0 / (std::max(1e-9, link.bandwidth_mbit_per_s) * 1e3);
    }
    auto held = cached_.find(name);
    auto crossing = crossing_.find(name);
    std::vector<double>& p = lack[name];
    p.assign(size_t(n) + 1, 0.0);
    for (int k = 0; k < n; ++k) {
      const int l = order[size_t(k)];
      const size_t b = weight_bytes(g_->layers[size_t(l)]);
      const bool has = b == 0 || (held != cached_.end() && held->second.count(l) &&
                                  (crossing == crossing_.end() || !crossing->second.count(l)));
      p[size_t(k) + 1] = p[size_t(k)] + (has ? 0.0 : double(b) * ms_per_byte);
    }
  }
  if (!lack.count("device") || !lack.count("cloud") || edges.empty()) return {};
  auto lacks = [&](const std::string& node, int begin, int end) {
    const std::vector<double>& p = lack.at(node);
    return p[size_t(end)] - p[size_t(begin)];
  };
  std::vector<std::pair<double, three_tier_choice>> ready;
  const std::vector<double> untiled_ms = space.screen_all_untiled();
  for (int i = 0; i <= n; ++i) {
    const double device = lacks("device", 0, i);
    if (device > within_ms) break;  // grows with i
    // Tiled runs from i: per (b, K), each edge e as the scatter node (it also runs the segment
    // after the run) with the K - 1 other edges that lack least of [i, b].
    struct tiled_start {
      int b, k;
      std::vector<double> others;  // by edge index: what the K - 1 best other tile nodes lack
    };
    std::vector<tiled_start> runs;
    for (int b : space.tileable_ends(i))
      for (int k = 2; k <= space.edge_nodes() && k <= int(edges.size()); ++k) {
        tiled_start t{b, k, std::vector<double>(edges.size(), 0.0)};
        for (size_t e = 0; e < edges.size(); ++e) {
          std::vector<double> rest;
          for (size_t o = 0; o < edges.size(); ++o)
            if (o != e) rest.push_back(lacks(edges[o], i, b + 1));
          std::sort(rest.begin(), rest.end());
          for (int r = 0; r < k - 1; ++r) t.others[e] += rest[size_t(r)];
        }
        runs.push_back(std::move(t));
      }
    for (int j = i; j <= n; ++j) {
      const double fixed = device + lacks("cloud", j, n);
      if (fixed > within_ms) continue;
      double segment = j == i ? 0.0 : std::numeric_limits<double>::infinity();
      for (const std::string& e : edges) segment = std::min(segment, lacks(e, i, j));
      const double untiled = untiled_ms[size_t(i) * size_t(n + 1) + size_t(j)];
      if (fixed + segment <= within_ms) ready.push_back({untiled, {i, j, -1, 1}});
      for (const tiled_start& t : runs) {
        if (t.b >= j) continue;
        double best = std::numeric_limits<double>::infinity();
        for (size_t e = 0; e < edges.size(); ++e) best = std::min(best, lacks(edges[e], i, j) + t.others[e]);
        if (fixed + best > within_ms) continue;
        const three_tier_choice c{i, j, t.b, t.k};
        ready.push_back({untiled - space.tiling_saving_ms(c), c});
      }
    }
  }
  const size_t keep = std::min(ready.size(), count);
  std::partial_sort(ready.begin(), ready.begin() + long(keep), ready.end(),
                    [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<three_tier_choice> out;
  for (size_t k = 0; k < keep; ++k) out.push_back(ready[k].second);
  return out;
}

void adaptive_planner::remember_layers(const deployment_plan& plan) {
  for (const auto& [node, layers] : weights_placed(plan)) cached_[node].insert(layers.begin(), layers.end());
}

migration_cost adaptive_planner::cost_of(const deployment_plan& plan, const cluster_model* links) const {
  const cluster_model& c = links ? *links : estimate_;
  migration_cost cost;
  auto sg = build_stage_graph(*g_, plan);
  if (!sg) return cost;
  std::map<std::string, size_t> bytes, crossing;  // per node: to ship, and still on their way
  for (const stage& st : sg->stages) {
    cost.spawn_ms += options_.spawn_ms;
    if (st.kind != stage_kind::segment && st.kind != stage_kind::tile) continue;
    auto cached = cached_.find(st.node);
    auto on_the_way = crossing_.find(st.node);
    for (int l : st.layers) {
      const size_t b = weight_bytes(g_->layers[size_t(l)]);
      if (b == 0) continue;
      if (!options_.ship_everything && cached != cached_.end() && cached->second.count(l)) {
        // Shipped by a decision whose version has not served: not shipped again, but a version
        // running it serves only once it has crossed (priced as if it had just started).
        if (on_the_way != crossing_.end() && on_the_way->second.count(l)) crossing[st.node] += b;
        continue;
      }
      bytes[st.node] += b;
    }
  }
  for (const auto& [node, b] : bytes) cost.bytes += b;
  for (const auto& [node, b] : crossing) bytes[node] += b;
  auto app = c.nodes.find(c.app_node);
  for (const auto& [node, b] : bytes) {
    auto to = c.nodes.find(node);
    if (node == c.app_node || app == c.nodes.end() || to == c.nodes.end()) continue;
    const link_profile link = c.links.link(app->second.role, to->second.role);
    cost.ship_ms += link.latency_ms + double(b) * 8.0 / (link.bandwidth_mbit_per_s * 1e3);
  }
  return cost;
}

bool adaptive_planner::worth(double current_ms, double ms, const migration_cost& cost) const {
  const double gain = current_ms - ms;
  return ms < current_ms * (1.0 - options_.hysteresis) && gain >= options_.min_gain_ms &&
         gain * options_.horizon_requests >= cost.total_ms();
}

void adaptive_planner::observe(const std::vector<link_sample>& samples) {
  for (const link_sample& s : samples) {
    if (s.bytes == 0 || s.ms < 0 || (s.from == s.to && s.from != node_role::edge)) continue;
    // A time the clocks cannot tell within half of it says nothing a decision could rest on
    // (measured: a 4 KB answer timed at 28 ms through a clock offset 25 ms off priced the
    // backbone at 1.2 Mbit/s, and a stable cluster migrated twice).
    if (!(2 * s.clock_error_ms <= s.ms)) continue;
    // The testbed's links are symmetric by role pair. Device<->cloud is estimated as a link of
    // its own: it is two links in series, and which of them a slow transfer is slow on cannot
    // be told from it (the uplink in one setting, the backbone in the other).
    const auto key = std::minmax(s.from, s.to);
    last_sampled_[key] = decisions_;
    std::deque<link_sample>& window = samples_[key];
    window.push_back(s);
    while (window.size() > options_.window) window.pop_front();
  }
  ++since_migration_;
}

namespace {
// The median of a few values (the upper middle of an even count); 0 for none.
template <class Values>
double median_of(const Values& values) {
  std::vector<double> v(values.begin(), values.end());
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
  return v[v.size() / 2];
}
}  // namespace

// Faster probes restore a node up to the speed it was planned with (or was measured at when it
// went idle, if that was more), beyond it only by options_.probes_beyond_plan or more (where
// probes measure the node alone; see there). A reference taken while the host was busy (measured
// on the namespace cluster: every node profiling itself under its quota at once) made idle
// 0.2-core edges read 1.5-2x their profile; the planner moved the model onto one, found it at
// 0.95, moved it onto the other idle edge, and found that one at 0.5.
double adaptive_planner::probed_ceiling(const std::string& node, double known, double probed) const {
  auto planned = planned_speed_.find(node);
  const double ceiling = std::max(known, planned == planned_speed_.end() ? known : planned->second);
  const double beyond = options_.probes_beyond_plan;
  return beyond > 0 && probed >= beyond * ceiling ? probed : std::min(probed, ceiling);
}

void adaptive_planner::observe_compute(const std::vector<compute_observation>& samples) {
  for (const compute_observation& c : samples) {
    auto node = estimate_.nodes.find(c.node);
    if (node == estimate_.nodes.end() || !(c.ms > 0)) continue;
    const layer_profile& times = node->second.profile_or(profile_);
    double profile_ms = 0;
    for (size_t k = 0; k < c.layers.size() && k < c.shares.size(); ++k)
      if (c.layers[k] >= 0 && size_t(c.layers[k]) < times.milliseconds.size())
        profile_ms += times.milliseconds[size_t(c.layers[k])] * profile_.tile_cost(c.layers[k], c.shares[k]);
    if (profile_ms < 0.2) continue;
    double sample = profile_ms / c.ms;
    bool probe_unchanged = true;
    if (c.probe) {
      probe_reference& ref = probe_references_.try_emplace(c.node, probe_reference{{}, {}, node->second.speed}).first->second;
      ref.last.push_back(sample);
      while (ref.last.size() > 3) ref.last.pop_front();
      double factor = 1.0;
      bool changed_going_idle = false;
      if (ref.first.size() < 3) {  // the reference is still forming
        ref.first.push_back(sample);
        // Complete, it is compared once with what the node was known at: 3x or more apart, the
        // node changed as it went idle (a plan leaves a node because it slowed, and the node may
        // recover at that very answer), and the probes' own level replaces the stale estimate.
        // Within 3x the two stay apart as they are, since a probe's fragment and a stage's layers
        // run at fractions of the profile's speed that differ (measured up to 1.25x; noise on the
        // namespace cluster up to 2x). Measured before this: convnext_tiny, edges 3 and 4 slowed
        // to a fifth, restored as the plan moved onto the device, stayed priced at 0.19 of their
        // profile for every later answer, and the tiled plan over them was never taken back.
        const double level = median_of(ref.first);
        if (ref.first.size() == 3 && ref.estimate > 0 && (level >= 3 * ref.estimate || 3 * level <= ref.estimate)) {
          ref.estimate = probed_ceiling(c.node, ref.estimate, level);
          changed_going_idle = true;
          change_seen_at_ = decisions_;
        }
      } else {
        factor = median_of(ref.last) / median_of(ref.first);
      }
      const bool unchanged = factor >= 0.8 && factor <= 1.25 && !changed_going_idle;
      // Back at the reference after a change the probes set the window to: a change too (else
      // the window kept the changed samples beside this one, and the node's uncertainty spanned
      // both: measured, vgg16, edge3 back from 0.3 to its reference read 0.69 uncertain for two
      // answers, and the plan onto it waited).
      const double since_window = factor / ref.window_factor;
      probe_unchanged = unchanged && since_window >= 0.8 && since_window <= 1.25;
      if (!probe_unchanged) ref.window_factor = factor;
      // A change the probes had not yet seen (not the same change seen again on the next probe),
      // of 2x or more: a new testbed, which the migrations before it did not answer (decide():
      // damping). 2x: noise on the namespace cluster swung 0.2-core edges between 0.77 and 1.51
      // of their profiles, and that must stay damped.
      const double since_seen = factor / ref.factor_seen;
      if (since_seen < 0.5 || since_seen > 2.0) {
        ref.factor_seen = factor;
        change_seen_at_ = decisions_;
      }
      if (unchanged && !speed_samples_.count(c.node)) continue;  // never measured, and still as then
      sample = ref.estimate * (unchanged ? 1.0 : factor);
      if (factor > 1.0) sample = probed_ceiling(c.node, ref.estimate, sample);
    } else {
      probe_references_.erase(c.node);  // measured by a stage: the next probe is its reference
    }
    std::deque<double>& window = speed_samples_[c.node];  // invariant: no window is empty
    // A probe that finds its node changed is already the median of three (the last probes
    // against the first): it replaces the window rather than waiting to outvote it. Pushed into
    // it, the change was seen one answer later, and the stale samples beside it kept the node's
    // uncertainty wide for one more (googlenet, edge1 recovering from a fifth while idle: the
    // plan back onto it served from the step's sixth answer, the simulation of the d3 traces).
    if (c.probe && !probe_unchanged) {
      window.clear();
      probe_estimated_.insert(c.node);
    } else if (!c.probe) {
      probe_estimated_.erase(c.node);
    }
    window.push_back(sample);
    while (window.size() > options_.window) window.pop_front();
  }
}

link_profile adaptive_planner::estimate_link(const std::deque<link_sample>& samples, link_profile previous) const {
  if (samples.empty()) return previous;
  // Two sizes or more: the least-squares line (latency and bandwidth). One size (a link that
  // carries one tensor per request and is never idle enough to be probed): latency and bandwidth
  // cannot be told apart. The median sample's time beyond the previous latency is put on the
  // bandwidth (a slower link usually lost bandwidth); a median at or under the previous latency
  // says the latency fell too, and the previous line is scaled through it (both by the same
  // factor). Keeping the previous estimate there instead froze a recovered LAN at its slow
  // values: measured, 21 answers before resnet18 left its slow-LAN plan.
  link_estimator fit(samples.size());
  for (const link_sample& s : samples) fit.observe(s.bytes, s.ms);
  if (fit.ready()) {
    const link_profile line = fit.estimate();
    if (line.bandwidth_mbit_per_s > 0) return line;
  }
  std::vector<const link_sample*> sorted;
  for (const link_sample& s : samples) sorted.push_back(&s);
  std::nth_element(sorted.begin(), sorted.begin() + long(sorted.size() / 2), sorted.end(),
                   [](const link_sample* a, const link_sample* b) { return a->ms < b->ms; });
  const link_sample& median = *sorted[sorted.size() / 2];
  if (median.ms > previous.latency_ms)
    return {8.0 * double(median.bytes) / ((median.ms - previous.latency_ms) * 1e3), previous.latency_ms};
  const double predicted = previous.latency_ms + 8.0 * double(median.bytes) / (previous.bandwidth_mbit_per_s * 1e3);
  if (!(median.ms > 0) || !(predicted > 0)) return previous;
  const double f = median.ms / predicted;
  return {previous.bandwidth_mbit_per_s / f, previous.latency_ms * f};
}

namespace {

// The largest (x - center) / center over `values` above center (side +1), or (center - x) /
// center below it (side -1): with a window of a few samples, the median deviation can be near 0
// by chance; the largest one bounds where the truth may lie on that side.
double one_sided_spread(const std::vector<double>& values, double center, int side) {
  if (values.size() < 2 || !(center > 0)) return 0;
  double spread = 0;
  for (double v : values) spread = std::max(spread, side * (v - center) / center);
  return spread;
}

}  // namespace

cluster_model adaptive_planner::bounded(int side) const {
  cluster_model c = estimate_;
  // Each end from the samples on its side (as for node speeds): a transfer slowed once says the
  // link may be slower, not that it may be faster.
  auto widen = [&](link_profile p, const link_spread& u) {
    const double fb = 1.0 + std::min(side > 0 ? u.bandwidth_lower : u.bandwidth_higher, options_.max_uncertainty);
    const double ft = 1.0 + std::min(side > 0 ? u.time_longer : u.time_shorter, options_.max_uncertainty);
    if (side > 0) return link_profile{p.bandwidth_mbit_per_s / fb, p.latency_ms * ft};
    return link_profile{p.bandwidth_mbit_per_s * fb, p.latency_ms / ft};
  };
  for (const auto& [key, u] : link_uncertainty_) {
    if (key == std::make_pair(node_role::device, node_role::edge)) c.links.device_edge = widen(c.links.device_edge, u);
    else if (key == std::make_pair(node_role::edge, node_role::cloud)) c.links.edge_cloud = widen(c.links.edge_cloud, u);
    else if (key == std::make_pair(node_role::edge, node_role::edge)) c.links.edge_edge = widen(c.links.edge_edge, u);
    else if (key == std::make_pair(node_role::device, node_role::cloud) && c.links.device_cloud)
      c.links.device_cloud = widen(*c.links.device_cloud, u);
  }
  // Device<->cloud is device<->edge and edge<->cloud in series: a path measured slower more
  // recently than a part of it was measured says that part may be the slow one, until its own
  // samples say otherwise. Pessimistically, it is.
  // Unless a part's own samples put it as slow as the path (within half again): that part explains
  // it, and the other keeps its estimate. (Measured on a namespace cluster, idle links probed every
  // third answer: the backbone probed at 2 Mbit/s, the LAN at 96, the path at 1.9 after every
  // answer; capping the LAN at 1.9 in two answers of three priced every plan off the cloud as slow
  // as staying, and no migration was ever confirmed in 100 requests of 2.7 s.)
  const auto path = std::make_pair(node_role::device, node_role::cloud);
  const auto lan = std::make_pair(node_role::device, node_role::edge);
  const auto backbone = std::make_pair(node_role::edge, node_role::cloud);
  if (side > 0 && estimate_.links.device_cloud && last_sampled_.count(path)) {
    const double path_mbit = estimate_.links.device_cloud->bandwidth_mbit_per_s;
    const bool explained =
        (last_sampled_.count(lan) && estimate_.links.device_edge.bandwidth_mbit_per_s <= 1.5 * path_mbit) ||
        (last_sampled_.count(backbone) && estimate_.links.edge_cloud.bandwidth_mbit_per_s <= 1.5 * path_mbit);
    for (auto [part, profile] : {std::pair{lan, &c.links.device_edge}, std::pair{backbone, &c.links.edge_cloud}}) {
      auto seen = last_sampled_.find(part);
      const bool older = seen == last_sampled_.end() || seen->second < last_sampled_.at(path);
      if (older && !explained) profile->bandwidth_mbit_per_s = std::min(profile->bandwidth_mbit_per_s, path_mbit);
    }
  }
  // A node never observed is not known better than the observed nodes of its role: it gets the
  // widest of their uncertainties (else two nodes of one speed, one measured and one not, would
  // price apart by the measured one's spread alone, and a plan moved onto the unmeasured one would
  // look faster for nothing), and at least the widest departure of their estimates from their
  // planned speeds: the planned speeds come from profiles measured idle, and a peer that runs at
  // 0.83 of its own says the unmeasured one may too. (Measured on the namespace cluster: edge1
  // estimated at 0.83 of its profile for ten answers, the idle edge2 priced at its profile, and
  // the planner moved the whole model onto edge2 and back.) A peer truly slowed to a fifth still
  // leaves the unmeasured node at more than half its planned speed, pessimistically.
  // Not a peer whose estimate its own probes set (a change against its earlier probes, taken
  // beside the unmeasured node's): that departure is the peer's alone. (Measured in simulation,
  // vgg16 on the cloud: edges 1 and 3 probed at 0.3 of their speed left the idle edges 2 and 4,
  // probed unchanged, priced at 0.58 of theirs, and the plan onto them, 551 ms, at 907: the
  // backbone dropped and the plan stayed at 747 ms.)
  std::map<node_role, double> role_widest;
  for (const auto& [node, u] : speed_uncertainty_) {
    auto it = c.nodes.find(node);
    if (it == c.nodes.end() || probe_estimated_.count(node)) continue;
    double& widest = role_widest[it->second.role];
    widest = std::max(widest, u.widest());
    auto planned = planned_speed_.find(node);
    if (planned != planned_speed_.end() && planned->second > 0)
      widest = std::max(widest, std::abs(it->second.speed / planned->second - 1.0));
  }
  for (auto& [node, n] : c.nodes) {
    // Pessimistically a node is as slow as its slowest recent sample, optimistically as fast as
    // its fastest: one sample 1.8x slow must not price the plan running there 1.8x fast
    // (measured: mobilenet_v2 on the emulated device, answering at 47 and 83 ms in turn, kept its
    // device-only plan 14 answers after the LAN came back, priced 30% under every answer).
    auto own = speed_uncertainty_.find(node);
    const double u = own == speed_uncertainty_.end() ? role_widest[n.role]
                     : side > 0                      ? own->second.slower
                                                     : own->second.faster;
    const double f = 1.0 + std::min(u, options_.max_uncertainty);
    n.speed = side > 0 ? n.speed / f : n.speed * f;
    // Pessimistically no node runs faster than it was planned with (its profile, measured idle):
    // a plan is not moved onto a node for running beyond its profile, which on a shared host is a
    // phase of its core, not a property of the node. (Measured on the namespace cluster under
    // test.sh: 0.2-core edges read 1.44 and 0.77 of their profiles, and a plan that had just
    // settled after a backbone drop moved 32 layers and 45 MB onto the "fast" one, then back.)
    // The running plan keeps its optimistic price, so a node that slows still moves work off it.
    // Unless even its slowest recent sample puts it at twice its planned speed or more: no phase
    // of a shared core measured came near that, and a node planned while busy (or a device whose
    // governor raised its clock) does get that much faster. (Measured before this exception:
    // mobilenet_v3_small, the device 4x faster from one step on, its stages at 2.2-2.5x its
    // profile for 400 answers, and the device-only plan, 5.4 ms against 12, was never taken.)
    auto planned = planned_speed_.find(node);
    if (side > 0 && planned != planned_speed_.end() && planned->second > 0 && n.speed < 2.0 * planned->second)
      n.speed = std::min(n.speed, planned->second);
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
    size_t largest = 0;
    for (const link_sample& x : window) largest = std::max(largest, x.bytes);
    double bandwidth_higher = 0, bandwidth_lower = 0;
    for (const link_sample& x : window) {
      const double predicted = fitted.latency_ms + double(x.bytes) * 8.0 / (fitted.bandwidth_mbit_per_s * 1e3);
      if (predicted > 0) ratios.push_back(x.ms / predicted);
      // The bandwidth this sample implies (its time beyond the latency); none (a time within the
      // latency): no evidence on the bandwidth, the time's spread holds it.
      const double transfer_ms = x.ms - fitted.latency_ms;
      if (!(transfer_ms > 0)) continue;
      const double implied = double(x.bytes) * 8.0 / (transfer_ms * 1e3);
      // A sample speaks for the bandwidth in proportion to its size next to the window's largest:
      // a 1 KB probe crosses a tc-shaped link within its burst allowance, and its time is mostly
      // latency and scheduling (measured on a namespace cluster: a 1 KB probe 0.5-1.1 ms on a
      // 2 Mbit/s backbone, i.e. 8-16 Mbit/s "implied", beside 602 KB inputs at 1.9). Counted in
      // full, it doubled the optimistic bound of a link the running plan's own transfers had
      // pinned, priced the plan at half what each of its answers took, and under ASan no plan
      // off the dropped backbone was ever worth it.
      if (largest > 0 && fitted.bandwidth_mbit_per_s > 0) {
        const double off = (implied - fitted.bandwidth_mbit_per_s) / fitted.bandwidth_mbit_per_s * double(x.bytes) /
                           double(largest);
        double& side = off > 0 ? bandwidth_higher : bandwidth_lower;
        side = std::max(side, std::abs(off));
      }
    }
    link_spread& u = link_uncertainty_[key];
    u.time_longer = one_sided_spread(ratios, 1.0, +1);
    u.time_shorter = one_sided_spread(ratios, 1.0, -1);
    u.bandwidth_higher = window.size() < 2 ? 0.0 : bandwidth_higher;
    u.bandwidth_lower = window.size() < 2 ? 0.0 : bandwidth_lower;
  }
  for (const auto& [node, window] : speed_samples_) {
    std::vector<double> sorted(window.begin(), window.end());
    std::nth_element(sorted.begin(), sorted.begin() + long(sorted.size() / 2), sorted.end());
    estimate_.nodes[node].speed = sorted[sorted.size() / 2];
    const std::vector<double> values(window.begin(), window.end());
    const double center = estimate_.nodes[node].speed;
    speed_uncertainty_[node] = {one_sided_spread(values, center, +1), one_sided_spread(values, center, -1)};
  }
  uncertainty_ = 0;
  uncertainty_source_.clear();
  // The source is named only when it is the widest so far (this runs after every answer).
  auto widen = [&](double u, const auto& name, const char* what) {
    if (u > uncertainty_) uncertainty_ = u, uncertainty_source_ = name() + what;
  };
  for (const auto& [key, u] : link_uncertainty_) {
    auto link = [&key = key] { return std::string(to_string(key.first)) + "-" + to_string(key.second) + " "; };
    widen(u.bandwidth_higher, link, "bandwidth higher");
    widen(u.bandwidth_lower, link, "bandwidth lower");
    widen(u.time_longer, link, "time longer");
    widen(u.time_shorter, link, "time shorter");
  }
  for (const auto& [node, u] : speed_uncertainty_) {
    auto speed = [&node = node] { return node + " speed "; };
    widen(u.slower, speed, "slower");
    widen(u.faster, speed, "faster");
  }
}

// Long on purpose: every candidate is priced and judged by the same rules in one place.
std::optional<adaptation_decision> adaptive_planner::decide() {
  ++decisions_;
  update_estimates();
  // Estimates still moving (a change half seen, or noise) decide nothing.
  if (since_migration_ <= options_.cooldown_requests) {
    streak_ = 0;
    streak_gap_ = false;
    verdict_ = "cooling down after a migration";
    return std::nullopt;
  }
  const codec_choice_options* codecs = options_.codecs ? &*options_.codecs : nullptr;
  auto created = three_tier_space::create(*g_, profile_, estimate_, codecs);
  const cluster_model high = bounded(+1), low = bounded(-1);  // the spaces keep pointers to these
  auto pessimistic = three_tier_space::create(*g_, profile_, high, codecs);
  if (!created || !pessimistic) {
    verdict_ = "cannot price plans on the estimates";
    return std::nullopt;
  }
  three_tier_space& space = created.value();
  adaptation_decision d;
  // The running plan as deployed (its tiles keep the weights they were cut with).
  // While the plan last decided waits for weights still crossing, the requests run on an
  // earlier one: that one is what a move now is measured against, and only a move that serves
  // soon is taken (the plan decided is decided again from there, its weights still on the way).
  const deployment_plan* serving = waiting_on();
  d.current_ms = price(serving ? *serving : running_, estimate_);
  d.robust_current_ms = price(serving ? *serving : running_, low);
  // Every plan is priced by the cost model on its stage graph (the search's closed form is for
  // searching): the pessimistic bounds for a candidate.
  auto priced_on = [&](const deployment_plan& plan, const cluster_model& cluster) {
    auto sg = build_stage_graph(*g_, plan, &memo_);
    auto predicted = sg ? predict_plan(*g_, *sg, profile_, cluster) : result<plan_prediction>(sg.error());
    return predicted ? predicted->latency_ms : std::numeric_limits<double>::infinity();
  };
  // The candidates: the partial adjustment near the current boundaries, the running placement
  // with its tiles re-cut to the estimated speeds (nothing to ship), and a full HPA search on the
  // estimates and on their pessimistic bounds (a plan that holds up whatever the uncertain links
  // turn out to be).
  struct candidate {
    const char* name;
    deployment_plan plan;
    three_tier_choice choice;
    bool partial;
  };
  // A choice's plan: with codecs, as its space prices it (evaluate chooses them); raw, its layout.
  auto plan_in = [codecs](three_tier_space& in, const three_tier_choice& choice) {
    if (!codecs) return in.plan_of(choice);
    auto evaluated = in.evaluate(choice);
    return evaluated ? std::move(evaluated->plan) : in.plan_of(choice);
  };
  // The plans whose weights are in place or would be within `within_ms`, each also after a local
  // search from it (the screening that ranks them is an estimate; a neighbour may price better
  // and still ship nothing), on the nodes that hold their weights. Those that ship more than
  // their use allows are rejected below like any candidate.
  auto ready_soon = [&](double within_ms) {
    std::vector<candidate> out;
    std::set<std::string> seen;
    for (const three_tier_choice& c : ready_choices(space, within_ms, options_.ready_candidates))
      for (const three_tier_choice& x : {c, hpa_local_search(space, c, options_.local_radius)}) {
        deployment_plan plan = on_cached_nodes(plan_in(space, x));
        if (seen.insert(describe(plan)).second) out.push_back({"ready soon", std::move(plan), x, false});
      }
    return out;
  };
  std::vector<candidate> candidates;
  const double soon_ms = options_.quick_requests * d.robust_current_ms;
  if (serving) {
    for (candidate& c : ready_soon(soon_ms)) candidates.push_back(std::move(c));
    if (!serving->tiled_runs.empty())
      candidates.push_back({"re-cut tiles", reweighted(*serving), decided_.at(serving_version_).second, true});
  }
  if (options_.partial_search && !serving)
    candidates.push_back({"partial", {}, hpa_local_search(space, current_, options_.local_radius), true});
  if (options_.partial_search && !serving && !running_.tiled_runs.empty()) {
    deployment_plan recut = reweighted(running_);
    if (codecs)
      if (auto encoded = with_codecs(*g_, recut, profile_, estimate_, *codecs, &memo_)) recut = std::move(encoded.value());
    candidates.push_back({"re-cut tiles", std::move(recut), current_, true});
  }
  hpa_options search;
  search.codecs = options_.codecs;
  three_tier_choice full;
  if (!serving && hpa_strategy(*g_, profile_, estimate_, search, &full))
    candidates.push_back({"full", plan_in(space, full), full, false});
  three_tier_choice cautious;
  if (!serving && hpa_strategy(*g_, profile_, high, search, &cautious))
    candidates.push_back({"full (pessimistic)", plan_in(*pessimistic, cautious), cautious, false});
  // Each of them on the nodes that hold its weights, and the plans run before (a change that
  // reverts): as fast, or nearly, for less shipping.
  for (size_t k = 0, found = options_.partial_search ? candidates.size() : 0; k < found; ++k) {
    if (candidates[k].plan.segments.empty()) candidates[k].plan = plan_in(space, candidates[k].choice);
    deployment_plan moved = on_cached_nodes(candidates[k].plan);
    if (describe(moved) != describe(candidates[k].plan))
      candidates.push_back({"on cached nodes", std::move(moved), candidates[k].choice, candidates[k].partial});
  }
  for (const auto& [plan, choice] : history_)
    if (options_.partial_search && !serving && describe(plan) != describe(running_))
      candidates.push_back({"an earlier plan", plan, choice, true});
  // The one whose gain over the horizon minus its cost is largest wins (moving fewer layers is
  // cheaper, so a partial one wins unless a full one gains more than it costs extra).
  auto net = [&](double ms, const migration_cost& cost) {
    return (d.robust_current_ms - ms) * options_.horizon_requests - cost.total_ms();
  };
  struct priced {
    const candidate* c;
    double ms;
    migration_cost cost;
  };
  std::vector<priced> worthy;
  std::string rejected;
  for (candidate& c : candidates) {
    if (c.plan.segments.empty()) c.plan = plan_in(space, c.choice);
    const double ms = priced_on(c.plan, high);
    const migration_cost cost = cost_of(c.plan, &high);
    if (!worth(d.robust_current_ms, ms, cost) || (serving && cost.total_ms() > soon_ms)) {
      rejected += std::string(rejected.empty() ? "" : "; ") + c.name + " " + std::to_string(ms) + " ms (robust) vs " +
                  std::to_string(d.robust_current_ms) + " ms now, costs " + std::to_string(cost.total_ms()) + " ms";
      continue;
    }
    worthy.push_back({&c, ms, cost});
  }
  const priced* top = nullptr;
  for (const priced& p : worthy)
    if (!top || net(p.ms, p.cost) > net(top->ms, top->cost)) top = &p;
  // Candidates within the hysteresis of the best one's price are equal as far as the estimates
  // can tell: the one that ships least of them wins (node speeds measured a few percent apart by
  // noise must not decide that a model's weights move).
  const priced* chosen = top;
  for (const priced& p : worthy)
    if (p.ms <= top->ms * (1.0 + options_.hysteresis) &&
        (p.cost.bytes < chosen->cost.bytes || (p.cost.bytes == chosen->cost.bytes && p.ms < chosen->ms)))
      chosen = &p;
  // A move whose weights take longer to arrive than `quick_requests` answers at the current
  // latency is preceded by a quicker one if that gains at least `quick_share` of its gain: the
  // requests meanwhile run on the quick plan rather than the slow one they are on (measured on
  // alexnet with the backbone dropped to 5 Mbit/s: the full search's plan needed 266 MB over the
  // LAN, ~21 s, and 40 answers took 370-400 ms while a plan shipping 4.9 MB priced 158 ms). The
  // slow move is decided on later answers, as the next migration, if it still pays for itself
  // from the quick plan; its weights then cross while the quick plan serves.
  const priced* deferred = nullptr;
  // A search knows nothing of where weights lie: the best plans whose weights are in place (or
  // would be within soon_ms) join the quick ones (measured, vgg16 with the backbone dropped: the
  // only plans found needed its 494.6 MB of fully connected weights off the cloud, ~40 s of LAN,
  // and the old plan answered at 1,065 ms meanwhile, while one with the convolutions on the
  // edges, whose copies had arrived, priced ~330 ms). Kept apart: `worthy`'s pointers stay valid.
  std::deque<candidate> ready;
  std::vector<priced> quick_pool;
  if (chosen && !serving && chosen->cost.total_ms() > soon_ms) {
    quick_pool = worthy;
    if (options_.partial_search)
      for (candidate& c : ready_soon(soon_ms)) {
        ready.push_back(std::move(c));
        const double ms = priced_on(ready.back().plan, high);
        const migration_cost cost = cost_of(ready.back().plan, &high);
        if (worth(d.robust_current_ms, ms, cost)) quick_pool.push_back({&ready.back(), ms, cost});
      }
    const priced* quick = nullptr;
    for (const priced& p : quick_pool)
      if (p.cost.total_ms() <= soon_ms &&
          d.robust_current_ms - p.ms >= options_.quick_share * (d.robust_current_ms - chosen->ms) &&
          (!quick || net(p.ms, p.cost) > net(quick->ms, quick->cost)))
        quick = &p;
    if (quick) deferred = chosen, chosen = quick;
  }
  const candidate* best = chosen ? chosen->c : nullptr;
  std::string why = serving ? "while the plan decided waits for its weights, from the one serving: " : "";
  if (deferred)
    why = std::string("the quicker first (") + deferred->c->name + " " + std::to_string(deferred->ms) + " ms would serve after " +
          std::to_string(deferred->cost.total_ms()) + " ms): ";
  if (chosen) {
    d.robust_predicted_ms = chosen->ms;
    d.cost = chosen->cost;
    why += std::string(chosen->c->name) + " " + std::to_string(chosen->ms) + " ms (robust) vs " +
          std::to_string(d.robust_current_ms) + " ms now, ships " + std::to_string(chosen->cost.bytes) + " B";
    for (const priced& p : worthy)
      if (p.c != chosen->c)
        why += std::string("; also ") + p.c->name + " " + std::to_string(p.ms) + " ms, ships " +
               std::to_string(p.cost.bytes) + " B";
  }
  if (!best) {
    // One answer that finds no move worth it in the middle of a streak is a gap, not the end of
    // it: the second is. (Measured in simulation, vgg16 as two idle edges recovered and the LAN
    // halved: worth it, then one answer priced 25 ms short of the hysteresis, then worth it
    // twice: the migration came at the step's 5th answer instead of the 3rd.)
    if (streak_ > 0 && !streak_gap_) {
      streak_gap_ = true;
    } else {
      streak_ = 0;
      streak_gap_ = false;
    }
    verdict_ = std::string(serving ? "stay (the plan decided waits for its weights): " : "stay: ") + rejected;
    return std::nullopt;
  }
  d.choice = best->choice;
  d.partial = best->partial;
  d.plan = best->plan;
  d.predicted_ms = priced_on(d.plan, estimate_);
  // One verdict is one sample's worth: it must hold on `confirmations` answers in a row, and on
  // twice as many for each migration of the last damping_requests answers but one; for a move
  // back to a choice left within them (whichever nodes of a role it takes), for each.
  // Damping is against noise: a change the probes found since (an idle node 2x or more faster
  // or slower by the median of its probes) is a new testbed, and the migrations before it
  // answered the old one. (Measured: vgg16, two idle edges recovering from 0.15 to 0.5 a step
  // after two migrations; their recovery was seen at the step's 2nd answer, and the plan back onto
  // them, worth it from then on, waited 8 answers as a move back.)
  while (!recent_.empty() &&
         (decisions_ - recent_.front().at > options_.damping_requests || recent_.front().at <= change_seen_at_))
    recent_.pop_front();
  const bool back = std::any_of(recent_.begin(), recent_.end(), [&](const recent_migration& m) { return m.left == d.choice; });
  const size_t recent = recent_.size(), doublings = back ? recent : recent > 0 ? recent - 1 : 0;
  const int needed = options_.confirmations << std::min<size_t>(doublings, 3);
  if (++streak_ < needed) {
    verdict_ = (streak_ == 1 ? std::string("worth it once") : "worth it " + std::to_string(streak_) + " times") + " of " +
               std::to_string(needed) + ", confirming: " + why;
    return std::nullopt;
  }
  recent_.push_back({decisions_, current_});
  verdict_ = "migrate: " + why;
  streak_ = 0;
  streak_gap_ = false;
  d.plan.strategy = std::string("hpa (") + best->name + ")";
  d.plan.version = ++version_;
  current_ = d.choice;
  running_ = d.plan;
  // What it ships is on its way until a version running it there serves (note_serving): no
  // quick plan may count on it.
  for (const auto& [node, layers] : weights_placed(d.plan)) {
    const auto held = cached_.find(node);
    for (int l : layers)
      if (held == cached_.end() || !held->second.count(l)) crossing_[node].insert(l);
  }
  remember_layers(d.plan);
  history_.erase(std::remove_if(history_.begin(), history_.end(),
                                [&](const auto& h) { return describe(h.first) == describe(running_); }),
                 history_.end());
  history_.emplace_back(running_, current_);
  if (history_.size() > max_history) history_.erase(history_.begin());
  decided_[version_] = {running_, current_};
  while (decided_.size() > max_history) decided_.erase(decided_.begin());
  since_migration_ = 0;
  return d;
}

}  // namespace d3
