// The graph IR: a DAG of named layers. Every layer produces exactly one tensor, named after the
// layer; edges are indices of producer layers. This is how torchvision models look once exported
// to ONNX (conv, batch norm, relu, pool, add, concat, flatten, gemm, softmax), so an importer maps
// node by node. Inference-time rewrites (batch-norm folding, activation fusion) run at load.
//
// Weight layouts (d3's, chosen so XNNPACK packs them without a transposition):
//   convolution:     [output_channels][kernel_h][kernel_w][input_channels / groups]   (OHWI)
//   fully_connected: [output_channels][input_channels]                                (PyTorch's)
//   batch_norm:      [gamma | beta | running_mean | running_var], channels floats each
//   layer_norm:      [gamma | beta], channels floats each
//   prepend_tokens:  [tokens][channels]
//   constant_add:    the addend in NHWC order, the output's shape
//   window_attention: the scores' addend [windows or 1][heads][tokens][tokens] (or empty)
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.hpp"
#include "kernels/tensor.hpp"

namespace d3 {

enum class layer_kind : uint8_t {
  input,                // a tensor the caller supplies
  convolution,          // 2-D, groups (depthwise when groups == channels), optional bias
  fully_connected,      // input [N, K] (H = W = 1)
  max_pool,
  average_pool,
  global_average_pool,  // [N,H,W,C] -> [N,1,1,C]
  add,                  // element-wise, equal shapes (residual), or a second operand of [N,1,1,C]
  concat,               // along channels
  softmax,              // over channels of an [N, C] tensor
  flatten,              // [N,H,W,C] -> [N, C*H*W] in NCHW order, as torch.flatten(x, 1)
  batch_norm,           // inference batch norm; folded into the producing convolution at load
  clamp,                // min/max (ReLU, ReLU6); fused into its producer at load when possible
  // Kinds real ONNX exports need beyond the five built-in models (appended: numbers are stable).
  multiply,             // element-wise product; the second operand may be [N,1,1,C] (per channel)
  sigmoid,              // element-wise logistic function
  channel_shuffle,      // ShuffleNet's shuffle with `groups`: out[c'] = in[(c' % groups) * (C / groups) + c' / groups]
  channel_slice,        // channels [channel_begin, channel_end) of the input (ONNX Split / Slice on axis 1)
  pad,                  // zero padding of H and W by window.pad (ONNX Pad, constant 0)
  layer_norm,           // per pixel over its channels: (x - mean) / sqrt(var + epsilon) * gamma + beta
  gelu,                 // element-wise x * (1 + erf(x / sqrt(2))) / 2
  // Token tensors (transformers): a tensor [N, H, W, C] holds H*W tokens of C channels in row-major
  // order; ViT's [N, T, C] is [N, T, 1, C].
  attention,            // multi-head attention of tokens: inputs q, k, v of equal shape; `groups`
                        // heads of C / groups channels; softmax(q k^T * scale) v per head
  prepend_tokens,       // weights (row_end x C floats) as row_end tokens before the input's:
                        // [N, row_end + H*W, 1, C]
  constant_add,         // x + weights, a constant of the output's shape (N = 1)
  row_slice,            // rows [row_begin, row_end) of H (ONNX Gather / Slice on the token axis)
  hardswish,            // element-wise x * clamp(x / 6 + 1/2, 0, 1) (MobileNetV3)
  preprocess,           // an 8-bit image (pixel values 0..255 as floats, NHWC) to a model's input:
                        // (x / 255 - mean[c]) / std[c] in float32, as torchvision's ToTensor then
                        // Normalize compute it; weights = mean, bias = std (C floats each)
  // Windowed attention (Swin) on a map [N, H, W, C] (appended: numbers are stable).
  window_attention,     // attention within each window of window.kernel_h x kernel_w pixels, spaced
                        // window.dilation_h/_w apart (1: Swin's and MaxViT's blocks; H / kernel:
                        // MaxViT's grid, one pixel of every block): windows in row-major order of
                        // (block row, row phase, block column, column phase). Inputs q, k, v of equal
                        // shape; `groups` heads; softmax(q k^T * scale + weights) v per window and
                        // head, where the weights (optional) add to the scores: [B][heads][T][T]
                        // floats, T = kernel_h * kernel_w, B = 1 (every window alike) or one per window
  roll,                 // cyclic shift: out[y][x] = in[(y + row_begin) mod H][(x + col_begin) mod W]
  spatial_slice,        // rows [row_begin, row_end) step window.stride_h and columns [col_begin,
                        // col_end) step window.stride_w of the input (ONNX Slice on H and W)
  tanh,                 // element-wise hyperbolic tangent (MaxViT's classifier)
  silu,                 // element-wise x * sigmoid(x) (EfficientNet's SiLU, which opset 13 exports
                        // as Sigmoid then Mul; prepare_for_inference fuses the pair)
};
const char* to_string(layer_kind kind);
result<layer_kind> layer_kind_from_string(std::string_view name);
inline std::ostream& operator<<(std::ostream& out, layer_kind kind) { return out << to_string(kind); }

struct padding {
  int top = 0, left = 0, bottom = 0, right = 0;
  bool operator==(const padding& o) const {
    return top == o.top && left == o.left && bottom == o.bottom && right == o.right;
  }
  bool any() const { return (top | left | bottom | right) != 0; }
};

// Sliding-window geometry shared by convolution and pooling.
struct window_params {
  int kernel_h = 1, kernel_w = 1;
  int stride_h = 1, stride_w = 1;
  int dilation_h = 1, dilation_w = 1;
  padding pad;
  bool ceil_mode = false;          // pooling: PyTorch's ceil_mode
  bool count_include_pad = true;   // average pooling: PyTorch's count_include_pad
};

// Output clamp fused into a layer: identity, ReLU = [0, inf), ReLU6 = [0, 6].
struct activation {
  float min = -INFINITY;
  float max = INFINITY;
  static activation none() { return {}; }
  static activation relu() { return {0.0f, INFINITY}; }
  static activation relu6() { return {0.0f, 6.0f}; }
  bool is_identity() const { return std::isinf(min) && min < 0 && std::isinf(max) && max > 0; }
  bool operator==(const activation& o) const { return min == o.min && max == o.max; }
};

// Read-only float weights shared between the graph, copies of it and whatever owns the bytes
// (a heap vector or a memory-mapped model file): copying a blob never copies the floats.
class weight_blob {
 public:
  weight_blob() = default;
  static weight_blob from_vector(std::vector<float> values);
  static weight_blob copy_of(const float* values, size_t count);
  // Borrows `values`; `owner` (e.g. a file mapping) stays alive as long as any copy of the blob.
  static weight_blob borrowed(const float* values, size_t count, std::shared_ptr<const void> owner);

  const float* data() const { return data_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const float* begin() const { return data_.get(); }
  const float* end() const { return data_.get() + size_; }
  // How many blobs share these values (a cache can tell whether anyone else still uses them).
  long use_count() const { return data_.use_count(); }

 private:
  std::shared_ptr<const float> data_;
  size_t size_ = 0;
};

struct layer {
  std::string name;
  layer_kind kind = layer_kind::input;
  std::vector<int> inputs;       // producer layer indices
  tensor_shape input_shape;      // input: the shape callers supply
  window_params window;          // convolution, max_pool, average_pool; pad uses window.pad
  int output_channels = 0;       // convolution, fully_connected
  int groups = 1;                // convolution, channel_shuffle
  int channel_begin = 0;         // channel_slice: first channel
  int channel_end = 0;           // channel_slice: one past the last channel
  float epsilon = 1e-5f;         // batch_norm, layer_norm
  float scale = 1.0f;            // attention: factor of q k^T before the softmax
  int row_begin = 0;             // row_slice, spatial_slice: first row; roll: the row that comes first
  int row_end = 0;               // row_slice: one past the last row; prepend_tokens: tokens prepended
  int col_begin = 0;             // spatial_slice: first column; roll: the column that comes first
  int col_end = 0;               // spatial_slice: one past the last column
  activation act;                // clamp applied to the output
  weight_blob weights;           // see the layouts at the top of this file
  weight_blob bias;              // [output_channels] or empty
  tensor_shape output_shape{0, 0, 0, 0};  // filled by infer_shapes()
};

// Bytes of a layer's weights and bias (what shipping it moves).
inline size_t weight_bytes(const layer& l) { return (l.weights.size() + l.bias.size()) * sizeof(float); }

struct graph {
  std::string name;
  std::vector<layer> layers;     // any order; infer_shapes() checks the edges form a DAG
  std::vector<int> outputs;      // layers whose tensors the model returns

  int find(std::string_view layer_name) const;  // -1 when absent
  std::vector<int> input_layers() const;
  std::vector<std::vector<int>> consumers() const;  // per layer, the layers reading its tensor
};

// Validates the graph (edges in range, unique names, acyclic, weights of the right size, shapes
// that fit) and fills every layer's output_shape. Errors name the layer and the bad value.
status infer_shapes(graph& g);
// One layer's output shape from its inputs' shapes, with infer_shapes' checks (weights included).
status infer_layer_shape(const layer& l, const std::vector<tensor_shape>& inputs, tensor_shape& output);

// A topological order of all layers; inputs first among equals, otherwise stable in index order.
result<std::vector<int>> topological_order(const graph& g);

// Output size of a window along one axis, with PyTorch's ceil_mode rule (the last window must
// start inside the input or its leading padding). Zero or negative means the window does not fit.
int window_output_size(int input, int kernel, int stride, int dilation, int pad_before, int pad_after,
                       bool ceil_mode);
// Extra trailing padding that makes a ceil_mode pooling window fit (0 without ceil_mode).
int ceil_mode_extra_padding(int input, int output, int kernel, int stride, int dilation, int pad_before,
                            int pad_after);

struct layer_cost {
  double flops = 0;          // 2 per multiply-accumulate; 1 per compared/added element otherwise
  size_t weight_bytes = 0;
  size_t output_bytes = 0;
};
// Precondition: infer_shapes(g) succeeded.
layer_cost cost_of(const graph& g, int layer_index);
double total_flops(const graph& g);

// A per-channel affine layer y[c] = clamp(x[c] * scale[c] + shift[c]), as the layer that computes
// exactly that: a depthwise 1x1 convolution (XNNPACK runs it with its channel-wise multiply-add
// kernel, and being pointwise it tiles with no halo). scale and shift hold one value per channel.
layer channel_affine_layer(std::string name, int input, std::vector<float> scale, std::vector<float> shift,
                           activation act = activation::none());
// The affine layer computing inference batch norm `bn` (shapes inferred) on its own input.
layer channel_affine_of_batch_norm(const layer& bn);

// Folds each batch_norm into the convolution that produces its input (when the convolution feeds
// nothing else; otherwise it becomes a channel_affine_layer), fuses each clamp into its producer
// (convolution, fully connected, add, pooling) when that producer feeds nothing else, and
// re-infers shapes. Folding rewrites weights in new buffers.
status prepare_for_inference(graph& g);

// Tensors entering and leaving a sub-graph (a set of non-input layers): inputs are tensors read by
// the set but produced outside it (graph inputs included); outputs are tensors produced inside and
// read outside it or returned by the graph. Both sorted by layer index.
struct subgraph_boundary {
  std::vector<int> inputs;
  std::vector<int> outputs;
};
subgraph_boundary boundary_of(const graph& g, const std::vector<int>& layer_set);

}  // namespace d3
