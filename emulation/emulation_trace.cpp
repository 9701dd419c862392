#include "emulation/emulation_trace.hpp"

#include "base/text_file.hpp"

#include "emulation/testbed_file.hpp"

#include <nlohmann/json.hpp>

#include <sstream>

namespace d3 {

using json = nlohmann::json;

namespace {

std::string number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

}  // namespace

testbed trace_step::apply(testbed t) const {
  if (uplink) {
    auto named = testbed::with_uplink(*uplink);
    if (named) {
      t.device_edge = named->device_edge;
      t.uplink = *uplink;
    }
  }
  for (const auto& [pair, profile] : links) {
    t.set_link(pair, profile);  // pairs checked at parse
    if (pair == "device-edge") t.uplink = number(profile.bandwidth_mbit_per_s) + " Mbit/s";
  }
  return t;
}

std::string trace_step::describe() const {
  std::string out = "at " + number(at_ms) + " ms:";
  const char* sep = " ";
  if (uplink) out += sep + ("uplink " + *uplink), sep = ", ";
  for (const auto& [pair, p] : links)
    out += sep + pair + " " + number(p.bandwidth_mbit_per_s) + " Mbit/s " + number(p.latency_ms) + " ms", sep = ", ";
  for (const auto& [node, speed] : speeds) out += sep + node + " speed " + number(speed), sep = ", ";
  return out;
}

int emulation_trace::step_at(double ms) const {
  int found = -1;
  for (size_t s = 0; s < steps.size() && steps[s].at_ms <= ms; ++s) found = int(s);
  return found;
}

result<emulation_trace> parse_trace_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return status::error(std::string("trace: not JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("steps") || !j.at("steps").is_array() || j.at("steps").empty())
    return status::error("trace: expected {\"steps\": [...]} with at least one step");
  emulation_trace trace;
  const json steps = j.at("steps");
  for (size_t s = 0; s < steps.size(); ++s) {
    const json& step = steps[s];
    const std::string where = "trace: step " + std::to_string(s);
    if (!step.is_object()) return status::error(where + " is not an object");
    trace_step out;
    for (const auto& [key, value] : step.items()) {
      if (key == "at_ms") {
        if (!value.is_number() || value.get<double>() < 0) return status::error(where + ": at_ms must be a number >= 0");
        out.at_ms = value.get<double>();
      } else if (key == "uplink") {
        if (!value.is_string() || !testbed::with_uplink(value.get<std::string>()))
          return status::error(where + ": uplink must be CAT1, 3G, 4G or WiFi, got " + value.dump());
        out.uplink = value.get<std::string>();
      } else if (key == "links") {
        if (!value.is_object()) return status::error(where + ": links must be an object");
        for (const auto& [pair, p] : value.items()) {
          auto profile = parse_link_json(p, where + ": link '" + pair + "'");
          if (!profile) return profile.error();
          testbed probe;
          if (auto known = probe.set_link(pair, *profile); !known) return status::error(where + ": " + known.message());
          out.links[pair] = *profile;
        }
      } else if (key == "speeds") {
        if (!value.is_object()) return status::error(where + ": speeds must be an object");
        for (const auto& [node, speed] : value.items()) {
          if (!speed.is_number() || !(speed.get<double>() > 0))
            return status::error(where + ": speed of '" + node + "' must be a number > 0");
          out.speeds[node] = speed.get<double>();
        }
      } else if (key != "comment") {
        return status::error(where + ": unknown key '" + key + "' (at_ms, uplink, links, speeds, comment)");
      }
    }
    if (!step.contains("at_ms")) return status::error(where + ": at_ms is missing");
    if (!trace.steps.empty() && out.at_ms <= trace.steps.back().at_ms)
      return status::error(where + ": at_ms " + number(out.at_ms) + " does not come after the previous step's " +
                           number(trace.steps.back().at_ms));
    trace.steps.push_back(std::move(out));
  }
  return trace;
}

result<emulation_trace> load_trace_file(const std::string& path) {
  auto text = read_text_file(path, "trace");
  if (!text) return status::error("trace: " + text.message());
  auto trace = parse_trace_json(*text);
  if (!trace) return status::error(trace.message() + " (in '" + path + "')");
  return trace;
}

}  // namespace d3
