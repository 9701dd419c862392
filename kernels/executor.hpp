// Runs a whole graph or any sub-graph of it. All operators are created and every intermediate
// tensor is allocated at create(); run() only copies inputs in and runs operators, so a request
// allocates nothing but the output tensors it returns.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/graph.hpp"
#include "base/status.hpp"
#include "kernels/tensor.hpp"

typedef struct pthreadpool* pthreadpool_t;

namespace d3 {

struct executor_options {
  int threads = 1;  // 1 runs on the calling thread; more uses a pthreadpool of that size
  // Concats whose inputs are a prefix of another concat's share its buffer (no copies; see
  // create()). Off only to compare against the copying way.
  bool share_concat_prefixes = true;
  // Residual adds run as the epilogue of the convolution before them where the native GEMM runs
  // it (gemm_convolution_takes_residual): the same bits, one pass over the tensor fewer. The
  // convolution's own tensor is then never written: run_all refuses such an executor, so callers
  // that want every tensor turn this off.
  bool fuse_residual_adds = true;
};

struct layer_timing {
  int layer = -1;
  double milliseconds = 0;
};

class executor {
 public:
  ~executor();
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  // `layer_set`: the layers to run (input layers in it are ignored); empty means the whole graph.
  // Precondition: prepare_for_inference(g) succeeded. The executor keeps no reference to `g`.
  static result<std::unique_ptr<executor>> create(const graph& g, std::vector<int> layer_set = {},
                                                  executor_options options = {});

  // Tensors entering and leaving the sub-graph, as layer indices of the graph and as names.
  const subgraph_boundary& boundary() const { return boundary_; }
  const std::vector<std::string>& input_names() const { return input_names_; }
  const std::vector<std::string>& output_names() const { return output_names_; }
  const std::vector<tensor_shape>& input_shapes() const { return input_shapes_; }
  const std::vector<tensor_shape>& output_shapes() const { return output_shapes_; }

  // inputs[i] feeds boundary().inputs[i]; returns the tensors of boundary().outputs in order.
  // With `timings`, also records each layer's time.
  result<std::vector<tensor>> run(const std::vector<const tensor*>& inputs,
                                  std::vector<layer_timing>* timings = nullptr);
  // The same keyed by tensor (producer layer) name.
  result<std::map<std::string, tensor>> run(const std::map<std::string, tensor>& inputs);
  // Runs like run() and also returns every tensor the sub-graph computes, keyed by name, and the
  // time of each layer (for profiling and for checking intermediate tensors). Precondition:
  // no add is fused (executor_options::fuse_residual_adds off, or none could be); else an error.
  result<std::map<std::string, tensor>> run_all(const std::vector<const tensor*>& inputs,
                                                std::vector<layer_timing>* timings = nullptr);

  double flops() const { return flops_; }
  // Concat inputs run() copies; the others are written in place by their producers.
  int copied_concat_inputs() const { return copied_concat_inputs_; }
  // Steps whose output overwrites their input (computes_in_place, the input's last read).
  int in_place_steps() const { return in_place_steps_; }
  // Adds computed as the epilogue of the convolution before them (fuse_residual_adds).
  int fused_adds() const { return fused_adds_; }

 private:
  executor() = default;
  struct step;
  // Where a tensor of the sub-graph lives: a caller's input, or a slice of an arena buffer.
  struct value_location {
    int external_input = -1;  // index into the caller's inputs, or -1
    int buffer = -1;          // arena buffer, when not external
    size_t offset = 0;        // floats from the buffer's start (a channel slice of a concat)
    size_t pixel_stride = 0;  // floats between pixels; the tensor's channels when dense
  };
  status load_inputs(const std::vector<const tensor*>& inputs);
  status run_operators(std::vector<layer_timing>* timings, std::map<std::string, tensor>* all);
  status bind(step& st);
  const float* value_data(int value) const;
  tensor copy_value(int value) const;
  result<std::vector<const tensor*>> order_inputs(const std::map<std::string, tensor>& inputs) const;

  // Invariant: every tensor the sub-graph computes lives at a fixed place in buffers_ (a buffer is
  // reused once its tensor is dead), so operators are set up once; caller inputs are read in place.
  std::vector<step> steps_;
  std::vector<tensor> buffers_;
  std::vector<value_location> values_;
  std::vector<tensor_shape> value_shapes_;
  std::vector<int> output_values_;
  std::vector<const float*> bound_inputs_;
  subgraph_boundary boundary_;
  std::vector<std::string> input_names_, output_names_;
  std::vector<tensor_shape> input_shapes_, output_shapes_;
  double flops_ = 0;
  int copied_concat_inputs_ = 0;
  int in_place_steps_ = 0;
  int fused_adds_ = 0;
  pthreadpool_t pool_ = nullptr;
};

}  // namespace d3
