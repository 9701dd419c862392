// Operators XNNPACK (2022) lacks or runs slowly, as native loops: layer normalisation over the
// channels of each pixel (ConvNeXt's LayerNorm on its channels-last islands), GELU in its erf form,
// and depthwise convolutions with more taps than XNNPACK's largest depthwise kernel (25: a 7x7
// window falls back to a GEMM per channel, 2.5 GFLOP/s). Each output value is computed by the same
// arithmetic in the same order wherever it lies in the tensor, so a tile computes exactly the
// values the whole tensor would (vertical separation stays bit-exact).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "kernels/graph.hpp"
#include "kernels/operators.hpp"

namespace d3 {

// Preconditions (checked, errors name the layer): one input of the layer's output shape;
// layer_norm holds 2 x channels weights (gamma | beta) and a non-negative epsilon.
result<std::unique_ptr<layer_operator>> create_layer_norm_operator(const layer& l, const tensor_shape& input);
result<std::unique_ptr<layer_operator>> create_gelu_operator(const layer& l, const tensor_shape& input);
result<std::unique_ptr<layer_operator>> create_tanh_operator(const layer& l, const tensor_shape& input);
// preprocess holds mean (weights) and std (bias), one float per channel each.
result<std::unique_ptr<layer_operator>> create_preprocess_operator(const layer& l, const tensor_shape& input);

// Token operators (transformers): attention over q, k, v (also windowed); prepend_tokens; constant_add;
// row_slice; roll and spatial_slice of maps.
// Preconditions as infer_shapes checks them (errors name the layer).
result<std::unique_ptr<layer_operator>> create_token_operator(const layer& l, const std::vector<tensor_shape>& inputs);

// True for a depthwise 1x1 convolution with stride 1 and no padding (a per-channel affine: DenseNet's
// pre-activation batch norms), unless D3_CONVOLUTION=xnnpack: XNNPACK runs it 4 lanes wide.
bool channel_affine_runs_natively(const layer& l, const tensor_shape& input);
// Precondition: channel_affine_runs_natively(l, input). Computes XNNPACK's bits. Strides as in
// operator_options (0: dense).
result<std::unique_ptr<layer_operator>> create_channel_affine_operator(const layer& l, const tensor_shape& input,
                                                                       size_t output_pixel_stride,
                                                                       size_t input_pixel_stride = 0);

// True for a depthwise convolution (one input and one output channel per group) whose window has
// more taps than XNNPACK's depthwise kernels take: create_layer_operator runs it natively.
bool depthwise_runs_natively(const layer& l, const tensor_shape& input);
// Precondition: depthwise_runs_natively(l, input). `output_pixel_stride` as in operator_options.
result<std::unique_ptr<layer_operator>> create_depthwise_operator(const layer& l, const tensor_shape& input,
                                                                  size_t output_pixel_stride);

// What d3's depthwise loops share (native_operators' windows over 25 taps and
// depthwise_convolution's AVX-512 loop): one task per output row on the pool, buffers bound at
// setup, reshape to tiles of the same window.
class depthwise_rows_operator : public layer_operator {
 public:
  status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t pool) override;
  status run(pthreadpool_t pool) override;
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override;

 protected:
  depthwise_rows_operator(const layer& l, tensor_shape in, size_t out_stride)
      : name_(l.name), window_(l.window), act_(l.act), in_(in), out_(l.output_shape), out_stride_(out_stride) {}
  // Row `row` of the n * out_.h output rows.
  virtual void compute_row(size_t row) = 0;

  std::string name_;
  window_params window_;
  activation act_;
  tensor_shape in_, out_;
  size_t out_stride_;  // as operator_options::output_pixel_stride (0: dense)
  const float* x_ = nullptr;
  float* y_ = nullptr;
};

// GELU, layer norm, attention, the per-channel affine and the depthwise loop run sixteen lanes at a
// time on AVX-512 CPUs, eight on AVX2 ones and four elsewhere, with the same bits. Forces four
// everywhere in this process (tests compare the widths; not thread-safe against operators running
// at the time).
void force_four_lane_vectors(bool forced);

// The arithmetic the operators run on a block of pixels. Normalises `pixels` rows of `channels` floats each from x into y.
void layer_norm_rows(const float* x, float* y, size_t pixels, size_t channels, const float* gamma, const float* beta,
                     float epsilon);
void gelu_values(const float* x, float* y, size_t count);
void tanh_values(const float* x, float* y, size_t count);
// y[i] = a[i] * b[i] (one IEEE product each, as XNNPACK's multiply); y may be a or b.
void multiply_values(const float* a, const float* b, float* y, size_t count);
// sum[i] = x[i] + x[count + i] + ... over `rows` rows of `count` floats, added in row order (the
// same bits on every path). Precondition: rows >= 1; sum may be x.
void sum_rows(const float* x, size_t rows, size_t count, float* sum);
void preprocess_rows(const float* x, float* y, size_t pixels, size_t channels, const float* mean, const float* std);

}  // namespace d3
