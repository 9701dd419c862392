// Testbed files (apps/config/testbed-*.json): node speeds, the links between roles, and named
// scenarios, each overriding some of those links (EMULATION: the runtime and the cost model apply
// these numbers; they are not measurements of real links or devices).
//   {"name": "...", "comment": "...",
//    "device_speed": 0.1, "edge_speed": 0.5, "cloud_speed": 4, "edge_nodes": 4,
//    "links": {"device-edge": {"mbit_per_s": 100, "latency_ms": 2},
//              "edge-edge": {"mbit_per_s": 1000, "latency_ms": 0.2},
//              "edge-cloud": {"mbit_per_s": 18.88, "latency_ms": 20}},
//    "scenarios": {"CAT1": {"edge-cloud": {"mbit_per_s": 0.13, "latency_ms": 20}}, ...}}
// Role pairs: device-edge, edge-edge, edge-cloud and device-cloud (left out: device-edge then
// edge-cloud in series). Keys left out keep the built-in D3 setting's values; scenarios keep the
// file's order. A file without scenarios has one, named "base".
#pragma once

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "emulation/emulation.hpp"
#include "base/status.hpp"

namespace d3 {

struct testbed_scenario {
  std::string name;
  std::map<std::string, link_profile> links;  // role pair -> link
};

struct testbed_file {
  std::string name;
  std::string source = "built-in";  // the file it was read from
  testbed base;                     // speeds and links before any scenario
  int edge_nodes = 4;
  std::vector<testbed_scenario> scenarios;  // at least one

  // D3's own setting (apps/config/testbed-d3.json): device 0.1, four edges 0.5, cloud 4; the
  // edges on the device's wireless LAN (100 Mbit/s 2 ms), edge<->edge 1 Gbit/s 0.2 ms, the cloud
  // over the mobile Internet: scenarios CAT1, 3G, 4G, WiFi set edge<->cloud to 0.13, 1.1, 5.85,
  // 18.88 Mbit/s with 20 ms; device<->cloud is the LAN, then that link.
  static testbed_file d3_setting();
  // The first evaluation testbed, "edges behind the mobile uplink"
  // (apps/config/testbed-mobile-edge.json): scenarios CAT1..WiFi set device<->edge to the mobile
  // uplink rates with 5 ms; edge<->cloud 100 Mbit/s 20 ms; device<->cloud the uplink, then that.
  static testbed_file mobile_edge();

  const testbed_scenario* scenario(const std::string& name) const;  // null when unknown
  std::vector<std::string> scenario_names() const;
  // The base testbed with the scenario's links; its `uplink` label is the scenario's name.
  testbed with(const testbed_scenario& s) const;
  // What scenario `name` sets: "edge-cloud 0.13 Mbit/s 20 ms" ("the base links" when nothing).
  std::string describe_scenario(const std::string& name) const;
};

// "18.88 Mbit/s 5 ms".
std::string describe(const link_profile& link);

// Errors name the file, the key and what was expected.
result<testbed_file> parse_testbed_json(const std::string& text, const std::string& source);
result<testbed_file> load_testbed_file(const std::string& path);

// A link object {"mbit_per_s": B > 0, "latency_ms": L >= 0}, both required; errors name `where`.
// The one parser of link objects: testbed files, cluster files and traces use it. `Json` is
// nlohmann::json or nlohmann::ordered_json.
template <class Json>
result<link_profile> parse_link_json(const Json& j, const std::string& where) {
  if (!j.is_object()) return status::error(where + " must be an object {\"mbit_per_s\": B, \"latency_ms\": L}");
  link_profile p;
  bool has_bandwidth = false, has_latency = false;
  for (const auto& [key, value] : j.items()) {
    if (!value.is_number()) return status::error(where + "." + key + " must be a number");
    if (key == "mbit_per_s") {
      p.bandwidth_mbit_per_s = value.template get<double>();
      has_bandwidth = true;
    } else if (key == "latency_ms") {
      p.latency_ms = value.template get<double>();
      has_latency = true;
    } else {
      return status::error(where + ": unknown key '" + key + "' (mbit_per_s, latency_ms)");
    }
  }
  if (!has_bandwidth || !has_latency) return status::error(where + " needs both mbit_per_s and latency_ms");
  if (!(p.bandwidth_mbit_per_s > 0) || !std::isfinite(p.bandwidth_mbit_per_s))
    return status::error(where + ".mbit_per_s must be a positive number");
  if (!(p.latency_ms >= 0) || !std::isfinite(p.latency_ms))
    return status::error(where + ".latency_ms must be a number >= 0");
  return p;
}

}  // namespace d3
