// Small hand-built graphs shared by the tests.
#pragma once

#include <string>
#include <vector>

#include "kernels/graph.hpp"
#include "kernels/model_zoo.hpp"

namespace d3::testing {

inline weight_blob random_weights(size_t count, uint64_t seed, float scale) {
  seeded_generator gen(seed);
  std::vector<float> v(count);
  for (float& x : v) x = gen.uniform(-scale, scale);
  return weight_blob::from_vector(std::move(v));
}

inline int add_layer(graph& g, layer l) {
  g.layers.push_back(std::move(l));
  return int(g.layers.size()) - 1;
}

inline int add_input(graph& g, const std::string& name, tensor_shape shape) {
  layer l;
  l.name = name;
  l.kind = layer_kind::input;
  l.input_shape = shape;
  return add_layer(g, std::move(l));
}

// A 3x3 (or k x k) convolution with He-scaled random weights and bias.
inline int add_convolution(graph& g, const std::string& name, int input, int in_channels, int out_channels,
                           int kernel = 3, int stride = 1, int pad = 1, int groups = 1) {
  layer l;
  l.name = name;
  l.kind = layer_kind::convolution;
  l.inputs = {input};
  l.window.kernel_h = l.window.kernel_w = kernel;
  l.window.stride_h = l.window.stride_w = stride;
  l.window.pad = {pad, pad, pad, pad};
  l.output_channels = out_channels;
  l.groups = groups;
  size_t fan_in = size_t(in_channels / groups) * kernel * kernel;
  l.weights = random_weights(size_t(out_channels) * fan_in, std::hash<std::string>{}(name), std::sqrt(6.0f / fan_in));
  l.bias = random_weights(size_t(out_channels), std::hash<std::string>{}(name) + 1, 0.1f);
  return add_layer(g, std::move(l));
}

inline int add_simple(graph& g, const std::string& name, layer_kind kind, std::vector<int> inputs) {
  layer l;
  l.name = name;
  l.kind = kind;
  l.inputs = std::move(inputs);
  return add_layer(g, std::move(l));
}

inline int add_relu(graph& g, const std::string& name, int input) {
  layer l;
  l.name = name;
  l.kind = layer_kind::clamp;
  l.inputs = {input};
  l.act = activation::relu();
  return add_layer(g, std::move(l));
}

inline int add_batch_norm(graph& g, const std::string& name, int input, int channels) {
  layer l;
  l.name = name;
  l.kind = layer_kind::batch_norm;
  l.inputs = {input};
  seeded_generator gen(std::hash<std::string>{}(name));
  std::vector<float> w(4 * size_t(channels));
  for (int c = 0; c < channels; ++c) {
    w[c] = gen.uniform(0.5f, 1.5f);                 // gamma
    w[channels + c] = gen.uniform(-0.2f, 0.2f);     // beta
    w[2 * channels + c] = gen.uniform(-0.2f, 0.2f); // running mean
    w[3 * channels + c] = gen.uniform(0.5f, 1.5f);  // running variance
  }
  l.weights = weight_blob::from_vector(std::move(w));
  l.epsilon = 1e-3f;
  return add_layer(g, std::move(l));
}

}  // namespace d3::testing
