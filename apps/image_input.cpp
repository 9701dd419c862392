#include "apps/image_input.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>

#include "imaging/image.hpp"
#include "imaging/transform.hpp"

namespace d3 {

result<tensor> image_input(const graph& g, const std::string& path) {
  const std::vector<int> inputs = g.input_layers();
  if (inputs.size() != 1)
    return status::error("--image: model '" + g.name + "' has " + std::to_string(inputs.size()) + " inputs, not one");
  const tensor_shape shape = g.layers[size_t(inputs[0])].output_shape;
  if (shape.n != 1 || shape.c != 3 || shape.h != shape.w)
    return status::error("--image: model '" + g.name + "' takes " + shape.to_string() +
                         ", not one square RGB image (1x3xSxS)");
  auto image = read_image_file(path);
  if (!image) return image.error();
  imagenet_transform t;
  t.crop = shape.h;
  t.resize = int(std::lround(double(shape.h) * 256.0 / 224.0));
  const image_u8 cropped = apply(t, image.value());
  if (cropped.height != shape.h || cropped.width != shape.w || cropped.channels != 3)
    return status::error("image file '" + path + "': the transform gave " + std::to_string(cropped.width) + "x" +
                         std::to_string(cropped.height) + " pixels, not " + std::to_string(shape.w) + "x" +
                         std::to_string(shape.h));
  tensor out(shape);  // NHWC: the image's own HWC order
  for (size_t i = 0; i < out.elements(); ++i) out.data()[i] = float(cropped.pixels[i]);
  return out;
}

result<std::vector<std::string>> read_labels(const std::string& path) {
  std::ifstream in(path);
  if (!in) return status::error("label file '" + path + "': cannot open it");
  std::vector<std::string> labels;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    labels.push_back(line);
  }
  if (labels.empty()) return status::error("label file '" + path + "': no labels in it");
  return labels;
}

std::string top5(const graph& g, const tensor& output, const std::vector<std::string>& labels) {
  const size_t n = output.elements();
  std::vector<double> score(output.data(), output.data() + n);
  bool probabilities = false;
  for (int o : g.outputs) probabilities = probabilities || g.layers[size_t(o)].kind == layer_kind::softmax;
  if (!probabilities && n > 0) {
    const double top = *std::max_element(score.begin(), score.end());
    double sum = 0;
    for (double& s : score) sum += (s = std::exp(s - top));
    for (double& s : score) s /= sum;
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t(0));
  const size_t k = std::min<size_t>(5, n);
  std::partial_sort(order.begin(), order.begin() + long(k), order.end(),
                    [&](size_t a, size_t b) { return score[a] > score[b] || (score[a] == score[b] && a < b); });
  std::string text = "top-5:";
  for (size_t i = 0; i < k; ++i) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, " %zu", order[i]);
    text += buffer;
    if (order[i] < labels.size() && !labels[order[i]].empty()) text += " " + labels[order[i]];
    std::snprintf(buffer, sizeof buffer, " %.4f%s", score[order[i]], i + 1 < k ? "," : "");
    text += buffer;
  }
  return text;
}

}  // namespace d3
