// Every XNNPACK-backed layer operator against the naive reference (kernels/reference.cpp), on fixed
// cases that mirror the five built-in models and on seeded random shapes. Each case also runs on a
// 2-thread pthreadpool and must reproduce the 1-thread result bit for bit.
#define BOOST_TEST_MODULE operators
#include <boost/test/unit_test.hpp>

#include <pthreadpool.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <cstdint>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/executor.hpp"
#include "kernels/graph.hpp"
#include "kernels/native_operators.hpp"
#include "kernels/operators.hpp"
#include "kernels/cpu_features.hpp"
#include "kernels/arithmetic_fingerprint.hpp"
#include "kernels/depthwise_convolution.hpp"
#include "kernels/gemm_convolution.hpp"
#include "kernels/reference.hpp"
#include "base/status.hpp"
#include "kernels/tensor.hpp"

using namespace d3;

namespace {

constexpr double tolerance = 1e-5;

// splitmix64: a tiny deterministic generator, identical everywhere.
class rng {
 public:
  explicit rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform(float low, float high) { return low + float(double(next() >> 11) * 0x1.0p-53) * (high - low); }
  int range(int low, int high) { return low + int(next() % uint64_t(high - low + 1)); }  // inclusive
  bool coin() { return (next() & 1) != 0; }
  template <class T>
  const T& pick(const std::vector<T>& options) { return options[next() % options.size()]; }

 private:
  uint64_t state_;
};

tensor random_tensor_of(const tensor_shape& shape, rng& r, float scale = 1.0f) {
  tensor t(shape);
  for (size_t i = 0; i < t.elements(); ++i) t.data()[i] = scale * r.uniform(-1.0f, 1.0f);
  return t;
}

// He-uniform weights: outputs keep the unit scale of the inputs.
weight_blob he_weights(size_t count, size_t fan_in, rng& r) {
  const float bound = float(std::sqrt(6.0 / double(std::max<size_t>(fan_in, 1))));
  std::vector<float> v(count);
  for (float& x : v) x = r.uniform(-bound, bound);
  return weight_blob::from_vector(std::move(v));
}

weight_blob random_bias(size_t count, rng& r) {
  std::vector<float> v(count);
  for (float& x : v) x = r.uniform(-0.5f, 0.5f);
  return weight_blob::from_vector(std::move(v));
}

status compute_initialized() {
  static const status initialized = initialize_compute();
  return initialized;
}

pthreadpool_t two_threads() {
  static std::unique_ptr<pthreadpool, void (*)(pthreadpool_t)> pool(pthreadpool_create(2), pthreadpool_destroy);
  return pool.get();
}

std::string act_string(const activation& a) {
  if (a.is_identity()) return "none";
  std::ostringstream s;
  s << "[" << a.min << "," << a.max << "]";
  return s.str();
}

// A human-readable description of the case, so a failure names what broke.
std::string describe(const layer& l, const std::vector<const tensor*>& inputs) {
  std::ostringstream s;
  s << to_string(l.kind) << " '" << l.name << "' in";
  for (const tensor* t : inputs) s << " " << t->shape().to_string();
  s << " -> " << l.output_shape.to_string() << " (NCHW)";
  const window_params& w = l.window;
  switch (l.kind) {
    case layer_kind::convolution:
    case layer_kind::max_pool:
    case layer_kind::average_pool:
      s << " kernel " << w.kernel_h << "x" << w.kernel_w << " stride " << w.stride_h << "x" << w.stride_w
        << " dilation " << w.dilation_h << "x" << w.dilation_w << " pad t" << w.pad.top << " l" << w.pad.left << " b"
        << w.pad.bottom << " r" << w.pad.right;
      if (l.kind == layer_kind::convolution) s << " groups " << l.groups << (l.bias.empty() ? " no bias" : " bias");
      if (l.kind != layer_kind::convolution) s << " ceil_mode " << w.ceil_mode;
      if (l.kind == layer_kind::average_pool) s << " count_include_pad " << w.count_include_pad;
      break;
    case layer_kind::fully_connected: s << (l.bias.empty() ? " no bias" : " bias"); break;
    case layer_kind::channel_shuffle: s << " groups " << l.groups; break;
    case layer_kind::channel_slice: s << " channels [" << l.channel_begin << ", " << l.channel_end << ")"; break;
    case layer_kind::pad: s << " pad t" << w.pad.top << " l" << w.pad.left << " b" << w.pad.bottom << " r" << w.pad.right; break;
    default: break;
  }
  s << " act " << act_string(l.act);
  return s.str();
}

// Sets l.output_shape the way the system does: a tiny graph of input layers feeding `l`.
layer with_shapes(layer l, const std::vector<tensor_shape>& input_shapes) {
  graph g;
  g.name = "operators_test";
  l.inputs.clear();
  for (size_t i = 0; i < input_shapes.size(); ++i) {
    layer in;
    in.name = "input" + std::to_string(i);
    in.kind = layer_kind::input;
    in.input_shape = input_shapes[i];
    g.layers.push_back(std::move(in));
    l.inputs.push_back(int(i));
  }
  g.layers.push_back(std::move(l));
  g.outputs = {int(input_shapes.size())};
  status s = infer_shapes(g);
  BOOST_REQUIRE_MESSAGE(s.is_ok(), "infer_shapes: " << s.message());
  return g.layers.back();
}

std::vector<tensor_shape> shapes_of(const std::vector<const tensor*>& inputs) {
  std::vector<tensor_shape> shapes;
  for (const tensor* t : inputs) shapes.push_back(t->shape());
  return shapes;
}

// create -> setup -> run; false (with the failure logged) when any step fails. The output buffer
// starts as NaN, so an operator that leaves any element unwritten (e.g. padding) fails the comparison.
bool run_operator(const layer& l, const std::vector<const tensor*>& inputs, pthreadpool_t pool, tensor* out,
                  const std::string& what) {
  status init = compute_initialized();
  BOOST_REQUIRE_MESSAGE(init.is_ok(), "initialize_compute: " << init.message());
  auto op = create_layer_operator(l, shapes_of(inputs));
  if (!op.is_ok()) {
    BOOST_ERROR(what << ": create failed: " << op.message());
    return false;
  }
  *out = tensor(l.output_shape);
  std::fill(out->data(), out->data() + out->elements(), std::numeric_limits<float>::quiet_NaN());
  std::vector<const float*> data;
  for (const tensor* t : inputs) data.push_back(t->data());
  status s = (*op)->setup(data, out->data(), pool);
  if (!s.is_ok()) {
    BOOST_ERROR(what << ": setup failed: " << s.message());
    return false;
  }
  s = (*op)->run(pool);
  if (!s.is_ok()) {
    BOOST_ERROR(what << ": run failed: " << s.message());
    return false;
  }
  return true;
}

enum class exactness { tolerance, bitwise };

// The operator's output against the reference (within `tolerance`, or bit for bit), and the
// 2-thread output against the 1-thread output bit for bit.
void check_layer(const layer& l, const std::vector<const tensor*>& inputs, exactness exact = exactness::tolerance) {
  const std::string what = describe(l, inputs);
  const tensor expected = reference_layer(l, inputs);
  tensor one;
  if (!run_operator(l, inputs, nullptr, &one, what)) return;
  const std::string diff = compare_relative(one, expected, tolerance);
  BOOST_CHECK_MESSAGE(diff.empty(), what << ": " << diff);
  if (exact == exactness::bitwise && diff.empty())
    BOOST_CHECK_MESSAGE(bitwise_equal(one, expected),
                        what << ": not bitwise equal to the reference: " << compare_relative(one, expected, 0.0));
  tensor two;
  if (!run_operator(l, inputs, two_threads(), &two, what + " [2 threads]")) return;
  BOOST_CHECK_MESSAGE(bitwise_equal(one, two),
                      what << ": 2-thread result differs from the 1-thread result: " << compare_relative(two, one, 0.0));
}

void check_layer(const layer& l, const std::vector<tensor>& inputs, exactness exact = exactness::tolerance) {
  std::vector<const tensor*> pointers;
  for (const tensor& t : inputs) pointers.push_back(&t);
  check_layer(l, pointers, exact);
}

window_params make_window(int kh, int kw, int sh, int sw, padding pad = {}, int dh = 1, int dw = 1,
                          bool ceil_mode = false, bool count_include_pad = true) {
  window_params w;
  w.kernel_h = kh;
  w.kernel_w = kw;
  w.stride_h = sh;
  w.stride_w = sw;
  w.dilation_h = dh;
  w.dilation_w = dw;
  w.pad = pad;
  w.ceil_mode = ceil_mode;
  w.count_include_pad = count_include_pad;
  return w;
}

padding pad_all(int p) { return {p, p, p, p}; }

// ---- convolution ----

struct conv_spec {
  tensor_shape input;
  int output_channels;
  int groups;
  window_params window;
  bool bias;
  activation act;
};

layer conv_layer(const conv_spec& c, rng& r, const std::string& name = "conv") {
  layer l;
  l.name = name;
  l.kind = layer_kind::convolution;
  l.window = c.window;
  l.groups = c.groups;
  l.output_channels = c.output_channels;
  l.act = c.act;
  const size_t fan_in = size_t(c.window.kernel_h) * c.window.kernel_w * (c.input.c / c.groups);
  l.weights = he_weights(size_t(c.output_channels) * fan_in, fan_in, r);
  if (c.bias) l.bias = random_bias(size_t(c.output_channels), r);
  return with_shapes(std::move(l), {c.input});
}

void check_conv(const conv_spec& c, uint64_t seed) {
  rng r(seed);
  layer l = conv_layer(c, r);
  check_layer(l, {random_tensor_of(c.input, r)});
}

const activation clamp_range{-0.5f, 0.7f};

BOOST_AUTO_TEST_CASE(convolution_fixed_cases) {
  const activation none = activation::none();
  std::vector<conv_spec> cases = {
      // odd sizes, 3x3 same padding
      {{1, 13, 17, 5}, 7, 1, make_window(3, 3, 1, 1, pad_all(1)), true, none},
      // stride 2 (ResNet downsampling), batch 2
      {{2, 13, 17, 8}, 16, 1, make_window(3, 3, 2, 2, pad_all(1)), true, none},
      // ResNet / AlexNet stems
      {{1, 31, 29, 3}, 16, 1, make_window(7, 7, 2, 2, pad_all(3)), true, activation::relu()},
      {{1, 35, 35, 3}, 8, 1, make_window(11, 11, 4, 4, pad_all(2)), true, activation::relu()},
      // dilation 2
      {{1, 13, 17, 6}, 10, 1, make_window(3, 3, 1, 1, pad_all(2), 2, 2), true, none},
      {{1, 15, 11, 4}, 6, 1, make_window(3, 5, 2, 1, {1, 3, 0, 2}, 2, 3), true, none},
      // groups 2 and 4
      {{1, 13, 17, 8}, 12, 2, make_window(3, 3, 1, 1, pad_all(1)), true, none},
      {{2, 9, 11, 8}, 8, 4, make_window(3, 3, 2, 2, pad_all(1)), true, none},
      {{1, 9, 11, 12}, 20, 4, make_window(1, 1, 1, 1), false, none},
      // depthwise (MobileNetV2), channel multiplier 1 and 2
      {{1, 13, 17, 7}, 7, 7, make_window(3, 3, 1, 1, pad_all(1)), true, activation::relu6()},
      {{1, 14, 14, 32}, 32, 32, make_window(3, 3, 2, 2, pad_all(1)), true, activation::relu6()},
      {{2, 13, 17, 6}, 12, 6, make_window(3, 3, 1, 1, pad_all(1)), true, none},
      {{1, 11, 9, 5}, 10, 5, make_window(5, 5, 2, 2, pad_all(2)), false, none},
      // asymmetric padding: top 2, left 0, bottom 1, right 3
      {{1, 13, 17, 5}, 7, 1, make_window(3, 3, 1, 1, {2, 0, 1, 3}), true, none},
      {{1, 13, 17, 6}, 6, 6, make_window(3, 3, 2, 2, {2, 0, 1, 3}), true, none},
      // 1x1, with and without bias, stride 2 (ResNet shortcut)
      {{1, 13, 17, 16}, 24, 1, make_window(1, 1, 1, 1), false, none},
      {{2, 13, 17, 16}, 24, 1, make_window(1, 1, 1, 1), true, none},
      {{1, 13, 17, 16}, 32, 1, make_window(1, 1, 2, 2), false, none},
      // no bias, larger kernel
      {{1, 13, 17, 5}, 7, 1, make_window(5, 5, 1, 1, pad_all(2)), false, none},
      // fused activations
      {{1, 13, 17, 5}, 7, 1, make_window(3, 3, 1, 1, pad_all(1)), true, activation::relu()},
      {{1, 13, 17, 5}, 7, 1, make_window(3, 3, 1, 1, pad_all(1)), true, activation::relu6()},
      {{1, 13, 17, 5}, 7, 1, make_window(3, 3, 1, 1, pad_all(1)), true, clamp_range},
      {{1, 13, 17, 8}, 8, 8, make_window(3, 3, 1, 1, pad_all(1)), true, clamp_range},
      // a kernel covering the whole input, a 1x1 input
      {{1, 5, 7, 3}, 4, 1, make_window(5, 7, 1, 1), true, none},
      {{1, 1, 1, 9}, 5, 1, make_window(3, 3, 1, 1, pad_all(1)), true, none},
      // wide channels (VGG-like)
      {{1, 7, 9, 64}, 96, 1, make_window(3, 3, 1, 1, pad_all(1)), true, activation::relu()},
  };
  for (size_t i = 0; i < cases.size(); ++i) check_conv(cases[i], 100 + i);
}

BOOST_AUTO_TEST_CASE(convolution_random_shapes) {
  rng r(7);
  const std::vector<activation> acts = {activation::none(), activation::relu(), activation::relu6(), clamp_range};
  for (int draw = 0; draw < 24;) {
    conv_spec c;
    const int kind = r.range(0, 5);  // 0-2: dense, 3: grouped, 4: depthwise, 5: depthwise multiplier
    int groups = 1, in_per_group, out_per_group;
    if (kind <= 2) {
      in_per_group = r.range(1, 12);
      out_per_group = r.range(1, 12);
    } else if (kind == 3) {
      groups = r.range(2, 4);
      in_per_group = r.range(1, 5);
      out_per_group = r.range(1, 5);
    } else {
      groups = r.range(1, 24);
      in_per_group = 1;
      out_per_group = kind == 4 ? 1 : r.range(2, 3);
    }
    c.input = {r.range(1, 2), r.range(1, 19), r.range(1, 19), groups * in_per_group};
    c.groups = groups;
    c.output_channels = groups * out_per_group;
    window_params& w = c.window;
    w.kernel_h = r.range(1, 5);
    w.kernel_w = r.range(1, 5);
    w.stride_h = r.range(1, 3);
    w.stride_w = r.range(1, 3);
    w.dilation_h = r.coin() ? 1 : r.range(2, 3);
    w.dilation_w = r.coin() ? 1 : r.range(2, 3);
    w.pad = {r.range(0, w.kernel_h - 1), r.range(0, w.kernel_w - 1), r.range(0, w.kernel_h - 1),
             r.range(0, w.kernel_w - 1)};
    if (window_output_size(c.input.h, w.kernel_h, w.stride_h, w.dilation_h, w.pad.top, w.pad.bottom, false) < 1 ||
        window_output_size(c.input.w, w.kernel_w, w.stride_w, w.dilation_w, w.pad.left, w.pad.right, false) < 1)
      continue;  // does not fit: draw again
    c.bias = r.coin();
    c.act = r.pick(acts);
    check_conv(c, 1000 + draw);
    ++draw;
  }
}

// ---- fully connected ----

void check_fc(int n, int k, int o, bool bias, activation act, uint64_t seed) {
  rng r(seed);
  layer l;
  l.name = "fc";
  l.kind = layer_kind::fully_connected;
  l.output_channels = o;
  l.act = act;
  l.weights = he_weights(size_t(o) * k, size_t(k), r);
  if (bias) l.bias = random_bias(size_t(o), r);
  tensor_shape in{n, 1, 1, k};
  l = with_shapes(std::move(l), {in});
  check_layer(l, {random_tensor_of(in, r)});
}

BOOST_AUTO_TEST_CASE(fully_connected_cases) {
  check_fc(1, 512, 1000, true, activation::none(), 1);   // ResNet-18 classifier
  check_fc(3, 512, 1000, true, activation::none(), 2);
  check_fc(1, 1024, 100, false, activation::none(), 3);
  check_fc(2, 300, 77, true, activation::relu(), 4);      // AlexNet/VGG hidden layers
  check_fc(2, 300, 77, false, activation::relu(), 5);
  check_fc(1, 9216, 64, true, activation::relu(), 6);     // AlexNet fc6 fan-in
  check_fc(1, 1, 1, true, activation::none(), 7);
  check_fc(4, 33, 5, true, clamp_range, 8);
  rng r(11);
  const std::vector<activation> acts = {activation::none(), activation::relu(), activation::relu6(), clamp_range};
  for (int draw = 0; draw < 20; ++draw)
    check_fc(r.range(1, 4), r.range(1, 400), r.range(1, 120), r.coin(), r.pick(acts), 100 + draw);
}

// ---- pooling ----

// True when every output window has at least one tap inside the image on both axes (PyTorch's
// limits on padding guarantee it; random draws must not produce all-padding windows).
bool windows_touch_image(const tensor_shape& in, const window_params& w, const tensor_shape& out) {
  auto axis_ok = [](int size, int outputs, int kernel, int stride, int dilation, int pad_before) {
    for (int o = 0; o < outputs; ++o) {
      bool any = false;
      for (int k = 0; k < kernel; ++k) {
        const int pos = o * stride - pad_before + k * dilation;
        any = any || (pos >= 0 && pos < size);
      }
      if (!any) return false;
    }
    return true;
  };
  return axis_ok(in.h, out.h, w.kernel_h, w.stride_h, w.dilation_h, w.pad.top) &&
         axis_ok(in.w, out.w, w.kernel_w, w.stride_w, w.dilation_w, w.pad.left);
}

layer pool_layer(layer_kind kind, const tensor_shape& in, const window_params& w, activation act = {}) {
  layer l;
  l.name = kind == layer_kind::max_pool ? "maxpool" : "avgpool";
  l.kind = kind;
  l.window = w;
  l.act = act;
  return with_shapes(std::move(l), {in});
}

void check_pool(layer_kind kind, const tensor_shape& in, const window_params& w, uint64_t seed, activation act = {}) {
  rng r(seed);
  layer l = pool_layer(kind, in, w, act);
  BOOST_REQUIRE_MESSAGE(windows_touch_image(in, w, l.output_shape), "test bug: an all-padding window");
  // Max pooling only selects and clamps: the result must be exact.
  check_layer(l, {random_tensor_of(in, r)}, kind == layer_kind::max_pool ? exactness::bitwise : exactness::tolerance);
}

BOOST_AUTO_TEST_CASE(max_pool_fixed_cases) {
  const layer_kind k = layer_kind::max_pool;
  check_pool(k, {1, 14, 14, 16}, make_window(2, 2, 2, 2), 1);                              // VGG 2/2
  check_pool(k, {2, 13, 17, 5}, make_window(2, 2, 2, 2), 2);                               // odd sizes drop the edge
  check_pool(k, {1, 16, 16, 8}, make_window(3, 3, 2, 2, pad_all(1)), 3);                   // ResNet 3/2 pad 1
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 2, 2, pad_all(1)), 4);
  check_pool(k, {1, 27, 27, 8}, make_window(3, 3, 2, 2), 5);                               // AlexNet 3/2
  check_pool(k, {1, 14, 14, 8}, make_window(3, 3, 2, 2, {}, 1, 1, true), 6);               // GoogLeNet 3/2 ceil
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 2, 2, {}, 1, 1, true), 7);
  check_pool(k, {1, 112, 112, 4}, make_window(3, 3, 2, 2, {}, 1, 1, true), 8);
  check_pool(k, {1, 14, 14, 8}, make_window(3, 3, 1, 1, pad_all(1), 1, 1, true), 9);      // GoogLeNet branch 3/1 pad 1 ceil
  check_pool(k, {2, 13, 17, 5}, make_window(3, 3, 1, 1, pad_all(1), 1, 1, true), 10);
  check_pool(k, {1, 13, 17, 5}, make_window(2, 2, 2, 2, pad_all(1), 1, 1, true), 11);      // ceil with padding
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 1, 1, pad_all(1), 2, 2), 12);            // dilation 2
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 2, 2, pad_all(1), 2, 2, true), 13);      // dilation 2 ceil
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 2, 2, {1, 0, 0, 1}), 14);                // asymmetric padding
  check_pool(k, {1, 13, 17, 5}, make_window(4, 2, 2, 1, {2, 0, 1, 1}), 15);
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 2, 2, pad_all(1)), 16, activation::relu());  // fused clamp
  check_pool(k, {1, 13, 17, 5}, make_window(2, 2, 2, 2), 17, clamp_range);
  check_pool(k, {1, 6, 6, 3}, make_window(6, 6, 1, 1), 18);                                // global window
}

BOOST_AUTO_TEST_CASE(max_pool_random_shapes) {
  rng r(21);
  for (int draw = 0; draw < 24;) {
    tensor_shape in{r.range(1, 2), r.range(2, 20), r.range(2, 20), r.range(1, 24)};
    window_params w;
    w.kernel_h = r.range(1, 4);
    w.kernel_w = r.range(1, 4);
    if (w.kernel_h * w.kernel_w < 2) continue;
    w.stride_h = r.range(1, 3);
    w.stride_w = r.range(1, 3);
    w.dilation_h = r.range(0, 3) == 0 ? 2 : 1;
    w.dilation_w = r.range(0, 3) == 0 ? 2 : 1;
    w.pad = {r.range(0, w.kernel_h / 2), r.range(0, w.kernel_w / 2), r.range(0, w.kernel_h / 2),
             r.range(0, w.kernel_w / 2)};
    w.ceil_mode = r.coin();
    const int oh = window_output_size(in.h, w.kernel_h, w.stride_h, w.dilation_h, w.pad.top, w.pad.bottom, w.ceil_mode);
    const int ow = window_output_size(in.w, w.kernel_w, w.stride_w, w.dilation_w, w.pad.left, w.pad.right, w.ceil_mode);
    if (oh < 1 || ow < 1 || !windows_touch_image(in, w, {in.n, oh, ow, in.c})) continue;
    check_pool(layer_kind::max_pool, in, w, 200 + draw, r.coin() ? activation::none() : activation::relu());
    ++draw;
  }
}

// A one-element window subsamples (PyTorch's MaxPool2d(1, stride=2) / AvgPool2d(1, stride=2)).
BOOST_AUTO_TEST_CASE(single_element_pooling_windows) {
  for (layer_kind k : {layer_kind::max_pool, layer_kind::average_pool}) {
    check_pool(k, {1, 13, 17, 5}, make_window(1, 1, 2, 2), 1);
    check_pool(k, {2, 8, 8, 3}, make_window(1, 1, 1, 1), 2);
    check_pool(k, {1, 13, 17, 5}, make_window(1, 1, 2, 2, {}, 1, 1, true), 3);
  }
}

BOOST_AUTO_TEST_CASE(average_pool_fixed_cases) {
  const layer_kind k = layer_kind::average_pool;
  check_pool(k, {1, 14, 14, 16}, make_window(2, 2, 2, 2), 1);                                     // no padding
  check_pool(k, {2, 13, 17, 5}, make_window(3, 3, 2, 2), 2);
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 1, 1), 3);
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 1, 1, pad_all(1), 1, 1, false, true), 4);      // pad, count pad
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 1, 1, pad_all(1), 1, 1, false, false), 5);     // pad, exclude pad
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 2, 2, pad_all(1), 1, 1, false, true), 6);
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 2, 2, pad_all(1), 1, 1, false, false), 7);
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 2, 2, {2, 0, 1, 1}, 1, 1, false, true), 8);    // asymmetric
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 2, 2, {2, 0, 1, 1}, 1, 1, false, false), 9);
  check_pool(k, {1, 14, 14, 8}, make_window(3, 3, 2, 2, {}, 1, 1, true, true), 10);              // ceil_mode
  check_pool(k, {1, 14, 14, 8}, make_window(3, 3, 2, 2, {}, 1, 1, true, false), 11);
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 2, 2, pad_all(1), 1, 1, true, true), 12);      // ceil + pad
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 2, 2, pad_all(1), 1, 1, true, false), 13);
  check_pool(k, {1, 6, 6, 3}, make_window(3, 3, 2, 2, pad_all(1), 1, 1, true, true), 14);
  check_pool(k, {1, 6, 6, 3}, make_window(3, 3, 2, 2, pad_all(1), 1, 1, true, false), 15);
  check_pool(k, {1, 14, 14, 8}, make_window(3, 3, 1, 1, pad_all(1), 1, 1, true, true), 16);      // GoogLeNet-like
  check_pool(k, {1, 13, 17, 5}, make_window(2, 2, 2, 2), 17, activation::relu());                // fused clamp
  check_pool(k, {1, 13, 17, 5}, make_window(3, 3, 1, 1, pad_all(1), 1, 1, false, false), 18, clamp_range);
  check_pool(k, {1, 7, 7, 32}, make_window(7, 7, 1, 1), 19);                                     // global window
}

BOOST_AUTO_TEST_CASE(average_pool_random_shapes) {
  rng r(31);
  for (int draw = 0; draw < 24;) {
    tensor_shape in{r.range(1, 2), r.range(2, 20), r.range(2, 20), r.range(1, 24)};
    window_params w;
    w.kernel_h = r.range(1, 4);
    w.kernel_w = r.range(1, 4);
    if (w.kernel_h * w.kernel_w < 2) continue;
    w.stride_h = r.range(1, 3);
    w.stride_w = r.range(1, 3);
    w.pad = {r.range(0, w.kernel_h / 2), r.range(0, w.kernel_w / 2), r.range(0, w.kernel_h / 2),
             r.range(0, w.kernel_w / 2)};
    w.ceil_mode = r.coin();
    w.count_include_pad = r.coin();
    const int oh = window_output_size(in.h, w.kernel_h, w.stride_h, 1, w.pad.top, w.pad.bottom, w.ceil_mode);
    const int ow = window_output_size(in.w, w.kernel_w, w.stride_w, 1, w.pad.left, w.pad.right, w.ceil_mode);
    if (oh < 1 || ow < 1 || !windows_touch_image(in, w, {in.n, oh, ow, in.c})) continue;
    check_pool(layer_kind::average_pool, in, w, 300 + draw, r.coin() ? activation::none() : activation::relu());
    ++draw;
  }
}

// Hand-computed PyTorch values: the reference itself must be right before it judges anything.
// avg_pool2d(ones(1,1,6,6), 3, stride 2, padding 1, ceil_mode=True) is 4x4; the last row/column of
// windows run one past the padded input (ceil overflow), which PyTorch does not count.
BOOST_AUTO_TEST_CASE(reference_average_pool_matches_pytorch) {
  tensor ones({1, 6, 6, 1});
  std::fill(ones.data(), ones.data() + ones.elements(), 1.0f);
  for (bool include : {true, false}) {
    layer l = pool_layer(layer_kind::average_pool, ones.shape(), make_window(3, 3, 2, 2, pad_all(1), 1, 1, true, include));
    BOOST_REQUIRE(l.output_shape == (tensor_shape{1, 4, 4, 1}));
    tensor y = reference_layer(l, {&ones});
    auto at = [&](int h, int w) { return y.data()[h * 4 + w]; };
    if (include) {
      BOOST_CHECK_CLOSE(at(0, 0), 4.0f / 9.0f, 1e-4);  // 2x2 image taps of a 3x3 window incl. padding
      BOOST_CHECK_CLOSE(at(1, 1), 1.0f, 1e-4);
      BOOST_CHECK_CLOSE(at(0, 3), 2.0f / 6.0f, 1e-4);  // rows 3 (incl. top pad), columns 2 (pad + image)
      BOOST_CHECK_CLOSE(at(3, 3), 1.0f / 4.0f, 1e-4);  // 1 image tap, 2x2 pool size (overflow not counted)
      BOOST_CHECK_CLOSE(at(3, 1), 3.0f / 6.0f, 1e-4);
    } else {
      for (int h = 0; h < 4; ++h)
        for (int w = 0; w < 4; ++w) BOOST_CHECK_CLOSE(at(h, w), 1.0f, 1e-4);
    }
  }
  // Max pooling: padding never wins even when every image value is negative.
  tensor negative({1, 3, 3, 1});
  for (int i = 0; i < 9; ++i) negative.data()[i] = -1.0f - float(i);
  layer mp = pool_layer(layer_kind::max_pool, negative.shape(), make_window(2, 2, 2, 2, pad_all(1), 1, 1, true));
  BOOST_REQUIRE(mp.output_shape == (tensor_shape{1, 2, 2, 1}));
  tensor y = reference_layer(mp, {&negative});
  BOOST_CHECK_EQUAL(y.data()[0], -1.0f);
  BOOST_CHECK_EQUAL(y.data()[1], -2.0f);  // max(-2, -3)
  BOOST_CHECK_EQUAL(y.data()[2], -4.0f);  // max(-4, -7)
  BOOST_CHECK_EQUAL(y.data()[3], -5.0f);  // max(-5, -6, -8, -9)
}

// ---- global average pool, add, concat, softmax, flatten, clamp ----

layer simple_layer(layer_kind kind, const std::vector<tensor_shape>& inputs, activation act = {}) {
  layer l;
  l.name = to_string(kind);
  l.kind = kind;
  l.act = act;
  return with_shapes(std::move(l), inputs);
}

BOOST_AUTO_TEST_CASE(global_average_pool_cases) {
  std::vector<tensor_shape> shapes = {{1, 7, 7, 512}, {2, 13, 17, 5}, {1, 1, 1, 9}, {3, 1, 9, 4}, {1, 14, 14, 1000}};
  rng r(41);
  for (int draw = 0; draw < 20; ++draw) shapes.push_back({r.range(1, 3), r.range(1, 16), r.range(1, 16), r.range(1, 70)});
  for (size_t i = 0; i < shapes.size(); ++i) {
    rng v(500 + i);
    layer l = simple_layer(layer_kind::global_average_pool, {shapes[i]}, i % 3 == 2 ? activation::relu() : activation::none());
    check_layer(l, {random_tensor_of(shapes[i], v)});
  }
}

// Over a large map the mean must stay within a few float ulps of the exact (double) mean: a sum
// taken pixel after pixel drifts with the pixel count (1.7e-6 relative on EfficientNet-B6's
// 112 x 112 maps, 10x PyTorch's error). Values near 1 with a small spread make the drift visible.
BOOST_AUTO_TEST_CASE(global_average_pool_is_accurate_on_large_maps) {
  for (const tensor_shape shape : {tensor_shape{1, 112, 112, 32}, tensor_shape{2, 224, 224, 3}, tensor_shape{1, 17, 300, 5}}) {
    layer l = simple_layer(layer_kind::global_average_pool, {shape}, activation::none());
    rng v(7);
    tensor x = random_tensor_of(shape, v, 0.01f);
    for (size_t i = 0; i < x.elements(); ++i) x.data()[i] += 1.0f;
    const tensor expected = reference_layer(l, {&x});
    tensor got;
    BOOST_REQUIRE(run_operator(l, {&x}, nullptr, &got, describe(l, {&x})));
    double worst = 0;
    for (size_t i = 0; i < got.elements(); ++i)
      worst = std::max(worst, std::fabs(double(got.data()[i]) - expected.data()[i]) / std::fabs(expected.data()[i]));
    BOOST_TEST(worst <= 2.5e-7, shape.to_string() << ": mean off by " << worst << " relative");
  }
}

BOOST_AUTO_TEST_CASE(add_cases) {
  std::vector<tensor_shape> shapes = {{1, 56, 56, 64}, {2, 13, 17, 5}, {1, 1, 1, 1}, {1, 7, 7, 512}};
  rng r(51);
  for (int draw = 0; draw < 20; ++draw) shapes.push_back({r.range(1, 3), r.range(1, 16), r.range(1, 16), r.range(1, 70)});
  const std::vector<activation> acts = {activation::none(), activation::relu(), activation::relu6(), clamp_range};
  for (size_t i = 0; i < shapes.size(); ++i) {
    rng v(600 + i);
    layer l = simple_layer(layer_kind::add, {shapes[i], shapes[i]}, acts[i % acts.size()]);
    check_layer(l, {random_tensor_of(shapes[i], v), random_tensor_of(shapes[i], v)});
  }
}

BOOST_AUTO_TEST_CASE(concat_cases) {
  std::vector<std::vector<tensor_shape>> cases = {
      {{1, 13, 17, 3}, {1, 13, 17, 5}, {1, 13, 17, 7}},                   // 3 inputs, odd channels
      {{2, 7, 7, 64}, {2, 7, 7, 128}, {2, 7, 7, 32}, {2, 7, 7, 32}},      // GoogLeNet inception
      {{1, 1, 1, 1}, {1, 1, 1, 2}},
      {{1, 5, 3, 11}},                                                    // a single input
  };
  rng r(61);
  for (int draw = 0; draw < 20; ++draw) {
    tensor_shape base{r.range(1, 2), r.range(1, 12), r.range(1, 12), 1};
    std::vector<tensor_shape> shapes;
    for (int i = r.range(2, 4); i > 0; --i) shapes.push_back({base.n, base.h, base.w, r.range(1, 40)});
    cases.push_back(shapes);
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    rng v(700 + i);
    layer l = simple_layer(layer_kind::concat, cases[i]);
    std::vector<tensor> inputs;
    for (const tensor_shape& s : cases[i]) inputs.push_back(random_tensor_of(s, v));
    check_layer(l, inputs, exactness::bitwise);  // a copy: exact
  }
}

BOOST_AUTO_TEST_CASE(softmax_cases) {
  struct spec {
    tensor_shape shape;
    float scale;
  };
  std::vector<spec> cases = {
      {{1, 1, 1, 1000}, 1.0f}, {{1, 1, 1, 1000}, 30.0f}, {{2, 1, 1, 1000}, 30.0f}, {{3, 1, 1, 1000}, 100.0f},
      {{1, 1, 1, 1}, 1.0f},    {{4, 1, 1, 10}, 5.0f},
  };
  rng r(71);
  for (int draw = 0; draw < 20; ++draw) cases.push_back({{r.range(1, 4), 1, 1, r.range(1, 1200)}, r.coin() ? 1.0f : 30.0f});
  for (size_t i = 0; i < cases.size(); ++i) {
    rng v(800 + i);
    layer l = simple_layer(layer_kind::softmax, {cases[i].shape});
    check_layer(l, {random_tensor_of(cases[i].shape, v, cases[i].scale)});
  }
}

BOOST_AUTO_TEST_CASE(flatten_cases) {
  std::vector<tensor_shape> shapes = {{1, 7, 7, 512}, {2, 6, 6, 256}, {2, 13, 17, 5}, {1, 1, 1, 9}, {3, 2, 3, 1}};
  rng r(81);
  for (int draw = 0; draw < 20; ++draw) shapes.push_back({r.range(1, 3), r.range(1, 9), r.range(1, 9), r.range(1, 40)});
  for (size_t i = 0; i < shapes.size(); ++i) {
    rng v(900 + i);
    layer l = simple_layer(layer_kind::flatten, {shapes[i]});
    check_layer(l, {random_tensor_of(shapes[i], v)}, exactness::bitwise);
  }
  // The NCHW order spelled out on a tiny tensor whose values are their NCHW indices.
  tensor_shape s{1, 2, 3, 2};
  tensor x(s);
  for (int h = 0; h < 2; ++h)
    for (int w = 0; w < 3; ++w)
      for (int c = 0; c < 2; ++c) x.data()[(h * 3 + w) * 2 + c] = float(c * 6 + h * 3 + w);
  layer l = simple_layer(layer_kind::flatten, {s});
  tensor y = reference_layer(l, {&x});
  for (int i = 0; i < 12; ++i) BOOST_CHECK_EQUAL(y.data()[i], float(i));
  tensor actual;
  if (run_operator(l, {&x}, nullptr, &actual, "flatten NCHW order"))
    for (int i = 0; i < 12; ++i) BOOST_CHECK_EQUAL(actual.data()[i], float(i));
}

BOOST_AUTO_TEST_CASE(clamp_cases) {
  std::vector<std::pair<tensor_shape, activation>> cases = {
      {{1, 13, 17, 5}, activation::relu()},
      {{2, 7, 7, 32}, activation::relu6()},
      {{1, 13, 17, 5}, clamp_range},
      {{1, 1, 1, 1000}, {-0.25f, INFINITY}},
      {{1, 3, 5, 7}, {-INFINITY, 0.1f}},
  };
  rng r(91);
  for (int draw = 0; draw < 20; ++draw) {
    float a = r.uniform(-1.5f, 1.0f), b = a + r.uniform(0.0f, 2.0f);
    cases.push_back({{r.range(1, 3), r.range(1, 12), r.range(1, 12), r.range(1, 40)}, {a, b}});
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    rng v(1000 + i);
    layer l = simple_layer(layer_kind::clamp, {cases[i].first}, cases[i].second);
    check_layer(l, {random_tensor_of(cases[i].first, v, 2.0f)}, exactness::bitwise);
  }
}


// ---- multiply, sigmoid, channel shuffle, channel slice, pad; add/multiply with a per-channel operand ----

tensor_shape per_channel_of(const tensor_shape& s) { return {s.n, 1, 1, s.c}; }

// A product of two floats is exact in double, so multiply matches the reference bit for bit.
void check_binary(layer_kind kind, const tensor_shape& a, bool per_channel, activation act, uint64_t seed) {
  rng v(seed);
  const tensor_shape b = per_channel ? per_channel_of(a) : a;
  layer l = simple_layer(kind, {a, b}, act);
  BOOST_REQUIRE(l.output_shape == a);
  check_layer(l, {random_tensor_of(a, v), random_tensor_of(b, v, 2.0f)},
              kind == layer_kind::multiply ? exactness::bitwise : exactness::tolerance);
}

BOOST_AUTO_TEST_CASE(multiply_and_per_channel_add_cases) {
  std::vector<tensor_shape> shapes = {{1, 56, 56, 64}, {2, 13, 17, 5}, {1, 1, 1, 1}, {1, 7, 7, 513},
                                      {2, 1, 1, 7},    {3, 5, 3, 1},   {1, 14, 14, 97}};
  rng r(151);
  for (int draw = 0; draw < 20; ++draw) shapes.push_back({r.range(1, 3), r.range(1, 16), r.range(1, 16), r.range(1, 70)});
  const std::vector<activation> acts = {activation::none(), activation::relu(), activation::relu6(), clamp_range};
  for (size_t i = 0; i < shapes.size(); ++i) {
    const activation& act = acts[i % acts.size()];
    check_binary(layer_kind::multiply, shapes[i], false, act, 1100 + i);
    check_binary(layer_kind::multiply, shapes[i], true, act, 1200 + i);
    check_binary(layer_kind::add, shapes[i], true, act, 1300 + i);
  }
}

// The broadcast spelled out by hand (independent of the reference): y[n,h,w,c] = x[n,h,w,c] op s[n,c].
BOOST_AUTO_TEST_CASE(per_channel_operand_is_broadcast_over_h_and_w) {
  const tensor_shape xs{2, 2, 3, 3};
  tensor x(xs), scale(per_channel_of(xs));
  for (size_t i = 0; i < x.elements(); ++i) x.data()[i] = float(i + 1);
  const float per_channel[2][3] = {{0.5f, -2.0f, 3.0f}, {10.0f, 0.25f, -1.0f}};
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c) scale.data()[n * 3 + c] = per_channel[n][c];
  for (layer_kind kind : {layer_kind::multiply, layer_kind::add}) {
    layer l = simple_layer(kind, {xs, scale.shape()});
    tensor expected = reference_layer(l, {&x, &scale});
    tensor actual;
    BOOST_REQUIRE(run_operator(l, {&x, &scale}, nullptr, &actual, describe(l, {&x, &scale})));
    size_t wrong = 0;
    for (size_t i = 0; i < x.elements(); ++i) {
      const size_t c = i % 3, n = i / (2 * 3 * 3);
      const float want = kind == layer_kind::multiply ? x.data()[i] * per_channel[n][c] : x.data()[i] + per_channel[n][c];
      if (actual.data()[i] != want || expected.data()[i] != want) ++wrong;
    }
    BOOST_CHECK_MESSAGE(wrong == 0, to_string(kind) << ": " << wrong << " elements are not x op s[n][c]");
  }
}

BOOST_AUTO_TEST_CASE(sigmoid_cases) {
  struct spec {
    tensor_shape shape;
    float scale;
  };
  std::vector<spec> cases = {{{1, 1, 1, 1}, 1.0f},  {{1, 13, 17, 5}, 1.0f}, {{2, 7, 7, 33}, 8.0f},
                             {{1, 1, 1, 1000}, 30.0f}, {{3, 5, 3, 1}, 4.0f}, {{1, 56, 56, 24}, 3.0f}};
  rng r(161);
  for (int draw = 0; draw < 20; ++draw)
    cases.push_back({{r.range(1, 3), r.range(1, 12), r.range(1, 12), r.range(1, 70)}, r.coin() ? 1.0f : 12.0f});
  for (size_t i = 0; i < cases.size(); ++i) {
    rng v(1400 + i);
    layer l = simple_layer(layer_kind::sigmoid, {cases[i].shape});
    check_layer(l, {random_tensor_of(cases[i].shape, v, cases[i].scale)});
  }
  // Known values: sigmoid(0) = 0.5, saturation at both ends, symmetry.
  tensor x({1, 1, 1, 5});
  const float in[5] = {0.0f, 2.0f, -2.0f, 40.0f, -40.0f};
  std::copy(in, in + 5, x.data());
  layer l = simple_layer(layer_kind::sigmoid, {x.shape()});
  tensor y;
  BOOST_REQUIRE(run_operator(l, {&x}, nullptr, &y, "sigmoid known values"));
  BOOST_CHECK_CLOSE(y.data()[0], 0.5f, 1e-4);
  BOOST_CHECK_CLOSE(y.data()[1], 0.880797f, 1e-3);
  BOOST_CHECK_CLOSE(y.data()[2], 0.119203f, 1e-3);
  BOOST_CHECK_CLOSE(y.data()[3], 1.0f, 1e-4);
  BOOST_CHECK_SMALL(y.data()[4], 1e-12f);
}

// SiLU (x * sigmoid(x), EfficientNet's activation) is fused from the pair opset 13 exports: against
// the reference, and bit for bit the sigmoid layer then the multiply layer it replaces, on one
// thread, on tasks of a 2-thread pool (operators created for 2 and 3 threads), and in place.
// Shapes span one value, blocks that do not divide the tensor and many blocks.
BOOST_AUTO_TEST_CASE(silu_is_the_sigmoid_multiply_pair_bit_for_bit) {
  std::vector<tensor_shape> shapes = {{1, 1, 1, 1}, {1, 13, 17, 5}, {2, 7, 7, 33}, {1, 56, 56, 24}, {1, 112, 112, 32}};
  rng r(171);
  for (int draw = 0; draw < 8; ++draw) shapes.push_back({r.range(1, 3), r.range(1, 40), r.range(1, 40), r.range(1, 70)});
  for (size_t i = 0; i < shapes.size(); ++i) {
    const tensor x = random_tensor_of(shapes[i], r, i % 2 ? 12.0f : 4.0f);
    layer silu = simple_layer(layer_kind::silu, {shapes[i]});
    check_layer(silu, {&x});
    const std::string what = describe(silu, {&x});
    tensor fused, gate, pair;
    if (!run_operator(silu, {&x}, nullptr, &fused, what)) continue;
    BOOST_REQUIRE(run_operator(simple_layer(layer_kind::sigmoid, {shapes[i]}), {&x}, nullptr, &gate, what + " sigmoid"));
    BOOST_REQUIRE(run_operator(simple_layer(layer_kind::multiply, {shapes[i], shapes[i]}), {&x, &gate}, nullptr, &pair,
                               what + " multiply"));
    BOOST_CHECK_MESSAGE(bitwise_equal(fused, pair), what << ": differs from sigmoid then multiply: "
                                                         << compare_relative(fused, pair, 0.0));
    for (int threads : {2, 3}) {
      operator_options options;
      options.threads = threads;
      auto op = create_layer_operator(silu, {shapes[i]}, options);
      BOOST_REQUIRE_MESSAGE(op.is_ok(), op.message());
      tensor y(shapes[i]);
      BOOST_REQUIRE((*op)->setup({x.data()}, y.data(), two_threads()).is_ok());
      BOOST_REQUIRE((*op)->run(two_threads()).is_ok());
      BOOST_CHECK_MESSAGE(bitwise_equal(y, fused), what << ": created for " << threads << " threads, differs");
    }
    auto op = create_layer_operator(silu, {shapes[i]});
    BOOST_REQUIRE(op.is_ok());
    tensor in_place = x;
    BOOST_REQUIRE((*op)->setup({in_place.data()}, in_place.data(), nullptr).is_ok());
    BOOST_REQUIRE((*op)->run(nullptr).is_ok());
    BOOST_CHECK_MESSAGE(bitwise_equal(in_place, fused), what << ": in place, differs");
  }
  // Known values: silu(0) = 0, silu(1) = 0.7310586, silu(-1) = -0.2689414, x beyond +20, 0 below -100.
  tensor x({1, 1, 1, 5});
  const float in[5] = {0.0f, 1.0f, -1.0f, 30.0f, -100.0f};
  std::copy(in, in + 5, x.data());
  tensor y;
  BOOST_REQUIRE(run_operator(simple_layer(layer_kind::silu, {x.shape()}), {&x}, nullptr, &y, "silu known values"));
  BOOST_CHECK_EQUAL(y.data()[0], 0.0f);
  BOOST_CHECK_CLOSE(y.data()[1], 0.7310586f, 1e-4);
  BOOST_CHECK_CLOSE(y.data()[2], -0.2689414f, 1e-4);
  BOOST_CHECK_EQUAL(y.data()[3], 30.0f);
  BOOST_CHECK_SMALL(y.data()[4], 1e-30f);
}

// Depthwise windows past XNNPACK's 25 taps run on d3's native loop: odd channel counts (the
// one-lane tail), strides, dilation, asymmetric padding, fused clamps, batches.
BOOST_AUTO_TEST_CASE(large_depthwise_convolutions) {
  const activation none = activation::none();
  const std::vector<conv_spec> cases = {
      {{1, 14, 14, 96}, 96, 96, make_window(7, 7, 1, 1, pad_all(3)), true, none},  // ConvNeXt's
      {{2, 13, 17, 13}, 13, 13, make_window(7, 7, 2, 2, pad_all(3)), true, activation::relu()},
      {{1, 11, 12, 20}, 20, 20, make_window(5, 7, 1, 2, {1, 3, 4, 0}, 2, 1), false, clamp_range},
      {{1, 9, 9, 3}, 3, 3, make_window(9, 9, 1, 1, pad_all(4)), true, none}};
  for (size_t i = 0; i < cases.size(); ++i) {
    const conv_spec& c = cases[i];
    rng r(1700 + i);
    layer l = conv_layer(c, r);
    BOOST_TEST(depthwise_runs_natively(l, c.input));
    check_layer(l, {random_tensor_of(c.input, r)});
  }
  // 5x5 and grouped (not depthwise) windows stay on XNNPACK.
  rng r(1799);
  BOOST_TEST(!depthwise_runs_natively(conv_layer({{1, 8, 8, 8}, 8, 8, make_window(5, 5, 1, 1, pad_all(2)), true, none}, r),
                                      {1, 8, 8, 8}));
  BOOST_TEST(!depthwise_runs_natively(conv_layer({{1, 8, 8, 8}, 16, 8, make_window(7, 7, 1, 1, pad_all(3)), true, none}, r),
                                      {1, 8, 8, 8}));
}

void check_strided(const layer& l, const tensor& x, size_t offset, size_t stride);  // below

// A layer d3 runs natively (runs_natively true) against the reference, on 1 and 2 threads, and bit
// for bit against XNNPACK's operator for it (D3_CONVOLUTION=xnnpack), which is what a node without
// AVX-512 computes. D3_CONVOLUTION is `mode` again afterwards ("" unsets it).
void check_native_matches_xnnpack(const layer& l, const tensor& x,
                                  bool (*runs_natively)(const layer&, const tensor_shape&), const char* mode) {
  check_layer(l, {x});
  const std::string what = describe(l, {&x});
  tensor native, xnnpack;
  BOOST_REQUIRE(run_operator(l, {&x}, nullptr, &native, what));
  ::setenv("D3_CONVOLUTION", "xnnpack", 1);
  BOOST_TEST(!runs_natively(l, x.shape()));
  const bool ran = run_operator(l, {&x}, nullptr, &xnnpack, what + " [XNNPACK]");
  if (*mode)
    ::setenv("D3_CONVOLUTION", mode, 1);
  else
    ::unsetenv("D3_CONVOLUTION");
  BOOST_REQUIRE(ran);
  BOOST_CHECK_MESSAGE(bitwise_equal(native, xnnpack),
                      what << ": differs from XNNPACK: " << compare_relative(native, xnnpack, 0.0));
}

// A tile: the operator made for the whole map of `c`, reshaped to a band of 9 output rows from row
// 11 and given the 11 input rows under them, computes exactly those rows' values of the whole run;
// a band whose width does not follow from the window is refused. Precondition: c is a 3 x 3
// window at stride 1 without vertical padding over one image of at least 22 rows.
void check_band_of_rows(const conv_spec& c, rng& r) {
  const layer l = conv_layer(c, r);
  const tensor x = random_tensor_of(c.input, r);
  tensor whole;
  BOOST_REQUIRE(run_operator(l, {&x}, nullptr, &whole, "whole"));
  auto op = create_layer_operator(l, {c.input});
  BOOST_REQUIRE(op.is_ok());
  const int width = c.input.w, in_c = c.input.c, out_c = c.output_channels;
  const tensor_shape band_in{1, 11, width, in_c}, band_out{1, 9, width, out_c};
  BOOST_REQUIRE((*op)->reshape({band_in}, band_out).is_ok());
  const size_t first_row = 11;
  tensor band(band_out);
  BOOST_REQUIRE((*op)->setup({x.data() + first_row * size_t(width * in_c)}, band.data(), nullptr).is_ok());
  BOOST_REQUIRE((*op)->run(nullptr).is_ok());
  BOOST_TEST(std::memcmp(band.data(), whole.data() + first_row * size_t(width * out_c),
                         band.elements() * sizeof(float)) == 0,
             describe(l, {&x}) << ": a band of rows differs from the whole run");
  BOOST_TEST(!(*op)->reshape({band_in}, {1, 9, width - 1, out_c}).is_ok());  // not what the window gives
}

// Depthwise windows of up to 25 taps run on d3's AVX-512 or AVX2 loop where the CPU has one:
// against the reference, and bit for bit against XNNPACK's depthwise convolution of the same layer
// (D3_CONVOLUTION=xnnpack), which is what a node without either computes. MobileNet's, MNASNet's
// and EfficientNet's 3x3 and 5x5 windows at strides 1 and 2, 2x2 (XNNPACK's 4-tap kernel), windows
// XNNPACK runs on its IGEMM (3x5, 5x3: the taps in another order), channel tails (1 to 15 past a
// vector), maps narrower than four interior pixels, padding on every side (asymmetric too),
// dilation, fused clamps, batches, a strided output, and a reshaped tile.
BOOST_AUTO_TEST_CASE(small_depthwise_convolutions_match_xnnpack_bit_for_bit) {
  const activation none = activation::none();
  const std::vector<conv_spec> cases = {
      {{1, 112, 112, 32}, 32, 32, make_window(3, 3, 1, 1, pad_all(1)), true, none},  // MNASNet's first
      {{1, 28, 28, 72}, 72, 72, make_window(5, 5, 2, 2, pad_all(2)), true, activation::relu()},
      {{1, 14, 14, 120}, 120, 120, make_window(5, 5, 1, 1, pad_all(2)), true, activation::relu6()},
      {{1, 7, 7, 1152}, 1152, 1152, make_window(5, 5, 1, 1, pad_all(2)), true, none},  // EfficientNet's last
      {{2, 13, 17, 13}, 13, 13, make_window(3, 3, 2, 2, pad_all(1)), true, clamp_range},
      {{1, 11, 12, 20}, 20, 20, make_window(3, 5, 1, 1, pad_all(1)), false, none},
      {{1, 11, 12, 20}, 20, 20, make_window(3, 3, 1, 1, pad_all(1), 2, 1), false, none},
      {{1, 11, 12, 20}, 20, 20, make_window(3, 3, 1, 2, {1, 3, 0, 2}), false, none},
      {{1, 11, 12, 20}, 20, 20, make_window(5, 3, 1, 1, pad_all(1)), false, none},
      {{1, 9, 10, 17}, 17, 17, make_window(3, 3, 1, 1, pad_all(1), 1, 2), true, none},
      {{1, 1, 1, 24}, 24, 24, make_window(3, 3, 1, 1, pad_all(1)), true, none},
      {{1, 3, 5, 2}, 2, 2, make_window(5, 5, 1, 1, pad_all(2)), true, activation::relu()},
      {{1, 6, 6, 31}, 31, 31, make_window(2, 2, 2, 2), true, none},
      {{1, 8, 9, 48}, 48, 48, make_window(1, 1, 2, 2), true, none},
      {{1, 5, 23, 16}, 16, 16, make_window(3, 3, 1, 1), false, none},
      // The sliding window over a row's interior (3x3 and 5x5, strides 1 and 2): interiors longer
      // than one group, with a last group overlapping, channel tails, asymmetric padding, no padding.
      {{1, 21, 37, 40}, 40, 40, make_window(3, 3, 2, 2, pad_all(1)), true, activation::relu()},
      {{1, 15, 19, 24}, 24, 24, make_window(5, 5, 2, 2, pad_all(2)), true, clamp_range},
      {{2, 12, 30, 33}, 33, 33, make_window(3, 3, 1, 1, {1, 0, 0, 1}), true, none},
      {{1, 10, 13, 16}, 16, 16, make_window(5, 5, 1, 1), false, none},
      {{1, 9, 11, 7}, 7, 7, make_window(5, 5, 1, 1, pad_all(2)), true, none}};
  rng r(2300);
  for (const conv_spec& c : cases) {
    const layer l = conv_layer(c, r);
    const tensor x = random_tensor_of(c.input, r);
    if (!depthwise_runs_on_native_fma(l, c.input)) {
      BOOST_TEST_MESSAGE("neither AVX-512 nor AVX2 with FMA3 on this CPU: depthwise convolutions run on XNNPACK");
      return;
    }
    check_native_matches_xnnpack(l, x, depthwise_runs_on_native_fma, "");
    check_strided(l, x, 3, size_t(l.output_shape.c) + 5);
  }
  check_band_of_rows({{1, 29, 10, 40}, 40, 40, make_window(3, 3, 1, 1, {0, 1, 0, 1}), true, none}, r);
  // Grouped (not depthwise) and larger windows are not this loop's.
  BOOST_TEST(!depthwise_runs_on_native_fma(conv_layer({{1, 8, 8, 8}, 16, 8, make_window(3, 3, 1, 1, pad_all(1)), true, none}, r),
                                           {1, 8, 8, 8}));
  BOOST_TEST(!depthwise_runs_on_native_fma(conv_layer({{1, 8, 8, 8}, 8, 8, make_window(7, 7, 1, 1, pad_all(3)), true, none}, r),
                                           {1, 8, 8, 8}));
}

// The widest path of a layer's operator on this CPU (sixteen lanes on AVX-512, eight on AVX2) and
// the four-lane one give the same bits.
void check_widths_agree(const layer& l, const std::vector<const tensor*>& inputs, const std::string& what) {
  tensor wide, four;
  BOOST_REQUIRE(run_operator(l, inputs, nullptr, &wide, what));
  force_four_lane_vectors(true);
  const bool ran = run_operator(l, inputs, nullptr, &four, what + " [four lanes]");
  force_four_lane_vectors(false);
  BOOST_REQUIRE(ran);
  BOOST_CHECK_MESSAGE(bitwise_equal(wide, four), what << ": the widths differ: " << compare_relative(wide, four, 0.0));
}

// GELU, layer norm, attention and the large depthwise windows run sixteen lanes at a time (eight
// doubles) on AVX-512, eight (four) on AVX2 and four (two) elsewhere:
// both paths must give the same bits (nodes of a cluster may differ in their CPUs), including the
// channel tails that leave a partial vector, strides, dilation, padding and clamps.
BOOST_AUTO_TEST_CASE(native_vector_widths_compute_the_same_bits) {
  const activation none = activation::none();
  std::vector<std::pair<layer, tensor>> cases;
  rng r(2200);
  for (const conv_spec& c : std::vector<conv_spec>{
           {{1, 14, 14, 96}, 96, 96, make_window(7, 7, 1, 1, pad_all(3)), true, none},
           {{2, 13, 17, 83}, 83, 83, make_window(7, 7, 2, 2, pad_all(3)), true, activation::relu()},
           {{1, 11, 12, 20}, 20, 20, make_window(5, 7, 1, 2, {1, 3, 4, 0}, 2, 1), false, clamp_range}}) {
    layer l = conv_layer(c, r);
    tensor x = random_tensor_of(c.input, r);
    cases.emplace_back(std::move(l), std::move(x));
  }
  for (const tensor_shape& s : std::vector<tensor_shape>{{1, 5, 7, 96}, {1, 1, 1, 37}, {2, 3, 4, 13}, {1, 2, 1, 3}}) {
    layer l = simple_layer(layer_kind::gelu, {s});
    tensor x = random_tensor_of(s, r, 6.0f);
    cases.emplace_back(std::move(l), std::move(x));
    layer norm;
    norm.name = "layer_norm";
    norm.kind = layer_kind::layer_norm;
    std::vector<float> w(size_t(2) * s.c);
    for (float& v : w) v = r.uniform(-1.0f, 1.0f);
    norm.weights = weight_blob::from_vector(std::move(w));
    norm.epsilon = 1e-6f;
    cases.emplace_back(with_shapes(std::move(norm), {s}), random_tensor_of(s, r, 3.0f));
  }
  // Global average pooling's sums: blocks of four vectors of channels, single vectors, a scalar
  // tail; leaves of the pairwise tree and their merges.
  for (const tensor_shape& s : std::vector<tensor_shape>{{1, 37, 29, 83}, {2, 3, 5, 7}, {1, 7, 7, 1152}}) {
    layer l = simple_layer(layer_kind::global_average_pool, {s}, activation::none());
    cases.emplace_back(std::move(l), random_tensor_of(s, r, 3.0f));
  }
  // Attention: one key per lane against four partial sums per dot product; odd token counts (a
  // partial last vector of keys) and head widths with a tail (15, 5).
  const std::vector<std::pair<tensor_shape, int>> attentions = {
      {{1, 50, 1, 64}, 4}, {{1, 7, 1, 30}, 2}, {{2, 5, 3, 10}, 2}, {{1, 197, 1, 96}, 12}};
  for (const auto& [shape, heads] : attentions) {
    layer l;
    l.name = "attention";
    l.kind = layer_kind::attention;
    l.groups = heads;
    l.scale = 0.3f;
    l = with_shapes(std::move(l), {shape, shape, shape});
    const tensor q = random_tensor_of(shape, r, 2.0f), k = random_tensor_of(shape, r, 2.0f),
                 v = random_tensor_of(shape, r);
    check_widths_agree(l, {&q, &k, &v}, describe(l, {&q, &k, &v}));
  }
  for (const auto& [l, x] : cases) check_widths_agree(l, {&x}, describe(l, {&x}));
}

// The sums in order, one scalar FMA at a time: each output starts from its bias and adds input *
// weight per term, taps row by row, input channels within a tap (zero inputs over padding), then
// clamps as the vector instructions do (max(a, lo) is a > lo ? a : lo; min likewise). What
// XNNPACK's GEMM computes on every CPU but Zen 1 (xnnpack_gemm_sums_in_order), and d3's GEMM on all.
// With groups, output j sums over its group's input channels.
tensor convolution_summed_in_order(const layer& l, const tensor& x) {
  const tensor_shape in = x.shape(), out = l.output_shape;
  const window_params& w = l.window;
  const int kc = in.c / l.groups, group_out = out.c / l.groups;
  tensor y(out);
  for (int n = 0; n < out.n; ++n)
    for (int oy = 0; oy < out.h; ++oy)
      for (int ox = 0; ox < out.w; ++ox)
        for (int j = 0; j < out.c; ++j) {
          float acc = l.bias.empty() ? 0.0f : l.bias.data()[j];
          for (int ky = 0; ky < w.kernel_h; ++ky)
            for (int kx = 0; kx < w.kernel_w; ++kx) {
              const int iy = oy * w.stride_h - w.pad.top + ky * w.dilation_h;
              const int ix = ox * w.stride_w - w.pad.left + kx * w.dilation_w;
              const bool inside = iy >= 0 && iy < in.h && ix >= 0 && ix < in.w;
              for (int c = 0; c < kc; ++c) {
                const float v =
                    inside ? x.data()[((size_t(n) * in.h + iy) * in.w + ix) * in.c + (j / group_out) * kc + c] : 0.0f;
                const float wt = l.weights.data()[((size_t(j) * w.kernel_h + ky) * w.kernel_w + kx) * kc + c];
                acc = std::fma(v, wt, acc);
              }
            }
          acc = acc > l.act.min ? acc : l.act.min;
          acc = acc < l.act.max ? acc : l.act.max;
          y.data()[((size_t(n) * out.h + oy) * out.w + ox) * out.c + j] = acc;
        }
  return y;
}

// A layer on d3's GEMM: against the reference, bit for bit against XNNPACK where XNNPACK sums in
// order on this CPU (`mode`: the D3_CONVOLUTION value to restore after), bit for bit against the
// sums in order, and into a strided output.
void check_gemm_sums_in_order(const layer& l, const tensor& x, const char* mode) {
  if (xnnpack_gemm_sums_in_order()) {
    check_native_matches_xnnpack(l, x, convolution_runs_on_native_gemm, mode);
  } else {
    check_layer(l, {x});
    BOOST_TEST_MESSAGE("XNNPACK's GEMM does not sum in order on this CPU (Zen 1: 4x16s4): not compared with it");
  }
  tensor native;
  BOOST_REQUIRE(run_operator(l, {&x}, nullptr, &native, describe(l, {&x})));
  const tensor in_order = convolution_summed_in_order(l, x);
  BOOST_CHECK_MESSAGE(bitwise_equal(native, in_order), describe(l, {&x}) << ": differs from the sums in order: "
                                                                         << compare_relative(native, in_order, 0.0));
  check_strided(l, x, 3, size_t(l.output_shape.c) + 5);
}

// Convolutions with one group run on d3's GEMM (AVX-512, or AVX2 with FMA3) where the CPU has it
// (D3_CONVOLUTION=native: also those it leaves to XNNPACK for speed): against the reference, bit
// for bit against the sums in order, and bit for bit against XNNPACK's convolution of the same
// layer (D3_CONVOLUTION=xnnpack) where XNNPACK sums in order on this CPU (not on Zen 1). Remainders
// of the pixel blocks and channel panels, padding (XNNPACK's zero rows), strides, dilation, the
// stems of ResNet and AlexNet, fused clamps, batches, a strided output, and a reshaped tile.
void check_strided_input(const layer& l, const tensor& x, size_t stride);          // below

BOOST_AUTO_TEST_CASE(gemm_convolutions_match_xnnpack_bit_for_bit) {
  const activation none = activation::none();
  const std::vector<conv_spec> cases = {
      {{1, 50, 1, 768}, 2304, 1, make_window(1, 1, 1, 1), true, none},  // ViT-B/32's qkv
      {{1, 13, 17, 96}, 384, 1, make_window(1, 1, 1, 1), true, none},   // ConvNeXt's MLP
      {{2, 7, 5, 33}, 47, 1, make_window(1, 1, 1, 1), true, activation::relu()},
      {{1, 1, 1, 1}, 1, 1, make_window(1, 1, 1, 1), false, none},
      {{1, 3, 4, 17}, 31, 1, make_window(1, 1, 1, 1), true, clamp_range},
      {{1, 11, 1, 5}, 64, 1, make_window(1, 1, 1, 1), false, activation::relu6()},
      {{1, 14, 14, 128}, 32, 1, make_window(3, 3, 1, 1, pad_all(1)), true, none},  // DenseNet's 3x3
      {{1, 9, 9, 64}, 64, 1, make_window(3, 3, 1, 1, pad_all(1)), true, activation::relu()},
      {{2, 13, 17, 16}, 40, 1, make_window(3, 3, 2, 2, pad_all(1)), false, none},
      {{1, 13, 17, 16}, 24, 1, make_window(1, 1, 2, 2), true, none},  // ResNet's shortcut
      {{1, 31, 29, 3}, 64, 1, make_window(7, 7, 2, 2, pad_all(3)), true, activation::relu()},
      {{1, 35, 35, 3}, 48, 1, make_window(11, 11, 4, 4, pad_all(2)), true, activation::relu()},
      {{1, 12, 11, 3}, 72, 1, make_window(3, 3, 2, 2, pad_all(1)), true, activation::relu()},  // two panels, then one
      {{1, 15, 11, 4}, 6, 1, make_window(3, 5, 2, 1, {1, 3, 0, 2}, 2, 3), true, clamp_range},
      {{1, 1, 1, 9}, 5, 1, make_window(3, 3, 1, 1, pad_all(1)), true, none},
      {{2, 17, 13, 2}, 40, 1, make_window(5, 3, 2, 2, {2, 1, 1, 2}), true, activation::relu6()},  // spans
      {{1, 9, 10, 3}, 8, 1, make_window(3, 3, 1, 1, pad_all(1), 2, 1), false, none}};           // spans, dilated rows
  rng r(2100);
  // Which layers the GEMM leaves to XNNPACK: the narrow and the tiny ones.
  rng shapes(2101);
  // (On AVX2 without AVX-512 the GEMM takes every convolution with one group.)
  if (cpu_has_avx512f()) {
    BOOST_TEST(!convolution_runs_on_native_gemm(conv_layer({{1, 8, 8, 32}, 16, 1, make_window(1, 1, 1, 1), true, none}, shapes),
                                                {1, 8, 8, 32}));
    BOOST_TEST(!convolution_runs_on_native_gemm(conv_layer({{1, 8, 8, 16}, 48, 1, make_window(1, 1, 1, 1), true, none}, shapes),
                                                {1, 8, 8, 16}));
    BOOST_TEST(convolution_runs_on_native_gemm(conv_layer({{1, 8, 8, 48}, 24, 1, make_window(1, 1, 1, 1), true, none}, shapes),
                                               {1, 8, 8, 48}));
  } else if (cpu_has_avx2_fma()) {
    BOOST_TEST(convolution_runs_on_native_gemm(conv_layer({{1, 8, 8, 32}, 16, 1, make_window(1, 1, 1, 1), true, none}, shapes),
                                               {1, 8, 8, 32}));
  }
  // Grouped: XNNPACK's on AVX-512 (grouped_convolutions_sum_in_order checks AVX2's).
  if (cpu_has_avx512f())
    BOOST_TEST(!convolution_runs_on_native_gemm(
        conv_layer({{1, 8, 8, 32}, 32, 2, make_window(3, 3, 1, 1), true, none}, shapes), {1, 8, 8, 32}));
  ::setenv("D3_CONVOLUTION", "native", 1);
  struct unset_at_exit {
    ~unset_at_exit() { ::unsetenv("D3_CONVOLUTION"); }
  } unset;
  for (const conv_spec& c : cases) {
    const layer l = conv_layer(c, r);
    const tensor x = random_tensor_of(c.input, r);
    if (!convolution_runs_on_native_gemm(l, c.input)) {
      BOOST_TEST_MESSAGE("neither AVX-512 nor AVX2 with FMA3 on this CPU: convolutions run on XNNPACK, nothing to compare");
      return;
    }
    check_gemm_sums_in_order(l, x, "native");
  }
  // A tile, with 40 input channels (a pointer per tap) and with 3 (window rows as spans of a
  // zero-bordered copy).
  for (const int channels : {40, 3})
    check_band_of_rows({{1, 29, 6, channels}, 70, 1, make_window(3, 3, 1, 1, {0, 1, 0, 1}), true, none}, r);
}

// Depthwise 1x1 convolutions (DenseNet's standalone batch norms) run natively: against the
// reference, and memcmp-equal to XNNPACK's (D3_CONVOLUTION=xnnpack) at both vector widths, with
// channel tails and clamps, also on the clamp's ties and NaNs.
BOOST_AUTO_TEST_CASE(channel_affines_match_xnnpack_bit_for_bit) {
  const std::vector<conv_spec> cases = {
      {{1, 56, 56, 224}, 224, 224, make_window(1, 1, 1, 1), true, activation::relu()},
      {{2, 5, 7, 37}, 37, 37, make_window(1, 1, 1, 1), true, activation::none()},
      {{1, 3, 4, 20}, 20, 20, make_window(1, 1, 1, 1), false, clamp_range},
      {{1, 9, 9, 3}, 3, 3, make_window(1, 1, 1, 1), true, activation::relu6()}};
  rng r(2300);
  for (const conv_spec& c : cases) {
    layer l = conv_layer(c, r);
    tensor x = random_tensor_of(c.input, r);
    BOOST_TEST(channel_affine_runs_natively(l, c.input));
    check_layer(l, {x});
    check_strided(l, x, 2, size_t(c.input.c) + 3);
    check_strided_input(l, x, size_t(c.input.c) + 5);  // a prefix of a wider concat's buffer
    // The clamp's ties and NaNs: -0 (a -0 bias plus -0) against a 0 bound, and NaN inputs, which
    // x86's maxps and minps turn into the bound.
    for (size_t i = 0; i < x.elements(); i += 7) x.data()[i] = (i / 7) % 3 == 0 ? NAN : (i / 7) % 3 == 1 ? 0.0f : -0.0f;
    if (!l.bias.empty()) {
      std::vector<float> bias(l.bias.begin(), l.bias.end());
      for (size_t k = 0; k < bias.size(); k += 2) bias[k] = -0.0f;
      l.bias = weight_blob::from_vector(std::move(bias));
    }
    const std::string what = describe(l, {&x});
    tensor wide, four, xnnpack;
    BOOST_REQUIRE(run_operator(l, {&x}, nullptr, &wide, what));
    force_four_lane_vectors(true);
    const bool ran_four = run_operator(l, {&x}, nullptr, &four, what + " [four lanes]");
    force_four_lane_vectors(false);
    ::setenv("D3_CONVOLUTION", "xnnpack", 1);
    BOOST_TEST(!channel_affine_runs_natively(l, c.input));
    const bool ran_xnnpack = run_operator(l, {&x}, nullptr, &xnnpack, what + " [XNNPACK]");
    ::unsetenv("D3_CONVOLUTION");
    BOOST_REQUIRE(ran_four);
    BOOST_REQUIRE(ran_xnnpack);
    BOOST_CHECK_MESSAGE(bitwise_equal(wide, xnnpack), what << ": differs from XNNPACK: " << compare_relative(wide, xnnpack, 0.0));
    BOOST_CHECK_MESSAGE(bitwise_equal(four, xnnpack), what << ": four lanes differ from XNNPACK");
  }
}

// Layer norm over each pixel's channels and GELU against the naive reference (double precision
// from the definitions), including channel counts that leave a vector tail.
BOOST_AUTO_TEST_CASE(layer_norm_and_gelu_cases) {
  const std::vector<tensor_shape> shapes = {{1, 1, 1, 1}, {1, 5, 7, 96}, {2, 3, 4, 13}, {1, 1, 1, 768}, {1, 7, 7, 3}};
  for (size_t i = 0; i < shapes.size(); ++i) {
    rng r(1800 + i);
    layer norm;
    norm.name = "layer_norm";
    norm.kind = layer_kind::layer_norm;
    std::vector<float> w(size_t(2) * shapes[i].c);
    for (float& v : w) v = r.uniform(-1.0f, 1.0f);
    norm.weights = weight_blob::from_vector(std::move(w));
    norm.epsilon = i % 2 ? 1e-6f : 1e-5f;
    norm = with_shapes(std::move(norm), {shapes[i]});
    check_layer(norm, {random_tensor_of(shapes[i], r, 3.0f)});
    layer gelu = simple_layer(layer_kind::gelu, {shapes[i]});
    check_layer(gelu, {random_tensor_of(shapes[i], r, 6.0f)});
    layer swish = simple_layer(layer_kind::hardswish, {shapes[i]});
    check_layer(swish, {random_tensor_of(shapes[i], r, 5.0f)});
  }
  // Known values: GELU(0) = 0, GELU(1) = 0.841345, GELU(-1) = -0.158655, saturation beyond +-4 sqrt 2.
  tensor x({1, 1, 1, 6});
  const float in[6] = {0.0f, 1.0f, -1.0f, 10.0f, -10.0f, 2.5f};
  std::copy(in, in + 6, x.data());
  layer gelu = simple_layer(layer_kind::gelu, {x.shape()});
  tensor y;
  BOOST_REQUIRE(run_operator(gelu, {&x}, nullptr, &y, "gelu known values"));
  BOOST_CHECK_EQUAL(y.data()[0], 0.0f);
  BOOST_CHECK_CLOSE(y.data()[1], 0.8413447f, 1e-4);
  BOOST_CHECK_CLOSE(y.data()[2], -0.1586553f, 1e-3);
  BOOST_CHECK_EQUAL(y.data()[3], 10.0f);
  BOOST_CHECK_EQUAL(y.data()[4], -0.0f);
  BOOST_CHECK_CLOSE(y.data()[5], 2.4844758f, 1e-4);
}

// The preprocess layer (8-bit pixels to the input) against the naive reference, and bit-exact with
// torchvision's ToTensor + Normalize on pixel values: ((p / 255) - mean) / std in float32, each step
// rounded (what PyTorch computes; checked here by the same three float operations).
BOOST_AUTO_TEST_CASE(preprocess_cases) {
  for (const tensor_shape& shape : {tensor_shape{1, 224, 224, 3}, tensor_shape{1, 5, 7, 3}, tensor_shape{2, 3, 3, 1}}) {
    layer pre;
    pre.name = "preprocess";
    pre.kind = layer_kind::preprocess;
    std::vector<float> mean(size_t(shape.c)), std_dev(size_t(shape.c));
    for (int c = 0; c < shape.c; ++c) {
      mean[size_t(c)] = 0.485f - 0.029f * float(c);
      std_dev[size_t(c)] = 0.229f - 0.002f * float(c);
    }
    pre.weights = weight_blob::from_vector(std::vector<float>(mean));
    pre.bias = weight_blob::from_vector(std::vector<float>(std_dev));
    pre = with_shapes(std::move(pre), {shape});
    tensor pixels(shape);
    for (size_t i = 0; i < pixels.elements(); ++i) pixels.data()[i] = float((i * 7919) % 256);
    check_layer(pre, {pixels});
    tensor y;
    BOOST_REQUIRE(run_operator(pre, {&pixels}, nullptr, &y, "preprocess"));
    size_t mismatches = 0;
    for (size_t i = 0; i < y.elements(); ++i) {
      const size_t c = i % size_t(shape.c);
      const float expected = (pixels.data()[i] / 255.0f - mean[c]) / std_dev[c];
      mismatches += std::memcmp(&expected, y.data() + i, sizeof(float)) != 0;
    }
    BOOST_TEST(mismatches == 0u, shape.to_string());
  }
  // Bad parameters: a std of zero, a mean per channel missing.
  layer bad;
  bad.name = "preprocess";
  bad.kind = layer_kind::preprocess;
  bad.weights = weight_blob::from_vector({0.5f, 0.5f, 0.5f});
  bad.bias = weight_blob::from_vector({0.2f, 0.0f, 0.2f});
  graph g;
  g.name = "bad";
  layer in;
  in.name = "input";
  in.kind = layer_kind::input;
  in.output_shape = {1, 4, 4, 3};
  bad.inputs = {0};
  g.layers = {in, bad};
  g.outputs = {1};
  status s = infer_shapes(g);
  BOOST_TEST(!s.is_ok());
  BOOST_TEST(s.message().find("std") != std::string::npos, s.message());
  g.layers[1].bias = weight_blob::from_vector({0.2f, 0.2f});
  BOOST_TEST(!infer_shapes(g).is_ok());
}

// Token kinds against the naive reference: multi-head attention (token and head sizes that leave
// vector tails, several heads, a batch of 2, ConvNeXt-free scales), and the class token, position
// embedding and token pick of ViT.
BOOST_AUTO_TEST_CASE(token_layers) {
  struct attention_case {
    tensor_shape shape;
    int heads;
    float scale;
  };
  const std::vector<attention_case> cases = {{{1, 50, 1, 64}, 4, 0.25f},  {{1, 7, 1, 12}, 3, 0.5f},
                                             {{2, 5, 3, 10}, 2, 1.0f},    {{1, 1, 1, 8}, 1, 0.125f},
                                             {{1, 197, 1, 96}, 12, 0.35f}};
  for (size_t i = 0; i < cases.size(); ++i) {
    rng r(1900 + i);
    layer l;
    l.name = "attention";
    l.kind = layer_kind::attention;
    l.groups = cases[i].heads;
    l.scale = cases[i].scale;
    const tensor_shape s = cases[i].shape;
    l = with_shapes(std::move(l), {s, s, s});
    check_layer(l, {random_tensor_of(s, r, 2.0f), random_tensor_of(s, r, 2.0f), random_tensor_of(s, r)});
  }
  rng r(1950);
  const tensor_shape grid{1, 4, 3, 16};  // a convolution's map: 12 tokens
  layer prepend;
  prepend.name = "class_token";
  prepend.kind = layer_kind::prepend_tokens;
  prepend.row_end = 2;
  prepend.weights = he_weights(2 * 16, 1, r);
  prepend = with_shapes(std::move(prepend), {grid});
  BOOST_TEST(prepend.output_shape == (tensor_shape{1, 14, 1, 16}));
  check_layer(prepend, {random_tensor_of(grid, r)}, exactness::bitwise);
  layer position;
  position.name = "position";
  position.kind = layer_kind::constant_add;
  position.weights = he_weights(14 * 16, 1, r);
  position = with_shapes(std::move(position), {{1, 14, 1, 16}});
  check_layer(position, {random_tensor_of({1, 14, 1, 16}, r)}, exactness::bitwise);
  layer pick;
  pick.name = "pick";
  pick.kind = layer_kind::row_slice;
  pick.row_begin = 3;
  pick.row_end = 5;
  pick = with_shapes(std::move(pick), {{2, 14, 1, 16}});
  BOOST_TEST(pick.output_shape == (tensor_shape{2, 2, 1, 16}));
  check_layer(pick, {random_tensor_of({2, 14, 1, 16}, r)}, exactness::bitwise);
}

// Swin's kinds against the naive reference: windowed attention (square and oblong windows, one
// window for the whole map, batches, a score addend shared by all windows and one per window, as
// the shift masks make it), the cyclic shift (both axes, one axis) and strided spatial slices
// (patch merging's 2x2 phases, an odd crop); and the attention's sixteen- and four-lane paths.
BOOST_AUTO_TEST_CASE(window_layers) {
  struct window_case {
    tensor_shape shape;
    int window_h, window_w, heads;
    int addend_tables;  // 0: none, 1: shared, else one per window
    int dilation_h = 1, dilation_w = 1;
  };
  const std::vector<window_case> cases = {{{1, 14, 14, 96}, 7, 7, 3, 1},    {{1, 14, 14, 96}, 7, 7, 3, 4},
                                          {{2, 6, 8, 20}, 3, 4, 2, 4},      {{1, 7, 7, 32}, 7, 7, 1, 0},
                                          {{1, 4, 6, 30}, 2, 3, 5, 4},
                                          // MaxViT's grid: one pixel of every 2x2 block, blocks of
                                          // 7x7 (and oblong, blocks and phases both > 1)
                                          {{1, 14, 14, 64}, 7, 7, 2, 1, 2, 2}, {{1, 12, 8, 12}, 3, 2, 3, 16, 2, 2}};
  for (size_t i = 0; i < cases.size(); ++i) {
    const window_case& c = cases[i];
    rng r(2600 + i);
    layer l;
    l.name = "window_attention";
    l.kind = layer_kind::window_attention;
    l.groups = c.heads;
    l.scale = 0.3f;
    l.window.kernel_h = c.window_h;
    l.window.kernel_w = c.window_w;
    l.window.dilation_h = c.dilation_h;
    l.window.dilation_w = c.dilation_w;
    const int tokens = c.window_h * c.window_w;
    if (c.addend_tables > 0) {
      std::vector<float> addend(size_t(c.addend_tables) * c.heads * tokens * tokens);
      for (float& v : addend) v = r.uniform(-2.0f, 2.0f);
      if (c.addend_tables > 1)  // a shift mask's -100 between regions of some windows
        for (size_t k = 0; k < addend.size(); k += 7) addend[k] = -100.0f;
      l.weights = weight_blob::from_vector(std::move(addend));
    }
    l = with_shapes(std::move(l), {c.shape, c.shape, c.shape});
    const tensor q = random_tensor_of(c.shape, r, 2.0f), k = random_tensor_of(c.shape, r, 2.0f),
                 v = random_tensor_of(c.shape, r);
    check_layer(l, {q, k, v});
    check_widths_agree(l, {&q, &k, &v}, describe(l, {&q, &k, &v}));
  }
  // Windows that do not tile the map, and an addend of the wrong size, are refused by name.
  layer bad;
  bad.name = "odd_windows";
  bad.kind = layer_kind::window_attention;
  bad.groups = 1;
  bad.window.kernel_h = bad.window.kernel_w = 4;
  tensor_shape out;
  const status s = infer_layer_shape(bad, {{1, 6, 8, 4}, {1, 6, 8, 4}, {1, 6, 8, 4}}, out);
  BOOST_TEST(!s.is_ok());
  BOOST_TEST(s.message().find("odd_windows") != std::string::npos, s.message());
  bad.window.kernel_h = 3;
  bad.weights = weight_blob::from_vector(std::vector<float>(5, 0.0f));
  BOOST_TEST(!infer_layer_shape(bad, {{1, 6, 8, 4}, {1, 6, 8, 4}, {1, 6, 8, 4}}, out).is_ok());

  rng r(2650);
  // MaxViT classifier's tanh, against the reference (and both widths alike) over its whole range,
  // both sides of the polynomial's |x| = 0.625 and saturated values.
  for (const tensor_shape& s : std::vector<tensor_shape>{{1, 1, 1, 1000}, {2, 3, 5, 7}}) {
    layer t = simple_layer(layer_kind::tanh, {s});
    const tensor x = random_tensor_of(s, r, 12.0f);
    check_layer(t, {x});
    check_widths_agree(t, {&x}, "tanh");
  }
  for (const auto& [rows, cols] : std::vector<std::pair<int, int>>{{3, 3}, {0, 5}, {6, 0}, {1, 7}}) {
    layer roll;
    roll.name = "roll";
    roll.kind = layer_kind::roll;
    roll.row_begin = rows;
    roll.col_begin = cols;
    roll = with_shapes(std::move(roll), {{2, 7, 8, 5}});
    check_layer(roll, {random_tensor_of({2, 7, 8, 5}, r)}, exactness::bitwise);
  }
  struct slice_case {
    int row_begin, row_end, stride_h, col_begin, col_end, stride_w;
    tensor_shape expected;
  };
  for (const slice_case& c : std::vector<slice_case>{{0, 8, 2, 1, 8, 2, {1, 4, 4, 6}},
                                                     {1, 8, 2, 0, 8, 2, {1, 4, 4, 6}},
                                                     {2, 7, 1, 3, 5, 1, {1, 5, 2, 6}},
                                                     {1, 8, 3, 0, 7, 4, {1, 3, 2, 6}}}) {
    layer slice;
    slice.name = "spatial_slice";
    slice.kind = layer_kind::spatial_slice;
    slice.row_begin = c.row_begin;
    slice.row_end = c.row_end;
    slice.window.stride_h = c.stride_h;
    slice.col_begin = c.col_begin;
    slice.col_end = c.col_end;
    slice.window.stride_w = c.stride_w;
    slice = with_shapes(std::move(slice), {{1, 8, 8, 6}});
    BOOST_TEST(slice.output_shape == c.expected);
    check_layer(slice, {random_tensor_of({1, 8, 8, 6}, r)}, exactness::bitwise);
  }
}

layer shuffle_layer(const tensor_shape& in, int groups) {
  layer l;
  l.name = "shuffle";
  l.kind = layer_kind::channel_shuffle;
  l.groups = groups;
  return with_shapes(std::move(l), {in});
}

layer slice_layer(const tensor_shape& in, int begin, int end) {
  layer l;
  l.name = "slice";
  l.kind = layer_kind::channel_slice;
  l.channel_begin = begin;
  l.channel_end = end;
  return with_shapes(std::move(l), {in});
}

layer pad_layer(const tensor_shape& in, padding p) {
  layer l;
  l.name = "pad";
  l.kind = layer_kind::pad;
  l.window.pad = p;
  return with_shapes(std::move(l), {in});
}

BOOST_AUTO_TEST_CASE(channel_shuffle_cases) {
  uint64_t seed = 1500;
  for (int groups : {1, 2, 3, 4, 5, 8})
    for (int per_group : {1, 2, 3, 7, 29})
      for (const tensor_shape& base : {tensor_shape{1, 13, 17, 1}, tensor_shape{2, 3, 5, 1}, tensor_shape{1, 1, 1, 1}}) {
        tensor_shape in = base;
        in.c = groups * per_group;
        rng v(seed++);
        check_layer(shuffle_layer(in, groups), {random_tensor_of(in, v)}, exactness::bitwise);
      }
  // PyTorch's view(N, g, C/g, H, W).transpose(1, 2) written out: input channel k holds the value k.
  const std::vector<std::pair<int, std::vector<int>>> known = {
      {2, {0, 3, 1, 4, 2, 5}},
      {3, {0, 2, 4, 1, 3, 5}},
      {4, {0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11}},
  };
  for (const auto& [groups, order] : known) {
    const tensor_shape s{1, 2, 1, int(order.size())};
    tensor x(s);
    for (int p = 0; p < 2; ++p)
      for (int c = 0; c < s.c; ++c) x.data()[p * s.c + c] = float(100 * p + c);
    layer l = shuffle_layer(s, groups);
    tensor y = reference_layer(l, {&x});
    tensor actual;
    BOOST_REQUIRE(run_operator(l, {&x}, nullptr, &actual, describe(l, {&x})));
    for (int p = 0; p < 2; ++p)
      for (int c = 0; c < s.c; ++c) {
        BOOST_CHECK_EQUAL(y.data()[p * s.c + c], float(100 * p + order[c]));
        BOOST_CHECK_EQUAL(actual.data()[p * s.c + c], float(100 * p + order[c]));
      }
  }
}

BOOST_AUTO_TEST_CASE(channel_slice_cases) {
  const tensor_shape in{2, 13, 17, 13};
  const std::vector<std::pair<int, int>> ranges = {{0, 5}, {5, 9}, {9, 13}, {0, 13}, {6, 7}, {0, 1}, {12, 13}};
  uint64_t seed = 1600;
  for (auto [begin, end] : ranges) {
    rng v(seed++);
    check_layer(slice_layer(in, begin, end), {random_tensor_of(in, v)}, exactness::bitwise);
  }
  rng r(171);
  for (int draw = 0; draw < 20; ++draw) {
    tensor_shape s{r.range(1, 3), r.range(1, 12), r.range(1, 12), r.range(1, 70)};
    const int begin = r.range(0, s.c - 1);
    const int end = r.range(begin + 1, s.c);
    rng v(seed++);
    check_layer(slice_layer(s, begin, end), {random_tensor_of(s, v)}, exactness::bitwise);
  }
  // Channels 2..4 of pixels whose channel k holds 10 * pixel + k.
  const tensor_shape s{1, 1, 3, 7};
  tensor x(s);
  for (int p = 0; p < 3; ++p)
    for (int c = 0; c < 7; ++c) x.data()[p * 7 + c] = float(10 * p + c);
  layer l = slice_layer(s, 2, 5);
  BOOST_REQUIRE(l.output_shape == (tensor_shape{1, 1, 3, 3}));
  tensor actual;
  BOOST_REQUIRE(run_operator(l, {&x}, nullptr, &actual, describe(l, {&x})));
  for (int p = 0; p < 3; ++p)
    for (int c = 0; c < 3; ++c) BOOST_CHECK_EQUAL(actual.data()[p * 3 + c], float(10 * p + 2 + c));
}

BOOST_AUTO_TEST_CASE(pad_cases) {
  const std::vector<padding> pads = {{2, 0, 1, 3}, {0, 0, 0, 0}, {1, 1, 1, 1}, {0, 3, 0, 0},
                                     {4, 0, 0, 0}, {0, 0, 0, 2}, {0, 0, 5, 0}, {3, 2, 1, 0}};
  const std::vector<tensor_shape> shapes = {{1, 13, 17, 5}, {2, 3, 4, 1}, {1, 1, 1, 1}, {2, 7, 7, 33}};
  uint64_t seed = 1700;
  for (const padding& p : pads)
    for (const tensor_shape& s : shapes) {
      rng v(seed++);
      check_layer(pad_layer(s, p), {random_tensor_of(s, v)}, exactness::bitwise);
    }
  rng r(181);
  for (int draw = 0; draw < 20; ++draw) {
    tensor_shape s{r.range(1, 2), r.range(1, 12), r.range(1, 12), r.range(1, 40)};
    padding p{r.range(0, 3), r.range(0, 3), r.range(0, 3), r.range(0, 3)};
    rng v(seed++);
    check_layer(pad_layer(s, p), {random_tensor_of(s, v)}, exactness::bitwise);
  }
  // A 2x2 image of ones padded top 1, left 0, bottom 0, right 2 (ONNX pads [0,0,1,0, 0,0,0,2]):
  //   0 0 0 0
  //   1 1 0 0
  //   1 1 0 0
  tensor ones({1, 2, 2, 1});
  std::fill(ones.data(), ones.data() + 4, 1.0f);
  layer l = pad_layer(ones.shape(), {1, 0, 0, 2});
  BOOST_REQUIRE(l.output_shape == (tensor_shape{1, 3, 4, 1}));
  const float want[12] = {0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0};
  tensor actual;
  BOOST_REQUIRE(run_operator(l, {&ones}, nullptr, &actual, describe(l, {&ones})));
  tensor y = reference_layer(l, {&ones});
  for (int i = 0; i < 12; ++i) {
    BOOST_CHECK_EQUAL(actual.data()[i], want[i]);
    BOOST_CHECK_EQUAL(y.data()[i], want[i]);
  }
}

BOOST_AUTO_TEST_CASE(cost_of_the_new_kinds) {
  graph g;
  g.name = "costs";
  layer in;
  in.name = "x";
  in.kind = layer_kind::input;
  in.input_shape = {2, 5, 7, 6};
  g.layers.push_back(in);
  layer s = in;
  s.name = "s";
  s.input_shape = {2, 1, 1, 6};
  g.layers.push_back(s);
  auto push = [&](layer_kind kind, std::vector<int> inputs) {
    layer l;
    l.name = std::string(to_string(kind)) + std::to_string(g.layers.size());
    l.kind = kind;
    l.inputs = std::move(inputs);
    if (kind == layer_kind::channel_shuffle) l.groups = 3;
    if (kind == layer_kind::channel_slice) l.channel_begin = 1, l.channel_end = 4;
    if (kind == layer_kind::pad) l.window.pad = {1, 2, 3, 4};
    g.layers.push_back(l);
    return int(g.layers.size()) - 1;
  };
  const int mul = push(layer_kind::multiply, {0, 1});
  const int sig = push(layer_kind::sigmoid, {mul});
  const int shuf = push(layer_kind::channel_shuffle, {sig});
  const int slice = push(layer_kind::channel_slice, {shuf});
  const int pad = push(layer_kind::pad, {slice});
  g.outputs = {pad};
  status st = infer_shapes(g);
  BOOST_REQUIRE_MESSAGE(st.is_ok(), st.message());
  BOOST_CHECK(g.layers[slice].output_shape == (tensor_shape{2, 5, 7, 3}));
  BOOST_CHECK(g.layers[pad].output_shape == (tensor_shape{2, 9, 13, 3}));
  BOOST_CHECK_EQUAL(cost_of(g, mul).flops, 2.0 * 5 * 7 * 6);
  BOOST_CHECK_EQUAL(cost_of(g, sig).flops, 2.0 * 5 * 7 * 6);
  BOOST_CHECK_EQUAL(cost_of(g, shuf).flops, 0.0);
  BOOST_CHECK_EQUAL(cost_of(g, slice).flops, 0.0);
  BOOST_CHECK_EQUAL(cost_of(g, pad).flops, 0.0);
  BOOST_CHECK_EQUAL(cost_of(g, pad).output_bytes, size_t(2 * 9 * 13 * 3) * sizeof(float));
}

// A squeeze-and-excitation block feeding a ShuffleNet V2 unit (shuffle, split by slices, a branch
// with padding, concat, shuffle) through prepare_for_inference and the executor: the clamps fuse
// into the multiply and the convolutions, the branch convolution writes its concat slice in place,
// and the result matches the unprepared graph's reference run; 2 threads match 1 thread bit for bit.
graph se_shuffle_graph(rng& r) {
  graph g;
  g.name = "se_shuffle";
  auto push = [&](layer l) {
    g.layers.push_back(std::move(l));
    return int(g.layers.size()) - 1;
  };
  auto make = [](const std::string& name, layer_kind kind, std::vector<int> inputs) {
    layer l;
    l.name = name;
    l.kind = kind;
    l.inputs = std::move(inputs);
    return l;
  };
  auto conv = [&](const std::string& name, int input, int in_c, int out_c, int k, int pad) {
    layer l = make(name, layer_kind::convolution, {input});
    l.window = make_window(k, k, 1, 1, pad_all(pad));
    l.output_channels = out_c;
    l.weights = he_weights(size_t(out_c) * k * k * in_c, size_t(k) * k * in_c, r);
    l.bias = random_bias(size_t(out_c), r);
    return l;
  };
  auto clamp = [&](const std::string& name, int input, activation act) {
    layer l = make(name, layer_kind::clamp, {input});
    l.act = act;
    return l;
  };
  layer data = make("data", layer_kind::input, {});
  data.input_shape = {1, 9, 11, 8};
  const int x = push(data);
  const int c1 = push(conv("conv1", x, 8, 12, 3, 1));
  const int r1 = push(clamp("relu1", c1, activation::relu()));
  const int gap = push(make("squeeze", layer_kind::global_average_pool, {r1}));
  layer fc1 = make("fc1", layer_kind::fully_connected, {gap});
  fc1.output_channels = 3;
  fc1.weights = he_weights(3 * 12, 12, r);
  fc1.bias = random_bias(3, r);
  const int f1 = push(fc1);
  const int fr = push(clamp("fc1_relu", f1, activation::relu()));
  layer fc2 = make("fc2", layer_kind::fully_connected, {fr});
  fc2.output_channels = 12;
  fc2.weights = he_weights(12 * 3, 3, r);
  fc2.bias = random_bias(12, r);
  const int f2 = push(fc2);
  const int sig = push(make("gate", layer_kind::sigmoid, {f2}));
  const int scaled = push(make("excite", layer_kind::multiply, {r1, sig}));
  const int capped = push(clamp("excite_relu6", scaled, activation::relu6()));
  const int shifted = push(make("shift", layer_kind::add, {capped, sig}));
  layer shuffle1 = make("shuffle1", layer_kind::channel_shuffle, {shifted});
  shuffle1.groups = 3;
  const int sh1 = push(shuffle1);
  layer left = make("left", layer_kind::channel_slice, {sh1});
  left.channel_begin = 0;
  left.channel_end = 5;
  const int lft = push(left);
  layer right = make("right", layer_kind::channel_slice, {sh1});
  right.channel_begin = 5;
  right.channel_end = 12;
  const int rgt = push(right);
  layer pad = make("right_pad", layer_kind::pad, {rgt});
  pad.window.pad = {1, 2, 1, 0};  // 9x11 -> 11x13; a 3x3 convolution without padding gives 9x11
  const int pd = push(pad);
  const int rc = push(conv("right_conv", pd, 7, 7, 3, 0));
  const int cat = push(make("cat", layer_kind::concat, {lft, rc}));
  layer shuffle2 = make("shuffle2", layer_kind::channel_shuffle, {cat});
  shuffle2.groups = 4;
  const int sh2 = push(shuffle2);
  g.outputs = {sh2, sig};
  status s = infer_shapes(g);
  BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());
  return g;
}

BOOST_AUTO_TEST_CASE(executor_runs_the_new_kinds) {
  rng r(191);
  const graph g = se_shuffle_graph(r);
  graph p = g;
  status s = prepare_for_inference(p);
  BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());
  BOOST_CHECK(p.find("excite_relu6") < 0);
  BOOST_CHECK(p.find("relu1") < 0);
  BOOST_REQUIRE(p.find("excite") >= 0);
  BOOST_CHECK((p.layers[p.find("excite")].act == activation::relu6()));
  BOOST_CHECK(p.layers[p.find("cat")].output_shape == (tensor_shape{1, 9, 11, 12}));

  std::map<std::string, tensor> inputs;
  inputs.emplace("data", random_tensor_of(g.layers[0].input_shape, r));
  const std::map<std::string, tensor> expected = reference_run(g, inputs);
  std::map<std::string, tensor> one_thread;
  for (int threads : {1, 2}) {
    executor_options options;
    options.threads = threads;
    options.fuse_residual_adds = false;  // run_all below
    auto ex = executor::create(p, {}, options);
    BOOST_REQUIRE_MESSAGE(ex.is_ok(), (ex.is_ok() ? std::string() : ex.message()));
    auto out = (*ex)->run(inputs);
    BOOST_REQUIRE_MESSAGE(out.is_ok(), (out.is_ok() ? std::string() : out.message()));
    for (const char* name : {"shuffle2", "gate"}) {
      const tensor& got = out->at(name);
      const std::string diff = compare_relative(got, expected.at(name), tolerance);
      BOOST_CHECK_MESSAGE(diff.empty(), name << " (" << threads << " threads): " << diff);
      if (threads == 1)
        one_thread[name] = got;
      else
        BOOST_CHECK_MESSAGE(bitwise_equal(got, one_thread.at(name)), name << ": 2 threads differ from 1 thread");
    }
    // Every intermediate tensor, too (run_all copies each one out of the arena right after its step).
    auto all = (*ex)->run_all({&inputs.at("data")});
    BOOST_REQUIRE(all.is_ok());
    for (const char* name : {"gate", "shift", "shuffle1", "left", "right", "right_pad", "cat"}) {
      const std::string diff = compare_relative(all->at(name), expected.at(name), tolerance);
      BOOST_CHECK_MESSAGE(diff.empty(), name << " (" << threads << " threads): " << diff);
    }
  }
}

// Bad parameters of the new kinds are rejected by shape inference and by create_layer_operator,
// naming the layer and the bad value.
void check_rejected_with(const status& s, const std::string& layer_name, const std::string& value,
                         const std::string& stage) {
  BOOST_TEST_MESSAGE(stage << ": " << s.message());
  BOOST_CHECK_MESSAGE(!s.is_ok(), stage << " accepted bad layer '" << layer_name << "'");
  if (s.is_ok()) return;
  BOOST_CHECK_MESSAGE(s.message().find("'" + layer_name + "'") != std::string::npos,
                      stage << " error does not name '" << layer_name << "': " << s.message());
  BOOST_CHECK_MESSAGE(s.message().find(value) != std::string::npos,
                      stage << " error does not name the bad value '" << value << "': " << s.message());
}

status infer_one(const layer& l, const std::vector<tensor_shape>& input_shapes);
status create_status(const layer& l, const std::vector<tensor_shape>& input_shapes, const operator_options& options);

BOOST_AUTO_TEST_CASE(bad_parameters_of_the_new_kinds_are_rejected) {
  status init = compute_initialized();
  BOOST_REQUIRE_MESSAGE(init.is_ok(), init.message());
  const tensor_shape in{1, 5, 7, 6};

  // Slices beyond the channels, empty or reversed, negative.
  for (auto [begin, end] : std::vector<std::pair<int, int>>{{3, 9}, {6, 7}, {4, 4}, {5, 2}, {-1, 3}}) {
    layer l;
    l.name = "bad_slice";
    l.kind = layer_kind::channel_slice;
    l.channel_begin = begin;
    l.channel_end = end;
    check_rejected_with(infer_one(l, {in}), l.name, "[" + std::to_string(begin) + ", " + std::to_string(end) + ")",
                        "infer_shapes");
  }
  // A valid slice handed a narrower input at create.
  layer slice = slice_layer(in, 2, 6);
  slice.name = "narrowed_slice";
  check_rejected_with(create_status(slice, {tensor_shape{1, 5, 7, 4}}, {}), slice.name, "[2, 6)",
                      "create_layer_operator");

  // Shuffle groups that do not divide the channels, or are not positive.
  for (int groups : {4, 0, -2, 7}) {
    layer l;
    l.name = "bad_shuffle";
    l.kind = layer_kind::channel_shuffle;
    l.groups = groups;
    check_rejected_with(infer_one(l, {in}), l.name, "groups " + std::to_string(groups), "infer_shapes");
  }
  layer shuffle = shuffle_layer(in, 3);
  shuffle.name = "regrouped_shuffle";
  shuffle.groups = 4;
  check_rejected_with(create_status(shuffle, {in}, {}), shuffle.name, "groups 4", "create_layer_operator");

  // Second operands that are neither the first's shape nor its per-channel [N,1,1,C].
  const std::vector<tensor_shape> wrong = {{1, 1, 1, 5}, {1, 5, 1, 6}, {1, 1, 7, 6}, {2, 1, 1, 6}, {1, 5, 7, 1}};
  for (layer_kind kind : {layer_kind::add, layer_kind::multiply}) {
    for (const tensor_shape& b : wrong) {
      layer l;
      l.name = std::string("bad_") + to_string(kind);
      l.kind = kind;
      check_rejected_with(infer_one(l, {in, b}), l.name, b.to_string(), "infer_shapes");
    }
    // The per-channel operand must be the second one.
    layer swapped;
    swapped.name = std::string("swapped_") + to_string(kind);
    swapped.kind = kind;
    check_rejected_with(infer_one(swapped, {per_channel_of(in), in}), swapped.name, in.to_string(), "infer_shapes");
    // create_layer_operator checks the shapes it is handed as well.
    layer ok = simple_layer(kind, {in, per_channel_of(in)});
    ok.name = std::string("misfed_") + to_string(kind);
    check_rejected_with(create_status(ok, {in, tensor_shape{1, 1, 1, 5}}, {}), ok.name, "1x5x1x1",
                        "create_layer_operator");
    check_rejected_with(create_status(ok, {in}, {}), ok.name, "1 input shapes", "create_layer_operator");
  }

  // Negative padding.
  layer neg;
  neg.name = "negative_pad";
  neg.kind = layer_kind::pad;
  neg.window.pad = {1, -1, 0, 0};
  check_rejected_with(infer_one(neg, {in}), neg.name, "left -1", "infer_shapes");

  // A fused clamp on a kind whose operator cannot apply one; weights on a kind that takes none.
  layer sig;
  sig.name = "clamped_sigmoid";
  sig.kind = layer_kind::sigmoid;
  sig.act = activation::relu6();
  check_rejected_with(infer_one(sig, {in}), sig.name, "clamp", "infer_shapes");
  layer shaped_sig = simple_layer(layer_kind::sigmoid, {in});
  shaped_sig.name = "clamped_sigmoid";
  shaped_sig.act = activation::relu();
  check_rejected_with(create_status(shaped_sig, {in}, {}), shaped_sig.name, "clamp", "create_layer_operator");
  layer weighted;
  weighted.name = "weighted_multiply";
  weighted.kind = layer_kind::multiply;
  weighted.weights = weight_blob::from_vector({1.0f});
  check_rejected_with(infer_one(weighted, {in, in}), weighted.name, "weights", "infer_shapes");

  // And none of the new kinds supports a strided output.
  operator_options strided;
  strided.output_pixel_stride = 16;
  layer pad = pad_layer(in, {1, 1, 1, 1});
  check_rejected_with(create_status(pad, {in}, strided), pad.name, "strided", "create_layer_operator");
}

// ---- strided outputs and in-place concatenation (the executor's concat without copies) ----

// Runs `l` writing into a wider buffer at `offset` with `stride` floats per pixel (a concat's
// channel slice): the slice must equal the dense output bit for bit and nothing else may change.
void check_strided(const layer& l, const tensor& x, size_t offset, size_t stride) {
  status init = compute_initialized();
  BOOST_REQUIRE_MESSAGE(init.is_ok(), init.message());
  const std::string what = describe(l, {&x}) + " output_pixel_stride " + std::to_string(stride) + " offset " +
                           std::to_string(offset);
  tensor dense;
  if (!run_operator(l, {&x}, nullptr, &dense, what + " [dense]")) return;
  const std::string diff = compare_relative(dense, reference_layer(l, {&x}), tolerance);
  BOOST_CHECK_MESSAGE(diff.empty(), what << " [dense]: " << diff);

  const size_t channels = size_t(l.output_shape.c);
  const size_t pixels = size_t(l.output_shape.n) * l.output_shape.h * l.output_shape.w;
  const float sentinel = -12345.0f;
  for (pthreadpool_t pool : {pthreadpool_t(nullptr), two_threads()}) {
    operator_options options;
    options.output_pixel_stride = stride;
    auto op = create_layer_operator(l, {x.shape()}, options);
    if (!op.is_ok()) {
      BOOST_ERROR(what << ": create failed: " << op.message());
      return;
    }
    std::vector<float> buffer(offset + pixels * stride + 16, sentinel);
    status s = (*op)->setup({x.data()}, buffer.data() + offset, pool);
    if (s.is_ok()) s = (*op)->run(pool);
    if (!s.is_ok()) {
      BOOST_ERROR(what << ": " << s.message());
      return;
    }
    size_t wrong = 0, first = 0;
    for (size_t i = 0; i < buffer.size(); ++i) {
      float want = sentinel;
      if (i >= offset && i < offset + pixels * stride && (i - offset) % stride < channels)
        want = dense.data()[(i - offset) / stride * channels + (i - offset) % stride];
      if (std::memcmp(&buffer[i], &want, sizeof want) != 0 && wrong++ == 0) first = i;
    }
    BOOST_CHECK_MESSAGE(wrong == 0, what << (pool ? " [2 threads]" : "") << ": " << wrong
                                         << " floats differ from the dense result or the untouched sentinel, first at "
                                         << first);
  }
}

// Reads `x` as the first channels of pixels `stride` floats apart (the rest NaN, which must not
// leak in): the same bits as the dense run, on one thread and two.
void check_strided_input(const layer& l, const tensor& x, size_t stride) {
  const std::string what = describe(l, {&x}) + " input_pixel_stride " + std::to_string(stride);
  tensor dense;
  if (!run_operator(l, {&x}, nullptr, &dense, what + " [dense]")) return;
  const size_t channels = size_t(x.shape().c), pixels = x.elements() / channels;
  std::vector<float> wide(pixels * stride, NAN);
  for (size_t p = 0; p < pixels; ++p) std::memcpy(&wide[p * stride], x.data() + p * channels, channels * sizeof(float));
  BOOST_TEST(reads_strided_input(l, {x.shape()}), what);
  for (pthreadpool_t pool : {pthreadpool_t(nullptr), two_threads()}) {
    operator_options options;
    options.input_pixel_stride = stride;
    auto op = create_layer_operator(l, {x.shape()}, options);
    BOOST_REQUIRE_MESSAGE(op.is_ok(), what << ": " << op.message());
    tensor out(l.output_shape);
    status s = (*op)->setup({wide.data()}, out.data(), pool);
    if (s.is_ok()) s = (*op)->run(pool);
    BOOST_REQUIRE_MESSAGE(s.is_ok(), what << ": " << s.message());
    BOOST_CHECK_MESSAGE(bitwise_equal(out, dense), what << (pool ? " [2 threads]" : "") << ": differs from the dense run");
  }
}

// Only operators that read a strided input accept one; the others name the layer and the stride.
BOOST_AUTO_TEST_CASE(strided_inputs_only_where_supported) {
  rng r(17);
  const conv_spec c{{1, 6, 5, 16}, 24, 1, make_window(1, 1, 1, 1), true, activation::relu()};
  const layer l = conv_layer(c, r);
  BOOST_TEST(!reads_strided_input(l, {c.input}));
  operator_options options;
  options.input_pixel_stride = 40;
  auto op = create_layer_operator(l, {c.input}, options);
  BOOST_REQUIRE(!op.is_ok());
  BOOST_TEST(op.message().find(l.name) != std::string::npos, op.message());
  BOOST_TEST(op.message().find("strided input (pixel stride 40)") != std::string::npos, op.message());
  options.input_pixel_stride = 16;  // its own channels: dense
  BOOST_TEST(create_layer_operator(l, {c.input}, options).is_ok());
}

BOOST_AUTO_TEST_CASE(strided_outputs) {
  rng r(13);
  const tensor_shape in{2, 13, 17, 8};
  const tensor x = random_tensor_of(in, r);
  const std::vector<conv_spec> convs = {
      {in, 12, 1, make_window(3, 3, 1, 1, pad_all(1)), true, activation::relu()},
      {in, 5, 1, make_window(1, 1, 1, 1), false, activation::none()},
      {in, 8, 4, make_window(3, 3, 2, 2, pad_all(1)), true, activation::none()},
      {in, 16, 8, make_window(3, 3, 1, 1, pad_all(1)), true, activation::relu6()},  // depthwise x2
  };
  for (const conv_spec& c : convs) {
    layer l = conv_layer(c, r);
    check_strided(l, x, 5, size_t(l.output_shape.c) + 13);
  }
  check_strided(pool_layer(layer_kind::max_pool, in, make_window(3, 3, 1, 1, pad_all(1), 1, 1, true)), x, 3, 8 + 7);
  check_strided(pool_layer(layer_kind::max_pool, in, make_window(3, 3, 2, 2, {}, 1, 1, true)), x, 0, 8 + 1);
  check_strided(pool_layer(layer_kind::average_pool, in, make_window(2, 2, 2, 2)), x, 7, 8 + 9);  // XNNPACK path
  check_strided(pool_layer(layer_kind::average_pool, in, make_window(3, 3, 1, 1, pad_all(1), 1, 1, false, false)), x,
                2, 8 + 4);
  check_strided(pool_layer(layer_kind::average_pool, in, make_window(3, 3, 1, 1, pad_all(1), 1, 1, false, true)), x,
                2, 8 + 4);  // native path (padding counted)
  check_strided(simple_layer(layer_kind::clamp, {in}, activation::relu6()), x, 1, 8 + 24);
  check_strided(simple_layer(layer_kind::clamp, {in}, clamp_range), x, 0, 8);  // stride == channels: dense
}

BOOST_AUTO_TEST_CASE(concat_with_inputs_in_place) {
  rng r(17);
  const std::vector<tensor_shape> shapes = {{2, 5, 7, 3}, {2, 5, 7, 6}, {2, 5, 7, 5}};
  std::vector<tensor> inputs;
  for (const tensor_shape& s : shapes) inputs.push_back(random_tensor_of(s, r));
  std::vector<const tensor*> pointers = {&inputs[0], &inputs[1], &inputs[2]};
  layer l = simple_layer(layer_kind::concat, shapes);
  // The in-place producer already wrote its slice (channels 3..8); the operator must not touch it.
  // Filling that slice with a sentinel instead of the values makes a stray copy visible.
  tensor expected = reference_layer(l, pointers);
  const size_t pixels = 2 * 5 * 7;
  for (size_t p = 0; p < pixels; ++p)
    for (int c = 0; c < 6; ++c) expected.data()[p * 14 + 3 + c] = -12345.0f;
  for (pthreadpool_t pool : {pthreadpool_t(nullptr), two_threads()}) {
    operator_options options;
    options.concat_input_in_place = {false, true, false};
    auto op = create_layer_operator(l, shapes, options);
    BOOST_REQUIRE_MESSAGE(op.is_ok(), (op.is_ok() ? std::string() : op.message()));
    tensor out(l.output_shape);
    for (size_t p = 0; p < pixels; ++p)
      for (int c = 0; c < 6; ++c) out.data()[p * 14 + 3 + c] = -12345.0f;
    status s = (*op)->setup({inputs[0].data(), inputs[1].data(), inputs[2].data()}, out.data(), pool);
    if (s.is_ok()) s = (*op)->run(pool);
    BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());
    BOOST_CHECK_MESSAGE(bitwise_equal(out, expected), "concat in place: " << compare_relative(out, expected, 0.0));
  }
}

// ---- reference_run ----

// reference_run chains reference_layer in topological order (layers listed out of order here),
// returns every tensor by name, and its batch norm agrees with the folding prepare_for_inference does.
BOOST_AUTO_TEST_CASE(reference_run_chains_layers_and_matches_folding) {
  rng r(23);
  const tensor_shape in{2, 9, 11, 3};
  graph g;
  g.name = "tiny";
  auto add_layer = [&](layer l) {
    g.layers.push_back(std::move(l));
    return int(g.layers.size()) - 1;
  };
  layer fc;  // index 0, reads the flatten added last
  fc.name = "fc";
  fc.kind = layer_kind::fully_connected;
  fc.output_channels = 10;
  fc.weights = he_weights(10 * 8 * 5 * 6, 8 * 5 * 6, r);
  fc.bias = random_bias(10, r);
  add_layer(fc);
  layer data;
  data.name = "data";
  data.kind = layer_kind::input;
  data.input_shape = in;
  const int data_index = add_layer(data);
  layer conv;
  conv.name = "conv";
  conv.kind = layer_kind::convolution;
  conv.inputs = {data_index};
  conv.window = make_window(3, 3, 2, 2, pad_all(1));
  conv.output_channels = 8;
  conv.weights = he_weights(8 * 3 * 3 * 3, 27, r);
  const int conv_index = add_layer(conv);
  layer bn;
  bn.name = "bn";
  bn.kind = layer_kind::batch_norm;
  bn.inputs = {conv_index};
  std::vector<float> stats;
  for (int i = 0; i < 8; ++i) stats.push_back(r.uniform(0.5f, 1.5f));   // gamma
  for (int i = 0; i < 8; ++i) stats.push_back(r.uniform(-0.5f, 0.5f));  // beta
  for (int i = 0; i < 8; ++i) stats.push_back(r.uniform(-0.3f, 0.3f));  // mean
  for (int i = 0; i < 8; ++i) stats.push_back(r.uniform(0.5f, 2.0f));   // var
  bn.weights = weight_blob::from_vector(stats);
  const int bn_index = add_layer(bn);
  layer relu;
  relu.name = "relu";
  relu.kind = layer_kind::clamp;
  relu.inputs = {bn_index};
  relu.act = activation::relu();
  const int relu_index = add_layer(relu);
  layer flat;
  flat.name = "flatten";
  flat.kind = layer_kind::flatten;
  flat.inputs = {relu_index};
  const int flat_index = add_layer(flat);
  g.layers[0].inputs = {flat_index};
  layer sm;
  sm.name = "prob";
  sm.kind = layer_kind::softmax;
  sm.inputs = {0};
  g.outputs = {add_layer(sm)};
  status s = infer_shapes(g);
  BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());

  std::map<std::string, tensor> inputs;
  inputs.emplace("data", random_tensor_of(in, r));
  const std::map<std::string, tensor> all = reference_run(g, inputs);
  BOOST_CHECK_EQUAL(all.size(), g.layers.size());
  BOOST_CHECK(bitwise_equal(all.at("data"), inputs.at("data")));
  // Chained by hand: each tensor is reference_layer of its producers' tensors.
  for (const layer& l : g.layers) {
    if (l.kind == layer_kind::input) continue;
    std::vector<const tensor*> args;
    for (int producer : l.inputs) args.push_back(&all.at(g.layers[producer].name));
    BOOST_CHECK_MESSAGE(bitwise_equal(all.at(l.name), reference_layer(l, args)), "layer " << l.name);
  }
  // Batch norm by hand at one element.
  const tensor& c = all.at("conv");
  const tensor& b = all.at("bn");
  const size_t i = 37, ch = i % 8;
  const double expected_bn = (double(c.data()[i]) - stats[16 + ch]) / std::sqrt(double(stats[24 + ch]) + 1e-5) *
                                 stats[ch] + stats[8 + ch];
  BOOST_CHECK_CLOSE(double(b.data()[i]), expected_bn, 1e-4);

  // The folded graph computes the same within float rounding.
  graph folded = g;
  s = prepare_for_inference(folded);
  BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());
  BOOST_CHECK(folded.find("bn") < 0);
  const std::map<std::string, tensor> folded_all = reference_run(folded, inputs);
  const std::string diff = compare_relative(folded_all.at("prob"), all.at("prob"), tolerance);
  BOOST_CHECK_MESSAGE(diff.empty(), "folded vs unfolded prob: " << diff);
}

// ---- the checks themselves can fail ----

BOOST_AUTO_TEST_CASE(comparison_reports_the_perturbed_index) {
  rng r(5);
  conv_spec c{{1, 13, 17, 5}, 7, 1, make_window(3, 3, 1, 1, pad_all(1)), true, activation::none()};
  layer l = conv_layer(c, r);
  tensor x = random_tensor_of(c.input, r);
  tensor expected = reference_layer(l, {&x});
  tensor actual;
  BOOST_REQUIRE(run_operator(l, {&x}, nullptr, &actual, describe(l, {&x})));
  BOOST_REQUIRE(compare_relative(actual, expected, tolerance).empty());

  // Element (n=0, h=3, w=5, c=4) of a 13x17x7 output.
  const size_t index = (size_t(3) * 17 + 5) * 7 + 4;
  const float original = actual.data()[index];
  actual.data()[index] = original + 1e-3f * std::max(1.0f, std::fabs(original));
  const std::string message = compare_relative(actual, expected, tolerance);
  BOOST_TEST_MESSAGE("perturbed: " << message);
  const std::string prefix = "index " + std::to_string(index) + " (n=0,h=3,w=5,c=4): actual ";
  BOOST_CHECK_MESSAGE(message.rfind(prefix, 0) == 0, "message '" << message << "' does not start with '" << prefix << "'");

  // Within tolerance passes; just outside fails.
  actual.data()[index] = original;
  tensor shifted(actual);
  for (size_t i = 0; i < shifted.elements(); ++i) shifted.data()[i] = expected.data()[i] * (1.0f + 1e-6f);
  BOOST_CHECK(compare_relative(shifted, expected, tolerance).empty());
  for (size_t i = 0; i < shifted.elements(); ++i) shifted.data()[i] = expected.data()[i] * (1.0f + 1e-4f);
  BOOST_CHECK(compare_relative(shifted, expected, tolerance).rfind("index ", 0) == 0);

  // NaN never matches; a shape mismatch says so.
  actual.data()[index] = NAN;
  BOOST_CHECK(compare_relative(actual, expected, tolerance).rfind("index " + std::to_string(index) + " ", 0) == 0);
  tensor other({1, 7, 13, 17});
  const std::string shape_message = compare_relative(other, expected, tolerance);
  BOOST_TEST_MESSAGE("shape: " << shape_message);
  BOOST_CHECK(shape_message.find("shape") != std::string::npos);
}

// Whichever stage rejects a bad layer says which layer. Shape inference validates what a graph
// declares (windows that fit, weight and bias sizes); create_layer_operator what it is handed
// (shapes known, the number of inputs, kinds and options it supports, what XNNPACK accepts).
void check_rejected(const status& s, const std::string& layer_name, const std::string& stage) {
  BOOST_TEST_MESSAGE(stage << ": " << s.message());
  BOOST_CHECK_MESSAGE(!s.is_ok(), stage << " accepted bad layer '" << layer_name << "'");
  BOOST_CHECK_MESSAGE(s.message().find("'" + layer_name + "'") != std::string::npos,
                      stage << " error does not name '" << layer_name << "': " << s.message());
}

status infer_one(const layer& l, const std::vector<tensor_shape>& input_shapes) {
  graph g;
  g.name = "bad";
  layer copy = l;
  copy.inputs.clear();
  for (size_t i = 0; i < input_shapes.size(); ++i) {
    layer in;
    in.name = "data" + std::to_string(i);
    in.kind = layer_kind::input;
    in.input_shape = input_shapes[i];
    g.layers.push_back(in);
    copy.inputs.push_back(int(i));
  }
  g.layers.push_back(copy);
  g.outputs = {int(input_shapes.size())};
  return infer_shapes(g);
}

status create_status(const layer& l, const std::vector<tensor_shape>& input_shapes, const operator_options& options = {}) {
  auto op = create_layer_operator(l, input_shapes, options);
  return op.is_ok() ? status::ok() : op.error();
}

BOOST_AUTO_TEST_CASE(bad_parameters_are_rejected_with_the_layer_name) {
  status init = compute_initialized();
  BOOST_REQUIRE_MESSAGE(init.is_ok(), init.message());
  rng r(3);
  const tensor_shape in{1, 9, 9, 4};

  // A kernel larger than the padded input.
  layer big;
  big.name = "oversized_kernel_conv";
  big.kind = layer_kind::convolution;
  big.window = make_window(13, 13, 1, 1, pad_all(1));
  big.output_channels = 2;
  big.weights = he_weights(2 * 13 * 13 * 4, 13 * 13 * 4, r);
  check_rejected(infer_one(big, {in}), big.name, "infer_shapes");

  // Weights of the wrong size for the input channels.
  conv_spec c{in, 6, 1, make_window(3, 3, 1, 1, pad_all(1)), true, activation::none()};
  layer short_weights = conv_layer(c, r, "short_weights_conv");
  short_weights.weights = he_weights(short_weights.weights.size() - 1, 36, r);
  check_rejected(infer_one(short_weights, {in}), short_weights.name, "infer_shapes");
  layer wrong_channels = conv_layer(c, r, "wrong_channels_conv");
  check_rejected(infer_one(wrong_channels, {tensor_shape{1, 9, 9, 5}}), wrong_channels.name, "infer_shapes");

  // A fully connected layer whose bias has the wrong size.
  layer fc;
  fc.name = "bad_bias_fc";
  fc.kind = layer_kind::fully_connected;
  fc.output_channels = 10;
  fc.weights = he_weights(10 * 20, 20, r);
  fc.bias = random_bias(9, r);
  check_rejected(infer_one(fc, {tensor_shape{1, 1, 1, 20}}), fc.name, "infer_shapes");

  // create_layer_operator: no output shape (infer_shapes never ran).
  layer unshaped = conv_layer(c, r, "unshaped_conv");
  unshaped.output_shape = {0, 0, 0, 0};
  check_rejected(create_status(unshaped, {in}), unshaped.name, "create_layer_operator");

  // create_layer_operator: the wrong number of input shapes.
  layer sum = simple_layer(layer_kind::add, {in, in});
  sum.name = "one_armed_add";
  check_rejected(create_status(sum, {in}), sum.name, "create_layer_operator");

  // create_layer_operator: batch norm has no operator (it is folded at load).
  layer bn;
  bn.name = "unfolded_bn";
  bn.kind = layer_kind::batch_norm;
  bn.weights = weight_blob::from_vector(std::vector<float>(4 * 4, 1.0f));
  bn = with_shapes(std::move(bn), {in});
  check_rejected(create_status(bn, {in}), bn.name, "create_layer_operator");

  // create_layer_operator: a strided output where the kind does not support one, or below the channels.
  layer sm = simple_layer(layer_kind::softmax, {tensor_shape{1, 1, 1, 10}});
  sm.name = "strided_softmax";
  operator_options strided;
  strided.output_pixel_stride = 16;
  check_rejected(create_status(sm, {tensor_shape{1, 1, 1, 10}}, strided), sm.name, "create_layer_operator");
  layer narrow = conv_layer(c, r, "narrow_stride_conv");
  strided.output_pixel_stride = 5;  // below its 6 channels
  check_rejected(create_status(narrow, {in}, strided), narrow.name, "create_layer_operator");
}

}  // namespace

// On AVX2 CPUs without AVX-512 fully connected layers run on the GEMM too: the sums in order (as
// XNNPACK's fully connected operator computes them on every CPU but Zen 1), on one and two threads.
// Grouped convolutions run on d3's GEMM on AVX2 CPUs without AVX-512, each group on its own
// panels: bit for bit the sums in order (what XNNPACK computes on every CPU but Zen 1, where its
// 4x16s4 GEMM takes another order), and against XNNPACK where it sums in order. RegNet's 8 and
// ResNeXt's 4 to 32 channels per group (a half panel, a masked one, whole and several panels per
// group), padding, strides, a 1x1 grouped layer, a strided output.
BOOST_AUTO_TEST_CASE(grouped_convolutions_sum_in_order) {
  const activation none = activation::none();
  const std::vector<conv_spec> cases = {
      {{1, 14, 14, 48}, 48, 6, make_window(3, 3, 1, 1, pad_all(1)), true, activation::relu()},   // RegNet's
      {{1, 15, 15, 48}, 48, 6, make_window(3, 3, 2, 2, pad_all(1)), true, none},
      {{1, 9, 11, 128}, 128, 32, make_window(3, 3, 1, 1, pad_all(1)), true, activation::relu()},  // ResNeXt's
      {{2, 7, 6, 96}, 192, 3, make_window(3, 3, 1, 1, pad_all(1)), false, clamp_range},
      {{1, 8, 9, 60}, 40, 4, make_window(1, 1, 1, 1), true, none},
      {{1, 10, 7, 64}, 16, 4, make_window(2, 2, 2, 2), true, none},
      // Groups of 2 and 4 channels side by side in a panel: padding, stride 2, 1x1, and 20
      // channels (not whole panels: the GEMM's blocks instead).
      {{1, 15, 13, 64}, 64, 16, make_window(3, 3, 2, 2, pad_all(1)), true, activation::relu()},
      {{2, 9, 7, 48}, 48, 24, make_window(3, 3, 1, 1, {0, 1, 2, 1}), false, clamp_range},
      {{1, 7, 11, 32}, 32, 8, make_window(1, 1, 1, 1), true, none},
      {{1, 9, 8, 20}, 20, 5, make_window(3, 3, 1, 1, pad_all(1)), true, none}};
  rng r(2130);
  // Depth multipliers (one input channel per group) stay XNNPACK's, which may run them as depthwise.
  BOOST_TEST(!convolution_runs_on_native_gemm(
      conv_layer({{1, 10, 7, 8}, 24, 8, make_window(3, 3, 1, 1, pad_all(1)), true, none}, r), {1, 10, 7, 8}));
  for (const conv_spec& c : cases) {
    const layer l = conv_layer(c, r);
    const tensor x = random_tensor_of(c.input, r);
    if (!cpu_has_avx2_fma()) {
      BOOST_TEST(!convolution_runs_on_native_gemm(l, c.input));
      BOOST_TEST_MESSAGE("grouped convolutions run on XNNPACK on this CPU (no AVX2): nothing to compare");
      return;
    }
    // On AVX-512 CPUs only groups of 2 or 4 channels (side by side in a panel) are d3's.
    const int group_in = c.input.c / c.groups, group_out = c.output_channels / c.groups;
    const bool side_by_side = group_in == group_out && (group_in == 2 || group_in == 4) && c.input.c % 8 == 0;
    if (cpu_has_avx512f() && !side_by_side) {
      BOOST_TEST(!convolution_runs_on_native_gemm(l, c.input), describe(l, {&x}));
      continue;
    }
    BOOST_TEST_REQUIRE(convolution_runs_on_native_gemm(l, c.input), describe(l, {&x}));
    check_gemm_sums_in_order(l, x, "");
  }
  // Tiles: 4 channels per group (side by side in a panel) and 8 (a panel per group).
  check_band_of_rows({{1, 29, 10, 64}, 64, 16, make_window(3, 3, 1, 1, {0, 1, 0, 1}), true, none}, r);
  check_band_of_rows({{1, 29, 6, 48}, 48, 6, make_window(3, 3, 1, 1, {0, 1, 0, 1}), true, none}, r);
}

BOOST_AUTO_TEST_CASE(fully_connected_on_the_gemm_sums_in_order) {
  rng r(2200);
  const std::vector<std::pair<tensor_shape, int>> cases = {
      {{1, 1, 1, 81}, 70}, {{3, 1, 1, 71}, 99}, {{1, 1, 1, 512}, 1000}, {{7, 1, 1, 5}, 3}, {{2, 1, 1, 9216}, 40}};
  for (const auto& [shape, outputs] : cases) {
    layer fc;
    fc.name = "fc";
    fc.kind = layer_kind::fully_connected;
    fc.output_channels = outputs;
    fc.weights = he_weights(size_t(outputs) * size_t(shape.c), size_t(shape.c), r);
    fc.bias = random_bias(size_t(outputs), r);
    fc.act = outputs % 2 ? activation::relu() : activation::none();
    fc = with_shapes(std::move(fc), {shape});
    if (!fully_connected_runs_on_native_gemm(fc, shape)) {
      BOOST_TEST_MESSAGE("not an AVX2 CPU without AVX-512: fully connected layers run on XNNPACK");
      return;
    }
    const tensor x = random_tensor_of(shape, r);
    check_layer(fc, {x});
    layer pointwise = fc;
    pointwise.kind = layer_kind::convolution;
    pointwise.window = make_window(1, 1, 1, 1);
    const tensor in_order = convolution_summed_in_order(pointwise, x);
    tensor one, two;
    BOOST_REQUIRE(run_operator(fc, {&x}, nullptr, &one, describe(fc, {&x})));
    BOOST_REQUIRE(run_operator(fc, {&x}, two_threads(), &two, describe(fc, {&x})));
    BOOST_CHECK_MESSAGE(bitwise_equal(one, in_order), describe(fc, {&x}) << ": " << compare_relative(one, in_order, 0.0));
    BOOST_CHECK_MESSAGE(bitwise_equal(two, in_order), describe(fc, {&x}) << " [2 threads]: "
                                                                        << compare_relative(two, in_order, 0.0));
  }
}

layer convolution_layer_for_fingerprint_test() {
  rng r(7);
  return conv_layer({{1, 9, 7, 37}, 40, 1, make_window(1, 1, 1, 1), true, activation::none()}, r);
}

// The kernels' fingerprint (what d3-node reports and the app compares with its own): the same on
// every computation, and the same whichever of d3's paths runs the layers (native loops or
// XNNPACK, sixteen lanes or four), so equal fingerprints mean equal arithmetic, not equal choices.
BOOST_AUTO_TEST_CASE(arithmetic_fingerprint_is_the_machines_not_the_paths) {
  auto cached = arithmetic_fingerprint();
  BOOST_REQUIRE_MESSAGE(cached.is_ok(), cached.message());
  const std::string& f = *cached;
  BOOST_TEST_MESSAGE("arithmetic fingerprint: " << f);
  BOOST_REQUIRE(f.size() > 17);
  BOOST_TEST(f[f.size() - 17] == '-');
  BOOST_TEST(f.find_first_not_of("0123456789abcdef", f.size() - 16) == std::string::npos);
  auto again = compute_arithmetic_fingerprint();
  BOOST_REQUIRE(again.is_ok());
  BOOST_TEST(*again == f);
  for (const char* mode : {"xnnpack", "native"}) {
    ::setenv("D3_CONVOLUTION", mode, 1);
    auto other = compute_arithmetic_fingerprint();
    ::unsetenv("D3_CONVOLUTION");
    BOOST_REQUIRE(other.is_ok());
    if (std::string(mode) == "xnnpack" && !xnnpack_gemm_sums_in_order() && convolution_runs_on_native_gemm(
        convolution_layer_for_fingerprint_test(), {1, 9, 7, 37})) {
      // On Zen 1 XNNPACK sums in another order than d3's GEMM: the fingerprint must tell.
      BOOST_CHECK_MESSAGE(*other != f, "D3_CONVOLUTION=xnnpack on Zen 1 gives the same fingerprint " << f);
      continue;
    }
    BOOST_CHECK_MESSAGE(*other == f, "D3_CONVOLUTION=" << mode << ": " << *other << ", default " << f);
  }
  force_four_lane_vectors(true);
  auto four = compute_arithmetic_fingerprint();
  force_four_lane_vectors(false);
  BOOST_REQUIRE(four.is_ok());
  BOOST_CHECK_MESSAGE(*four == f, "four-lane vectors: " << *four << ", default " << f);
}
