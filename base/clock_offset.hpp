// Another process's clock against this one's, from pings: each answer carries the peer's clock
// when it answered, so offset = peer clock - (send + round trip / 2), with an error of at most
// half the round trip. The round trip also counts the time the answer waited in this process's
// mailbox while it was blocked (a probe, a deployment), so the estimate is the sample with the
// smallest error bound: half its round trip plus what the two clocks can have drifted apart since
// (100 ppm, more than quartz crystals drift), over the last `window` samples. Measured on the
// namespace cluster (one shared clock, so every offset should read 0): with the best of the last
// 16 round trips (4 s of pings) the offsets swung by +-23 ms whenever all 16 had waited; with a
// minute of samples, by under a millisecond. Two processes under one kernel and one time
// namespace read the same CLOCK_MONOTONIC (set_same_clock): their offset is 0 exactly, whatever
// their pongs waited (measured on that cluster: nodes busy probing under cpu quotas for the first
// 15 s answered every ping late, the cloud's offset read 25 ms off, and a 4 KB answer from it
// was priced as a 1.2 Mbit/s link). Not thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <limits>

namespace d3 {

class clock_offset_estimator {
 public:
  static constexpr double drift_ms_per_ms = 1e-4;
  explicit clock_offset_estimator(size_t window = 240) : window_(window < 1 ? 1 : window) {}

  // A ping sent at `sent_ms` and answered after `round_trip_ms` with the peer's clock at
  // `peer_ms`, read at `now_ms` (all but peer_ms on this process's clock).
  void add(double sent_ms, double round_trip_ms, double peer_ms, double now_ms) {
    samples_.push_back({round_trip_ms, peer_ms - (sent_ms + round_trip_ms / 2), now_ms});
    while (samples_.size() > window_) samples_.pop_front();
  }

  // The peer reads this process's clock (same kernel, same time namespace): offset and error 0
  // from now on, whatever is added.
  void set_same_clock() { same_clock_ = true; }

  bool empty() const { return !same_clock_ && samples_.empty(); }

  // Peer clock minus this clock, as of `now_ms`; 0 without samples.
  double offset(double now_ms) const {
    if (same_clock_ || samples_.empty()) return 0;
    return best(now_ms)->offset_ms;
  }

  // How far offset(now_ms) may be off, at most: infinite without samples (the peer's clock may
  // be anywhere), 0 for the same clock.
  double error_bound(double now_ms) const {
    if (same_clock_) return 0;
    if (samples_.empty()) return std::numeric_limits<double>::infinity();
    return bound(*best(now_ms), now_ms);
  }

 private:
  struct sample {
    double round_trip_ms;
    double offset_ms;
    double taken_ms;
  };
  static double bound(const sample& s, double now_ms) {
    return s.round_trip_ms / 2 + (now_ms - s.taken_ms) * drift_ms_per_ms;
  }
  // Precondition: samples_ is not empty.
  std::deque<sample>::const_iterator best(double now_ms) const {
    return std::min_element(samples_.begin(), samples_.end(),
                            [&](const sample& a, const sample& b) { return bound(a, now_ms) < bound(b, now_ms); });
  }

  size_t window_;
  std::deque<sample> samples_;  // oldest first
  bool same_clock_ = false;
};

}  // namespace d3
