// The five built-in models with torchvision's topology (as ONNX exports it: separate batch norm
// and ReLU nodes) and a 1x3x224x224 input. Weights come from a seeded counter-based generator with
// He scaling, so activations keep unit scale through depth and the same seed gives the same bytes
// on every machine (no std:: distributions, whose output differs between standard libraries).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/graph.hpp"
#include "base/status.hpp"
#include "kernels/tensor.hpp"

namespace d3 {

constexpr uint64_t default_model_seed = 2021;
constexpr const char* default_model_name = "resnet18";

const std::vector<std::string>& builtin_model_names();  // alexnet vgg16 resnet18 googlenet mobilenet_v2

// The model as exported (batch norms and ReLUs as their own layers), shapes inferred.
result<graph> builtin_model_unprepared(const std::string& name, uint64_t seed = default_model_seed);
// The model ready to execute: prepare_for_inference() applied.
result<graph> builtin_model(const std::string& name, uint64_t seed = default_model_seed);

// Deterministic pseudo-random floats (splitmix64 stream), identical on every platform.
class seeded_generator {
 public:
  explicit seeded_generator(uint64_t seed) : state_(seed) {}
  uint64_t next_u64();
  float uniform(float low, float high);  // [low, high)
 private:
  uint64_t state_;
};

// A tensor of uniform values in [-1, 1) (unit-scale input).
tensor random_tensor(const tensor_shape& shape, uint64_t seed);
// A tensor of uniform 8-bit pixel values 0..255 (as floats): a stand-in image.
tensor random_pixels(const tensor_shape& shape, uint64_t seed);
// What graph input `input_layer` takes: random_pixels when a preprocess layer reads it (an 8-bit
// image), random_tensor otherwise.
tensor sample_input(const graph& g, int input_layer, uint64_t seed);
bool reads_pixels(const graph& g, int input_layer);

// ImageNet's normalisation (torchvision): mean 0.485, 0.456, 0.406 and std 0.229, 0.224, 0.225.
// Makes the graph take 8-bit images: a `preprocess` layer with them right after its (single, 3
// channel) input, read by every former reader of the input. Errors name what does not fit (not
// one input, not 3 channels, a preprocess layer already there). Shapes are re-inferred.
status add_image_preprocess(graph& g);

// For timing probes of a model whose weights are elsewhere (a node timing layers it was sent
// without weights): gives every convolution, fully-connected and batch-norm layer without
// weights seeded He-scaled weights of the size its input needs (batch norm: the identity), in
// topological order, and infers every shape. Layers with weights keep them. Compute time does
// not depend on weight values, so such a graph times like the real one.
status fill_missing_weights(graph& g, uint64_t seed = default_model_seed);

}  // namespace d3
