#define BOOST_TEST_MODULE tensor
#include <boost/test/unit_test.hpp>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "codec/tensor_codec.hpp"
#include "kernels/block_pool.hpp"
#include "kernels/tensor.hpp"
#include "schema/tensor.capnp.h"
#include "schema/tensor_message.hpp"

using namespace d3;

namespace {

// Deterministic, distinct values (including negative zero and a denormal) without <random>.
tensor make_tensor(tensor_shape shape, uint32_t seed) {
  tensor t(shape);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < t.elements(); ++i) {
    x = x * 1664525u + 1013904223u;
    t.data()[i] = float(int32_t(x >> 8) - (1 << 23)) / float(1 << 20);
  }
  if (t.elements() > 2) {
    t.data()[0] = -0.0f;
    t.data()[1] = 1e-40f;
  }
  return t;
}

}  // namespace

BOOST_AUTO_TEST_CASE(allocation_is_zeroed_and_aligned) {
  tensor t(tensor_shape{2, 3, 5, 7});
  BOOST_TEST(t.elements() == 2u * 3 * 5 * 7);
  BOOST_TEST(t.bytes() == t.elements() * sizeof(float));
  BOOST_TEST(!t.empty());
  BOOST_TEST(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0u);
  for (size_t i = 0; i < t.elements(); ++i) BOOST_TEST(t.data()[i] == 0.0f);
  BOOST_TEST(tensor().empty());
  const tensor_shape nhwc{1, 64, 56, 3};
  BOOST_TEST(nhwc.to_string() == "1x3x64x56");  // printed in NCHW order
}

// The pool hands a freed block of the same size class back (no page faults on reuse), zeroed
// again by tensor's constructor, and never keeps more than its capacity.
BOOST_AUTO_TEST_CASE(large_buffers_are_recycled_zeroed_and_capped) {
  block_pool& pool = block_pool::instance();
  const tensor_shape big{1, 56, 56, 64};  // 802,816 bytes: pooled
  const float* first = nullptr;
  {
    tensor t = make_tensor(big, 7);
    first = t.data();
  }
  const size_t hits = pool.hits();
  tensor again(big);
  BOOST_TEST(pool.hits() == hits + 1);
  BOOST_TEST(again.data() == first);
  for (size_t i = 0; i < again.elements(); ++i) BOOST_REQUIRE(again.data()[i] == 0.0f);
  BOOST_TEST(reinterpret_cast<uintptr_t>(again.data()) % 64 == 0);

  // A different size class is not served from that block.
  { tensor other(tensor_shape{1, 57, 56, 64}); BOOST_TEST(other.data() != again.data()); }

  // Small tensors bypass the pool.
  const size_t acquisitions = pool.pooled_acquisitions();
  { tensor small(tensor_shape{1, 4, 4, 4}); }
  BOOST_TEST(pool.pooled_acquisitions() == acquisitions);

  // Capacity: lowering it frees what is cached beyond it; a release beyond it frees the block.
  pool.set_capacity(0);
  BOOST_TEST(pool.cached_bytes() == 0u);
  { tensor dropped(big); }
  BOOST_TEST(pool.cached_bytes() == 0u);
  pool.set_capacity(size_t(256) << 20);
  { tensor kept(big); }
  BOOST_TEST(pool.cached_bytes() == block_pool::size_class(big.bytes() + 64));
  BOOST_TEST(block_pool::size_class(100000) == 102400u);
  BOOST_TEST(block_pool::size_class(3u << 20) == size_t(4) << 20);
}

BOOST_AUTO_TEST_CASE(copy_is_deep_and_bitwise_equal) {
  tensor a = make_tensor({1, 3, 4, 5}, 1);
  tensor b = a;
  BOOST_TEST(b.data() != a.data());
  BOOST_TEST(bitwise_equal(a, b));
  b.data()[7] += 1.0f;
  BOOST_TEST(!bitwise_equal(a, b));
  tensor c;
  c = a;
  BOOST_TEST(bitwise_equal(a, c));
  tensor moved = std::move(c);
  BOOST_TEST(bitwise_equal(a, moved));
}

BOOST_AUTO_TEST_CASE(bitwise_equal_distinguishes_shape_and_bits) {
  tensor a = make_tensor({1, 2, 3, 4}, 2);
  tensor reshaped(tensor_shape{1, 3, 2, 4});
  std::memcpy(reshaped.data(), a.data(), a.bytes());
  BOOST_TEST(!bitwise_equal(a, reshaped));  // same bytes, different shape

  tensor z1(tensor_shape{1, 1, 1, 2}), z2(tensor_shape{1, 1, 1, 2});
  z2.data()[1] = -0.0f;  // == 0.0f numerically, different bits
  BOOST_TEST(z1.data()[1] == z2.data()[1]);
  BOOST_TEST(!bitwise_equal(z1, z2));

  tensor n1(tensor_shape{1, 1, 1, 1}), n2(tensor_shape{1, 1, 1, 1});
  n1.data()[0] = n2.data()[0] = std::nanf("");
  BOOST_TEST(bitwise_equal(n1, n2));  // NaN != NaN, but the bits agree
}

BOOST_AUTO_TEST_CASE(nchw_nhwc_round_trip_on_odd_shapes) {
  for (tensor_shape s : {tensor_shape{1, 1, 1, 1}, tensor_shape{1, 3, 5, 7}, tensor_shape{2, 5, 3, 3},
                         tensor_shape{3, 1, 7, 2}, tensor_shape{1, 13, 1, 11}}) {
    BOOST_TEST_CONTEXT("shape " << s.to_string()) {
      std::vector<float> nchw(s.elements());
      for (size_t i = 0; i < nchw.size(); ++i) nchw[i] = float(i);
      std::vector<float> nhwc(s.elements(), -1.0f), back(s.elements(), -1.0f);
      nchw_to_nhwc(nchw.data(), s, nhwc.data());
      // Spot-check the index mapping: element (n, c, h, w) lands at ((n*H + h)*W + w)*C + c.
      for (int n = 0; n < s.n; ++n)
        for (int c = 0; c < s.c; ++c)
          for (int h = 0; h < s.h; ++h)
            for (int w = 0; w < s.w; ++w) {
              size_t from = ((size_t(n) * s.c + c) * s.h + h) * s.w + w;
              size_t to = ((size_t(n) * s.h + h) * s.w + w) * s.c + c;
              if (nhwc[to] != nchw[from]) BOOST_ERROR("nhwc[" << to << "] != nchw[" << from << "]");
            }
      nhwc_to_nchw(nhwc.data(), s, back.data());
      BOOST_TEST(std::memcmp(back.data(), nchw.data(), nchw.size() * sizeof(float)) == 0);
    }
  }
}

BOOST_AUTO_TEST_CASE(encode_decode_round_trip_is_exact) {
  for (tensor_shape s : {tensor_shape{1, 1, 1, 1}, tensor_shape{1, 7, 5, 3}, tensor_shape{2, 1, 1, 1000},
                         tensor_shape{1, 56, 56, 64}}) {
    for (std::string name : {std::string(""), std::string("x"), std::string("layer1.0.conv1/output_0")}) {
      BOOST_TEST_CONTEXT("shape " << s.to_string() << " name '" << name << "'") {
        tensor t = make_tensor(s, uint32_t(s.elements()));
        std::vector<uint8_t> bytes = encode_tensor(name, t);
        BOOST_TEST_REQUIRE(!bytes.empty());
        BOOST_TEST(bytes.size() % 8 == 0u);
        BOOST_TEST(bytes.size() < t.bytes() + name.size() + 72);  // one segment, little overhead
        auto decoded = decode_tensor(bytes.data(), bytes.size());
        BOOST_TEST_REQUIRE(decoded.is_ok(), (decoded.is_ok() ? std::string() : decoded.message()));
        BOOST_TEST(decoded->name == name);
        BOOST_TEST((decoded->value.shape() == s));
        BOOST_TEST(bitwise_equal(decoded->value, t));
        BOOST_TEST(std::memcmp(decoded->value.data(), t.data(), t.bytes()) == 0);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(encoding_is_a_standard_single_segment_message) {
  tensor t = make_tensor({1, 3, 3, 5}, 9);
  std::vector<uint8_t> bytes = encode_tensor("t", t);
  BOOST_TEST_REQUIRE(bytes.size() >= 8u);
  uint32_t table[2];
  std::memcpy(table, bytes.data(), sizeof table);
  BOOST_TEST(table[0] == 0u);  // one segment
  BOOST_TEST(size_t(table[1]) * 8 + 8 == bytes.size());

  // Byte-identical to what the stock builder + messageToFlatArray produce.
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<d3::schema::Tensor>();
  root.setName("t");
  root.setN(1);
  root.setH(3);
  root.setW(3);
  root.setC(5);
  auto data = root.initData(capnp::uint(t.bytes()));
  std::memcpy(data.begin(), t.data(), t.bytes());
  auto flat = capnp::messageToFlatArray(builder);
  auto expected = flat.asBytes();
  BOOST_TEST_REQUIRE(expected.size() == bytes.size());
  BOOST_TEST(std::memcmp(expected.begin(), bytes.data(), bytes.size()) == 0);
}

BOOST_AUTO_TEST_CASE(decode_accepts_unaligned_input) {
  tensor t = make_tensor({1, 4, 3, 2}, 3);
  std::vector<uint8_t> bytes = encode_tensor("unaligned", t);
  std::vector<uint8_t> shifted(bytes.size() + 3);
  std::memcpy(shifted.data() + 3, bytes.data(), bytes.size());
  auto decoded = decode_tensor(shifted.data() + 3, bytes.size());
  BOOST_TEST_REQUIRE(decoded.is_ok(), (decoded.is_ok() ? std::string() : decoded.message()));
  BOOST_TEST(bitwise_equal(decoded->value, t));
  BOOST_TEST(decoded->name == "unaligned");
}

BOOST_AUTO_TEST_CASE(decode_rejects_truncated_and_garbage_bytes) {
  tensor t = make_tensor({1, 5, 4, 3}, 4);
  std::vector<uint8_t> bytes = encode_tensor("victim", t);
  BOOST_TEST_REQUIRE(bytes.size() > 64u);

  BOOST_TEST(!decode_tensor(nullptr, 0).is_ok());
  BOOST_TEST(!decode_tensor(bytes.data(), 0).is_ok());

  // Every truncation point: never OK, never a crash.
  for (size_t cut = 1; cut < bytes.size(); ++cut) {
    auto r = decode_tensor(bytes.data(), cut);
    if (r.is_ok()) BOOST_ERROR("truncation at " << cut << " of " << bytes.size() << " decoded");
    else if (r.message().empty()) BOOST_ERROR("truncation at " << cut << ": empty error message");
  }
  {
    auto r = decode_tensor(bytes.data(), bytes.size() - 8);
    BOOST_TEST_REQUIRE(!r.is_ok());
    BOOST_TEST(r.message().find("malformed") != std::string::npos, r.message());
  }
  // Extra words after the message.
  {
    std::vector<uint8_t> longer = bytes;
    longer.resize(bytes.size() + 16, 0);
    auto r = decode_tensor(longer.data(), longer.size());
    BOOST_TEST_REQUIRE(!r.is_ok());
    BOOST_TEST(r.message().find("trailing") != std::string::npos, r.message());
  }
  // Random garbage of many sizes.
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (size_t size = 8; size <= 512; size += 8) {
    std::vector<uint8_t> garbage(size);
    for (auto& b : garbage) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      b = uint8_t(x);
    }
    auto r = decode_tensor(garbage.data(), garbage.size());
    BOOST_TEST(!r.is_ok());
  }
  // Random bit flips inside a valid message: any outcome but a crash or an over-read.
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<uint8_t> corrupt = bytes;
    for (int k = 0; k < 1 + trial % 3; ++k) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      corrupt[x % corrupt.size()] ^= uint8_t(1u << ((x >> 32) % 8));
    }
    auto r = decode_tensor(corrupt.data(), corrupt.size());
    // A decoded tensor can never carry more floats than the message has bytes.
    if (r.is_ok() && r->value.bytes() + 16 > corrupt.size())
      BOOST_ERROR("trial " << trial << ": decoded " << r->value.bytes() << " bytes from a "
                           << corrupt.size() << "-byte message");
  }
}

BOOST_AUTO_TEST_CASE(decode_rejects_inconsistent_shapes) {
  auto build = [](int n, int h, int w, int c, size_t data_bytes) {
    capnp::MallocMessageBuilder builder;
    auto root = builder.initRoot<d3::schema::Tensor>();
    root.setName("bad");
    root.setN(n);
    root.setH(h);
    root.setW(w);
    root.setC(c);
    root.initData(capnp::uint(data_bytes));
    auto flat = capnp::messageToFlatArray(builder);
    auto b = flat.asBytes();
    return std::vector<uint8_t>(b.begin(), b.end());
  };
  auto ok = build(1, 2, 3, 4, 96);
  BOOST_TEST(decode_tensor(ok.data(), ok.size()).is_ok());
  for (auto bad : {build(1, 2, 3, 4, 92), build(1, 2, 3, 4, 100), build(0, 2, 3, 4, 0), build(1, -2, 3, 4, 96),
                   build(1 << 30, 1 << 30, 1 << 30, 1 << 30, 96), build(65536, 65536, 1, 1, 0)}) {
    auto r = decode_tensor(bad.data(), bad.size());
    BOOST_TEST_REQUIRE(!r.is_ok());
    BOOST_TEST(r.message().find("'bad'") != std::string::npos, r.message());
  }
}

// A few encoded bytes claiming a large shape are refused before the tensor is allocated (no pooled
// acquisition): the receiver's memory is bounded by what the bytes can fill, not by the shape.
BOOST_AUTO_TEST_CASE(encoded_data_too_short_for_its_shape_allocates_nothing) {
  auto build = [](uint8_t codec, const std::vector<uint8_t>& data) {
    capnp::MallocMessageBuilder builder;
    auto root = builder.initRoot<d3::schema::Tensor>();
    root.setName("claims_400_mb");
    root.setN(1);
    root.setH(1000);
    root.setW(1000);
    root.setC(100);
    root.setCodec(codec);
    root.setData(kj::arrayPtr(data.data(), data.size()));
    auto flat = capnp::messageToFlatArray(builder);
    auto b = flat.asBytes();
    return std::vector<uint8_t>(b.begin(), b.end());
  };
  // A real zstd frame of 16 floats (it declares 64 bytes, not the shape's 400 MB).
  const float sixteen[16] = {1.0f};
  auto zstd16 = d3::encode_floats(d3::tensor_codec::zstd, sixteen, 16);
  BOOST_REQUIRE(zstd16.has_value());
  const size_t before = block_pool::instance().pooled_acquisitions();
  for (d3::tensor_codec codec : {d3::tensor_codec::u8, d3::tensor_codec::sparse, d3::tensor_codec::zstd,
                                 d3::tensor_codec::sparse_zstd}) {
    for (const auto& data : {std::vector<uint8_t>(16, 0xff), *zstd16}) {
      auto bytes = build(uint8_t(codec), data);
      auto r = decode_tensor(bytes.data(), bytes.size());
      BOOST_TEST_REQUIRE(!r.is_ok());
      BOOST_TEST(r.message().find("claims_400_mb") != std::string::npos, r.message());
      BOOST_TEST(r.message().find(d3::to_string(codec)) != std::string::npos, r.message());
    }
  }
  BOOST_TEST(block_pool::instance().pooled_acquisitions() == before);
}
