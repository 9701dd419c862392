// Layer shipments (schema/bundle.hpp): the layers and weights a node receives to cache, with the
// node's default layer limit.
#include "fuzz/fuzz_target.hpp"
#include "schema/bundle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)d3::decode_shipment(data, size, 4096);
  return 0;
}
