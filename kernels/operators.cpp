#include "kernels/operators.hpp"
#include "kernels/memory.hpp"

#include <xnnpack.h>
#include <pthreadpool.h>

#include "kernels/native_operators.hpp"
#include "kernels/depthwise_convolution.hpp"
#include "kernels/gemm_convolution.hpp"
#include <xmmintrin.h>
#include <pmmintrin.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

namespace d3 {

namespace {

const char* xnn_status_name(xnn_status s) {
  switch (s) {
    case xnn_status_success: return "success";
    case xnn_status_uninitialized: return "XNNPACK not initialized";
    case xnn_status_invalid_parameter: return "invalid parameter";
    case xnn_status_invalid_state: return "invalid state";
    case xnn_status_unsupported_parameter: return "unsupported parameter";
    case xnn_status_unsupported_hardware: return "unsupported hardware";
    case xnn_status_out_of_memory: return "out of memory";
  }
  return "unknown XNNPACK status";
}

// The one text of an XNNPACK failure: "convolution layer 'conv1': XNNPACK setup failed (invalid parameter)".
status xnnpack_error(layer_kind kind, const std::string& name, const char* step, xnn_status s) {
  return status::error(std::string(to_string(kind)) + " layer '" + name + "': XNNPACK " + step + " failed (" +
                       xnn_status_name(s) + ")");
}

status op_error(const layer& l, const char* step, xnn_status s) { return xnnpack_error(l.kind, l.name, step, s); }

struct xnn_deleter {
  void operator()(xnn_operator_t op) const { xnn_delete_operator(op); }
};
using xnn_handle = std::unique_ptr<xnn_operator, xnn_deleter>;

// Whether an operator created for `old_in` -> `old_out` can take `in` -> `out` (reshape): the same
// number of inputs and the same channels, one batch size, and an output size that follows from the
// inputs with the parameters fixed at create (`pad`: the padding the operator applies, for pooling
// including any ceil_mode overflow; `ceil_mode`: only for the native average pool, which applies
// PyTorch's rule itself).
status check_reshape(const std::string& kind_name, const std::string& name, layer_kind kind, const window_params& w,
                     const padding& pad, bool ceil_mode, const std::vector<tensor_shape>& old_in,
                     const tensor_shape& old_out, const std::vector<tensor_shape>& in, const tensor_shape& out) {
  auto fail = [&](const std::string& why) {
    std::string shapes;
    for (const tensor_shape& s : in) shapes += (shapes.empty() ? "" : ", ") + s.to_string();
    return status::error(kind_name + " layer '" + name + "': cannot reshape to inputs " + shapes + " and output " +
                         out.to_string() + ": " + why);
  };
  if (in.size() != old_in.size())
    return fail(std::to_string(in.size()) + " input shapes for " + std::to_string(old_in.size()) + " inputs");
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i].c != old_in[i].c)
      return fail("input " + std::to_string(i) + " has " + std::to_string(in[i].c) + " channels, created for " +
                  std::to_string(old_in[i].c));
    if (in[i].n != out.n || in[i].h < 1 || in[i].w < 1) return fail("input " + std::to_string(i) + " does not fit");
  }
  if (kind != layer_kind::flatten && out.c != old_out.c)
    return fail("output has " + std::to_string(out.c) + " channels, created for " + std::to_string(old_out.c));
  int h = in.empty() ? 0 : in[0].h, wd = in.empty() ? 0 : in[0].w;
  switch (kind) {
    case layer_kind::convolution:
    case layer_kind::max_pool:
    case layer_kind::average_pool:
      h = window_output_size(h, w.kernel_h, w.stride_h, w.dilation_h, pad.top, pad.bottom, ceil_mode);
      wd = window_output_size(wd, w.kernel_w, w.stride_w, w.dilation_w, pad.left, pad.right, ceil_mode);
      break;
    case layer_kind::pad:
      h += pad.top + pad.bottom;
      wd += pad.left + pad.right;
      break;
    case layer_kind::add:
    case layer_kind::multiply:
      if (in[1] != in[0] && !(in[1].h == 1 && in[1].w == 1)) return fail("operands neither equal nor per channel");
      break;
    case layer_kind::concat:
      for (const tensor_shape& s : in)
        if (s.h != h || s.w != wd) return fail("inputs of different sizes");
      break;
    case layer_kind::global_average_pool:
      h = wd = 1;
      break;
    case layer_kind::flatten:
      if (out.c != in[0].c * in[0].h * in[0].w) return fail("flattened size differs");
      h = wd = 1;
      break;
    default:  // element-wise, fully connected, softmax: spatial size unchanged
      break;
  }
  if (out.h != h || out.w != wd)
    return fail("the output should be " + std::to_string(h) + "x" + std::to_string(wd) + " (HxW)");
  return status::ok();
}

// One XNNPACK operator; `bind` calls the operator-specific setup with the bound buffers.
class xnn_layer_operator : public layer_operator {
 public:
  using binder = xnn_status (*)(xnn_layer_operator&, const std::vector<const float*>&, float*, pthreadpool_t);
  xnn_layer_operator(const layer& l, xnn_operator_t op, binder bind, std::vector<tensor_shape> in, tensor_shape out,
                     const padding& applied_pad)
      : name_(l.name), kind_(l.kind), op_(op), bind_(bind), in_(std::move(in)), out_(out), pad_(l.window.pad),
        window_(l.window), applied_pad_(applied_pad),
        channel_begin_(l.kind == layer_kind::channel_slice ? size_t(std::max(l.channel_begin, 0)) : 0) {}

  status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t pool) override {
    xnn_status s = bind_(*this, inputs, output, pool);
    if (s != xnn_status_success) return error("setup", s);
    return status::ok();
  }
  status run(pthreadpool_t pool) override {
    xnn_status s = xnn_run_operator(op_.get(), pool);
    if (s != xnn_status_success) return error("run", s);
    return status::ok();
  }
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    D3_RETURN_IF_ERROR(
        check_reshape(to_string(kind_), name_, kind_, window_, applied_pad_, false, in_, out_, inputs, output));
    in_ = inputs;
    out_ = output;
    return status::ok();
  }

  xnn_operator_t op() const { return op_.get(); }
  const tensor_shape& in(size_t i) const { return in_[i]; }
  const tensor_shape& out() const { return out_; }
  const padding& pad() const { return pad_; }             // pad
  size_t channel_begin() const { return channel_begin_; }  // channel_slice

 private:
  status error(const char* step, xnn_status s) const { return xnnpack_error(kind_, name_, step, s); }
  std::string name_;
  layer_kind kind_;
  xnn_handle op_;
  binder bind_;
  std::vector<tensor_shape> in_;
  tensor_shape out_;
  padding pad_;
  window_params window_;  // convolution and pooling: for reshape's checks
  padding applied_pad_;   // the padding XNNPACK applies (pooling: ceil_mode overflow included)
  size_t channel_begin_;
};

using created = result<std::unique_ptr<layer_operator>>;

created wrap(const layer& l, xnn_status s, xnn_operator_t op, xnn_layer_operator::binder bind,
             const std::vector<tensor_shape>& in, const padding* applied_pad = nullptr) {
  if (s != xnn_status_success) return op_error(l, "create", s);
  return std::unique_ptr<layer_operator>(
      new xnn_layer_operator(l, op, bind, in, l.output_shape, applied_pad ? *applied_pad : l.window.pad));
}

// Bytes of packed weights one convolution block may hold: about half of a core's L2 cache, so the
// weights of a block stay in L2 while every output pixel tile streams past them.
// Measured side by side on VGG-16 (Zen 4, 1 MB L2), one thread: 256 KB and 512 KB blocks both
// take the 14x14x512 layers from 8.7 to 8.2 ms and the 28x28x512 ones from 33.6 to 32.4 ms. On two
// threads blocks cost more than they save (resnet18 17.3 -> 18.2 ms), so they are single-thread only.
constexpr size_t convolution_block_bytes() { return size_t(256) << 10; }

// A convolution as one or more XNNPACK operators, each computing a block of output channels into
// its slice of the output (output channel stride = the full row). XNNPACK's single-threaded GEMM
// streams all of a layer's weights once per tile of 7 output pixels; when those weights exceed L2
// (VGG's and ResNet's 512-channel 3x3 layers hold 9.4 MB) every tile reloads them from L3. Blocks
// small enough for L2 turn that into L2 reads. Each output element is still the same dot product
// in the same order, so the result is bit-identical to one operator.
class convolution_operator : public layer_operator {
 public:
  static created create(const layer& l, const std::vector<tensor_shape>& in, size_t out_stride, int threads) {
    const window_params& w = l.window;
    const size_t group_in = size_t(in[0].c / l.groups);
    const size_t group_out = size_t(l.output_channels / l.groups);
    const size_t row_stride = out_stride ? out_stride : size_t(l.output_channels);
    const size_t bytes_per_channel = size_t(w.kernel_h) * w.kernel_w * group_in * sizeof(float);
    size_t block = group_out;
    if (threads == 1 && l.groups == 1 && bytes_per_channel * group_out > convolution_block_bytes()) {
      block = std::max<size_t>(16, convolution_block_bytes() / bytes_per_channel / 16 * 16);
      block = std::min(block, group_out);
    }
    std::unique_ptr<convolution_operator> self(new convolution_operator);
    self->in_ = in[0];
    self->out_ = l.output_shape;
    self->window_ = l.window;
    self->name_ = l.name;
    for (size_t first = 0; first < group_out; first += block) {
      const size_t count = std::min(block, group_out - first);
      const size_t channels = l.groups == 1 ? count : group_out;
      xnn_operator_t op = nullptr;
      xnn_status s = xnn_create_convolution2d_nhwc_f32(
          w.pad.top, w.pad.right, w.pad.bottom, w.pad.left, w.kernel_h, w.kernel_w, w.stride_h, w.stride_w,
          w.dilation_h, w.dilation_w, l.groups, group_in, channels, /*input_channel_stride=*/in[0].c,
          /*output_channel_stride=*/row_stride, l.weights.data() + first * bytes_per_channel / sizeof(float),
          l.bias.empty() ? nullptr : l.bias.data() + first, l.act.min, l.act.max, 0, &op);
      if (s != xnn_status_success) return op_error(l, "create", s);
      self->blocks_.push_back({xnn_handle(op), first});
    }
    return std::unique_ptr<layer_operator>(std::move(self));
  }
  status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t pool) override {
    for (block& b : blocks_) {
      xnn_status s = xnn_setup_convolution2d_nhwc_f32(b.op.get(), in_.n, in_.h, in_.w, inputs[0],
                                                      output + b.channel_offset, pool);
      if (s != xnn_status_success) return xnnpack_error(layer_kind::convolution, name_, "setup", s);
    }
    return status::ok();
  }
  status run(pthreadpool_t pool) override {
    for (block& b : blocks_) {
      xnn_status s = xnn_run_operator(b.op.get(), pool);
      if (s != xnn_status_success) return xnnpack_error(layer_kind::convolution, name_, "run", s);
    }
    return status::ok();
  }
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    D3_RETURN_IF_ERROR(check_reshape("convolution", name_, layer_kind::convolution, window_, window_.pad, false, {in_},
                                     out_, inputs, output));
    in_ = inputs[0];
    out_ = output;
    return status::ok();
  }

 private:
  struct block {
    xnn_handle op;
    size_t channel_offset;
  };
  std::vector<block> blocks_;
  tensor_shape in_, out_;
  window_params window_;
  std::string name_;
};

created create_fully_connected(const layer& l, const std::vector<tensor_shape>& in) {
  xnn_operator_t op = nullptr;
  xnn_status s = xnn_create_fully_connected_nc_f32(in[0].c, l.output_channels, in[0].c, l.output_channels,
                                                   l.weights.data(), l.bias.empty() ? nullptr : l.bias.data(),
                                                   l.act.min, l.act.max, 0, &op);
  return wrap(l, s, op,
              [](xnn_layer_operator& self, const std::vector<const float*>& x, float* y, pthreadpool_t pool) {
                return xnn_setup_fully_connected_nc_f32(self.op(), self.in(0).n, x[0], y, pool);
              },
              in);
}

// Pooling padding as XNNPACK needs it: PyTorch's ceil_mode becomes extra bottom/right padding.
padding pooling_padding(const layer& l, const tensor_shape& in) {
  const window_params& w = l.window;
  padding p = w.pad;
  p.bottom += ceil_mode_extra_padding(in.h, l.output_shape.h, w.kernel_h, w.stride_h, w.dilation_h, w.pad.top,
                                      w.pad.bottom);
  p.right += ceil_mode_extra_padding(in.w, l.output_shape.w, w.kernel_w, w.stride_w, w.dilation_w, w.pad.left,
                                     w.pad.right);
  return p;
}

// A native operator of one input: setup() binds the buffers run() reads and writes.
class single_input_operator : public layer_operator {
 public:
  status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t) override {
    x_ = inputs[0];
    y_ = output;
    return status::ok();
  }

 protected:
  const float* x_ = nullptr;
  float* y_ = nullptr;
};

// Average pooling that XNNPACK cannot express: a divisor counting padding (count_include_pad with
// padding) or a 1x1 window (also serves 1x1 max pooling). PyTorch's rule: the divisor counts the padded window clipped to the
// padded map, then the sum runs over the part inside the image.
class native_average_pool : public single_input_operator {
 public:
  native_average_pool(const layer& l, tensor_shape in, size_t out_stride)
      : name_(l.name), kind_(l.kind), w_(l.window), act_(l.act), in_(in), out_(l.output_shape),
        out_stride_(out_stride ? out_stride : in.c), sums_(size_t(in.c)) {}
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    D3_RETURN_IF_ERROR(check_reshape(to_string(kind_), name_, layer_kind::average_pool, w_, w_.pad, w_.ceil_mode, {in_},
                                     out_, inputs, output));
    in_ = inputs[0];
    out_ = output;
    return status::ok();
  }
  status run(pthreadpool_t) override {
    const int C = in_.c;
    for (int n = 0; n < out_.n; ++n)
      for (int oh = 0; oh < out_.h; ++oh)
        for (int ow = 0; ow < out_.w; ++ow) {
          int h0 = oh * w_.stride_h - w_.pad.top, w0 = ow * w_.stride_w - w_.pad.left;
          int h1 = std::min(h0 + w_.kernel_h, in_.h + w_.pad.bottom);
          int w1 = std::min(w0 + w_.kernel_w, in_.w + w_.pad.right);
          int pool_size = (h1 - h0) * (w1 - w0);
          h0 = std::max(h0, 0), w0 = std::max(w0, 0);
          h1 = std::min(h1, in_.h), w1 = std::min(w1, in_.w);
          int divisor = w_.count_include_pad ? pool_size : (h1 - h0) * (w1 - w0);
          std::fill(sums_.begin(), sums_.end(), 0.0f);
          for (int h = h0; h < h1; ++h)
            for (int x = w0; x < w1; ++x) {
              const float* p = x_ + ((size_t(n) * in_.h + h) * in_.w + x) * C;
              for (int c = 0; c < C; ++c) sums_[c] += p[c];
            }
          float* q = y_ + ((size_t(n) * out_.h + oh) * out_.w + ow) * out_stride_;
          const float scale = 1.0f / float(divisor);
          for (int c = 0; c < C; ++c) q[c] = std::min(std::max(sums_[c] * scale, act_.min), act_.max);
        }
    return status::ok();
  }

 private:
  std::string name_;
  layer_kind kind_;
  window_params w_;
  activation act_;
  tensor_shape in_, out_;
  size_t out_stride_;
  std::vector<float> sums_;
};

}  // namespace

bool computes_in_place(const layer& l) { return l.kind == layer_kind::silu; }

bool reads_strided_input(const layer& l, const std::vector<tensor_shape>& inputs) {
  return inputs.size() == 1 && l.kind == layer_kind::convolution && channel_affine_runs_natively(l, inputs[0]);
}

bool average_pool_runs_natively(const layer& l, const tensor_shape& input) {
  const window_params& w = l.window;
  // XNNPACK divides by the number of in-image elements whenever there is padding, which is
  // PyTorch's count_include_pad=False; without any padding both rules divide by the window size.
  const bool xnnpack_matches = (!w.count_include_pad || !pooling_padding(l, input).any()) && w.dilation_h == 1 &&
                               w.dilation_w == 1 && w.kernel_h * w.kernel_w > 1;
  return !xnnpack_matches;
}

namespace {

created create_max_pool(const layer& l, const std::vector<tensor_shape>& in, size_t out_stride) {
  const window_params& w = l.window;
  // XNNPACK rejects one-element windows; the maximum of one element is the element, which the
  // native averaging loop computes exactly (x * 1.0f == x; PyTorch allows no padding here).
  if (w.kernel_h * w.kernel_w == 1 && !w.pad.any())
    return std::unique_ptr<layer_operator>(new native_average_pool(l, in[0], out_stride));
  // XNNPACK pads max pooling by clamping window coordinates into the image, so padding never wins
  // (PyTorch's -inf padding).
  padding p = pooling_padding(l, in[0]);
  xnn_operator_t op = nullptr;
  xnn_status s = xnn_create_max_pooling2d_nhwc_f32(p.top, p.right, p.bottom, p.left, w.kernel_h, w.kernel_w,
                                                   w.stride_h, w.stride_w, w.dilation_h, w.dilation_w, in[0].c,
                                                   in[0].c, out_stride ? out_stride : size_t(in[0].c), l.act.min,
                                                   l.act.max, 0, &op);
  return wrap(l, s, op,
              [](xnn_layer_operator& self, const std::vector<const float*>& x, float* y, pthreadpool_t pool) {
                return xnn_setup_max_pooling2d_nhwc_f32(self.op(), self.in(0).n, self.in(0).h, self.in(0).w, x[0], y,
                                                        pool);
              },
              in, &p);
}

created create_average_pool(const layer& l, const std::vector<tensor_shape>& in, size_t out_stride,
                            bool force_native) {
  const window_params& w = l.window;
  padding p = pooling_padding(l, in[0]);
  if (force_native || average_pool_runs_natively(l, in[0])) {
    if (w.dilation_h != 1 || w.dilation_w != 1)
      return status::error("average_pool layer '" + l.name + "': dilation " + std::to_string(w.dilation_h) + "x" +
                           std::to_string(w.dilation_w) + " is not supported");
    return std::unique_ptr<layer_operator>(new native_average_pool(l, in[0], out_stride));
  }
  xnn_operator_t op = nullptr;
  xnn_status s = xnn_create_average_pooling2d_nhwc_f32(p.top, p.right, p.bottom, p.left, w.kernel_h, w.kernel_w,
                                                       w.stride_h, w.stride_w, in[0].c, in[0].c,
                                                       out_stride ? out_stride : size_t(in[0].c), l.act.min,
                                                       l.act.max, 0, &op);
  return wrap(l, s, op,
              [](xnn_layer_operator& self, const std::vector<const float*>& x, float* y, pthreadpool_t pool) {
                return xnn_setup_average_pooling2d_nhwc_f32(self.op(), self.in(0).n, self.in(0).h, self.in(0).w,
                                                            x[0], y, pool);
              },
              in, &p);
}

// Global average pooling with pairwise summation over the pixels. XNNPACK's operator adds the
// pixels one after another (7 rows a pass into one accumulator): over EfficientNet-B6's 112 x 112
// maps its mean was 1.7e-6 off the float64 mean, 10x PyTorch's (whose reduction is a cascade), and
// the squeeze-excitation gates behind it carried that error through every block. Pairwise: the
// rounding error grows with log2(pixels), not with their count.
class native_global_average_pool : public single_input_operator {
 public:
  native_global_average_pool(const layer& l, tensor_shape in)
      : name_(l.name), act_(l.act), in_(in), out_(l.output_shape) {
    size_scratch();
  }
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    D3_RETURN_IF_ERROR(check_reshape(to_string(layer_kind::global_average_pool), name_, layer_kind::global_average_pool,
                                     window_params{}, padding{}, false, {in_}, out_, inputs, output));
    in_ = inputs[0];
    out_ = output;
    size_scratch();
    return status::ok();
  }
  status run(pthreadpool_t) override {
    const size_t C = size_t(in_.c), pixels = size_t(in_.h) * size_t(in_.w);
    const float scale = 1.0f / float(pixels);
    for (int n = 0; n < in_.n; ++n) {
      float* sum = scratch_.data();
      pairwise_sum(x_ + size_t(n) * pixels * C, pixels, sum, sum + C);
      float* y = y_ + size_t(n) * C;
      for (size_t c = 0; c < C; ++c) y[c] = std::min(std::max(sum[c] * scale, act_.min), act_.max);
    }
    return status::ok();
  }

 private:
  // Pixels summed one after another at the leaves of the pairwise tree: a block of a few KB of
  // channels stays in L1 and the channel loop vectorises.
  static constexpr size_t leaf_pixels = 16;

  // One C-float buffer per tree level below the top (depth = ceil(log2(pixels / leaf))).
  void size_scratch() {
    size_t levels = 1;
    for (size_t p = size_t(in_.h) * size_t(in_.w); p > leaf_pixels; p = (p + 1) / 2) ++levels;
    scratch_.assign((levels + 1) * size_t(in_.c), 0.0f);
  }

  // sum[c] = the sum of `count` pixels starting at x (C channels each); `spare` holds the buffers
  // of the levels below this one. Preconditions: count >= 1, spare == sum + C.
  void pairwise_sum(const float* x, size_t count, float* sum, float* spare) const {
    const size_t C = size_t(in_.c);
    if (count <= leaf_pixels) {
      sum_rows(x, count, C, sum);
      return;
    }
    const size_t half = count / 2;
    pairwise_sum(x, half, sum, spare);
    pairwise_sum(x + half * C, count - half, spare, spare + C);
    // sum + spare: the two rows of C floats at sum.
    sum_rows(sum, 2, C, sum);
  }

  std::string name_;
  activation act_;
  tensor_shape in_, out_;
  std::vector<float> scratch_;
};

created create_global_average_pool(const layer& l, const std::vector<tensor_shape>& in) {
  return std::unique_ptr<layer_operator>(new native_global_average_pool(l, in[0]));
}

// Element-wise binary operators (add, multiply): the second operand may be [N,1,1,C], which
// XNNPACK broadcasts over H and W from the N-D shapes.
using binary_create = xnn_status (*)(float, float, uint32_t, xnn_operator_t*);
using binary_setup = xnn_status (*)(xnn_operator_t, size_t, const size_t*, size_t, const size_t*, const float*,
                                    const float*, float*, pthreadpool_t);

template <binary_create create, binary_setup setup>
created create_binary(const layer& l, const std::vector<tensor_shape>& in) {
  xnn_operator_t op = nullptr;
  xnn_status s = create(l.act.min, l.act.max, 0, &op);
  return wrap(l, s, op,
              [](xnn_layer_operator& self, const std::vector<const float*>& x, float* y, pthreadpool_t pool) {
                const tensor_shape& a = self.in(0);
                const tensor_shape& b = self.in(1);
                size_t shape_a[4] = {size_t(a.n), size_t(a.h), size_t(a.w), size_t(a.c)};
                size_t shape_b[4] = {size_t(b.n), size_t(b.h), size_t(b.w), size_t(b.c)};
                return setup(self.op(), 4, shape_a, 4, shape_b, x[0], x[1], y, pool);
              },
              in);
}

// Element-wise unary operators over [pixels, channels] (sigmoid, hardswish).
using unary_create = xnn_status (*)(size_t, size_t, size_t, uint32_t, xnn_operator_t*);
using unary_setup = xnn_status (*)(xnn_operator_t, size_t, const float*, float*, pthreadpool_t);

template <unary_create create, unary_setup setup>
created create_unary(const layer& l, const std::vector<tensor_shape>& in) {
  xnn_operator_t op = nullptr;
  xnn_status s = create(in[0].c, in[0].c, in[0].c, 0, &op);
  return wrap(l, s, op,
              [](xnn_layer_operator& self, const std::vector<const float*>& x, float* y, pthreadpool_t pool) {
                const tensor_shape& a = self.in(0);
                return setup(self.op(), size_t(a.n) * a.h * a.w, x[0], y, pool);
              },
              in);
}

// SiLU, x * sigmoid(x), in blocks small enough for L1: XNNPACK's sigmoid of a block into a
// scratch block, then its product with x into the output while both are still cached. Every value
// gets the bits a sigmoid layer then a multiply layer give (XNNPACK's sigmoid, one IEEE product),
// in one pass over memory instead of two (the pair reads x twice and writes and reads the gate).
// Each task of the pool owns one XNNPACK operator and scratch block, set up and run without the
// pool, so tasks never share one. The output may be the input (each value is read before it is
// written).
class silu_operator : public single_input_operator {
 public:
  static created create(const layer& l, const tensor_shape& in, int threads) {
    std::unique_ptr<silu_operator> self(new silu_operator(l, in));
    for (int t = 0; t < std::max(threads, 1); ++t) {
      xnn_operator_t op = nullptr;
      xnn_status s = xnn_create_sigmoid_nc_f32(1, 1, 1, 0, &op);
      if (s != xnn_status_success) return op_error(l, "create", s);
      self->sigmoids_.emplace_back(op);
    }
    self->scratch_.resize(self->sigmoids_.size() * block_values);
    return std::unique_ptr<layer_operator>(std::move(self));
  }

  status run(pthreadpool_t pool) override {
    failure_ = xnn_status_success;
    if (sigmoids_.size() == 1 || pthreadpool_get_threads_count(pool) <= 1) {
      compute_share(0);
    } else {
      pthreadpool_parallelize_1d(
          pool, [](void* self, size_t task) { static_cast<silu_operator*>(self)->compute_share(task); }, this,
          sigmoids_.size(), 0);
    }
    if (failure_ != xnn_status_success) return xnnpack_error(layer_kind::silu, name_, "sigmoid", failure_);
    return status::ok();
  }
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    D3_RETURN_IF_ERROR(check_reshape(to_string(layer_kind::silu), name_, layer_kind::silu, window_params{}, padding{},
                                     false, {in_}, in_, inputs, output));
    in_ = output;
    return status::ok();
  }

 private:
  // 16 KB of values: the block of x and its sigmoid fit L1 next to each other.
  static constexpr size_t block_values = 4096;

  silu_operator(const layer& l, tensor_shape in) : name_(l.name), in_(in) {}

  // Task `task` of sigmoids_.size(): an equal share of the blocks, with its own sigmoid operator.
  void compute_share(size_t task) {
    const size_t count = in_.elements(), tasks = sigmoids_.size();
    const size_t blocks = (count + block_values - 1) / block_values;
    xnn_operator_t sigmoid = sigmoids_[task].get();
    float* gate = scratch_.data() + task * block_values;
    for (size_t b = blocks * task / tasks; b < blocks * (task + 1) / tasks; ++b) {
      const size_t first = b * block_values, n = std::min(block_values, count - first);
      const float* x = x_ + first;
      float* y = y_ + first;
      xnn_status s = xnn_setup_sigmoid_nc_f32(sigmoid, n, x, gate, nullptr);
      if (s == xnn_status_success) s = xnn_run_operator(sigmoid, nullptr);
      if (s != xnn_status_success) {
        failure_ = s;  // any task's failure; which one does not matter
        return;
      }
      multiply_values(x, gate, y, n);
    }
  }

  std::string name_;
  tensor_shape in_;
  std::vector<xnn_handle> sigmoids_;
  std::vector<float> scratch_;  // block_values floats per task
  std::atomic<xnn_status> failure_{xnn_status_success};
};

xnn_status setup_copy(xnn_layer_operator& self, const std::vector<const float*>& x, float* y, pthreadpool_t pool) {
  const tensor_shape& a = self.in(0);
  return xnn_setup_copy_nc_x32(self.op(), size_t(a.n) * a.h * a.w, x[0] + self.channel_begin(), y, pool);
}

// XNNPACK's shuffle views each pixel's channels as [groups][C / groups] and writes the transpose
// [C / groups][groups]: out[c'] = in[(c' % groups) * (C / groups) + c' / groups], which is
// PyTorch's view(N, g, C/g, H, W).transpose(1, 2). It needs at least two groups; one group is a copy.
created create_channel_shuffle(const layer& l, const std::vector<tensor_shape>& in) {
  const size_t channels = size_t(in[0].c);
  if (l.groups < 1 || channels % size_t(l.groups) != 0)
    return status::error("channel_shuffle layer '" + l.name + "': groups " + std::to_string(l.groups) +
                         " do not divide the " + std::to_string(channels) + " input channels");
  xnn_operator_t op = nullptr;
  if (l.groups == 1) {
    xnn_status s = xnn_create_copy_nc_x32(channels, channels, channels, 0, &op);
    return wrap(l, s, op, setup_copy, in);
  }
  xnn_status s = xnn_create_channel_shuffle_nc_x32(size_t(l.groups), channels / size_t(l.groups), channels, channels,
                                                   0, &op);
  return wrap(l, s, op,
              [](xnn_layer_operator& self, const std::vector<const float*>& x, float* y, pthreadpool_t pool) {
                const tensor_shape& a = self.in(0);
                return xnn_setup_channel_shuffle_nc_x32(self.op(), size_t(a.n) * a.h * a.w, x[0], y, pool);
              },
              in);
}

// Channels [begin, end): a strided copy reading `end - begin` channels of every input pixel,
// starting `begin` floats into the input.
created create_channel_slice(const layer& l, const std::vector<tensor_shape>& in) {
  if (l.channel_begin < 0 || l.channel_begin >= l.channel_end || l.channel_end > in[0].c)
    return status::error("channel_slice layer '" + l.name + "': channels [" + std::to_string(l.channel_begin) + ", " +
                         std::to_string(l.channel_end) + ") are not a non-empty range within the " +
                         std::to_string(in[0].c) + " input channels");
  const size_t count = size_t(l.channel_end - l.channel_begin);
  xnn_operator_t op = nullptr;
  xnn_status s = xnn_create_copy_nc_x32(count, size_t(in[0].c), count, 0, &op);
  return wrap(l, s, op, setup_copy, in);
}

// Zero padding of H and W (XNNPACK's N-D constant pad; N and C are not padded).
created create_pad(const layer& l, const std::vector<tensor_shape>& in) {
  const padding& p = l.window.pad;
  if (p.top < 0 || p.left < 0 || p.bottom < 0 || p.right < 0)
    return status::error("pad layer '" + l.name + "': negative padding");
  const uint32_t zero = 0;  // the bits of 0.0f; XNNPACK copies the value at create
  xnn_operator_t op = nullptr;
  xnn_status s = xnn_create_constant_pad_nd_x32(&zero, 0, &op);
  return wrap(l, s, op,
              [](xnn_layer_operator& self, const std::vector<const float*>& x, float* y, pthreadpool_t pool) {
                const tensor_shape& a = self.in(0);
                const padding& p = self.pad();
                size_t shape[4] = {size_t(a.n), size_t(a.h), size_t(a.w), size_t(a.c)};
                size_t before[4] = {0, size_t(p.top), size_t(p.left), 0};
                size_t after[4] = {0, size_t(p.bottom), size_t(p.right), 0};
                return xnn_setup_constant_pad_nd_x32(self.op(), 4, shape, before, after, x[0], y, pool);
              },
              in);
}

created create_softmax(const layer& l, const std::vector<tensor_shape>& in) {
  xnn_operator_t op = nullptr;
  xnn_status s = xnn_create_softmax_nc_f32(in[0].c, in[0].c, in[0].c, 0, &op);
  return wrap(l, s, op,
              [](xnn_layer_operator& self, const std::vector<const float*>& x, float* y, pthreadpool_t pool) {
                return xnn_setup_softmax_nc_f32(self.op(), self.in(0).n, x[0], y, pool);
              },
              in);
}

created create_clamp(const layer& l, const std::vector<tensor_shape>& in, size_t out_stride) {
  xnn_operator_t op = nullptr;
  xnn_status s = xnn_create_clamp_nc_f32(in[0].c, in[0].c, out_stride ? out_stride : size_t(in[0].c), l.act.min,
                                         l.act.max, 0, &op);
  return wrap(l, s, op,
              [](xnn_layer_operator& self, const std::vector<const float*>& x, float* y, pthreadpool_t pool) {
                const tensor_shape& a = self.in(0);
                return xnn_setup_clamp_nc_f32(self.op(), size_t(a.n) * a.h * a.w, x[0], y, pool);
              },
              in);
}

// Concatenation along channels: one strided XNNPACK copy per input, each into its channel slice.
class concat_operator : public layer_operator {
 public:
  // `out_stride`: floats between output pixels (0: dense), wider when the concat is a channel
  // prefix of another concat's buffer.
  static created create(const layer& l, const std::vector<tensor_shape>& in, const std::vector<bool>& in_place,
                         size_t out_stride) {
    std::unique_ptr<concat_operator> self(new concat_operator);
    self->out_ = l.output_shape;
    self->in_ = in;
    size_t offset = 0;
    for (size_t i = 0; i < in.size(); ++i) {
      bool skip = i < in_place.size() && in_place[i];
      if (!skip) {
        xnn_operator_t op = nullptr;
        xnn_status s = xnn_create_copy_nc_x32(in[i].c, in[i].c, out_stride ? out_stride : size_t(l.output_shape.c), 0, &op);
        if (s != xnn_status_success) return op_error(l, "create", s);
        self->copies_.push_back({xnn_handle(op), i, offset});
      }
      offset += size_t(in[i].c);
    }
    self->name_ = l.name;
    return std::unique_ptr<layer_operator>(std::move(self));
  }
  status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t pool) override {
    const size_t pixels = size_t(out_.n) * out_.h * out_.w;
    for (copy& c : copies_) {
      xnn_status s = xnn_setup_copy_nc_x32(c.op.get(), pixels, inputs[c.input], output + c.channel_offset, pool);
      if (s != xnn_status_success) return xnnpack_error(layer_kind::concat, name_, "setup", s);
    }
    return status::ok();
  }
  status run(pthreadpool_t pool) override {
    for (copy& c : copies_) {
      xnn_status s = xnn_run_operator(c.op.get(), pool);
      if (s != xnn_status_success) return xnnpack_error(layer_kind::concat, name_, "run", s);
    }
    return status::ok();
  }
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    D3_RETURN_IF_ERROR(
        check_reshape("concat", name_, layer_kind::concat, {}, {}, false, in_, out_, inputs, output));
    in_ = inputs;
    out_ = output;
    return status::ok();
  }

 private:
  struct copy {
    xnn_handle op;
    size_t input;
    size_t channel_offset;
  };
  std::vector<copy> copies_;
  std::vector<tensor_shape> in_;
  tensor_shape out_;
  std::string name_;
};

// torch.flatten(x, 1) on NHWC storage: a transposition to NCHW order (a plain copy when H = W = 1).
class flatten_operator : public single_input_operator {
 public:
  flatten_operator(const layer& l, tensor_shape in) : name_(l.name), in_(in), out_(l.output_shape) {}
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    D3_RETURN_IF_ERROR(check_reshape("flatten", name_, layer_kind::flatten, {}, {}, false, {in_}, out_, inputs, output));
    in_ = inputs[0];
    out_ = output;
    return status::ok();
  }
  status run(pthreadpool_t) override {
    if (in_.h == 1 && in_.w == 1)
      std::memcpy(y_, x_, in_.bytes());
    else
      nhwc_to_nchw(x_, in_, y_);
    return status::ok();
  }

 private:
  std::string name_;
  tensor_shape in_, out_;
};

}  // namespace

status initialize_compute() {
  static std::once_flag once;
  static xnn_status init = xnn_status_success;
  std::call_once(once, [] { init = xnn_initialize(xnnpack_allocator()); });
  // Per thread: denormals are flushed to zero (both on results and on inputs).
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
  _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
  if (init != xnn_status_success)
    return status::error(std::string("XNNPACK initialization failed (") + xnn_status_name(init) + ")");
  return status::ok();
}

result<std::unique_ptr<layer_operator>> create_layer_operator(const layer& l, const std::vector<tensor_shape>& in,
                                                              const operator_options& options) {
  D3_RETURN_IF_ERROR(initialize_compute());
  const std::string where = std::string(to_string(l.kind)) + " layer '" + l.name + "'";
  if (l.output_shape.elements() == 0) return status::error(where + ": output shape unknown (run infer_shapes first)");
  if (l.kind != layer_kind::input && in.empty()) return status::error(where + ": has no inputs");
  if (in.size() != l.inputs.size() && l.kind != layer_kind::input)
    return status::error(where + ": got " + std::to_string(in.size()) + " input shapes for " +
                         std::to_string(l.inputs.size()) + " inputs");
  // XNNPACK reads as many weights as the parameters imply: check the sizes before it does.
  if (l.kind == layer_kind::convolution || l.kind == layer_kind::fully_connected) {
    size_t per_output = l.kind == layer_kind::fully_connected
                            ? size_t(in[0].c)
                            : size_t(l.window.kernel_h) * l.window.kernel_w * size_t(in[0].c / std::max(l.groups, 1));
    if (l.groups < 1 || in[0].c % l.groups != 0)
      return status::error(where + ": input channels " + std::to_string(in[0].c) + " do not split into " +
                           std::to_string(l.groups) + " groups");
    if (l.weights.size() != per_output * size_t(l.output_channels))
      return status::error(where + ": weights hold " + std::to_string(l.weights.size()) + " floats, expected " +
                           std::to_string(per_output * size_t(l.output_channels)));
    if (!l.bias.empty() && l.bias.size() != size_t(l.output_channels))
      return status::error(where + ": bias holds " + std::to_string(l.bias.size()) + " floats, expected " +
                           std::to_string(l.output_channels));
  }
  // The new kinds' operators trust the shapes: check that input and output shapes agree (a wrong
  // broadcast would make XNNPACK write a larger output than the buffer holds).
  if (l.kind == layer_kind::add || l.kind == layer_kind::multiply) {
    if (in.size() != 2) return status::error(where + ": needs 2 operands, got " + std::to_string(in.size()));
    const tensor_shape& a = in[0];
    const tensor_shape& b = in[1];
    const bool per_channel = b.n == a.n && b.h == 1 && b.w == 1 && b.c == a.c;
    if ((a != b && !per_channel) || a != l.output_shape)
      return status::error(where + ": operand shapes " + a.to_string() + " and " + b.to_string() +
                           " do not give its output " + l.output_shape.to_string() +
                           " (equal shapes, or a second operand of " + tensor_shape{a.n, 1, 1, a.c}.to_string() + ")");
  }
  if (l.kind == layer_kind::sigmoid || l.kind == layer_kind::silu || l.kind == layer_kind::hardswish ||
      l.kind == layer_kind::channel_shuffle ||
      l.kind == layer_kind::channel_slice ||
      l.kind == layer_kind::pad) {
    if (!l.act.is_identity()) return status::error(where + ": a fused clamp is not supported");
    tensor_shape expected = in[0];
    if (l.kind == layer_kind::channel_slice) expected.c = l.channel_end - l.channel_begin;
    if (l.kind == layer_kind::pad) {
      expected.h += l.window.pad.top + l.window.pad.bottom;
      expected.w += l.window.pad.left + l.window.pad.right;
    }
    if (expected != l.output_shape)
      return status::error(where + ": output shape " + l.output_shape.to_string() + " does not follow from input " +
                           in[0].to_string() + " (expected " + expected.to_string() + ")");
  }
  const size_t stride = options.output_pixel_stride;
  if (stride != 0 && stride < size_t(l.output_shape.c))
    return status::error(where + ": output pixel stride " + std::to_string(stride) + " is below its " +
                         std::to_string(l.output_shape.c) + " channels");
  const size_t in_stride = options.input_pixel_stride;
  if (in_stride != 0 && !in.empty() && in_stride != size_t(in[0].c) && !reads_strided_input(l, in))
    return status::error(where + ": a strided input (pixel stride " + std::to_string(in_stride) + ") is not supported");
  auto no_stride = [&]() -> status {
    if (stride != 0 && stride != size_t(l.output_shape.c))
      return status::error(where + ": a strided output is not supported");
    return status::ok();
  };
  switch (l.kind) {
    case layer_kind::convolution:
      if (depthwise_runs_natively(l, in[0])) return create_depthwise_operator(l, in[0], stride);
      if (channel_affine_runs_natively(l, in[0])) return create_channel_affine_operator(l, in[0], stride, in_stride);
      if (depthwise_runs_on_native_fma(l, in[0])) return create_fma_depthwise_operator(l, in[0], stride);
      if (convolution_runs_on_native_gemm(l, in[0])) return create_gemm_convolution_operator(l, in[0], stride);
      return convolution_operator::create(l, in, stride, options.threads);
    case layer_kind::max_pool: return create_max_pool(l, in, stride);
    case layer_kind::average_pool: return create_average_pool(l, in, stride, options.native_average_pool);
    case layer_kind::clamp: return create_clamp(l, in, stride);
    case layer_kind::concat: return concat_operator::create(l, in, options.concat_input_in_place, stride);
    default: break;
  }
  D3_RETURN_IF_ERROR(no_stride());
  switch (l.kind) {
    case layer_kind::fully_connected:
      if (fully_connected_runs_on_native_gemm(l, in[0])) return create_gemm_fully_connected_operator(l, in[0]);
      return create_fully_connected(l, in);
    case layer_kind::global_average_pool: return create_global_average_pool(l, in);
    case layer_kind::add: return create_binary<xnn_create_add_nd_f32, xnn_setup_add_nd_f32>(l, in);
    case layer_kind::multiply: return create_binary<xnn_create_multiply_nd_f32, xnn_setup_multiply_nd_f32>(l, in);
    case layer_kind::sigmoid: return create_unary<xnn_create_sigmoid_nc_f32, xnn_setup_sigmoid_nc_f32>(l, in);
    case layer_kind::hardswish: return create_unary<xnn_create_hardswish_nc_f32, xnn_setup_hardswish_nc_f32>(l, in);
    case layer_kind::layer_norm: return create_layer_norm_operator(l, in[0]);
    case layer_kind::gelu: return create_gelu_operator(l, in[0]);
    case layer_kind::tanh: return create_tanh_operator(l, in[0]);
    case layer_kind::silu: return silu_operator::create(l, in[0], options.threads);
    case layer_kind::preprocess: return create_preprocess_operator(l, in[0]);
    case layer_kind::attention:
    case layer_kind::window_attention:
    case layer_kind::roll:
    case layer_kind::spatial_slice:
    case layer_kind::prepend_tokens:
    case layer_kind::constant_add:
    case layer_kind::row_slice: return create_token_operator(l, in);
    case layer_kind::channel_shuffle: return create_channel_shuffle(l, in);
    case layer_kind::channel_slice: return create_channel_slice(l, in);
    case layer_kind::pad: return create_pad(l, in);
    case layer_kind::softmax: return create_softmax(l, in);

    case layer_kind::flatten: return std::unique_ptr<layer_operator>(new flatten_operator(l, in[0]));
    case layer_kind::batch_norm: return status::error(where + ": batch norm must be folded first (prepare_for_inference)");
    case layer_kind::input: return status::error(where + ": input layers have no operator");
    default: break;
  }
  return status::error(where + ": unsupported layer kind");
}

status check_convolution_reshape(const std::string& name, const window_params& w, const tensor_shape& created_in,
                                 const tensor_shape& created_out, const std::vector<tensor_shape>& inputs,
                                 const tensor_shape& output) {
  return check_reshape("convolution", name, layer_kind::convolution, w, w.pad, false, {created_in}, created_out,
                       inputs, output);
}

}  // namespace d3
