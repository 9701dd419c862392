#include "actors/node.hpp"

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "actors/emulation.hpp"
#include "actors/layer_cache.hpp"
#include "actors/message_costs.hpp"
#include "actors/protocol.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "kernels/tile_executor.hpp"
#include "kernels/tiling.hpp"
#include "schema/bundle.hpp"

namespace d3 {

namespace protocol {

void configure_process(caf::actor_system_config& cfg) {
  cfg.load<caf::io::middleman>();
  cfg.add_message_type<bytes>("d3_bytes");
  // Workers that wait on a condition variable: the default work-stealing workers fall back to
  // sleeping up to 10 ms between polls when idle, which a request pays at every hop (measured:
  // resnet18 over 3 nodes 57.7 ms with stealing vs 45.6 ms with sharing on the nodes).
  // A config file or the CLI still overrides it (--scheduler.policy=stealing).
  cfg.set("scheduler.policy", caf::atom("sharing"));
}

}  // namespace protocol

namespace {

using protocol::bytes;

// ------------------------------------------------------------------ live stages

std::mutex registry_mutex;
std::map<caf::actor_id, caf::actor> registry;
std::atomic<bool> print_events{false};

void print_event(const std::string& line) {
  if (print_events.load()) {
    static std::mutex out_mutex;
    std::lock_guard<std::mutex> lock(out_mutex);
    std::cout << line << std::endl;
  }
}

// ------------------------------------------------------------------ emulation

// The emulated testbed as this node process applies it (emulation, actors/emulation.hpp): one
// node clock and one link clock per destination node, shared by every stage of the process.
enum class clock_mode { wall, virtual_time };

class node_emulation {
 public:
  void set_identity(const std::string& name, double speed) {
    std::lock_guard<std::mutex> lock(mutex_);
    name_ = name;
    speed_ = speed > 0 ? speed : 1.0;
    compute_ = node_clock(speed_);
  }
  // Applies an (emul, JSON) message; resets every clock unless "keep_clocks" is set.
  status configure(const std::string& text) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
      return status::error(std::string("emulation settings are not JSON: ") + e.what());
    }
    clock_mode mode;
    std::map<std::string, link_clock> links;
    try {
      const std::string clock = j.value("clock", std::string("wall"));
      if (clock == "wall") mode = clock_mode::wall;
      else if (clock == "virtual") mode = clock_mode::virtual_time;
      else return status::error("unknown clock '" + clock + "' (wall or virtual)");
      if (j.contains("links"))
        for (const auto& [dest, p] : j.at("links").items()) {
          link_profile profile{p.value("mbit_per_s", 0.0), p.value("latency_ms", 0.0)};
          if (profile.bandwidth_mbit_per_s < 0 || profile.latency_ms < 0)
            return status::error("link to '" + dest + "': negative bandwidth or latency");
          if (profile.bandwidth_mbit_per_s > 0 || profile.latency_ms > 0) links.emplace(dest, link_clock(profile));
        }
    } catch (const std::exception& e) {
      return status::error(std::string("bad emulation settings: ") + e.what());
    }
    // "keep_clocks": a change while requests flow (a link trace step, a node slowing down): new
    // link profiles and speed, the clock mode and the virtual time line untouched.
    const bool keep_clocks = j.value("keep_clocks", false);
    const double speed = j.value("speed", 0.0);
    std::lock_guard<std::mutex> lock(mutex_);
    if (speed > 0) speed_ = speed;
    if (keep_clocks) {
      for (auto& [dest, clock] : links) links_[dest] = clock;
      compute_ = node_clock(speed_);
      return status::ok();
    }
    mode_ = mode;
    links_ = std::move(links);
    compute_ = node_clock(speed_);
    epoch_ = std::chrono::steady_clock::now();
    return status::ok();
  }
  clock_mode mode() {
    std::lock_guard<std::mutex> lock(mutex_);
    return mode_;
  }
  // Wall clock: ms since the last configuration.
  double now_ms() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - epoch_).count();
  }
  double compute(double ready_ms, double cpu_ms) {
    std::lock_guard<std::mutex> lock(mutex_);
    return compute_.compute(ready_ms, cpu_ms);
  }
  // Arrival at `dest_node` of `bytes` sent at `send_ms`; same node or unshaped: `send_ms`.
  double send(const std::string& dest_node, double send_ms, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (dest_node.empty() || dest_node == name_) return send_ms;
    auto it = links_.find(dest_node);
    if (it == links_.end()) return send_ms;
    return it->second.send(send_ms, bytes);
  }
  double speed() {
    std::lock_guard<std::mutex> lock(mutex_);
    return speed_;
  }
  bool is_remote(const std::string& dest_node) {
    std::lock_guard<std::mutex> lock(mutex_);
    return !dest_node.empty() && dest_node != name_;
  }
  std::string describe() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out = std::string(mode_ == clock_mode::wall ? "wall" : "virtual") + " clock, speed " +
                      std::to_string(speed_) + ", links:";
    for (const auto& [dest, l] : links_)
      out += " " + dest + " " + std::to_string(l.profile().bandwidth_mbit_per_s) + " Mbit/s " +
             std::to_string(l.profile().latency_ms) + " ms;";
    return out;
  }

 private:
  std::mutex mutex_;
  std::string name_;
  double speed_ = 1.0;
  clock_mode mode_ = clock_mode::wall;
  node_clock compute_{1.0};
  std::map<std::string, link_clock> links_;
  std::chrono::steady_clock::time_point epoch_ = std::chrono::steady_clock::now();
};

node_emulation& emulation() {
  static node_emulation e;
  return e;
}

// ------------------------------------------------------------------ profile probes

// Per-layer compute times of a fragment on this node, as JSON {"layers": {name: ms, ...}} or
// {"error": text}: the fragment arrives without weights (fill_missing_weights makes stand-ins:
// time does not depend on weight values) and runs `repeats` timed times, spread out (below); each
// layer's time is its median. Under the virtual clock a layer costs what the node clock charges:
// its share of the run's thread CPU time divided by the node's speed; under the wall clock, its
// wall time. Results are cached per model and layer set: a node probes a model once.
constexpr int probe_pause_ms = 30;  // between a probe's timed runs

std::string profile_fragment(const bytes& payload, int repeats) {
  static std::mutex cache_mutex;
  static std::map<std::string, std::string> cache;
  auto failed = [](const std::string& why) { return nlohmann::json{{"error", "profile probe: " + why}}.dump(); };
  auto shipment = decode_shipment(payload.data(), payload.size());
  if (!shipment) return failed(shipment.message());
  graph& f = shipment->fragment;
  std::string key = std::to_string(shipment->model_hash) + ":" + std::to_string(repeats);
  for (const layer& l : f.layers) key += ":" + l.name;
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto hit = cache.find(key);
    if (hit != cache.end()) return hit->second;
  }
  if (status s = fill_missing_weights(f); !s) return failed(s.message());
  auto exec = executor::create(f);
  if (!exec) return failed(exec.message());
  std::vector<tensor> inputs;
  for (int i : f.input_layers()) inputs.push_back(random_tensor(f.layers[size_t(i)].output_shape, 7));
  std::vector<const tensor*> pointers;
  for (const tensor& t : inputs) pointers.push_back(&t);
  const bool virtual_clock = emulation().mode() == clock_mode::virtual_time;
  const double speed = emulation().speed();
  std::vector<std::vector<double>> samples(f.layers.size());
  // The timed runs are spread out: each after a pause and an untimed run of its own, so that a
  // slow phase of this shared machine (other work, a neighbour) cannot set the whole profile,
  // and the median stands for the machine as the stages will find it (measured: with 3 runs back
  // to back, one probe of mobilenet_v2 came out 15% slower than every stage run later).
  for (int r = 0; r < 2 * std::max(1, repeats); ++r) {
    const bool warm_up = r % 2 == 0;
    if (warm_up && r > 0) std::this_thread::sleep_for(std::chrono::milliseconds(probe_pause_ms));
    std::vector<layer_timing> timings;
    machine_cpu_lock alone(virtual_clock);
    const double cpu_start = thread_cpu_ms();
    auto out = (*exec)->run(pointers, &timings);
    const double cpu_ms = thread_cpu_ms() - cpu_start;
    if (!out) return failed(out.message());
    if (warm_up) continue;
    double wall_ms = 0;
    for (const layer_timing& t : timings) wall_ms += t.milliseconds;
    // Virtual clock: the run's CPU time split over layers by their wall times, at this speed.
    const double scale = virtual_clock && wall_ms > 0 ? cpu_ms / wall_ms / speed : 1.0;
    for (const layer_timing& t : timings) samples[size_t(t.layer)].push_back(t.milliseconds * scale);
  }
  nlohmann::json layers = nlohmann::json::object();
  for (size_t l = 0; l < f.layers.size(); ++l) {
    std::vector<double>& v = samples[l];
    if (v.empty() || f.layers[l].kind == layer_kind::input) continue;
    std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
    layers[f.layers[l].name] = v[v.size() / 2];
  }
  // What moving tensors costs this node, under the same clock as its layers.
  message_costs messages;
  {
    machine_cpu_lock alone(virtual_clock);
    auto measured = measure_message_costs(std::max(3, repeats));
    if (!measured) return failed(measured.message());
    messages = virtual_clock ? at_speed(measured.value(), speed) : measured.value();
  }
  const nlohmann::json costs = {{"encode_ms", messages.encode_ms},     {"encode_ms_per_mb", messages.encode_ms_per_mb},
                                {"decode_ms", messages.decode_ms},     {"decode_ms_per_mb", messages.decode_ms_per_mb},
                                {"copy_ms_per_mb", messages.copy_ms_per_mb}};
  std::string result = nlohmann::json{{"layers", layers}, {"messages", costs}, {"clock", virtual_clock ? "virtual" : "wall"},
                                      {"speed", speed}}.dump();
  std::lock_guard<std::mutex> lock(cache_mutex);
  cache[key] = result;
  return result;
}

// ------------------------------------------------------------------ stages

constexpr size_t max_pending_requests = 1024;  // requests waiting for inputs; the oldest are dropped

struct stage_state {
  stage_spec spec;
  std::string spec_error;  // the spec did not decode
  bool ready = false;
  caf::actor app;
  std::map<std::string, std::vector<caf::actor>> routes;
  std::map<caf::actor, std::string> dest_nodes;  // destination actor -> its node (emulated links)
  std::map<uint64_t, double> pending_ready;       // virtual clock: latest input arrival per request
  std::map<uint64_t, double> pending_decode_cpu;  // virtual clock: thread CPU ms decoding its bundles
  std::set<std::string> inputs;
  graph fragment;
  std::unique_ptr<executor> exec;
  std::unique_ptr<tile_executor> tiles;
  std::vector<std::string> tile_inputs;  // spec input names in the tile executor's input order
  std::map<uint64_t, std::map<std::string, tensor>> pending;
  uint64_t served = 0;

  static inline const char* name = "d3_stage";
};

using stage_actor_t = caf::stateful_actor<stage_state>;

std::string describe(const stage_state& st) {
  return std::string(to_string(st.spec.type)) + " stage " + std::to_string(st.spec.stage_id);
}

std::string tile_suffix(int tile) { return "@tile" + std::to_string(tile); }

status check_bounds(const std::vector<int>& bounds, int size, const char* axis) {
  bool ok = bounds.size() >= 2 && bounds.front() == 0 && bounds.back() == size;
  for (size_t i = 1; ok && i < bounds.size(); ++i) ok = bounds[i] > bounds[i - 1];
  if (!ok)
    return status::error(std::string("grid ") + axis + " bounds do not cut [0, " + std::to_string(size) +
                         ") into increasing parts");
  return status::ok();
}

// Fills weights from the node's cache, infers shapes, creates the executors.
status build(stage_state& st) {
  stage_spec& spec = st.spec;
  st.inputs = std::set<std::string>(spec.inputs.begin(), spec.inputs.end());
  if (st.inputs.size() != spec.inputs.size() || spec.inputs.empty()) return status::error("inputs are empty or repeated");
  if (spec.outputs.empty()) return status::error("no outputs");
  const std::set<std::string> outputs(spec.outputs.begin(), spec.outputs.end());

  if (spec.type == stage_type::segment || spec.type == stage_type::tile) {
    st.fragment = std::move(spec.fragment.fragment);
    graph& f = st.fragment;
    int computed = 0;
    for (size_t i = 0; i < f.layers.size(); ++i) {
      layer& l = f.layers[i];
      if (l.kind == layer_kind::input) continue;
      ++computed;
      if (spec.fragment.weights_included[i]) continue;
      auto cached = layer_cache::process().find(spec.model_hash, l.name);
      if (cached) {
        if (cached->kind != l.kind)
          return status::error("cached layer '" + l.name + "' is a " + to_string(cached->kind) + ", the spec says " +
                               to_string(l.kind));
        l.weights = cached->weights;
        l.bias = cached->bias;
      } else if (l.kind == layer_kind::convolution || l.kind == layer_kind::fully_connected) {
        return status::error("layer '" + l.name + "' of model " + std::to_string(spec.model_hash) +
                             " is not in this node's layer cache (not shipped)");
      }
    }
    if (computed == 0) return status::error("the fragment has no computed layers");
    D3_RETURN_IF_ERROR(infer_shapes(f));

    if (spec.type == stage_type::segment) {
      auto e = executor::create(f);
      if (!e) return e.error();
      st.exec = std::move(e.value());
      const auto& names = st.exec->output_names();
      if (std::set<std::string>(names.begin(), names.end()) != outputs)
        return status::error("the fragment's outputs differ from the spec's outputs");
      for (const std::string& in : st.exec->input_names())
        if (!st.inputs.count(in)) return status::error("the fragment reads '" + in + "', which is not a stage input");
      // Warm-up: one run on zeros at setup, so the first request after a deployment or a
      // migration does not pay first-touch page faults of the arena and cold code paths (measured:
      // mobilenet_v2's first request on a fresh stage ~25% slower than the next ones).
      std::vector<tensor> zeros;
      for (const tensor_shape& shape : st.exec->input_shapes()) zeros.emplace_back(shape);
      std::vector<const tensor*> pointers;
      for (const tensor& t : zeros) pointers.push_back(&t);
      if (auto warm = st.exec->run(pointers); !warm) return status::error("warm-up run: " + warm.message());
      return status::ok();
    }

    // Tile: the run is every computed layer of the fragment, in order.
    int first = -1, last = -1;
    for (size_t i = 0; i < f.layers.size(); ++i)
      if (f.layers[i].kind != layer_kind::input) {
        if (first < 0) first = int(i);
        last = int(i);
      }
    auto run = make_tiled_run(f, first, last);
    if (!run) return run.error();
    const tensor_shape& out = f.layers[size_t(run->output)].output_shape;
    D3_RETURN_IF_ERROR(check_bounds(spec.grid_row_bounds, out.h, "row"));
    D3_RETURN_IF_ERROR(check_bounds(spec.grid_col_bounds, out.w, "column"));
    tile_grid grid{spec.grid_row_bounds, spec.grid_col_bounds};
    if (spec.tile_index < 0 || spec.tile_index >= grid.tiles())
      return status::error("tile index " + std::to_string(spec.tile_index) + " outside the grid's " +
                           std::to_string(grid.tiles()) + " tiles");
    auto geometry = plan_tiles(f, *run, grid);
    if (!geometry) return geometry.error();
    const int k = spec.tile_index;
    const tile_geometry& geo = geometry.value()[size_t(k)];
    if (geo.output != spec.tile_output_region)
      return status::error("tile output region " + geo.output.to_string() + " differs from the app's " +
                           spec.tile_output_region.to_string());
    if (spec.tile_input_regions.size() != spec.inputs.size())
      return status::error("one input region per input expected");
    const std::string suffix = tile_suffix(k);
    for (size_t i = 0; i < spec.inputs.size(); ++i) {
      const std::string& in = spec.inputs[i];
      if (in.size() <= suffix.size() || in.compare(in.size() - suffix.size(), suffix.size(), suffix) != 0)
        return status::error("input '" + in + "' is not named '<tensor>" + suffix + "'");
      const int idx = f.find(in.substr(0, in.size() - suffix.size()));
      if (idx < 0 || f.layers[size_t(idx)].kind != layer_kind::input)
        return status::error("input '" + in + "' is not an input of the run");
      if (geo.computed[size_t(idx)] != spec.tile_input_regions[i])
        return status::error("input '" + in + "' region " + geo.computed[size_t(idx)].to_string() +
                             " differs from the app's " + spec.tile_input_regions[i].to_string());
    }
    if (spec.outputs.size() != 1 || spec.outputs[0] != f.layers[size_t(run->output)].name + suffix)
      return status::error("the output must be '" + f.layers[size_t(run->output)].name + suffix + "'");
    auto te = tile_executor::create(f, *run, std::move(geometry.value()), {k});
    if (!te) return te.error();
    st.tiles = std::move(te.value());
    st.tile_inputs.clear();
    for (const std::string& name : st.tiles->input_names()) {
      if (!st.inputs.count(name + suffix)) return status::error("the run reads '" + name + "', which is no stage input");
      st.tile_inputs.push_back(name + suffix);
    }
    if (st.tile_inputs.size() != st.inputs.size()) return status::error("the run does not read every stage input");
    // Warm-up on zeros, as for segments above.
    std::vector<tensor> zeros;
    for (size_t i = 0; i < run->inputs.size(); ++i) {
      const tensor_shape& whole = f.layers[size_t(run->inputs[i])].output_shape;
      const region& r = st.tiles->geometry(k).computed[size_t(run->inputs[i])];
      zeros.emplace_back(tensor_shape{whole.n, r.rows(), r.cols(), whole.c});
    }
    std::vector<const tensor*> pointers;
    for (const tensor& t : zeros) pointers.push_back(&t);
    if (auto warm = st.tiles->run_tile(k, pointers); !warm) return status::error("warm-up run: " + warm.message());
    return status::ok();
  }

  if (spec.copies.empty()) return status::error("no region copies");
  std::set<std::string> parts;
  for (const region_copy& c : spec.copies) {
    if (!parts.insert(c.part).second) return status::error("part '" + c.part + "' appears twice");
    if (spec.type == stage_type::scatter && !st.inputs.count(c.whole))
      return status::error("part '" + c.part + "' is cut from '" + c.whole + "', which is no stage input");
    if (spec.type == stage_type::gather && c.whole != spec.outputs[0])
      return status::error("part '" + c.part + "' goes into '" + c.whole + "', which is not the output");
  }
  if (spec.type == stage_type::scatter && parts != outputs)
    return status::error("the parts differ from the stage outputs");
  if (spec.type == stage_type::gather) {
    if (spec.outputs.size() != 1) return status::error("a gather has one output");
    if (parts != st.inputs) return status::error("the parts differ from the stage inputs");
    for (const region_copy& c : spec.copies)
      if (c.area.row_end > spec.whole_shape.h || c.area.col_end > spec.whole_shape.w)
        return status::error("part '" + c.part + "' region " + c.area.to_string() + " lies outside the output " +
                             spec.whole_shape.to_string());
  }
  return status::ok();
}

result<std::map<std::string, tensor>> compute(stage_state& st, std::map<std::string, tensor>& inputs) {
  const stage_spec& spec = st.spec;
  switch (spec.type) {
    case stage_type::segment:
      return st.exec->run(inputs);
    case stage_type::tile: {
      std::vector<const tensor*> in;
      for (const std::string& name : st.tile_inputs) in.push_back(&inputs.at(name));
      auto out = st.tiles->run_tile(spec.tile_index, in);
      if (!out) return out.error();
      std::map<std::string, tensor> result;
      result.emplace(spec.outputs[0], std::move(out.value()));
      return result;
    }
    case stage_type::scatter: {
      std::map<std::string, tensor> result;
      for (const region_copy& c : spec.copies) {
        const tensor& whole = inputs.at(c.whole);
        const tensor_shape& s = whole.shape();
        if (c.area.row_end > s.h || c.area.col_end > s.w)
          return status::error("input '" + c.whole + "' " + s.to_string() + " does not contain the region " +
                               c.area.to_string() + " of part '" + c.part + "'");
        result.emplace(c.part, extract_region(whole, c.area));
      }
      return result;
    }
    case stage_type::gather: {
      const tensor_shape& w = spec.whole_shape;
      tensor whole(w);
      for (const region_copy& c : spec.copies) {
        const tensor& part = inputs.at(c.part);
        const tensor_shape want{w.n, c.area.rows(), c.area.cols(), w.c};
        if (part.shape() != want)
          return status::error("part '" + c.part + "' is " + part.shape().to_string() + ", expected " + want.to_string());
        insert_region(whole, c.area, part);
      }
      std::map<std::string, tensor> result;
      result.emplace(spec.outputs[0], std::move(whole));
      return result;
    }
  }
  return status::error("unknown stage kind");
}

void report(stage_actor_t* self, uint64_t id, bool id_known, const std::string& what) {
  stage_state& st = self->state;
  const std::string message = describe(st) + ": " + what;
  print_event("error: " + message);
  if (st.app) self->send(st.app, protocol::fail_atom::value, id, id_known, int32_t(st.spec.stage_id), message);
}

// Forgets a request's partial inputs (and their virtual ready time).
void drop_pending(stage_state& st, uint64_t id) {
  st.pending.erase(id);
  st.pending_ready.erase(id);
  st.pending_decode_cpu.erase(id);
}

void on_data(stage_actor_t* self, const bytes& payload) {
  stage_state& st = self->state;
  node_emulation& emu = emulation();
  const clock_mode mode = emu.mode();
  // The virtual clock charges decoding too (thread CPU time, alone on the machine like compute).
  std::optional<machine_cpu_lock> alone;
  alone.emplace(mode == clock_mode::virtual_time);
  const double decode_start = thread_cpu_ms();
  auto bundle = decode_bundle(payload.data(), payload.size());
  const double decode_cpu_ms = thread_cpu_ms() - decode_start;
  alone.reset();
  if (!bundle) {
    auto id = peek_request_id(payload.data(), payload.size());
    if (id) drop_pending(st, *id);
    report(self, id.value_or(0), id.has_value(), bundle.message());
    return;
  }
  const uint64_t id = bundle->request_id;
  if (!st.ready) return report(self, id, true, "not set up (no setup message yet, or setup failed)");
  if (bundle->plan_version != st.spec.plan_version)
    return report(self, id, true, "request under plan version " + std::to_string(bundle->plan_version) +
                                      ", this stage runs version " + std::to_string(st.spec.plan_version));
  auto& pending = st.pending[id];
  double& ready_ms = st.pending_ready[id];
  ready_ms = std::max(ready_ms, bundle->virtual_ms);
  st.pending_decode_cpu[id] += decode_cpu_ms;
  for (named_tensor& t : bundle->tensors) {
    if (!st.inputs.count(t.name)) {
      drop_pending(st, id);
      return report(self, id, true, "unexpected tensor '" + t.name + "'");
    }
    if (!pending.emplace(t.name, std::move(t.value)).second) {
      drop_pending(st, id);
      return report(self, id, true, "tensor '" + t.name + "' received twice");
    }
  }
  if (pending.size() < st.inputs.size()) {
    if (st.pending.size() > max_pending_requests) drop_pending(st, st.pending.begin()->first);
    return;
  }
  std::map<std::string, tensor> inputs = std::move(pending);
  const double ready = ready_ms;
  const double decode_ms = st.pending_decode_cpu[id];
  drop_pending(st, id);
  // Emulation: thread CPU time around the kernels (single-threaded executors, so it covers all
  // compute) and around encoding the output bundles; with the inputs' decoding, the virtual clock
  // advances the node by it divided by the node's speed, and the bundles leave when it is done.
  alone.emplace(mode == clock_mode::virtual_time);
  const double cpu_start = thread_cpu_ms();
  auto outputs = compute(st, inputs);
  const double cpu_ms = thread_cpu_ms() - cpu_start;
  if (!outputs) return report(self, id, true, outputs.message());
  ++st.served;

  // One bundle per destination, holding every tensor it reads from this stage.
  std::map<caf::actor, std::vector<tensor_ref>> per_destination;
  for (auto& [name, value] : outputs.value()) {
    auto route = st.routes.find(name);
    if (route == st.routes.end()) continue;
    for (const caf::actor& dest : route->second) per_destination[dest].push_back({name, &value});
  }
  struct outgoing {
    caf::actor dest;
    bytes message;
    size_t payload = 0;
    std::string node;
  };
  std::vector<outgoing> sends;
  const double encode_start = thread_cpu_ms();
  for (auto& [dest, refs] : per_destination) {
    outgoing o{dest, encode_bundle(id, st.spec.plan_version, refs), 0, {}};
    if (o.message.empty()) return report(self, id, true, "cannot encode the output bundle (too large)");
    for (const tensor_ref& r : refs) o.payload += r.value->bytes();
    auto node = st.dest_nodes.find(dest);
    if (node != st.dest_nodes.end()) o.node = node->second;
    sends.push_back(std::move(o));
  }
  const double encode_ms = thread_cpu_ms() - encode_start;
  alone.reset();
  const double finish = mode == clock_mode::virtual_time ? emu.compute(ready, decode_ms + cpu_ms + encode_ms) : emu.now_ms();
  const double messages_ms = (decode_ms + encode_ms) / emu.speed();

  // Per destination: the link from this node to the destination's node (tensor payload bytes,
  // as bytes_between_nodes counts them); same-node sends are not shaped.
  uint64_t bytes_sent = 0;
  std::vector<double> arrivals;
  for (outgoing& o : sends) {
    arrivals.push_back(emu.send(o.node, finish, o.payload));
    if (emu.is_remote(o.node)) bytes_sent += o.payload;
    if (mode == clock_mode::virtual_time) {
      if (auto stamped = set_bundle_virtual_ms(o.message, arrivals.back()); !stamped)
        return report(self, id, true, stamped.message());
    }
  }
  if (mode == clock_mode::virtual_time && st.app)
    self->send(st.app, protocol::report_atom::value, id, int32_t(st.spec.stage_id), ready, finish, cpu_ms, bytes_sent,
               messages_ms);
  for (size_t i = 0; i < sends.size(); ++i) {
    const double delay_ms = arrivals[i] - finish;
    if (mode == clock_mode::wall && delay_ms > 0.001)
      self->delayed_send(sends[i].dest, std::chrono::microseconds(int64_t(delay_ms * 1000.0)), protocol::data_atom::value,
                         std::move(sends[i].message));
    else
      self->send(sends[i].dest, protocol::data_atom::value, std::move(sends[i].message));
  }
}

caf::behavior stage_actor(stage_actor_t* self, stage_type expected, const bytes& spec_bytes) {
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    registry[self->id()] = caf::actor_cast<caf::actor>(self);
  }
  self->attach_functor([id = self->id()] {
    std::lock_guard<std::mutex> lock(registry_mutex);
    registry.erase(id);
  });
  stage_state& st = self->state;
  auto spec = decode_stage_spec(spec_bytes.data(), spec_bytes.size());
  if (!spec) {
    st.spec_error = spec.message();
  } else if (spec->type != expected) {
    st.spec_error = std::string("spawned as a ") + to_string(expected) + " stage with a " + to_string(spec->type) + " spec";
  } else {
    st.spec = std::move(spec.value());
  }
  print_event("stage " + std::to_string(st.spec.stage_id) + " (" + to_string(expected) + ") spawned as actor " +
              std::to_string(self->id()) + (st.spec_error.empty() ? "" : ": " + st.spec_error));
  return {
      [=](protocol::setup_atom, const caf::actor& app) -> std::string {
        stage_state& st = self->state;
        st.app = app;
        if (!st.spec_error.empty()) return st.spec_error;
        if (st.ready) return "";
        status built = status::error("unreachable");
        try {
          built = build(st);
        } catch (const std::exception& e) {
          built = status::error(std::string("cannot build: ") + e.what());
        }
        if (!built) {
          print_event("error: " + describe(st) + ": " + built.message());
          return describe(st) + ": " + built.message();
        }
        st.ready = true;
        return "";
      },
      [=](protocol::route_atom, const std::string& tensor_name, const caf::actor& dest,
          const std::string& dest_node) -> std::string {
        stage_state& st = self->state;
        if (std::find(st.spec.outputs.begin(), st.spec.outputs.end(), tensor_name) == st.spec.outputs.end())
          return describe(st) + ": no output named '" + tensor_name + "'";
        st.dest_nodes[dest] = dest_node;
        auto& dests = st.routes[tensor_name];
        if (std::find(dests.begin(), dests.end(), dest) == dests.end()) dests.push_back(dest);
        return "";
      },
      [=](protocol::data_atom, const bytes& payload) {
        try {
          on_data(self, payload);
        } catch (const std::exception& e) {
          report(self, 0, false, std::string("internal error: ") + e.what());
        }
      },
  };
}

caf::behavior segment_actor(stage_actor_t* self, bytes spec) { return stage_actor(self, stage_type::segment, spec); }
caf::behavior scatter_actor(stage_actor_t* self, bytes spec) { return stage_actor(self, stage_type::scatter, spec); }
caf::behavior tile_actor(stage_actor_t* self, bytes spec) { return stage_actor(self, stage_type::tile, spec); }
caf::behavior gather_actor(stage_actor_t* self, bytes spec) { return stage_actor(self, stage_type::gather, spec); }

}  // namespace

namespace protocol {

void add_stage_actor_types(caf::actor_system_config& cfg) {
  cfg.add_actor_type(segment_type, segment_actor);
  cfg.add_actor_type(scatter_type, scatter_actor);
  cfg.add_actor_type(tile_type, tile_actor);
  cfg.add_actor_type(gather_type, gather_actor);
}

}  // namespace protocol

size_t live_stage_count() {
  std::lock_guard<std::mutex> lock(registry_mutex);
  return registry.size();
}

void stop_all_stages() {
  std::vector<caf::actor> stages;
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    for (auto& [id, a] : registry) stages.push_back(a);
  }
  for (const caf::actor& a : stages) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

void set_stage_event_printing(bool on) { print_events = on; }

// ------------------------------------------------------------------ the node actor

caf::behavior node_actor(caf::event_based_actor* self, node_identity identity) {
  emulation().set_identity(identity.name, identity.speed);
  return {
      [=](protocol::emul_atom, const std::string& settings) -> std::string {
        auto applied = emulation().configure(settings);
        if (!applied) return "node " + identity.name + ": " + applied.message();
        print_event("emulation (not real links or devices): " + emulation().describe());
        return "";
      },
      [=](protocol::info_atom) { return std::make_tuple(identity.name, identity.role); },
      // A light probe of this node's link to `dest_name`: a real message of `size` bytes crosses
      // to that node; its time on the link is what the emulated link clock gives (virtual clock:
      // from `send_ms`; wall clock: from now), the same arithmetic a stage's send pays.
      [=](protocol::probe_atom, const caf::actor& dest, const std::string& dest_name, uint64_t size,
          double send_ms) -> caf::result<std::string, double> {
        if (!dest || size > (uint64_t(1) << 26))
          return caf::result<std::string, double>("node " + identity.name + ": bad probe of '" + dest_name + "'", -1.0);
        const double start = emulation().mode() == clock_mode::virtual_time ? send_ms : emulation().now_ms();
        const double arrival = emulation().send(dest_name, start, size_t(size));
        auto rp = self->make_response_promise<std::string, double>();
        self->request(dest, std::chrono::seconds(10), protocol::echo_atom::value, bytes(size_t(size)), arrival)
            .then([=](double echoed) mutable { rp.deliver(std::string(), echoed - start); },
                  [=](caf::error& e) mutable {
                    rp.deliver("node " + identity.name + ": probe of node '" + dest_name +
                                   "' got no echo: " + self->home_system().render(e),
                               -1.0);
                  });
        return rp;
      },
      [=](protocol::echo_atom, const bytes&, double arrival) { return arrival; },
      [=](protocol::profile_atom, const bytes& fragment, int32_t repeats) {
        std::string result = profile_fragment(fragment, int(repeats));
        print_event("profile probe answered (" + std::to_string(result.size()) + " bytes of JSON)");
        return result;
      },
      [=](protocol::lacks_atom, uint64_t model_hash, const std::vector<std::string>& names) {
        return layer_cache::process().lacking(model_hash, names);
      },
      [=](protocol::ship_atom, const bytes& payload) -> std::string {
        auto shipment = decode_shipment(payload.data(), payload.size());
        if (!shipment) return "node " + identity.name + ": " + shipment.message();
        auto stored = layer_cache::process().store(std::move(shipment.value()));
        if (!stored) return "node " + identity.name + ": " + stored.message();
        print_event("cached " + std::to_string(stored.value()) + " layers (" +
                    std::to_string(layer_cache::process().layer_count()) + " in the cache, " +
                    std::to_string(layer_cache::process().weight_bytes()) + " weight bytes)");
        return "";
      },
      [=](protocol::peer_atom, const std::string& host, uint16_t port) -> caf::result<std::string> {
        auto rp = self->make_response_promise<std::string>();
        const std::string where = host + ":" + std::to_string(port);
        self->request(self->home_system().middleman().actor_handle(), std::chrono::seconds(10),
                      caf::connect_atom::value, host, port)
            .then([=](const caf::node_id&, caf::strong_actor_ptr&, const std::set<std::string>&) mutable {
                    rp.deliver(std::string());
                  },
                  [=](caf::error& e) mutable {
                    rp.deliver("node " + identity.name + ": cannot connect to peer " + where + ": " +
                               self->home_system().render(e));
                  });
        return rp;
      },
  };
}

}  // namespace d3
