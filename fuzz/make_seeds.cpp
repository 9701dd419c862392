// Writes the binary seed inputs of the fuzz targets that have no files in the repository: a small
// model file, a tensor bundle, a layer shipment and a stage spec, all of one small graph (a conv,
// a ReLU, a pooling, a fully connected layer), as d3 itself writes them.
//   make_seeds DIR   -> DIR/model_file/, DIR/tensor_bundle/, DIR/layer_shipment/, DIR/stage_spec/
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "imaging/image.hpp"
#include "kernels/model_zoo.hpp"
#include "schema/bundle.hpp"
#include "schema/model_file.hpp"
#include "tests/test_graphs.hpp"

namespace {

using namespace d3;

void write(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(bytes.data()),
                                                                 std::streamsize(bytes.size()));
}

graph small_graph() {
  graph g;
  g.name = "fuzz-seed";
  const int in = testing::add_input(g, "input", {1, 8, 8, 3})  /* n, h, w, c */;
  const int conv = testing::add_convolution(g, "conv", in, 3, 4);
  const int relu = testing::add_relu(g, "relu", conv);
  const int pool = testing::add_simple(g, "pool", layer_kind::global_average_pool, {relu});
  g.outputs = {pool};
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  for (const char* sub : {"model_file", "tensor_bundle", "tensor_codec", "image", "layer_shipment", "stage_spec"})
    ::mkdir((dir + "/" + sub).c_str(), 0755);
  graph g = small_graph();
  if (status s = infer_shapes(g); !s) {
    std::fprintf(stderr, "make_seeds: %s\n", s.message().c_str());
    return 1;
  }
  if (status s = save_model(g, dir + "/model_file/small.d3m"); !s) {
    std::fprintf(stderr, "make_seeds: %s\n", s.message().c_str());
    return 1;
  }
  const tensor x = random_tensor(g.layers[0].output_shape, 7);
  write(dir + "/tensor_bundle/one.bin", encode_bundle(42, 1, {{"input", &x}}, 12.5));
  write(dir + "/tensor_bundle/empty.bin", encode_bundle(1, 1, {}));
  // Encoded tensors: a post-ReLU map (sparse, zstd) and 8-bit pixels (u8).
  tensor relu = x;
  for (size_t i = 0; i < relu.elements(); ++i) relu.data()[i] = std::max(0.0f, relu.data()[i]);
  tensor pixels = x;
  for (size_t i = 0; i < pixels.elements(); ++i) pixels.data()[i] = float(i * 37 % 256);
  write(dir + "/tensor_bundle/sparse.bin", encode_bundle(5, 1, {{"input", &relu, tensor_codec::sparse}}));
  write(dir + "/tensor_bundle/zstd.bin", encode_bundle(6, 1, {{"input", &relu, tensor_codec::zstd}}));
  write(dir + "/tensor_bundle/u8.bin", encode_bundle(7, 1, {{"input", &pixels, tensor_codec::u8}}));
  write(dir + "/tensor_bundle/sparse_zstd.bin", encode_bundle(8, 1, {{"input", &relu, tensor_codec::sparse_zstd}}));
  for (tensor_codec c : {tensor_codec::raw, tensor_codec::u8, tensor_codec::sparse, tensor_codec::zstd,
                         tensor_codec::sparse_zstd}) {
    const tensor& t = c == tensor_codec::u8 ? pixels : relu;
    const size_t n = std::min<size_t>(t.elements(), 65535);
    auto encoded = encode_floats(c, t.data(), n);
    if (!encoded) continue;
    std::vector<uint8_t> seed = {uint8_t(c), uint8_t(n & 0xff), uint8_t(n >> 8)};
    seed.insert(seed.end(), encoded->begin(), encoded->end());
    write(dir + "/tensor_codec/" + to_string(c) + ".bin", seed);
  }
  // Images: a small gradient as PNG (RGB and gray) and JPEG.
  image_u8 picture{12, 16, 3, {}};
  for (int y = 0; y < picture.height; ++y)
    for (int x = 0; x < picture.width; ++x)
      for (int c = 0; c < 3; ++c) picture.pixels.push_back(uint8_t(x * 16 + y * 5 + c * 40));
  image_u8 gray{12, 16, 1, std::vector<uint8_t>(12 * 16, 99)};
  if (!write_png(dir + "/image/rgb.png", picture) || !write_png(dir + "/image/gray.png", gray) ||
      !write_jpeg(dir + "/image/rgb.jpg", picture, 90)) {
    std::fprintf(stderr, "make_seeds: cannot write the image seeds\n");
    return 1;
  }
  const std::vector<int> all = {0, 1, 2, 3};
  write(dir + "/layer_shipment/with-weights.bin", encode_layers(g, all, 1234, all));
  write(dir + "/layer_shipment/no-weights.bin", encode_layers(g, all, 1234, {}));
  stage_spec spec;
  spec.stage_id = 3;
  spec.plan_version = 1;
  spec.model_hash = 1234;
  spec.inputs = {"input"};
  spec.outputs = {"pool"};
  spec.fragment = make_fragment(g, all, 1234, {});
  write(dir + "/stage_spec/segment.bin", encode_stage_spec(spec));
  std::printf("make_seeds: seeds in %s\n", dir.c_str());
  return 0;
}
