#include "kernels/executor.hpp"

#include <pthreadpool.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>

#include "kernels/gemm_convolution.hpp"
#include "kernels/operators.hpp"

namespace d3 {

struct executor::step {
  int layer = -1;
  std::string name;
  std::unique_ptr<layer_operator> op;
  std::vector<int> inputs;  // value ids
  int output = -1;          // value id
  bool reads_external = false;
  int fused_conv = -1;      // the convolution this step (an add) computes with it, or -1
};


executor::~executor() {
  steps_.clear();  // operators go before the pool they may reference
  if (pool_ != nullptr) pthreadpool_destroy(pool_);
}

namespace {

// For each concat among `steps`: the concat whose buffer holds its tensor, itself unless its
// inputs are a prefix of a wider concat's and every reader takes a strided input (then it is a
// view of that concat's first channels). -1 for other layers.
std::vector<int> shared_concat_buffers(const graph& g, const std::vector<int>& steps, const std::vector<bool>& inside,
                                       const std::vector<bool>& is_output, const std::vector<std::vector<int>>& readers,
                                       bool share) {
  std::vector<int> root(g.layers.size(), -1), concats;
  for (int c : steps)
    if (g.layers[c].kind == layer_kind::concat) root[c] = c, concats.push_back(c);
  if (!share) return root;
  auto prefix_of = [&](int a, int b) {
    const std::vector<int>& x = g.layers[a].inputs;
    const std::vector<int>& y = g.layers[b].inputs;
    return x.size() <= y.size() && std::equal(x.begin(), x.end(), y.begin());
  };
  for (int c : concats) {
    // The widest concat `c` is a prefix of (ties: the lowest index, so that it is its own widest).
    int widest = c;
    for (int d : concats) {
      const size_t size = g.layers[d].inputs.size(), best = g.layers[widest].inputs.size();
      if (prefix_of(c, d) && (size > best || (size == best && d < widest))) widest = d;
    }
    if (widest == c || is_output[c]) continue;
    bool strided_readers = true;
    for (int r : readers[c])
      strided_readers = strided_readers && inside[r] && g.layers[r].inputs.size() == 1 &&
                        reads_strided_input(g.layers[r], {g.layers[c].output_shape});
    if (strided_readers) root[c] = widest;
  }
  return root;
}

}  // namespace

result<std::unique_ptr<executor>> executor::create(const graph& g, std::vector<int> layer_set,
                                                   executor_options options) {
  D3_RETURN_IF_ERROR(initialize_compute());
  const int n = int(g.layers.size());
  if (layer_set.empty())
    for (int i = 0; i < n; ++i) layer_set.push_back(i);
  std::vector<bool> inside(n, false);
  for (int i : layer_set) {
    if (i < 0 || i >= n) return status::error("executor: layer index " + std::to_string(i) + " is out of range");
    if (g.layers[i].kind != layer_kind::input) inside[i] = true;
    if (g.layers[i].output_shape.elements() == 0)
      return status::error("executor: layer '" + g.layers[i].name + "' has no shape (prepare the graph first)");
  }
  if (options.threads < 1) return status::error("executor: threads must be >= 1, got " + std::to_string(options.threads));

  std::unique_ptr<executor> self(new executor());
  self->boundary_ = boundary_of(g, layer_set);
  const subgraph_boundary& b = self->boundary_;
  if (b.outputs.empty()) return status::error("executor: the sub-graph computes no tensor that leaves it");

  auto order = topological_order(g);
  if (!order) return order.error();
  std::vector<int> steps_order;
  for (int i : *order)
    if (inside[i]) steps_order.push_back(i);

  // Value ids: boundary inputs first, then every computed layer in execution order.
  std::vector<int> value_of(n, -1);
  struct {
    std::vector<tensor_shape> shapes;
    std::vector<value_location> where;
  } values;
  for (size_t k = 0; k < b.inputs.size(); ++k) {
    value_of[b.inputs[k]] = int(values.shapes.size());
    values.shapes.push_back(g.layers[b.inputs[k]].output_shape);
    value_location loc;
    loc.external_input = int(k);
    values.where.push_back(loc);
    self->input_names_.push_back(g.layers[b.inputs[k]].name);
    self->input_shapes_.push_back(g.layers[b.inputs[k]].output_shape);
  }
  for (int i : steps_order) {
    value_of[i] = int(values.shapes.size());
    values.shapes.push_back(g.layers[i].output_shape);
    values.where.push_back({});
  }
  std::vector<bool> is_output(n, false);
  for (int o : b.outputs) {
    is_output[o] = true;
    self->output_names_.push_back(g.layers[o].name);
    self->output_shapes_.push_back(g.layers[o].output_shape);
  }

  // Concatenations built in place: a producer whose only readers are concats sharing one buffer
  // writes straight into its channel slice (an output pixel stride), so no concat copies it.
  // Concats share a buffer when one's inputs are a prefix of the other's (DenseNet: every layer of
  // a dense block concatenates all features so far): the shorter is a view of the longer's first
  // channels, read through an input pixel stride by a consumer that supports it.
  const std::vector<std::vector<int>> readers = g.consumers();
  std::vector<int> storage_owner(n, -1);  // layer whose buffer holds this layer's tensor
  std::vector<size_t> channel_offset(n, 0);
  std::vector<std::vector<bool>> concat_in_place(n);
  const std::vector<int> concat_root = shared_concat_buffers(g, steps_order, inside, is_output, readers,
                                                             options.share_concat_prefixes);
  for (int c : steps_order)
    if (g.layers[c].kind == layer_kind::concat && concat_root[c] != c) storage_owner[c] = concat_root[c];
  for (int c : steps_order) {
    const layer& cat = g.layers[c];
    if (cat.kind != layer_kind::concat || concat_root[c] != c) continue;
    size_t offset = 0;
    for (size_t k = 0; k < cat.inputs.size(); ++k) {
      int p = cat.inputs[k];
      layer_kind kind = g.layers[p].kind;
      bool strided_kind = kind == layer_kind::convolution || kind == layer_kind::max_pool ||
                          kind == layer_kind::average_pool || kind == layer_kind::clamp;
      bool only_this_buffer = true;
      for (int r : readers[p]) only_this_buffer = only_this_buffer && concat_root[r] == c;
      if (inside[p] && strided_kind && only_this_buffer && !is_output[p] && storage_owner[p] < 0) {
        storage_owner[p] = c;
        channel_offset[p] = offset;
      }
      offset += size_t(g.layers[p].output_shape.c);
    }
  }
  // Each input of a shared buffer is written once: by its producer (in place) or by the first
  // concat of the buffer, in execution order, that has it.
  {
    std::vector<std::vector<bool>> written(n);
    for (int c : steps_order) {
      const layer& cat = g.layers[c];
      if (cat.kind != layer_kind::concat) continue;
      std::vector<bool>& done = written[concat_root[c]];
      concat_in_place[c].assign(cat.inputs.size(), false);
      size_t offset = 0;
      for (size_t k = 0; k < cat.inputs.size(); ++k) {
        if (k >= done.size()) done.resize(k + 1, false);
        const int p = cat.inputs[k];
        concat_in_place[c][k] = done[k] || (storage_owner[p] == concat_root[c] && channel_offset[p] == offset);
        done[k] = true;
        offset += size_t(g.layers[p].output_shape.c);
      }
    }
  }

  // Residual adds fused into the convolution before them (ResNet's blocks: conv, add, ReLU): the
  // add runs as that convolution's epilogue, at its step, so the convolution's tensor is never
  // written and read back. Only where the bits stay those of the two layers apart and the order
  // allows it: the convolution runs on the native GEMM, the add is its only reader and adds
  // equal shapes, and the add's other operand is computed before the convolution (or comes in).
  // The operands must be dense (not channel slices of a concat buffer).
  std::vector<int> fused_into(n, -1), fused_conv(n, -1);  // conv -> its add, add -> its conv
  if (options.fuse_residual_adds) {
    std::vector<int> before(n, -1);
    for (size_t s = 0; s < steps_order.size(); ++s) before[steps_order[s]] = int(s);
    // A tensor in its own buffer (a concat view or a producer writing into a concat has an owner).
    auto dense = [&](int v) { return !inside[v] || storage_owner[v] < 0; };
    for (int a : steps_order) {
      const layer& add = g.layers[a];
      if (add.kind != layer_kind::add || add.inputs.size() != 2) continue;
      int chosen = -1;
      for (int k = 0; k < 2; ++k) {
        const int c = add.inputs[k], r = add.inputs[1 - k];
        if (c == r || !inside[c] || is_output[c] || readers[c].size() != 1 || fused_into[c] >= 0) continue;
        const layer& conv = g.layers[c];
        if (conv.kind != layer_kind::convolution || conv.inputs.size() != 1) continue;
        const int x = conv.inputs[0];
        if (!gemm_convolution_takes_residual(conv, g.layers[x].output_shape)) continue;
        if (conv.output_shape != add.output_shape || g.layers[r].output_shape != add.output_shape) continue;
        if (inside[r] && before[r] > before[c]) continue;
        if (!dense(x) || !dense(r) || storage_owner[c] >= 0) continue;
        if (chosen < 0 || before[c] > before[chosen]) chosen = c;
      }
      if (chosen < 0) continue;
      fused_into[chosen] = a;
      fused_conv[a] = chosen;
    }
    std::vector<int> fused_order;
    for (int i : steps_order) {
      if (fused_conv[i] >= 0) continue;                   // runs at its convolution's step
      fused_order.push_back(fused_into[i] >= 0 ? fused_into[i] : i);
    }
    steps_order = std::move(fused_order);
  }
  // What a step reads: its layer's inputs, or for a fused add its convolution's input and the
  // add's other operand.
  auto step_inputs = [&](int i) {
    if (fused_conv[i] < 0) return g.layers[i].inputs;
    const int c = fused_conv[i];
    const std::vector<int>& ins = g.layers[i].inputs;
    return std::vector<int>{g.layers[c].inputs[0], ins[0] == c ? ins[1] : ins[0]};
  };

  // Lifetimes of arena buffers in step positions: first write .. last read (outputs live to the end).
  const int step_count = int(steps_order.size());
  std::vector<int> position(n, -1);
  for (int s = 0; s < step_count; ++s) position[steps_order[s]] = s;
  std::vector<int> first(n, std::numeric_limits<int>::max()), last(n, -1);
  for (int i : steps_order) {
    int owner = storage_owner[i] >= 0 ? storage_owner[i] : i;
    first[owner] = std::min(first[owner], position[i]);
    last[owner] = std::max(last[owner], position[i]);
    if (is_output[i]) last[owner] = step_count;
    for (int in : step_inputs(i)) {
      if (!inside[in]) continue;
      int in_owner = storage_owner[in] >= 0 ? storage_owner[in] : in;
      last[in_owner] = std::max(last[in_owner], position[i]);
    }
  }
  // Greedy interval allocation: a buffer is reused once the tensor in it has been read for the last time.
  std::vector<size_t> capacity;  // floats per buffer
  std::vector<int> holder;       // owner layer holding each buffer, or -1 when free
  std::vector<int> buffer_of(n, -1);
  for (int s = 0; s < step_count; ++s) {
    for (size_t k = 0; k < holder.size(); ++k)
      if (holder[k] >= 0 && last[holder[k]] < s) holder[k] = -1;
    for (int i : steps_order) {
      if (storage_owner[i] >= 0 || first[i] != s) continue;
      // An operator that may write over its input takes the input's buffer when this step is the
      // input's last read: its output then goes to cache lines the input just brought in, instead
      // of a second tensor's worth of writes to memory (EfficientNet's SiLU maps are 1.6-4.8 MB).
      const layer& l = g.layers[i];
      if (computes_in_place(l) && l.inputs.size() == 1) {
        const int in = l.inputs[0];
        if (inside[in] && storage_owner[in] < 0 && last[in] == s && buffer_of[in] >= 0 &&
            g.layers[in].output_shape.elements() == l.output_shape.elements()) {
          buffer_of[i] = buffer_of[in];
          holder[size_t(buffer_of[i])] = i;
          ++self->in_place_steps_;
          continue;
        }
      }
      // A fused add may write over its residual where this is the residual's last read: each
      // output value is written after the one residual value at its place is read. Not where the
      // residual is also the convolution's input, whose every window is still to be read.
      if (fused_conv[i] >= 0) {
        const std::vector<int> reads = step_inputs(i);
        const int r = reads[1];
        if (r != reads[0] && inside[r] && storage_owner[r] < 0 && last[r] == s && buffer_of[r] >= 0 &&
            g.layers[r].kind != layer_kind::concat) {
          buffer_of[i] = buffer_of[r];
          holder[size_t(buffer_of[i])] = i;
          ++self->in_place_steps_;
          continue;
        }
      }
      size_t need = l.output_shape.elements();
      int best = -1;
      for (size_t k = 0; k < holder.size(); ++k) {
        if (holder[k] >= 0) continue;
        bool fits = capacity[k] >= need;
        if (best < 0 || (fits && (capacity[best] < need || capacity[k] < capacity[best])) ||
            (!fits && capacity[best] < need && capacity[k] > capacity[best]))
          best = int(k);
      }
      if (best < 0) {
        best = int(capacity.size());
        capacity.push_back(0);
        holder.push_back(-1);
      }
      capacity[best] = std::max(capacity[best], need);
      holder[best] = i;
      buffer_of[i] = best;
    }
  }
  for (size_t k = 0; k < capacity.size(); ++k) self->buffers_.emplace_back(tensor_shape{1, 1, 1, int(capacity[k])});
  for (int i : steps_order) {
    value_location& loc = values.where[value_of[i]];
    int owner = storage_owner[i] >= 0 ? storage_owner[i] : i;
    loc.buffer = buffer_of[owner];
    loc.offset = channel_offset[i];
    loc.pixel_stride = size_t(g.layers[owner].output_shape.c);
  }

  // Operators: created (weights packed) now, once.
  for (int i : steps_order) {
    const layer& l = g.layers[i];
    step st;
    st.layer = i;
    st.name = l.name;
    st.fused_conv = fused_conv[i];
    std::vector<tensor_shape> in_shapes;
    for (int in : step_inputs(i)) {
      st.inputs.push_back(value_of[in]);
      in_shapes.push_back(g.layers[in].output_shape);
      if (values.where[value_of[in]].external_input >= 0) st.reads_external = true;
    }
    st.output = value_of[i];
    operator_options op_options;
    if (storage_owner[i] >= 0) op_options.output_pixel_stride = values.where[st.output].pixel_stride;
    if (st.fused_conv >= 0) {
      const layer& conv = g.layers[st.fused_conv];
      auto op = create_gemm_convolution_operator(conv, in_shapes[0], op_options.output_pixel_stride, &l.act);
      if (!op) return op.error();
      st.op = std::move(op.value());
      self->flops_ += cost_of(g, st.fused_conv).flops + cost_of(g, i).flops;
      ++self->fused_adds_;
      self->steps_.push_back(std::move(st));
      continue;
    }
    for (size_t k = 0; k < l.inputs.size(); ++k) {
      const value_location& from = values.where[value_of[l.inputs[k]]];
      if (from.external_input >= 0 || from.pixel_stride == size_t(in_shapes[k].c)) continue;
      if (l.kind == layer_kind::concat && concat_in_place[i][k]) continue;  // already in its buffer
      if (k > 0) return status::error("executor: layer '" + l.name + "' would read a strided input " + std::to_string(k));
      op_options.input_pixel_stride = from.pixel_stride;
    }
    op_options.concat_input_in_place = concat_in_place[i];
    for (bool in_place : concat_in_place[i]) self->copied_concat_inputs_ += in_place ? 0 : 1;
    op_options.threads = options.threads;
    auto op = create_layer_operator(l, in_shapes, op_options);
    if (!op) return op.error();
    st.op = std::move(op.value());
    self->flops_ += cost_of(g, i).flops;
    self->steps_.push_back(std::move(st));
  }
  self->values_ = std::move(values.where);
  self->value_shapes_ = std::move(values.shapes);
  for (int o : b.outputs) self->output_values_.push_back(value_of[o]);
  self->bound_inputs_.assign(b.inputs.size(), nullptr);

  if (options.threads > 1) {
    self->pool_ = pthreadpool_create(size_t(options.threads));
    if (self->pool_ == nullptr) return status::error("executor: cannot create a pool of " + std::to_string(options.threads) + " threads");
  }
  // Steps reading only arena buffers are bound once here; steps reading caller inputs are bound
  // when those inputs arrive (and again only when a caller passes a different buffer).
  for (step& st : self->steps_) {
    if (st.reads_external) continue;
    D3_RETURN_IF_ERROR(self->bind(st));
  }
  return self;
}

const float* executor::value_data(int value) const {
  const value_location& loc = values_[value];
  if (loc.external_input >= 0) return bound_inputs_[loc.external_input];
  return buffers_[loc.buffer].data() + loc.offset;
}

status executor::bind(step& st) {
  std::vector<const float*> inputs;
  for (int v : st.inputs) inputs.push_back(value_data(v));
  return st.op->setup(inputs, const_cast<float*>(value_data(st.output)), pool_);
}

status executor::load_inputs(const std::vector<const tensor*>& inputs) {
  if (inputs.size() != input_names_.size())
    return status::error("executor: got " + std::to_string(inputs.size()) + " input tensors, expected " +
                         std::to_string(input_names_.size()));
  bool changed = false;
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (inputs[k] == nullptr || inputs[k]->empty())
      return status::error("executor: input '" + input_names_[k] + "' is missing");
    if (inputs[k]->shape() != input_shapes_[k])
      return status::error("executor: input '" + input_names_[k] + "' has shape " + inputs[k]->shape().to_string() +
                           ", expected " + input_shapes_[k].to_string());
    if (bound_inputs_[k] != inputs[k]->data()) changed = true;
    bound_inputs_[k] = inputs[k]->data();
  }
  if (changed)
    for (step& st : steps_)
      if (st.reads_external) D3_RETURN_IF_ERROR(bind(st));
  return status::ok();
}

tensor executor::copy_value(int value) const {
  const tensor_shape& shape = value_shapes_[value];
  tensor t(shape);
  const value_location& loc = values_[value];
  const float* src = value_data(value);
  if (loc.external_input >= 0 || loc.pixel_stride == size_t(shape.c)) {
    std::memcpy(t.data(), src, shape.bytes());
  } else {
    const size_t pixels = size_t(shape.n) * shape.h * shape.w;
    for (size_t p = 0; p < pixels; ++p) std::memcpy(t.data() + p * shape.c, src + p * loc.pixel_stride, shape.c * sizeof(float));
  }
  return t;
}

status executor::run_operators(std::vector<layer_timing>* timings, std::map<std::string, tensor>* all) {
  using clock = std::chrono::steady_clock;
  for (step& st : steps_) {
    auto start = clock::now();
    D3_RETURN_IF_ERROR(st.op->run(pool_));
    if (timings != nullptr) {
      const double ms = std::chrono::duration<double, std::milli>(clock::now() - start).count();
      if (st.fused_conv >= 0) {  // the convolution's time includes its add's
        timings->push_back({st.fused_conv, ms});
        timings->push_back({st.layer, 0.0});
      } else {
        timings->push_back({st.layer, ms});
      }
    }
    // Copied right away: a later step may reuse this tensor's buffer.
    if (all != nullptr) (*all)[st.name] = copy_value(st.output);
  }
  return status::ok();
}

result<std::vector<tensor>> executor::run(const std::vector<const tensor*>& inputs,
                                          std::vector<layer_timing>* timings) {
  D3_RETURN_IF_ERROR(load_inputs(inputs));
  D3_RETURN_IF_ERROR(run_operators(timings, nullptr));
  std::vector<tensor> outputs;
  outputs.reserve(output_values_.size());
  for (int v : output_values_) outputs.push_back(copy_value(v));
  return outputs;
}

result<std::vector<const tensor*>> executor::order_inputs(const std::map<std::string, tensor>& inputs) const {
  std::vector<const tensor*> ordered;
  for (const std::string& name : input_names_) {
    auto it = inputs.find(name);
    if (it == inputs.end()) return status::error("executor: input tensor '" + name + "' is missing");
    ordered.push_back(&it->second);
  }
  return ordered;
}

result<std::map<std::string, tensor>> executor::run(const std::map<std::string, tensor>& inputs) {
  auto ordered = order_inputs(inputs);
  if (!ordered) return ordered.error();
  auto outputs = run(*ordered);
  if (!outputs) return outputs.error();
  std::map<std::string, tensor> named;
  for (size_t k = 0; k < output_names_.size(); ++k) named[output_names_[k]] = std::move(outputs.value()[k]);
  return named;
}

result<std::map<std::string, tensor>> executor::run_all(const std::vector<const tensor*>& inputs,
                                                        std::vector<layer_timing>* timings) {
  for (const step& st : steps_)
    if (st.fused_conv >= 0)
      return status::error("executor: run_all returns every tensor, but the add '" + st.name +
                           "' is fused into the convolution before it (create the executor with "
                           "fuse_residual_adds off)");
  D3_RETURN_IF_ERROR(load_inputs(inputs));
  std::map<std::string, tensor> all;
  D3_RETURN_IF_ERROR(run_operators(timings, &all));
  return all;
}

}  // namespace d3
