// Tensor bundles (schema/bundle.hpp): what a stage receives from the network for every request.
#include "fuzz/fuzz_target.hpp"
#include "schema/bundle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)d3::decode_bundle(data, size);
  return 0;
}
