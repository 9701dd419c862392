// d3 model files (schema/model_file.hpp): the whole load path, validation and preparation.
#include "fuzz/fuzz_target.hpp"
#include "schema/model_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)d3::parse_model(data, size, "fuzz input");
  return 0;
}
