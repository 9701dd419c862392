// Cluster files (apps/config/cluster.json): the nodes of a deployment and, optionally, the
// emulated testbed they run under (EMULATION: links applied by d3, not measured).
//   {"comment": "...",
//    "testbed": {"uplink": "WiFi", "links": {"device-edge": {"mbit_per_s": B, "latency_ms": L}, ...}},
//    "nodes": [{"name": "device", "role": "device", "host": "127.0.0.1", "port": 4301,
//               "config": "apps/config/device.ini"}, ...],
//    "tls": {"dir": "certs", "name": "app"}}
// "tls" is the app's TLS identity: {"dir": D, "name": N} for the files scripts/make-certs.sh
// writes (D/ca.pem, D/N.pem, D/N.key; name defaults to "app"), or {"ca": F, "certificate": F,
// "key": F, "passphrase": P}, or false (plaintext, with a warning). Paths are relative to the
// working directory, like the nodes' INI files.
// A node's host defaults to 127.0.0.1; its role to "edge" for names starting with "edge", else
// its name. "config" (the node's INI file) is for the scripts that start the nodes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "base/tls_settings.hpp"
#include "emulation/emulation.hpp"

namespace d3 {

struct cluster_member {
  std::string name, role, host = "127.0.0.1", config;
  uint16_t port = 0;
};

struct cluster_file {
  std::string source;  // the file it was read from
  std::vector<cluster_member> nodes;  // at least one, names unique
  bool has_testbed = false;
  std::string uplink = "WiFi";                // testbed.uplink
  std::map<std::string, link_profile> links;  // testbed.links: role pair -> link
  bool has_tls = false;                       // "tls" given
  tls_settings tls;

  // The evaluation testbed with uplink `uplink` (empty: this file's) and this file's links.
  // Errors name the uplink or the role pair.
  result<testbed> emulated_testbed(const std::string& uplink = "") const;
  std::map<std::string, std::string> roles() const;  // node name -> role
};

// Errors name the source, the key and what was expected.
result<cluster_file> parse_cluster_json(const std::string& text, const std::string& source);
result<cluster_file> load_cluster_file(const std::string& path);

}  // namespace d3
