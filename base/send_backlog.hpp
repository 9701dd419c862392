// When what was sent to each peer may still be crossing the link, for heartbeats that share the
// data's connection: on a slow real link a ping sent behind a large message arrives only once the
// message has crossed (measured: 602 KB on a 2 Mbit/s link held the app's pings 2.4 s, and the
// cloud node was taken for frozen on every request). Silence is counted from the later of the
// peer's last answer and drained_by(peer), which assumes the slowest link the deployment runs on
// (the floor, 1 Mbit/s unless set): a peer that is really frozen is found at most bytes / floor
// later. What is known to have crossed leaves the backlog: a send the receiver acknowledges
// (arrived), and everything handed to the connection before a ping the peer answered
// (crossed_before: one ordered connection carries both). Without that, a session sending faster
// than the floor drains pushed drained_by ever further ahead (600 requests of 602 KB at 1 Mbit/s:
// an hour), and a peer that froze late in it was never found by its silence.
// Thread-safe (a node's stages send from several threads).
#pragma once

#include <algorithm>
#include <chrono>
#include <deque>
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
    std::deque<queued>& sends = queued_[peer];
    sends.push_back({now, crossing});
    // A peer that never answers and never acknowledges: the oldest are forgotten (drained_by
    // still counts them; only crossed_before could have taken them out).
    if (sends.size() > max_queued) sends.pop_front();
  }
  // One send to `peer` is known to have crossed (its receiver read it): once every send is, the
  // backlog ends now rather than when the floor rate would have drained it. For backlogs whose
  // receiver can tell (incoming notices): on a link faster than the floor a frozen peer is then
  // found after its silence, not bytes / floor later.
  void arrived(const std::string& peer, time_point now = std::chrono::steady_clock::now()) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto left = outstanding_.find(peer);
    if (left == outstanding_.end() || left->second == 0) return;
    std::deque<queued>& sends = queued_[peer];
    if (!sends.empty()) sends.pop_front();  // acknowledged in the order they were sent
    if (--left->second == 0) {
      time_point& until = until_[peer];
      until = std::min(until, now);
    }
  }
  // The peer answered a ping handed to the connection at `ping_sent`: every send handed to it
  // before then has crossed by `now`. What was handed later crosses from now at the floor rate.
  // Precondition: sent() is called once the bytes are handed to the connection (not before), or
  // a ping handed between the two would take them for crossed.
  void crossed_before(const std::string& peer, time_point ping_sent,
                      time_point now = std::chrono::steady_clock::now()) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = queued_.find(peer);
    if (found == queued_.end()) return;
    std::deque<queued>& sends = found->second;
    size_t crossed = 0;
    while (!sends.empty() && sends.front().at <= ping_sent) sends.pop_front(), ++crossed;
    if (crossed == 0) return;
    size_t& left = outstanding_[peer];
    left -= std::min(left, crossed);
    time_point until = now;
    for (const queued& q : sends) until = std::max(until, q.at) + q.crossing;
    time_point& current = until_[peer];
    current = std::min(current, until);
  }
  // When everything sent to `peer` so far has crossed at the floor rate (the epoch if nothing).
  time_point drained_by(const std::string& peer) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = until_.find(peer);
    return it == until_.end() ? time_point{} : it->second;
  }

 private:
  struct queued {
    time_point at;                         // handed to the connection
    std::chrono::steady_clock::duration crossing;  // at the floor rate
  };
  static constexpr size_t max_queued = 4096;

  mutable std::mutex mutex_;
  double floor_mbit_per_s_ = default_floor_mbit_per_s;
  std::map<std::string, time_point> until_;
  std::map<std::string, size_t> outstanding_;  // sends not known to have crossed
  std::map<std::string, std::deque<queued>> queued_;  // those sends, oldest first (at most max_queued)
};

}  // namespace d3
