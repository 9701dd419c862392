// Image files (imaging/image.hpp): PNG and JPEG bytes as d3-run --image and d3-infer --image read them.
#include "fuzz/fuzz_target.hpp"
#include "imaging/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)d3::decode_image(data, size, "fuzz input");
  return 0;
}
