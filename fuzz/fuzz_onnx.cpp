// ONNX files (onnx/onnx_import.hpp): protobuf parse, import and preparation.
#include "fuzz/fuzz_target.hpp"
#include "onnx/onnx_import.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)d3::import_onnx_bytes(data, size, "fuzz input");
  return 0;
}
