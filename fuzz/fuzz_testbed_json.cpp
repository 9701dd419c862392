// Testbed files (emulation/testbed_file.hpp, JSON).
#include "emulation/testbed_file.hpp"
#include "fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)d3::parse_testbed_json(fuzz_text(data, size), "fuzz input");
  return 0;
}
