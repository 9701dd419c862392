// Images as model inputs (d3-run --image, d3-infer --image): a PNG or JPEG file through
// torchvision's standard ImageNet transform (imaging/transform.hpp: Resize(256) of the shorter side
// with PIL's bilinear filter, CenterCrop(224); for a model input of S x S pixels, Resize(S * 256 /
// 224, rounded) and CenterCrop(S)), kept as 8-bit pixel values in a float tensor (NHWC, 0..255):
// the model's `preprocess` layer (kernels/model_zoo.hpp: add_image_preprocess) divides by 255 and
// normalises, and the wire carries the pixels as 8 bits (codec u8). And the answer as top-5.
#pragma once

#include <string>
#include <vector>

#include "base/status.hpp"
#include "kernels/graph.hpp"
#include "kernels/tensor.hpp"

namespace d3 {

// The image at `path` as the input of `g` (its single input layer, 3 channels, square H = W).
// Precondition: none; errors name the file or what of the model does not fit.
result<tensor> image_input(const graph& g, const std::string& path);

// Class names, one per line (an ImageNet label file); empty lines keep their index.
result<std::vector<std::string>> read_labels(const std::string& path);

// "top-5: 281 tabby 0.4213, ..." for an [N=1, C] output: the five largest, with softmax
// probabilities of the logits (or the values themselves when `g` ends in a softmax layer).
std::string top5(const graph& g, const tensor& output, const std::vector<std::string>& labels);

}  // namespace d3
