// The tile executor: operators shared between tiles, buffers per tile.
//
// An operator's padding is fixed when XNNPACK packs it, its tensor sizes are not: tiles of one
// run differ in size (uneven grids, clipped halos at the borders) but mostly share their padding
// (zero inside the image, the layer's own padding at the borders they touch). So there is one
// operator per run layer and distinct padding among the tiles, and run_tile() reshapes and sets it
// up for the tile's buffers when it last ran for another tile (setup is ~10 us; creation, i.e.
// weight packing, happens only in create()). Consequently one executor runs one tile at a time:
// run_tile() is not safe to call concurrently on the same executor.
#include "kernels/tile_executor.hpp"

#include <pthreadpool.h>

#include <algorithm>
#include <cstring>

#include "kernels/operators.hpp"

namespace d3 {

namespace {

tensor_shape shape_of(int batch, const region& r, int channels) { return {batch, r.rows(), r.cols(), channels}; }

bool has_window(layer_kind kind) {
  return kind == layer_kind::convolution || kind == layer_kind::max_pool || kind == layer_kind::average_pool;
}

bool inside(const region& inner, const region& outer) {
  return inner.row_begin >= outer.row_begin && inner.row_end <= outer.row_end && inner.col_begin >= outer.col_begin &&
         inner.col_end <= outer.col_end;
}

std::string padding_text(const padding& p) {
  return "padding top " + std::to_string(p.top) + " left " + std::to_string(p.left) + " bottom " +
         std::to_string(p.bottom) + " right " + std::to_string(p.right);
}

// Copies `want` (absolute coordinates) out of a dense tensor holding region `have` of the map.
void copy_region(const float* src, const region& have, const region& want, int batch, int channels, float* dst) {
  const size_t c = size_t(channels);
  const size_t row_floats = size_t(want.cols()) * c;
  for (int n = 0; n < batch; ++n)
    for (int h = 0; h < want.rows(); ++h) {
      const float* from = src + ((size_t(n) * have.rows() + size_t(want.row_begin - have.row_begin + h)) * have.cols() +
                                 size_t(want.col_begin - have.col_begin)) *
                                    c;
      std::memcpy(dst + (size_t(n) * want.rows() + h) * row_floats, from, row_floats * sizeof(float));
    }
}

}  // namespace

struct tile_executor::impl {
  struct shared_operator {
    padding pad;
    std::unique_ptr<layer_operator> op;
    // What the operator is set up for now: re-bound only when another tile (or another caller
    // buffer) comes along.
    int bound_tile = -1;
    std::vector<const float*> bound_inputs;
  };
  struct step {
    int layer = -1;
    std::string name;
    layer_kind kind = layer_kind::input;
    std::vector<int> inputs;  // graph layer indices
    int channels = 0;
    std::vector<shared_operator> ops;
  };
  // A layer reading less of a tensor than the tile computes of it reads a copy of that part.
  struct crop {
    bool needed = false;
    region have, want;
    tensor buffer;
  };
  struct tile_state {
    bool active = false;
    std::vector<int> op;                               // per step: index into step::ops
    std::vector<tensor> outputs;                       // per step
    std::vector<std::vector<crop>> crops;              // per step, per input slot
    std::vector<std::vector<tensor_shape>> in_shapes;  // per step: what the operator reads
    std::vector<const float*> pointers;                // scratch: input pointers of one step
  };

  tiled_run run;
  std::vector<tile_geometry> geometry;
  std::vector<step> steps;
  std::vector<int> step_of;   // graph layer -> step, or -1
  std::vector<int> input_of;  // graph layer -> run input, or -1
  std::vector<std::string> input_names;
  std::vector<tensor_shape> input_shapes;  // whole tensors
  tensor_shape output_shape;
  int batch = 1;
  std::vector<tile_state> tiles;
  int operator_count = 0;
  pthreadpool_t pool = nullptr;

  ~impl() {
    steps.clear();  // operators go before the pool they may reference
    if (pool != nullptr) pthreadpool_destroy(pool);
  }

  int channels_of(int layer) const {
    return input_of[layer] >= 0 ? input_shapes[input_of[layer]].c : steps[step_of[layer]].channels;
  }
};

tile_executor::~tile_executor() = default;

namespace {

// The tile's sizes must be what each layer computes from what it reads (positions are the
// geometry's business; sizes are the executor's, since a wrong one overruns a buffer).
status check_tile_layer(const graph& g, const tile_geometry& geo, int t, int l) {
  const layer& L = g.layers[l];
  const region& out = geo.computed[l];
  const padding& p = geo.layer_padding[l];
  auto fail = [&](const std::string& why) {
    return status::error("tile executor: tile " + std::to_string(t) + ", layer '" + L.name + "' (" + to_string(L.kind) +
                         "), computing " + out.to_string() + ": " + why);
  };
  if (out.empty()) return fail("computes nothing");
  if (out.row_begin < 0 || out.col_begin < 0 || out.row_end > L.output_shape.h || out.col_end > L.output_shape.w)
    return fail("outside its " + L.output_shape.to_string() + " tensor");
  if (geo.reads[l].size() != L.inputs.size())
    return fail("the geometry gives " + std::to_string(geo.reads[l].size()) + " read regions for " +
                std::to_string(L.inputs.size()) + " inputs");
  const bool padded_kind = has_window(L.kind) || L.kind == layer_kind::pad;
  if (p.top < 0 || p.left < 0 || p.bottom < 0 || p.right < 0) return fail("negative " + padding_text(p));
  if (!padded_kind && p.any()) return fail(padding_text(p) + " on a layer without padding");
  for (size_t slot = 0; slot < L.inputs.size(); ++slot) {
    const int in = L.inputs[slot];
    const region& r = geo.reads[l][slot];
    if (r.empty()) return fail("reads nothing of input " + std::to_string(slot));
    if (!inside(r, geo.computed[in]))
      return fail("reads " + r.to_string() + " of '" + g.layers[in].name + "', which the tile computes only over " +
                  geo.computed[in].to_string());
    int rows = r.rows(), cols = r.cols();
    const window_params& w = L.window;
    if (has_window(L.kind)) {
      rows = window_output_size(rows, w.kernel_h, w.stride_h, w.dilation_h, p.top, p.bottom, false);
      cols = window_output_size(cols, w.kernel_w, w.stride_w, w.dilation_w, p.left, p.right, false);
    } else if (L.kind == layer_kind::pad) {
      rows += p.top + p.bottom;
      cols += p.left + p.right;
    } else if ((L.kind == layer_kind::add || L.kind == layer_kind::multiply) && slot == 1) {
      const tensor_shape& s = g.layers[in].output_shape;
      if (s.h == 1 && s.w == 1) continue;  // a per-channel operand
    }
    if (rows != out.rows() || cols != out.cols())
      return fail("reading " + r.to_string() + " of '" + g.layers[in].name + "' with " + padding_text(p) + " gives " +
                  std::to_string(rows) + "x" + std::to_string(cols) + " (HxW), not " + std::to_string(out.rows()) +
                  "x" + std::to_string(out.cols()));
  }
  return status::ok();
}

}  // namespace

result<std::unique_ptr<tile_executor>> tile_executor::create(const graph& g, const tiled_run& run,
                                                             std::vector<tile_geometry> tiles,
                                                             std::vector<int> only_tiles, executor_options options) {
  D3_RETURN_IF_ERROR(initialize_compute());
  const int n = int(g.layers.size());
  if (options.threads < 1)
    return status::error("tile executor: threads must be >= 1, got " + std::to_string(options.threads));
  if (run.layers.empty() || run.output < 0 || run.output >= n || run.layers.back() != run.output)
    return status::error("tile executor: the run is empty or does not end at its output layer (use make_tiled_run)");
  if (tiles.empty()) return status::error("tile executor: no tiles");

  std::unique_ptr<impl> self(new impl);
  self->run = run;
  self->step_of.assign(size_t(n), -1);
  self->input_of.assign(size_t(n), -1);
  for (size_t i = 0; i < run.inputs.size(); ++i) {
    const int in = run.inputs[i];
    if (in < 0 || in >= n) return status::error("tile executor: run input index " + std::to_string(in) + " out of range");
    self->input_of[in] = int(i);
    self->input_names.push_back(g.layers[in].name);
    self->input_shapes.push_back(g.layers[in].output_shape);
  }
  for (int l : run.layers) {
    if (l < 0 || l >= n) return status::error("tile executor: run layer index " + std::to_string(l) + " out of range");
    const layer& L = g.layers[l];
    if (L.output_shape.elements() == 0)
      return status::error("tile executor: layer '" + L.name + "' has no shape (prepare the graph first)");
    for (int in : L.inputs)
      if (self->step_of[in] < 0 && self->input_of[in] < 0)
        return status::error("tile executor: layer '" + L.name + "' reads '" + g.layers[in].name +
                             "', which is neither computed earlier in the run nor one of its inputs");
    impl::step st;
    st.layer = l;
    st.name = L.name;
    st.kind = L.kind;
    st.inputs = L.inputs;
    st.channels = L.output_shape.c;
    self->step_of[l] = int(self->steps.size());
    self->steps.push_back(std::move(st));
  }
  self->output_shape = g.layers[run.output].output_shape;
  self->batch = self->output_shape.n;

  // Geometry, for every tile (an executor running one tile still numbers them all).
  for (size_t t = 0; t < tiles.size(); ++t) {
    const tile_geometry& geo = tiles[t];
    const std::string which = "tile executor: tile " + std::to_string(t);
    if (geo.computed.size() != size_t(n) || geo.layer_padding.size() != size_t(n) || geo.reads.size() != size_t(n))
      return status::error(which + ": geometry is not indexed by the graph's " + std::to_string(n) +
                           " layers (use plan_tiles)");
    if (geo.computed[run.output] != geo.output)
      return status::error(which + ": computes " + geo.computed[run.output].to_string() + " of the output, not its tile " +
                           geo.output.to_string());
    for (size_t i = 0; i < run.inputs.size(); ++i) {
      const region& r = geo.computed[run.inputs[i]];
      const tensor_shape& s = self->input_shapes[i];
      if (r.empty() || r.row_begin < 0 || r.col_begin < 0 || r.row_end > s.h || r.col_end > s.w)
        return status::error(which + ": input '" + self->input_names[i] + "' region " + r.to_string() +
                             " is empty or outside its " + s.to_string() + " tensor");
    }
    for (int l : run.layers) D3_RETURN_IF_ERROR(check_tile_layer(g, geo, int(t), l));
  }

  self->tiles.resize(tiles.size());
  if (only_tiles.empty())
    for (size_t t = 0; t < tiles.size(); ++t) only_tiles.push_back(int(t));
  for (int t : only_tiles) {
    if (t < 0 || t >= int(tiles.size()))
      return status::error("tile executor: tile " + std::to_string(t) + " does not exist (" +
                           std::to_string(tiles.size()) + " tiles)");
    self->tiles[size_t(t)].active = true;
  }

  // Operators: one per layer and distinct padding among the tiles this executor runs.
  operator_options op_options;
  op_options.threads = options.threads;
  for (size_t t = 0; t < tiles.size(); ++t) {
    impl::tile_state& ts = self->tiles[t];
    if (!ts.active) continue;
    const tile_geometry& geo = tiles[t];
    ts.op.assign(self->steps.size(), -1);
    ts.crops.resize(self->steps.size());
    ts.in_shapes.resize(self->steps.size());
    for (size_t s = 0; s < self->steps.size(); ++s) {
      impl::step& st = self->steps[s];
      const layer& L = g.layers[st.layer];
      const region& out = geo.computed[st.layer];
      for (size_t slot = 0; slot < st.inputs.size(); ++slot) {
        const int in = st.inputs[slot];
        const int channels = self->channels_of(in);
        impl::crop c;
        c.have = geo.computed[in];
        c.want = geo.reads[st.layer][slot];
        c.needed = c.have != c.want;
        if (c.needed) c.buffer = tensor(shape_of(self->batch, c.want, channels));
        ts.in_shapes[s].push_back(shape_of(self->batch, c.want, channels));
        ts.crops[s].push_back(std::move(c));
      }
      ts.outputs.emplace_back(shape_of(self->batch, out, st.channels));

      const padding pad = geo.layer_padding[st.layer];
      auto same = std::find_if(st.ops.begin(), st.ops.end(), [&](const impl::shared_operator& o) { return o.pad == pad; });
      if (same != st.ops.end()) {
        ts.op[s] = int(same - st.ops.begin());
        continue;
      }
      layer tile_layer = L;
      if (has_window(L.kind) || L.kind == layer_kind::pad) tile_layer.window.pad = pad;
      tile_layer.window.ceil_mode = false;  // the geometry's padding already holds any ceil_mode overflow
      tile_layer.output_shape = shape_of(self->batch, out, st.channels);
      op_options.native_average_pool =
          L.kind == layer_kind::average_pool && average_pool_runs_natively(L, g.layers[L.inputs[0]].output_shape);
      auto op = create_layer_operator(tile_layer, ts.in_shapes[s], op_options);
      if (!op)
        return status::error("tile executor: tile " + std::to_string(t) + " (" + padding_text(pad) +
                             "): " + op.message());
      impl::shared_operator shared;
      shared.pad = pad;
      shared.op = std::move(op.value());
      ts.op[s] = int(st.ops.size());
      st.ops.push_back(std::move(shared));
      ++self->operator_count;
    }
  }
  self->geometry = std::move(tiles);

  if (options.threads > 1) {
    self->pool = pthreadpool_create(size_t(options.threads));
    if (self->pool == nullptr)
      return status::error("tile executor: cannot create a pool of " + std::to_string(options.threads) + " threads");
  }
  std::unique_ptr<tile_executor> e(new tile_executor);
  e->impl_ = std::move(self);
  return e;
}

int tile_executor::tile_count() const { return int(impl_->geometry.size()); }

const tile_geometry& tile_executor::geometry(int tile) const { return impl_->geometry.at(size_t(tile)); }

const std::vector<std::string>& tile_executor::input_names() const { return impl_->input_names; }

int tile_executor::operator_count() const { return impl_->operator_count; }

result<tensor> tile_executor::run_tile(int tile, const std::vector<const tensor*>& input_regions) {
  impl& self = *impl_;
  if (tile < 0 || tile >= int(self.tiles.size()))
    return status::error("tile executor: tile " + std::to_string(tile) + " does not exist (" +
                         std::to_string(self.tiles.size()) + " tiles)");
  impl::tile_state& ts = self.tiles[size_t(tile)];
  if (!ts.active)
    return status::error("tile executor: tile " + std::to_string(tile) + " is not one of the tiles this executor runs");
  const tile_geometry& geo = self.geometry[size_t(tile)];
  if (input_regions.size() != self.run.inputs.size())
    return status::error("tile executor: got " + std::to_string(input_regions.size()) + " input regions, expected " +
                         std::to_string(self.run.inputs.size()));
  for (size_t i = 0; i < input_regions.size(); ++i) {
    const tensor_shape want = shape_of(self.batch, geo.computed[self.run.inputs[i]], self.input_shapes[i].c);
    if (input_regions[i] == nullptr || input_regions[i]->empty())
      return status::error("tile executor: input '" + self.input_names[i] + "' is missing");
    if (input_regions[i]->shape() != want)
      return status::error("tile executor: tile " + std::to_string(tile) + ": input '" + self.input_names[i] +
                           "' has shape " + input_regions[i]->shape().to_string() + ", expected " + want.to_string() +
                           " (" + geo.computed[self.run.inputs[i]].to_string() + ")");
  }
  auto data_of = [&](int layer) -> const float* {
    return self.input_of[layer] >= 0 ? input_regions[size_t(self.input_of[layer])]->data()
                                     : ts.outputs[size_t(self.step_of[layer])].data();
  };
  for (size_t s = 0; s < self.steps.size(); ++s) {
    impl::step& st = self.steps[s];
    std::vector<const float*>& pointers = ts.pointers;
    pointers.clear();
    for (size_t slot = 0; slot < st.inputs.size(); ++slot) {
      impl::crop& c = ts.crops[s][slot];
      const float* src = data_of(st.inputs[slot]);
      if (c.needed) {
        copy_region(src, c.have, c.want, self.batch, c.buffer.shape().c, c.buffer.data());
        src = c.buffer.data();
      }
      pointers.push_back(src);
    }
    impl::shared_operator& shared = st.ops[size_t(ts.op[s])];
    if (shared.bound_tile != tile || shared.bound_inputs != pointers) {
      shared.bound_tile = -1;
      D3_RETURN_IF_ERROR(shared.op->reshape(ts.in_shapes[s], ts.outputs[s].shape()));
      D3_RETURN_IF_ERROR(shared.op->setup(pointers, ts.outputs[s].data(), self.pool));
      shared.bound_tile = tile;
      shared.bound_inputs = pointers;
    }
    D3_RETURN_IF_ERROR(shared.op->run(self.pool));
  }
  return ts.outputs[size_t(self.step_of[self.run.output])];
}

result<tensor> tile_executor::run(const std::vector<const tensor*>& whole_inputs) {
  impl& self = *impl_;
  for (size_t t = 0; t < self.tiles.size(); ++t)
    if (!self.tiles[t].active)
      return status::error("tile executor: run() computes every tile, but this executor runs only some (tile " +
                           std::to_string(t) + " is not one of them); use run_tile()");
  if (whole_inputs.size() != self.input_names.size())
    return status::error("tile executor: got " + std::to_string(whole_inputs.size()) + " input tensors, expected " +
                         std::to_string(self.input_names.size()));
  for (size_t i = 0; i < whole_inputs.size(); ++i) {
    if (whole_inputs[i] == nullptr || whole_inputs[i]->empty())
      return status::error("tile executor: input '" + self.input_names[i] + "' is missing");
    if (whole_inputs[i]->shape() != self.input_shapes[i])
      return status::error("tile executor: input '" + self.input_names[i] + "' has shape " +
                           whole_inputs[i]->shape().to_string() + ", expected " + self.input_shapes[i].to_string());
  }
  tensor output(self.output_shape);
  std::vector<tensor> parts(whole_inputs.size());
  std::vector<const tensor*> pointers(whole_inputs.size());
  for (size_t t = 0; t < self.tiles.size(); ++t) {
    const tile_geometry& geo = self.geometry[t];
    for (size_t i = 0; i < whole_inputs.size(); ++i) {
      parts[i] = extract_region(*whole_inputs[i], geo.computed[self.run.inputs[i]]);
      pointers[i] = &parts[i];
    }
    auto part = run_tile(int(t), pointers);
    if (!part) return part.error();
    insert_region(output, geo.output, part.value());
  }
  return output;
}

}  // namespace d3
