// Topology logs (topology/topology_log.hpp, JSON Lines) as d3-topology reads and renders them.
#include <sstream>

#include "fuzz/fuzz_target.hpp"
#include "topology/topology_log.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream in(fuzz_text(data, size));
  auto events = d3::read_topology_log(in, "fuzz input");
  if (!events) return 0;
  (void)d3::render_topology_tree(*events);
  (void)d3::render_topology_dot(d3::as_deployed(*events));
  return 0;
}
