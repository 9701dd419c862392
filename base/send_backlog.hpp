// When what was sent to each peer may still be crossing the link, for heartbeats that share the
// data's connection: on a slow real link a ping sent behind a large message arrives only once the
// message has crossed (measured: 602 KB on a 2 Mbit/s link held the app's pings 2.4 s, and the
// cloud node was taken for frozen on every request). Silence is counted from the later of the
// peer's last answer and drained_by(peer), which assumes the slowest link the deployment runs on
// (the floor, 1 Mbit/s unless set): a peer that is really frozen is found at most bytes / floor
// later.
// Thread-safe (a node's stages send from several threads).
#pragma once

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <string>

namespace d3 {

class send_backlog {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  static constexpr double default_floor_mbit_per_s = 1.0;

  // The rate sends are assumed to cross at; <= 0 keeps the current one.
  void set_floor(double mbit_per_s) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (mbit_per_s > 0) floor_mbit_per_s_ = mbit_per_s;
  }
  // `bytes` handed to the connection to `peer` at `now`: they queue behind what is still there.
  void sent(const std::string& peer, size_t bytes, time_point now = std::chrono::steady_clock::now()) {
    std::lock_guard<std::mutex> lock(mutex_);
    // A quarter more than the payload at the floor rate: TLS records, TCP/IP headers and pacing
    // (measured: 602 KB over a 0.13 Mbit/s link took 4% longer than the payload alone).
    const auto crossing = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(1.25 * double(bytes) * 8.0 / (floor_mbit_per_s_ * 1e6)));
    time_point& until = until_[peer];
    until = std::max(until, now) + crossing;
    ++outstanding_[peer];
  }
  // One send to `peer` is known to have crossed (its receiver read it): once every send is, the
  // backlog ends now rather than when the floor rate would have drained it. For backlogs whose
  // receiver can tell (incoming notices): on a link faster than the floor a frozen peer is then
  // found after its silence, not bytes / floor later.
  void arrived(const std::string& peer, time_point now = std::chrono::steady_clock::now()) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto left = outstanding_.find(peer);
    if (left == outstanding_.end() || left->second == 0) return;
    if (--left->second == 0) {
      time_point& until = until_[peer];
      until = std::min(until, now);
    }
  }
  // When everything sent to `peer` so far has crossed at the floor rate (the epoch if nothing).
  time_point drained_by(const std::string& peer) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = until_.find(peer);
    return it == until_.end() ? time_point{} : it->second;
  }

 private:
  mutable std::mutex mutex_;
  double floor_mbit_per_s_ = default_floor_mbit_per_s;
  std::map<std::string, time_point> until_;
  std::map<std::string, size_t> outstanding_;  // sends not known to have crossed
};

}  // namespace d3
