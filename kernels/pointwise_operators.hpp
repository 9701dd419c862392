// Per-pixel operators XNNPACK (2022) lacks, as native loops: layer normalisation over the channels
// of each pixel (ConvNeXt's LayerNorm on its channels-last islands) and GELU in its erf form. Both
// compute each pixel from that pixel alone, in a fixed order, so a tile computes exactly the
// values the whole tensor would (vertical separation stays bit-exact with no halo).
#pragma once

#include <memory>
#include <vector>

#include "base/status.hpp"
#include "kernels/graph.hpp"
#include "kernels/operators.hpp"

namespace d3 {

// Preconditions (checked, errors name the layer): one input of the layer's output shape;
// layer_norm holds 2 x channels weights (gamma | beta) and a non-negative epsilon.
result<std::unique_ptr<layer_operator>> create_layer_norm_operator(const layer& l, const tensor_shape& input);
result<std::unique_ptr<layer_operator>> create_gelu_operator(const layer& l, const tensor_shape& input);

// The arithmetic the operators run on a block of pixels. Normalises `pixels` rows of `channels` floats each from x into y.
void layer_norm_rows(const float* x, float* y, size_t pixels, size_t channels, const float* gamma, const float* beta,
                     float epsilon);
void gelu_values(const float* x, float* y, size_t count);

}  // namespace d3
