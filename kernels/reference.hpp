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

// Compares `actual` with `expected` element by element against the infinity-norm relative error:
// |a - e| <= tolerance * max|e|. Relative to the tensor's largest magnitude, not to each element,
// because an element near zero is a long dot product that cancelled: its rounding error scales with
// the terms, not with the result. Returns an empty string when they match, otherwise a message
// naming the first mismatching NHWC index, both values and how many elements differ.
std::string compare_relative(const tensor& actual, const tensor& expected, double tolerance);

}  // namespace d3
