// Stage actors (segment, scatter, tile, gather): what a node builds from a stage spec, and how a
// stage computes a request once all its inputs are there. Protocol: actors/protocol.hpp.
#include "actors/stage_actor.hpp"

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include "actors/bundle_sender.hpp"
#include "actors/layer_cache.hpp"
#include "actors/node.hpp"
#include "actors/protocol.hpp"
#include "emulation/node_emulation.hpp"
#include "kernels/executor.hpp"
#include "kernels/tile_executor.hpp"
#include "kernels/tiling.hpp"
#include "schema/bundle.hpp"

namespace d3 {

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

// ------------------------------------------------------------------ stages

constexpr size_t max_pending_requests = 1024;  // requests waiting for inputs; the oldest are dropped
// Sends at least this large are announced to their destination (incoming notice): below it a
// message crosses even a 1 Mbit/s link within a tenth of the default peer silence.
constexpr size_t incoming_notice_bytes = 16 * 1024;

struct stage_state {
  stage_spec spec;
  std::string spec_error;  // the spec did not decode
  bool ready = false;
  protocol::app_handle app;
  bundle_routes routes;
  // Per request: its latest input arrival (virtual ms, or the wall clock's monotonic_ms) and the
  // time decoding its bundles took (virtual clock: thread CPU ms; wall clock: wall ms).
  std::map<uint64_t, double> pending_ready;
  std::map<uint64_t, double> pending_decode;
  std::set<std::string> inputs;
  graph fragment;
  std::unique_ptr<executor> exec;
  std::unique_ptr<tile_executor> tiles;
  std::vector<std::string> tile_inputs;  // spec input names in the tile executor's input order
  std::map<uint64_t, std::map<std::string, tensor>> pending;
  uint64_t served = 0;
  // Senders that announced data (incoming notices) not yet read: their node and how many.
  std::map<caf::actor_addr, std::pair<std::string, size_t>> announced;

  static inline const char* name = "d3_stage";

  // A retired stage's operators, packed weights and buffers go back to the process's heap, where
  // its successor's take them (the node keeps freed memory, kernels/memory.hpp). Not handed back
  // to the system (malloc_trim): a retirement may run after its successor's warm-up run, and the
  // successor's first requests would fault their buffers in again (measured: the grid, which
  // redeploys before every request, charged plans 10-25% more than their profiles).
  ~stage_state() {
    exec.reset();
    tiles.reset();
    pending.clear();
    fragment = graph();
  }
};

using stage_actor_t = protocol::stage_handle::stateful_pointer<stage_state>;

std::string describe(const stage_state& st) {
  return std::string(to_string(st.spec.type)) + " stage " + std::to_string(st.spec.stage_id);
}

status check_bounds(const std::vector<int>& bounds, int size, const char* axis) {
  bool ok = bounds.size() >= 2 && bounds.front() == 0 && bounds.back() == size;
  for (size_t i = 1; ok && i < bounds.size(); ++i) ok = bounds[i] > bounds[i - 1];
  if (!ok)
    return status::error(std::string("grid ") + axis + " bounds do not cut [0, " + std::to_string(size) +
                         ") into increasing parts");
  return status::ok();
}

// The fragment with its weights from the node's cache (layers whose weights the spec does not
// carry), shapes inferred.
status fill_fragment(stage_state& st) {
  stage_spec& spec = st.spec;
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

  return status::ok();
}

// A segment: one executor over the fragment, warmed up.
status build_segment(stage_state& st, const std::set<std::string>& outputs) {
  graph& f = st.fragment;
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

// A tile: the run's tile executor for this tile's index, its geometry checked against the app's.
status build_tile(stage_state& st) {
  stage_spec& spec = st.spec;
  graph& f = st.fragment;
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

// A scatter or gather: its region copies checked against the stage's inputs and outputs.
status check_copies(const stage_state& st, const std::set<std::string>& outputs) {
  const stage_spec& spec = st.spec;
  if (spec.copies.empty()) return status::error("no region copies");
  std::set<std::string> parts;
  for (const region_copy& c : spec.copies) {
    if (!parts.insert(c.part).second) return status::error("part '" + c.part + "' appears twice");
    if (spec.type == stage_kind::scatter && !st.inputs.count(c.whole))
      return status::error("part '" + c.part + "' is cut from '" + c.whole + "', which is no stage input");
    if (spec.type == stage_kind::gather && c.whole != spec.outputs[0])
      return status::error("part '" + c.part + "' goes into '" + c.whole + "', which is not the output");
  }
  if (spec.type == stage_kind::scatter && parts != outputs)
    return status::error("the parts differ from the stage outputs");
  if (spec.type == stage_kind::gather) {
    if (spec.outputs.size() != 1) return status::error("a gather has one output");
    if (parts != st.inputs) return status::error("the parts differ from the stage inputs");
    for (const region_copy& c : spec.copies)
      if (c.area.row_end > spec.whole_shape.h || c.area.col_end > spec.whole_shape.w)
        return status::error("part '" + c.part + "' region " + c.area.to_string() + " lies outside the output " +
                             spec.whole_shape.to_string());
  }
  return status::ok();
}

// Fills weights from the node's cache, infers shapes, creates the executors.
status build(stage_state& st) {
  stage_spec& spec = st.spec;
  st.inputs = std::set<std::string>(spec.inputs.begin(), spec.inputs.end());
  if (st.inputs.size() != spec.inputs.size() || spec.inputs.empty()) return status::error("inputs are empty or repeated");
  if (spec.outputs.empty()) return status::error("no outputs");
  const std::set<std::string> outputs(spec.outputs.begin(), spec.outputs.end());
  switch (spec.type) {
    case stage_kind::segment:
      D3_RETURN_IF_ERROR(fill_fragment(st));
      return build_segment(st, outputs);
    case stage_kind::tile:
      D3_RETURN_IF_ERROR(fill_fragment(st));
      return build_tile(st);
    case stage_kind::scatter:
    case stage_kind::gather:
      return check_copies(st, outputs);
  }
  return status::error("unknown stage kind");
}

result<std::map<std::string, tensor>> compute(stage_state& st, std::map<std::string, tensor>& inputs) {
  const stage_spec& spec = st.spec;
  switch (spec.type) {
    case stage_kind::segment:
      return st.exec->run(inputs);
    case stage_kind::tile: {
      std::vector<const tensor*> in;
      for (const std::string& name : st.tile_inputs) in.push_back(&inputs.at(name));
      auto out = st.tiles->run_tile(spec.tile_index, in);
      if (!out) return out.error();
      std::map<std::string, tensor> result;
      result.emplace(spec.outputs[0], std::move(out.value()));
      return result;
    }
    case stage_kind::scatter: {
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
    case stage_kind::gather: {
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

void report(stage_actor_t self, uint64_t id, bool id_known, const std::string& what) {
  stage_state& st = self->state;
  const std::string message = describe(st) + ": " + what;
  print_event("error: " + message);
  if (st.app) self->send(st.app, protocol::fail_atom::value, id, id_known, int32_t(st.spec.stage_id), message);
}

// Forgets a request's partial inputs (and their virtual ready time).
void drop_pending(stage_state& st, uint64_t id) {
  st.pending.erase(id);
  st.pending_ready.erase(id);
  st.pending_decode.erase(id);
}

void on_data(stage_actor_t self, const bytes& payload) {
  stage_state& st = self->state;
  if (std::string over = message_over_limit("tensor bundle", payload.size()); !over.empty()) {
    auto id = peek_request_id(payload.data(), payload.size());
    if (id) drop_pending(st, *id);
    return report(self, id.value_or(0), id.has_value(), over);
  }
  node_emulation& emu = emulation();
  const clock_mode mode = emu.mode();
  const bool virtual_clock = mode == clock_mode::virtual_time;
  const double arrived_ms = monotonic_ms();  // wall clock: this bundle's arrival
  // The virtual clock charges decoding too (thread CPU time, alone on the machine like compute);
  // the wall clock reports its wall time.
  std::optional<machine_cpu_lock> alone;
  alone.emplace(virtual_clock);
  const double decode_start = virtual_clock ? thread_cpu_ms() : arrived_ms;
  auto bundle = decode_bundle(payload.data(), payload.size());
  const double decode_ms_spent = (virtual_clock ? thread_cpu_ms() : monotonic_ms()) - decode_start;
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
  ready_ms = std::max(ready_ms, virtual_clock ? bundle->virtual_ms : arrived_ms);
  st.pending_decode[id] += decode_ms_spent;
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
  const double decode_ms = st.pending_decode[id];
  drop_pending(st, id);
  // Emulation: thread CPU time around the kernels (single-threaded executors, so it covers all
  // compute) and around encoding the output bundles; with the inputs' decoding, the virtual clock
  // advances the node by it divided by the node's speed, and the bundles leave when it is done.
  alone.emplace(virtual_clock);
  const double cpu_start = thread_cpu_ms();
  auto outputs = compute(st, inputs);
  const double cpu_ms = thread_cpu_ms() - cpu_start;
  if (!outputs) return report(self, id, true, outputs.message());
  ++st.served;

  const double encode_start = virtual_clock ? thread_cpu_ms() : monotonic_ms();
  auto bundles = encode_bundles(st.routes, outputs.value(), id, st.spec.plan_version);
  const double encode_ms = (virtual_clock ? thread_cpu_ms() : monotonic_ms()) - encode_start;
  alone.reset();
  if (!bundles) return report(self, id, true, bundles.message());
  const double finish = virtual_clock ? emu.compute(ready, decode_ms + cpu_ms + encode_ms) : emu.now_ms();
  const double messages_ms = virtual_clock ? (decode_ms + encode_ms) / emu.speed() : decode_ms + encode_ms;

  // Per destination: the link from this node to the destination's node (tensor payload bytes,
  // as bytes_between_nodes counts them); same-node sends are not shaped.
  uint64_t bytes_sent = 0;
  for (const outgoing_bundle& b : *bundles)
    if (emu.is_remote(b.node)) bytes_sent += b.payload_bytes;
  auto stamped = stamp_arrivals(*bundles, mode, [&](const std::string& node, size_t n) { return emu.send(node, finish, n); });
  if (!stamped) return report(self, id, true, stamped.message());
  // Wall clock: on this machine's monotonic clock (the app maps it onto its own).
  if (st.app)
    self->send(st.app, protocol::report_atom::value, id, int32_t(st.spec.stage_id), ready,
               virtual_clock ? finish : monotonic_ms(), cpu_ms, bytes_sent, messages_ms);
  const caf::actor_addr app = caf::actor_cast<caf::actor_addr>(st.app);
  std::vector<std::pair<std::string, size_t>> handed;  // send_bundles moves the messages out
  for (const outgoing_bundle& b : *bundles) {
    if (!emu.is_remote(b.node)) continue;
    handed.emplace_back(b.node, b.message.size());
    // Announced ahead of it on the same connection, so the notice arrives before the bulk does.
    // Not to the app (it watches nodes with its own pings; answers to it are a model's outputs).
    if (b.message.size() >= incoming_notice_bytes && caf::actor_cast<caf::actor_addr>(b.dest) != app)
      self->send(b.dest, protocol::incoming_atom::value, emu.name(), uint64_t(b.message.size()));
  }
  send_bundles(self, *bundles, finish, mode);
  // Noted once handed over (send_backlog::crossed_before: a ping the node actor sends meanwhile
  // must not be taken as following them).
  for (const auto& [node, size] : handed) peer_backlog().sent(node, size);
}

protocol::stage_handle::behavior_type stage_actor(stage_actor_t self, stage_kind expected, const bytes& spec_bytes) {
  using protocol::ok_atom;
  using protocol::refusal;
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
      [=](protocol::setup_atom, const protocol::app_handle& app) -> caf::result<ok_atom> {
        stage_state& st = self->state;
        st.app = app;
        if (!st.spec_error.empty()) return refusal(st.spec_error);
        if (st.ready) return ok_atom::value;
        if (live_stage_count() > current_node_limits().max_stages)
          return refusal(describe(st) + ": " + std::to_string(live_stage_count() - 1) +
                         " stages already live on this node (max_stages " +
                         std::to_string(current_node_limits().max_stages) + ")");
        status built = status::error("unreachable");
        try {
          built = build(st);
        } catch (const std::exception& e) {
          built = status::error(std::string("cannot build: ") + e.what());
        }
        if (!built) {
          print_event("error: " + describe(st) + ": " + built.message());
          return refusal(describe(st) + ": " + built.message());
        }
        st.ready = true;
        return ok_atom::value;
      },
      [=](protocol::route_atom, const std::string& tensor_name, const protocol::data_handle& dest,
          const std::string& dest_node, uint8_t codec) -> caf::result<ok_atom> {
        stage_state& st = self->state;
        if (std::find(st.spec.outputs.begin(), st.spec.outputs.end(), tensor_name) == st.spec.outputs.end())
          return refusal(describe(st) + ": no output named '" + tensor_name + "'");
        if (codec >= tensor_codec_count)
          return refusal(describe(st) + ": codec " + std::to_string(codec) + " for '" + tensor_name + "' is unknown");
        st.routes.add(tensor_name, dest, dest_node, tensor_codec(codec));
        return ok_atom::value;
      },
      [=](protocol::incoming_atom, const std::string& from_node, uint64_t bytes) {
        incoming_backlog().sent(from_node, size_t(bytes));
        auto& [node, count] = self->state.announced[caf::actor_cast<caf::actor_addr>(self->current_sender())];
        node = from_node;
        ++count;
      },
      [=](protocol::data_atom, const bytes& payload) {
        // An announced message has crossed (a sender's messages arrive in order).
        auto announced = self->state.announced.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
        if (announced != self->state.announced.end() && announced->second.second > 0) {
          --announced->second.second;
          incoming_backlog().arrived(announced->second.first);
        }
        try {
          on_data(self, payload);
        } catch (const std::exception& e) {
          report(self, 0, false, std::string("internal error: ") + e.what());
        }
      },
  };
}

using stage_behavior = protocol::stage_handle::behavior_type;
stage_behavior segment_actor(stage_actor_t self, bytes spec) { return stage_actor(self, stage_kind::segment, spec); }
stage_behavior scatter_actor(stage_actor_t self, bytes spec) { return stage_actor(self, stage_kind::scatter, spec); }
stage_behavior tile_actor(stage_actor_t self, bytes spec) { return stage_actor(self, stage_kind::tile, spec); }
stage_behavior gather_actor(stage_actor_t self, bytes spec) { return stage_actor(self, stage_kind::gather, spec); }

}  // namespace

namespace protocol {

void add_stage_actor_types(caf::actor_system_config& cfg) {
  cfg.add_actor_type(segment_type, segment_actor);
  cfg.add_actor_type(scatter_type, scatter_actor);
  cfg.add_actor_type(tile_type, tile_actor);
  cfg.add_actor_type(gather_type, gather_actor);
}

}  // namespace protocol

void print_node_event(const std::string& line) { print_event(line); }

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

}  // namespace d3
