// Cluster files (emulation/cluster_file.hpp, JSON), with the testbed they derive.
#include "emulation/cluster_file.hpp"
#include "fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)d3::parse_cluster_json(fuzz_text(data, size), "fuzz input");
  return 0;
}
