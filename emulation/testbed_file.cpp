#include "emulation/testbed_file.hpp"

#include "base/text_file.hpp"

#include <nlohmann/json.hpp>

#include <sstream>

namespace d3 {

using ordered_json = nlohmann::ordered_json;

namespace {

// {"pair": link, ...} into `out`, each pair checked against the testbed's role pairs.
status parse_links(const ordered_json& j, const std::string& where, std::map<std::string, link_profile>& out) {
  if (!j.is_object()) return status::error(where + " must be an object of ROLE-PAIR: link");
  for (const auto& [pair, value] : j.items()) {
    testbed probe;
    auto p = parse_link_json(value, where + "." + pair);
    if (!p) return p.error();
    if (auto s = probe.set_link(pair, p.value()); !s) return status::error(where + ": " + s.message());
    out[pair] = p.value();
  }
  return status::ok();
}

// The two built-in testbeds differ in which link the mobile rates (DADS Table I: CAT1, 3G, 4G,
// WiFi) are on, and in what the other links are.
testbed_file with_mobile_scenarios(std::string name, link_profile device_edge, link_profile edge_cloud,
                                   const std::string& mobile_pair, double mobile_latency_ms) {
  testbed_file f;
  f.name = std::move(name);
  f.base.device_edge = device_edge;
  f.base.edge_edge = {1000.0, 0.2};
  f.base.edge_cloud = edge_cloud;
  f.base.uplink = "base";
  for (const auto& [scenario, mbit_per_s] : {std::pair<const char*, double>{"CAT1", 0.13}, {"3G", 1.1}, {"4G", 5.85},
                                             {"WiFi", 18.88}})
    f.scenarios.push_back({scenario, {{mobile_pair, link_profile{mbit_per_s, mobile_latency_ms}}}});
  return f;
}

}  // namespace

testbed_file testbed_file::d3_setting() {
  return with_mobile_scenarios("D3's setting: edges on the device's LAN, the cloud over the mobile Internet",
                               {100.0, 2.0}, {18.88, 20.0}, "edge-cloud", 20.0);
}

testbed_file testbed_file::mobile_edge() {
  return with_mobile_scenarios("edges behind the mobile uplink (the first evaluation testbed)", {18.88, 5.0},
                               {100.0, 20.0}, "device-edge", 5.0);
}

const testbed_scenario* testbed_file::scenario(const std::string& wanted) const {
  for (const testbed_scenario& s : scenarios)
    if (s.name == wanted) return &s;
  return nullptr;
}

std::vector<std::string> testbed_file::scenario_names() const {
  std::vector<std::string> names;
  for (const testbed_scenario& s : scenarios) names.push_back(s.name);
  return names;
}

testbed testbed_file::with(const testbed_scenario& s) const {
  testbed t = base;
  for (const auto& [pair, profile] : s.links) t.set_link(pair, profile);  // pairs checked at parse
  t.uplink = s.name;
  return t;
}

std::string describe(const link_profile& link) {
  std::ostringstream out;
  out << link.bandwidth_mbit_per_s << " Mbit/s " << link.latency_ms << " ms";
  return out.str();
}

std::string testbed_file::describe_scenario(const std::string& wanted) const {
  const testbed_scenario* s = scenario(wanted);
  if (!s || s->links.empty()) return "the base links";
  std::string out;
  for (const auto& [pair, link] : s->links) out += (out.empty() ? "" : ", ") + pair + " " + describe(link);
  return out;
}

result<testbed_file> parse_testbed_json(const std::string& text, const std::string& source) {
  auto bad = [&](const std::string& message) { return status::error("testbed '" + source + "': " + message); };
  ordered_json j;  // ordered: scenarios keep the file's order
  try {
    j = ordered_json::parse(text);
  } catch (const std::exception& e) {
    return bad(std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return bad("the top level must be a JSON object");
  testbed_file f = testbed_file::d3_setting();
  f.source = source;
  f.name = "testbed file " + source;
  f.scenarios.clear();
  for (const auto& [key, value] : j.items()) {
    if (key == "device_speed" || key == "edge_speed" || key == "cloud_speed") {
      if (!value.is_number() || !(value.get<double>() > 0) || !std::isfinite(value.get<double>()))
        return bad(key + " must be a positive number");
      (key == "device_speed" ? f.base.device_speed : key == "edge_speed" ? f.base.edge_speed : f.base.cloud_speed) =
          value.get<double>();
    } else if (key == "edge_nodes") {
      if (!value.is_number_integer() || value.get<long>() < 1 || value.get<long>() > 64)
        return bad("edge_nodes must be an integer in [1, 64]");
      f.edge_nodes = value.get<int>();
    } else if (key == "links") {
      std::map<std::string, link_profile> links;
      if (auto s = parse_links(value, "links", links); !s) return bad(s.message());
      for (const auto& [pair, profile] : links) f.base.set_link(pair, profile);
    } else if (key == "scenarios") {
      if (!value.is_object() || value.empty()) return bad("scenarios must be a non-empty object of NAME: {ROLE-PAIR: link}");
      for (const auto& [name, links] : value.items()) {
        if (name.empty() || name.find_first_of(", \t") != std::string::npos)
          return bad("scenario name '" + name + "' must be non-empty without commas or spaces");
        testbed_scenario s{name, {}};
        if (auto st = parse_links(links, "scenarios." + name, s.links); !st) return bad(st.message());
        f.scenarios.push_back(std::move(s));
      }
    } else if (key == "name") {
      if (!value.is_string()) return bad("name must be a string");
      f.name = value.get<std::string>();
    } else if (key != "comment") {
      return bad("unknown key '" + key +
                 "' (name, comment, device_speed, edge_speed, cloud_speed, edge_nodes, links, scenarios)");
    }
  }
  if (f.scenarios.empty()) f.scenarios.push_back({"base", {}});
  return f;
}

result<testbed_file> load_testbed_file(const std::string& path) {
  auto text = read_text_file(path, "testbed file");
  if (!text) return text.error();
  return parse_testbed_json(*text, path);
}

}  // namespace d3
