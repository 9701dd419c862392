#include "schema/tensor_message.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>
#include <exception>

#include "codec/tensor_codec.hpp"
#include "schema/capnp_reading.hpp"
#include "schema/tensor.capnp.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "tensor messages carry little-endian float32; a big-endian host would need byte swaps");

namespace d3 {

namespace {

constexpr size_t word_bytes = sizeof(capnp::word);
// A Cap'n Proto Data (List(UInt8)) holds at most 2^29 - 1 bytes.
constexpr size_t max_data_bytes = (size_t(1) << 29) - 1;

size_t words_for_bytes(size_t bytes) { return (bytes + word_bytes - 1) / word_bytes; }

void fill(schema::Tensor::Builder t, const std::string& name, const tensor& value) {
  t.setName(capnp::Text::Reader(name.c_str(), name.size()));
  const tensor_shape& s = value.shape();
  t.setN(s.n);
  t.setH(s.h);
  t.setW(s.w);
  t.setC(s.c);
  capnp::Data::Builder data = t.initData(static_cast<capnp::uint>(value.bytes()));
  if (value.bytes() != 0) std::memcpy(data.begin(), value.data(), value.bytes());
}

// The portable path: a malloc'd builder, flattened, then copied into the vector.
std::vector<uint8_t> encode_with_copy(const std::string& name, const tensor& value) {
  capnp::MallocMessageBuilder builder(
      static_cast<capnp::uint>(words_for_bytes(value.bytes()) + words_for_bytes(name.size() + 1) + 16));
  fill(builder.initRoot<schema::Tensor>(), name, value);
  kj::Array<capnp::word> flat = capnp::messageToFlatArray(builder);
  auto bytes = flat.asBytes();
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

std::string text_of(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

}  // namespace

std::vector<uint8_t> encode_tensor(const std::string& name, const tensor& value) {
  if (value.bytes() > max_data_bytes || name.size() > max_data_bytes) return {};
  try {
    // Build the message directly inside the returned vector, so the floats are copied exactly once:
    // [segment table: 1 word][root pointer][Tensor struct][name text][data]. The segment size is
    // known in advance; FlatMessageBuilder::requireFilled() verifies the arithmetic.
    constexpr size_t struct_words =
        schema::Tensor::_capnpPrivate::dataWordSize + schema::Tensor::_capnpPrivate::pointerCount;
    const size_t segment_words = 1 + struct_words + words_for_bytes(name.size() + 1) +
                                 words_for_bytes(value.bytes());
    std::vector<uint8_t> out((1 + segment_words) * word_bytes);  // zero-filled, as the builder needs
    if (reinterpret_cast<uintptr_t>(out.data()) % alignof(capnp::word) == 0) {
      bool built = false;
      try {
        auto* words = reinterpret_cast<capnp::word*>(out.data());
        capnp::FlatMessageBuilder builder(kj::arrayPtr(words + 1, segment_words));
        fill(builder.initRoot<schema::Tensor>(), name, value);
        builder.requireFilled();
        built = true;
      } catch (const kj::Exception&) {
      }
      if (built) {
        const uint32_t table[2] = {0u, static_cast<uint32_t>(segment_words)};  // 1 segment
        std::memcpy(out.data(), table, sizeof table);
        return out;
      }
    }
    return encode_with_copy(name, value);
  } catch (const kj::Exception&) {
    return {};
  } catch (const std::exception&) {
    return {};
  }
}

// Bounds one dimension so the element count cannot overflow before it is checked against the data.
constexpr int max_tensor_dimension = 1 << 22;

result<named_tensor> read_tensor(schema::Tensor::Reader root, const std::string& where) {
  named_tensor out;
  out.name = text_of(root.getName());
  const int dims[4] = {root.getN(), root.getH(), root.getW(), root.getC()};
  capnp::Data::Reader data = root.getData();
  const std::string what = where + "tensor '" + out.name + "': ";
  const auto shape_text = [&] {
    return std::to_string(dims[0]) + "x" + std::to_string(dims[3]) + "x" + std::to_string(dims[1]) + "x" +
           std::to_string(dims[2]);
  };
  if (root.getCodec() >= tensor_codec_count)
    return status::error(what + "codec " + std::to_string(root.getCodec()) + " is unknown");
  const auto codec = static_cast<tensor_codec>(root.getCodec());
  // Decoded tensors are bounded like raw ones (a message's data), whatever their encoded size.
  size_t elements = 1;
  for (int d : dims) {
    if (d <= 0 || d > max_tensor_dimension)
      return status::error(what + "shape " + shape_text() + " has a dimension out of range");
    elements *= size_t(d);
    if (elements > max_data_bytes / sizeof(float))
      return status::error(what + "shape " + shape_text() + " exceeds " + std::to_string(max_data_bytes) +
                           " bytes of float32");
  }
  tensor_shape shape{dims[0], dims[1], dims[2], dims[3]};
  if (codec == tensor_codec::raw && elements * sizeof(float) != data.size())
    return status::error(what + "shape " + shape.to_string() + " does not match its " + std::to_string(data.size()) +
                         " data bytes (float32 NHWC expected)");
  // Before the allocation: a few encoded bytes must not make the receiver allocate a large shape
  // they cannot fill (measured: the bundle fuzzer's 1 KB inputs held 900 MB).
  if (status fits = check_encoded(codec, data.begin(), data.size(), elements); !fits)
    return status::error(what + "shape " + shape.to_string() + ": " + fits.message());
  out.value = tensor(shape);
  status decoded = decode_floats(codec, data.begin(), data.size(), out.value.data(), elements);
  if (!decoded) return status::error(what + "shape " + shape.to_string() + ": " + decoded.message());
  return out;
}

result<named_tensor> decode_tensor(const uint8_t* bytes, size_t size) {
  return with_reader<schema::Tensor>(bytes, size, "tensor message",
                                     [](schema::Tensor::Reader root) { return read_tensor(root, "tensor message: "); });
}

}  // namespace d3
