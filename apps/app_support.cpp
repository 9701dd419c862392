#include "apps/app_support.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "kernels/model_zoo.hpp"
#include "schema/model_file.hpp"
#include "onnx/onnx_import.hpp"

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

std::string format(const char* pattern, ...) {
  char buffer[1024];
  va_list args;
  va_start(args, pattern);
  std::vsnprintf(buffer, sizeof buffer, pattern, args);
  va_end(args);
  return buffer;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ','))
    if (!part.empty()) parts.push_back(part);
  return parts;
}

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string s;
  for (const std::string& p : parts) s += (s.empty() ? "" : separator) + p;
  return s;
}

// Decimal units, as link bandwidths are quoted.
std::string human_bytes(double bytes) {
  if (bytes < 1e3) return format("%.0f B", bytes);
  if (bytes < 1e6) return format("%.1f KB", bytes / 1e3);
  return format("%.2f MB", bytes / 1e6);
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") ==
                        std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

status check_model_names(const std::vector<std::string>& names) {
  if (names.empty()) return status::error("--models needs at least one model");
  const std::vector<std::string>& builtins = builtin_model_names();
  for (const std::string& m : names)
    if (std::find(builtins.begin(), builtins.end(), m) == builtins.end() && ::access(m.c_str(), R_OK) != 0)
      return status::error("unknown model '" + m + "': not a built-in model (" + join(builtins, ", ") +
                           ") and no such file");
  return status::ok();
}

std::string command_line(int argc, char** argv) {
  std::string line;
  for (int i = 0; i < argc; ++i) line += (i ? " " : "") + shell_quote(argv[i]);
  return line;
}

std::string file_safe(const std::string& name) {
  std::string s;
  for (char c : name) s += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_';
  return s;
}

double geometric_mean(const std::vector<double>& v) {
  if (v.empty()) return NAN;
  double log_sum = 0;
  for (double x : v) log_sum += std::log(x);
  return std::exp(log_sum / double(v.size()));
}

status make_folder(const std::string& path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
      return status::error("cannot create folder '" + prefix + "': " + std::strerror(errno));
    if (slash == std::string::npos) break;
  }
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) return status::error("'" + path + "' is not a folder");
  if (::access(path.c_str(), W_OK) != 0) return status::error("cannot write into folder '" + path + "'");
  return status::ok();
}

}  // namespace d3
