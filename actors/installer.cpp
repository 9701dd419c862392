// The deployment's installer: one plan version from a plan to running, wired stage actors, in
// four steps (connect the nodes that exchange tensors, ship the layers each node lacks, spawn and
// set up every stage, wire the routes), then the topology log entries of the version. Nothing
// here touches the running version: a failed install exits what it spawned and leaves the
// deployment as it was.
#include <algorithm>
#include <set>

#include "actors/ask.hpp"
#include "actors/deployment.hpp"
#include "actors/shipment.hpp"
#include "schema/bundle.hpp"

namespace d3 {

namespace {

const char* type_name_of(stage_kind kind) {
  switch (kind) {
    case stage_kind::segment: return protocol::segment_type;
    case stage_kind::scatter: return protocol::scatter_type;
    case stage_kind::tile: return protocol::tile_type;
    case stage_kind::gather: return protocol::gather_type;
  }
  return "";
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
  spec.type = s.kind;
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
        for (int in : run.inputs) {
          const std::string& name = g.layers[size_t(in)].name;
          spec.copies.push_back({name, tile_tensor(name, int(t)), tiles[t].computed[size_t(in)]});
        }
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

// Per node, the layers with weights its segment and tile stages run.
std::map<std::string, std::set<int>> weighted_layers_by_node(const graph& g, const stage_graph& sg) {
  std::map<std::string, std::set<int>> needed;
  for (const stage& s : sg.stages)
    if (s.kind == stage_kind::segment || s.kind == stage_kind::tile)
      for (int l : s.layers)
        if (weight_bytes(g.layers[size_t(l)]) > 0) needed[s.node].insert(l);
  return needed;
}

std::string describe_stage(const stage& s) {
  return std::string(to_string(s.kind)) + " stage " + std::to_string(s.id) + " on node '" + s.node + "'";
}

}  // namespace

result<deployment::deployed_version> deployment::install(const graph& g, const deployment_plan& plan,
                                                         deploy_report& report, bool ship_everything) {
  auto sg = build_stage_graph(g, plan);
  if (!sg) return sg.error();
  drain_down_messages();
  for (const stage& s : sg->stages) {
    if (!nodes_.count(s.node))
      return status::error("the plan places " + std::string(to_string(s.kind)) + " stage " + std::to_string(s.id) +
                           " on node '" + s.node + "', which is not connected (not in --nodes?)");
    if (down_nodes_.count(s.node)) {
      std::string cause;
      for (auto f = faults_.rbegin(); f != faults_.rend() && cause.empty(); ++f)
        if (f->node == s.node && f->what == "down") cause = " (" + f->cause + ")";
      return status::error("the plan places " + std::string(to_string(s.kind)) + " stage " + std::to_string(s.id) +
                           " on node '" + s.node + "' at " + endpoints_.at(s.node).address() + ", which is down" + cause);
    }
  }
  report.plan_version = plan.version;
  report.model_hash = model_hash(g);
  report.bytes_per_request = bytes_between_nodes(g, *sg, options_.app_name);
  D3_RETURN_IF_ERROR(connect_peers(report.bytes_per_request));
  D3_RETURN_IF_ERROR(ship_layers(g, *sg, report, ship_everything));

  deployed_version v;
  v.version = plan.version;
  v.plan = plan;
  if (status spawned = spawn_stages(g, *sg, plan.version, report.model_hash, v.actors); !spawned) {
    exit_actors(v.actors);
    return spawned;
  }
  std::map<int, std::vector<int>> sends_to;
  if (status wired = wire_routes(*sg, v, sends_to); !wired) {
    exit_actors(v.actors);
    return wired;
  }
  v.accounting = request_accounting(g, *sg, options_.emulation.app_node);
  v.stages = std::move(sg.value());
  log_version(g, v, plan, sends_to);
  return v;
}

// Direct connections between nodes that exchange tensors (else CAF relays through the app).
status deployment::connect_peers(const std::vector<link_bytes>& links) {
  for (const link_bytes& link : links) {
    if (link.from == options_.app_name || link.to == options_.app_name) continue;
    auto key = std::minmax(link.from, link.to);
    if (peered_.count(key) || peered_.count({key.second, key.first})) continue;
    D3_RETURN_IF_ERROR(connect_pair(key.first, key.second));
  }
  return status::ok();
}

status deployment::connect_pair(const std::string& node, const std::string& peer, bool watch) {
  if (peered_.count({node, peer})) return status::ok();
  // Unwatched (a probe), any connection between the two will do, whichever of them made it.
  auto connected = [&](const auto& pairs) { return pairs.count({node, peer}) || pairs.count({peer, node}); };
  if (!watch && (connected(peered_) || connected(probe_peered_))) return status::ok();
  const node_endpoint& to = endpoints_.at(peer);
  // A peer silence of 0 tells the node to connect without watching.
  const uint32_t silence_ms = watch ? uint32_t(options_.peer_silence.count()) : 0;
  D3_RETURN_IF_ERROR(command(*self_, nodes_.at(node), options_.timeout,
                             "node '" + node + "' connecting to node '" + peer + "' at " + to.address(),
                             protocol::peer_atom::value, peer, to.host, to.port,
                             caf::actor_cast<protocol::app_handle>(*self_), silence_ms));
  (watch ? peered_ : probe_peered_).insert({node, peer});
  return status::ok();
}

status deployment::relay_to_node(const graph& g, const std::string& from, const std::string& to,
                                 const std::vector<int>& layers, double send_ms, deploy_report& report) {
  auto lacking = lacking_layers(g, to, layers, report.model_hash);
  if (!lacking) return lacking.error();
  if (lacking->empty()) return status::ok();
  D3_RETURN_IF_ERROR(connect_pair(from, to));
  size_t sent_bytes = 0, sent_layers = 0;
  status result = status::ok();
  for (const std::vector<int>& chunk : weight_chunks(g, *lacking, options_.shipment_bytes)) {
    std::vector<std::string> names;
    for (int l : chunk) names.push_back(g.layers[size_t(l)].name);
    auto arrival = ask<double>(*self_, nodes_.at(from), options_.timeout,
                               "node '" + from + "': copying " + std::to_string(chunk.size()) + " layers to node '" + to + "'",
                               protocol::relay_atom::value, report.model_hash, names, to, send_ms);
    if (!arrival) {
      result = arrival.error();
      break;
    }
    sent_bytes += weight_bytes_of(g, chunk);
    sent_layers += chunk.size();
  }
  report.weight_bytes_shipped += sent_bytes;
  report.layers_shipped += sent_layers;
  report.weight_bytes_per_node[to] += sent_bytes;
  report.weight_bytes_per_link[link_class(from, to)] += sent_bytes;
  log({{"event", "standby_relayed"}, {"from", from}, {"node", to}, {"layers", sent_layers}, {"bytes", sent_bytes},
       {"model_hash", report.model_hash}});
  return result;
}

result<std::vector<int>> deployment::lacking_layers(const graph& g, const std::string& node, const std::vector<int>& layers,
                                                    uint64_t model_hash) {
  std::vector<std::string> names;
  for (int l : layers) names.push_back(g.layers[size_t(l)].name);
  auto asked = ask<std::vector<std::string>>(*self_, nodes_.at(node), options_.timeout,
                                             "node '" + node + "': cannot ask for its cached layers",
                                             protocol::lacks_atom::value, model_hash, names);
  if (!asked) return asked.error();
  const std::set<int> wanted(layers.begin(), layers.end());
  std::vector<int> lacking;
  for (const std::string& name : *asked) {
    const int l = g.find(name);
    if (l < 0 || !wanted.count(l)) return status::error("node '" + node + "' lacks unknown layer '" + name + "'");
    lacking.push_back(l);
  }
  return lacking;
}

// Every node gets the layers its stages run that it does not have yet (all of them with
// ship_everything), in messages of at most options_.shipment_bytes of weights.
status deployment::ship_layers(const graph& g, const stage_graph& sg, deploy_report& report, bool ship_everything) {
  return ship_to_nodes(g, weighted_layers_by_node(g, sg), report, ship_everything, "layers_shipped");
}

result<std::vector<int>> deployment::layers_to_ship(const graph& g, const std::string& node, const std::set<int>& layers,
                                                    uint64_t model_hash, bool ship_everything) {
  std::vector<int> all(layers.begin(), layers.end());
  return ship_everything ? result<std::vector<int>>(std::move(all)) : lacking_layers(g, node, all, model_hash);
}

result<bool> deployment::ship_in_background(const graph& g, const deployment_plan& plan, bool ship_everything) {
  if (shipping_) return status::error("plan version " + std::to_string(shipping_->plan.version) + " is still shipping");
  auto sg = build_stage_graph(g, plan);
  if (!sg) return sg.error();
  auto migration = std::make_unique<background_migration>();
  deploy_report& report = migration->report;
  report.plan_version = plan.version;
  report.model_hash = model_hash(g);
  std::vector<shipment_job> jobs;
  for (const auto& [node, layer_set] : weighted_layers_by_node(g, *sg)) {
    if (!nodes_.count(node) || down_nodes_.count(node))
      return status::error("the plan needs node '" + node + "', which is " + (nodes_.count(node) ? "down" : "not connected"));
    auto shipped = layers_to_ship(g, node, layer_set, report.model_hash, ship_everything);
    if (!shipped) return shipped.error();
    const std::vector<int>& to_ship = shipped.value();
    if (to_ship.empty()) continue;
    const size_t bytes = weight_bytes_of(g, to_ship);
    report.weight_bytes_shipped += bytes;
    report.layers_shipped += to_ship.size();
    report.weight_bytes_per_node[node] = bytes;
    jobs.push_back({node, nodes_.at(node), weight_chunks(g, to_ship, options_.shipment_bytes)});
  }
  if (jobs.empty()) return false;
  migration->plan = plan;
  migration->wall_start_ms = wall_now_ms();
  log({{"event", "migration_shipping"},
       {"version", plan.version},
       {"weight_bytes", report.weight_bytes_shipped},
       {"layers", report.layers_shipped},
       {"nodes", nlohmann::json(report.weight_bytes_per_node)},
       {"redeploy_everything", ship_everything}});
  migration->shipper = std::make_unique<background_shipper>(
      system_, g, report.model_hash, std::move(jobs), options_.background_part_bytes, upload_ids_(), options_.timeout,
      caf::actor_cast<caf::actor>(*self_), int32_t(plan.version), &shipment_backlog_);
  shipping_ = std::move(migration);
  return true;
}

std::unique_ptr<deployment::background_migration> deployment::end_background_shipment(int version) {
  if (!shipping_ || shipping_->plan.version != version) return nullptr;
  std::unique_ptr<background_migration> done = std::move(shipping_);
  done->report.message_bytes_shipped = done->shipper->join();
  return done;
}

status deployment::ship_to_nodes(const graph& g, const std::map<std::string, std::set<int>>& needed,
                                 deploy_report& report, bool ship_everything, const char* event) {
  for (const auto& [node, layer_set] : needed) {
    auto shipped = layers_to_ship(g, node, layer_set, report.model_hash, ship_everything);
    if (!shipped) return shipped.error();
    const std::vector<int>& to_ship = shipped.value();
    size_t node_bytes = 0;
    for (const std::vector<int>& chunk : weight_chunks(g, to_ship, options_.shipment_bytes)) {
      protocol::bytes payload = encode_layers(g, chunk, report.model_hash, chunk);
      if (payload.empty()) return status::error("cannot encode the layers shipped to node '" + node + "'");
      report.message_bytes_shipped += payload.size();
      D3_RETURN_IF_ERROR(send_shipment(*self_, nodes_.at(node), node, std::move(payload), chunk.size(),
                                       options_.shipment_bytes, upload_ids_(), options_.timeout));
      node_bytes += weight_bytes_of(g, chunk);
    }
    report.weight_bytes_shipped += node_bytes;
    report.layers_shipped += to_ship.size();
    report.layers_cached += layer_set.size() - to_ship.size();
    report.weight_bytes_per_node[node] = node_bytes;
    if (!to_ship.empty()) report.layers_per_node[node] = to_ship;
    log({{"event", event},
         {"node", node},
         {"layers", to_ship.size()},
         {"bytes", node_bytes},
         {"cached", layer_set.size() - to_ship.size()},
         {"model_hash", report.model_hash}});
  }
  return status::ok();
}

// Stages spawned on their nodes (monitored), each set up (operators created there) before the
// next. `actors` holds every stage spawned so far, also on failure (the caller exits them).
status deployment::spawn_stages(const graph& g, const stage_graph& sg, int version, uint64_t hash,
                                std::vector<protocol::stage_handle>& actors) {
  caf::scoped_actor& self = *self_;
  const auto app = caf::actor_cast<protocol::app_handle>(self);
  for (const stage& s : sg.stages) {
    const std::string what = describe_stage(s);
    protocol::bytes spec = encode_stage_spec(spec_of(g, sg, s, hash, version));
    if (spec.empty()) return status::error(what + ": cannot encode its spec");
    auto spawned = system_.middleman().remote_spawn<protocol::stage_handle>(
        nodes_.at(s.node).node(), type_name_of(s.kind), caf::make_message(std::move(spec)), options_.timeout);
    if (!spawned) return status::error("cannot spawn " + what + ": " + system_.render(spawned.error()));
    actors.push_back(*spawned);
    self->monitor(*spawned);
    D3_RETURN_IF_ERROR(command(self, *spawned, options_.timeout, what, protocol::setup_atom::value, app));
  }
  return status::ok();
}

// Every route of the stage graph: graph inputs become v.inputs (the app sends them), stage
// outputs are routed stage to stage or to the app. Fills sends_to (stage -> stages it feeds).
status deployment::wire_routes(const stage_graph& sg, deployed_version& v, std::map<int, std::vector<int>>& sends_to) {
  caf::scoped_actor& self = *self_;
  const auto app = caf::actor_cast<protocol::data_handle>(self);
  for (const route& r : sg.routes) {
    if (r.from_stage < 0) {
      for (int to : r.to_stages)
        v.inputs.add(r.tensor, caf::actor_cast<protocol::data_handle>(v.actors[size_t(to)]), sg.stages[size_t(to)].node,
                     route_codec(sg, r, to));
      continue;
    }
    const std::string what = "routing '" + r.tensor + "' of stage " + std::to_string(r.from_stage);
    const protocol::stage_handle& from = v.actors[size_t(r.from_stage)];
    for (int to : r.to_stages) {
      const std::string& node = sg.stages[size_t(to)].node;
      D3_RETURN_IF_ERROR(command(self, from, options_.timeout, what, protocol::route_atom::value, r.tensor,
                                 caf::actor_cast<protocol::data_handle>(v.actors[size_t(to)]), node,
                                 uint8_t(route_codec(sg, r, to))));
      sends_to[r.from_stage].push_back(to);
    }
    if (r.to_app)
      D3_RETURN_IF_ERROR(command(self, from, options_.timeout, what, protocol::route_atom::value, r.tensor, app,
                                 options_.emulation.app_node,
                                 uint8_t(codec_for(sg.codecs, r.tensor, options_.emulation.app_node))));
  }
  return status::ok();
}

void deployment::log_version(const graph& g, const deployed_version& v, const deployment_plan& plan,
                             std::map<int, std::vector<int>>& sends_to) {
  for (const stage& s : v.stages.stages) {
    topology_event e = {{"event", "actor_spawned"},
                        {"actor", s.id},
                        {"kind", to_string(s.kind)},
                        {"node", s.node},
                        {"plan_version", plan.version},
                        {"caf_actor", v.actors[size_t(s.id)].id()}};
    if (!s.layers.empty())
      e["layers"] = {g.layers[size_t(s.layers.front())].name, g.layers[size_t(s.layers.back())].name};
    if (s.kind == stage_kind::tile) {
      e["tile"] = s.tile;
      e["region"] = v.stages.tiles[size_t(s.run)][size_t(s.tile)].output.to_string();
    }
    std::vector<int>& to = sends_to[s.id];
    std::sort(to.begin(), to.end());
    to.erase(std::unique(to.begin(), to.end()), to.end());
    e["sends_to"] = to;
    log(std::move(e));
  }
  log({{"event", "plan_deployed"}, {"version", plan.version}, {"strategy", plan.strategy}, {"model", g.name}});
}

void deployment::exit_actors(const std::vector<protocol::stage_handle>& actors) {
  for (const protocol::stage_handle& a : actors) {
    (*self_)->demonitor(a.address());
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
}

}  // namespace d3
