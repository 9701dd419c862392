// What the command-line apps share: loading a model named by the user, tensor files, numbers and
// medians. Errors come back as values; each app decides its exit code.
#pragma once

#include <string>
#include <vector>

#include "kernels/graph.hpp"
#include "kernels/status.hpp"
#include "kernels/tensor.hpp"

namespace d3 {

// A built-in model name, an ONNX file (.onnx) or a d3 model file, prepared for inference. Errors
// name the model and what is wrong (unknown name and no such file, malformed file, ...).
result<graph> load_model_by_name(const std::string& model, uint64_t seed);

// Raw little-endian float32 in NCHW order (PyTorch's), exactly `shape`'s size, as an NHWC tensor.
result<tensor> read_nchw_file(const std::string& path, const tensor_shape& shape);
status write_nchw_file(const std::string& path, const tensor& t);

// An integer in [min, max] from a command-line value; the error names `flag`.
result<long> parse_integer(const std::string& flag, const std::string& text, long min, long max);

// Linear-interpolated percentile (p in [0, 1]); 0 for no values.
double percentile(std::vector<double> values, double p);

}  // namespace d3
