// Layer operators on XNNPACK, with XNNPACK's lifecycle: create (validates parameters and packs
// weights, once per layer), setup (binds input/output buffers, once per buffer set), run (per
// request, allocates nothing). Knows nothing of graphs beyond one layer and its input shapes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/graph.hpp"
#include "base/status.hpp"
#include "kernels/tensor.hpp"

typedef struct pthreadpool* pthreadpool_t;

namespace d3 {

// Initialises XNNPACK once per process and sets flush-to-zero/denormals-are-zero on the calling
// thread (denormal floats slow the kernels down by orders of magnitude).
status initialize_compute();

class layer_operator {
 public:
  virtual ~layer_operator() = default;
  // Binds buffers. Preconditions: inputs[i] holds input_shapes[i] of create(), output holds
  // the layer's output_shape; buffers outlive every run() until the next setup().
  virtual status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t pool) = 0;
  virtual status run(pthreadpool_t pool) = 0;
  // Takes tensors of new shapes from the next setup() on: batch and spatial size may change, the
  // channels and every parameter fixed at create() (padding included) stay. `output` must be what
  // the operator computes from `inputs` (checked: a wrong size would overrun the output buffer).
  // Lets one operator (weights packed once) run tiles of different sizes.
  virtual status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) = 0;
};

// How an operator writes its output (the executor uses this to build concatenations in place).
struct operator_options {
  // Floats between consecutive output pixels; 0 means dense (the layer's output channels).
  // Supported by convolution, max/average pooling, clamp and concat; the executor points such an operator
  // at its channel slice of a concat's buffer, so the concat copies nothing.
  size_t output_pixel_stride = 0;
  // Floats between consecutive pixels of the first input; 0 means dense (its channels). Only
  // where reads_strided_input() holds: the executor points such an operator at a concat that is a
  // channel prefix of a wider concat's buffer (DenseNet's growing concats), so that concat copies
  // nothing. Concat operators take output_pixel_stride for the same reason.
  size_t input_pixel_stride = 0;
  // Concat only: inputs already in the output buffer (written in place by their producers, or
  // copied there by an earlier concat sharing the buffer), which the operator skips.
  std::vector<bool> concat_input_in_place;
  // Threads the operator will run on: single-threaded convolutions with weights larger than L2
  // are split into output-channel blocks (more threads split the work, and the cache, already).
  int threads = 1;
  // Average pooling only: use the native loop even where XNNPACK's kernel would do. A tile of a
  // layer that runs natively (see below) must too, or its interior tiles (no padding) would take
  // XNNPACK's kernel, which rounds differently.
  bool native_average_pool = false;
};

// True when the operator for `l` computes the same output with the output buffer equal to its
// (dense) input buffer: each value is read before any value is written over it.
bool computes_in_place(const layer& l);

// True when the operator for `l` over `inputs` takes a strided first input (input_pixel_stride).
bool reads_strided_input(const layer& l, const std::vector<tensor_shape>& inputs);

// True when average pooling layer `l` over `input` runs on d3's native loop rather than XNNPACK
// (a divisor that counts padding, or a 1x1 window): XNNPACK has no such kernel.
bool average_pool_runs_natively(const layer& l, const tensor_shape& input);

// For operators outside this file: whether a convolution created for `created_in` -> `created_out`
// (its window and padding fixed) may take `inputs` -> `output` (reshape's precondition); the error
// names the layer and what does not fit.
status check_convolution_reshape(const std::string& name, const window_params& w, const tensor_shape& created_in,
                                 const tensor_shape& created_out, const std::vector<tensor_shape>& inputs,
                                 const tensor_shape& output);

// Creates the operator for `l` (l.output_shape must be set) reading tensors of `input_shapes`.
// Errors name the layer, the operation and the bad value.
result<std::unique_ptr<layer_operator>> create_layer_operator(const layer& l,
                                                              const std::vector<tensor_shape>& input_shapes,
                                                              const operator_options& options = {});

}  // namespace d3
