// Emulation traces (emulation/emulation_trace.hpp, JSON).
#include "emulation/emulation_trace.hpp"
#include "fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)d3::parse_trace_json(fuzz_text(data, size));
  return 0;
}
