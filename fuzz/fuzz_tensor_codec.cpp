// The wire codecs' decoders (codec/tensor_codec.hpp) on their own: byte 0 picks the codec, bytes
// 1-2 the element count (the receiver's shape, at most 65535 here), the rest is the encoded data.
#include <vector>

#include "codec/tensor_codec.hpp"
#include "fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const auto codec = static_cast<d3::tensor_codec>(data[0] % d3::tensor_codec_count);
  const size_t elements = size_t(data[1]) | size_t(data[2]) << 8;
  std::vector<float> out(elements);
  (void)d3::decode_floats(codec, data + 3, size - 3, out.data(), elements);
  return 0;
}
