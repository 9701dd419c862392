#define BOOST_TEST_MODULE model_zoo
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/executor.hpp"
#include "kernels/graph.hpp"
#include "kernels/model_zoo.hpp"
#include "kernels/operators.hpp"
#include "kernels/reference.hpp"

using namespace d3;

namespace {

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// Building a model draws every weight (138M floats for vgg16), so each (model, seed, prepared)
// is built once per process; copies of a graph share the weight blobs.
const graph& load(const std::string& name, uint64_t seed, bool prepared) {
  static std::map<std::tuple<std::string, uint64_t, bool>, graph> cache;
  auto key = std::make_tuple(name, seed, prepared);
  auto it = cache.find(key);
  if (it == cache.end()) {
    result<graph> g = prepared ? builtin_model(name, seed) : builtin_model_unprepared(name, seed);
    BOOST_TEST_REQUIRE(g.is_ok(), name << ": " << (g.is_ok() ? "" : g.message()));
    it = cache.emplace(key, std::move(g).value()).first;
  }
  return it->second;
}
const graph& load_unprepared(const std::string& name, uint64_t seed = default_model_seed) {
  return load(name, seed, false);
}
const graph& load_prepared(const std::string& name, uint64_t seed = default_model_seed) {
  return load(name, seed, true);
}

const layer& layer_named(const graph& g, const std::string& name) {
  const int i = g.find(name);
  BOOST_TEST_REQUIRE(i >= 0, g.name << " has no layer '" << name << "'");
  return g.layers[size_t(i)];
}

bool has_weights(const layer& l) {
  return l.kind == layer_kind::convolution || l.kind == layer_kind::fully_connected ||
         l.kind == layer_kind::batch_norm;
}

// Multiply-accumulates of convolutions and fully connected layers, computed here from the
// shapes (independently of graph.cpp's cost_of), as torchvision's GFLOPS figures count them.
double conv_fc_macs(const graph& g) {
  double macs = 0;
  for (const layer& l : g.layers) {
    if (l.kind == layer_kind::convolution) {
      const tensor_shape& in = g.layers[size_t(l.inputs[0])].output_shape;
      macs += double(l.output_shape.elements()) * double(in.c / l.groups) * l.window.kernel_h * l.window.kernel_w;
    } else if (l.kind == layer_kind::fully_connected) {
      macs += double(l.output_shape.elements()) * double(g.layers[size_t(l.inputs[0])].output_shape.elements());
    }
  }
  return macs;
}

// Parameters as torchvision counts them (sum(p.numel() for p in model.parameters())): conv and
// fully connected weights and biases, batch norm gamma and beta (running statistics are buffers).
size_t torchvision_parameter_count(const graph& g) {
  size_t count = 0;
  for (const layer& l : g.layers) {
    if (l.kind == layer_kind::convolution || l.kind == layer_kind::fully_connected)
      count += l.weights.size() + l.bias.size();
    else if (l.kind == layer_kind::batch_norm)
      count += l.weights.size() / 2;
  }
  return count;
}

size_t count_kind(const graph& g, layer_kind kind) {
  size_t n = 0;
  for (const layer& l : g.layers) n += l.kind == kind;
  return n;
}

double rms_of(const tensor& t) {
  double sum = 0;
  for (size_t i = 0; i < t.elements(); ++i) sum += double(t.data()[i]) * double(t.data()[i]);
  return t.elements() == 0 ? 0.0 : std::sqrt(sum / double(t.elements()));
}

struct model_facts {
  const char* name;
  const char* output_layer;
  double gmacs;       // torchvision's documented GFLOPS (which count multiply-accumulates)
  size_t parameters;  // sum(p.numel() for p in torchvision.models.<name>().parameters())
};
const model_facts all_models[] = {
    {"alexnet", "classifier.6", 0.714, 61100840},  {"vgg16", "classifier.6", 15.47, 138357544},
    {"resnet18", "fc", 1.814, 11689512},           {"googlenet", "fc", 1.50, 6624904},
    {"mobilenet_v2", "classifier.1", 0.300, 3504872},
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Generator

BOOST_AUTO_TEST_CASE(generator_is_splitmix64) {
  // The first outputs of Vigna's reference splitmix64.c seeded with 0.
  seeded_generator gen(0);
  BOOST_TEST(gen.next_u64() == 0xe220a8397b1dcdafull);
  BOOST_TEST(gen.next_u64() == 0x6e789e6aa1b965f4ull);
  BOOST_TEST(gen.next_u64() == 0x06c45d188009454full);
}

BOOST_AUTO_TEST_CASE(uniform_is_pinned_and_uses_top_24_bits) {
  // uniform() = low + (high - low) * (top 24 bits of next_u64) * 2^-24, pinned bit for bit.
  seeded_generator a(2021), b(2021);
  const uint64_t first = b.next_u64();
  const float u = float(first >> 40) * 0x1p-24f;
  const float v = a.uniform(-1.0f, 1.0f);
  BOOST_TEST(v == -1.0f + 2.0f * u);
  BOOST_TEST(bits_of(v) == 0xbef53c50u);
  BOOST_TEST(bits_of(a.uniform(-1.0f, 1.0f)) == 0x3f7b1b90u);
  BOOST_TEST(bits_of(a.uniform(-1.0f, 1.0f)) == 0x3d0c8cc0u);
  BOOST_TEST(bits_of(a.uniform(-1.0f, 1.0f)) == 0xbe3edfa8u);
}

BOOST_AUTO_TEST_CASE(uniform_range_and_moments) {
  seeded_generator gen(99);
  const int n = 200000;
  double sum = 0, square_sum = 0;
  float lowest = 1, highest = -1;
  for (int i = 0; i < n; ++i) {
    const float x = gen.uniform(-1.0f, 1.0f);
    sum += x;
    square_sum += double(x) * x;
    lowest = std::min(lowest, x);
    highest = std::max(highest, x);
  }
  BOOST_TEST(lowest >= -1.0f);
  BOOST_TEST(highest < 1.0f);
  BOOST_TEST(lowest < -0.999f);
  BOOST_TEST(highest > 0.999f);
  BOOST_TEST(std::fabs(sum / n) < 0.01);
  BOOST_TEST(std::fabs(square_sum / n - 1.0 / 3.0) < 0.01);

  for (int i = 0; i < 10000; ++i) {
    const float x = gen.uniform(0.8f, 1.2f);
    BOOST_TEST_REQUIRE((x >= 0.8f && x < 1.2f), "uniform(0.8, 1.2) gave " << x);
  }
}

BOOST_AUTO_TEST_CASE(random_tensor_is_the_generator_stream_in_nhwc_order) {
  const tensor_shape shape{1, 5, 7, 3};
  tensor t = random_tensor(shape, 2021);
  BOOST_TEST(t.shape() == shape);
  seeded_generator gen(2021);
  bool same = true, in_range = true;
  for (size_t i = 0; i < t.elements(); ++i) {
    same = same && bits_of(t.data()[i]) == bits_of(gen.uniform(-1.0f, 1.0f));
    in_range = in_range && t.data()[i] >= -1.0f && t.data()[i] < 1.0f;
  }
  BOOST_TEST(same);
  BOOST_TEST(in_range);
  BOOST_TEST(bitwise_equal(t, random_tensor(shape, 2021)));
  BOOST_TEST(!bitwise_equal(t, random_tensor(shape, 2022)));
}

// ---------------------------------------------------------------------------------------------
// Names

BOOST_AUTO_TEST_CASE(model_names_and_unknown_model) {
  const std::vector<std::string> expected = {"alexnet", "vgg16", "resnet18", "googlenet", "mobilenet_v2"};
  BOOST_TEST(builtin_model_names() == expected, boost::test_tools::per_element());
  BOOST_TEST(std::string(default_model_name) == "resnet18");

  for (auto load : {&builtin_model_unprepared, &builtin_model}) {
    result<graph> g = load("resnet50", default_model_seed);
    BOOST_TEST_REQUIRE(!g.is_ok());
    BOOST_TEST(g.message() ==
               "unknown model 'resnet50' (built-in models: alexnet, vgg16, resnet18, googlenet, mobilenet_v2)");
  }
}

// ---------------------------------------------------------------------------------------------
// Topology

BOOST_AUTO_TEST_CASE(inputs_and_outputs) {
  for (const model_facts& m : all_models) {
    BOOST_TEST_CONTEXT(m.name) {
      for (bool prepared : {false, true}) {
        const graph& g = prepared ? load_prepared(m.name) : load_unprepared(m.name);
        BOOST_TEST(g.name == m.name);
        const std::vector<int> inputs = g.input_layers();
        BOOST_TEST_REQUIRE(inputs.size() == 1u);
        const layer& in = g.layers[size_t(inputs[0])];
        BOOST_TEST(in.name == "input");
        BOOST_TEST(in.output_shape.to_string() == "1x3x224x224");
        BOOST_TEST_REQUIRE(g.outputs.size() == 1u);
        const layer& out = g.layers[size_t(g.outputs[0])];
        BOOST_TEST(out.name == m.output_layer);
        BOOST_TEST(out.kind == layer_kind::fully_connected);  // logits: no softmax, like torchvision
        BOOST_TEST(out.output_shape.to_string() == "1x1000x1x1");
        BOOST_TEST(count_kind(g, layer_kind::softmax) == 0u);
        if (prepared) BOOST_TEST(count_kind(g, layer_kind::batch_norm) == 0u);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(torchvision_layer_names_and_shapes) {
  {
    const graph& g = load_unprepared("alexnet");
    BOOST_TEST(layer_named(g, "features.0").output_shape.to_string() == "1x64x55x55");
    BOOST_TEST(layer_named(g, "features.12").output_shape.to_string() == "1x256x6x6");
    BOOST_TEST(layer_named(g, "flatten").output_shape.to_string() == "1x9216x1x1");
    BOOST_TEST(layer_named(g, "classifier.4").output_channels == 4096);
    BOOST_TEST(count_kind(g, layer_kind::convolution) == 5u);
    BOOST_TEST(count_kind(g, layer_kind::fully_connected) == 3u);
  }
  {
    const graph& g = load_unprepared("vgg16");
    BOOST_TEST(layer_named(g, "features.28").kind == layer_kind::convolution);
    BOOST_TEST(layer_named(g, "features.30").output_shape.to_string() == "1x512x7x7");
    BOOST_TEST(layer_named(g, "classifier.0").output_channels == 4096);
    BOOST_TEST(count_kind(g, layer_kind::convolution) == 13u);
    BOOST_TEST(count_kind(g, layer_kind::max_pool) == 5u);
  }
  {
    const graph& g = load_unprepared("resnet18");
    BOOST_TEST(layer_named(g, "maxpool").output_shape.to_string() == "1x64x56x56");
    BOOST_TEST(layer_named(g, "layer1.0.relu2").kind == layer_kind::clamp);
    BOOST_TEST(layer_named(g, "layer2.0.downsample.0").window.stride_h == 2);
    BOOST_TEST(layer_named(g, "layer4.1.add").output_shape.to_string() == "1x512x7x7");
    BOOST_TEST(layer_named(g, "avgpool").kind == layer_kind::global_average_pool);
    BOOST_TEST(g.find("layer1.0.downsample.0") == -1);
    BOOST_TEST(count_kind(g, layer_kind::convolution) == 20u);  // 1 + 16 + 3 downsample
    BOOST_TEST(count_kind(g, layer_kind::batch_norm) == 20u);
    BOOST_TEST(count_kind(g, layer_kind::add) == 8u);
    for (const layer& l : g.layers)
      if (l.kind == layer_kind::convolution) BOOST_TEST(l.bias.empty(), l.name);
  }
  {
    const graph& g = load_unprepared("googlenet");
    BOOST_TEST(layer_named(g, "maxpool1").output_shape.to_string() == "1x64x56x56");  // ceil_mode
    BOOST_TEST(layer_named(g, "maxpool2").output_shape.to_string() == "1x192x28x28");
    BOOST_TEST(layer_named(g, "inception3a.concat").output_shape.to_string() == "1x256x28x28");
    BOOST_TEST(layer_named(g, "inception4e.concat").output_shape.to_string() == "1x832x14x14");
    BOOST_TEST(layer_named(g, "maxpool4").output_shape.to_string() == "1x832x7x7");
    BOOST_TEST(layer_named(g, "inception5b.concat").output_shape.to_string() == "1x1024x7x7");
    BOOST_TEST(layer_named(g, "inception4a.branch3.1.conv").window.kernel_h == 3);  // torchvision's "5x5"
    BOOST_TEST(layer_named(g, "inception4a.branch4.0").kind == layer_kind::max_pool);
    BOOST_TEST(layer_named(g, "conv1.bn").epsilon == 0.001f);
    BOOST_TEST(count_kind(g, layer_kind::concat) == 9u);
    BOOST_TEST(count_kind(g, layer_kind::convolution) == 57u);  // 3 + 9 * 6
  }
  {
    const graph& g = load_unprepared("mobilenet_v2");
    BOOST_TEST(layer_named(g, "features.0.0").window.stride_h == 2);
    BOOST_TEST((layer_named(g, "features.0.2").act == activation::relu6()));
    BOOST_TEST(layer_named(g, "features.1.conv.0.0").groups == 32);  // t = 1: no expansion
    BOOST_TEST(layer_named(g, "features.1.conv.2").kind == layer_kind::batch_norm);
    BOOST_TEST(layer_named(g, "features.2.conv.0.0").output_channels == 96);
    BOOST_TEST(layer_named(g, "features.17.conv.2").output_shape.to_string() == "1x320x7x7");
    BOOST_TEST(layer_named(g, "features.18.0").output_channels == 1280);
    BOOST_TEST(g.find("features.2.add") == -1);  // stride 2
    BOOST_TEST(layer_named(g, "features.3.add").kind == layer_kind::add);
    BOOST_TEST(count_kind(g, layer_kind::add) == 10u);
    size_t depthwise = 0;
    for (const layer& l : g.layers)
      if (l.kind == layer_kind::convolution && l.groups > 1) {
        ++depthwise;
        BOOST_TEST(l.groups == l.output_channels, l.name);
        BOOST_TEST(l.weights.size() == size_t(l.output_channels) * 9u, l.name);
      }
    BOOST_TEST(depthwise == 17u);
  }
}

// ---------------------------------------------------------------------------------------------
// Cost and size against torchvision

BOOST_AUTO_TEST_CASE(macs_match_torchvision) {
  for (const model_facts& m : all_models) {
    BOOST_TEST_CONTEXT(m.name) {
      const graph& unprepared = load_unprepared(m.name);
      const graph& prepared = load_prepared(m.name);
      const double expected = m.gmacs * 1e9;
      const double own = conv_fc_macs(unprepared);
      const double from_cost = total_flops(prepared) / 2;
      BOOST_TEST_MESSAGE(m.name << ": conv+fc " << own / 1e9 << " GMAC, total_flops/2 prepared "
                                << from_cost / 1e9 << " unprepared " << total_flops(unprepared) / 2e9);
      BOOST_TEST(std::fabs(own / expected - 1) < 0.02, "conv+fc " << own / 1e9 << " GMAC");
      BOOST_TEST(std::fabs(from_cost / expected - 1) < 0.02, "total_flops/2 " << from_cost / 1e9 << " GMAC");
      // Folding and fusing removes element-wise work, never multiply-accumulates.
      BOOST_TEST(conv_fc_macs(prepared) == own);
      BOOST_TEST(total_flops(prepared) <= total_flops(unprepared));
    }
  }
}

BOOST_AUTO_TEST_CASE(parameter_counts_match_torchvision) {
  for (const model_facts& m : all_models) {
    BOOST_TEST_CONTEXT(m.name) { BOOST_TEST(torchvision_parameter_count(load_unprepared(m.name)) == m.parameters); }
  }
}

BOOST_AUTO_TEST_CASE(conv_and_fc_weight_bytes_by_hand) {
  // Weight and bias bytes of convolutions and fully connected layers, as cost_of() reports them.
  auto conv_fc_weight_bytes = [](const graph& g) {
    size_t bytes = 0;
    for (size_t i = 0; i < g.layers.size(); ++i) {
      const layer_kind k = g.layers[i].kind;
      if (k == layer_kind::convolution || k == layer_kind::fully_connected) bytes += cost_of(g, int(i)).weight_bytes;
    }
    return bytes;
  };
  // AlexNet: 64*3*11*11 + 192*64*5*5 + 384*192*3*3 + 256*384*3*3 + 256*256*3*3
  //          + 4096*9216 + 4096*4096 + 1000*4096 weights, every layer with a bias.
  const size_t alexnet_weights = 23232 + 307200 + 663552 + 884736 + 589824 + 37748736 + 16777216 + 4096000;
  const size_t alexnet_biases = 64 + 192 + 384 + 256 + 256 + 4096 + 4096 + 1000;
  BOOST_TEST(conv_fc_weight_bytes(load_unprepared("alexnet")) == (alexnet_weights + alexnet_biases) * 4);
  BOOST_TEST(conv_fc_weight_bytes(load_prepared("alexnet")) == (alexnet_weights + alexnet_biases) * 4);
  // ResNet-18: conv1 64*3*7*7; layer1 4 * 64*64*9; layer2 128*64*9 + 3 * 128*128*9 + 128*64;
  // layer3 256*128*9 + 3 * 256*256*9 + 256*128; layer4 512*256*9 + 3 * 512*512*9 + 512*256;
  // fc 1000*512. Only fc has a bias until the batch norms (4800 channels in all) fold into the
  // convolutions, which gives each convolution a bias.
  const size_t resnet18_weights = 9408 + 4 * 36864 + (73728 + 3 * 147456 + 8192) + (294912 + 3 * 589824 + 32768) +
                                  (1179648 + 3 * 2359296 + 131072) + 512000;
  BOOST_TEST(conv_fc_weight_bytes(load_unprepared("resnet18")) == (resnet18_weights + 1000) * 4);
  BOOST_TEST(conv_fc_weight_bytes(load_prepared("resnet18")) == (resnet18_weights + 1000 + 4800) * 4);
}

// ---------------------------------------------------------------------------------------------
// Weights

BOOST_AUTO_TEST_CASE(same_seed_same_bytes_other_seed_other_bytes) {
  for (const model_facts& m : all_models) {
    // vgg16 is left out: three more copies of its 553 MB of weights would dominate the test's time
    // and memory, and it is built by the same code paths as alexnet (conv, relu, pool, fc).
    if (std::string(m.name) == "vgg16") continue;
    BOOST_TEST_CONTEXT(m.name) {
      const graph& a = load_unprepared(m.name, 7);
      result<graph> fresh = builtin_model_unprepared(m.name, 7);  // built again, not from the cache
      BOOST_TEST_REQUIRE(fresh.is_ok());
      const graph& b = fresh.value();
      const graph& c = load_unprepared(m.name, 8);
      BOOST_TEST_REQUIRE(a.layers.size() == b.layers.size());
      BOOST_TEST_REQUIRE(a.layers.size() == c.layers.size());
      size_t weighted = 0, identical = 0, differing = 0;
      for (size_t i = 0; i < a.layers.size(); ++i) {
        const layer& la = a.layers[i];
        const layer& lb = b.layers[i];
        const layer& lc = c.layers[i];
        if (!has_weights(la)) continue;
        ++weighted;
        BOOST_TEST_REQUIRE(la.weights.size() == lb.weights.size());
        BOOST_TEST_REQUIRE(la.weights.size() == lc.weights.size());
        BOOST_TEST_REQUIRE(la.bias.size() == lc.bias.size());
        const size_t wb = la.weights.size() * sizeof(float), bb = la.bias.size() * sizeof(float);
        const bool same = std::memcmp(la.weights.data(), lb.weights.data(), wb) == 0 &&
                          (bb == 0 || std::memcmp(la.bias.data(), lb.bias.data(), bb) == 0);
        const bool other = std::memcmp(la.weights.data(), lc.weights.data(), wb) != 0 &&
                           (bb == 0 || std::memcmp(la.bias.data(), lc.bias.data(), bb) != 0);
        identical += same;
        differing += other;
      }
      BOOST_TEST(weighted > 0u);
      BOOST_TEST(identical == weighted);
      BOOST_TEST(differing == weighted);
    }
  }
}

BOOST_AUTO_TEST_CASE(weights_depend_only_on_seed_and_layer_name) {
  // Same name, same shape and gain in two different models: the same floats.
  const graph& alexnet = load_unprepared("alexnet");
  const graph& vgg16 = load_unprepared("vgg16");
  const layer& a = layer_named(alexnet, "classifier.6");
  const layer& v = layer_named(vgg16, "classifier.6");
  BOOST_TEST_REQUIRE(a.weights.size() == v.weights.size());
  BOOST_TEST(std::memcmp(a.weights.data(), v.weights.data(), a.weights.size() * sizeof(float)) == 0);
  BOOST_TEST(std::memcmp(a.bias.data(), v.bias.data(), a.bias.size() * sizeof(float)) == 0);
  // Different names, same shape and gain: different floats.
  const graph& r = load_unprepared("resnet18");
  const layer& x = layer_named(r, "layer1.0.conv1");
  const layer& y = layer_named(r, "layer1.1.conv1");
  BOOST_TEST_REQUIRE(x.weights.size() == y.weights.size());
  BOOST_TEST(std::memcmp(x.weights.data(), y.weights.data(), x.weights.size() * sizeof(float)) != 0);
}

BOOST_AUTO_TEST_CASE(weight_ranges_follow_he_scaling) {
  const graph& g = load_unprepared("resnet18");
  // conv1 feeds bn1 -> relu: gain sqrt(2), fan_in 3*7*7.
  const double a1 = std::sqrt(2.0) * std::sqrt(3.0 / 147.0);
  // fc is the final linear layer: gain 1, fan_in 512.
  const double a2 = std::sqrt(3.0 / 512.0);
  for (const auto& [name, bound] : {std::pair<std::string, double>{"conv1", a1}, {"fc", a2}}) {
    const layer& l = layer_named(g, name);
    double lo = 0, hi = 0, sq = 0;
    for (float w : l.weights) {
      lo = std::min(lo, double(w));
      hi = std::max(hi, double(w));
      sq += double(w) * w;
    }
    const double rms = std::sqrt(sq / double(l.weights.size()));
    BOOST_TEST(lo >= -bound * (1 + 1e-6), name);
    BOOST_TEST(hi < bound * (1 + 1e-6), name);
    BOOST_TEST(hi > bound * 0.95, name);
    BOOST_TEST(std::fabs(rms / (bound / std::sqrt(3.0)) - 1) < 0.05, name << " rms " << rms);
  }
  // Batch norm statistics are non-trivial: gamma and var near 1, beta and mean near 0.
  const layer& bn = layer_named(g, "bn1");
  BOOST_TEST_REQUIRE(bn.weights.size() == 4u * 64);
  bool ok = true;
  for (int i = 0; i < 64; ++i) {
    const float* w = bn.weights.data();
    ok = ok && w[i] >= 0.8f && w[i] < 1.2f && w[64 + i] >= -0.1f && w[64 + i] < 0.1f && w[128 + i] >= -0.1f &&
         w[128 + i] < 0.1f && w[192 + i] >= 0.8f && w[192 + i] < 1.2f;
  }
  BOOST_TEST(ok);
  BOOST_TEST(bn.weights.data()[0] != 1.0f);
  BOOST_TEST(bn.epsilon == 1e-5f);
}

// The first weights of resnet18's conv1 for the default seed, computed once and pinned: the
// generator, the per-layer seeding and the He bound must give these bits on every machine.
BOOST_AUTO_TEST_CASE(resnet18_conv1_checksum) {
  BOOST_TEST(default_model_seed == 2021u);
  const graph& g = load_unprepared("resnet18", 2021);
  const layer& conv1 = layer_named(g, "conv1");
  BOOST_TEST_REQUIRE(conv1.weights.size() == 64u * 7 * 7 * 3);
  const uint32_t expected[] = {0x3b365d36, 0x3c29ccfc, 0x3cbf46be, 0x3dc0c3f9,
                               0xbd44d947, 0x3e393ebb, 0xbbd913b9, 0xbd7cc68d};
  for (size_t i = 0; i < 8; ++i)
    BOOST_TEST(bits_of(conv1.weights.data()[i]) == expected[i], "conv1 weight " << i);
  BOOST_TEST(bits_of(layer_named(g, "bn1").weights.data()[0]) == 0x3f5081c1u);
  BOOST_TEST(bits_of(layer_named(g, "fc").bias.data()[999]) == 0x3d2efc63u);
}

// ---------------------------------------------------------------------------------------------
// Numerics: activations keep unit scale; folding batch norms does not change the output.

namespace {

void check_unit_scale(const std::string& name) {
  const graph& g = load_unprepared(name);
  std::map<std::string, tensor> inputs;
  inputs.emplace("input", random_tensor(tensor_shape{1, 224, 224, 3}, 1234));
  const std::map<std::string, tensor> all = reference_run(g, inputs);
  BOOST_TEST_REQUIRE(all.size() == g.layers.size());
  double lowest = INFINITY, highest = 0;
  for (const layer& l : g.layers) {
    const tensor& t = all.at(l.name);
    const double rms = rms_of(t);
    BOOST_TEST((std::isfinite(rms) && rms >= 0.1 && rms <= 10.0), name << " layer " << l.name << ": rms " << rms);
    lowest = std::min(lowest, rms);
    highest = std::max(highest, rms);
  }
  BOOST_TEST_MESSAGE(name << ": activation rms in [" << lowest << ", " << highest << "]");

  // prepare_for_inference() folds the (non-trivial) batch norms and fuses the clamps: same logits.
  const graph& prepared = load_prepared(name);
  const std::map<std::string, tensor> folded = reference_run(prepared, inputs);
  const std::string output = g.layers[size_t(g.outputs[0])].name;
  BOOST_TEST_REQUIRE(folded.count(output) == 1u);
  const std::string mismatch = compare_relative(folded.at(output), all.at(output), 1e-4);
  BOOST_TEST(mismatch.empty(), name << ": prepared vs unprepared logits: " << mismatch);
}

}  // namespace

BOOST_AUTO_TEST_CASE(unit_scale_alexnet) { check_unit_scale("alexnet"); }
BOOST_AUTO_TEST_CASE(unit_scale_resnet18) { check_unit_scale("resnet18"); }
BOOST_AUTO_TEST_CASE(unit_scale_googlenet) { check_unit_scale("googlenet"); }
BOOST_AUTO_TEST_CASE(unit_scale_mobilenet_v2) { check_unit_scale("mobilenet_v2"); }

// VGG-16 takes ~15 s through the reference; the XNNPACK executor runs the prepared graph (every
// ReLU fused into its convolution, so each remaining tensor is a post-activation one).
BOOST_AUTO_TEST_CASE(unit_scale_vgg16_executor) {
  BOOST_TEST_REQUIRE(initialize_compute().is_ok());
  const graph& g = load_prepared("vgg16");
  executor_options every_tensor;
  every_tensor.fuse_residual_adds = false;
  auto exec = executor::create(g, {}, every_tensor);
  BOOST_TEST_REQUIRE(exec.is_ok(), (exec.is_ok() ? "" : exec.message()));
  const tensor input = random_tensor(tensor_shape{1, 224, 224, 3}, 1234);
  auto all = (*exec)->run_all({&input});
  BOOST_TEST_REQUIRE(all.is_ok(), (all.is_ok() ? "" : all.message()));
  BOOST_TEST(all->count("classifier.6") == 1u);
  for (const auto& [name, t] : *all) {
    const double rms = rms_of(t);
    BOOST_TEST((std::isfinite(rms) && rms >= 0.1 && rms <= 10.0), "vgg16 tensor " << name << ": rms " << rms);
  }
}
