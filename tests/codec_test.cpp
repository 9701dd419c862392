// The wire codecs (codec/tensor_codec.hpp): bit-exact round trips of every codec on maps like the
// ones that cross links (post-ReLU, dense, 8-bit images, special values), the sizes they promise,
// and decoders that refuse bytes that do not match the element count instead of writing past it.
// Also tensor bundles carrying encoded tensors (schema/bundle.hpp).
#define BOOST_TEST_MODULE codec_test
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "codec/tensor_codec.hpp"
#include "schema/bundle.hpp"

using namespace d3;

namespace {

const tensor_codec all_codecs[] = {tensor_codec::raw, tensor_codec::u8, tensor_codec::sparse, tensor_codec::zstd,
                                   tensor_codec::sparse_zstd};
const tensor_codec float_codecs[] = {tensor_codec::raw, tensor_codec::sparse, tensor_codec::zstd, tensor_codec::sparse_zstd};

// He-scaled normal values; with relu, about half are exact zeros (what follows a conv + ReLU).
std::vector<float> activations(size_t n, bool relu, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = relu ? std::max(0.0f, normal(rng)) : normal(rng);
  return v;
}

std::vector<float> pixels(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = float(rng() % 256);
  return v;
}

void check_round_trip(tensor_codec codec, const std::vector<float>& values) {
  auto encoded = encode_floats(codec, values.data(), values.size());
  BOOST_REQUIRE(encoded.has_value());
  std::vector<float> back(values.size() + 1, 42.0f);  // one sentinel past the end
  status s = decode_floats(codec, encoded->data(), encoded->size(), back.data(), values.size());
  BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());
  // (memcmp's pointers must not be null, even for 0 bytes: an empty vector's may be)
  BOOST_TEST((values.empty() || std::memcmp(back.data(), values.data(), values.size() * sizeof(float)) == 0));
  BOOST_TEST(back.back() == 42.0f);
  auto size = encoded_size(codec, values.data(), values.size());
  BOOST_REQUIRE(size.has_value());
  BOOST_TEST(*size == encoded->size());
}

}  // namespace

BOOST_AUTO_TEST_CASE(names_round_trip) {
  for (tensor_codec c : all_codecs) BOOST_TEST((parse_tensor_codec(to_string(c)) == c));
  BOOST_TEST(!parse_tensor_codec("lz4").has_value());
}

BOOST_AUTO_TEST_CASE(every_codec_is_bit_exact) {
  for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(9), size_t(1000), size_t(56 * 56 * 64)}) {
    for (bool relu : {false, true}) {
      const auto v = activations(n, relu, uint32_t(n));
      for (tensor_codec c : float_codecs) check_round_trip(c, v);
    }
    check_round_trip(tensor_codec::u8, pixels(n, 7));
    for (tensor_codec c : all_codecs) check_round_trip(c, pixels(n, 8));
  }
}

BOOST_AUTO_TEST_CASE(special_values_keep_their_bits) {
  const float nan_payload = [] {
    uint32_t b = 0x7fc12345u;
    float f;
    std::memcpy(&f, &b, sizeof f);
    return f;
  }();
  const std::vector<float> v = {0.0f, -0.0f, nan_payload, std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::denorm_min(),
                                1e-38f, 0.0f, 0.0f, -0.0f, 3.5f};
  for (tensor_codec c : float_codecs) check_round_trip(c, v);
  // All zeros and no zeros.
  for (tensor_codec c : float_codecs) {
    check_round_trip(c, std::vector<float>(1000, 0.0f));
    check_round_trip(c, std::vector<float>(1000, 1.5f));
  }
  // -0.0 is a value to the sparse codec: its bitmap bit is set.
  auto sparse = encode_floats(tensor_codec::sparse, v.data(), 2);
  BOOST_REQUIRE(sparse.has_value());
  BOOST_TEST(sparse->size() == 1 + 4);
}

BOOST_AUTO_TEST_CASE(u8_applies_only_to_8_bit_integers) {
  for (float bad : {-1.0f, 256.0f, 0.5f, 254.999f, -0.0f, std::numeric_limits<float>::quiet_NaN()}) {
    std::vector<float> v = {1.0f, 2.0f, bad};
    BOOST_TEST(!encode_floats(tensor_codec::u8, v.data(), v.size()).has_value(), "value " << bad);
    BOOST_TEST(!encoded_size(tensor_codec::u8, v.data(), v.size()).has_value());
  }
  const auto v = pixels(3 * 224 * 224, 3);
  auto encoded = encode_floats(tensor_codec::u8, v.data(), v.size());
  BOOST_REQUIRE(encoded.has_value());
  BOOST_TEST(encoded->size() == 150528u);  // a camera frame's bytes: 4x fewer than float32
}

BOOST_AUTO_TEST_CASE(sparse_halves_post_relu_maps) {
  const auto v = activations(64 * 56 * 56, true, 11);
  const size_t raw = v.size() * sizeof(float);
  const size_t sparse = *encoded_size(tensor_codec::sparse, v.data(), v.size());
  const size_t both = *encoded_size(tensor_codec::sparse_zstd, v.data(), v.size());
  BOOST_TEST_MESSAGE("post-ReLU 64x56x56: sparse " << double(raw) / double(sparse) << "x, zstd "
                     << double(raw) / double(*encoded_size(tensor_codec::zstd, v.data(), v.size())) << "x, sparse_zstd "
                     << double(raw) / double(both) << "x");
  BOOST_TEST(double(raw) / double(sparse) >= 1.8);  // half zeros: 4 bytes -> 2 + 1/8
  BOOST_TEST(both < sparse);                          // the values' exponent planes shrink too
}

BOOST_AUTO_TEST_CASE(decoders_refuse_bytes_that_do_not_match) {
  const auto v = activations(100, true, 5);
  std::vector<float> out(100);
  for (tensor_codec c : float_codecs) {
    auto encoded = *encode_floats(c, v.data(), v.size());
    // Wrong element counts (the sparse bitmap's padding hides counts within its last byte: 100
    // and 101 elements whose last is zero encode alike), truncated and extended bytes: errors
    // naming the codec.
    for (size_t elements : {size_t(91), size_t(109)}) {
      std::vector<float> big(109);
      status s = decode_floats(c, encoded.data(), encoded.size(), big.data(), elements);
      BOOST_TEST(!s.is_ok());
      BOOST_TEST(s.message().find(to_string(c)) != std::string::npos, s.message());
    }
    for (size_t cut : {size_t(0), encoded.size() / 2, encoded.size() - 1})
      BOOST_TEST(!decode_floats(c, encoded.data(), cut, out.data(), 100).is_ok(), to_string(c) << " cut at " << cut);
    encoded.push_back(0);
    BOOST_TEST(!decode_floats(c, encoded.data(), encoded.size(), out.data(), 100).is_ok());
  }
  // Sparse: a bitmap bit past the last element.
  std::vector<float> three = {1.0f, 0.0f, 2.0f};
  auto sparse = *encode_floats(tensor_codec::sparse, three.data(), 3);
  sparse[0] |= 0x80;
  sparse.insert(sparse.end(), 4, 0);
  BOOST_TEST(!decode_floats(tensor_codec::sparse, sparse.data(), sparse.size(), out.data(), 3).is_ok());
  // u8: one byte per element exactly.
  std::vector<uint8_t> bytes(5, 1);
  BOOST_TEST(!decode_floats(tensor_codec::u8, bytes.data(), bytes.size(), out.data(), 4).is_ok());
  BOOST_TEST(decode_floats(tensor_codec::u8, bytes.data(), bytes.size(), out.data(), 5).is_ok());
  BOOST_TEST(!decode_floats(tensor_codec(9), bytes.data(), bytes.size(), out.data(), 5).is_ok());
}

BOOST_AUTO_TEST_CASE(bundles_carry_encoded_tensors) {
  tensor relu(tensor_shape{1, 28, 28, 64});
  const auto a = activations(relu.elements(), true, 3);
  std::memcpy(relu.data(), a.data(), relu.bytes());
  tensor image(tensor_shape{1, 224, 224, 3});
  const auto p = pixels(image.elements(), 4);
  std::memcpy(image.data(), p.data(), image.bytes());
  tensor dense(tensor_shape{1, 7, 7, 16});
  const auto d = activations(dense.elements(), false, 6);
  std::memcpy(dense.data(), d.data(), dense.bytes());

  const auto plain = encode_bundle(3, 1, {{"relu", &relu}, {"image", &image}, {"dense", &dense}});
  // u8 on the dense tensor does not apply: it travels raw, and the bundle still decodes.
  const auto packed = encode_bundle(3, 1, {{"relu", &relu, tensor_codec::sparse}, {"image", &image, tensor_codec::u8},
                                           {"dense", &dense, tensor_codec::u8}});
  BOOST_TEST_MESSAGE("bundle bytes: plain " << plain.size() << ", encoded " << packed.size());
  BOOST_TEST(packed.size() < plain.size() - (image.bytes() - image.elements()) - relu.bytes() / 3);
  auto decoded = decode_bundle(packed.data(), packed.size());
  BOOST_REQUIRE_MESSAGE(decoded.is_ok(), decoded.message());
  BOOST_REQUIRE(decoded->tensors.size() == 3u);
  BOOST_TEST(bitwise_equal(decoded->tensors[0].value, relu));
  BOOST_TEST(bitwise_equal(decoded->tensors[1].value, image));
  BOOST_TEST(bitwise_equal(decoded->tensors[2].value, dense));
}
