// A trace of the emulated testbed over time (emulation, not a measurement): at each step's time
// some links change bandwidth or latency and some nodes change speed. The deployment applies a
// step before the first request that starts at or after its time (actors/deployment.hpp), so a
// run follows the trace while requests keep flowing. JSON (apps/config/*.trace.json):
//   {"steps": [{"at_ms": 0,    "uplink": "WiFi"},
//              {"at_ms": 4000, "uplink": "3G", "speeds": {"edge2": 0.25}},
//              {"at_ms": 9000, "links": {"device-edge": {"mbit_per_s": 18.88, "latency_ms": 5}}}]}
// Times are milliseconds since the deployment started: virtual milliseconds under the virtual
// clock, wall milliseconds under the wall clock. "uplink" names a testbed uplink (CAT1, 3G, 4G,
// WiFi); "links" sets role pairs (device-edge, edge-edge, edge-cloud, device-cloud) and applies after it;
// "speeds" sets node speeds by node name. What a step does not mention stays as it was.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "emulation/emulation.hpp"
#include "base/status.hpp"

namespace d3 {

struct trace_step {
  double at_ms = 0;
  std::optional<std::string> uplink;           // a testbed uplink name
  std::map<std::string, link_profile> links;   // role pair -> link (testbed::link_names)
  std::map<std::string, double> speeds;        // node name -> speed (> 0)

  // `links` with this step applied.
  testbed apply(testbed links) const;
  std::string describe() const;  // "at 4000 ms: uplink 3G, edge2 speed 0.25"
};

struct emulation_trace {
  std::vector<trace_step> steps;  // ascending at_ms

  // Index of the last step at or before `ms`; -1 before the first.
  int step_at(double ms) const;
};

// Errors name the step and the field (unknown uplink or link, negative or non-increasing times,
// non-positive speeds, unknown keys).
result<emulation_trace> parse_trace_json(const std::string& text);
result<emulation_trace> load_trace_file(const std::string& path);

}  // namespace d3
