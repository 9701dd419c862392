#include "emulation/node_emulation.hpp"

#include <nlohmann/json.hpp>

namespace d3 {

status node_emulation::configure(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    return status::error(std::string("emulation settings are not JSON: ") + e.what());
  }
  clock_mode mode;
  std::map<std::string, link_clock> links;
  try {
    auto parsed = clock_mode_from_string(j.value("clock", std::string("wall")));
    if (!parsed) return parsed.error();
    mode = parsed.value();
    if (j.contains("links"))
      for (const auto& [dest, p] : j.at("links").items()) {
        link_profile profile{p.value("mbit_per_s", 0.0), p.value("latency_ms", 0.0)};
        const double receive = p.value("receive_ms_per_mb", 0.0);
        if (profile.bandwidth_mbit_per_s < 0 || profile.latency_ms < 0 || receive < 0)
          return status::error("link to '" + dest + "': negative bandwidth, latency or receive cost");
        if (profile.bandwidth_mbit_per_s > 0 || profile.latency_ms > 0 || receive > 0)
          links.emplace(dest, link_clock(profile, receive));
      }
  } catch (const std::exception& e) {
    return status::error(std::string("bad emulation settings: ") + e.what());
  }
  // "keep_clocks": a change while requests flow (a link trace step, a node slowing down): new
  // link profiles and speed, the clock mode and the virtual time line untouched.
  const bool keep_clocks = j.value("keep_clocks", false);
  if (j.contains("heartbeat_floor_mbit") && j["heartbeat_floor_mbit"].is_number()) {
    peer_backlog().set_floor(j["heartbeat_floor_mbit"].get<double>());
    incoming_backlog().set_floor(j["heartbeat_floor_mbit"].get<double>());
  }
  const double speed = j.value("speed", 0.0);
  std::lock_guard<std::mutex> lock(mutex_);
  if (speed > 0) speed_ = speed;
  if (keep_clocks) {
    for (auto& [dest, clock] : links) {
      auto it = links_.find(dest);
      if (it == links_.end()) links_.emplace(dest, clock);
      else it->second.set_profile(clock.profile(), clock.receive_ms_per_mb());  // what is queued on it stays
    }
    compute_ = node_clock(speed_);
    return status::ok();
  }
  mode_ = mode;
  links_ = std::move(links);
  compute_ = node_clock(speed_);
  epoch_ = std::chrono::steady_clock::now();
  return status::ok();
}

node_emulation& emulation() {
  static node_emulation e;
  return e;
}

send_backlog& peer_backlog() {
  static send_backlog backlog;
  return backlog;
}

send_backlog& incoming_backlog() {
  static send_backlog backlog;
  return backlog;
}

}  // namespace d3
