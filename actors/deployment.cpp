// The app side of the runtime: connect to the nodes, deploy and migrate plan versions (the
// installer: actors/installer.cpp), run requests (actors/request_session.cpp), follow the
// emulation trace, tear down. Probes of node profiles and links: actors/probes.cpp.
#include "actors/deployment.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <set>

#include <nlohmann/json.hpp>

#include "actors/ask.hpp"
#include "actors/request_session.hpp"
#include "actors/transport.hpp"
#include "kernels/arithmetic_fingerprint.hpp"
#include "plan/plan_repair.hpp"

namespace d3 {

namespace {

using clock_type = std::chrono::steady_clock;

double ms_since(clock_type::time_point start) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
}

// Where each layer runs (its set of nodes: tiles run a layer on several).
std::map<int, std::set<std::string>> placement(const stage_graph& sg) {
  std::map<int, std::set<std::string>> nodes;
  for (const stage& s : sg.stages)
    for (int l : s.layers) nodes[l].insert(s.node);
  return nodes;
}

std::set<std::string> nodes_of(const stage_graph& sg) {
  std::set<std::string> nodes;
  for (const stage& s : sg.stages) nodes.insert(s.node);
  return nodes;
}

}  // namespace

result<std::vector<node_endpoint>> parse_node_list(const std::string& text) {
  std::vector<node_endpoint> nodes;
  std::set<std::string> names;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    const std::string item = text.substr(start, comma - start);
    start = comma + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      return status::error("--nodes: '" + item + "' is not NAME=HOST:PORT");
    node_endpoint n;
    n.name = item.substr(0, eq);
    std::string address = item.substr(eq + 1);
    const size_t colon = address.rfind(':');
    std::string port_text = address;
    if (colon != std::string::npos) {
      n.host = address.substr(0, colon);
      port_text = address.substr(colon + 1);
    }
    if (n.host.empty()) n.host = "127.0.0.1";
    char* end = nullptr;
    const long port = std::strtol(port_text.c_str(), &end, 10);
    if (port_text.empty() || *end != '\0' || port < 1 || port > 65535)
      return status::error("--nodes: node '" + n.name + "': '" + port_text + "' is not a port in [1, 65535]");
    n.port = uint16_t(port);
    if (!names.insert(n.name).second) return status::error("--nodes: node '" + n.name + "' is named twice");
    nodes.push_back(n);
  }
  if (nodes.empty()) return status::error("--nodes: no nodes given");
  return nodes;
}

deployment::deployment(caf::actor_system& system, deployment_options options)
    : system_(system), options_(options), self_(std::make_unique<caf::scoped_actor>(system)),
      loss_watcher_(spawn_loss_watcher(system)) {
  app_backlog_.set_floor(options_.heartbeat_floor_mbit);
  shipment_backlog_.set_floor(options_.heartbeat_floor_mbit);
}

deployment::~deployment() {
  teardown();
  caf::anon_send_exit(loss_watcher_, caf::exit_reason::user_shutdown);
}

void deployment::log(topology_event event) {
  if (options_.log) options_.log->write(std::move(event));
}

deployment::deployed_version* deployment::current() {
  return current_ ? &versions_.at(*current_) : nullptr;
}

const deployment::deployed_version* deployment::current() const {
  return current_ ? &versions_.at(*current_) : nullptr;
}

const stage_graph& deployment::stages() const {
  static const stage_graph none;
  return current_ ? current()->stages : none;
}

status deployment::connect(const std::vector<node_endpoint>& nodes) {
  caf::scoped_actor& self = *self_;
  const std::set<std::string> node_interface = system_.message_types<protocol::node_handle>();
  for (const node_endpoint& n : nodes) {
    const std::string what = "node '" + n.name + "' at " + n.address();
    protocol::node_handle handle;
    std::string failure;
    self->request(transport::connector(system_), options_.timeout, caf::connect_atom::value, n.host, n.port)
        .receive(
            [&](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>& interface) {
              if (!ptr) failure = "something listens there, but it publishes no d3-node actor";
              else if (interface != node_interface) failure = "it publishes an actor that is no d3-node of this version";
              else handle = caf::actor_cast<protocol::node_handle>(ptr);
            },
            [&](caf::error& e) { failure = transport::connect_failure(system_, e, n.host, n.port, options_.timeout); });
    if (!handle) return status::error("cannot connect to " + what + ": " + failure);
    auto info = ask<protocol::node_info>(self, handle, options_.timeout, what + " does not answer as a d3-node",
                                         protocol::info_atom::value);
    if (!info) return info.error();
    if (info->name != n.name)
      return status::error(what + " is d3-node '" + info->name + "', not '" + n.name + "' (check --nodes)");
    auto mine = arithmetic_fingerprint();
    if (!mine) return mine.error();
    if (info->arithmetic != *mine) {
      const std::string differs = what + " computes with other arithmetic (kernels' fingerprint " + info->arithmetic +
                                  ", this process " + *mine + "): its outputs will not be bit-identical to a "
                                  "single process here";
      if (options_.require_same_arithmetic) return status::error(differs + " (require_same_arithmetic)");
      arithmetic_mismatches_[n.name] = info->arithmetic;
      log({{"event", "arithmetic_differs"}, {"node", n.name}, {"arithmetic", info->arithmetic}, {"app_arithmetic", *mine}});
    }
    endpoints_[n.name] = n;
    nodes_[n.name] = handle;
    self->monitor(handle);
    watch_for_loss(loss_watcher_, caf::actor_cast<caf::actor>(handle));
    roles_[n.name] = info->role;
    configured_speeds_[n.name] = info->speed;
    health_[n.name].last_answer = std::chrono::steady_clock::now();
    // A node on this kernel, in this time namespace, reads this clock: its stage times need no
    // estimated offset (whose error, while every pong waits behind a busy node, is tens of ms).
    const bool same_clock = !info->clock_domain.empty() && info->clock_domain == monotonic_clock_domain();
    if (same_clock) health_[n.name].clock.set_same_clock();
    log({{"event", "node_up"}, {"node", n.name}, {"role", info->role}, {"address", n.address()},
         {"arithmetic", info->arithmetic}, {"same_clock", same_clock}});
  }
  // Nodes all on loopback addresses share this machine: what the app sends them crosses no
  // physical link, so the heartbeats' backlog floor (a ping behind 602 KB waits 6 s at the
  // default 1 Mbit/s) only delays finding a frozen node. Measured: swin_t under the virtual
  // clock, the failover's edge frozen with 4 inputs queued to it, was never found before the
  // requests' 30 s timeouts: 24 of 60 lost. A floor set by the caller is kept.
  bool all_loopback = !endpoints_.empty();
  for (const auto& [name, e] : endpoints_) all_loopback = all_loopback && is_loopback_host(e.host);
  if (all_loopback && options_.heartbeat_floor_mbit == send_backlog::default_floor_mbit_per_s) {
    options_.heartbeat_floor_mbit = loopback_floor_mbit_per_s;
    app_backlog_.set_floor(options_.heartbeat_floor_mbit);
    shipment_backlog_.set_floor(options_.heartbeat_floor_mbit);
  }
  return status::ok();
}

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

result<deploy_report> deployment::deploy(const graph& g, const deployment_plan& plan) {
  teardown();
  const auto started = clock_type::now();
  virtual_now_ = 0;
  // The clocks start again: what was copied is there.
  for (auto& [node, set] : standby_pending_) standby_arrived_[node].insert(set.begin(), set.end());
  standby_pending_.clear();
  standby_sources_.clear();
  weights_crossing_.clear();
  const size_t faults_before = faults_.size();
  deployment_plan attempt = plan;
  deploy_report report;
  for (int tries = 0;; ++tries) {
    report = deploy_report{};
    // Emulation: every live node gets its link table and the clock (resets its clocks).
    status configured = send_emulation(false, {});
    wall_epoch_ = clock_type::now();
    trace_applied_ = -1;  // a trace's times count from this deploy
    auto installed = configured ? install(g, attempt, report) : result<deployed_version>(configured);
    if (installed) {
      versions_[attempt.version] = std::move(installed.value());
      break;
    }
    auto next = replan_at_deploy(g, plan, attempt, installed.message(), tries);
    if (!next) return next.error();
    attempt = std::move(next.value());
  }
  graph_ = &g;
  deployed_plan_ = plan;  // what a failover repairs, and a rejoin goes back to
  current_ = attempt.version;
  broken_.clear();
  report.deploy_ms = ms_since(started);
  for (size_t k = faults_before; k < faults_.size(); ++k) {
    faults_[k].new_version = attempt.version;
    faults_[k].recovered_ms = report.deploy_ms;
  }
  note_held_layers(g);
  keep_standby();
  return report;
}

void deployment::note_held_layers(const graph& g) {
  std::vector<int> weighted;
  for (size_t l = 0; l < g.layers.size(); ++l)
    if (weight_bytes(g.layers[l]) > 0) weighted.push_back(int(l));
  const uint64_t hash = model_hash(g);
  // Once per model: a failover's redeploy must not wait on a frozen node it has not detected yet,
  // and what nodes held before this deployment does not change (shipments are tracked apart).
  if (weighted.empty() || !held_asked_.insert(hash).second) return;
  // A short bound of its own: this only saves shipping later, and a silent node costs it at most
  // this once.
  const auto bound = std::min(options_.timeout, std::chrono::milliseconds(2000));
  std::vector<std::string> names;
  for (int l : weighted) names.push_back(g.layers[size_t(l)].name);
  const auto placed = current_ ? placement(current()->stages) : std::map<int, std::set<std::string>>{};
  for (const auto& [node, handle] : nodes_) {
    if (down_nodes_.count(node)) continue;
    auto lacking = ask<std::vector<std::string>>(*self_, handle, bound, "node '" + node + "': cannot ask for its cached layers",
                                                 protocol::lacks_atom::value, hash, names);
    if (!lacking) {  // the requests find out whether the node is gone; the planner just learns less
      log({{"event", "layers_held_unknown"}, {"node", node}, {"error", lacking.message()}});
      continue;
    }
    const std::set<std::string> missing(lacking->begin(), lacking->end());
    size_t count = 0, bytes = 0;
    for (int l : weighted) {
      // The planner knows where the deployed plan put its layers: only the others are news.
      auto runs = placed.find(l);
      if ((runs != placed.end() && runs->second.count(node)) || missing.count(g.layers[size_t(l)].name)) continue;
      standby_arrived_[node].insert(l);
      ++count;
      bytes += weight_bytes(g.layers[size_t(l)]);
    }
    log({{"event", "layers_held"}, {"node", node}, {"layers", count}, {"bytes", bytes}, {"model_hash", hash}});
  }
}

result<deployment_plan> deployment::replan_at_deploy(const graph& g, const deployment_plan& asked,
                                                     const deployment_plan& failed, const std::string& error,
                                                     int tries) {
  const std::string failure = "deployment of plan version " + std::to_string(failed.version) + " failed: " + error;
  if (!options_.failover) return status::error(failure);
  // Was it a node lost? (Else the error stands: a bad plan, a refused upload, a bug.) A node that
  // went away has its down message waiting; a frozen one answers no ping.
  drain_down_messages();
  mark_unresponsive_nodes_down("during the deployment");
  auto sg = build_stage_graph(g, failed);
  if (!sg) return sg.error();
  std::vector<std::string> lost;
  for (const std::string& node : nodes_of(*sg))
    if (down_nodes_.count(node)) lost.push_back(node);
  if (lost.empty()) return status::error(failure);
  const emulation_settings& em = options_.emulation;
  if (down_nodes_.count(em.app_node) && (em.shaped || em.clock == clock_mode::virtual_time))
    return status::error(failure + "; node '" + em.app_node + "', where the emulation places the app, is down");
  if (tries >= 2) return status::error(failure + " (third attempt, nodes lost meanwhile)");
  // The plan asked for, on the nodes there are: as a failover would re-plan it (the replanner,
  // else repair_plan), its version above every one tried.
  const auto available = available_nodes();
  auto next = replanner_ ? replanner_(available, asked) : repair_plan(g, asked, available);
  if (!next) return status::error(failure + "; re-plan on the nodes left: " + next.message());
  next->version = failed.version + 1;
  if (next->strategy.find("failover") == std::string::npos) next->strategy += " (failover)";
  std::string names;
  for (const std::string& node : lost) names += (names.empty() ? "'" : ", '") + node + "'";
  log({{"event", "failover"}, {"why", "node " + names + " lost during the deployment"}, {"error", error},
       {"to_version", next->version}, {"plan", describe(next.value())}});
  return next;
}

result<migration_report> deployment::migrate(const graph& g, const deployment_plan& plan, bool ship_everything) {
  return migrate(g, plan, ship_everything, nullptr);
}

result<migration_report> deployment::migrate(const graph& g, const deployment_plan& plan, bool ship_everything,
                                             const background_migration* shipped_ahead) {
  if (!current_) return status::error("migrate: nothing is deployed");
  if (versions_.count(plan.version) || plan.version <= *current_)
    return status::error("migrate: plan version " + std::to_string(plan.version) + " is not newer than the running " +
                         std::to_string(*current_));
  const auto started = clock_type::now();
  migration_report m;
  m.from_version = *current_;
  m.to_version = plan.version;
  auto installed = install(g, plan, m.deploy, ship_everything);
  if (!installed) return status::error("migrate to plan version " + std::to_string(plan.version) + ": " + installed.message());
  const auto before = placement(current()->stages);
  for (const auto& [l, nodes] : placement(installed->stages)) {
    auto it = before.find(l);
    if (it == before.end() || it->second != nodes) m.layers_moved.push_back(g.layers[size_t(l)].name);
    else ++m.layers_unchanged;
  }
  m.virtual_start_ms = m.ready_virtual_ms = virtual_now_;
  m.wall_start_ms = shipped_ahead ? shipped_ahead->wall_start_ms : wall_now_ms();
  m.shipped_in_background = shipped_ahead != nullptr;
  if (shipped_ahead) {
    // Its layers arrived ahead of the install, which found them cached: they count as shipped.
    const deploy_report& ahead = shipped_ahead->report;
    m.deploy.weight_bytes_shipped += ahead.weight_bytes_shipped;
    m.deploy.message_bytes_shipped += ahead.message_bytes_shipped;
    m.deploy.layers_shipped += ahead.layers_shipped;
    m.deploy.layers_cached -= std::min(m.deploy.layers_cached, ahead.layers_shipped);
    for (const auto& [node, bytes] : ahead.weight_bytes_per_node) m.deploy.weight_bytes_per_node[node] += bytes;
  }
  auto ready = charge_shipments(m.deploy);
  if (!ready) {
    exit_actors(installed->actors);
    return status::error("migrate to plan version " + std::to_string(plan.version) + ": " + ready.message());
  }
  // Work placed on weights an earlier migration shipped waits for them; this one's join them.
  const double shipped_at = *ready;
  for (auto node = weights_crossing_.begin(); node != weights_crossing_.end();) {
    for (auto l = node->second.begin(); l != node->second.end();)
      l = l->second <= virtual_now_ ? node->second.erase(l) : std::next(l);
    node = node->second.empty() ? weights_crossing_.erase(node) : std::next(node);
  }
  for (const stage& st : installed->stages.stages) {
    auto crossing = weights_crossing_.find(st.node);
    if (crossing == weights_crossing_.end()) continue;
    for (int l : st.layers)
      if (auto at = crossing->second.find(l); at != crossing->second.end()) {
        *ready = std::max(*ready, at->second);
        installed->shipped_to.insert(st.node);
      }
  }
  if (shipped_at > virtual_now_)
    for (const auto& [node, layers] : m.deploy.layers_per_node)
      for (int l : layers) {
        double& at = weights_crossing_[node][l];
        at = std::max(at, shipped_at);
      }
  for (const auto& [node, bytes] : m.deploy.weight_bytes_per_node)
    if (bytes > 0 && node != options_.emulation.app_node && shipped_at > virtual_now_) installed->shipped_to.insert(node);
  // Work moved onto standby copies waits for them to have crossed: what is left of them on the
  // links is needed now and goes like any message (requests sharing the links queue behind).
  for (const std::string& node : nodes_of(installed->stages)) {
    if (!standby_pending_.count(node)) continue;
    auto arrived = standby_arrival(node, true);
    if (!arrived) {
      exit_actors(installed->actors);
      return status::error("migrate to plan version " + std::to_string(plan.version) + ": " + arrived.message());
    }
    *ready = std::max(*ready, *arrived);
  }
  m.ready_virtual_ms = *ready;
  installed->ready_ms = *ready;
  // The running version keeps its in-flight requests (and the new ones until the new version is
  // ready); it retires when no request needs it any more.
  versions_[plan.version] = std::move(installed.value());
  current_ = plan.version;
  m.wall_ready_ms = wall_now_ms();
  m.deploy.deploy_ms = shipped_ahead ? m.wall_ready_ms - m.wall_start_ms : ms_since(started);
  log({{"event", "layers_migrated"},
       {"from_version", m.from_version},
       {"to_version", m.to_version},
       {"layers", m.layers_moved},
       {"layers_moved", m.layers_moved.size()},
       {"layers_unchanged", m.layers_unchanged},
       {"weight_bytes_shipped", m.deploy.weight_bytes_shipped},
       {"layers_shipped", m.deploy.layers_shipped},
       {"strategy", plan.strategy},
       {"redeploy_everything", ship_everything},
       {"migrate_ms", m.deploy.deploy_ms},
       {"ready_virtual_ms", m.ready_virtual_ms},
       {"ship_virtual_ms", m.ready_virtual_ms - m.virtual_start_ms},
       {"shipped_in_background", m.shipped_in_background},
       {"wall_start_ms", m.wall_start_ms},
       {"wall_ready_ms", m.wall_ready_ms}});
  retire_idle(virtual_now_);
  migrations_.push_back(m);
  keep_standby();
  return m;
}

result<deploy_report> deployment::prestage(const graph& g, const std::map<std::string, std::set<int>>& layers) {
  if (!current_) return status::error("standby copies: nothing is deployed");
  deploy_report report;
  report.model_hash = model_hash(g);
  std::map<std::string, std::set<int>> up;
  for (const auto& [node, set] : layers) {
    if (!nodes_.count(node)) return status::error("standby copies for node '" + node + "', which is not connected");
    if (!down_nodes_.count(node) && !set.empty()) up[node] = set;
  }
  const emulation_settings& em = options_.emulation;
  const bool emulated_links = em.clock == clock_mode::virtual_time && em.shaped;
  // Each copy over the fastest link to its node: the app's node's, or a node's that runs the
  // layer (it holds the weights) where that link is faster.
  std::map<std::string, std::set<int>> from_app;
  std::map<std::pair<std::string, std::string>, std::vector<int>> relays;  // (from, to) -> layers
  const auto runs = placement(current()->stages);
  auto role = [&](const std::string& node) {
    auto it = roles_.find(node);
    return it == roles_.end() ? result<node_role>(status::error("no role")) : node_role_from_string(it->second);
  };
  const auto app_role = role(em.app_node);
  for (const auto& [node, set] : up) {
    const auto to = role(node);
    for (int l : set) {
      std::string best = em.app_node;
      auto holders = runs.find(l);
      if (emulated_links && to && app_role && holders != runs.end()) {
        const size_t b = weight_bytes(g.layers[size_t(l)]);
        double best_ms = transfer_ms(em.links.link(app_role.value(), to.value()), b);
        for (const std::string& holder : holders->second) {
          auto from = role(holder);
          if (holder == node || holder == em.app_node || down_nodes_.count(holder) || !from) continue;
          const double ms = transfer_ms(em.links.link(from.value(), to.value()), b);
          if (ms < best_ms) best = holder, best_ms = ms;
        }
      }
      if (best == em.app_node) from_app[node].insert(l);
      else relays[{best, node}].push_back(l);
    }
  }
  // A node relays once it holds the weights: not before the running version is ready (a
  // migration's shipments to it, or copies it got, may still be crossing).
  const double relay_at = std::max(virtual_now_, current()->ready_ms);
  for (auto& [pair, list] : relays) {
    standby_sources_[pair.second].insert(pair.first);
    if (status relayed = relay_to_node(g, pair.first, pair.second, list, relay_at, report); !relayed) {
      // The app ships what the relay did not (what arrived is not shipped again).
      log({{"event", "standby_relay_failed"}, {"from", pair.first}, {"node", pair.second}, {"error", relayed.message()}});
      from_app[pair.second].insert(list.begin(), list.end());
    }
  }
  const std::map<std::string, size_t> relayed_bytes = report.weight_bytes_per_node;
  report.weight_bytes_per_node.clear();
  D3_RETURN_IF_ERROR(ship_to_nodes(g, from_app, report, false, "standby_shipped"));
  const std::map<std::string, size_t> app_bytes = report.weight_bytes_per_node;
  for (const auto& [node, bytes] : relayed_bytes) report.weight_bytes_per_node[node] += bytes;
  for (const auto& [node, bytes] : app_bytes)
    if (bytes > 0 && node != em.app_node) report.weight_bytes_per_link[link_class(em.app_node, node)] += bytes;
  for (const auto& [node, set] : up) {
    const bool crosses = emulated_links && node != em.app_node && report.weight_bytes_per_node[node] > 0;
    (crosses ? standby_pending_ : standby_arrived_)[node].insert(set.begin(), set.end());
  }
  if (!emulated_links) return report;
  auto app = nodes_.find(em.app_node);
  for (const auto& [node, bytes] : app_bytes) {
    if (bytes == 0 || node == em.app_node) continue;
    standby_sources_[node].insert(em.app_node);
    if (auto link = app_links_.find(node); link != app_links_.end()) link->second.send_background(virtual_now_, bytes);
    if (app == nodes_.end() || down_nodes_.count(em.app_node)) continue;
    auto queued = ask<double>(*self_, app->second, options_.timeout,
                              "node '" + em.app_node + "': queueing standby copies to node '" + node + "'",
                              protocol::standby_atom::value, node, virtual_now_, uint64_t(bytes));
    if (!queued) return queued.error();
  }
  return report;
}

std::string deployment::link_class(const std::string& from, const std::string& to) const {
  auto a = roles_.find(from), b = roles_.find(to);
  if (a == roles_.end() || b == roles_.end()) return "unknown";
  const auto ra = node_role_from_string(a->second), rb = node_role_from_string(b->second);
  if (!ra || !rb) return "unknown";
  // Roles in the testbed's order (device, edge, cloud): "edge-cloud", never "cloud-edge".
  const auto [first, second] = std::minmax(ra.value(), rb.value());
  return std::string(to_string(first)) + "-" + to_string(second);
}

void deployment::set_standby(standby_policy policy) {
  standby_ = std::move(policy);
  keep_standby();
}

void deployment::keep_standby() {
  if (!standby_ || !current_ || !graph_) return;
  const deployed_version* v = current();
  auto sent = prestage(*graph_, standby_(v->plan));
  if (!sent) {
    standby_errors_.push_back(sent.message());
    log({{"event", "standby_failed"}, {"version", v->version}, {"error", sent.message()}});
    return;
  }
  standby_sent_.weight_bytes_shipped += sent->weight_bytes_shipped;
  standby_sent_.layers_shipped += sent->layers_shipped;
  for (const auto& [node, bytes] : sent->weight_bytes_per_node) standby_sent_.weight_bytes_per_node[node] += bytes;
  for (const auto& [link, bytes] : sent->weight_bytes_per_link) standby_sent_.weight_bytes_per_link[link] += bytes;
}

std::map<std::string, std::vector<int32_t>> deployment::take_arrived_standby() {
  for (auto it = standby_pending_.begin(); it != standby_pending_.end();) {
    auto arrival = down_nodes_.count(it->first) ? result<double>(status::error("down")) : standby_arrival(it->first);
    if (!arrival || *arrival > virtual_now_) {
      ++it;
      continue;
    }
    standby_arrived_[it->first].insert(it->second.begin(), it->second.end());
    standby_sources_.erase(it->first);
    it = standby_pending_.erase(it);
  }
  std::map<std::string, std::vector<int32_t>> out;
  for (const auto& [node, set] : standby_arrived_) out[node].assign(set.begin(), set.end());
  standby_arrived_.clear();
  return out;
}

result<double> deployment::standby_arrival(const std::string& node, bool needed_now) {
  const emulation_settings& em = options_.emulation;
  double arrival = virtual_now_;
  if (em.clock != clock_mode::virtual_time || !em.shaped || node == em.app_node) return arrival;
  std::set<std::string> sources = standby_sources_[node];
  if (sources.empty()) sources.insert(em.app_node);
  for (const std::string& source : sources) {
    if (source == em.app_node)
      if (auto link = app_links_.find(node); link != app_links_.end())
        arrival = std::max(arrival, needed_now ? link->second.promote_background(virtual_now_)
                                               : link->second.send_background(virtual_now_, 0));
    auto from = nodes_.find(source);
    if (from == nodes_.end() || down_nodes_.count(source)) continue;  // its queue went with it
    const std::string what = "node '" + source + "': when the standby copies to node '" + node + "' arrive";
    auto asked = needed_now ? ask<double>(*self_, from->second, options_.timeout, what, protocol::promote_atom::value,
                                          node, virtual_now_)
                            : ask<double>(*self_, from->second, options_.timeout, what, protocol::standby_atom::value,
                                          node, virtual_now_, uint64_t(0));
    if (!asked) return asked.error();
    arrival = std::max(arrival, *asked);
  }
  return arrival;
}

result<double> deployment::charge_shipments(const deploy_report& shipped) {
  const emulation_settings& em = options_.emulation;
  double ready = virtual_now_;
  if (em.clock != clock_mode::virtual_time || !em.shaped) return ready;
  for (const auto& [node, bytes] : shipped.weight_bytes_per_node) {
    if (bytes == 0 || node == em.app_node) continue;
    auto arrival = send_shared(node, virtual_now_, bytes);
    if (!arrival) return arrival.error();
    ready = std::max(ready, *arrival);
  }
  return ready;
}

result<double> deployment::send_shared(const std::string& node, double send_ms, size_t bytes) {
  const emulation_settings& em = options_.emulation;
  double done = send_ms;
  // The app's own link clock (its request inputs) and the app node's (its stages' sends).
  if (auto link = app_links_.find(node); link != app_links_.end())
    done = std::max(done, link->second.send_shared(send_ms, bytes));
  auto app = nodes_.find(em.app_node);
  if (app == nodes_.end() || down_nodes_.count(em.app_node)) return done;
  auto asked = ask<double>(*self_, app->second, options_.timeout,
                           "node '" + em.app_node + "': shipments to node '" + node + "'", protocol::occupy_atom::value,
                           node, send_ms, uint64_t(bytes));
  if (!asked) return asked.error();
  return std::max(done, *asked);
}

deployment::deployed_version* deployment::serving(double now_ms) {
  for (auto it = versions_.rbegin(); it != versions_.rend(); ++it) {
    deployed_version& v = it->second;
    if (!v.broken.empty() && v.version != current_) continue;
    // Its shipments were estimated when they left; the requests since took their share of the
    // links. Checked only once the estimate has passed (it can only move later).
    if (v.ready_ms <= now_ms && !v.shipped_to.empty()) {
      for (const std::string& node : v.shipped_to) {
        auto arrived = send_shared(node, now_ms, 0);  // 0 bytes asks
        if (!arrived) {  // the app node is not answering: its failover will re-plan
          log({{"event", "shipment_check_failed"}, {"version", v.version}, {"node", node}, {"error", arrived.message()}});
          continue;
        }
        v.ready_ms = std::max(v.ready_ms, *arrived);
      }
      if (v.ready_ms <= now_ms) {
        v.shipped_to.clear();
        for (migration_report& m : migrations_)  // its report gets the time the links delivered
          if (m.to_version == v.version) m.ready_virtual_ms = std::max(m.ready_virtual_ms, v.ready_ms);
      }
    }
    if (v.ready_ms <= now_ms) return &v;
  }
  return current();  // none ready and whole: the newest
}

void deployment::retire_idle(double now_ms) {
  const deployed_version* serves = serving(now_ms);
  for (auto it = versions_.begin(); it != versions_.end();) {
    deployed_version& v = it->second;
    if (&v == serves || v.version == current_ || v.in_flight > 0 || v.version > serves->version) {
      ++it;
      continue;
    }
    retire(v, "a newer version serves and no request of its own is in flight");
    it = versions_.erase(it);
  }
}

void deployment::retire(deployed_version& v, const std::string& reason) {
  exit_actors(v.actors);
  log({{"event", "plan_retired"}, {"version", v.version}, {"actors", v.actors.size()}, {"reason", reason}});
  v.actors.clear();
}

status deployment::send_emulation(bool keep_clocks, const std::map<std::string, double>& speeds) {
  if (!keep_clocks) app_links_.clear();
  for (const auto& [name, speed] : speeds) speeds_sent_[name] = speed;
  for (const auto& [name, handle] : nodes_)
    if (!down_nodes_.count(name)) D3_RETURN_IF_ERROR(send_emulation_to(name, keep_clocks, options_.timeout));
  return status::ok();
}

status deployment::send_emulation_to(const std::string& name, bool keep_clocks, std::chrono::milliseconds timeout) {
  const emulation_settings& em = options_.emulation;
  nlohmann::json links = nlohmann::json::object();
  auto from = node_role_from_string(roles_[name]);
  // What each node pays per MB it receives, at its speed (the last sent, else its own config's).
  auto receive_ms_per_mb = [&](const std::string& node) {
    if (em.receive_ms_per_mb <= 0) return 0.0;
    auto sent = speeds_sent_.find(node);
    auto configured = configured_speeds_.find(node);
    const double speed = sent != speeds_sent_.end()               ? sent->second
                         : configured != configured_speeds_.end() ? configured->second
                                                                  : 1.0;
    return em.receive_ms_per_mb / (speed > 0 ? speed : 1.0);
  };
  auto app_link = [&](const std::string& node, const link_profile& p) {
    const double receive = receive_ms_per_mb(node);
    auto [it, added] = app_links_.emplace(node, link_clock(p, receive));
    if (!added) it->second.set_profile(p, receive);  // a change: what is queued on the link stays
  };
  for (const auto& [other, other_handle] : nodes_) {
    if (other == name || !em.shaped) continue;
    auto to = node_role_from_string(roles_[other]);
    if (!from || !to) continue;
    const link_profile p = em.links.link(from.value(), to.value());
    links[other] = {{"mbit_per_s", p.bandwidth_mbit_per_s}, {"latency_ms", p.latency_ms},
                    {"receive_ms_per_mb", receive_ms_per_mb(other)}};
    if (name == em.app_node) app_link(other, p);
  }
  // The app is a process of its own: its inputs to a stage on its node cross the transport too.
  if (name == em.app_node && em.shaped && em.receive_ms_per_mb > 0) app_link(name, link_profile{});
  nlohmann::json settings = {{"clock", to_string(em.clock)}, {"links", links},
                             {"heartbeat_floor_mbit", options_.heartbeat_floor_mbit}};
  if (keep_clocks) settings["keep_clocks"] = true;
  auto speed = speeds_sent_.find(name);
  if (speed != speeds_sent_.end()) settings["speed"] = speed->second;
  const std::string what = "node '" + name + "': emulation " + (keep_clocks ? "change" : "settings");
  return command(*self_, nodes_.at(name), timeout, what, protocol::emul_atom::value, settings.dump());
}

status deployment::update_emulation(const testbed& links, const std::map<std::string, double>& speeds) {
  options_.emulation.links = links;
  D3_RETURN_IF_ERROR(send_emulation(true, speeds));
  nlohmann::json event = {{"event", "emulation_changed"}, {"uplink", links.uplink},
                          {"device_edge_mbit_per_s", links.device_edge.bandwidth_mbit_per_s}};
  for (const auto& [name, speed] : speeds) event["speed"][name] = speed;
  log(std::move(event));
  return status::ok();
}

std::vector<request_outcome> deployment::run(const std::vector<std::map<std::string, tensor>>& inputs,
                                             int in_flight) {
  if (!current_) {
    std::vector<request_outcome> outcomes(inputs.size());
    for (request_outcome& o : outcomes) o.error = "nothing deployed";
    return outcomes;
  }
  return request_session(*this, inputs, in_flight).run();
}

status deployment::follow_trace(double now_ms) {
  const int due = trace_->step_at(now_ms);
  while (trace_applied_ < due) {
    const trace_step& step = trace_->steps[size_t(trace_applied_ + 1)];
    status applied = update_emulation(step.apply(options_.emulation.links), step.speeds);
    if (!applied) return status::error("trace step " + std::to_string(trace_applied_ + 1) + " (" + step.describe() +
                                       "): " + applied.message());
    ++trace_applied_;
    log({{"event", "trace_step"}, {"step", trace_applied_}, {"at_ms", now_ms}, {"change", step.describe()}});
  }
  return status::ok();
}

std::string deployment::note_node_down(const caf::down_msg& down) {
  for (const auto& [name, node] : nodes_)
    if (node.address() == down.source) {
      mark_node_down(name, "connection lost: " + system_.render(down.reason));
      health_[name].connection_lost = true;
      health_[name].hold_until = {};  // the node itself is gone (not a link): back when it is back
      health_[name].held_for.clear();
      // What it reported about its links says nothing now (a restarted process watches no
      // peers and would refuse every recheck).
      for (auto& [other, h] : health_)
        if (h.held_for == name) h.held_for.clear();
      return name;
    }
  return "";
}

void deployment::drain_down_messages() {
  bool more = true;
  while (more)
    (*self_)->receive([&](caf::down_msg& down) { note_node_down(down); },
                      caf::after(std::chrono::milliseconds(0)) >> [&] { more = false; });
}

result<std::string> deployment::send_raw(int stage_id, const std::vector<uint8_t>& payload) {
  const deployed_version* v = current();
  if (!v || stage_id < 0 || size_t(stage_id) >= v->actors.size())
    return status::error("no stage " + std::to_string(stage_id) + " deployed");
  caf::scoped_actor& self = *self_;
  self->send(v->actors[size_t(stage_id)], protocol::data_atom::value, payload);
  std::string reported;
  bool got = false, timed_out = false;
  while (!got && !timed_out)
    self->receive(
        [&](protocol::fail_atom, uint64_t, bool, int32_t, const std::string& what) {
          got = true;
          reported = what;
        },
        [&](protocol::data_atom, const protocol::bytes&) { stray_errors_.push_back("unexpected answer to a raw payload"); },
        caf::after(options_.timeout) >> [&] { timed_out = true; });
  if (!got) return status::error("stage " + std::to_string(stage_id) + " reported no error within " +
                                 std::to_string(options_.timeout.count()) + " ms");
  return reported;
}

void deployment::teardown() {
  if (shipping_) {
    log({{"event", "migration_failed"}, {"version", shipping_->plan.version}, {"error", "torn down while shipping"}});
    shipping_.reset();  // cancels what is not sent yet and joins
  }
  if (versions_.empty()) return;
  std::set<std::string> used;
  for (auto& [version, v] : versions_) {
    for (const stage& s : v.stages.stages) used.insert(s.node);
    if (version != current_) {
      retire(v, "teardown");
      continue;
    }
    exit_actors(v.actors);
    for (size_t i = 0; i < v.actors.size(); ++i)
      if (!v.gone.count(i))
        log({{"event", "actor_exited"}, {"actor", int(i)}, {"node", v.stages.stages[i].node}, {"plan_version", v.version},
             {"reason", "teardown"}});
  }
  versions_.clear();
  current_.reset();
  // A round trip to each node after the exits: messages on one connection arrive in order.
  drain_down_messages();
  for (const std::string& node : used) {
    auto it = nodes_.find(node);
    if (it == nodes_.end() || down_nodes_.count(node)) continue;
    (void)ask<protocol::node_info>(*self_, it->second, options_.timeout, "", protocol::info_atom::value);
  }
}

}  // namespace d3
