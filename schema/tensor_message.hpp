// Tensors as Cap'n Proto messages (schema/tensor.capnp): the wire format between nodes.
// Encoding copies the floats once into the message; decoding validates sizes before copying out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "kernels/tensor.hpp"

namespace d3 {

struct named_tensor {
  std::string name;
  tensor value;
};

// A flat, 8-byte-aligned Cap'n Proto message in a byte vector (what CAF messages carry).
// Empty when the tensor cannot be one message (data of 512 MiB or more).
std::vector<uint8_t> encode_tensor(const std::string& name, const tensor& value);
result<named_tensor> decode_tensor(const uint8_t* bytes, size_t size);

}  // namespace d3
