// What the command-line apps share: loading a model named by the user, tensor files, numbers and
// medians. Errors come back as values; each app decides its exit code.
#pragma once

#include <string>
#include <vector>

#include "kernels/graph.hpp"
#include "base/status.hpp"
#include "kernels/tensor.hpp"

namespace d3 {

// A built-in model name, an ONNX file (.onnx) or a d3 model file, prepared for inference. Errors
// name the model and what is wrong (unknown name and no such file, malformed file, ...).
result<graph> load_model_by_name(const std::string& model, uint64_t seed);

// Every name is a built-in model or a readable file; the error names the first that is neither.
status check_model_names(const std::vector<std::string>& names);

// Raw little-endian float32 in NCHW order (PyTorch's), exactly `shape`'s size, as an NHWC tensor.
result<tensor> read_nchw_file(const std::string& path, const tensor_shape& shape);
status write_nchw_file(const std::string& path, const tensor& t);

// An integer in [min, max] from a command-line value; the error names `flag`.
result<long> parse_integer(const std::string& flag, const std::string& text, long min, long max);

// Linear-interpolated percentile (p in [0, 1]); 0 for no values.
double percentile(std::vector<double> values, double p);
// exp(mean(log(v))); NaN for no values.
double geometric_mean(const std::vector<double>& v);

// printf into a std::string (at most 1023 characters).
std::string format(const char* pattern, ...) __attribute__((format(printf, 1, 2)));
// "a,b,,c" -> {"a", "b", "c"}.
std::vector<std::string> split_list(const std::string& text);
std::string join(const std::vector<std::string>& parts, const std::string& separator);
// Decimal units, as link bandwidths are quoted: "602.1 KB".
std::string human_bytes(double bytes);
// The argument as a shell would need it quoted (for printing the command line).
std::string shell_quote(const std::string& s);
// argv as one line a shell would run again (reports quote the command that produced them).
std::string command_line(int argc, char** argv);
// Letters, digits, '-' and '_' kept, the rest '_' (file names from model names).
std::string file_safe(const std::string& name);
// mkdir -p, then checks that `path` is a writable folder.
status make_folder(const std::string& path);

}  // namespace d3
