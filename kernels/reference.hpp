// Naive reference implementations of every layer kind: plain loops, double accumulation, no
// XNNPACK. They define what the fast operators must compute and are only used by tests and checks.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kernels/graph.hpp"
#include "kernels/tensor.hpp"

namespace d3 {

// Computes layer `l` (output_shape set) on `inputs`, including batch_norm and an unfused clamp.
tensor reference_layer(const layer& l, const std::vector<const tensor*>& inputs);

// Runs every layer of a shape-inferred graph; returns all tensors keyed by layer name.
std::map<std::string, tensor> reference_run(const graph& g, const std::map<std::string, tensor>& inputs);

// Compares `actual` with `expected` element by element: |a - e| <= tolerance * max(|e|, rms(e)).
// The RMS floor keeps values near zero from failing on rounding noise. Returns an empty string when
// they match, otherwise a message naming the first mismatching NHWC index and both values.
std::string compare_relative(const tensor& actual, const tensor& expected, double tolerance);

}  // namespace d3
