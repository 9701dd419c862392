#include "actors/deployment.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <set>

#include <nlohmann/json.hpp>

#include "actors/protocol.hpp"
#include "schema/bundle.hpp"

namespace d3 {

namespace {

using protocol::bytes;
using clock_type = std::chrono::steady_clock;

double ms_since(clock_type::time_point start) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
}

// A request whose reply is a string: "" is success, anything else the remote side's error.
template <class... Ts>
status ask(caf::scoped_actor& self, const caf::actor& dest, std::chrono::milliseconds timeout, const std::string& what,
           Ts&&... xs) {
  std::string failure;
  bool answered = false;
  self->request(dest, timeout, std::forward<Ts>(xs)...)
      .receive(
          [&](std::string& reply) {
            answered = true;
            failure = std::move(reply);
          },
          [&](caf::error& e) {
            failure = e == caf::sec::request_timeout
                          ? "no answer within " + std::to_string(timeout.count()) + " ms"
                          : self->home_system().render(e);
          });
  if (answered && failure.empty()) return status::ok();
  return status::error(what + ": " + failure);
}

const char* type_name_of(stage_kind kind) {
  switch (kind) {
    case stage_kind::segment: return protocol::segment_type;
    case stage_kind::scatter: return protocol::scatter_type;
    case stage_kind::tile: return protocol::tile_type;
    case stage_kind::gather: return protocol::gather_type;
  }
  return "";
}

stage_kind type_of(stage_kind kind) {
  switch (kind) {
    case stage_kind::segment: return stage_kind::segment;
    case stage_kind::scatter: return stage_kind::scatter;
    case stage_kind::tile: return stage_kind::tile;
    case stage_kind::gather: return stage_kind::gather;
  }
  return stage_kind::segment;
}

std::vector<int> grid_bounds(const std::vector<tile_geometry>& tiles, bool rows) {
  std::set<int> bounds;
  for (const tile_geometry& t : tiles) {
    bounds.insert(rows ? t.output.row_begin : t.output.col_begin);
    bounds.insert(rows ? t.output.row_end : t.output.col_end);
  }
  return std::vector<int>(bounds.begin(), bounds.end());
}

stage_spec spec_of(const graph& g, const stage_graph& sg, const stage& s, uint64_t hash, int version) {
  stage_spec spec;
  spec.stage_id = s.id;
  spec.type = type_of(s.kind);
  spec.plan_version = uint32_t(version);
  spec.model_hash = hash;
  spec.inputs = s.inputs;
  spec.outputs = s.outputs;
  if (s.kind == stage_kind::segment || s.kind == stage_kind::tile)
    spec.fragment = make_fragment(g, s.layers, hash, {});  // weights come from the node's cache
  if (s.run < 0) return spec;
  const tiled_run& run = sg.runs[size_t(s.run)];
  const std::vector<tile_geometry>& tiles = sg.tiles[size_t(s.run)];
  switch (s.kind) {
    case stage_kind::tile: {
      const tile_geometry& geo = tiles[size_t(s.tile)];
      spec.tile_index = s.tile;
      spec.grid_row_bounds = grid_bounds(tiles, true);
      spec.grid_col_bounds = grid_bounds(tiles, false);
      for (int in : run.inputs) spec.tile_input_regions.push_back(geo.computed[size_t(in)]);
      spec.tile_output_region = geo.output;
      break;
    }
    case stage_kind::scatter:
      for (size_t t = 0; t < tiles.size(); ++t)
        for (int in : run.inputs)
          spec.copies.push_back({g.layers[size_t(in)].name, tile_tensor(g.layers[size_t(in)].name, int(t)), tiles[t].computed[size_t(in)]});
      break;
    case stage_kind::gather: {
      const std::string& out = g.layers[size_t(run.output)].name;
      for (size_t t = 0; t < tiles.size(); ++t) spec.copies.push_back({out, tile_tensor(out, int(t)), tiles[t].output});
      spec.whole_shape = g.layers[size_t(run.output)].output_shape;
      break;
    }
    case stage_kind::segment:
      break;
  }
  return spec;
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
    : system_(system), options_(options), self_(std::make_unique<caf::scoped_actor>(system)) {}

deployment::~deployment() { teardown(); }

void deployment::log(topology_event event) {
  if (options_.log) options_.log->write(std::move(event));
}

caf::actor& deployment::node_actor(const std::string& name) { return nodes_.at(name); }

status deployment::connect(const std::vector<node_endpoint>& nodes) {
  caf::scoped_actor& self = *self_;
  for (const node_endpoint& n : nodes) {
    const std::string what = "node '" + n.name + "' at " + n.address();
    caf::actor handle;
    std::string failure;
    self->request(system_.middleman().actor_handle(), options_.timeout, caf::connect_atom::value, n.host, n.port)
        .receive(
            [&](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
              handle = caf::actor_cast<caf::actor>(ptr);
              if (!handle) failure = "something listens there, but it publishes no d3-node actor";
            },
            [&](caf::error& e) {
              failure = e == caf::sec::request_timeout
                            ? "no answer within " + std::to_string(options_.timeout.count()) + " ms"
                            : system_.render(e);
            });
    if (!handle) return status::error("cannot connect to " + what + ": " + failure);
    std::string name, role;
    self->request(handle, options_.timeout, protocol::info_atom::value)
        .receive(
            [&](std::string& reported_name, std::string& reported_role) {
              name = std::move(reported_name);
              role = std::move(reported_role);
            },
            [&](caf::error& e) { failure = system_.render(e); });
    if (!failure.empty()) return status::error(what + " does not answer as a d3-node: " + failure);
    if (name != n.name)
      return status::error(what + " is d3-node '" + name + "', not '" + n.name + "' (check --nodes)");
    endpoints_[n.name] = n;
    nodes_[n.name] = handle;
    self->monitor(handle);
    roles_[n.name] = role;
    log({{"event", "node_up"}, {"node", n.name}, {"role", role}, {"address", n.address()}});
  }
  return status::ok();
}

result<deploy_report> deployment::deploy(const graph& g, const deployment_plan& plan) {
  teardown();
  const auto started = clock_type::now();
  deploy_report report;
  // Emulation: every connected node gets its link table and the clock (resets its clocks).
  D3_RETURN_IF_ERROR(send_emulation(false, {}));
  virtual_now_ = 0;
  wall_epoch_ = clock_type::now();
  trace_applied_ = -1;  // a trace's times count from this deploy
  auto installed = install(g, plan, report);
  if (!installed) return installed.error();
  adopt(std::move(installed.value()));
  report.deploy_ms = ms_since(started);
  return report;
}

void deployment::adopt(deployed_version v) {
  stages_ = std::move(v.stages);
  actor_nodes_.clear();
  for (size_t i = 0; i < v.actors.size(); ++i) actor_nodes_[v.actors[i]] = stages_.stages[i].node;
  stage_actors_ = std::move(v.actors);
  input_routes_ = std::move(v.input_routes);
  remote_inputs_ = std::move(v.remote_inputs);
  answer_bytes_ = std::move(v.answer_bytes);
  stage_shares_ = std::move(v.stage_shares);
  graph_outputs_ = stages_.graph_outputs;
  plan_version_ = v.version;
  gone_.clear();
  broken_.clear();
}

result<deployment::deployed_version> deployment::install(const graph& g, const deployment_plan& plan,
                                                         deploy_report& report, bool ship_everything) {
  caf::scoped_actor& self = *self_;
  auto sg = build_stage_graph(g, plan);
  if (!sg) return sg.error();
  drain_down_messages();
  for (const stage& s : sg->stages)
    if (down_nodes_.count(s.node))
      return status::error("the plan places " + std::string(to_string(s.kind)) + " stage " + std::to_string(s.id) +
                           " on node '" + s.node + "' at " + endpoints_.at(s.node).address() + ", which is down");
  for (const stage& s : sg->stages)
    if (!nodes_.count(s.node))
      return status::error("the plan places " + std::string(to_string(s.kind)) + " stage " + std::to_string(s.id) +
                           " on node '" + s.node + "', which is not connected (not in --nodes?)");
  report.plan_version = plan.version;
  report.model_hash = model_hash(g);
  report.bytes_per_request = bytes_between_nodes(g, *sg, options_.app_node);

  // Direct connections between nodes that exchange tensors (else CAF relays through the app).
  for (const link_bytes& link : report.bytes_per_request) {
    if (link.from == options_.app_node || link.to == options_.app_node) continue;
    auto key = std::minmax(link.from, link.to);
    if (peered_.count(key)) continue;
    const node_endpoint& to = endpoints_.at(key.second);
    D3_RETURN_IF_ERROR(ask(self, node_actor(key.first), options_.timeout,
                           "node '" + key.first + "' connecting to node '" + key.second + "' at " + to.address(),
                           protocol::peer_atom::value, to.host, to.port));
    peered_.insert(key);
  }

  // Weights: every node gets the layers its stages run that it does not have yet.
  std::map<std::string, std::set<int>> needed;
  for (const stage& s : sg->stages)
    if (s.kind == stage_kind::segment || s.kind == stage_kind::tile)
      for (int l : s.layers)
        if (weight_bytes(g.layers[size_t(l)]) > 0) needed[s.node].insert(l);
  for (const auto& [node, layer_set] : needed) {
    std::vector<std::string> names;
    for (int l : layer_set) names.push_back(g.layers[size_t(l)].name);
    std::vector<std::string> lacking;
    if (ship_everything) {
      lacking = names;
    } else {
      std::string failure;
      bool answered = false;
      self->request(node_actor(node), options_.timeout, protocol::lacks_atom::value, report.model_hash, names)
          .receive(
              [&](std::vector<std::string>& reply) {
                answered = true;
                lacking = std::move(reply);
              },
              [&](caf::error& e) { failure = system_.render(e); });
      if (!answered) return status::error("node '" + node + "': cannot ask for its cached layers: " + failure);
    }
    std::vector<int> to_ship;
    for (const std::string& name : lacking) {
      const int l = g.find(name);
      if (l < 0 || !layer_set.count(l)) return status::error("node '" + node + "' lacks unknown layer '" + name + "'");
      to_ship.push_back(l);
    }
    size_t node_bytes = 0, node_message_bytes = 0;
    std::vector<int> chunk;
    size_t chunk_bytes = 0;
    auto ship = [&]() -> status {
      if (chunk.empty()) return status::ok();
      bytes payload = encode_layers(g, chunk, report.model_hash, chunk);
      if (payload.empty()) return status::error("cannot encode the layers shipped to node '" + node + "'");
      node_message_bytes += payload.size();
      D3_RETURN_IF_ERROR(ask(self, node_actor(node), options_.timeout,
                             "shipping " + std::to_string(chunk.size()) + " layers to node '" + node + "'",
                             protocol::ship_atom::value, std::move(payload)));
      node_bytes += chunk_bytes;
      chunk.clear();
      chunk_bytes = 0;
      return status::ok();
    };
    for (int l : to_ship) {
      const size_t b = weight_bytes(g.layers[size_t(l)]);
      if (!chunk.empty() && chunk_bytes + b > options_.shipment_bytes) D3_RETURN_IF_ERROR(ship());
      chunk.push_back(l);
      chunk_bytes += b;
    }
    D3_RETURN_IF_ERROR(ship());
    report.weight_bytes_shipped += node_bytes;
    report.message_bytes_shipped += node_message_bytes;
    report.layers_shipped += to_ship.size();
    report.layers_cached += layer_set.size() - to_ship.size();
    report.weight_bytes_per_node[node] = node_bytes;
    log({{"event", "layers_shipped"},
         {"node", node},
         {"layers", to_ship.size()},
         {"bytes", node_bytes},
         {"cached", layer_set.size() - to_ship.size()},
         {"model_hash", report.model_hash}});
  }

  // Stages: spawned on their nodes, set up (operators created there), then wired.
  std::vector<caf::actor> actors;
  auto abandon = [&](status error) -> result<deployed_version> {
    for (const caf::actor& a : actors) {
      self->demonitor(a);
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    }
    return error;
  };
  for (const stage& s : sg->stages) {
    const std::string what = std::string(to_string(s.kind)) + " stage " + std::to_string(s.id) + " on node '" +
                             s.node + "'";
    bytes spec = encode_stage_spec(spec_of(g, *sg, s, report.model_hash, plan.version));
    if (spec.empty()) return abandon(status::error(what + ": cannot encode its spec"));
    auto spawned = system_.middleman().remote_spawn<caf::actor>(node_actor(s.node).node(), type_name_of(s.kind),
                                                                caf::make_message(std::move(spec)), options_.timeout);
    if (!spawned) return abandon(status::error("cannot spawn " + what + ": " + system_.render(spawned.error())));
    actors.push_back(*spawned);
    self->monitor(*spawned);
    status ready = ask(self, *spawned, options_.timeout, what, protocol::setup_atom::value, caf::actor(self));
    if (!ready) return abandon(ready);
  }
  std::map<int, std::vector<int>> sends_to;
  std::map<std::string, std::vector<caf::actor>> input_routes;
  for (const route& r : sg->routes) {
    if (r.from_stage < 0) {
      for (int to : r.to_stages) input_routes[r.tensor].push_back(actors[size_t(to)]);
      continue;
    }
    const std::string what = "routing '" + r.tensor + "' of stage " + std::to_string(r.from_stage);
    for (int to : r.to_stages) {
      status routed = ask(self, actors[size_t(r.from_stage)], options_.timeout, what, protocol::route_atom::value,
                          r.tensor, actors[size_t(to)], sg->stages[size_t(to)].node);
      if (!routed) return abandon(routed);
      sends_to[r.from_stage].push_back(to);
    }
    if (r.to_app) {
      status routed = ask(self, actors[size_t(r.from_stage)], options_.timeout, what, protocol::route_atom::value,
                          r.tensor, caf::actor(self), options_.emulation.app_node);
      if (!routed) return abandon(routed);
    }
  }
  for (const stage& s : sg->stages) {
    topology_event e = {{"event", "actor_spawned"},
                        {"actor", s.id},
                        {"kind", to_string(s.kind)},
                        {"node", s.node},
                        {"plan_version", plan.version},
                        {"caf_actor", actors[size_t(s.id)].id()}};
    if (!s.layers.empty())
      e["layers"] = {g.layers[size_t(s.layers.front())].name, g.layers[size_t(s.layers.back())].name};
    if (s.kind == stage_kind::tile) {
      e["tile"] = s.tile;
      e["region"] = sg->tiles[size_t(s.run)][size_t(s.tile)].output.to_string();
    }
    std::vector<int> to = sends_to[s.id];
    std::sort(to.begin(), to.end());
    to.erase(std::unique(to.begin(), to.end()), to.end());
    e["sends_to"] = to;
    log(std::move(e));
  }
  log({{"event", "plan_deployed"}, {"version", plan.version}, {"strategy", plan.strategy}, {"model", g.name}});

  deployed_version v;
  v.version = plan.version;
  v.input_routes = std::move(input_routes);
  // Transfer accounting for the planner: per stage, the bytes it reads from each remote stage.
  for (const stage& st : sg->stages) v.stage_shares.push_back(layer_shares(g, *sg, st));
  v.remote_inputs.resize(sg->stages.size());
  for (const route& r : sg->routes) {
    const std::string from = r.from_stage < 0 ? options_.emulation.app_node : sg->stages[size_t(r.from_stage)].node;
    for (int to : r.to_stages)
      if (sg->stages[size_t(to)].node != from) v.remote_inputs[size_t(to)][r.from_stage] += tensor_bytes(g, *sg, r.tensor);
    if (r.to_app && r.from_stage >= 0 && from != options_.emulation.app_node)
      v.answer_bytes[r.from_stage] += tensor_bytes(g, *sg, r.tensor);
  }
  v.stages = std::move(sg.value());
  v.actors = std::move(actors);
  return v;
}

result<migration_report> deployment::migrate(const graph& g, const deployment_plan& plan, bool ship_everything) {
  if (stage_actors_.empty()) return status::error("migrate: nothing is deployed");
  if (plan.version <= plan_version_ || retiring_.count(plan.version))
    return status::error("migrate: plan version " + std::to_string(plan.version) + " is not newer than the running " +
                         std::to_string(plan_version_));
  const auto started = clock_type::now();
  // Where each layer runs now (its set of nodes: tiles run a layer on several).
  auto placement = [&](const stage_graph& sg) {
    std::map<int, std::set<std::string>> nodes;
    for (const stage& s : sg.stages)
      for (int l : s.layers) nodes[l].insert(s.node);
    return nodes;
  };
  const auto before = placement(stages_);
  migration_report m;
  m.from_version = plan_version_;
  m.to_version = plan.version;
  auto installed = install(g, plan, m.deploy, ship_everything);
  if (!installed) return status::error("migrate to plan version " + std::to_string(plan.version) + ": " + installed.message());
  const auto after = placement(installed->stages);
  for (const auto& [l, nodes] : after) {
    auto it = before.find(l);
    if (it == before.end() || it->second != nodes) m.layers_moved.push_back(g.layers[size_t(l)].name);
    else ++m.layers_unchanged;
  }
  // The running version keeps its in-flight requests; it retires when they are answered.
  deployed_version old;
  old.version = plan_version_;
  old.stages = std::move(stages_);
  old.actors = std::move(stage_actors_);
  old.input_routes = std::move(input_routes_);
  old.remote_inputs = std::move(remote_inputs_);
  old.answer_bytes = std::move(answer_bytes_);
  old.stage_shares = std::move(stage_shares_);
  old.in_flight = in_flight_current_;
  const std::map<caf::actor, std::string> old_nodes = actor_nodes_;
  adopt(std::move(installed.value()));
  for (const auto& [a, node] : old_nodes) actor_nodes_.emplace(a, node);  // old stages still answer
  in_flight_current_ = 0;
  m.deploy.deploy_ms = ms_since(started);
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
       {"migrate_ms", m.deploy.deploy_ms}});
  if (old.in_flight == 0) retire(old, "migrated, no request in flight");
  else retiring_.emplace(old.version, std::move(old));
  migrations_.push_back(m);
  return m;
}

void deployment::retire(deployed_version& v, const std::string& reason) {
  for (size_t i = 0; i < v.actors.size(); ++i) {
    (*self_)->demonitor(v.actors[i]);
    caf::anon_send_exit(v.actors[i], caf::exit_reason::user_shutdown);
    actor_nodes_.erase(v.actors[i]);
  }
  log({{"event", "plan_retired"}, {"version", v.version}, {"actors", v.actors.size()}, {"reason", reason}});
  v.actors.clear();
}

status deployment::send_emulation(bool keep_clocks, const std::map<std::string, double>& speeds) {
  caf::scoped_actor& self = *self_;
  const emulation_settings& em = options_.emulation;
  app_links_.clear();
  for (const auto& [name, handle] : nodes_) {
    if (down_nodes_.count(name)) continue;
    nlohmann::json links = nlohmann::json::object();
    auto from = node_role_from_string(roles_[name]);
    for (const auto& [other, other_handle] : nodes_) {
      if (other == name || !em.shaped) continue;
      auto to = node_role_from_string(roles_[other]);
      if (!from || !to) continue;
      const link_profile p = em.links.link(from.value(), to.value());
      links[other] = {{"mbit_per_s", p.bandwidth_mbit_per_s}, {"latency_ms", p.latency_ms}};
      if (name == em.app_node) app_links_.emplace(other, link_clock(p));
    }
    nlohmann::json settings = {{"clock", to_string(em.clock)}, {"links", links}};
    if (keep_clocks) settings["keep_clocks"] = true;
    auto speed = speeds.find(name);
    if (speed != speeds.end()) settings["speed"] = speed->second;
    D3_RETURN_IF_ERROR(ask(self, handle, options_.timeout,
                           "node '" + name + "': emulation " + (keep_clocks ? "change" : "settings"),
                           protocol::emul_atom::value, settings.dump()));
  }
  return status::ok();
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

result<std::map<std::string, layer_profile>> deployment::probe_profiles(const graph& g,
                                                                        const std::vector<std::string>& names,
                                                                        int repeats) {
  for (const std::string& name : names)
    if (!nodes_.count(name) || down_nodes_.count(name))
      return status::error("profile probe: node '" + name + "' is not connected");
  // The node measures under the clock it will run with: before a deploy, configure it now (a
  // deploy resets the clocks anyway).
  if (stage_actors_.empty()) D3_RETURN_IF_ERROR(send_emulation(false, {}));
  auto order = topological_order(g);
  if (!order) return order.error();
  std::vector<int> computed;
  for (int l : *order)
    if (g.layers[size_t(l)].kind != layer_kind::input) computed.push_back(l);
  const bytes payload = encode_layers(g, computed, model_hash(g), {});
  if (payload.empty()) return status::error("profile probe: cannot encode the model");
  caf::scoped_actor& self = *self_;
  std::map<std::string, layer_profile> profiles;
  for (const std::string& name : names) {
    std::string answer, failure;
    self->request(nodes_.at(name), options_.timeout, protocol::profile_atom::value, payload, int32_t(repeats))
        .receive([&](std::string& reply) { answer = std::move(reply); },
                 [&](caf::error& e) {
                   failure = e == caf::sec::request_timeout
                                 ? "no answer within " + std::to_string(options_.timeout.count()) + " ms"
                                 : system_.render(e);
                 });
    const std::string what = "profile probe of node '" + name + "': ";
    if (!failure.empty()) return status::error(what + failure);
    const nlohmann::json j = nlohmann::json::parse(answer, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return status::error(what + "malformed answer");
    if (j.contains("error")) return status::error(what + j.at("error").get<std::string>());
    layer_profile& profile = profiles[name];
    profile.milliseconds.assign(g.layers.size(), 0.0);
    const nlohmann::json& layers = j.at("layers");
    for (int l : computed) {
      auto it = layers.find(g.layers[size_t(l)].name);
      if (it == layers.end() || !it->is_number())
        return status::error(what + "no time for layer '" + g.layers[size_t(l)].name + "'");
      profile.milliseconds[size_t(l)] = it->get<double>();
    }
    const nlohmann::json costs = j.value("messages", nlohmann::json::object());
    for (auto [key, field] : {std::pair<const char*, double*>{"encode_ms", &profile.messages.encode_ms},
                              {"encode_ms_per_mb", &profile.messages.encode_ms_per_mb},
                              {"decode_ms", &profile.messages.decode_ms},
                              {"decode_ms_per_mb", &profile.messages.decode_ms_per_mb},
                              {"copy_ms_per_mb", &profile.messages.copy_ms_per_mb}}) {
      auto it = costs.find(key);
      if (it == costs.end() || !it->is_number() || it->get<double>() < 0)
        return status::error(what + "no message cost '" + key + "'");
      *field = it->get<double>();
    }
    log({{"event", "profile_probed"}, {"node", name}, {"total_ms", profile.total()}});
  }
  return profiles;
}

result<layer_profile> deployment::probe_profile(const graph& g, const std::string& name, int repeats) {
  auto profiles = probe_profiles(g, {name}, repeats);
  if (!profiles) return profiles.error();
  return std::move(profiles->at(name));
}

result<transfer_observation> deployment::probe_link(const std::string& from, const std::string& to, size_t size,
                                                    double after_ms) {
  if (!nodes_.count(from) || !nodes_.count(to) || down_nodes_.count(from) || down_nodes_.count(to))
    return status::error("probe " + from + " -> " + to + ": a node is not connected");
  caf::scoped_actor& self = *self_;
  const double send_ms = options_.emulation.clock == clock_mode::virtual_time ? virtual_now_ + after_ms : 0.0;
  std::string failure;
  double ms = -1;
  self->request(nodes_.at(from), options_.timeout, protocol::probe_atom::value, nodes_.at(to), to, uint64_t(size), send_ms)
      .receive(
          [&](std::string& error, double taken) {
            failure = std::move(error);
            ms = taken;
          },
          [&](caf::error& e) { failure = system_.render(e); });
  if (!failure.empty() || ms < 0)
    return status::error("probe " + from + " -> " + to + ": " + (failure.empty() ? "no time" : failure));
  return transfer_observation{from, to, size, ms};
}

void deployment::probe_idle_links(request_outcome& o) {
  ++answers_seen_;
  auto role_of = [&](const std::string& node) {
    auto it = roles_.find(node);
    return it == roles_.end() ? node : it->second;
  };
  auto key = [](std::string a, std::string b) { return a < b ? std::make_pair(a, b) : std::make_pair(b, a); };
  for (const transfer_observation& t : o.transfers) link_last_seen_[key(role_of(t.from), role_of(t.to))] = answers_seen_;
  // One node per role stands for its links: the app's node, the first edge node (by name), the
  // cloud; edge-edge between the first two edge nodes.
  std::vector<std::string> edges;
  std::string cloud;
  for (const auto& [name, role] : roles_) {
    if (down_nodes_.count(name)) continue;
    if (role == "edge") edges.push_back(name);
    if (role == "cloud" && cloud.empty()) cloud = name;
  }
  std::sort(edges.begin(), edges.end(), node_name_less);
  const std::string& app = options_.emulation.app_node;
  std::vector<std::pair<std::string, std::string>> pairs;
  if (!edges.empty()) pairs.push_back({app, edges[0]});
  if (!cloud.empty()) pairs.push_back({app, cloud});
  if (!edges.empty() && !cloud.empty()) pairs.push_back({edges[0], cloud});
  if (edges.size() >= 2) pairs.push_back({edges[0], edges[1]});
  for (const auto& [from, to] : pairs) {
    if (from == to || !nodes_.count(from) || !nodes_.count(to)) continue;
    auto k = key(role_of(from), role_of(to));
    if (answers_seen_ - link_last_seen_[k] < size_t(options_.idle_probe_every)) continue;
    link_last_seen_[k] = answers_seen_;
    double after_ms = 0;  // each probe leaves when the previous one has arrived
    for (size_t size : {size_t(1024), size_t(16384)}) {
      auto probed = probe_link(from, to, size, after_ms);
      if (!probed) {
        stray_errors_.push_back(probed.message());
        break;
      }
      after_ms += probed->ms;
      o.transfers.push_back(probed.value());
    }
    log({{"event", "link_probed"}, {"from", from}, {"to", to}});
  }
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

std::vector<transfer_observation> deployment::transfers_of(const stage_graph& stages,
                                                           const std::vector<std::map<int, size_t>>& remote_inputs,
                                                           const std::map<int, size_t>& answer_bytes,
                                                           const request_outcome& o) const {
  std::vector<transfer_observation> out;
  std::map<int, const stage_report*> by_stage;
  for (const stage_report& r : o.stage_reports) by_stage[r.stage_id] = &r;
  const std::string& app = options_.emulation.app_node;
  for (const auto& [id, report] : by_stage) {
    if (id < 0 || size_t(id) >= remote_inputs.size()) continue;
    const auto& remote = remote_inputs[size_t(id)];
    if (remote.size() != 1) continue;  // one remote producer: its arrival is this stage's ready time
    const auto& [from_stage, bytes] = *remote.begin();
    double sent = o.virtual_start_ms;
    std::string from = app;
    if (from_stage >= 0) {
      auto producer = by_stage.find(from_stage);
      if (producer == by_stage.end()) continue;
      sent = producer->second->finish_ms;
      from = stages.stages[size_t(from_stage)].node;
    }
    out.push_back({from, stages.stages[size_t(id)].node, bytes, report->ready_ms - sent});
  }
  for (const auto& [from_stage, bytes] : answer_bytes) {
    auto producer = by_stage.find(from_stage);
    if (producer == by_stage.end() || answer_bytes.size() != 1) continue;
    out.push_back({stages.stages[size_t(from_stage)].node, app, bytes, o.virtual_end_ms - producer->second->finish_ms});
  }
  return out;
}

std::vector<request_outcome> deployment::run(const std::vector<std::map<std::string, tensor>>& inputs,
                                             int in_flight) {
  caf::scoped_actor& self = *self_;
  std::vector<request_outcome> outcomes(inputs.size());
  if (stage_actors_.empty()) {
    for (request_outcome& o : outcomes) o.error = "nothing deployed";
    return outcomes;
  }
  in_flight = std::max(1, in_flight);
  std::map<uint64_t, size_t> active, finished;  // request id -> index
  std::vector<clock_type::time_point> started(inputs.size());
  size_t next = 0, done = 0;

  std::optional<deployment_plan> pending_plan;  // chosen by the adaptation hook
  auto finish = [&](uint64_t id, const std::string& error) {
    auto it = active.find(id);
    const size_t i = it->second;
    request_outcome& o = outcomes[i];
    o.ok = error.empty();
    o.error = error;
    o.latency_ms = ms_since(started[i]);
    if (!error.empty()) o.outputs.clear();
    finished[id] = i;
    active.erase(it);
    ++done;
    const bool virtual_clock = options_.emulation.clock == clock_mode::virtual_time;
    auto observe = [&](const stage_graph& sg, const std::vector<std::vector<double>>& shares) {
      for (const stage_report& r : o.stage_reports) {
        if (r.stage_id < 0 || size_t(r.stage_id) >= sg.stages.size()) continue;
        const stage& st = sg.stages[size_t(r.stage_id)];
        if (st.kind == stage_kind::segment || st.kind == stage_kind::tile)
          o.computes.push_back({st.node, st.layers, shares[size_t(r.stage_id)], r.finish_ms - r.ready_ms - r.messages_ms});
      }
    };
    if (o.plan_version == plan_version_) {
      if (in_flight_current_ > 0) --in_flight_current_;
      if (virtual_clock && o.ok) {
        o.transfers = transfers_of(stages_, remote_inputs_, answer_bytes_, o);
        observe(stages_, stage_shares_);
      }
    } else if (auto old = retiring_.find(o.plan_version); old != retiring_.end()) {
      if (virtual_clock && o.ok) {
        o.transfers = transfers_of(old->second.stages, old->second.remote_inputs, old->second.answer_bytes, o);
        observe(old->second.stages, old->second.stage_shares);
      }
      if (old->second.in_flight > 0 && --old->second.in_flight == 0) {
        retire(old->second, "its last request was answered");
        retiring_.erase(old);
      }
    }
    if (o.ok && options_.idle_probe_every > 0) probe_idle_links(o);
    if (adaptation_ && o.ok && !pending_plan) pending_plan = adaptation_(o);
  };
  auto start = [&](size_t i) {
    const uint64_t id = next_request_id_++;
    outcomes[i].id = id;
    outcomes[i].plan_version = plan_version_;
    ++in_flight_current_;
    active[id] = i;
    started[i] = clock_type::now();
    if (!broken_.empty()) return finish(id, broken_);
    std::map<caf::actor, std::vector<tensor_ref>> per_destination;
    for (const auto& [name, dests] : input_routes_) {
      auto t = inputs[i].find(name);
      if (t == inputs[i].end()) return finish(id, "no input tensor named '" + name + "'");
      for (const caf::actor& d : dests) per_destination[d].push_back({name, &t->second});
    }
    // Emulation: the app sits on the app node; inputs for stages elsewhere cross its links.
    const bool virtual_clock = options_.emulation.clock == clock_mode::virtual_time;
    const double send_ms = virtual_clock ? virtual_now_ : ms_since(wall_epoch_);
    if (trace_) {
      status followed = follow_trace(send_ms);
      if (!followed) return finish(id, followed.message());
      outcomes[i].trace_step = trace_applied_;
    }
    outcomes[i].virtual_start_ms = virtual_now_;
    for (auto& [dest, refs] : per_destination) {
      double arrival = send_ms;
      auto node = actor_nodes_.find(dest);
      if (node != actor_nodes_.end()) {
        auto link = app_links_.find(node->second);
        if (link != app_links_.end()) {
          size_t n = 0;
          for (const tensor_ref& r : refs) n += r.value->bytes();
          arrival = link->second.send(send_ms, n);
        }
      }
      bytes payload = encode_bundle(id, uint32_t(plan_version_), refs, virtual_clock ? arrival : 0.0);
      if (payload.empty()) return finish(id, "cannot encode the input bundle");
      const double delay_ms = arrival - send_ms;
      if (!virtual_clock && delay_ms > 0.001)
        self->delayed_send(dest, std::chrono::microseconds(int64_t(delay_ms * 1000.0)), protocol::data_atom::value,
                           std::move(payload));
      else
        self->send(dest, protocol::data_atom::value, std::move(payload));
    }
  };
  auto on_data = [&](const bytes& payload) {
    auto bundle = decode_bundle(payload.data(), payload.size());
    if (!bundle) {
      stray_errors_.push_back("undecodable answer: " + bundle.message());
      return;
    }
    const uint64_t id = bundle->request_id;
    auto dup = finished.find(id);
    if (dup != finished.end()) {
      request_outcome& o = outcomes[dup->second];
      if (o.ok) o.error = "duplicated answer";
      o.ok = false;
      return;
    }
    auto it = active.find(id);
    if (it == active.end()) {
      stray_errors_.push_back("answer for unknown request " + std::to_string(id));
      return;
    }
    request_outcome& o = outcomes[it->second];
    o.virtual_end_ms = std::max(o.virtual_end_ms, bundle->virtual_ms);
    o.virtual_latency_ms = o.virtual_end_ms - o.virtual_start_ms;
    virtual_now_ = std::max(virtual_now_, bundle->virtual_ms);
    if (bundle->plan_version != uint32_t(o.plan_version))
      return finish(id, "answer under plan version " + std::to_string(bundle->plan_version) + ", sent under " +
                            std::to_string(o.plan_version));
    for (named_tensor& t : bundle->tensors) {
      if (std::find(graph_outputs_.begin(), graph_outputs_.end(), t.name) == graph_outputs_.end())
        return finish(id, "answer holds '" + t.name + "', which is no graph output");
      if (!o.outputs.emplace(t.name, std::move(t.value)).second)
        return finish(id, "output '" + t.name + "' received twice");
    }
    if (o.outputs.size() == graph_outputs_.size()) finish(id, "");
  };
  auto on_fail = [&](uint64_t id, bool known, int32_t stage, const std::string& what) {
    if (known && active.count(id)) return finish(id, what);
    if (known && finished.count(id)) {
      request_outcome& o = outcomes[finished[id]];
      o.ok = false;
      if (o.error.empty()) o.error = what;
      return;
    }
    stray_errors_.push_back(what);
  };

  auto on_report = [&](uint64_t id, int32_t stage, double ready, double finish_ms, double cpu, uint64_t sent,
                       double messages_ms) {
    auto it = active.find(id);
    size_t i = 0;
    if (it != active.end()) i = it->second;
    else if (finished.count(id)) i = finished[id];
    else return;
    outcomes[i].stage_reports.push_back({int(stage), ready, finish_ms, cpu, sent, messages_ms});
  };

  auto on_down = [&](const caf::down_msg& down) {
    for (const auto& [name, node] : nodes_)
      if (node.address() == down.source) {
        down_nodes_.insert(name);
        log({{"event", "node_down"}, {"node", name}, {"reason", system_.render(down.reason)}});
        // The emulation puts the app on its node: requests start there and answers end there.
        // Without it, latencies would leave out the app's links: every request fails instead.
        const bool emulated = options_.emulation.shaped || options_.emulation.clock == clock_mode::virtual_time;
        if (emulated && name == options_.emulation.app_node) {
          if (broken_.empty())
            broken_ = "node '" + name + "' at " + endpoints_.at(name).address() +
                      ", where the emulation places the app, is gone (" + system_.render(down.reason) + ")";
          std::vector<uint64_t> waiting;
          for (const auto& [id, i] : active) waiting.push_back(id);
          for (uint64_t id : waiting) finish(id, broken_);
        }
        return;
      }
    for (size_t s = 0; s < stage_actors_.size(); ++s) {
      if (stage_actors_[s].address() != down.source) continue;
      const stage& st = stages_.stages[s];
      const std::string reason = system_.render(down.reason);
      gone_.insert(s);
      log({{"event", "actor_exited"}, {"actor", int(s)}, {"node", st.node}, {"reason", reason}});
      if (broken_.empty())
        broken_ = std::string(to_string(st.kind)) + " stage " + std::to_string(s) + " on node '" + st.node +
                  "' is gone (" + reason + ")";
      std::vector<uint64_t> waiting;
      for (const auto& [id, i] : active) waiting.push_back(id);
      for (uint64_t id : waiting) finish(id, broken_);
      return;
    }
  };

  // Live migration: the requests in flight finish on their version. A plan chosen on the last
  // answer of this run is migrated to before returning, so the next run() starts on it.
  auto migrate_to_pending = [&]() {
    if (!pending_plan) return;
    deployment_plan plan = std::move(*pending_plan);
    pending_plan.reset();
    auto migrated = adaptation_graph_ ? migrate(*adaptation_graph_, plan, adaptation_redeploys_everything_)
                                      : result<migration_report>(status::error("no graph"));
    if (!migrated) {
      stray_errors_.push_back("adaptation: " + migrated.message());
      log({{"event", "migration_failed"}, {"version", plan.version}, {"error", migrated.message()}});
    }
  };
  while (done < inputs.size()) {
    migrate_to_pending();
    while (active.size() < size_t(in_flight) && next < inputs.size()) start(next++);
    if (active.empty()) continue;
    // The oldest waiting request sets the deadline.
    clock_type::time_point oldest = clock_type::time_point::max();
    for (const auto& [id, i] : active) oldest = std::min(oldest, started[i]);
    const auto deadline = oldest + options_.timeout;
    const auto now = clock_type::now();
    if (now >= deadline) {
      std::vector<uint64_t> late;
      for (const auto& [id, i] : active)
        if (started[i] + options_.timeout <= now) late.push_back(id);
      for (uint64_t id : late)
        finish(id, "no answer within " + std::to_string(options_.timeout.count()) + " ms");
      continue;
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) + std::chrono::milliseconds(1);
    self->receive([&](protocol::data_atom, const bytes& payload) { on_data(payload); },
                  [&](protocol::fail_atom, uint64_t id, bool known, int32_t stage, const std::string& what) {
                    on_fail(id, known, stage, what);
                  },
                  [&](protocol::report_atom, uint64_t id, int32_t stage, double ready, double fin, double cpu,
                      uint64_t sent, double messages) { on_report(id, stage, ready, fin, cpu, sent, messages); },
                  [&](caf::down_msg& down) { on_down(down); }, caf::after(wait) >> [] {});
  }
  // Answers already queued (duplicates would be here) are accounted before returning.
  bool more = true;
  while (more)
    self->receive([&](protocol::data_atom, const bytes& payload) { on_data(payload); },
                  [&](protocol::fail_atom, uint64_t id, bool known, int32_t stage, const std::string& what) {
                    on_fail(id, known, stage, what);
                  },
                  [&](protocol::report_atom, uint64_t id, int32_t stage, double ready, double fin, double cpu,
                      uint64_t sent, double messages) { on_report(id, stage, ready, fin, cpu, sent, messages); },
                  [&](caf::down_msg& down) { on_down(down); },
                  caf::after(std::chrono::milliseconds(0)) >> [&] { more = false; });
  migrate_to_pending();
  return outcomes;
}

result<std::string> deployment::send_raw(int stage_id, const std::vector<uint8_t>& payload) {
  if (stage_id < 0 || size_t(stage_id) >= stage_actors_.size())
    return status::error("no stage " + std::to_string(stage_id) + " deployed");
  caf::scoped_actor& self = *self_;
  self->send(stage_actors_[size_t(stage_id)], protocol::data_atom::value, payload);
  std::string reported;
  bool got = false, timed_out = false;
  while (!got && !timed_out)
    self->receive(
        [&](protocol::fail_atom, uint64_t, bool, int32_t, const std::string& what) {
          got = true;
          reported = what;
        },
        [&](protocol::data_atom, const bytes&) { stray_errors_.push_back("unexpected answer to a raw payload"); },
        caf::after(options_.timeout) >> [&] { timed_out = true; });
  if (!got) return status::error("stage " + std::to_string(stage_id) + " reported no error within " +
                                 std::to_string(options_.timeout.count()) + " ms");
  return reported;
}

void deployment::drain_down_messages() {
  caf::scoped_actor& self = *self_;
  bool more = true;
  while (more)
    self->receive(
        [&](caf::down_msg& down) {
          for (const auto& [name, node] : nodes_)
            if (node.address() == down.source && down_nodes_.insert(name).second)
              log({{"event", "node_down"}, {"node", name}, {"reason", system_.render(down.reason)}});
        },
        caf::after(std::chrono::milliseconds(0)) >> [&] { more = false; });
}

void deployment::teardown() {
  for (auto& [version, v] : retiring_) retire(v, "teardown");
  retiring_.clear();
  if (stage_actors_.empty()) return;
  for (size_t i = 0; i < stage_actors_.size(); ++i) {
    (*self_)->demonitor(stage_actors_[i]);
    caf::anon_send_exit(stage_actors_[i], caf::exit_reason::user_shutdown);
    if (gone_.count(i)) continue;
    log({{"event", "actor_exited"},
         {"actor", int(i)},
         {"node", i < stages_.stages.size() ? stages_.stages[i].node : std::string()},
         {"reason", "teardown"}});
  }
  // A round trip to each node after the exits: messages on one connection arrive in order.
  std::set<std::string> used;
  for (const stage& s : stages_.stages) used.insert(s.node);
  caf::scoped_actor& self = *self_;
  drain_down_messages();
  for (const std::string& node : used) {
    auto it = nodes_.find(node);
    if (it == nodes_.end() || down_nodes_.count(node)) continue;
    self->request(it->second, options_.timeout, protocol::info_atom::value)
        .receive([](const std::string&, const std::string&) {}, [](const caf::error&) {});
  }
  stage_actors_.clear();
  gone_.clear();
  input_routes_.clear();
  stages_ = stage_graph();
}

}  // namespace d3
