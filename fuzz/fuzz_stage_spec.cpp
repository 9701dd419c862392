// Stage specs (schema/bundle.hpp): what a node receives to set up a stage.
#include "fuzz/fuzz_target.hpp"
#include "schema/bundle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)d3::decode_stage_spec(data, size);
  return 0;
}
