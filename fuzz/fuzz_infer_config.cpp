// d3-infer's inference configs (apps/infer_options.hpp, JSON).
#include "apps/infer_options.hpp"
#include "fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  d3::infer_options o;
  (void)d3::parse_infer_config_json(fuzz_text(data, size), "configs/fuzz.infer.json", o);
  return 0;
}
