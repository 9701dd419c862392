#include "apps/app_support.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "kernels/model_zoo.hpp"
#include "schema/model_file.hpp"
#include "schema/onnx_import.hpp"

namespace d3 {

result<graph> load_model_by_name(const std::string& model, uint64_t seed) {
  if (is_onnx_path(model)) return import_onnx(model);
  const auto& names = builtin_model_names();
  if (std::find(names.begin(), names.end(), model) != names.end()) return builtin_model(model, seed);
  if (!std::ifstream(model, std::ios::binary)) {
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    return status::error("unknown model '" + model + "': not a built-in model (" + list + ") and no such file");
  }
  return load_model(model);
}

result<tensor> read_nchw_file(const std::string& path, const tensor_shape& shape) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return status::error("cannot open input file '" + path + "': " + std::strerror(errno));
  const std::streamsize size = in.tellg();
  if (size != std::streamsize(shape.bytes()))
    return status::error("input file '" + path + "' holds " + std::to_string(size) + " bytes; the model expects " +
                         std::to_string(shape.bytes()) + " (" + shape.to_string() + " float32, NCHW)");
  std::vector<float> nchw(shape.elements());
  in.seekg(0);
  in.read(reinterpret_cast<char*>(nchw.data()), size);
  if (!in) return status::error("cannot read input file '" + path + "'");
  tensor t(shape);
  nchw_to_nhwc(nchw.data(), shape, t.data());
  return t;
}

status write_nchw_file(const std::string& path, const tensor& t) {
  std::vector<float> nchw(t.elements());
  nhwc_to_nchw(t.data(), t.shape(), nchw.data());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(nchw.data()), std::streamsize(t.bytes()));
  if (!out) return status::error("cannot write output file '" + path + "': " + std::strerror(errno));
  return status::ok();
}

result<long> parse_integer(const std::string& flag, const std::string& text, long min, long max) {
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || value < min || value > max)
    return status::error(flag + " expects an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                         "], got '" + text + "'");
  return value;
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = p * double(values.size() - 1);
  const size_t lo = size_t(rank);
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (rank - double(lo));
}

}  // namespace d3
