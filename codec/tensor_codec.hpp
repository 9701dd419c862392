// Lossless encodings of float32 tensor data for the wire. Every codec round-trips the exact bit
// patterns (NaN payloads, -0.0, denormals included): decode(encode(x)) is memcmp-equal to x.
//   raw     the float32 bytes as they are (little-endian).
//   u8      one byte per element; applies only when every element is an integer 0..255 stored as
//           the float of that integer (+0.0 for zero): 8-bit images entering a model's
//           `preprocess` layer. 4x smaller.
//   sparse  a bitmap with one bit per element (set: the bit pattern is not all zero, so -0.0 is
//           kept as a value), then the float32 of every set element in order. Post-ReLU maps
//           (about half exact zeros) shrink ~1.9x; costs one pass on each side.
//   zstd    the float32 bytes shuffled into four byte planes (all first bytes, all second bytes,
//           ...; the exponent bytes of similar values repeat), then zstd level 1 (libzstd).
//   sparse_zstd  sparse's bitmap, then its nonzero values as zstd encodes them (byte planes, level
//           1): post-ReLU values are positive with few exponents, so their planes shrink too.
// The element count is never in the encoded bytes: the receiver knows it from the tensor's
// shape, and decoders check the encoded bytes against it exactly (sizes, bitmap padding, the
// population count) before writing anything past `out`'s `elements` floats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "base/status.hpp"

namespace d3 {

enum class tensor_codec : uint8_t { raw = 0, u8 = 1, sparse = 2, zstd = 3, sparse_zstd = 4 };
constexpr int tensor_codec_count = 5;

const char* to_string(tensor_codec codec);
// "raw", "u8", "sparse", "zstd", "sparse_zstd"
std::optional<tensor_codec> parse_tensor_codec(const std::string& name);
inline std::ostream& operator<<(std::ostream& out, tensor_codec codec) { return out << to_string(codec); }

// Encodes `elements` floats with `codec`. nullopt when the codec does not apply (u8 on a value
// that is not an 8-bit integer) or cannot (zstd failing); callers then send raw.
std::optional<std::vector<uint8_t>> encode_floats(tensor_codec codec, const float* values, size_t elements);

// What can be checked of `size` encoded bytes against `elements` without decoding them (sizes,
// the bitmap's padding and population, zstd's declared content size): receivers check it before
// they allocate the decoded tensor, so a few bytes claiming a large shape cost no allocation.
// A stream that passes can still fail to decode (a corrupt zstd frame).
status check_encoded(tensor_codec codec, const uint8_t* bytes, size_t size, size_t elements);

// Decodes `size` bytes made by encode_floats(codec, ., elements) into out[0, elements).
// Errors name the codec and what does not match; `out` may then be partly written.
status decode_floats(tensor_codec codec, const uint8_t* bytes, size_t size, float* out, size_t elements);

// Encoded size without building the bytes where that is cheap (raw, u8, sparse); zstd encodes.
// nullopt when the codec does not apply. For profiles: ratio = raw bytes / this.
std::optional<size_t> encoded_size(tensor_codec codec, const float* values, size_t elements);

}  // namespace d3
